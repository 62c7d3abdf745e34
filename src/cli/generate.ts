// `onegen generate --model DIR (--prompt TEXT | --ids LIST) [--max-new-tokens N] [--temperature T]
//  [--top-k K] [--top-p P] [--seed S] [--stop STR]... [--json]`
// Streams text to stdout as it is generated (or prints one JSON object with --json).
import { parseArgs, numberFlag } from "./args.js";
import { inputIds, openModel, MODEL_FLAGS } from "./model.js";
import { Session } from "../model/session.js";

const USAGE =
  "usage: onegen generate --model DIR (--prompt TEXT | --ids LIST) [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--context N] [--json] [--quiet]";

export async function generateCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: [...MODEL_FLAGS, "ids", "prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "stop"], booleans: ["help", "json", "quiet"] }, "generate");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const maxNew = numberFlag(args, "max-new-tokens", "generate", { integer: true, min: 0 }) ?? 64;
  const temperature = numberFlag(args, "temperature", "generate", { min: 0 }) ?? 0;
  const topK = numberFlag(args, "top-k", "generate", { integer: true, min: 0, max: 0xffffffff });
  const topP = numberFlag(args, "top-p", "generate", { min: 0, max: 1 });
  const seed = numberFlag(args, "seed", "generate", { integer: true, min: 0, max: 0xffffffff }) ?? 0;
  const contextFlag = numberFlag(args, "context", "generate", { integer: true, min: 1 });
  const { ctx, model } = await openModel(args, "generate");
  try {
    const prompt = inputIds(args, "prompt", model.tokenizer, "generate");
    const capacity = contextFlag ?? Math.min(model.config.maxPositionEmbeddings, prompt.length + maxNew);
    const session = Session.create(model.decoder, Math.max(capacity, 1));
    const tok = model.tokenizer;
    const stop = args.flags.get("stop");
    const json = args.bools.has("json");
    await session.append(prompt);
    const ids: number[] = [];
    let printed = "";
    const it = session.generate({
      maxNewTokens: maxNew,
      temperature,
      ...(topK !== undefined ? { topK } : {}),
      ...(topP !== undefined ? { topP } : {}),
      seed,
      eosIds: model.config.eosTokenIds,
      ...(stop !== undefined ? { stopStrings: [stop] } : {}),
      ...(tok ? { decode: (x: number[]) => tok.decode(x, { skipSpecialTokens: true }) } : {}),
    });
    let finish = "max-tokens";
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      ids.push(r.value.id);
      if (!json && r.value.text !== undefined) {
        process.stdout.write(r.value.text.slice(printed.length));
        printed = r.value.text;
      } else if (!json) process.stdout.write(`${r.value.id} `);
    }
    const t = session.timings;
    const stats = {
      prompt_tokens: prompt.length,
      generated_tokens: ids.length,
      finish_reason: finish,
      prefill_tokens_per_s: t.prefillMs > 0 ? (t.prefillTokens / t.prefillMs) * 1000 : null,
      decode_tokens_per_s: t.decodeMs > 0 ? (t.decodeTokens / t.decodeMs) * 1000 : null,
      host_readbacks: ctx.stats.readbacks,
      adapter: ctx.adapter.description,
    };
    if (json) process.stdout.write(JSON.stringify({ ids, text: tok ? tok.decode(ids, { skipSpecialTokens: true }) : null, stats }) + "\n");
    else process.stdout.write(`\n`);
    if (!args.bools.has("quiet") && !json) process.stderr.write(`[${ids.length} tokens, ${finish}; decode ${stats.decode_tokens_per_s?.toFixed(2)} tok/s]\n`);
    session.dispose();
    return 0;
  } finally {
    ctx.destroy();
  }
}
