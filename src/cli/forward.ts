// `onegen forward --model DIR (--ids 1,2,3 | --text "…") --out FILE.safetensors`
// One prefill over the input; writes `logits` (F32 [T, vocab]) and `hidden` (F32 [T, hidden_size],
// the final-norm states that OneGen uses as embeddings) for every position, plus `ids` (I32 [T]).
// The file's metadata carries "format": "onegen-forward"; --out is written atomically and only
// over an absent, empty or earlier forward output (checked before the model is loaded).
import { parseArgs } from "./args.js";
import { inputIds, openModel, MODEL_FLAGS } from "./model.js";
import { Session } from "../model/session.js";
import { writeSafetensors } from "../io/safetensors-write.js";
import { NonFiniteError, UsageError } from "../errors.js";
import { checkOutput, FILE_FORMATS, writeFileAtomic, type InputPath } from "../io/output.js";

const USAGE = "usage: onegen forward --model DIR (--ids 1,2,3 | --text TEXT) --out FILE.safetensors [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--quiet]";

export async function forwardCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: [...MODEL_FLAGS, "ids", "text", "out"], booleans: ["help", "quiet"] }, "forward");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const out = args.flags.get("out");
  if (!out) throw new UsageError(`forward: --out FILE.safetensors is required`);
  if (!args.flags.has("model")) throw new UsageError(`forward: --model DIR is required`);
  // Checked before the model is loaded (src/io/output.ts): absent, empty or an earlier forward output.
  const inputs: InputPath[] = [{ flag: "--model", path: args.flags.get("model")! }];
  await checkOutput({ flag: "--out", path: out, kind: "forward" }, inputs);
  const { ctx, model } = await openModel(args, "forward");
  try {
    const ids = inputIds(args, "text", model.tokenizer, "forward");
    const maxPos = model.config.maxPositionEmbeddings;
    if (ids.length > maxPos) throw new UsageError(`forward: --${args.flags.has("ids") ? "ids" : "text"} gives ${ids.length} tokens, more than the model's context of ${maxPos} positions`);
    const session = Session.create(model.decoder, ids.length);
    const res = await session.append(ids, { logits: "all", keepHidden: true });
    const logits = await res.logits!.read();
    const hidden = await res.hidden!.read();
    const T = ids.length;
    refuseNonFinite(logits as Float32Array, model.decoder.vocabSize, "logits", out);
    refuseNonFinite(hidden as Float32Array, model.config.hiddenSize, "hidden states", out);
    const bytes = writeSafetensors(
      {
        ids: { dtype: "I32", shape: [T], data: Int32Array.from(ids) },
        logits: { dtype: "F32", shape: [T, model.decoder.vocabSize], data: logits as Float32Array },
        hidden: { dtype: "F32", shape: [T, model.config.hiddenSize], data: hidden as Float32Array },
      },
      { format: FILE_FORMATS.forward, producer: "onegen-webgpu forward", adapter: ctx.adapter.description },
    );
    await writeFileAtomic(out, "forward", bytes, { flag: "--out", inputs });
    process.stderr.write(`wrote ${out}: logits [${T}, ${model.decoder.vocabSize}], hidden [${T}, ${model.config.hiddenSize}]\n`);
    return 0;
  } finally {
    ctx.destroy();
  }
}

/** Non-finite outputs mean the model overflowed: refused, naming the first position, before anything is written. */
function refuseNonFinite(data: Float32Array, rowLength: number, what: string, out: string): void {
  const i = data.findIndex((x) => !Number.isFinite(x));
  if (i >= 0) throw new NonFiniteError(`the ${what} at position ${Math.floor(i / rowLength)} hold NaN or infinity (the model's activations overflowed); nothing was written to '${out}'`);
}
