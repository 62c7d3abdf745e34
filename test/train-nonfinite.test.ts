// Training that diverges: AdamW skips an update whose gradient holds NaN/inf (weights and moments
// unchanged), the Trainer stops with NonFiniteError naming the step without recording it, and
// `onegen train` exits 1 with one line naming the step and the last checkpoint, which stays
// intact; no model is written.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { NonFiniteError } from "../src/errors.js";
import { AdamW, type TrainParam } from "../src/train/optim.js";
import { loadDecoder } from "../src/model/load.js";
import { loadTokenizer } from "../src/tokenizer.js";
import { TrainData } from "../src/train/data.js";
import { TrainModel } from "../src/train/model.js";
import { Trainer, readCheckpoint } from "../src/train/trainer.js";
import { addTokensToDecoder, exportWeights } from "../src/train/save.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { toyTask, writeToyModelDir } from "./fixtures/train-data/toy.js";
import { scratchDir } from "./helpers/scratch.js";

const rng = new Rng(99);

test("AdamW: a gradient holding NaN or inf skips the update (f32 and f16 weights, moments unchanged); the next finite step updates", async () => {
  const ctx = await gpu();
  for (const bad of [NaN, Infinity, -Infinity]) {
    const w32 = rng.fillNormal(1001);
    const w16 = f32ArrayToF16(rng.fillNormal(333));
    const params: TrainParam[] = [
      { name: "a", weight: ctx.upload(w32, [1001], "f32", "a"), grad: ctx.upload(rng.fillNormal(1001), [1001], "f32", "ga"), decay: true },
      { name: "b", weight: ctx.upload(w16, [333], "f16", "b"), grad: ctx.upload(rng.fillNormal(333), [333], "f32", "gb"), decay: false },
    ];
    const opt = await AdamW.create(ctx, params, { lr: 1e-2, maxGradNorm: 1, weightDecay: 0.1 });
    await opt.step(); // one finite step: moments become non-zero
    const snap = async () => [await params[0]!.weight.read(), await params[1]!.weight.read(), ...(await Promise.all(["a", "b"].flatMap((n) => [opt.state(n).m.read(), opt.state(n).v.read(), opt.state(n).master.read()])))];
    const before = await snap();
    const g = rng.fillNormal(333);
    g[332] = bad;
    ctx.write(params[1]!.grad, g);
    await opt.step();
    const { norm } = await opt.lastGradNorm();
    assert.not.ok(Number.isFinite(norm), `norm ${norm} for a ${bad} gradient`);
    const after = await snap();
    after.forEach((x, i) => assert.equal([...x], [...before[i]!], `${bad}: tensor ${i} changed by a skipped step`));
    g[332] = 0.5;
    ctx.write(params[1]!.grad, g);
    await opt.step();
    assert.ok(Number.isFinite((await opt.lastGradNorm()).norm));
    assert.not.equal([...(await params[1]!.weight.read())], [...(before[1]! as Uint16Array)], "a finite step after the skipped one updates");
    opt.dispose();
    for (const p of params) (p.weight.dispose(), p.grad.dispose());
  }
});

let built: Promise<{ root: string; model: string; train: string; db: string }> | null = null;
function fixture() {
  return (built ??= (async () => {
    const root = scratchDir("train-nonfinite");
    const model = join(root, "model");
    await writeToyModelDir(model, { D: 32, L: 2, H: 2, Hkv: 1, F: 64 }, 11);
    const task = toyTask(6, 2, 12);
    await writeFile(join(root, "train.jsonl"), task.train);
    await writeFile(join(root, "db.jsonl"), task.db);
    return { root, model, train: join(root, "train.jsonl"), db: join(root, "db.jsonl") };
  })());
}

test("Trainer: an absurd learning rate diverges at step 2; NonFiniteError names it, nothing is recorded, the weights stay those of step 1", async () => {
  const f = await fixture();
  const ctx = await gpu();
  const tok = await loadTokenizer(f.model, { addedTokens: ["[SE]", "[LK]"] });
  const loaded = await loadDecoder(ctx, f.model, { noTokenizer: true });
  const grown = await addTokensToDecoder(loaded.decoder, tok.vocabSize);
  const data = TrainData.parse(await readFile(f.train, "utf8"), await readFile(f.db, "utf8"), { retrievalTokenIds: [tok.requireTokenId("[LK]")], docTokenIds: [tok.requireTokenId("[SE]")], maxLength: 32, tokenizer: tok, vocabSize: grown.decoder.vocabSize });
  const model = TrainModel.create(grown.decoder, { mode: "full" });
  const trainer = await Trainer.create(model, data, { steps: 4, lr: 1e10, decay: "constant", gradAccum: 2 });
  const r1 = await trainer.trainOneStep();
  assert.ok(Number.isFinite(r1.loss) && Number.isFinite(r1.grad_norm));
  const w1 = await exportWeights(model.decoder);
  const e = await assertRejects(() => trainer.trainOneStep(), NonFiniteError, [/^training diverged at step 2: loss (NaN|-?Infinity) /, /gradient norm/], "step 2");
  assert.not.match(e.message, /\n/);
  assert.is(trainer.step, 1);
  assert.is(trainer.history.length, 1);
  assert.is(trainer.optimizer.stepCount, 1, "the optimizer's count is that of the last finite step");
  assert.is(model.steps, 2, "micro-steps of the last finite step");
  const w2 = await exportWeights(model.decoder);
  for (const [n, w] of w1) assert.equal([...w2.get(n)!.data], [...w.data], `'${n}' changed by the diverged step`);
  trainer.dispose();
  model.dispose();
  grown.dispose();
  loaded.dispose();
});

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli.js");
function train(out: string, f: { model: string; train: string; db: string }, ...extra: string[]) {
  const r = spawnSync(process.execPath, [CLI, "train", "--model", f.model, "--train", f.train, "--db", f.db, "--out", out, "--steps", "4", "--lr", "1e10", "--decay", "constant", "--max-length", "32", "--quiet", ...extra], { encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines: r.stderr.split("\n").filter((l) => l !== "" && !/artificially reduced|XDG_RUNTIME_DIR/.test(l)) };
}

test("onegen train: a run driven to NaN exits 1 with one line naming the step and the last checkpoint; the checkpoint is intact, no model is written", async () => {
  const f = await fixture();
  const out = join(f.root, "out-ckpt");
  const log = join(f.root, "log.jsonl");
  const r = train(out, f, "--save-every", "1", "--log", log);
  assert.is(r.status, 1, r.stderr);
  assert.is(r.stdout, "");
  assert.is(r.lines.length, 1, r.stderr);
  const ck = join(out, "checkpoints", "step-1");
  assert.match(r.lines[0]!, /^onegen train: training diverged at step 2: loss NaN/);
  assert.ok(r.lines[0]!.includes(`the last checkpoint, '${ck}', is kept; no model was written to '${out}'`), r.lines[0]);
  assert.equal((await readdir(out)).sort(), ["checkpoints", "onegen-output.json"], "no model files in --out (only its checkpoints and the output tag)");
  assert.equal(await readdir(join(out, "checkpoints")), ["step-1"], "the diverged state is not checkpointed");
  const { state, tensors } = await readCheckpoint(ck);
  assert.is(state.step, 1);
  assert.is(state.history.length, 1);
  assert.ok(tensors.size > 0);
  for (const [n, t] of tensors) assert.ok(t.every((x) => Number.isFinite(x)), `checkpoint tensor '${n}' is finite`);
  const logged = (await readFile(log, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { step: number; loss: number });
  assert.equal(logged.map((l) => l.step), [1], "only finite steps are logged");
});

test("onegen train: diverging with no checkpoint says so", async () => {
  const f = await fixture();
  const out = join(f.root, "out-none");
  const r = train(out, f);
  assert.is(r.status, 1, r.stderr);
  assert.is(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /^onegen train: training diverged at step 2: .*no checkpoint was saved \(--save-every N keeps one\); no model was written to/);
  const left = await readdir(out).catch(() => [] as string[]);
  assert.equal(left, [], "nothing in --out");
});

test.run();
