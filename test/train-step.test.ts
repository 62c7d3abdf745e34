// One OneGen training step on the GPU against an independent float64 PyTorch step
// (scripts/golden/train_step.py on test/fixtures/models/llama-gqa-f32), gradient checks of both
// losses, and a tiny toy run whose losses fall.
//
// Tolerance of the golden comparison: the step runs in f32 (f32 weights, f32 activations and
// K/V); the float64 golden differs by f32 rounding amplified through two layers and the loss:
// losses rtol 1e-5; each gradient tensor relative L2 ≤ 1e-4 (measured on lavapipe, 2026-11-25:
// worst 9.0e-7 full, 1.1e-6 LoRA; see the log lines) and element-wise atol 1e-4·max|g| + rtol 1e-3.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { relL2 } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { compareGrad, readStepGolden, toyBatch, toyDecoder } from "./helpers/train.js";
import { loadDecoder } from "../src/model/load.js";
import { TrainModel, trainStep } from "../src/train/model.js";
import { contrastiveCandidates, contrastiveLoss, IGNORE_LABEL, nextTokenLabels, type ContrastiveSpec } from "../src/train/losses.js";
import { crossEntropyReference } from "../src/train/ops/cross_entropy.js";
import { numericGrad } from "../src/train/ops/gradcheck.js";
import { AdamW } from "../src/train/optim.js";
import { ShapeError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";

test("labels: nextTokenLabels equals the golden's independent labels (prompt, paragraph, after-RQ masked)", async () => {
  const g = await readStepGolden();
  const labels = nextTokenLabels(g.batch.ids, g.batch.lengths, g.target, [g.rq]);
  assertEqualArrays(labels, g.batch.labels, "labels");
  // The last row of each sequence and the row of each RQ token are masked.
  assert.is(labels[19], IGNORE_LABEL);
  assert.is(labels[32], IGNORE_LABEL);
  for (let t = 0; t < labels.length; t++) if (g.batch.ids[t] === g.rq) assert.is(labels[t], IGNORE_LABEL, `row ${t} holds RQ`);
  assert.throws(() => nextTokenLabels([1, 2], [3], [1, 1]), /sum to 2/);
  await g.file.close();
});

test("train step (full fine-tuning): losses and every gradient match the float64 PyTorch step", async () => {
  const ctx = await gpu();
  const g = await readStepGolden();
  const loaded = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, dtype: "f32" });
  const model = TrainModel.create(loaded.decoder, { mode: "full" });
  try {
    const t0 = performance.now();
    const res = await trainStep(model, g.batch, { lambdaGen: g.lambdaGen, lambdaRet: g.lambdaRet });
    const ms = performance.now() - t0;
    const want = await g.f64("loss");
    assertClose([res.lossGen, res.lossRet], [want[0]!, want[1]!], { atol: 0, rtol: 1e-5 }, "L_gen, L_ret");
    assert.is(res.genTokens, Array.from(g.batch.labels).filter((l) => l !== IGNORE_LABEL).length);
    assert.is(res.pairs, 3);
    assert.ok(Math.abs(res.loss - (g.lambdaGen * want[0]! + g.lambdaRet * want[1]!)) < 1e-4, "total loss");
    let worst = 0;
    let count = 0;
    for (const [name, grad] of res.grads) {
      worst = Math.max(worst, compareGrad(await grad.readF32(), await g.f32(`grad.${name}`), name));
      count++;
    }
    assert.is(count, 2 + 2 * 9 + 1, "embed, lm_head, norm and 9 tensors per layer");
    console.log(`  full step T=${g.batch.ids.length}: ${ms.toFixed(0)} ms, worst gradient relative L2 ${worst.toExponential(2)}`);

    // Accumulation: a second step with accumulate doubles every gradient.
    const again = await trainStep(model, g.batch, { lambdaGen: g.lambdaGen, lambdaRet: g.lambdaRet, accumulate: true });
    const qn = "model.layers.1.self_attn.q_proj.weight";
    const q2 = await again.grads.get(qn)!.readF32();
    compareGrad(q2.map((x) => x / 2), await g.f32(`grad.${qn}`), "accumulated q_proj / 2");

    // BPR: the same hidden states give the golden's BPR value.
    const bpr = await trainStep(model, { ...g.batch, retrieval: { ...g.batch.retrieval!, kind: "bpr" } }, { lambdaGen: 1, lambdaRet: 1 });
    assertClose([bpr.lossRet], [want[2]!], { atol: 0, rtol: 1e-5 }, "L_ret (BPR)");
  } finally {
    model.dispose();
    loaded.dispose();
    await g.file.close();
  }
});

test("train step with f16 weights: runs, gradients near the f32 golden, AdamW writes the f16 weights back", async () => {
  const ctx = await gpu();
  const g = await readStepGolden();
  const loaded = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, dtype: "f16" });
  const model = TrainModel.create(loaded.decoder);
  try {
    const res = await trainStep(model, g.batch, { lambdaGen: g.lambdaGen, lambdaRet: g.lambdaRet });
    const want = await g.f64("loss");
    // Weights rounded to f16 (relative 2^-11) move the losses and gradients by ~1e-3 relative.
    assertClose([res.lossGen, res.lossRet], [want[0]!, want[1]!], { atol: 0, rtol: 1e-2 }, "L_gen, L_ret (f16 weights)");
    let worst = 0;
    for (const [name, grad] of res.grads) worst = Math.max(worst, relL2(await grad.readF32(), await g.f32(`grad.${name}`), 1));
    console.log(`  f16 weights: worst gradient relative L2 vs the f32 golden ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-2, `worst gradient relative L2 ${worst}`);
    const q = loaded.decoder.weights.layers[0]!.q;
    assert.is(q.dtype, "f16");
    const before = await q.read();
    const opt = await AdamW.create(ctx, model.params, { lr: 1e-3 });
    await opt.step();
    const after = await q.read();
    assertEqualArrays(after, f32ArrayToF16(await opt.state("model.layers.0.self_attn.q_proj.weight").master.readF32()), "f16 weights = rounded master");
    assert.ok(after.some((v, i) => v !== before[i]), "the f16 weights moved");
    opt.dispose();
  } finally {
    model.dispose();
    loaded.dispose();
    await g.file.close();
  }
});

test("train step, Qwen2 fixture (q/k/v biases, tied embeddings): gradients = directional derivatives of the GPU loss", async () => {
  const ctx = await gpu();
  const loaded = await loadDecoder(ctx, modelFixture("qwen2-bias-tied-f16"), { noTokenizer: true, dtype: "f32" });
  const model = TrainModel.create(loaded.decoder);
  const rng = new Rng(99);
  const V = loaded.decoder.vocabSize;
  const ids = Array.from({ length: 14 }, () => rng.int(V));
  const batch = {
    ids,
    lengths: [9, 5],
    labels: nextTokenLabels(ids, [9, 5], ids.map((_, i) => (i % 9 > 2 ? 1 : 0))),
    retrieval: { docs: [3, 12], pairs: [{ anchor: 7, positive: 1 }, { anchor: 8, positive: 0 }], temperature: 0.2 },
  };
  try {
    const res = await trainStep(model, batch);
    const names = [...res.grads.keys()];
    assert.ok(names.includes("model.layers.1.self_attn.k_proj.bias"), "bias gradients");
    assert.ok(!names.includes("lm_head.weight"), "tied: no separate lm_head gradient");
    const w = loaded.decoder.weights;
    for (const [name, t] of [["model.embed_tokens.weight", w.embed], ["model.layers.0.self_attn.q_proj.bias", w.layers[0]!.qBias!], ["model.layers.1.mlp.down_proj.weight", w.layers[1]!.down]] as [string, import("../src/gpu/tensor.js").Tensor][]) {
      const g = await res.grads.get(name)!.readF32();
      const w0 = await t.readF32();
      const dir = rng.fillNormal(w0.length);
      const len = Math.hypot(...dir);
      const h = 1e-2;
      const at = async (s: number) => {
        ctx.write(t, w0.map((v, i) => v + (s * h * dir[i]!) / len));
        return (await trainStep(model, batch)).loss;
      };
      const fd = ((await at(1)) - (await at(-1))) / (2 * h);
      ctx.write(t, w0);
      let an = 0;
      for (let i = 0; i < g.length; i++) an += (g[i]! * dir[i]!) / len;
      assert.ok(Math.abs(fd - an) <= 5e-3 * Math.abs(an) + 2e-4, `${name}: analytic ${an}, central difference ${fd}`);
      console.log(`  qwen2 ${name}·dir: analytic ${an.toFixed(5)}, central difference ${fd.toFixed(5)}`);
    }
  } finally {
    model.dispose();
    loaded.dispose();
  }
});

test("train step: bad batches are refused with the offending entry named", async () => {
  const ctx = await gpu();
  const g = await readStepGolden();
  const loaded = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, dtype: "f32" });
  const model = TrainModel.create(loaded.decoder);
  try {
    const b = g.batch;
    await assertRejects(() => trainStep(model, { ...b, lengths: [20, 12] }), ShapeError, [/sum to the 33 ids/], "lengths");
    await assertRejects(() => trainStep(model, { ...b, ids: [...Array.from(b.ids).slice(0, 32), 384] }), UsageError, [/token id 384 at position 32/], "id ≥ V");
    const labels = Uint32Array.from(b.labels);
    labels[3] = 999;
    await assertRejects(() => trainStep(model, { ...b, labels }), UsageError, [/label 999 at row 3/], "label ≥ V");
    await assertRejects(() => trainStep(model, { ...b, retrieval: { ...b.retrieval!, docs: [5, 40] } }), UsageError, [/docs\[1\] = 40/], "doc row ≥ T");
    await assertRejects(() => trainStep(model, { ...b, retrieval: { docs: [1, 2], pairs: [{ anchor: 0, positive: 2 }] } }), UsageError, [/names document 2/], "positive ≥ #docs");
  } finally {
    model.dispose();
    loaded.dispose();
    await g.file.close();
  }
});

// ---------------------------------------------------------------- gradient checks of the losses

test("losses: contrastive InfoNCE and BPR gradients vs finite differences; candidates; CE on masked labels", () => {
  const rng = new Rng(424242);
  const D = 7;
  const rows = [0, 3, 4, 6, 8, 9];
  const E = Float64Array.from(rng.fillNormal(rows.length * D));
  const spec: ContrastiveSpec = { docs: [4, 6, 8, 9], pairs: [{ anchor: 0, positive: 1, negatives: [2] }, { anchor: 3, positive: 3, negatives: [0] }, { anchor: 3, positive: 2 }], temperature: 0.2 };
  assert.equal(contrastiveCandidates(spec, 0), [1, 2, 0, 3]);
  assert.equal(contrastiveCandidates(spec, 1), [3, 0, 1], "the same anchor's other positive (2) is not a negative");
  assert.equal(contrastiveCandidates(spec, 2), [2, 0, 1]);
  assert.equal(contrastiveCandidates({ ...spec, inBatch: false }, 0), [1, 2]);
  for (const kind of ["infonce", "bpr"] as const) {
    for (const inBatch of [true, false]) {
      const s = { ...spec, kind, inBatch };
      const res = contrastiveLoss(E, rows, D, s, { normalizer: 2.5 });
      assert.ok(res.loss > 0 && Number.isFinite(res.loss));
      const fd = numericGrad(() => contrastiveLoss(E, rows, D, s, { normalizer: 2.5 }).loss, E, 1e-6);
      assertClose(res.dE, fd, { atol: 1e-8, rtol: 1e-6 }, `${kind} inBatch=${inBatch}: dE vs FD`);
    }
  }
  // Perfectly aligned anchors and positives, orthogonal negatives: InfoNCE near 0 at small τ, all correct.
  const e2 = new Float64Array([1, 0, 0, 1, 0, 0, 0, 1, 0]);
  const r2 = contrastiveLoss(e2, [0, 1, 2], 3, { docs: [1, 2], pairs: [{ anchor: 0, positive: 0 }], temperature: 0.01 });
  assert.ok(r2.loss < 1e-30 && r2.correct === 1, `aligned: ${r2.loss}`);

  // L_gen: cross-entropy over labels from nextTokenLabels, gradient vs FD of the logits.
  const ids = [5, 2, 7, 7, 1, 3, 6];
  const labels = nextTokenLabels(ids, [4, 3], [0, 1, 1, 1, 0, 1, 1], [7]);
  assertEqualArrays(labels, [2, 7, IGNORE_LABEL, IGNORE_LABEL, 3, 6, IGNORE_LABEL], "labels: RQ is a target, the row after it (RQ's own row) and sequence ends are masked");
  const V = 9;
  const logits = Float64Array.from(rng.fillNormal(ids.length * V));
  const ce = crossEntropyReference(logits, labels, ids.length, V, { scale: 0.7 });
  assertClose(ce.dlogits, numericGrad(() => crossEntropyReference(logits, labels, ids.length, V, { scale: 0.7 }).loss, logits), { atol: 1e-8, rtol: 1e-6 }, "L_gen dlogits vs FD");
});

// ---------------------------------------------------------------- toy run

test("toy run: full fine-tuning with AdamW, both losses fall; the run is reproducible", async () => {
  const ctx = await gpu();
  const curve = async (): Promise<{ gen: number[]; ret: number[] }> => {
    const toy = toyDecoder(ctx, 7);
    const model = TrainModel.create(toy.decoder);
    const opt = await AdamW.create(ctx, model.params, { lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1, schedule: { warmupSteps: 3, totalSteps: 40, decay: "cosine", minLrRatio: 0.1 } });
    const batch = toyBatch(48);
    const gen: number[] = [];
    const ret: number[] = [];
    try {
      for (let s = 0; s < 25; s++) {
        const r = await trainStep(model, batch, { lambdaGen: 1, lambdaRet: 0.5 });
        gen.push(r.lossGen);
        ret.push(r.lossRet);
        await opt.step();
      }
    } finally {
      opt.dispose();
      model.dispose();
      toy.dispose();
    }
    return { gen, ret };
  };
  const t0 = performance.now();
  const a = await curve();
  const ms = performance.now() - t0;
  console.log(`  toy run: 25 steps ${ms.toFixed(0)} ms; L_gen ${a.gen[0]!.toFixed(3)} → ${a.gen.at(-1)!.toFixed(3)}, L_ret ${a.ret[0]!.toFixed(3)} → ${a.ret.at(-1)!.toFixed(3)}`);
  assert.ok(a.gen.at(-1)! < 0.3 * a.gen[0]!, `L_gen fell: ${a.gen.map((x) => x.toFixed(2)).join(" ")}`);
  assert.ok(a.ret.at(-1)! < 0.5 * a.ret[0]!, `L_ret fell: ${a.ret.map((x) => x.toFixed(2)).join(" ")}`);
  const b = await curve();
  assertEqualArrays(b.gen, a.gen, "same seed, same L_gen curve");
  assertEqualArrays(b.ret, a.ret, "same seed, same L_ret curve");
});

test.run();
