// A tiny random Llama trained with OneGen's joint loss on a synthetic retrieval task
// (test/fixtures/train-data/toy.ts): both losses fall, and retrieval accuracy@1 on HELD-OUT
// queries (prompt templates and filler words never trained on), measured with the document index
// (documents encoded at their [SE] token, queries at [LK]), rises well above chance.
// The same at a larger size: bench/train-toy.bench.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { runToy } from "./fixtures/train-data/toy.js";

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test("toy retrieval task: both losses fall and held-out accuracy@1 rises far above chance", async () => {
  const entities = 20;
  const r = await runToy(await gpu(), { entities, perEntity: 3, dims: { D: 48, L: 2, H: 4, Hkv: 2, F: 96 }, steps: 60, batchSize: 6, lr: 3e-3, seed: 9 });
  const gen = r.history.map((h) => h.loss_gen);
  const ret = r.history.map((h) => h.loss_ret);
  const k = 5;
  const [g0, g1] = [mean(gen.slice(0, k)), mean(gen.slice(-k))];
  const [r0, r1] = [mean(ret.slice(0, k)), mean(ret.slice(-k))];
  console.log(`  toy: ${r.history.length} steps in ${r.seconds.toFixed(1)} s; loss_gen ${g0.toFixed(3)} → ${g1.toFixed(3)}, loss_ret ${r0.toFixed(3)} → ${r1.toFixed(3)}; held-out acc@1 ${r.before.toFixed(3)} → ${r.after.toFixed(3)} (chance ${(1 / entities).toFixed(3)})`);
  for (const h of r.history) assert.ok(Number.isFinite(h.loss_gen) && Number.isFinite(h.loss_ret) && h.pairs > 0 && h.tokens > 0 && h.tokens_per_s > 0, `step ${h.step}: ${JSON.stringify(h)}`);
  assert.ok(g1 < 0.7 * g0, `generation loss fell too little: ${g0} → ${g1}`);
  assert.ok(r1 < 0.6 * r0, `retrieval loss fell too little: ${r0} → ${r1}`);
  assert.ok(r.after >= 0.6, `held-out accuracy@1 after training ${r.after} < 0.6`);
  assert.ok(r.after >= r.before + 0.25, `held-out accuracy@1 rose too little: ${r.before} → ${r.after}`);
});

test.run();
