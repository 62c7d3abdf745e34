// `onegen eval [--model DIR] [--index DIR] [--data DIR] [--split test|dev|train] [--json] [--no-two-pass]
//  [--el-decoding copy-input|free] [--limit N] [--build-index] [--quiet]`
// Scores a OneGen model on the demo task data (src/demo/eval.ts): mention detection F1, entity
// linking micro-F1 (OneGen's metric), retrieval accuracy@1 (teacher-forced), multi-hop exact
// match / F1, beside the trivial baselines and beside the same model run as the two-pass baseline
// (skipped with --no-two-pass). Defaults: the bundled demo model (demo/model), its indexes (demo/index/{el,
// mhqa}) and data (demo/data) of the package. --json prints one object:
//   {"el_micro_f1", "md_f1", "retrieval_acc_at1", "multihop_em", "multihop_f1", …,
//    "two_pass": {…} (null with --no-two-pass), "trivial": {…}}
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { choiceFlag, numberFlag, parseArgs, sizeFlag, type ParsedArgs } from "./args.js";
import { LoadError, UsageError } from "../errors.js";
import type { LoadedDecoder } from "../model/load.js";
import { loadOnDevice, quantizeFlag } from "./model.js";
import type { QuantFormat } from "../quant/formats.js";
import { loadDemoData, SPLITS, type Split } from "../demo/data.js";
import { trivialScores } from "../demo/baselines.js";
import { openDemoIndexes } from "../demo/indexes.js";
import { DEFAULT_EL_DECODING, EL_DECODINGS, type ElDecoding } from "../demo/tasks.js";
import { evaluateModel, type ModelScores } from "../demo/eval.js";
import type { GpuContext } from "../gpu/context.js";

/** The package's demo folder (dist/src/cli/*.js → ../../../demo). */
const DEMO_ROOT = fileURLToPath(new URL("../../../demo/", import.meta.url));
export const DEFAULT_DEMO_MODEL = DEMO_ROOT + "model";
export const DEFAULT_DEMO_INDEX = DEMO_ROOT + "index";
export const DEFAULT_DEMO_DATA = DEMO_ROOT + "data";

/** How to produce the demo model when it is missing (printed as the error's hint). */
export const DEMO_MODEL_HINT =
  "the demo model is produced by `scripts/demo/train_demo.sh` (`node scripts/demo/make_data.mjs` writes demo/data, `scripts/demo/init_model.mjs` a random model, `onegen train` trains it, `onegen index` builds demo/index; see demo/MODEL_CARD.md); or pass --model DIR";

const USAGE = [
  "usage: onegen eval [--model DIR (default demo/model)] [--index DIR (default demo/index: el/ and mhqa/)] [--data DIR (default demo/data)]",
  `  [--split test|dev|train (default test)] [--json] [--no-two-pass (skip the two-pass baseline)] [--el-decoding copy-input|free (default ${DEFAULT_EL_DECODING})] [--limit N (first N sentences and questions)]`,
  "  [--build-index (encode and save missing indexes)] [--max-new-tokens N] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--gpu-memory SIZE] [--quiet]",
].join("\n");

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Refuses a missing model directory with a LoadError that says how to produce it. */
export async function requireModelDir(dir: string, isDefault: boolean): Promise<void> {
  if (await exists(`${dir}/config.json`)) return;
  if (isDefault) throw new LoadError(`the bundled demo model '${dir}' does not exist (no config.json)`, DEMO_MODEL_HINT);
  throw new LoadError(`model directory '${dir}' has no config.json`, "pass the directory of a Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json)");
}

/** Opens the device and loads the model (progress on stderr unless quiet). */
export async function openDemoModel(dir: string, dtype: string, quiet: boolean, command: string, memoryBudgetBytes?: number, quantize?: QuantFormat): Promise<{ ctx: GpuContext; model: LoadedDecoder }> {
  if (dtype !== "auto" && dtype !== "f16" && dtype !== "f32") throw new UsageError(`${command}: --dtype must be auto, f16 or f32, got '${dtype}'`);
  return loadOnDevice(dir, command, { dtype, gemvLayout: "auto", ...(quantize ? { quantize } : {}), ...(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {}), quiet });
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

function scoresJson(s: ModelScores): Record<string, unknown> {
  return {
    el_micro_f1: r3(s.el_micro_f1),
    md_f1: r3(s.md_f1),
    retrieval_acc_at1: r3(s.retrieval_acc_at1),
    multihop_em: r3(s.multihop_em),
    multihop_f1: r3(s.multihop_f1),
    retrieval_acc_at1_el: r3(s.retrieval_acc_at1_el),
    retrieval_acc_at1_multihop: r3(s.retrieval_acc_at1_multihop),
    el_micro_f1_ambiguous: r3(s.el_micro_f1_ambiguous),
    mode: s.mode,
    el_decoding: s.el_decoding,
    examples: s.examples,
    timing: s.timing,
  };
}

/** The --el-decoding flag of demo and eval (default DEFAULT_EL_DECODING). */
export function elDecodingFlag(args: ParsedArgs, command: string): ElDecoding {
  return choiceFlag(args, "el-decoding", EL_DECODINGS, command) ?? DEFAULT_EL_DECODING;
}

export async function evalCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ["model", "index", "data", "split", "limit", "max-new-tokens", "dtype", "el-decoding", "gpu-memory", "quantize"], booleans: ["help", "json", "two-pass", "no-two-pass", "build-index", "quiet"] }, "eval");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (args.bools.has("two-pass") && args.bools.has("no-two-pass")) throw new UsageError("eval: --two-pass and --no-two-pass contradict each other");
  const withTwoPass = !args.bools.has("no-two-pass"); // --two-pass: the default, accepted as such
  const split: Split = choiceFlag(args, "split", SPLITS, "eval") ?? "test";
  const copyInput = elDecodingFlag(args, "eval") === "copy-input";
  const limit = numberFlag(args, "limit", "eval", { integer: true, min: 1 });
  const maxNew = numberFlag(args, "max-new-tokens", "eval", { integer: true, min: 0 });
  const modelDir = args.flags.get("model") ?? DEFAULT_DEMO_MODEL;
  const indexDir = args.flags.get("index") ?? DEFAULT_DEMO_INDEX;
  const dataDir = args.flags.get("data") ?? DEFAULT_DEMO_DATA;
  const quiet = args.bools.has("quiet") || args.bools.has("json");
  await requireModelDir(modelDir, !args.flags.has("model"));
  const data = await loadDemoData(dataDir, split);
  const limits = limit !== undefined ? { el: limit, mh: limit } : {};
  const trivial = trivialScores(data, limits);
  const { ctx, model } = await openDemoModel(modelDir, args.flags.get("dtype") ?? "auto", quiet, "eval", sizeFlag(args, "gpu-memory", "eval"), quantizeFlag(args, "eval"));
  try {
    const indexes = await openDemoIndexes(ctx, model, indexDir, data, { build: args.bools.has("build-index") });
    try {
      const opts = {
        copyInput,
        ...(limit !== undefined ? { limitEl: limit, limitMh: limit } : {}),
        ...(maxNew !== undefined ? { maxNewTokensEl: maxNew, maxNewTokensMh: maxNew } : {}),
      };
      const progress = (label: string) => {
        let n = 0;
        return quiet ? undefined : () => process.stderr.write(`\reval: ${label} ${++n} example(s)`);
      };
      const onePass = await evaluateModel(model, indexes, data, { ...opts, onExample: progress("one-pass") });
      if (!quiet) process.stderr.write("\n");
      const twoPass = withTwoPass ? await evaluateModel(model, indexes, data, { ...opts, twoPass: true, onExample: progress("two-pass") }) : null;
      if (twoPass && !quiet) process.stderr.write("\n");
      const { method, ...triv } = trivial;
      const out = {
        model: modelDir,
        index: indexDir,
        split,
        ...scoresJson(onePass),
        two_pass: twoPass ? scoresJson(twoPass) : null,
        trivial: { method, ...Object.fromEntries(Object.entries(triv).map(([k, v]) => [k, r3(v)])) },
      };
      if (args.bools.has("json")) process.stdout.write(JSON.stringify(out) + "\n");
      else process.stdout.write(formatTable(out, onePass, twoPass, trivial) + "\n");
      return 0;
    } finally {
      indexes.dispose();
    }
  } finally {
    model.dispose();
    ctx.destroy();
  }
}

function formatTable(out: { model: string; split: string }, one: ModelScores, two: ModelScores | null, triv: ReturnType<typeof trivialScores>): string {
  const rows: [string, keyof ModelScores & string][] = [
    ["entity linking micro-F1", "el_micro_f1"],
    ["  on ambiguous names", "el_micro_f1_ambiguous"],
    ["mention detection F1", "md_f1"],
    ["retrieval accuracy@1", "retrieval_acc_at1"],
    ["  entity [LK]", "retrieval_acc_at1_el"],
    ["  multi-hop [Question Representation]", "retrieval_acc_at1_multihop"],
    ["multi-hop exact match", "multihop_em"],
    ["multi-hop F1", "multihop_f1"],
  ];
  const f = (x: number) => x.toFixed(3).padStart(9);
  const lines = [
    `model ${out.model}, ${out.split} split: ${one.examples.el} sentences, ${one.examples.mh} questions; entity-linking decoding: ${one.el_decoding}`,
    `${"metric".padEnd(38)}${"one-pass".padStart(9)}${two ? "two-pass".padStart(9) : ""}${"trivial".padStart(9)}`,
  ];
  for (const [label, key] of rows) {
    const v = (s: ModelScores) => s[key] as number;
    lines.push(`${label.padEnd(38)}${f(v(one))}${two ? f(v(two)) : ""}${f(triv[key as keyof typeof triv] as number)}`);
  }
  const t = (s: ModelScores) => `${s.timing.el_ms_per_sentence} ms/sentence, ${s.timing.mh_ms_per_question} ms/question`;
  lines.push(`timing one-pass: ${t(one)}${two ? `; two-pass: ${t(two)}` : ""}`);
  lines.push(`trivial: ${triv.method}`);
  return lines.join("\n");
}
