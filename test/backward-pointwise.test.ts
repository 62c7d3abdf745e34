// Backward of RMSNorm (plain and fused-residual semantics), RoPE, SwiGLU and the residual add.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { rmsnormBackward, rmsnormBackwardReference, rmsnormForward64 } from "../src/train/ops/rmsnorm_backward.js";
import { ropeBackward, ropeBackwardReference } from "../src/train/ops/rope_backward.js";
import { ropeForward64 } from "../src/ops/rope.js";
import { swigluBackward, swigluBackwardReference, swigluForward64 } from "../src/train/ops/swiglu_backward.js";
import { accumulateGrad, accumulateGradReference } from "../src/train/ops/residual_backward.js";
import { dot64, numericGrad } from "../src/train/ops/gradcheck.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

// FD tolerances: central differences (h = 1e-5) of smooth float64 functions with O(1) inputs:
// truncation h²·|f'''|/6 ≲ 1e-9, rounding 1e-16·|L|/h ≈ 1e-10: atol 1e-7, rtol 1e-6.
const FD_TOL = { atol: 1e-7, rtol: 1e-6 };
const rng = new Rng(4242);
const nanFilled = (n: number) => new Float32Array(n).fill(NaN);
const EPS = 1e-5;

test("rmsnorm backward: CPU reference equals finite differences (T=3, D=7)", () => {
  const [T, D] = [3, 7];
  const x = Float64Array.from(rng.fillNormal(T * D));
  const w = Float64Array.from(rng.fillNormal(D));
  const r = Float64Array.from(rng.fillNormal(T * D));
  const L = () => dot64(r, rmsnormForward64(x, w, T, D, EPS));
  const ref = rmsnormBackwardReference(x, w, r, T, D, EPS);
  assertClose(ref.dx, numericGrad(L, x), FD_TOL, "dx vs FD");
  assertClose(ref.dw, numericGrad(L, w), FD_TOL, "dw vs FD");
});

// GPU vs reference: f32 row sums of D ≤ 2048 terms, then r³·dot/D: relative error of the
// correction term ~ √D·2^-24·few; values O(1): atol 2e-5, rtol 2e-4. dw sums T ≤ 37 rows: same.
const NORM_TOL = { atol: 2e-5, rtol: 2e-4 };

test("rmsnorm backward: GPU dx, dw vs reference (f32/f16 weight, awkward D), accumulate = fused-residual semantics", async () => {
  const ctx = await gpu();
  for (const [T, D] of [[3, 7], [1, 1], [5, 130], [37, 2048]] as [number, number][]) {
    for (const wdt of ["f32", "f16"] as const) {
      const x = rng.fillNormal(T * D);
      let w = rng.fillUniform(D, 0.5, 1.5);
      if (wdt === "f16") w = f16ArrayToF32(f32ArrayToF16(w));
      const dy = rng.fillNormal(T * D);
      const ref = rmsnormBackwardReference(x, w, dy, T, D, EPS);
      const dx = ctx.upload(nanFilled(T * D), [T, D], "f32", "dx");
      const dw = ctx.upload(nanFilled(D), [D], "f32", "dw");
      const res = await rmsnormBackward(ctx, ctx.upload(x, [T, D], "f32", "x"), ctx.upload(w, [D], wdt, "w"), ctx.upload(dy, [T, D], "f32", "dy"), EPS, { dx, dw });
      const what = `T=${T} D=${D} w=${wdt}`;
      assertClose(await dx.read(), ref.dx, NORM_TOL, `dx ${what}`);
      assertClose(await dw.read(), ref.dw, NORM_TOL, `dw ${what}`);
      assertClose(await res.rstd.read(), ref.rstd, { atol: 0, rtol: 1e-5 }, `rstd ${what}`);
    }
  }
  // Fused residual: h = x + residual; the stream's gradient dS flows through, dh = dS + norm grad.
  const [T, D] = [4, 24];
  const h = rng.fillNormal(T * D);
  const w = rng.fillUniform(D, 0.5, 1.5);
  const dy = rng.fillNormal(T * D);
  const dS = rng.fillNormal(T * D);
  const stream = ctx.upload(dS, [T, D], "f32", "dstream");
  const prevDw = rng.fillNormal(D);
  const dw = ctx.upload(prevDw, [D], "f32", "dw");
  await rmsnormBackward(ctx, ctx.upload(h, [T, D], "f32", "h"), ctx.upload(w, [D], "f32", "w"), ctx.upload(dy, [T, D], "f32", "dy"), EPS, { dx: stream, accumulate: true, dw, accumulateDw: true });
  const ref = rmsnormBackwardReference(h, w, dy, T, D, EPS);
  assertClose(await stream.read(), ref.dx.map((v, i) => v + dS[i]!), NORM_TOL, "residual stream gradient dS + dnorm");
  assertClose(await dw.read(), ref.dw.map((v, i) => v + prevDw[i]!), NORM_TOL, "accumulated dw");
  await assertRejects(() => rmsnormBackward(ctx, ctx.empty([2, 3], "f32", "x"), ctx.empty([4], "f32", "wbad"), ctx.empty([2, 3], "f32", "dy"), EPS), ShapeError, [/wbad/], "weight shape");
});

test("rmsnorm backward: GPU vs finite differences (T=2, D=5) and row windows over a 64 KiB limit", async () => {
  const ctx = await gpu();
  const [T, D] = [2, 5];
  const x = rng.fillNormal(T * D), w = rng.fillUniform(D, 0.5, 1.5), dy = rng.fillNormal(T * D);
  const res = await rmsnormBackward(ctx, ctx.upload(x, [T, D], "f32", "x"), ctx.upload(w, [D], "f32", "w"), ctx.upload(dy, [T, D], "f32", "dy"), EPS);
  const x64 = Float64Array.from(x), w64 = Float64Array.from(w);
  const L = () => dot64(dy, rmsnormForward64(x64, w64, T, D, EPS));
  assertClose(await res.dx.read(), numericGrad(L, x64), { atol: 1e-5, rtol: 1e-4 }, "GPU dx vs FD");
  assertClose(await res.dw!.read(), numericGrad(L, w64), { atol: 1e-5, rtol: 1e-4 }, "GPU dw vs FD");

  const small = await gpu({ maxStorageBufferBindingSize: 65536 });
  const [T2, D2] = [70, 256]; // 71,680 bytes → 2 row windows
  const x2 = rng.fillNormal(T2 * D2), w2 = rng.fillUniform(D2, 0.5, 1.5), dy2 = rng.fillNormal(T2 * D2);
  const before = small.stats.dispatches;
  const r2 = await rmsnormBackward(small, small.upload(x2, [T2, D2], "f32", "x"), small.upload(w2, [D2], "f32", "w"), small.upload(dy2, [T2, D2], "f32", "dy"), EPS);
  assert.ok(small.stats.dispatches - before >= 4, "windows");
  const ref = rmsnormBackwardReference(x2, w2, dy2, T2, D2, EPS);
  assertClose(await r2.dx.read(), ref.dx, NORM_TOL, "windowed dx");
  assertClose(await r2.dw!.read(), ref.dw, NORM_TOL, "windowed dw");
});

// RoPE: an orthogonal rotation, outputs O(|dy|); f32 rotation error ~ 3e-7 rad (angle reduction)
// + a few ulps: atol 1e-5 at positions < 4096 (angle rounding of pos·invFreq shared with the ref).
test("rope backward: reference vs FD; GPU vs reference and FD (T=5, nH=3, hd=6; awkward)", async () => {
  const ctx = await gpu();
  const invFreqOf = (hd: number) => Float32Array.from({ length: hd / 2 }, (_, i) => Math.pow(10000, (-2 * i) / hd));
  {
    const [T, nH, hd] = [5, 3, 6];
    const pos = Uint32Array.from([0, 1, 7, 100, 4095]);
    const inv = invFreqOf(hd);
    const x = Float64Array.from(rng.fillNormal(T * nH * hd));
    const r = rng.fillNormal(T * nH * hd);
    const L = () => dot64(r, ropeForward64(x, pos, inv, nH, hd));
    const fd = numericGrad(L, x);
    assertClose(ropeBackwardReference(r, pos, inv, nH, hd), fd, FD_TOL, "rope ref vs FD");
    const g = ctx.upload(r, [T, nH, hd], "f32", "dy");
    await ropeBackward(ctx, g, ctx.upload(pos, [T], "u32", "pos"), ctx.upload(inv, [hd / 2], "f32", "inv"));
    assertClose(await g.read(), fd, { atol: 1e-5, rtol: 1e-5 }, "rope GPU vs FD");
  }
  for (const [T, nH, hd] of [[1, 1, 2], [9, 4, 64], [3, 7, 10]] as [number, number, number][]) {
    const pos = Uint32Array.from({ length: T }, () => rng.int(4096));
    const inv = invFreqOf(hd);
    const dy = rng.fillNormal(T * nH * hd);
    const g = ctx.upload(dy, [T, nH, hd], "f32", "dy");
    await ropeBackward(ctx, g, ctx.upload(pos, [T], "u32", "pos"), ctx.upload(inv, [hd / 2], "f32", "inv"));
    assertClose(await g.read(), ropeBackwardReference(dy, pos, inv, nH, hd), { atol: 1e-5, rtol: 1e-5 }, `rope T=${T} nH=${nH} hd=${hd}`);
  }
  await assertRejects(() => ropeBackward(ctx, ctx.empty([2, 1, 5], "f32", "odd"), ctx.empty([2], "u32", "p"), ctx.empty([2], "f32", "i")), ShapeError, [/even/], "odd head dim");
});

// SwiGLU: σ via exp (≤ 3 + 2|x| ulp for |g| ≤ 10 → ≈ 1.4e-6 relative), products of O(1):
// atol 1e-6, rtol 2e-5.
test("swiglu backward: reference vs FD; GPU vs reference (vec4 and scalar, large |g|) and FD", async () => {
  const ctx = await gpu();
  const n = 11;
  const gate = Float64Array.from(rng.fillUniform(n, -6, 6));
  const up = Float64Array.from(rng.fillNormal(n));
  const r = rng.fillNormal(n);
  const L = () => dot64(r, swigluForward64(gate, up));
  const ref = swigluBackwardReference(gate, up, r);
  const fdG = numericGrad(L, gate), fdU = numericGrad(L, up);
  assertClose(ref.dgate, fdG, FD_TOL, "dgate ref vs FD");
  assertClose(ref.dup, fdU, FD_TOL, "dup ref vs FD");
  const res = await swigluBackward(ctx, ctx.upload(gate, [n], "f32", "g"), ctx.upload(up, [n], "f32", "u"), ctx.upload(r, [n], "f32", "d"));
  assertClose(await res.dgate.read(), fdG, { atol: 1e-5, rtol: 1e-5 }, "GPU dgate vs FD");
  assertClose(await res.dup.read(), fdU, { atol: 1e-5, rtol: 1e-5 }, "GPU dup vs FD");
  for (const [T, F] of [[3, 4097], [2, 1024], [1, 1]] as [number, number][]) {
    for (const vec4 of (T * F) % 4 === 0 ? [true, false] : [false]) {
      const g = rng.fillUniform(T * F, -10, 10);
      if (T * F > 8) g.set([100, -100, 88, -88, 0, 1e4, -1e4, 3e38]);
      const u = rng.fillNormal(T * F), d = rng.fillNormal(T * F);
      const dgate = ctx.upload(nanFilled(T * F), [T, F], "f32", "dgate");
      const dup = ctx.upload(nanFilled(T * F), [T, F], "f32", "dup");
      await swigluBackward(ctx, ctx.upload(g, [T, F], "f32", "g"), ctx.upload(u, [T, F], "f32", "u"), ctx.upload(d, [T, F], "f32", "d"), { dgate, dup, vec4 });
      const want = swigluBackwardReference(g, u, d);
      assertClose(await dgate.read(), want.dgate, { atol: 1e-6, rtol: 2e-5 }, `dgate T=${T} F=${F} vec4=${vec4}`);
      assertClose(await dup.read(), want.dup, { atol: 1e-6, rtol: 2e-5 }, `dup T=${T} F=${F} vec4=${vec4}`);
    }
  }
});

test("residual backward: accumulateGrad dst += alpha·src (vec4, scalar, windows)", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  for (const n of [7, 40_000]) {
    const a = rng.fillNormal(n), b = rng.fillNormal(n);
    const dst = ctx.upload(a, [n], "f32", "dst");
    await accumulateGrad(ctx, dst, ctx.upload(b, [n], "f32", "src"), 0.5);
    assertClose(await dst.read(), accumulateGradReference(a, b, 0.5), { atol: 1e-6, rtol: 1e-6 }, `accumulate n=${n}`);
  }
  const t = ctx.empty([4], "f32", "same");
  await assertRejects(() => accumulateGrad(ctx, t, t), ShapeError, [/shares its buffer/], "aliasing");
});

test.run();
