import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { linearBackwardBias, linearBackwardInput, linearBackwardReference, linearBackwardWeight, linearForward64 } from "../src/train/ops/linear_backward.js";
import { dot64, numericGrad } from "../src/train/ops/gradcheck.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

// Tolerances.
// FD: central differences in float64 with h = 1e-5 of a function linear in each input: the
//   truncation term vanishes, rounding is ~1e-16·|L|/h ≈ 1e-10: atol 1e-8, rtol 1e-7.
// GPU vs float64 reference: f32 sums of L ≤ 300 products of O(1) values: error ≲ L·2^-24·Σ|terms|
//   ≈ 300·6e-8·300 ≈ 5e-3 worst case, typically √L-like: atol 2e-4, rtol 1e-4 (atol scaled for
//   the longest reduction below, M = 300).
const FD_TOL = { atol: 1e-8, rtol: 1e-7 };
const GPU_TOL = { atol: 2e-4, rtol: 1e-4 };
const rng = new Rng(9001);

const nanFilled = (n: number) => new Float32Array(n).fill(NaN);

test("linear backward: CPU reference equals finite differences (M=3, K=5, N=4, with bias)", () => {
  const [M, K, N] = [3, 5, 4];
  const x = Float64Array.from(rng.fillNormal(M * K));
  const w = Float64Array.from(rng.fillNormal(N * K));
  const b = Float64Array.from(rng.fillNormal(N));
  const r = Float64Array.from(rng.fillNormal(M * N));
  const L = () => dot64(r, linearForward64(x, w, b, M, N, K));
  const ref = linearBackwardReference(r, x, w, M, N, K);
  assertClose(ref.dx, numericGrad(L, x), FD_TOL, "dx vs FD");
  assertClose(ref.dw, numericGrad(L, w), FD_TOL, "dw vs FD");
  assertClose(ref.db, numericGrad(L, b), FD_TOL, "db vs FD");
});

test("linear backward: GPU dX, dW, db vs reference, awkward shapes, f32 and f16 W, NaN-prefilled", async () => {
  const ctx = await gpu();
  for (const [M, K, N] of [[3, 5, 4], [7, 13, 9], [1, 1, 1], [33, 64, 40], [5, 12, 17], [300, 8, 3]] as [number, number, number][]) {
    const x = rng.fillNormal(M * K);
    const dy = rng.fillNormal(M * N);
    for (const wdt of ["f32", "f16"] as const) {
      let w = rng.fillNormal(N * K);
      if (wdt === "f16") w = f16ArrayToF32(f32ArrayToF16(w)); // the values the kernel sees
      const ref = linearBackwardReference(dy, x, w, M, N, K);
      const dyT = ctx.upload(dy, [M, N], "f32", "dy");
      const dx = ctx.upload(nanFilled(M * K), [M, K], "f32", "dx");
      await linearBackwardInput(ctx, dyT, ctx.upload(w, [N, K], wdt, "w"), { dx });
      assertClose(await dx.read(), ref.dx, GPU_TOL, `dx M=${M} K=${K} N=${N} w=${wdt}`);
      if (wdt === "f32") {
        const xT = ctx.upload(x, [M, K], "f32", "x");
        const dw = ctx.upload(nanFilled(N * K), [N, K], "f32", "dw");
        await linearBackwardWeight(ctx, dyT, xT, { dw });
        assertClose(await dw.read(), ref.dw, GPU_TOL, `dw M=${M} K=${K} N=${N}`);
        const db = ctx.upload(nanFilled(N), [N], "f32", "db");
        await linearBackwardBias(ctx, dyT, { db });
        assertClose(await db.read(), ref.db, GPU_TOL, `db M=${M} N=${N}`);
      }
    }
  }
});

test("linear backward: accumulate adds to existing gradients; GPU gradient vs finite differences", async () => {
  const ctx = await gpu();
  const [M, K, N] = [3, 5, 4];
  const x = rng.fillNormal(M * K);
  const w = rng.fillNormal(N * K);
  const dy = rng.fillNormal(M * N);
  const prevDx = rng.fillNormal(M * K);
  const prevDw = rng.fillNormal(N * K);
  const prevDb = rng.fillNormal(N);
  const dyT = ctx.upload(dy, [M, N], "f32", "dy");
  const dx = ctx.upload(prevDx, [M, K], "f32", "dx");
  const dw = ctx.upload(prevDw, [N, K], "f32", "dw");
  const db = ctx.upload(prevDb, [N], "f32", "db");
  await linearBackwardInput(ctx, dyT, ctx.upload(w, [N, K], "f32", "w"), { dx, accumulate: true });
  await linearBackwardWeight(ctx, dyT, ctx.upload(x, [M, K], "f32", "x"), { dw, accumulate: true });
  await linearBackwardBias(ctx, dyT, { db, accumulate: true });
  // The GPU increments against finite differences of the float64 forward (f32 tolerance).
  const x64 = Float64Array.from(x), w64 = Float64Array.from(w), b64 = new Float64Array(N);
  const L = () => dot64(dy, linearForward64(x64, w64, b64, M, N, K));
  const sub = (a: Float32Array, p: Float32Array) => a.map((v, i) => v - p[i]!);
  const tol = { atol: 1e-5, rtol: 1e-5 };
  assertClose(sub(await dx.read(), prevDx), numericGrad(L, x64), tol, "GPU dx increment vs FD");
  assertClose(sub(await dw.read(), prevDw), numericGrad(L, w64), tol, "GPU dw increment vs FD");
  assertClose(sub(await db.read(), prevDb), numericGrad(L, b64), tol, "GPU db increment vs FD");
  await assertRejects(() => linearBackwardInput(ctx, dyT, ctx.empty([N, K + 1], "f32", "wbad"), { dx }), ShapeError, [/dx/], "dx shape mismatch");
  await assertRejects(() => linearBackwardWeight(ctx, dyT, ctx.empty([M + 1, K], "f32", "xbad")), ShapeError, [/xbad/], "x rows mismatch");
  await assertRejects(() => linearBackwardBias(ctx, dyT, { accumulate: true }), ShapeError, [/accumulate/], "accumulate without db");
});

test("linear backward: W and dW windowed over a forced 64 KiB binding limit", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  const [M, K, N] = [6, 68, 300]; // W f32: 81,600 bytes → 2+ windows; f16: 40,800 → 1
  const x = rng.fillNormal(M * K);
  const w = rng.fillNormal(N * K);
  const dy = rng.fillNormal(M * N);
  const ref = linearBackwardReference(dy, x, w, M, N, K);
  const dyT = ctx.upload(dy, [M, N], "f32", "dy");
  const before = ctx.stats.dispatches;
  const dx = ctx.upload(nanFilled(M * K), [M, K], "f32", "dx");
  await linearBackwardInput(ctx, dyT, ctx.upload(w, [N, K], "f32", "w"), { dx });
  const dw = ctx.upload(nanFilled(N * K), [N, K], "f32", "dw");
  await linearBackwardWeight(ctx, dyT, ctx.upload(x, [M, K], "f32", "x"), { dw });
  assert.ok(ctx.stats.dispatches - before >= 4, "windows were used");
  assertClose(await dx.read(), ref.dx, GPU_TOL, "windowed dx");
  assertClose(await dw.read(), ref.dw, GPU_TOL, "windowed dw");
});

test.run();
