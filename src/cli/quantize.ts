// `onegen quantize --model DIR --out DIR --format q8_0|q4_0 [--max-shard SIZE] [--quiet]`: writes a
// quantized copy of a model directory (src/model/save-quantized.ts: projection weights as GGUF Q8_0 / Q4_0
// block fields, everything else copied, config.json "quantization") that every model command loads
// without re-quantizing. Host only: no GPU is opened. --out follows the output rules of
// src/io/output.ts (checked before any work, written atomically, never the input nor inside it).
import { UsageError } from "../errors.js";
import { formatBytes } from "../model/memory-plan.js";
import { quantizeModelDir } from "../model/save-quantized.js";
import { parseArgs, sizeFlag } from "./args.js";
import { isQuantFormat, QUANT_FORMATS } from "../quant/formats.js";
import { unusedTensorsWarning } from "./model.js";

const USAGE = "usage: onegen quantize --model DIR --out DIR --format q8_0|q4_0 [--max-shard SIZE (default 2G)] [--quiet]";

export async function quantizeCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ["model", "out", "format", "max-shard"], booleans: ["help", "quiet"] }, "quantize");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const model = args.flags.get("model");
  const out = args.flags.get("out");
  if (!model) throw new UsageError("quantize: --model DIR is required");
  if (!out) throw new UsageError("quantize: --out DIR is required");
  const format = args.flags.get("format");
  if (format === undefined) throw new UsageError("quantize: --format q8_0|q4_0 is required");
  if (!isQuantFormat(format)) throw new UsageError(`quantize: --format must be ${QUANT_FORMATS.join(" or ")}, got '${format}'`);
  const maxShard = sizeFlag(args, "max-shard", "quantize");
  const quiet = args.bools.has("quiet");
  const t0 = performance.now();
  const s = await quantizeModelDir(model, out, format, {
    flag: "--out",
    inputFlag: "--model",
    ...(maxShard !== undefined ? { maxShardBytes: maxShard } : {}),
    ...(quiet || !process.stderr.isTTY ? {} : { onProgress: (p) => process.stderr.write(`\rquantizing ${p.tensorsDone}/${p.tensorsTotal} ${p.tensor.slice(0, 60).padEnd(60)}`) }),
  });
  if (!quiet && process.stderr.isTTY) process.stderr.write("\r" + " ".repeat(80) + "\r");
  const warn = unusedTensorsWarning("quantize", model, s.dropped);
  if (warn) process.stderr.write(warn.replace("not loaded", "not written"));
  process.stderr.write(
    `wrote ${out}: ${s.format}, ${s.quantized} weights quantized, ${s.copied} tensors copied, ${s.shards} file(s); ` +
      `tensor data ${formatBytes(s.sourceBytes)} → ${formatBytes(s.outputBytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  return 0;
}
