// Tiled (lane-interleaved) copies of row-major matrices, for the kernels that read a matrix tile
// by tile so that neighbouring invocations read neighbouring memory: a weight W [N, K] in the tiles
// layout (src/gpu/tensor.ts TilesLayout; toTilesLayout at load time, or the opt-in copy
// packGemvWeight, both in src/ops/linear.ts) and the tiled scan of topk_cosine.wgsl (an index
// [N, D], cosineIndexPack in src/ops/search.ts). Layout: rows [0, count) of M [N, D] f32|f16 →
// u32 words [tiles, kc, T, 4], tiles = ceil(N / T) of T rows, kc = ceil(D / CE) 16-byte chunks
// of CE elements per row (8 halves or 4 f32): element (r, d) at ((tile·kc + c)·T + r mod T)·CE +
// d mod CE, tile = floor(r / T), c = floor(d / CE); zero past count and D. Made on the GPU by
// kernels/gemv_repack.wgsl (one dispatch per binding window, no submit; reference:
// tiledCopyReference below). packGemvWeight and cosineIndexPack cache their copies beside the
// source tensors; toTilesLayout's replaces its source.

import type { GpuContext } from "../gpu/context.js";
import { DTYPE_BYTES, tilesLayout, type Tensor } from "../gpu/tensor.js";
import { grid, Params } from "./common.js";

/** The tiled shape of M [N, D] with tiles of T rows. */
export function tiledCopyShape(N: number, D: number, dtype: "f32" | "f16", T: number): { ce: 4 | 8; kc: number; tiles: number; tileBytes: number } {
  const { CE, kc, tiles } = tilesLayout(N, D, dtype, T);
  return { ce: CE as 4 | 8, kc, tiles, tileBytes: kc * T * 16 };
}

/**
 * Encodes the copy of rows [fromTile·T, count) of `src` [N, D] f32|f16 into `out` (u32, the
 * tiled shape of [N, D]). fromTile·tileBytes must be a multiple of the storage offset alignment.
 * `what` names the copy in errors.
 */
export async function encodeTiledCopy(ctx: GpuContext, src: Tensor, out: Tensor, o: { count: number; T: number; fromTile?: number; what: string }): Promise<void> {
  const [N, D] = src.shape as [number, number];
  const dtype = src.dtype as "f32" | "f16";
  const { ce, kc, tileBytes } = tiledCopyShape(N, D, dtype, o.T);
  const T = o.T;
  const from = o.fromTile ?? 0;
  const eW = DTYPE_BYTES[dtype];
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const kernel = await ctx.kernels.get({
    file: "gemv_repack",
    name: `gemv_repack_${dtype}_t${T}`,
    defines: { WF16: dtype === "f16", T, CE: ce },
    bindings: ["read", "read_write", "uniform"],
  });
  // Windows of whole tiles; the source rows of a window (plus alignment slack) must fit a binding too.
  const srcTileBytes = T * D * eW;
  const windows = ctx.bindingWindows(Math.ceil(o.count / T) - from, tileBytes, o.what, Math.max(1, Math.floor((limit - align - 4) / srcTileBytes)));
  for (const win of windows) {
    const t0 = from + win.firstRow;
    const n0 = t0 * T;
    const rows = Math.min(win.rows * T, o.count - n0);
    const start = n0 * D * eW;
    const at = start - (start % align);
    const end = Math.ceil((start + rows * D * eW) / 4) * 4;
    const words = win.rows * kc * T * 4;
    const params = new Params().u32(rows).u32(D).u32(kc).u32(words).u32((start - at) / eW).bytes();
    ctx.dispatch(
      kernel,
      [
        { tensor: src, byteOffset: at, byteSize: end - at },
        { tensor: out, byteOffset: t0 * tileBytes, byteSize: words * 4 },
      ],
      params,
      grid(ctx, Math.ceil(words / 256)),
    );
  }
}

/**
 * CPU reference of the tiled layout (the spec of gemv_repack.wgsl): rows [0, count) of M [N, D]
 * as raw element values (f32 values, or f16 bits as numbers) → [ceil(count / T), kc, T, CE]
 * elements, zero past count and D.
 */
export function tiledCopyReference(m: ArrayLike<number>, count: number, D: number, ce: 4 | 8, T: number): number[] {
  const kc = Math.ceil(D / ce);
  const tiles = Math.ceil(count / T);
  const out = new Array<number>(tiles * kc * T * ce).fill(0);
  for (let r = 0; r < count; r++) {
    for (let d = 0; d < D; d++) {
      const tile = Math.floor(r / T), c = Math.floor(d / ce);
      out[((tile * kc + c) * T + (r % T)) * ce + (d % ce)] = m[r * D + d]!;
    }
  }
  return out;
}
