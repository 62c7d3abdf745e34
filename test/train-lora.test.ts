// LoRA training: adapter gradients against the float64 PyTorch step (scripts/golden/train_step.py,
// r 4, alpha 8, all seven projections), the seeded dropout kernel against its reference and its
// backward against a directional derivative, merging (merged model = adapted model), a toy run
// with the base frozen, and PEFT naming. Golden tolerance as test/train-step.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { modelFixture } from "./helpers/fixtures.js";
import { compareGrad, readStepGolden, toyBatch, toyDecoder } from "./helpers/train.js";
import { loadDecoder } from "../src/model/load.js";
import { Decoder, type DecoderWeights, type LayerWeights } from "../src/model/decoder.js";
import { TrainModel, trainStep } from "../src/train/model.js";
import { LORA_MODULE_WEIGHTS, LORA_MODULES, loraDropout, loraDropoutReference, loraDropoutSalt, mergeLoraWeights, moduleName } from "../src/train/lora.js";
import { AdamW } from "../src/train/optim.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

test("LoRA step: losses and every adapter gradient match the float64 PyTorch step; base frozen", async () => {
  const ctx = await gpu();
  const g = await readStepGolden();
  const loaded = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, dtype: "f32" });
  const model = TrainModel.create(loaded.decoder, { mode: "lora", lora: { rank: g.loraRank, alpha: g.loraAlpha } });
  try {
    for (let l = 0; l < 2; l++) {
      for (const m of LORA_MODULES) {
        const n = moduleName(l, m);
        model.lora!.set(l, m, await g.f32(`lora.${n}.A`), await g.f32(`lora.${n}.B`));
      }
    }
    assert.is(model.params.length, 2 * 7 * 2, "only A and B of 7 modules × 2 layers are trainable");
    assert.is(model.gradFor(loaded.decoder.weights.layers[0]!.q), null);
    const res = await trainStep(model, g.batch, { lambdaGen: g.lambdaGen, lambdaRet: g.lambdaRet });
    const want = await g.f64("lora_loss");
    assertClose([res.lossGen, res.lossRet], [want[0]!, want[1]!], { atol: 0, rtol: 1e-5 }, "L_gen, L_ret with adapters");
    let worst = 0;
    for (const a of model.lora!.list) {
      const n = moduleName(a.layer, a.module);
      worst = Math.max(worst, compareGrad(await a.gradA.readF32(), await g.f32(`lora_grad.${n}.A`), `${n} dA`));
      worst = Math.max(worst, compareGrad(await a.gradB.readF32(), await g.f32(`lora_grad.${n}.B`), `${n} dB`));
    }
    console.log(`  LoRA step: worst adapter gradient relative L2 ${worst.toExponential(2)}`);
    const { tensors, config } = await model.lora!.tensors();
    assert.ok(tensors.has("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    assert.equal(tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!.shape, [4, 64]);
    assert.is(config["r"], 4);
    assert.is(config["lora_alpha"], 8);
  } finally {
    model.dispose();
    loaded.dispose();
    await g.file.close();
  }
});

test("LoRA dropout kernel: mask and scaling vs reference, accumulate, rate ≈ p; bad p refused", async () => {
  const ctx = await gpu();
  const rng = new Rng(77);
  for (const [n, p] of [[1, 0.5], [1000, 0.3], [4099, 0.1], [64, 0]] as [number, number][]) {
    const x = rng.fillNormal(n);
    const prev = rng.fillNormal(n);
    const salt = loraDropoutSalt(9, 3, 1, 2);
    const xt = ctx.upload(x, [n], "f32", "x");
    const out = await loraDropout(ctx, xt, salt, p);
    assertClose(await out.read(), loraDropoutReference(x, salt, p), { atol: 0, rtol: 0 }, `n=${n} p=${p}`);
    const acc = ctx.upload(prev, [n], "f32", "acc");
    await loraDropout(ctx, xt, salt, p, { out: acc, accumulate: true });
    assertClose(await acc.read(), loraDropoutReference(x, salt, p, prev), { atol: 1e-6, rtol: 1e-6 }, `accumulate n=${n}`);
    if (n >= 1000) {
      const dropped = Array.from(loraDropoutReference(new Float32Array(n).fill(1), salt, p)).filter((v) => v === 0).length / n;
      assert.ok(Math.abs(dropped - p) < 0.05, `drop rate ${dropped} vs p ${p}`);
    }
    for (const t of [xt, out, acc]) t.dispose();
  }
  assert.not.equal(loraDropoutSalt(9, 3, 1, 2), loraDropoutSalt(9, 4, 1, 2), "the step changes the mask");
  await assertRejects(() => loraDropout(ctx, ctx.empty([4], "f32", "x"), 1, 1), UsageError, [/p must lie in \[0, 1\)/], "p = 1");
});

test("LoRA with dropout: adapter gradients equal a directional derivative of the GPU loss (same masks)", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 21);
  const model = TrainModel.create(toy.decoder, { mode: "lora", lora: { rank: 3, alpha: 6, dropout: 0.25, seed: 5, targets: ["q_proj", "v_proj", "up_proj", "down_proj"] } });
  const batch = toyBatch(48);
  const rng = new Rng(8);
  try {
    for (const a of model.lora!.list) model.ctx.write(a.B, rng.fillNormal(a.B.numel, 0.3));
    const base = await trainStep(model, batch, { lambdaRet: 0.5, dropoutStep: 4 });
    const ad = model.lora!.get(1, "up_proj")!;
    for (const [which, t, grad] of [["A", ad.A, ad.gradA], ["B", ad.B, ad.gradB]] as [string, Tensor, Tensor][]) {
      const g = await grad.readF32();
      const w0 = await t.readF32();
      const dir = rng.fillNormal(w0.length);
      const len = Math.hypot(...dir);
      dir.forEach((v, i) => (dir[i] = v / len)); // unit direction: the step is h long
      const h = 1e-2;
      const lossAt = async (s: number) => {
        ctx.write(t, w0.map((v, i) => v + s * h * dir[i]!));
        return (await trainStep(model, batch, { lambdaRet: 0.5, dropoutStep: 4 })).loss;
      };
      const fd = ((await lossAt(1)) - (await lossAt(-1))) / (2 * h);
      ctx.write(t, w0);
      let an = 0;
      for (let i = 0; i < g.length; i++) an += g[i]! * dir[i]!;
      assert.ok(Math.abs(fd - an) <= 2e-3 * Math.abs(an) + 1e-4, `d${which}·dir: analytic ${an}, central difference ${fd}`);
      console.log(`  dropout 0.25, d${which}·dir: analytic ${an.toFixed(6)}, central difference ${fd.toFixed(6)}`);
    }
    // Another mask step gives another loss (the masks are in effect).
    const other = await trainStep(model, batch, { lambdaRet: 0.5, dropoutStep: 5 });
    assert.ok(other.loss !== base.loss, "dropout masks change with the step");
  } finally {
    model.dispose();
    toy.dispose();
  }
});

test("LoRA toy run: losses fall with the base frozen; merged weights reproduce the adapted model", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 3);
  const model = TrainModel.create(toy.decoder, { mode: "lora", lora: { rank: 4, alpha: 8, seed: 1 } });
  const opt = await AdamW.create(ctx, model.params, { lr: 2e-2, maxGradNorm: 1 });
  const batch = toyBatch(48);
  const w = toy.decoder.weights;
  const before = await w.layers[0]!.q.readF32();
  const losses: number[] = [];
  try {
    for (let s = 0; s < 20; s++) {
      losses.push((await trainStep(model, batch, { lambdaRet: 0.5 })).loss);
      await opt.step();
    }
    console.log(`  LoRA toy run: loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)}`);
    assert.ok(losses.at(-1)! < 0.5 * losses[0]!, `loss fell: ${losses.map((x) => x.toFixed(2)).join(" ")}`);
    assertEqualArrays(await w.layers[0]!.q.readF32(), before, "base q_proj unchanged");
    const adapted = await trainStep(model, batch, { lambdaRet: 0.5 });

    // Merge: a decoder whose adapted projections hold W + s·B·A gives the same losses without adapters.
    const merged = await mergeLoraWeights(w.layers, model.lora!);
    assert.is(merged.size, 2 * 7);
    const made: Tensor[] = [];
    const layers: LayerWeights[] = w.layers.map((L, l) => {
      const out = { ...L };
      for (const m of LORA_MODULES) {
        const field = LORA_MODULE_WEIGHTS[m].weight;
        const src = L[field] as Tensor;
        const t = ctx.upload(merged.get(`${moduleName(l, m)}.weight`)!, src.shape, "f32", `merged.${moduleName(l, m)}`);
        made.push(t);
        (out as Record<string, unknown>)[field] = t;
      }
      return out;
    });
    const mw: DecoderWeights = { ...w, layers };
    const full = TrainModel.create(new Decoder(ctx, toy.decoder.config, mw));
    const again = await trainStep(full, batch, { lambdaRet: 0.5 });
    assertClose([again.lossGen, again.lossRet], [adapted.lossGen, adapted.lossRet], { atol: 1e-5, rtol: 1e-4 }, "merged model losses = adapted model losses");
    full.dispose();
    made.forEach((t) => t.dispose());
  } finally {
    opt.dispose();
    model.dispose();
    toy.dispose();
  }
});

test("LoRA config errors name the field", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 4);
  try {
    assert.throws(() => TrainModel.create(toy.decoder, { mode: "lora", lora: { rank: 0, alpha: 1 } }), /rank must be a positive integer/);
    assert.throws(() => TrainModel.create(toy.decoder, { mode: "lora", lora: { rank: 2, alpha: 1, dropout: 1 } }), /dropout must lie in/);
    assert.throws(() => TrainModel.create(toy.decoder, { mode: "lora", lora: { rank: 2, alpha: 1, targets: ["qkv" as never] } }), /unknown target module 'qkv'/);
  } finally {
    toy.dispose();
  }
});

test.run();
