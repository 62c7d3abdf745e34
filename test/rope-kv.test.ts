import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { planRopeKv, ropeKv, ropeKvReference, stepPositions } from "../src/ops/rope-kv.js";
import { rope } from "../src/ops/rope.js";
import { kvAppend } from "../src/ops/attention.js";
import type { GpuContext } from "../src/gpu/context.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

// Tolerances: the rotation is rope.wgsl's (same sin/cos code), whose error vs the float64
// reference is ≤ 6e-7 for |x| ≤ 2 (see test/rope.test.ts: atol 4e-6). An f16 cache holds the f32
// result rounded once to f16, the reference rounds its float64 result: they can differ by one f16
// ulp (2^-10 relative) when the value falls near a rounding boundary, hence rtol 1e-3 there.
const TOL_F32 = { atol: 4e-6, rtol: 0 };
const TOL_F16 = { atol: 4e-6, rtol: 1e-3 };

function invFreqDefault(hd: number, theta: number): Float32Array {
  return Float32Array.from({ length: hd / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / hd));
}

interface Case {
  H: number;
  Hkv: number;
  hd: number;
  S: number;
  maxRows: number;
  rows: number;
  last: number;
  cache: "f32" | "f16";
}

async function runCase(ctx: GpuContext, rng: Rng, c: Case, what: string): Promise<void> {
  const { H, Hkv, hd, S, maxRows, cache } = c;
  const W = (H + 2 * Hkv) * hd;
  const qkv = rng.fillUniform(maxRows * W, -2, 2);
  const kf = rng.fillUniform(Hkv * S * hd);
  const vf = rng.fillUniform(Hkv * S * hd);
  const kHost = cache === "f16" ? f32ArrayToF16(kf) : kf;
  const vHost = cache === "f16" ? f32ArrayToF16(vf) : vf;
  const invFreq = invFreqDefault(hd, 10_000);
  const qkvT = ctx.upload(qkv, [maxRows, W], "f32", "qkv");
  const kc = ctx.upload(kHost, [Hkv, S, hd], cache, "kCache");
  const vc = ctx.upload(vHost, [Hkv, S, hd], cache, "vCache");
  const step = ctx.upload(stepWords(c.last, c.rows, 7, 0), [8], "u32", "step");
  const inv = ctx.upload(invFreq, [hd / 2], "f32", "inv_freq");
  await ropeKv(ctx, qkvT, inv, kc, vc, step);
  const want = ropeKvReference(qkv, kHost, vHost, invFreq, { last: c.last, rows: c.rows }, { maxRows, H, Hkv, hd, S });
  assertClose(await qkvT.read(), want.qkv, TOL_F32, `${what}: qkv`);
  if (cache === "f16") {
    assertClose(f16ArrayToF32((await kc.read()) as Uint16Array), f16ArrayToF32(want.kCache as Uint16Array), TOL_F16, `${what}: kCache`);
    assertEqualArrays(await vc.read(), want.vCache, `${what}: vCache (a copy, exact)`);
  } else {
    assertClose(await kc.read(), want.kCache, TOL_F32, `${what}: kCache`);
    assertEqualArrays(await vc.read(), want.vCache, `${what}: vCache (a copy, exact)`);
  }
  assertEqualArrays(await step.read(), stepWords(c.last, c.rows, 7, 0), `${what}: the step state is only read`);
  for (const t of [qkvT, kc, vc, step, inv]) t.dispose();
}

test("ropeKv: matches ropeReference + kvAppendReference over GQA ratios, odd half head dims, T = 1, 2, 5 and positions near the capacity end", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(11);
    const shapes = [
      { H: 3, Hkv: 1, hd: 8 }, // GQA 3, hd/2 even
      { H: 2, Hkv: 2, hd: 6 }, // GQA 1, hd/2 = 3 odd (packed words shared between invocations)
      { H: 6, Hkv: 2, hd: 10 }, // GQA 3, hd/2 = 5
      { H: 9, Hkv: 3, hd: 64 }, // the 134M shape
    ];
    for (const { H, Hkv, hd } of shapes) {
      for (const cache of ["f32", "f16"] as const) {
        const S = 23;
        for (const rows of [1, 2, 5]) {
          // first rows at position 0; ending at the last cache row; running past the end (rows ≥ S skipped)
          for (const last of [rows - 1, S - 1, S + 1]) {
            await runCase(ctx, rng, { H, Hkv, hd, S, maxRows: 6, rows, last, cache }, `H=${H} Hkv=${Hkv} hd=${hd} ${cache} T=${rows} last=${last}`);
          }
        }
      }
    }
  });
});

test("ropeKv: a step with more rows than qkv holds is clamped to maxRows, and large positions rotate q as rope does", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(12);
    await runCase(ctx, rng, { H: 4, Hkv: 2, hd: 16, S: 40, maxRows: 3, rows: 7, last: 30, cache: "f16" }, "T=7 > maxRows=3");
    await runCase(ctx, rng, { H: 4, Hkv: 2, hd: 16, S: 40, maxRows: 3, rows: 2, last: 300_000, cache: "f32" }, "positions 3e5 (past the cache: q only)");
  });
});

test("ropeKv: bit-identical to rope on q and k + kvAppend (the same sin/cos code)", async () => {
  await forDevices({}, async (ctx, device) => {
    const rng = new Rng(13);
    const H = 6, Hkv = 2, hd = 64, S = 50, maxRows = 5, T = 5, last = 44;
    const W = (H + 2 * Hkv) * hd;
    for (const cache of ["f32", "f16"] as const) {
      const qkv = rng.fillUniform(maxRows * W, -2, 2);
      const invFreq = invFreqDefault(hd, 500_000);
      const inv = ctx.upload(invFreq, [hd / 2], "f32", "inv_freq");
      const zeros = cache === "f16" ? new Uint16Array(Hkv * S * hd) : new Float32Array(Hkv * S * hd);
      // fused
      const qkvT = ctx.upload(qkv, [maxRows, W], "f32", "qkv");
      const kc = ctx.upload(zeros, [Hkv, S, hd], cache, "kCache");
      const vc = ctx.upload(zeros, [Hkv, S, hd], cache, "vCache");
      await ropeKv(ctx, qkvT, inv, kc, vc, ctx.upload(stepWords(last, T), [8], "u32", "step"));
      // unfused: rope(q), rope(k), kvAppend
      const q = new Float32Array(T * H * hd), k = new Float32Array(T * Hkv * hd), v = new Float32Array(T * Hkv * hd);
      for (let t = 0; t < T; t++) {
        q.set(qkv.subarray(t * W, t * W + H * hd), t * H * hd);
        k.set(qkv.subarray(t * W + H * hd, t * W + (H + Hkv) * hd), t * Hkv * hd);
        v.set(qkv.subarray(t * W + (H + Hkv) * hd, (t + 1) * W), t * Hkv * hd);
      }
      const pos = ctx.upload(stepPositions(last, T), [T], "u32", "positions");
      const qT = ctx.upload(q, [T, H, hd], "f32", "q");
      const kT = ctx.upload(k, [T, Hkv, hd], "f32", "k");
      await rope(ctx, qT, pos, inv);
      await rope(ctx, kT, pos, inv);
      const kc2 = ctx.upload(zeros, [Hkv, S, hd], cache, "kCache2");
      const vc2 = ctx.upload(zeros, [Hkv, S, hd], cache, "vCache2");
      await kvAppend(ctx, kT, ctx.upload(v, [T, Hkv, hd], "f32", "v"), kc2, vc2, pos);
      const got = await qkvT.read();
      const qGot = new Float32Array(T * H * hd);
      for (let t = 0; t < T; t++) qGot.set(got.subarray(t * W, t * W + H * hd), t * H * hd);
      assertEqualArrays(qGot, await qT.read(), `[${device}] ${cache}: q rotated as rope() rotates it`);
      assertEqualArrays(await kc.read(), await kc2.read(), `[${device}] ${cache}: kCache as rope() + kvAppend()`);
      assertEqualArrays(await vc.read(), await vc2.read(), `[${device}] ${cache}: vCache as kvAppend()`);
    }
  });
});

test("ropeKv: the plan encodes the same dispatch again with the step state changed on the GPU only", async () => {
  const ctx = await gpu();
  const rng = new Rng(14);
  const H = 3, Hkv = 1, hd = 8, S = 16, maxRows = 4;
  const W = (H + 2 * Hkv) * hd;
  const qkv = rng.fillUniform(maxRows * W);
  const qkvT = ctx.upload(qkv, [maxRows, W], "f32", "qkv");
  const kc = ctx.upload(new Float32Array(Hkv * S * hd), [Hkv, S, hd], "f32", "kCache");
  const vc = ctx.upload(new Float32Array(Hkv * S * hd), [Hkv, S, hd], "f32", "vCache");
  const step = ctx.upload(stepWords(2, 3), [8], "u32", "step");
  const invFreq = invFreqDefault(hd, 10_000);
  const plan = await planRopeKv(ctx, qkvT, ctx.upload(invFreq, [hd / 2], "f32", "inv"), kc, vc, step);
  assert.is(plan.dispatches.length, 1);
  plan.encode(ctx);
  let want = ropeKvReference(qkv, new Float32Array(Hkv * S * hd), new Float32Array(Hkv * S * hd), invFreq, { last: 2, rows: 3 }, { maxRows, H, Hkv, hd, S });
  ctx.write(qkvT, qkv); // fresh activations for the next step
  ctx.write(step, stepWords(3, 1));
  plan.encode(ctx);
  want = ropeKvReference(qkv, want.kCache, want.vCache, invFreq, { last: 3, rows: 1 }, { maxRows, H, Hkv, hd, S });
  assertClose(await qkvT.read(), want.qkv, TOL_F32, "second step: qkv");
  assertClose(await kc.read(), want.kCache, TOL_F32, "both steps: kCache");
  assertEqualArrays(await vc.read(), want.vCache, "both steps: vCache");
});

test("ropeKv: shape errors name the tensor and the rule", async () => {
  const ctx = await gpu();
  const step = ctx.upload(stepWords(0, 1), [8], "u32", "step");
  const kc = ctx.empty([2, 8, 6], "f32", "kc");
  const vc = ctx.empty([2, 8, 6], "f32", "vc");
  const inv = ctx.empty([3], "f32", "inv");
  await assertRejects(() => planRopeKv(ctx, ctx.empty([2, 6 * 5 + 1], "f32", "qkv"), inv, kc, vc, step), ShapeError, [/qkv/, /\(H \+ 2·2\)·6/], "qkv width");
  await assertRejects(() => planRopeKv(ctx, ctx.empty([2, 6 * 5], "f32", "qkv"), inv, kc, vc, ctx.empty([4], "u32", "st")), ShapeError, [/step \('st'\)/, /needs 8/], "short step state");
  const kOdd = ctx.empty([1, 8, 5], "f32", "kOdd");
  await assertRejects(() => planRopeKv(ctx, ctx.empty([2, 15], "f32", "qkv"), inv, kOdd, ctx.empty([1, 8, 5], "f32", "vOdd"), step), ShapeError, [/head dim 5/, /even/], "odd head dim");
  await assertRejects(() => planRopeKv(ctx, ctx.empty([2, 6 * 5], "f32", "qkv"), inv, kc, vc, step, { heads: 2, kvHeads: 2, headDim: 6 }), ShapeError, [/ropeKv: heads 2 does not match qkv \('qkv'\)/, /imply heads 1/], "stated heads");
  await planRopeKv(ctx, ctx.empty([2, 6 * 5], "f32", "qkv"), inv, kc, vc, step, { heads: 1, kvHeads: 2, headDim: 6 }); // the implied ones are accepted
});

test.run();
