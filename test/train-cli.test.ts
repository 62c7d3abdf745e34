// `onegen train` (src/cli/train.ts) end to end on a random toy model directory with a word-level
// tokenizer: tokens added and the embedding grown, --log JSONL, checkpoints, the saved model and
// adapters; and RESUME: a run interrupted after N/2 steps and resumed from its checkpoint gives
// the same losses and the same weights, bit for bit, as the run that went straight to N.
// (Called in-process through trainCommand until the command is wired into src/cli.ts.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cp, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { LoadError, UsageError } from "../src/errors.js";
import { trainCommand } from "../src/cli/train.js";
import { openFileSource } from "../src/io/source.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { loadDecoder } from "../src/model/load.js";
import { loadTokenizer } from "../src/tokenizer.js";
import { TrainData } from "../src/train/data.js";
import { TrainModel } from "../src/train/model.js";
import { Trainer, type StepRecord } from "../src/train/trainer.js";
import { addTokensToDecoder, exportWeights } from "../src/train/save.js";
import { toyTask, toyVocab, writeToyModelDir } from "./fixtures/train-data/toy.js";
import { scratchDir } from "./helpers/scratch.js";

const DIMS = { D: 32, L: 2, H: 2, Hkv: 1, F: 64 };

async function capture(fn: () => Promise<number>): Promise<{ rc: number; out: string; err: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  let out = "";
  let err = "";
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((err += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString()), true)) as typeof process.stderr.write;
  try {
    return { rc: await fn(), out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

let built: Promise<{ root: string; model: string; train: string; db: string }> | null = null;
function fixture() {
  return (built ??= (async () => {
    const root = scratchDir("train-cli");
    const model = join(root, "model");
    await writeToyModelDir(model, DIMS, 11);
    const task = toyTask(6, 2, 12);
    await writeFile(join(root, "train.jsonl"), task.train);
    await writeFile(join(root, "db.jsonl"), task.db);
    return { root, model, train: join(root, "train.jsonl"), db: join(root, "db.jsonl") };
  })());
}

const readLog = async (f: string) => (await readFile(f, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
async function weights(dir: string, file: string): Promise<Map<string, Float32Array>> {
  const f = await SafetensorsFile.open(await openFileSource(join(dir, file)));
  const m = new Map<string, Float32Array>();
  for (const n of f.names()) m.set(n, await f.readF32(n));
  await f.close();
  return m;
}
function sameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  assert.equal([...a.keys()].sort(), [...b.keys()].sort(), `${what}: tensor names`);
  for (const [n, x] of a) {
    const y = b.get(n)!;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) assert.unreachable(`${what}: '${n}'[${i}] ${x[i]} vs ${y[i]}`);
  }
}

const FLAGS = ["--lora", "4", "--lora-alpha", "8", "--lora-dropout", "0.1", "--steps", "6", "--lr", "5e-3", "--batch-size", "2", "--grad-accum", "2", "--seed", "3", "--warmup", "1", "--save-every", "3", "--lambda-ret", "0.5", "--n-neg", "2", "--max-length", "32", "--quiet"];

test("onegen train (LoRA): adds [LK]/[SE], logs every step, checkpoints, saves a model directory and PEFT adapters", async () => {
  const f = await fixture();
  const out = join(f.root, "out-a");
  const log = join(f.root, "a.jsonl");
  const r = await capture(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", out, "--log", log, ...FLAGS]));
  assert.is(r.rc, 0, r.err);
  const summary = JSON.parse(r.out) as { steps: number; vocab_size: number; files: string[]; adapter: string };
  assert.is(summary.steps, 6);
  const V = toyVocab().length;
  assert.is(summary.vocab_size, V + 2, "[SE] and [LK] added");
  const lines = await readLog(log);
  assert.equal(lines.map((l) => l.step), [1, 2, 3, 4, 5, 6]);
  for (const l of lines) {
    for (const k of ["loss_gen", "loss_ret", "tokens_per_s"]) assert.ok(Number.isFinite(l[k]) && l[k]! >= 0, `step ${l.step}: ${k} = ${l[k]}`);
    assert.ok(l.tokens_per_s! > 0 && l.loss_ret! > 0);
    assert.ok(Math.abs(l.loss! - (l.loss_gen! + 0.5 * l.loss_ret!)) < 1e-9 * Math.max(1, l.loss!), "loss = λ_gen·L_gen + λ_ret·L_ret");
  }
  assert.equal((await readdir(join(out, "checkpoints"))).sort(), ["step-3", "step-6"]);
  const config = JSON.parse(await readFile(join(out, "config.json"), "utf8")) as Record<string, unknown>;
  assert.is(config.vocab_size, V + 2);
  assert.is(config.hidden_size, DIMS.D);
  const tok = await loadTokenizer(out);
  assert.is(tok.tokenToId("[LK]"), V, "added in option order: retrieval tokens, then document tokens");
  assert.is(tok.tokenToId("[SE]"), V + 1);
  const tc = JSON.parse(await readFile(join(out, "tokenizer_config.json"), "utf8")) as { added_tokens_decoder: Record<string, { content: string }> };
  assert.is(tc.added_tokens_decoder[String(V + 1)]!.content, "[SE]");
  assert.ok((await readdir(out)).includes("generation_config.json"));
  const adapterConfig = JSON.parse(await readFile(join(out, "adapter", "adapter_config.json"), "utf8")) as Record<string, unknown>;
  assert.is(adapterConfig.r, 4);
  assert.is(adapterConfig.lora_alpha, 8);
  const ad = await weights(join(out, "adapter"), "adapter_model.safetensors");
  assert.ok(ad.has("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
  assert.is(ad.size, 2 * 7 * DIMS.L);
  // the saved model loads, with the grown vocabulary
  const ctx = await gpu();
  const m = await loadDecoder(ctx, out);
  assert.is(m.decoder.vocabSize, V + 2);
  m.dispose();
});

test("onegen train --resume: interrupted at step 3 and resumed gives the straight run's losses and weights exactly", async () => {
  const f = await fixture();
  const outA = join(f.root, "out-a"); // from the previous test: 6 steps straight
  const a = await readLog(join(f.root, "a.jsonl"));
  // "crash" after step 3: a fresh output directory holding only that checkpoint
  const outB = join(f.root, "out-b");
  await cp(join(outA, "checkpoints", "step-3"), join(outB, "checkpoints", "step-3"), { recursive: true });
  await cp(join(outA, "onegen-output.json"), join(outB, "onegen-output.json")); // its output tag, as a real run leaves it
  const logB = join(f.root, "b.jsonl");
  await writeFile(logB, (await readFile(join(f.root, "a.jsonl"), "utf8")).trim().split("\n").slice(0, 3).join("\n") + "\n");
  const r = await capture(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", outB, "--log", logB, "--resume", outB, ...FLAGS]));
  assert.is(r.rc, 0, r.err);
  const b = await readLog(logB);
  assert.equal(b.map((l) => l.step), [1, 2, 3, 4, 5, 6]);
  for (let i = 3; i < 6; i++) for (const k of ["loss", "loss_gen", "loss_ret", "lr", "grad_norm", "tokens", "pairs"]) assert.is(b[i]![k], a[i]![k], `step ${i + 1} ${k}`);
  sameWeights(await weights(outA, "model.safetensors"), await weights(outB, "model.safetensors"), "merged model");
  sameWeights(await weights(join(outA, "adapter"), "adapter_model.safetensors"), await weights(join(outB, "adapter"), "adapter_model.safetensors"), "adapters");
  // a resume with a changed trajectory option is refused, naming it
  await assertRejects(
    () => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", join(f.root, "out-c"), "--resume", join(outA, "checkpoints", "step-3"), ...FLAGS.map((x) => (x === "5e-3" ? "4e-3" : x))]),
    UsageError,
    [/lr 0\.005 → 0\.004/], "train",
  );
});

test("Trainer API (full fine-tuning): N steps straight = N/2, dispose everything, reload from disk, resume, N/2 more", async () => {
  const f = await fixture();
  const ctx = await gpu();
  const task = { train: await readFile(f.train, "utf8"), db: await readFile(f.db, "utf8") };
  const opts = { steps: 4, lr: 2e-3, batchSize: 3, gradAccum: 2, seed: 9, warmupSteps: 1, weightDecay: 0.01, collate: { nNegPerPos: 2, kind: "bpr" as const, temperature: 0.1 } };
  const setup = async () => {
    const tok = await loadTokenizer(f.model, { addedTokens: ["[SE]", "[LK]"] });
    const loaded = await loadDecoder(ctx, f.model, { noTokenizer: true });
    const grown = await addTokensToDecoder(loaded.decoder, tok.vocabSize);
    const data = TrainData.parse(task.train, task.db, { retrievalTokenIds: [tok.requireTokenId("[LK]")], docTokenIds: [tok.requireTokenId("[SE]")], maxLength: 32, tokenizer: tok, vocabSize: grown.decoder.vocabSize });
    const model = TrainModel.create(grown.decoder, { mode: "full" });
    const trainer = await Trainer.create(model, data, opts);
    return { trainer, model, dispose: () => (trainer.dispose(), model.dispose(), grown.dispose(), loaded.dispose()) };
  };
  const A = await setup();
  const straight = await A.trainer.run();
  const wA = await exportWeights(A.model.decoder);
  A.dispose();

  const ck = join(f.root, "api-ckpt");
  const B1 = await setup();
  const first = await B1.trainer.run({ until: 2, saveEvery: 2, checkpoint: () => B1.trainer.saveCheckpoint(ck) });
  // the library refuses to write a checkpoint over a directory it did not write (the input model here)
  const modelFiles = async () => Promise.all((await readdir(f.model)).sort().map(async (n) => [n, await readFile(join(f.model, n), "utf8")]));
  const modelBefore = await modelFiles();
  await assertRejects(() => B1.trainer.saveCheckpoint(f.model), UsageError, [/saveCheckpoint: dir '.*' is a non-empty directory that onegen did not write/], "checkpoint over a model");
  await assertRejects(() => B1.trainer.saveCheckpoint(join(f.root, "no", "such", "ck")), UsageError, [/does not exist/], "checkpoint into a missing directory");
  assert.equal(await modelFiles(), modelBefore, "the model directory is intact");
  B1.dispose(); // the "crash": nothing survives but the checkpoint on disk
  const B2 = await setup();
  await B2.trainer.resume(ck);
  assert.is(B2.trainer.step, 2);
  const second = await B2.trainer.run();
  const wB = await exportWeights(B2.model.decoder);
  B2.dispose();

  const pick = (r: StepRecord) => [r.step, r.loss, r.loss_gen, r.loss_ret, r.lr, r.grad_norm, r.tokens, r.pairs, r.pairs_correct];
  assert.equal([...first, ...second].map(pick), straight.map(pick));
  assert.is(straight.length, 4);
  for (const [n, w] of wA) {
    const v = wB.get(n)!.data;
    for (let i = 0; i < w.data.length; i++) if (!Object.is(w.data[i], v[i])) assert.unreachable(`'${n}'[${i}]: ${w.data[i]} straight vs ${v[i]} resumed`);
  }
  // training changed the weights (the comparison above is not between two untouched models)
  const fresh = await setup();
  const w0 = await exportWeights(fresh.model.decoder);
  fresh.dispose();
  let moved = 0;
  for (const [n, w] of wA) if (w.data.some((x, i) => x !== w0.get(n)!.data[i])) moved++;
  assert.is(moved, wA.size, "every weight was trained");
});

test("onegen train: usage and data errors", async () => {
  const f = await fixture();
  await assertRejects(() => trainCommand(["--model", f.model, "--db", f.db, "--out", join(f.root, "x")]), UsageError, [/--train FILE|--train is required/], "train");
  await assertRejects(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", f.model]), UsageError, [/--out '.*' is the --model input/], "train");
  await assertRejects(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", join(f.root, "x"), "--lora-alpha", "3"]), UsageError, [/need --lora R/], "train");
  // a log pointed at an input file is refused before anything is written: the data stays intact
  const trainBefore = await readFile(f.train, "utf8");
  await assertRejects(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", join(f.root, "x"), "--log", f.train]), UsageError, [/--log '.*' is the --train input/], "train");
  await assertRejects(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", join(f.root, "x"), "--log", f.db]), UsageError, [/--log '.*' is the --db input/], "train");
  assert.is(await readFile(f.train, "utf8"), trainBefore, "the training file is untouched");
  const bad = join(f.root, "bad.jsonl");
  await writeFile(bad, (await readFile(f.train, "utf8")).replace('[["E1"]]', '[["E99"]]'));
  await assertRejects(() => trainCommand(["--model", f.model, "--train", bad, "--db", f.db, "--out", join(f.root, "x"), "--quiet"]), LoadError, [/bad\.jsonl:\d+: messages\[1\]\.positive\[0\]: unknown uid 'E99'/], "train");
  await assertRejects(() => trainCommand(["--model", f.model, "--train", f.train, "--db", f.db, "--out", join(f.root, "x"), "--max-length", "8", "--quiet"]), LoadError, [/train\.jsonl:1: 10 tokens, over the maximum length of 8/], "train");
});

test.run();
