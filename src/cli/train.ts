// `onegen train --model DIR --train FILE --db FILE --out DIR [options]`
// Fine-tunes a model on OneGen's training files (src/train/data.ts): full fine-tuning, or LoRA with
// --lora R. Tokens named by the options (retrieval, document, masked-span and --add-token tokens)
// that the tokenizer lacks are added to it, and the embedding (and untied lm_head) grows to match
// (new rows = mean row). Progress on stderr (loss split into generation and retrieval, tokens/s);
// --log FILE.jsonl gets one JSON line per step. Checkpoints go to OUT/checkpoints/step-N every
// --save-every steps; --resume CKPT (a checkpoint directory, or an OUT directory: its latest
// checkpoint) continues an interrupted run exactly. At the end OUT holds a Hugging Face model
// directory (merged weights, config.json, tokenizer files with the added tokens) and, for LoRA,
// OUT/adapter holds the adapters in PEFT's layout.
// A step whose loss or gradient norm is NaN/inf ends the run with exit 1 and one line naming the
// step and the last checkpoint (which stays as it was); no model is saved. --out and --log are
// checked before anything is loaded and written atomically (src/io/output.ts): OUT is new, empty or an earlier training output
// (its onegen-output.json tag); the final save swaps the whole directory in one step, carrying
// checkpoints/ over, so a crash leaves the previous model or the new one. Log lines carry
// "format": "onegen-train-log".
import { readdir, stat } from "node:fs/promises";
import { readInputFile } from "./input-file.js";
import { join, sep } from "node:path";
import { numberFlag, parseArgs } from "./args.js";
import { createProgressBar, type ProgressSink } from "./progress.js";
import { NonFiniteError, UsageError } from "../errors.js";
import { openDevice } from "../gpu/device.js";
import { loadDecoder } from "../model/load.js";
import { unusedTensorsWarning } from "./model.js";
import { loadTokenizer, resolveTokenId, tryLoadTokenizer, type Tokenizer } from "../tokenizer.js";
import { TrainData } from "../train/data.js";
import { TrainModel } from "../train/model.js";
import { LORA_MODULES, LORA_MODULE_WEIGHTS, type LoraModule } from "../train/lora.js";
import type { Tensor } from "../gpu/tensor.js";
import { addTokensToDecoder, saveModelDir } from "../train/save.js";
import { appendToOutput, checkOutputs, ensureOutputDir, ensureSubdir, FILE_FORMATS, recoverIn, recoverOutput, resolveReal, writeFileAtomic, type InputPath } from "../io/output.js";
import { CHECKPOINT_STATE, Trainer, type StepRecord } from "../train/trainer.js";
import type { Decoder } from "../model/decoder.js";

const USAGE = [
  "usage: onegen train --model DIR --train FILE.jsonl --db FILE.jsonl --out DIR [options]",
  "  --lora R            LoRA rank (default: full fine-tuning)   --lora-alpha A (default 2R)  --lora-dropout P (default 0)",
  "  --lora-targets M,…  modules (default all: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)",
  "  --steps N           optimizer steps (default: one epoch)   --lr X (default 1e-4 LoRA, 2e-5 full)",
  "  --batch-size B      samples per micro-batch (default 1)    --grad-accum G (default 1)   --seed S (default 0)",
  "  --warmup N (default 0)  --decay cosine|linear|constant (default cosine)  --weight-decay W (0)  --max-grad-norm C (1; 0 off)",
  "  --lambda-gen x, --lambda-ret y (default 1, 1)  --loss infonce|bpr (infonce)  --temperature T (0.05)",
  "  --n-pos K (anchors per sample, default all)  --n-neg K (hard negatives per pair, default 4)",
  "  --max-length L      longest sample/document in tokens (default 1024 or the model's context if shorter; at most the context)",
  "  --retrieval-token T[,T]  query-side token(s) (default [LK])   --doc-token T[,T] (default [SE])",
  "  --mask-span OPEN,CLOSE   masked span in assistant text, e.g. '<paragraph>,</paragraph>' (repeatable as OPEN,CLOSE;OPEN,CLOSE)",
  "  --add-token T[,T]   extra tokens to add (e.g. [_CONTINUE_]); tokens as names or '#ID'",
  "  --doc-template 'TEXT {text} {doc_token}'  for text documents",
  "  --save-every N      checkpoint every N steps (OUT/checkpoints/step-N)   --resume DIR   --log FILE.jsonl",
  "  --dtype auto|f16|f32 (GPU weights)  --save-dtype F32|F16|BF16 (default: the input's)  --quiet",
].join("\n");

const VALUE_FLAGS = [
  "model", "train", "db", "out", "lora", "lora-alpha", "lora-dropout", "lora-targets", "steps", "lr", "batch-size", "grad-accum", "seed",
  "warmup", "decay", "weight-decay", "max-grad-norm", "lambda-gen", "lambda-ret", "loss", "temperature", "n-pos", "n-neg", "max-length",
  "retrieval-token", "doc-token", "mask-span", "add-token", "doc-template", "save-every", "resume", "log", "dtype", "save-dtype",
] as const;

function list(v: string | undefined, dflt: string[]): string[] {
  if (v === undefined) return dflt;
  return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** A checkpoint directory, or the latest checkpoint under DIR/checkpoints (interrupted saves recovered first). */
async function findCheckpoint(dir: string): Promise<string> {
  await recoverOutput(dir);
  await recoverIn(join(dir, "checkpoints"));
  try {
    await stat(join(dir, CHECKPOINT_STATE));
    return dir;
  } catch {
    /* not a checkpoint itself */
  }
  let names: string[] = [];
  try {
    names = await readdir(join(dir, "checkpoints"));
  } catch {
    throw new UsageError(`train: --resume '${dir}' is neither a checkpoint (no ${CHECKPOINT_STATE}) nor an output directory with checkpoints/`);
  }
  const steps = names.map((n) => /^step-(\d+)$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
  if (steps.length === 0) throw new UsageError(`train: --resume '${dir}': checkpoints/ holds no step-N checkpoint`);
  return join(dir, "checkpoints", `step-${Math.max(...steps)}`);
}

/** The training progress line: step, loss (gen + ret), tokens/s, lr. */
function formatStep(r: StepRecord, total: number): string {
  const acc = r.pairs > 0 ? ` ret@1 ${((100 * r.pairs_correct) / r.pairs).toFixed(0)}%` : "";
  return `step ${r.step}/${total} loss ${r.loss.toFixed(4)} (gen ${r.loss_gen.toFixed(4)}, ret ${r.loss_ret.toFixed(4)})${acc} ${r.tokens_per_s.toFixed(0)} tok/s lr ${r.lr.toExponential(2)}`;
}

function trainProgress(total: number, sink: ProgressSink | null) {
  if (!sink) return { update: (_r: StepRecord) => undefined, done: () => undefined };
  const every = Math.max(1, Math.floor(total / 20));
  let drawn = false;
  return {
    update(r: StepRecord): void {
      const text = formatStep(r, total);
      if (sink.isTTY) {
        const width = 30;
        const filled = Math.round((r.step / total) * width);
        sink.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${text}\x1b[K`);
        drawn = true;
      } else if (r.step % every === 0 || r.step === total || r.step === 1) sink.write(`train ${text}\n`);
    },
    done(): void {
      if (sink.isTTY && drawn) sink.write("\n");
    },
  };
}

function stderrSink(): ProgressSink {
  const err = process.stderr;
  return { write: (s) => void err.write(s), isTTY: err.isTTY === true, columns: err.columns };
}

export async function trainCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: VALUE_FLAGS, booleans: ["help", "quiet"] }, "train");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const need = (k: string): string => {
    const v = args.flags.get(k);
    if (v === undefined) throw new UsageError(`train: --${k} is required`);
    return v;
  };
  const modelDir = need("model");
  const trainFile = need("train");
  const dbFile = need("db");
  const outArg = need("out");
  const logArg = args.flags.get("log");
  const resumeArg = args.flags.get("resume");
  // Outputs checked before anything is loaded (src/io/output.ts): --out is a new, empty or earlier
  // training output directory, never an input nor inside one; --log likewise a file. --resume
  // inside --out is the normal way to continue a run (its checkpoints are carried over by the
  // final save); anywhere else it is an input like the others.
  const inputs: InputPath[] = [{ flag: "--model", path: modelDir }, { flag: "--train", path: trainFile }, { flag: "--db", path: dbFile }];
  if (resumeArg !== undefined) {
    const [r, o] = [(await resolveReal(resumeArg)).real, (await resolveReal(outArg)).real];
    if (!(r === o || r.startsWith(o + sep))) inputs.push({ flag: "--resume", path: resumeArg });
  }
  const [out, logFile] = (await checkOutputs(
    [{ flag: "--out", path: outArg, kind: "model" }, logArg !== undefined ? { flag: "--log", path: logArg, kind: "train-log" } : null],
    inputs,
  )) as [string, string | undefined];
  const num = (k: string, o: { integer?: boolean; min?: number; max?: number } = {}) => numberFlag(args, k, "train", o);
  const rank = num("lora", { integer: true, min: 1 });
  const loraAlpha = num("lora-alpha", { min: 0 });
  const loraDropout = num("lora-dropout", { min: 0, max: 0.99 });
  if (rank === undefined && (loraAlpha !== undefined || loraDropout !== undefined || args.flags.has("lora-targets"))) throw new UsageError("train: --lora-alpha, --lora-dropout and --lora-targets need --lora R");
  const targets = list(args.flags.get("lora-targets"), [...LORA_MODULES]);
  for (const t of targets) if (!LORA_MODULES.includes(t as LoraModule)) throw new UsageError(`train: --lora-targets: unknown module '${t}' (known: ${LORA_MODULES.join(", ")})`);
  const decay = args.flags.get("decay") ?? "cosine";
  if (decay !== "cosine" && decay !== "linear" && decay !== "constant") throw new UsageError(`train: --decay must be cosine, linear or constant, got '${decay}'`);
  const loss = args.flags.get("loss") ?? "infonce";
  if (loss !== "infonce" && loss !== "bpr") throw new UsageError(`train: --loss must be infonce or bpr, got '${loss}'`);
  const dtype = args.flags.get("dtype") ?? "auto";
  if (dtype !== "auto" && dtype !== "f16" && dtype !== "f32") throw new UsageError(`train: --dtype must be auto, f16 or f32, got '${dtype}'`);
  const saveDtype = args.flags.get("save-dtype");
  if (saveDtype !== undefined && saveDtype !== "F32" && saveDtype !== "F16" && saveDtype !== "BF16") throw new UsageError(`train: --save-dtype must be F32, F16 or BF16, got '${saveDtype}'`);
  const maxLengthFlag = num("max-length", { integer: true, min: 1 });
  const saveEvery = num("save-every", { integer: true, min: 1 });
  const retrievalNames = list(args.flags.get("retrieval-token"), ["[LK]"]);
  const docNames = list(args.flags.get("doc-token"), ["[SE]"]);
  const spans = (args.flags.get("mask-span") ?? "").split(";").filter((s) => s.trim() !== "").map((s) => {
    const p = list(s, []);
    if (p.length !== 2) throw new UsageError(`train: --mask-span wants OPEN,CLOSE, got '${s}'`);
    return [p[0]!, p[1]!] as const;
  });
  const extra = list(args.flags.get("add-token"), []);
  if (retrievalNames.length === 0 || docNames.length === 0) throw new UsageError("train: --retrieval-token and --doc-token must name at least one token");

  // ---- tokenizer: add the named tokens it lacks
  const base = await tryLoadTokenizer(modelDir);
  const named = [...retrievalNames, ...docNames, ...spans.flat(), ...extra].filter((t) => !/^#\d+$/.test(t));
  if (named.length > 0 && !base) throw new UsageError(`train: tokens given by name (${named.join(", ")}), but '${modelDir}' has no tokenizer.json: give them as '#ID'`);
  const missing = [...new Set(named.filter((t) => base!.tokenToId(t) === undefined))];
  const tokenizer: Tokenizer | null = missing.length > 0 ? await loadTokenizer(modelDir, { addedTokens: missing }) : base;
  const ids = (names: readonly string[]) => names.map((n) => resolveTokenId(n, tokenizer));

  // The data files are read before the model is loaded: a missing or unreadable one fails at once.
  const trainText = await readInputFile(trainFile, "--train");
  const dbText = await readInputFile(dbFile, "--db");
  const ctx = await openDevice();
  try {
    const bar = args.bools.has("quiet") ? null : createProgressBar("loading");
    const loaded = await loadDecoder(ctx, modelDir, { dtype, noTokenizer: true, gemvLayout: "rows", ...(bar ? { onProgress: (p) => bar.update(p) } : {}) });
    bar?.done();
    const unusedWarning = unusedTensorsWarning("train", modelDir, loaded.unusedTensors);
    if (unusedWarning) process.stderr.write(unusedWarning);
    // Flags bounded by the model: a sample longer than the context cannot run; a LoRA rank past
    // the smaller side of a projection adds nothing and would size [r, K] matrices by the flag.
    const c = loaded.config;
    const maxPos = c.maxPositionEmbeddings;
    if (maxLengthFlag !== undefined && maxLengthFlag > maxPos) throw new UsageError(`train: --max-length ${maxLengthFlag} exceeds the model's context of ${maxPos} positions`);
    const maxLength = maxLengthFlag ?? Math.min(1024, maxPos);
    if (rank !== undefined) {
      const layer0 = loaded.decoder.weights.layers[0]!;
      const sides = (targets as LoraModule[]).map((t) => ({ t, shape: (layer0[LORA_MODULE_WEIGHTS[t].weight] as Tensor).shape }));
      const low = sides.reduce((a, b) => (Math.min(b.shape[0]!, b.shape[1]!) < Math.min(a.shape[0]!, a.shape[1]!) ? b : a));
      const side = Math.min(low.shape[0]!, low.shape[1]!);
      if (rank > side) throw new UsageError(`train: --lora ${rank} exceeds ${side}, the smaller dimension of ${low.t} [${low.shape.join(", ")}] (a --lora-targets module)`);
    }
    let decoder: Decoder = loaded.decoder;
    let grown: { dispose(): void } | null = null;
    if (tokenizer && tokenizer.vocabSize > decoder.vocabSize) {
      const g = await addTokensToDecoder(decoder, tokenizer.vocabSize);
      decoder = g.decoder;
      grown = g;
      if (!args.bools.has("quiet")) process.stderr.write(`train: added ${missing.join(", ")}; embedding rows ${loaded.decoder.vocabSize} → ${decoder.vocabSize}\n`);
    }
    try {
      const data = TrainData.parse(trainText, dbText, {
        retrievalTokenIds: ids(retrievalNames),
        docTokenIds: ids(docNames),
        maskSpans: spans.map(([a, b]) => [resolveTokenId(a, tokenizer), resolveTokenId(b, tokenizer)] as const),
        maxLength,
        tokenizer,
        vocabSize: decoder.vocabSize,
        ...(args.flags.has("doc-template") ? { docTemplate: args.flags.get("doc-template")! } : {}),
      }, { train: trainFile, db: dbFile });
      // A micro-batch never holds more samples than there are, nor a step more micro-batches.
      const N = data.samples.length;
      const batchSize = num("batch-size", { integer: true, min: 1, max: N }) ?? 1;
      const gradAccum = num("grad-accum", { integer: true, min: 1, max: N }) ?? 1;
      const steps = num("steps", { integer: true, min: 1 }) ?? Math.max(1, Math.ceil(data.samples.length / (batchSize * gradAccum)));
      const model = TrainModel.create(decoder, rank !== undefined ? { mode: "lora", lora: { rank, alpha: loraAlpha ?? 2 * rank, dropout: loraDropout ?? 0, targets: targets as LoraModule[], seed: num("seed", { integer: true, min: 0, max: 0xffffffff }) ?? 0 } } : { mode: "full" });
      const nPos = num("n-pos", { integer: true, min: 1 });
      const trainer = await Trainer.create(model, data, {
        steps,
        lr: num("lr", { min: 0 }) ?? (rank !== undefined ? 1e-4 : 2e-5),
        batchSize,
        gradAccum,
        seed: num("seed", { integer: true, min: 0, max: 0xffffffff }) ?? 0,
        warmupSteps: num("warmup", { integer: true, min: 0 }) ?? 0,
        decay,
        weightDecay: num("weight-decay", { min: 0 }) ?? 0,
        maxGradNorm: num("max-grad-norm", { min: 0 }) ?? 1,
        lambdaGen: num("lambda-gen") ?? 1,
        lambdaRet: num("lambda-ret") ?? 1,
        collate: { kind: loss, temperature: num("temperature", { min: 1e-6 }) ?? 0.05, nNegPerPos: num("n-neg", { integer: true, min: 0 }) ?? 4, ...(nPos !== undefined ? { nPosPerSample: nPos } : {}) },
      });
      try {
        const resumeFrom = resumeArg;
        let lastCheckpoint: string | null = null;
        if (resumeFrom !== undefined) {
          const ck = await findCheckpoint(resumeFrom);
          await trainer.resume(ck);
          lastCheckpoint = ck;
          if (!args.bools.has("quiet")) process.stderr.write(`train: resumed from ${ck} at step ${trainer.step}/${steps}\n`);
        }
        const log = logFile;
        // A new run starts a new log (created atomically; the previous one must be ours); a resumed run appends.
        if (log !== undefined && resumeFrom === undefined) await writeFileAtomic(log, "train-log", "", { flag: "--log" });
        const progress = trainProgress(steps, args.bools.has("quiet") ? null : stderrSink());
        if (!args.bools.has("quiet")) {
          process.stderr.write(`train: ${data.samples.length} samples, ${data.docs.length} documents; ${rank !== undefined ? `LoRA r=${rank}` : "full fine-tuning"}, ${model.params.length} tensors, ${model.params.reduce((s, p) => s + p.weight.numel, 0)} trainable values\n`);
        }
        await trainer.run({
          saveEvery: saveEvery ?? 0,
          onStep: async (r) => {
            progress.update(r);
            if (log !== undefined) {
              await appendToOutput(log, JSON.stringify({ format: FILE_FORMATS["train-log"], step: r.step, loss: r.loss, loss_gen: r.loss_gen, loss_ret: r.loss_ret, tokens_per_s: r.tokens_per_s, tokens: r.tokens, lr: r.lr, grad_norm: r.grad_norm, pairs: r.pairs, pairs_correct: r.pairs_correct }) + "\n");
            }
          },
          ...(saveEvery !== undefined
            ? {
                checkpoint: async (step: number) => {
                  await ensureOutputDir(out, "model", { flag: "--out", inputs });
                  const dir = join(await ensureSubdir(out, "checkpoints"), `step-${step}`);
                  await trainer.saveCheckpoint(dir, { flag: "--out" });
                  lastCheckpoint = dir;
                },
              }
            : {}),
        }).catch((e: unknown) => {
          progress.done();
          if (!(e instanceof NonFiniteError)) throw e;
          const where = lastCheckpoint ? `the last checkpoint, '${lastCheckpoint}', is kept` : "no checkpoint was saved (--save-every N keeps one)";
          throw new NonFiniteError(`${e.message}; ${where}; no model was written to '${out}' (try a lower --lr)`);
        });
        progress.done();
        // One atomic swap writes the model and (LoRA) OUT/adapter; OUT/checkpoints is carried over.
        const saved = await saveModelDir(decoder, model.lora, out, {
          sourceDir: modelDir,
          addedTokens: missing,
          flag: "--out",
          inputs,
          ...(model.lora ? { adapters: { lora: model.lora, baseModel: modelDir } } : {}),
          ...(saveDtype !== undefined ? { dtype: saveDtype } : {}),
        });
        const last = trainer.history[trainer.history.length - 1];
        process.stdout.write(
          JSON.stringify({ out: outArg, steps: trainer.step, loss: last?.loss ?? null, loss_gen: last?.loss_gen ?? null, loss_ret: last?.loss_ret ?? null, vocab_size: saved.vocabSize, dtype: saved.dtype, files: saved.files, adapter: model.lora ? join(outArg, "adapter") : null }) + "\n",
        );
      } finally {
        trainer.dispose();
        model.dispose();
      }
    } finally {
      grown?.dispose();
      loaded.dispose();
    }
  } finally {
    ctx.destroy();
  }
  return 0;
}
