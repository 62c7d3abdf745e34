import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { swiglu, swigluReference } from "../src/ops/swiglu.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

// Tolerance: WGSL's exp is accurate to 3 + 2·|x| ULP; for |x| ≤ 30 that is ≲ 63 ULP ≈ 4e-6
// relative on exp(−|x|), which carries into sigmoid and silu at most 1:1; plus a few f32 roundings.
// rtol 1e-5; atol 1e-6 for outputs near 0 (very negative gate, where silu ≈ x·e^x is tiny).
const TOL = { atol: 1e-6, rtol: 1e-5 };
const rng = new Rng(99);

test("swiglu: CPU agreement, scalar and vec4, awkward sizes, NaN-prefilled", async () => {
  const ctx = await gpu();
  for (const [T, F] of [[1, 5632], [1, 11], [3, 4097], [7, 1], [2, 14336]] as [number, number][]) {
    for (const vec4 of (T * F) % 4 === 0 ? [true, false] : [false]) {
      const g = rng.fillUniform(T * F, -30, 30);
      const u = rng.fillNormal(T * F);
      const out = ctx.upload(new Float32Array(T * F).fill(NaN), [T, F], "f32", "out");
      await swiglu(ctx, ctx.upload(g, [T, F], "f32", "gate"), ctx.upload(u, [T, F], "f32", "up"), out, { vec4 });
      assertClose(await out.read(), swigluReference(g, u), TOL, `swiglu T=${T} F=${F} vec4=${vec4}`);
    }
  }
});

test("swiglu: large |x| gives no NaN/inf (±100, ±1e4, ±3e38, ±inf)", async () => {
  const ctx = await gpu();
  const g = new Float32Array([100, -100, 1e4, -1e4, 3e38, -3e38, 88, -88, 0, -0, Infinity, -Infinity]);
  const u = new Float32Array(g.length).fill(1);
  const out = await swiglu(ctx, ctx.upload(g, [g.length], "f32", "g"), ctx.upload(u, [g.length], "f32", "u"));
  const got = await out.read();
  // finite gates: the reference (float64) is accurate; ±inf: silu(+inf) = +inf, silu(−inf) = 0 by definition
  const want = swigluReference(g.subarray(0, 10), u.subarray(0, 10));
  assertClose(got.subarray(0, 10), want, TOL, "large |x|");
  assert.is(got[10], Infinity);
  assert.is(got[11], 0);
});

test("swiglu: windows over a forced 64 KiB binding limit", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    for (const n of [50_001, 50_000]) {
      const g = rng.fillUniform(n, -10, 10);
      const u = rng.fillNormal(n);
      const before = ctx.stats.dispatches;
      const out = await swiglu(ctx, ctx.upload(g, [n], "f32", "g"), ctx.upload(u, [n], "f32", "u"));
      assert.ok(ctx.stats.dispatches - before >= 4, "windows");
      assertClose(await out.read(), swigluReference(g, u), TOL, `windowed swiglu n=${n}`);
    }
    await assertRejects(() => swiglu(ctx, ctx.empty([4], "f32", "a"), ctx.empty([5], "f32", "b")), ShapeError, [/'b'/], "shape mismatch");
  });
});

test.run();
