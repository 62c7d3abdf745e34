// GPU tensors: a shape, a dtype and a byte range of a pooled GPUBuffer. Row-major, contiguous.
// A tensor may be larger than one storage binding (up to maxBufferSize); kernels that accept such
// tensors bind it in windows (see GpuContext.bindingWindows).

import { ShapeError } from "../errors.js";
import type { GpuContext } from "./context.js";

/**
 * Element types. f16 is IEEE binary16 (needs the shader-f16 feature in kernels that compute on it;
 * storage and copies work without). q8_0 / q4_0 are GGUF's 32-weight blocks with an f16 scale,
 * for weight matrices [N, K] with K a multiple of 32 only, stored as the split-blocks layout of
 * src/quant/formats.ts (all quants, then all scales): 34 / 18 bytes per 32 weights, hence the
 * fractional bytes per element below (a whole number for every legal shape).
 */
export type DType = "f32" | "f16" | "u32" | "i32" | "q8_0" | "q4_0";

export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, u32: 4, i32: 4, q8_0: 34 / 32, q4_0: 18 / 32 };

/** Block-quantized weight dtypes (src/quant/formats.ts). */
export type QuantDType = "q8_0" | "q4_0";
export function isQuantDType(d: DType): d is QuantDType {
  return d === "q8_0" || d === "q4_0";
}

/** Refuses a shape a block-quantized dtype cannot hold: [N, K] with K a positive multiple of 32. */
export function checkQuantShape(shape: readonly number[], dtype: QuantDType, what: string): void {
  if (shape.length !== 2 || !(shape[0]! >= 1) || !(shape[1]! >= 1) || shape[1]! % 32 !== 0) {
    throw new ShapeError(`${what} has shape [${shape.join(", ")}]; ${dtype} holds [N, K] with K a positive multiple of 32`);
  }
}

/** The host array a dtype reads back as (f16 as raw bits in a Uint16Array, quantized as their bytes). */
export type HostArray<D extends DType> = D extends QuantDType
  ? Uint8Array
  : D extends "f32"
  ? Float32Array
  : D extends "f16"
    ? Uint16Array
    : D extends "u32"
      ? Uint32Array
      : Int32Array;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`${what}: shape [${shape.join(", ")}] must hold non-negative integers`);
  }
}

/**
 * How a weight matrix [N, K] lies in its buffer when it is not row-major: lane-interleaved tiles of
 * T rows in 16-byte chunks. Chunk (tile, c, lane) holds chunk c of row tile·T + lane and lies at
 * chunk index (tile·kc + c)·T + lane; rows past N are zero. Neighbouring invocations that own
 * neighbouring rows read neighbouring memory (kernels/gemv_step.wgsl, gemv_tiled.wgsl, matmul.wgsl
 * TILES, gemv_q.wgsl TILES, embedding*.wgsl). A tensor without one (`layout === null`) is row-major.
 *   f32 / f16: chunk c = W[row, c·CE .. c·CE + CE), CE = 4 f32 or 8 halves, kc = ceil(K / CE);
 *     columns past K are zero. Made at load time from the row-major weight, which it replaces
 *     (src/ops/linear.ts toTilesLayout; reference tiledCopyReference in src/ops/tiled-copy.ts).
 *   q8_0 / q4_0 (K a multiple of 32, nb = K/32 blocks per row): a row's chunks are groups of 8
 *     blocks; group g holds the quants of its blocks nbg = min(8, nb − 8g) (Q4_0: one chunk per
 *     block, GGUF's 16 bytes as they are; Q8_0: two chunks per block, half-block h = its 16 int8
 *     stored as q + 128, i.e. the byte XOR 0x80, so the kernels unpack unsigned bytes), then one
 *     chunk of the group's f16 scales (block 8g + j at half j, zero past nbg). Group g starts at
 *     chunk g·(8·cb + 1), cb = chunks per block (1 or 2); kc = nb·cb + ceil(nb / 8); CE = weights
 *     per quant chunk (32 or 16). Made on the host at load time from the split-blocks arrays
 *     (src/quant/tiles.ts; a byte-exact transform, nothing dequantized).
 */
export interface TilesLayout {
  readonly kind: "tiles";
  /** Rows per tile. */
  readonly T: number;
  /** Elements per 16-byte chunk: 8 (f16), 4 (f32); quants: 16 (q8_0), 32 (q4_0). */
  readonly CE: 4 | 8 | 16 | 32;
  /** Chunks per packed row: ceil(K / CE); quantized: nb·cb + ceil(nb / 8) (quants and scale chunks). */
  readonly kc: number;
  /** ceil(N / T). */
  readonly tiles: number;
}

/** Quant chunks per 32-weight block in the tiles layout: 2 (q8_0), 1 (q4_0). */
export function quantTileChunksPerBlock(dtype: QuantDType): 1 | 2 {
  return dtype === "q8_0" ? 2 : 1;
}

/** The tiles layout of a weight [N, K] of dtype f32|f16|q8_0|q4_0 with T rows per tile. */
export function tilesLayout(N: number, K: number, dtype: "f32" | "f16" | QuantDType, T: number): TilesLayout {
  if (!Number.isInteger(T) || T < 1) throw new ShapeError(`tiles layout: T must be a positive integer, got ${T}`);
  if (isQuantDType(dtype)) {
    checkQuantShape([N, K], dtype, "tiles layout");
    const nb = K / 32;
    const cb = quantTileChunksPerBlock(dtype);
    return { kind: "tiles", T, CE: dtype === "q8_0" ? 16 : 32, kc: nb * cb + Math.ceil(nb / 8), tiles: Math.ceil(N / T) };
  }
  const CE = dtype === "f16" ? 8 : 4;
  return { kind: "tiles", T, CE, kc: Math.ceil(K / CE), tiles: Math.ceil(N / T) };
}

/** Bytes of a tiles layout: tiles · kc · T chunks of 16 bytes. */
export function tilesBytes(l: TilesLayout): number {
  return l.tiles * l.kc * l.T * 16;
}

export class Tensor<D extends DType = DType> {
  private disposed = false;
  constructor(
    readonly ctx: GpuContext,
    readonly shape: readonly number[],
    readonly dtype: D,
    readonly buffer: GPUBuffer,
    readonly label: string,
    /** Whether dispose() returns the buffer to the context's pool (false for views). */
    private readonly owned = true,
    /** Lane-interleaved tiles (weights transformed at load time), or null: row-major. */
    readonly layout: TilesLayout | null = null,
  ) {}

  get numel(): number {
    return numel(this.shape);
  }
  /** Bytes of data (not counting the buffer's rounding). */
  get byteLength(): number {
    if (this.layout) return tilesBytes(this.layout);
    return this.numel * DTYPE_BYTES[this.dtype];
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Reads the data back (one host sync). f16 comes back as raw bits; see readF32(). */
  read(): Promise<HostArray<D>> {
    return this.ctx.read(this);
  }
  /** Reads back as Float32Array, converting f16 and integer types. */
  async readF32(): Promise<Float32Array> {
    return this.ctx.readF32(this);
  }

  /** A tensor with another shape over the same data (no copy). Disposing a view frees nothing. */
  view(shape: readonly number[]): Tensor<D> {
    this.refuseTiles("view");
    checkShape(shape, `tensor '${this.label}'`);
    if (numel(shape) !== this.numel) {
      throw new ShapeError(`tensor '${this.label}': cannot view [${this.shape.join(", ")}] as [${shape.join(", ")}] (element counts differ)`);
    }
    return new Tensor(this.ctx, shape, this.dtype, this.buffer, this.label, false);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owned) this.ctx.releaseBuffer(this.buffer);
  }

  /** Throws a one-line error naming `what` when this tensor is in the tiles layout (readers of row-major data). */
  refuseTiles(what: string): void {
    if (this.layout) {
      throw new ShapeError(`${what}: '${this.label}' [${this.shape.join(", ")}] ${this.dtype} lies in the tiles layout (T=${this.layout.T}), this reads row-major weights; load the model with layout 'rows'`);
    }
  }

  assertLive(): void {
    if (this.disposed) throw new ShapeError(`tensor '${this.label}' was used after dispose()`);
  }
}
