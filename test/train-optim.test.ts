// AdamW (kernels/adamw.wgsl) against its float64 CPU reference, the reference against
// torch.optim.AdamW + clip_grad_norm_ (scripts/golden/train_step.py), schedules, windows over a
// small binding limit, and bitwise reproducibility.
//
// Tolerances: one f32 update differs from float64 by a few ulps of w and of the moments; Adam's
// m/(sqrt(v)+eps) is O(1), so after 3 steps at lr ≤ 0.02 the master weights agree to atol 1e-6,
// rtol 1e-5, m and v to rtol 1e-5 (+ atol 1e-7 near 0).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { fixtureSource } from "./helpers/fixtures.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { AdamW, adamwReference, clipFactorReference, learningRate, type TrainParam } from "../src/train/optim.js";
import type { GpuContext } from "../src/gpu/context.js";
import { UsageError } from "../src/errors.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";

test("AdamW reference = torch.optim.AdamW with clip_grad_norm_ (two steps, decay on one group, clipping on step 1)", async () => {
  const f = await SafetensorsFile.open(await fixtureSource("train/adamw.safetensors"));
  const get = async (n: string) => Float64Array.from((await f.readTensor(n)).data as Float64Array);
  const w = await get("w0");
  const b = await get("b0");
  const mw = new Float64Array(w.length), vw = new Float64Array(w.length), mb = new Float64Array(b.length), vb = new Float64Array(b.length);
  for (let k = 0; k < 2; k++) {
    const gw = await get(`gw${k}`);
    const gb = await get(`gb${k}`);
    const { norm, clip } = clipFactorReference([gw, gb], 1.0);
    assertClose([norm], await get(`norm${k}`), { atol: 0, rtol: 1e-12 }, `norm ${k}`);
    if (k === 0) assert.ok(clip < 1, "step 1 clips");
    const lr = [1e-2, 5e-3][k]!;
    adamwReference(w, gw, mw, vw, { lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, t: k + 1, gradFactor: clip });
    adamwReference(b, gb, mb, vb, { lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, t: k + 1, gradFactor: clip });
    assertClose(w, await get(`w${k + 1}`), { atol: 1e-14, rtol: 1e-12 }, `w after step ${k + 1}`);
    assertClose(b, await get(`b${k + 1}`), { atol: 1e-14, rtol: 1e-12 }, `b after step ${k + 1}`);
  }
  await f.close();
});

test("learningRate: warmup, cosine and linear decay to a floor, constant; bad schedules refused", () => {
  const s = { warmupSteps: 4, totalSteps: 14, decay: "cosine" as const, minLrRatio: 0.1 };
  assertClose([0, 1, 2, 3, 4, 9, 14, 20].map((t) => learningRate(2, t, s)), [0, 0.5, 1, 1.5, 2, 2 * (0.1 + 0.9 * 0.5), 0.2, 0.2], { atol: 1e-12, rtol: 0 }, "cosine");
  assertClose([4, 9, 14].map((t) => learningRate(1, t, { ...s, decay: "linear" })), [1, 0.55, 0.1], { atol: 1e-12, rtol: 0 }, "linear");
  assert.is(learningRate(3, 100, { decay: "constant" }), 3);
  assert.throws(() => learningRate(1, 5, { warmupSteps: 2 }), /needs totalSteps/);
  assert.throws(() => learningRate(1, -1), /step must be an integer/);
});

interface Case {
  name: string;
  shape: number[];
  dtype: "f32" | "f16";
  decay: boolean;
}

/** Runs `steps` AdamW steps on GPU and CPU with the same gradients; compares everything. */
async function runCase(ctx: GpuContext, cases: Case[], steps: number, seed: number, maxGradNorm: number): Promise<Float32Array[]> {
  const rng = new Rng(seed);
  const opts = { lr: 2e-2, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.05, maxGradNorm, schedule: { warmupSteps: 1, totalSteps: 5, decay: "cosine" as const } };
  const params: TrainParam[] = [];
  const ref: { w: Float64Array; m: Float64Array; v: Float64Array }[] = [];
  for (const c of cases) {
    const n = c.shape.reduce((a, b) => a * b, 1);
    let init = rng.fillNormal(n);
    if (c.dtype === "f16") init = f16ArrayToF32(f32ArrayToF16(init));
    const weight = c.dtype === "f16" ? ctx.upload(f32ArrayToF16(init), c.shape, "f16", c.name) : ctx.upload(init, c.shape, "f32", c.name);
    params.push({ name: c.name, weight, grad: ctx.upload(new Float32Array(n).fill(NaN), c.shape, "f32", `${c.name}.grad`), decay: c.decay });
    ref.push({ w: Float64Array.from(init), m: new Float64Array(n), v: new Float64Array(n) });
  }
  const opt = await AdamW.create(ctx, params, opts);
  for (let t = 0; t < steps; t++) {
    const grads = cases.map((_c, i) => rng.fillNormal(params[i]!.weight.numel, 0.5));
    grads.forEach((g, i) => ctx.write(params[i]!.grad, g));
    const { norm, clip } = clipFactorReference(grads, maxGradNorm);
    const lr = learningRate(opts.lr, t, opts.schedule);
    assert.is(opt.nextLr, lr);
    await opt.step();
    cases.forEach((c, i) => adamwReference(ref[i]!.w, grads[i]!, ref[i]!.m, ref[i]!.v, { lr, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: c.decay ? 0.05 : 0, t: t + 1, gradFactor: clip }));
    const got = await opt.lastGradNorm();
    assertClose([got.norm, got.clip], [norm, clip], { atol: 0, rtol: 2e-6 }, `step ${t}: norm, clip`);
  }
  const masters: Float32Array[] = [];
  for (const [i, c] of cases.entries()) {
    const st = opt.state(c.name);
    const what = `${c.name} [${c.shape.join("x")}] ${c.dtype}`;
    const master = await st.master.readF32();
    assertClose(master, ref[i]!.w, { atol: 1e-6, rtol: 1e-5 }, `${what}: master`);
    assertClose(await st.m.readF32(), ref[i]!.m, { atol: 1e-7, rtol: 1e-5 }, `${what}: m`);
    assertClose(await st.v.readF32(), ref[i]!.v, { atol: 1e-7, rtol: 1e-5 }, `${what}: v`);
    if (c.dtype === "f16") {
      assertEqualArrays(await params[i]!.weight.read(), f32ArrayToF16(master), `${what}: f16 weights = rounded master`);
    } else {
      assert.is(st.master, params[i]!.weight, "an f32 weight is its own master");
    }
    masters.push(master);
  }
  opt.dispose();
  for (const p of params) {
    p.weight.dispose();
    p.grad.dispose();
  }
  return masters;
}

const CASES: Case[] = [
  { name: "one", shape: [1], dtype: "f32", decay: false },
  { name: "odd", shape: [37], dtype: "f32", decay: true },
  { name: "chunky", shape: [4099], dtype: "f32", decay: true }, // crosses one 4096-element partial
  { name: "half", shape: [5, 3], dtype: "f16", decay: true }, // odd count of f16 values
  { name: "half_big", shape: [64, 130], dtype: "f16", decay: false },
  { name: "big", shape: [100, 101], dtype: "f32", decay: true },
];

test("AdamW GPU vs reference: f32 and f16 weights, awkward sizes, decay mask, clipping on, warmup + cosine", async () => {
  const ctx = await gpu();
  await runCase(ctx, CASES, 3, 11, 5.0);
});

test("AdamW GPU: no clipping when maxGradNorm is 0; reproducible bit for bit", async () => {
  const ctx = await gpu();
  const a = await runCase(ctx, CASES.slice(1, 4), 2, 12, 0);
  const b = await runCase(ctx, CASES.slice(1, 4), 2, 12, 0);
  a.forEach((x, i) => assertEqualArrays(b[i]!, x, `run 2 = run 1 (${CASES[i + 1]!.name})`));
});

test("AdamW GPU: gradients and f16 weights above a 64 KiB binding limit are windowed", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  await runCase(ctx, [
    { name: "wide", shape: [41000], dtype: "f32", decay: true }, // 164 KB: 3 windows
    { name: "wide16", shape: [300, 131], dtype: "f16", decay: true },
  ], 2, 13, 50);
});

test("AdamW: gradScale divides accumulated gradients; bad options refused", async () => {
  const ctx = await gpu();
  const n = 10;
  const init = new Rng(5).fillNormal(n);
  const g = new Rng(6).fillNormal(n);
  const mk = () => ({ name: "p", weight: ctx.upload(init, [n], "f32", "p"), grad: ctx.upload(g.map((x) => 4 * x), [n], "f32", "p.grad"), decay: false });
  const p = mk();
  const opt = await AdamW.create(ctx, [p], { lr: 0.1 });
  await opt.step({ gradScale: 0.25 });
  const w = Float64Array.from(init);
  adamwReference(w, g, new Float64Array(n), new Float64Array(n), { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, t: 1, gradFactor: 1 });
  assertClose(await p.weight.read(), w, { atol: 1e-6, rtol: 1e-5 }, "gradScale 1/4 of 4·g = g");
  opt.zeroGrad();
  assertEqualArrays(await p.grad.read(), new Float32Array(n), "zeroGrad");
  await assertRejects(() => AdamW.create(ctx, [p, p], { lr: 1 }), UsageError, [/'p' is listed twice/], "duplicate");
  await assertRejects(() => AdamW.create(ctx, [p], { lr: 1, beta1: 1 }), UsageError, [/betas/], "beta1 = 1");
  await assertRejects(() => AdamW.create(ctx, [p], { lr: NaN }), UsageError, [/lr must be finite/], "lr NaN");
  opt.dispose();
});

test.run();
