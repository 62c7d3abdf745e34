// ggml's Q8_0 and Q4_0 weight blocks (GGUF tensor types 8 and 2), quantized with the reference
// rounding of ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref so that the same bytes can run
// in llama.cpp and in our kernels (issue 17). 32 weights per block, consecutive along a row:
//
//   Q8_0 (34 bytes): f16 d | 32 × int8 q           x ≈ d·q
//     amax = max |x|; d = amax / 127; id = d ? 1/d : 0; q = roundf(x·id)   (half away from zero)
//   Q4_0 (18 bytes): f16 d | 16 bytes of nibbles    x ≈ d·(q − 8)
//     max = the x of largest |x| (the first one on ties); d = max / −8; id = d ? 1/d : 0;
//     q = min(15, trunc(x·id + 8.5)); byte j holds q[j] in its low nibble and q[j + 16] in its high one
//
// Arithmetic is f32 as in C (every product and sum rounded with Math.fround); d is stored as f16
// rounded to nearest even (ggml's FP32_TO_FP16), while the codes are computed from the f32 d.

import { UsageError } from "../errors.js";
import { f16BitsToF32, f32ToF16Bits } from "../util/f16.js";

export const QK8_0 = 32;
export const QK4_0 = 32;
const Q8_0_BLOCK_BYTES = 34;
const Q4_0_BLOCK_BYTES = 18;

const f = Math.fround;

function blocks(n: number, qk: number, what: string): number {
  if (n % qk !== 0) throw new UsageError(`${what}: ${n} values are not a whole number of ${qk}-value blocks`);
  return n / qk;
}

/** Rounds half away from zero (C roundf). */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Quantizes `x` (length a multiple of 32, blocks along consecutive values) into Q8_0 blocks. */
export function quantizeQ8_0(x: ArrayLike<number>, out = new Uint8Array((x.length / QK8_0) * Q8_0_BLOCK_BYTES)): Uint8Array {
  const nb = blocks(x.length, QK8_0, "Q8_0");
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(f(x[i * QK8_0 + j]!)));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    const at = i * Q8_0_BLOCK_BYTES;
    dv.setUint16(at, f32ToF16Bits(d), true);
    for (let j = 0; j < QK8_0; j++) dv.setInt8(at + 2 + j, roundf(f(f(x[i * QK8_0 + j]!) * id)));
  }
  return out;
}

/** Quantizes `x` (length a multiple of 32) into Q4_0 blocks. */
export function quantizeQ4_0(x: ArrayLike<number>, out = new Uint8Array((x.length / QK4_0) * Q4_0_BLOCK_BYTES)): Uint8Array {
  const nb = blocks(x.length, QK4_0, "Q4_0");
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const half = QK4_0 / 2;
  for (let i = 0; i < nb; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = f(x[i * QK4_0 + j]!);
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    const at = i * Q4_0_BLOCK_BYTES;
    dv.setUint16(at, f32ToF16Bits(d), true);
    for (let j = 0; j < half; j++) {
      const x0 = f(f(x[i * QK4_0 + j]!) * id);
      const x1 = f(f(x[i * QK4_0 + half + j]!) * id);
      const q0 = Math.min(15, Math.trunc(f(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(f(x1 + 8.5)));
      out[at + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/** Q8_0 blocks back to values (d·q, in f32). */
export function dequantizeQ8_0(blocksBytes: Uint8Array, out?: Float32Array): Float32Array {
  const nb = blocks(blocksBytes.byteLength, Q8_0_BLOCK_BYTES, "Q8_0 bytes");
  const y = out ?? new Float32Array(nb * QK8_0);
  const dv = new DataView(blocksBytes.buffer, blocksBytes.byteOffset, blocksBytes.byteLength);
  for (let i = 0; i < nb; i++) {
    const at = i * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(dv.getUint16(at, true));
    for (let j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = d * dv.getInt8(at + 2 + j);
  }
  return y;
}

/** Q4_0 blocks back to values (d·(q − 8), in f32). */
export function dequantizeQ4_0(blocksBytes: Uint8Array, out?: Float32Array): Float32Array {
  const nb = blocks(blocksBytes.byteLength, Q4_0_BLOCK_BYTES, "Q4_0 bytes");
  const y = out ?? new Float32Array(nb * QK4_0);
  const dv = new DataView(blocksBytes.buffer, blocksBytes.byteOffset, blocksBytes.byteLength);
  const half = QK4_0 / 2;
  for (let i = 0; i < nb; i++) {
    const at = i * Q4_0_BLOCK_BYTES;
    const d = f16BitsToF32(dv.getUint16(at, true));
    for (let j = 0; j < half; j++) {
      const b = blocksBytes[at + 2 + j]!;
      y[i * QK4_0 + j] = d * ((b & 15) - 8);
      y[i * QK4_0 + half + j] = d * ((b >> 4) - 8);
    }
  }
  return y;
}
