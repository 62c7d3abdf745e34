// Weight quantization formats: GGUF's Q8_0 and Q4_0 blocks (32 weights, one f16 scale each), the
// host references of ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref rounding and of the
// dequantization, and the layout the kernels read (kernels/gemv_q.wgsl).
//
// Blocks (GGUF, little-endian): for W [N, K] with K a multiple of 32, row n has B = K/32 blocks;
// block b holds W[n, 32b .. 32b+31].
//   Q8_0: d f16, qs int8[32]:  w[j] = qs[j] · d
//   Q4_0: d f16, qs u8[16]:    w[j] = ((qs[j] & 15) − 8) · d,  w[j + 16] = ((qs[j] >> 4) − 8) · d  (j < 16)
// Rounding (ggml's *_ref, "reference implementation for deterministic creation of model files"),
// in f32 arithmetic:
//   Q8_0: amax = max |w|; d = amax / 127; id = d ≠ 0 ? 1/d : 0; scale stored as f16(d) (round to
//         nearest even); qs[j] = roundf(w[j]·id) (half away from zero).
//   Q4_0: max = the w of largest |w| (first one on ties, sign kept); d = max / −8; id as above;
//         scale f16(d); q = min(15, trunc_int8(w·id + 8.5)).
// Note both quantize with the f32 d, not the f16-rounded one (as ggml does).
//
// GPU layout ("split blocks", one buffer per W, see QUANT_LAYOUT): the block fields stored apart so
// every kernel load is an aligned 4-byte word (a 34- or 18-byte block is not word aligned):
//   bytes [0, Q):          qs of every block, row-major by (n, b): Q8_0 32 bytes per block
//                          (Q = N·K), Q4_0 16 bytes per block in GGUF's nibble order (Q = N·K/2)
//   bytes [Q, Q + 2·N·B):  the scales d as f16 [N, B]
// Q is a multiple of 16, so the scales start word aligned; total bytes = N·K · (1 + 1/16) for
// Q8_0 and N·K · (1/2 + 1/16) for Q4_0 — Tensor byteLength with DTYPE_BYTES 17/16 and 9/16.
// (loadDecoder's gemvLayout "tiles" permutes these bytes on the host into the tiles layout instead,
// src/quant/tiles.ts; the directory on disk keeps this layout.)
// The same two arrays are what a quantized model directory stores per weight (src/model/save-quantized.ts):
// `PREFIX.qweight` U8 [N, K] or [N, K/2] and `PREFIX.scales` F16 [N, K/32], byte-for-byte the
// GGUF blocks' fields, so writing GGUF is interleaving them.

import { ShapeError, UnsupportedError } from "../errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../util/f16.js";

export type QuantFormat = "q8_0" | "q4_0";
export const QUANT_FORMATS: readonly QuantFormat[] = ["q8_0", "q4_0"];
/** Weights per block (GGUF QK8_0 = QK4_0 = 32). */
export const QK = 32;
/** The name of the GPU / on-disk layout described above (recorded in config.json). */
export const QUANT_LAYOUT = "onegen-split-blocks-v1";

export function isQuantFormat(s: unknown): s is QuantFormat {
  return s === "q8_0" || s === "q4_0";
}

/** Bytes of quants per block: 32 (Q8_0) or 16 (Q4_0). */
function quantBlockBytes(format: QuantFormat): number {
  return format === "q8_0" ? 32 : 16;
}

/** The two arrays of a quantized W [N, K]: qs (Q bytes) and scales (f16 bits [N, K/32]). */
export interface QuantizedMatrix {
  format: QuantFormat;
  N: number;
  K: number;
  qs: Uint8Array;
  scales: Uint16Array;
}

/** Refuses a W shape the block formats cannot hold (K not a multiple of 32), naming the tensor. */
export function checkQuantShape(shape: readonly number[], format: QuantFormat, what: string): void {
  if (shape.length !== 2 || shape[1]! % QK !== 0 || shape[0]! < 1 || shape[1]! < 1) {
    throw new UnsupportedError(`${what} has shape [${shape.join(", ")}]; ${format} needs [N, K] with K a positive multiple of ${QK}`);
  }
}

/** Bytes of the split-blocks layout of W [N, K]: quants then f16 scales. */
export function quantBytes(N: number, K: number, format: QuantFormat): { qsBytes: number; scaleBytes: number; total: number } {
  const blocks = (N * K) / QK;
  const qsBytes = blocks * quantBlockBytes(format);
  const scaleBytes = blocks * 2;
  return { qsBytes, scaleBytes, total: qsBytes + scaleBytes };
}

const f = Math.fround;

/** C's roundf: half away from zero (on an f32 value). */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/**
 * ggml's quantize_row_q8_0_ref for one block: x[off .. off+32) → qs[qOff .. qOff+32) (int8 as
 * two's-complement bytes); returns the f16 bits of d.
 */
function quantizeBlockQ8_0(x: ArrayLike<number>, off: number, qs: Uint8Array, qOff: number): number {
  let amax = 0;
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(f(x[off + j]!)));
  const d = f(amax / 127);
  const id = d !== 0 ? f(1 / d) : 0;
  for (let j = 0; j < QK; j++) qs[qOff + j] = roundf(f(f(x[off + j]!) * id)) & 0xff;
  return f32ToF16Bits(d);
}

/** ggml's quantize_row_q4_0_ref for one block: x[off .. off+32) → qs[qOff .. qOff+16); returns f16 bits of d. */
function quantizeBlockQ4_0(x: ArrayLike<number>, off: number, qs: Uint8Array, qOff: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = f(x[off + j]!);
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  const d = f(max / -8);
  const id = d !== 0 ? f(1 / d) : 0;
  const q = (v: number): number => {
    const t = Math.trunc(f(f(f(v) * id) + 8.5)); // (int8_t)(x·id + 8.5f): truncation toward zero
    return Math.min(15, t);
  };
  for (let j = 0; j < QK / 2; j++) qs[qOff + j] = q(x[off + j]!) | (q(x[off + j + QK / 2]!) << 4);
  return f32ToF16Bits(d);
}

/**
 * Quantizes `blocks` consecutive blocks of w (from element 0) into qs / scales starting at block
 * `firstBlock` of those arrays (so a tensor can be quantized in chunks of whole rows). Non-finite
 * weights and scales past f16 are refused (UnsupportedError naming `what`). The same arithmetic as
 * quantizeBlockQ8_0 / quantizeBlockQ4_0 (the readable spec, tested against each other), inlined
 * over a Float32Array for speed (the loader quantizes every projection of a model with it).
 */
export function quantizeBlocksInto(w: ArrayLike<number>, blocks: number, format: QuantFormat, qs: Uint8Array, scales: Uint16Array, firstBlock: number, what: string): void {
  const x = w instanceof Float32Array ? w : Float32Array.from(w);
  const q8 = format === "q8_0";
  for (let i = 0; i < blocks; i++) {
    const off = i * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[off + j]!;
      const a = Math.abs(v);
      if (!(a <= 3.4028234663852886e38)) {
        throw new UnsupportedError(`${what}: element ${(firstBlock + i) * QK + j} is ${v}; non-finite weights cannot be quantized`);
      }
      if (amax < a) {
        amax = a;
        max = v;
      }
    }
    const d = q8 ? f(amax / 127) : f(max / -8);
    const id = d !== 0 ? f(1 / d) : 0;
    const sBits = f32ToF16Bits(d);
    if ((sBits & 0x7c00) === 0x7c00) {
      throw new UnsupportedError(`${what}: block ${firstBlock + i} needs a scale of ${f16BitsToF32(sBits)}, past f16's range (weights beyond ±${q8 ? "8.3e6" : "5.2e5"}); it cannot be stored as ${format}`);
    }
    scales[firstBlock + i] = sBits;
    if (q8) {
      const o = (firstBlock + i) * 32;
      for (let j = 0; j < QK; j++) {
        const v = f(x[off + j]! * id);
        qs[o + j] = (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)) & 0xff;
      }
    } else {
      const o = (firstBlock + i) * 16;
      for (let j = 0; j < QK / 2; j++) {
        const lo = Math.min(15, Math.trunc(f(f(x[off + j]! * id) + 8.5)));
        const hi = Math.min(15, Math.trunc(f(f(x[off + j + QK / 2]! * id) + 8.5)));
        qs[o + j] = lo | (hi << 4);
      }
    }
  }
}

/** Quantizes W [N, K] (f32 values, row-major) into the split-blocks arrays. `what` names the tensor in errors. */
export function quantizeMatrix(w: ArrayLike<number>, N: number, K: number, format: QuantFormat, what = "weight"): QuantizedMatrix {
  checkQuantShape([N, K], format, what);
  if (w.length !== N * K) throw new ShapeError(`${what}: ${w.length} values given for [${N}, ${K}]`);
  const { qsBytes } = quantBytes(N, K, format);
  const qs = new Uint8Array(qsBytes);
  const scales = new Uint16Array((N * K) / QK);
  quantizeBlocksInto(w, scales.length, format, qs, scales, 0, what);
  return { format, N, K, qs, scales };
}

/** Dequantizes into f32 [N, K]: exactly qs·d (the product is exact in f32: ≤ 8 × 11 significant bits). */
export function dequantizeMatrix(q: QuantizedMatrix): Float32Array {
  const { N, K, qs, scales, format } = q;
  const out = new Float32Array(N * K);
  const blocks = (N * K) / QK;
  for (let i = 0; i < blocks; i++) {
    const d = f16BitsToF32(scales[i]!);
    const o = i * QK;
    if (format === "q8_0") {
      for (let j = 0; j < QK; j++) out[o + j] = ((qs[i * 32 + j]! << 24) >> 24) * d;
    } else {
      for (let j = 0; j < QK / 2; j++) {
        const byte = qs[i * 16 + j]!;
        out[o + j] = ((byte & 15) - 8) * d;
        out[o + j + QK / 2] = ((byte >> 4) - 8) * d;
      }
    }
  }
  return out;
}

/** The GPU buffer contents of a quantized W: qs then scales (see the layout above). */
export function packQuantized(q: QuantizedMatrix): Uint8Array {
  const out = new Uint8Array(q.qs.byteLength + q.scales.byteLength);
  out.set(q.qs, 0);
  out.set(new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength), q.qs.byteLength);
  return out;
}

/** The inverse of packQuantized (bytes read back from the GPU or a file). */
export function unpackQuantized(bytes: Uint8Array, N: number, K: number, format: QuantFormat): QuantizedMatrix {
  const { qsBytes, scaleBytes, total } = quantBytes(N, K, format);
  if (bytes.byteLength < total) throw new ShapeError(`${format} [${N}, ${K}]: ${bytes.byteLength} bytes, expected ${total}`);
  const scales = new Uint16Array(scaleBytes / 2);
  new Uint8Array(scales.buffer).set(bytes.subarray(qsBytes, qsBytes + scaleBytes));
  return { format, N, K, qs: bytes.slice(0, qsBytes), scales };
}

/** GGUF blocks (d f16 then qs, 34 or 18 bytes each) of a quantized matrix, for llama.cpp side by side. */
export function toGgufBlocks(q: QuantizedMatrix): Uint8Array {
  const bb = quantBlockBytes(q.format);
  const blocks = q.scales.length;
  const out = new Uint8Array(blocks * (bb + 2));
  for (let i = 0; i < blocks; i++) {
    const o = i * (bb + 2);
    out[o] = q.scales[i]! & 0xff;
    out[o + 1] = q.scales[i]! >> 8;
    out.set(q.qs.subarray(i * bb, (i + 1) * bb), o + 2);
  }
  return out;
}
