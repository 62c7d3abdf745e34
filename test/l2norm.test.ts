import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { l2normRows, l2normRowsReference, resolveL2norm } from "../src/ops/l2norm.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import type { GpuContext } from "../src/gpu/context.js";

// Tolerance: f32 sum of squares in a different order than the float64 reference (relative error
// ≲ √D·2⁻²⁴ typical), halved by the square root, one f32 product: rtol 1e-5 + atol 1e-7 for f32
// output. f16 output: compared with the reference rounded to f16; the f32 result before rounding
// may sit on the other side of a rounding boundary, so allow one f16 ulp (2⁻¹¹ relative, and
// 2⁻²⁴ absolute for subnormals): rtol 1e-3, atol 1e-7.
const TOL = { f32: { atol: 1e-7, rtol: 1e-5 }, f16: { atol: 1e-7, rtol: 1e-3 } } as const;
const rng = new Rng(777);

async function check(ctx: GpuContext, R: number, D: number, N: number, outRow: number, dt: "f32" | "f16", what: string, threadRow?: boolean): Promise<void> {
  const x = rng.fillNormal(R * D, 3);
  if (R > 1) x.fill(0, D, 2 * D); // row 1 is zero: stays zero
  const out = ctx.upload(dt === "f16" ? new Uint16Array(N * D).fill(0x7e00) : new Float32Array(N * D).fill(NaN), [N, D], dt, "out");
  const xt = ctx.upload(x, [R, D], "f32", "x");
  await l2normRows(ctx, xt, out, outRow, threadRow === undefined ? {} : { threadRow });
  const got = await out.readF32();
  let want = l2normRowsReference(x, R, D);
  if (dt === "f16") want = f16ArrayToF32(f32ArrayToF16(want));
  assertClose(got.subarray(outRow * D, (outRow + R) * D), want, TOL[dt], `${what}: rows`);
  // rows outside [outRow, outRow + R) keep their NaN poison: no stray writes
  for (const [a, b] of [[0, outRow * D], [(outRow + R) * D, N * D]] as const) {
    for (let i = a; i < b; i++) if (!Number.isNaN(got[i]!)) assert.unreachable(`${what}: stray write at element ${i}`);
  }
  xt.dispose();
  out.dispose();
}

test("l2normRows: both variants, f32/f16 output, odd D, row offsets, zero row, NaN-poisoned table", async () => {
  await forDevices({}, async (ctx) => {
    const cases: [number, number, number, number][] = [
      [1, 64, 1, 0],
      [5, 7, 12, 3], // odd D with f16: rows start mid-word
      [3, 4097, 6, 1],
      [17, 33, 40, 20],
      [2, 1, 5, 3],
      [130, 16, 140, 9], // thread-per-row: more rows than one workgroup
    ];
    for (const [R, D, N, outRow] of cases) {
      for (const dt of ["f32", "f16"] as const) {
        for (const threadRow of [false, true]) await check(ctx, R, D, N, outRow, dt, `R=${R} D=${D} N=${N} at ${outRow} ${dt} threadRow=${threadRow}`, threadRow);
      }
    }
    assert.is(resolveL2norm(64, "f16").threadRow, true);
    assert.is(resolveL2norm(4096, "f16").threadRow, false);
  });
});

test("l2normRows: input and output split over binding windows (forced 4 KiB limit), unaligned output start", async () => {
  await forDevices({ maxStorageBufferBindingSize: 4096 }, async (ctx) => {
    // x rows of 100 B → ≤ 38 rows per window; output starts at row 7 (f16: byte 350, not 256-aligned)
    for (const dt of ["f32", "f16"] as const) {
      for (const threadRow of [false, true]) await check(ctx, 300, 25, 320, 7, dt, `windowed ${dt} threadRow=${threadRow}`, threadRow);
    }
  });
});

test("l2normRows: shape errors name the tensors", async () => {
  const ctx = await gpu();
  const x = ctx.upload(new Float32Array(8), [2, 4], "f32", "xrows");
  const out = ctx.empty([3, 4], "f32", "table");
  await assertRejects(() => l2normRows(ctx, x, out, 2), ShapeError, [/\[2, 4\)/, /table/], "rows past the end");
  await assertRejects(() => l2normRows(ctx, x, ctx.empty([3, 5], "f32", "wide"), 0), ShapeError, [/wide/, /5/], "row length");
});

test.run();
