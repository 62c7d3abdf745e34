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
 * How a weight matrix [N, K] (f32 or f16) lies in its buffer when it is not row-major: lane-interleaved
 * tiles of T rows, in 16-byte chunks of CE elements (8 halves or 4 f32). Chunk (tile, c, lane) holds
 * W[tile·T + lane, c·CE .. c·CE + CE) and lies at chunk index (tile·kc + c)·T + lane, kc = ceil(K / CE);
 * rows past N and columns past K are zero. Neighbouring invocations that own neighbouring rows read
 * neighbouring memory (kernels/gemv_step.wgsl, gemv_tiled.wgsl, matmul.wgsl TILES). Made at load time
 * from the row-major weight, which it replaces (src/ops/linear.ts toTilesLayout; reference
 * tiledCopyReference in src/ops/tiled-copy.ts). A tensor without one (`layout === null`) is row-major.
 */
export interface TilesLayout {
  readonly kind: "tiles";
  /** Rows per tile. */
  readonly T: number;
  /** Elements per 16-byte chunk: 8 (f16) or 4 (f32). */
  readonly CE: 4 | 8;
  /** Chunks per packed row, ceil(K / CE). */
  readonly kc: number;
  /** ceil(N / T). */
  readonly tiles: number;
}

/** The tiles layout of a weight [N, K] of dtype f32|f16 with T rows per tile. */
export function tilesLayout(N: number, K: number, dtype: "f32" | "f16", T: number): TilesLayout {
  if (!Number.isInteger(T) || T < 1) throw new ShapeError(`tiles layout: T must be a positive integer, got ${T}`);
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
