// Row L2 normalization into a larger table: out[outRow + r] = x[r] / ‖x[r]‖₂, rounded to the
// table's dtype (f16 or f32). This is how OneGen document vectors enter the index: the index
// search kernel (src/ops/search.ts) expects unit rows. A zero row stays zero (its cosine with any
// query is then 0).
// x [R, D] f32 and the table [N, D] may both exceed one storage binding: rows are processed in
// windows; each window starts at the aligned byte offset at or below its first row.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { ShapeError, UsageError } from "../errors.js";
import { expectDType, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";

/**
 * Invocations per workgroup. Workgroup-per-row: 64, as rmsnorm on software GPUs (same reduction
 * shape; rmsnorm measured wg64 2.9× faster than wg256 at D = 2048 on lavapipe).
 */
export const L2NORM_WG = 64;
/**
 * Rows of at most this many elements use one invocation per row (THREAD_ROW). Measured
 * 2026-11-24 on lavapipe (2 cores, shared), f32 → f16, workgroup-per-row vs thread-per-row:
 * R×D = 262144×64: 1840 vs 107 ms; 65536×16: 354 vs 9.3 ms; 16384×256: 139 vs 36 ms;
 * 4096×512: 51 vs 16 ms; 64×4096: 1.3 vs 1.9 ms (too few rows to fill the threads). Workgroup
 * launches cost ~4–7 µs each there. Unmeasured on hardware GPUs, where thread-per-row loads are
 * not coalesced; the encode path normalizes few rows of D ≥ 2048 and so uses workgroup-per-row.
 */
export const L2NORM_THREAD_ROW_MAX_D = 512;

export interface L2normVariant {
  /** Output store type: "f16p" writes f16 rows as packed pairs (atomics on shared words; no shader-f16). */
  out: StoreType;
  /** One invocation per row (short rows) instead of one workgroup per row. */
  threadRow: boolean;
  wg: number;
}

export function l2normKernel(v: L2normVariant): KernelVariant {
  if (v.wg & (v.wg - 1)) throw new UsageError(`l2norm: workgroup size ${v.wg} must be a power of two (tree reduction)`);
  return {
    file: "l2norm",
    name: `l2norm_${v.out}${v.threadRow ? "_threadrow" : ""}_wg${v.wg}`,
    defines: { F16: v.out === "f16", PACKED: v.out === "f16p", THREAD_ROW: v.threadRow, O: v.out === "f16p" ? "u32" : v.out, WG: v.wg },
    bindings: ["read", "read_write", "uniform"],
    features: storeFeatures(v.out),
  };
}

/** The variant l2normRows runs (the op's resolver): thread-per-row for D ≤ L2NORM_THREAD_ROW_MAX_D unless forced. */
export function resolveL2norm(D: number, out: StoreType, threadRow?: boolean): L2normVariant {
  return { out, threadRow: threadRow ?? D <= L2NORM_THREAD_ROW_MAX_D, wg: L2NORM_WG };
}

/**
 * Writes the L2-normalized rows of x [R, D] f32 into rows [outRow, outRow + R) of out [N, D]
 * (f32 or f16). Encodes only (no submit, no readback).
 */
export async function l2normRows(ctx: GpuContext, x: Tensor, out: Tensor, outRow = 0, opts: { threadRow?: boolean } = {}): Promise<void> {
  const op = "l2normRows";
  expectDType(x, ["f32"], op, "x");
  expectDType(out, ["f32", "f16"], op, "out");
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [R, D]`);
  if (out.shape.length !== 2) throw new ShapeError(`${op}: out ('${out.label}') has shape [${out.shape.join(", ")}], expected [N, D]`);
  const [R, D] = x.shape as [number, number];
  const [N, Dout] = out.shape as [number, number];
  if (Dout !== D) throw new ShapeError(`${op}: out ('${out.label}') has rows of ${Dout} elements, x ('${x.label}') of ${D}`);
  if (!Number.isInteger(outRow) || outRow < 0 || outRow + R > N) {
    throw new ShapeError(`${op}: rows [${outRow}, ${outRow + R}) do not fit out ('${out.label}') of ${N} rows`);
  }
  const odt = out.dtype as "f32" | "f16";
  if (R === 0 || D === 0) return;
  const v = resolveL2norm(D, storeType(ctx, odt), opts.threadRow);
  const kernel = await ctx.kernels.get(l2normKernel(v));
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const inRow = D * 4;
  const outRowBytes = D * DTYPE_BYTES[odt];
  // An output window may start up to align − 1 bytes before its first row (and ends rounded up
  // to 4 bytes): leave that much room below the binding limit.
  const maxRows = Math.floor((limit - align - 4) / Math.max(inRow, outRowBytes));
  if (maxRows < 1) throw new ShapeError(`${op}: a row of ${D} elements does not fit one storage binding of ${limit} bytes`);
  // Both sides are bound at the aligned offset at or below their first row, with the row's
  // element offset inside the window passed as xBase / outBase: any row size works with any
  // offset alignment (a browser's 256 bytes too).
  for (let r0 = 0; r0 < R; r0 += maxRows) {
    const rows = Math.min(maxRows, R - r0);
    const xStart = r0 * inRow;
    const xAt = xStart - (xStart % align);
    const byteStart = (outRow + r0) * outRowBytes;
    const aligned = byteStart - (byteStart % align);
    const byteSize = byteStart - aligned + rows * outRowBytes;
    const outBase = (byteStart - aligned) / DTYPE_BYTES[odt];
    const params = new Params().u32(rows).u32(D).u32(outBase).u32((xStart - xAt) / 4).bytes();
    ctx.dispatch(
      kernel,
      [
        { tensor: x, byteOffset: xAt, byteSize: xStart - xAt + rows * inRow },
        { tensor: out, byteOffset: aligned, byteSize },
      ],
      params,
      grid(ctx, v.threadRow ? Math.ceil(rows / v.wg) : rows),
    );
  }
}

/**
 * CPU reference: x [R, D] → [R, D] unit rows (float64 sum of squares; a zero row stays zero).
 * The kernel's f16 variant equals this rounded to f16 (up to one f16 ulp from f32 arithmetic).
 */
export function l2normRowsReference(x: Float32Array, R: number, D: number): Float32Array {
  const out = new Float32Array(R * D);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i]! ** 2;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let i = 0; i < D; i++) out[r * D + i] = x[r * D + i]! * inv;
  }
  return out;
}
