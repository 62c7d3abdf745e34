import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { rmsnorm, rmsnormReference, resolveRmsnorm } from "../src/ops/rmsnorm.js";
import { ShapeError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16, f16ArrayToF32 } from "../src/util/f16.js";

// Tolerance: the GPU sums Σh² in f32 in a different order (strided partials + tree) than the
// float64 reference: relative error of the mean ≲ D·2⁻²⁴ worst case (≈2.4e-4 at D=4097, typically
// √D·2⁻²⁴), halved by the square root; then two f32 products. rtol 2e-5 + atol 1e-6 covers the
// typical case with margin at every D tested (observed max rel err is printed on failure).
const TOL = { atol: 1e-6, rtol: 2e-5 };
const rng = new Rng(4242);

test("rmsnorm: f32 and f16 weights, scalar and vec4, awkward shapes, NaN-prefilled outputs", async () => {
  await forDevices({}, async (ctx) => {
    const shapes: [number, number][] = [[1, 56], [1, 4097], [3, 4096], [5, 7], [2, 8192], [17, 1], [4, 300]];
    for (const [T, D] of shapes) {
      for (const wdt of ["f32", "f16"] as const) {
        for (const vec4 of D % 4 === 0 ? [true, false] : [false]) {
          const x = rng.fillNormal(T * D, 2);
          let w = rng.fillUniform(D, 0.5, 1.5);
          const weight = wdt === "f16" ? ctx.upload(f32ArrayToF16(w), [D], "f16", "w") : ctx.upload(w, [D], "f32", "w");
          if (wdt === "f16") w = f16ArrayToF32(f32ArrayToF16(w));
          const out = ctx.upload(new Float32Array(T * D).fill(NaN), [T, D], "f32", "out");
          const eps = 1e-5;
          await rmsnorm(ctx, ctx.upload(x, [T, D], "f32", "x"), weight, eps, { out, vec4 });
          const want = rmsnormReference(x, w, T, D, eps).out;
          assertClose(await out.read(), want, TOL, `rmsnorm T=${T} D=${D} w=${wdt} vec4=${vec4}`);
        }
      }
    }
  });
});

test("rmsnorm with fused residual: residual ← x + residual written back, y = norm(h)·w", async () => {
  await forDevices({}, async (ctx) => {
    for (const [T, D] of [[1, 4096], [3, 4097], [2, 56]] as [number, number][]) {
      for (const wdt of ["f32", "f16"] as const) {
        const x = rng.fillNormal(T * D);
        const r = rng.fillNormal(T * D, 3);
        let w = rng.fillUniform(D, -1, 1);
        if (wdt === "f16") w = f16ArrayToF32(f32ArrayToF16(w));
        const res = ctx.upload(r, [T, D], "f32", "residual");
        const out = ctx.upload(new Float32Array(T * D).fill(NaN), [T, D], "f32", "out");
        await rmsnorm(ctx, ctx.upload(x, [T, D], "f32", "x"), ctx.upload(w, [D], wdt, "w"), 1e-6, { residual: res, out });
        const want = rmsnormReference(x, w, T, D, 1e-6, r);
        // h = x + r is one f32 addition on both sides: bit-exact.
        assertEqualArrays(await res.read(), want.residual!, `residual write-back T=${T} D=${D}`);
        assertClose(await out.read(), want.out, TOL, `rmsnorm+residual T=${T} D=${D} w=${wdt}`);
      }
    }
  });
});

test("rmsnorm: rows split over binding windows (forced 64 KiB limit), with residual", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    const T = 37, D = 1000; // 148 KB of activations → 3 windows of 16 rows
    const x = rng.fillNormal(T * D);
    const r = rng.fillNormal(T * D);
    const w = rng.fillUniform(D, 0.5, 1.5);
    const res = ctx.upload(r, [T, D], "f32", "residual");
    const before = ctx.stats.dispatches;
    const out = await rmsnorm(ctx, ctx.upload(x, [T, D], "f32", "x"), ctx.upload(w, [D], "f32", "w"), 1e-5, { residual: res });
    assert.ok(ctx.stats.dispatches - before >= 3, `expected ≥ 3 windows, got ${ctx.stats.dispatches - before}`);
    const want = rmsnormReference(x, w, T, D, 1e-5, r);
    assertEqualArrays(await res.read(), want.residual!, "windowed residual");
    assertClose(await out.read(), want.out, TOL, "windowed rmsnorm");
  });
});

test("rmsnorm: argument errors name the tensor", async () => {
  const ctx = await gpu();
  const x = ctx.empty([2, 8], "f32", "xx");
  await assertRejects(() => rmsnorm(ctx, x, ctx.empty([7], "f32", "ww"), 1e-5), ShapeError, [/'ww'/, /\[8\]/], "weight shape");
  await assertRejects(() => rmsnorm(ctx, x, ctx.empty([8], "f32", "w"), 1e-5, { out: x }), ShapeError, [/alias/], "aliasing out");
  assert.throws(() => resolveRmsnorm(7, "f32", { vec4: true }), (e: Error) => e instanceof UsageError && /D = 7/.test(e.message));
});

test.run();
