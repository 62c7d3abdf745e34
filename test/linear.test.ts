// linear (y = x·Wᵀ + b): every kernel family against linearReference over awkward shapes, f32 and
// f16 weights, bias none/f32/f16, NaN-prefilled outputs, windows above a forced binding limit,
// the resolver's labels and its refusals.
//
// Tolerance (same for f32 and f16 weights): f16 weights and biases widen exactly to f32, so the
// only difference from the f64 reference is f32 rounding of the K-term sum in another order.
// With x, w ~ U(-1, 1) (σ² = 1/3 each) partial sums have magnitude ~ √k/3, so accumulated
// rounding error grows like eps·K/3 (random walk of K roundings of size eps·√K/3); we allow 8×
// that, plus rtol 2⁻²⁰ for the final rounding and the bias add. A missing or duplicated term
// costs ~|x·w| ≈ 0.25 on average, far above atol for every K tested here (≤ 4096 → 6.5e-4).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { browserLike, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { linearInputs } from "./helpers/linear-inputs.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { ShapeError, UnsupportedError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import { gemvBcastPreferred, gemvBcastUsable, launchLinear, linear, linearReference, resolveLinear, type LinearVariantName } from "../src/ops/linear.js";

const EPS32 = 2 ** -24;
function tolFor(K: number) {
  return { atol: (8 * EPS32 * K) / 3 + 1e-7, rtol: 2 ** -20 };
}

type WD = "f32" | "f16";
type BiasKind = "none" | WD;

interface Case {
  M: number;
  N: number;
  K: number;
  wd: WD;
  bias: BiasKind;
  variant?: LinearVariantName | "auto";
  /** Shape of x when not [M, K] (leading dims flattened). */
  xShape?: number[];
}

const rng = new Rng(4242);

/** Runs one case on `ctx` and compares with the reference; returns the resolver's label. */
async function check(ctx: GpuContext, c: Case, what = ""): Promise<string> {
  const { M, N, K, wd, bias } = c;
  const { xh, w: wData, wRef, b: bData, bRef } = linearInputs(rng, M, N, K, wd, bias);
  const x = ctx.upload(xh, c.xShape ?? [M, K], "f32", "x");
  const w = ctx.upload(wData, [N, K], wd, "w");
  const b = bData ? ctx.upload(bData, [N], bias as WD, "bias") : undefined;
  const outShape = [...(c.xShape ?? [M, K]).slice(0, -1), N];
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), outShape, "f32", "y");
  const variant = c.variant ?? "auto";
  const label = resolveLinear(ctx, M, N, K, wd, variant).label;
  const y = await linear(ctx, x, w, { bias: b, out, variant });
  assert.ok(y === out, "linear returns the provided out");
  assertClose(await out.read(), linearReference(xh, wRef, bRef, M, N, K), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} w=${wd} bias=${bias}`);
  for (const t of [x, w, b, out]) t?.dispose();
  return label;
}

test("auto: M ∈ {1,2,3,5,8,17,65} × awkward N, K (vec and unaligned K), f32 and f16, bias none/f32/f16", async () => {
  const ctx = await gpu();
  const nk: [number, number][] = [
    [1, 1],
    [3, 7],
    [17, 33],
    [63, 64],
    [65, 129],
    [127, 16],
    [129, 255],
    [33, 96],
    [5, 8],
    [31, 17],
  ];
  const biases: BiasKind[] = ["none", "f32", "f16"];
  let i = 0;
  for (const wd of ["f32", "f16"] as const) {
    for (const M of [1, 2, 3, 5, 8, 17, 65]) {
      for (let j = 0; j < 2; j++, i++) {
        const [N, K] = nk[i % nk.length]!;
        await check(ctx, { M, N, K, wd, bias: biases[i % 3]! });
      }
    }
  }
});

test("every variant forced explicitly: gemv, gemv_splitk, gemv_subgroup, matmul on awkward shapes", async () => {
  const ctx = await gpu();
  const shapes: [number, number, number, BiasKind][] = [
    [1, 65, 129, "f32"], // K odd: scalar path
    [5, 17, 40, "f16"], // K % 8 = 0: vec path; M not a multiple of the M-block; bias f16
  ];
  for (const variant of ["gemv", "gemv_splitk", "gemv_subgroup", "matmul"] as const) {
    for (const wd of ["f32", "f16"] as const) {
      for (const [M, N, K, bias] of shapes) {
        const label = await check(ctx, { M, N, K, wd, bias, variant });
        assert.ok(label.startsWith(`${variant}_${wd}_`), `label ${label} names variant ${variant}`);
      }
    }
  }
});

test("real-ish shapes: GEMV 1×4096×4096 f16, matmul 17×256×4096 f32 with bias", async () => {
  const ctx = await gpu();
  const bcast = gemvBcastUsable(ctx) && gemvBcastPreferred(ctx); // test/gemv-bcast.test.ts covers that kernel
  assert.is(await check(ctx, { M: 1, N: 4096, K: 4096, wd: "f16", bias: "none" }), bcast ? "gemv_bcast_f16_vec8_r4_mb1_wg8" : "gemv_f16_vec8_r4_mb1_wg64");
  assert.is(await check(ctx, { M: 17, N: 256, K: 4096, wd: "f32", bias: "f32" }), "matmul_f32_vec4_t4x8_wg64x1");
});

test("x with leading dims [2, 3, K] gives y [2, 3, N]; a fresh out is allocated when none is given", async () => {
  const ctx = await gpu();
  await check(ctx, { M: 6, N: 19, K: 24, wd: "f16", bias: "f32", xShape: [2, 3, 24] });
  const x = ctx.upload(rng.fillUniform(2 * 8), [2, 8], "f32", "x");
  const w = ctx.upload(rng.fillUniform(3 * 8), [3, 8], "f32", "w");
  const y = await linear(ctx, x, w);
  assert.equal(y.shape, [2, 3]);
  assertClose(await y.read(), linearReference(await x.read(), await w.read(), null, 2, 3, 8), tolFor(8), "fresh out");
});

test("windows: W, x, y and bias above a forced 64 KiB binding limit (f32 and f16, K even and odd)", async () => {
  const limit = 64 * 1024;
  const ctx = await gpu({ maxStorageBufferBindingSize: limit });
  const cases: Case[] = [
    { M: 1, N: 300, K: 1000, wd: "f16", bias: "f32" }, // W 600 KB: 10 windows, GEMV
    { M: 2, N: 70, K: 999, wd: "f16", bias: "f16" }, // K odd: windows of 128-row multiples
    { M: 70, N: 300, K: 1000, wd: "f16", bias: "none" }, // y 84 KB and x 280 KB: M windows too
    { M: 37, N: 130, K: 301, wd: "f32", bias: "f32" }, // f32 K odd, x/y windows at unaligned starts
    { M: 3, N: 15_000, K: 4, wd: "f32", bias: "f16" }, // y rows of 60 KB: one row per M window
  ];
  // W windows start at rows whose offset meets the device's alignment (bindingWindows). Under a
  // browser's 256-byte alignment some of these row sizes need windows larger than 64 KiB (1998-byte
  // rows: 128-row steps): there the op must refuse in one line, naming the split it cannot make;
  // the browser-like test below runs those shapes under a 256 KiB limit.
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const splittable = (rowBytes: number) => (align / gcd(rowBytes, align)) * rowBytes <= limit;
  for (const c of cases) {
    const wBytes = c.N * c.K * (c.wd === "f16" ? 2 : 4);
    const yBytes = c.M * c.N * 4;
    if (!splittable(c.K * (c.wd === "f16" ? 2 : 4))) { // W rows (x, y and bias are bound as spans with an element base)
      const x = ctx.upload(rng.fillUniform(c.M * c.K), [c.M, c.K], "f32", "x-unsplittable");
      const w = ctx.empty([c.N, c.K], c.wd, "w-unsplittable");
      await assertRejects(() => linear(ctx, x, w), UnsupportedError, [/cannot be split at \d+-byte aligned offsets/], `M=${c.M} N=${c.N} K=${c.K} under ${align}-byte alignment`);
      x.dispose();
      w.dispose();
      continue;
    }
    const before = ctx.stats.dispatches;
    await check(ctx, c, "windowed ");
    const dispatches = ctx.stats.dispatches - before;
    const want = Math.ceil(wBytes / limit) * Math.ceil(Math.max(yBytes, c.M * c.K * 4) / limit);
    assert.ok(dispatches >= want && dispatches > 1, `M=${c.M} N=${c.N} K=${c.K}: ${dispatches} dispatches, expected ≥ ${want}`);
  }
  // the same windowed shapes through the other variants
  for (const variant of ["gemv_splitk", "matmul"] as const) {
    await check(ctx, { M: 5, N: 300, K: 1000, wd: "f16", bias: "f16", variant }, "windowed ");
  }
  // a row of y wider than one binding cannot be windowed: refused, naming the tensor
  const x = ctx.upload(new Float32Array(4), [1, 4], "f32", "x-wide");
  const w = ctx.empty([20_000, 4], "f16", "w-wide");
  await assertRejects(() => linear(ctx, x, w), UnsupportedError, [/x-wide/, /binding limit/], "y row over the limit");
});

test("windows under a browser's 256-byte offset alignment (browser-like device, forced 256 KiB binding limit): W rows, x/y/bias spans", async () => {
  const limit = 256 * 1024;
  const ctx = await browserLike({ maxStorageBufferBindingSize: limit });
  assert.is(ctx.limits.minStorageBufferOffsetAlignment, 256);
  // K = 999 f16: a window must hold a multiple of 128 rows (1998-byte rows at 256-byte offsets)
  const cases: Case[] = [
    { M: 1, N: 300, K: 999, wd: "f16", bias: "f16" },
    { M: 3, N: 300, K: 999, wd: "f32", bias: "f32" },
    { M: 90, N: 301, K: 777, wd: "f16", bias: "none" },
  ];
  for (const c of cases) {
    const before = ctx.stats.dispatches;
    await check(ctx, c, "browser-like windowed ");
    assert.ok(ctx.stats.dispatches - before > 1, `M=${c.M} N=${c.N} K=${c.K}: windowed`);
  }
  for (const variant of ["gemv_splitk", "matmul"] as const) await check(ctx, { M: 5, N: 300, K: 999, wd: "f16", bias: "f16", variant }, "browser-like windowed ");
});

test("resolver: labels for decode, small batches, prefill; K alignment picks the chunk width (gemv_bcast's picks: test/gemv-bcast.test.ts)", async () => {
  const ctx = await gpu({ disableFeatures: ["subgroups"] }); // where gemv_bcast cannot run
  assert.is(resolveLinear(ctx, 1, 4096, 4096, "f16").label, "gemv_f16_vec8_r4_mb1_wg64");
  assert.is(resolveLinear(ctx, 2, 4096, 4096, "f16").label, "gemv_f16_vec8_r4_mb2_wg64");
  assert.is(resolveLinear(ctx, 1, 4096, 4096, "f32").label, "gemv_f32_vec4_r4_mb1_wg64");
  assert.is(resolveLinear(ctx, 1, 100, 4100, "f16").label, "gemv_f16_vec1_r4_mb1_wg64", "K % 8 ≠ 0: scalar halves");
  assert.is(resolveLinear(ctx, 3, 4096, 4096, "f16").label, "matmul_f16_vec4_t4x8_wg64x1");
  assert.is(resolveLinear(ctx, 512, 32000, 4096, "f16").label, "matmul_f16_vec4_t4x8_wg64x1");
  assert.is(resolveLinear(ctx, 512, 11008, 4095, "f32").label, "matmul_f32_vec1_t4x8_wg64x1");
  assert.is(resolveLinear(ctx, 1, 8, 8, "f32", "matmul").label, "matmul_f32_vec4_t4x8_wg64x1");
  assert.is(resolveLinear(ctx, 9, 8, 8, "f16", "gemv_splitk").label, "gemv_splitk_f16_vec8_r2_mb2_wg64");
});

test("refusals: unavailable or unknown variants throw UnsupportedError; f16 needs no shader-f16", async () => {
  const noSub = await gpu({ disableFeatures: ["subgroups"] });
  assert.not.ok(noSub.hasSubgroups);
  const x = noSub.upload(rng.fillUniform(16), [1, 16], "f32", "x");
  const w = noSub.upload(rng.fillUniform(32), [2, 16], "f32", "w");
  await assertRejects(() => linear(noSub, x, w, { variant: "gemv_subgroup" }), UnsupportedError, [/gemv_subgroup/, /subgroups/], "subgroup variant without subgroups");
  await assertRejects(() => linear(noSub, x, w, { variant: "tiled" as LinearVariantName }), UnsupportedError, [/unknown variant 'tiled'/], "unknown variant");
  // the portable paths run there
  await check(noSub, { M: 1, N: 9, K: 16, wd: "f32", bias: "none", variant: "gemv" });

  const noF16 = await gpu({ disableFeatures: ["shader-f16"] });
  assert.not.ok(noF16.hasF16);
  // f16 weights are unpacked with unpack2x16float: both families run without shader-f16
  await check(noF16, { M: 1, N: 33, K: 64, wd: "f16", bias: "f16" });
  await check(noF16, { M: 9, N: 33, K: 63, wd: "f16", bias: "f16" });
  // the vec4<f16> experiment does need it, and says so
  const xh = noF16.upload(rng.fillUniform(16), [1, 16], "f32", "x");
  const wh = noF16.upload(rng.fillUniform(32), [2, 16], "f16", "w");
  const y = noF16.empty([1, 2], "f32", "y");
  await assertRejects(
    () => launchLinear(noF16, { algo: "gemv", wDtype: "f16", vec: 8, rows: 4, mb: 1, wg: [64, 1], nativeF16: true }, xh, wh, null, y, 1, 2, 16),
    UnsupportedError,
    [/shader-f16/],
    "native f16 GEMV without shader-f16",
  );
});

test("shape and dtype errors name the tensor and give expected vs actual", async () => {
  const ctx = await gpu();
  const x = ctx.upload(new Float32Array(12), [3, 4], "f32", "acts");
  const w = ctx.upload(new Float32Array(20), [5, 4], "f32", "wq");
  await assertRejects(() => linear(ctx, ctx.empty([3, 5], "f32", "acts5"), w), ShapeError, [/acts5/, /\[3, 5\]/, /\[\.\.\., 4\]/], "K mismatch");
  await assertRejects(() => linear(ctx, x, ctx.empty([5, 4, 1], "f32", "w3")), ShapeError, [/w3/, /\[N, K\]/], "w rank");
  await assertRejects(() => linear(ctx, ctx.empty([3, 4], "f16", "xh"), w), ShapeError, [/xh/, /f16/, /f32/], "x dtype");
  await assertRejects(() => linear(ctx, x, ctx.empty([5, 4], "u32", "wu")), ShapeError, [/wu/, /u32/], "w dtype");
  await assertRejects(() => linear(ctx, x, w, { bias: ctx.empty([4], "f32", "bq") }), ShapeError, [/bq/, /\[4\]/, /\[5\]/], "bias shape");
  await assertRejects(() => linear(ctx, x, w, { out: ctx.empty([3, 4], "f32", "yq") }), ShapeError, [/yq/, /\[3, 4\]/, /\[3, 5\]/], "out shape");
  await assertRejects(() => linear(ctx, x, w, { out: ctx.empty([3, 5], "f16", "yh") }), ShapeError, [/yh/, /f16/], "out dtype");
  const w44 = ctx.upload(new Float32Array(16), [4, 4], "f32", "w44");
  await assertRejects(() => linear(ctx, x, w44, { out: x.view([3, 4]) }), ShapeError, [/acts/, /shares its buffer/], "out aliasing x");
});

test.run();
