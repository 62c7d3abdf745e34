// The tiles layout of a quantized weight (src/gpu/tensor.ts TilesLayout, q8_0 / q4_0): the host
// transform from the split-blocks arrays (src/quant/formats.ts) made at load time, its inverse, and
// the element reader the kernels mirror (gemv_step / gemv_q / embedding_q TILES).
//
// Per tile of T rows, each row's packed chunks (16 bytes) come in groups of 8 blocks: group g holds
// the quant chunks of its nbg = min(8, nb − 8g) blocks, then one chunk of their f16 scales (block
// 8g + j at half j, zero past nbg). Chunk c of row tile·T + lane lies at chunk (tile·kc + c)·T + lane,
// so at every step of a K loop the T lanes of a tile read T neighbouring 16-byte chunks, scales too.
//   Q4_0: one chunk per block: GGUF's 16 quant bytes as they are (byte j: element j in its low
//         nibble, j + 16 in its high one). The kernels mask each word's nibbles in place
//         (w & 0x0F0F0F0F-style masks per lane of a vec4, n·2^(8i)) and pair them with x scaled by
//         2^(−8i), which is exact: no shift per element.
//   Q8_0: two chunks per block (half-block h = elements 16h .. 16h + 15), each byte stored as q + 128
//         (q XOR 0x80) so the kernels read unsigned bytes by masking (Σ u·x − 128·Σ x per block).
// Why groups of 8 with the scales inside: the scales of 8 blocks are one 16-byte chunk (each lane
// loads 4 words per 256 weights, against 1 word per block in the split-blocks layout), and one
// binding holds a matrix's quants and scales, so windows are whole tiles as for f16.

import { ShapeError } from "../errors.js";
import { quantTileChunksPerBlock, tilesBytes, tilesLayout, type TilesLayout } from "../gpu/tensor.js";
import { f16BitsToF32 } from "../util/f16.js";
import { QK, quantBytes, type QuantFormat, type QuantizedMatrix } from "./formats.js";

/** Where block b's quant chunk h and scale lie in a packed row: chunk indices within the row (0..kc). */
export function quantTileChunks(format: QuantFormat, nb: number, b: number): { quant: (h: number) => number; scale: number; half: number } {
  const cb = quantTileChunksPerBlock(format);
  const g = Math.floor(b / 8);
  const base = g * (8 * cb + 1);
  const nbg = Math.min(8, nb - 8 * g);
  return { quant: (h: number) => base + (b % 8) * cb + h, scale: base + nbg * cb, half: b % 8 };
}

/** The layout of a quantized W [N, K] in tiles of T rows (src/gpu/tensor.ts tilesLayout). */
export function quantTilesLayout(N: number, K: number, format: QuantFormat, T: number): TilesLayout {
  return tilesLayout(N, K, format, T);
}

/**
 * The tiles-layout bytes of a quantized W (split-blocks arrays qs + scales), T rows per tile.
 * Byte-exact: Q4_0 quant bytes and every scale are copied, Q8_0 quant bytes XOR 0x80; padding is zero.
 */
export function toQuantTiles(q: QuantizedMatrix, T: number): Uint8Array {
  const { N, K, format, qs, scales } = q;
  const lay = quantTilesLayout(N, K, format, T);
  const out = new Uint8Array(tilesBytes(lay));
  const nb = K / QK;
  const cb = quantTileChunksPerBlock(format);
  const qPerBlock = 16 * cb;
  const xor = format === "q8_0" ? 0x80 : 0;
  for (let n = 0; n < N; n++) {
    const rowBase = Math.floor(n / T) * lay.kc * T + (n % T); // chunk of (tile, 0, lane)
    for (let b = 0; b < nb; b++) {
      const at = quantTileChunks(format, nb, b);
      const src = (n * nb + b) * qPerBlock;
      for (let h = 0; h < cb; h++) {
        const dst = (rowBase + at.quant(h) * T) * 16;
        for (let i = 0; i < 16; i++) out[dst + i] = qs[src + h * 16 + i]! ^ xor;
      }
      const s = scales[n * nb + b]!;
      const sd = (rowBase + at.scale * T) * 16 + at.half * 2;
      out[sd] = s & 0xff;
      out[sd + 1] = s >> 8;
    }
  }
  return out;
}

/** The inverse of toQuantTiles: the split-blocks arrays back from tiles-layout bytes. */
export function fromQuantTiles(bytes: Uint8Array, N: number, K: number, format: QuantFormat, T: number): QuantizedMatrix {
  const lay = quantTilesLayout(N, K, format, T);
  if (bytes.byteLength < tilesBytes(lay)) throw new ShapeError(`${format} [${N}, ${K}] in tiles of ${T}: ${bytes.byteLength} bytes, expected ${tilesBytes(lay)}`);
  const { qsBytes } = quantBytes(N, K, format);
  const qs = new Uint8Array(qsBytes);
  const scales = new Uint16Array((N * K) / QK);
  const nb = K / QK;
  const cb = quantTileChunksPerBlock(format);
  const xor = format === "q8_0" ? 0x80 : 0;
  for (let n = 0; n < N; n++) {
    const rowBase = Math.floor(n / T) * lay.kc * T + (n % T);
    for (let b = 0; b < nb; b++) {
      const at = quantTileChunks(format, nb, b);
      const dstQ = (n * nb + b) * 16 * cb;
      for (let h = 0; h < cb; h++) {
        const src = (rowBase + at.quant(h) * T) * 16;
        for (let i = 0; i < 16; i++) qs[dstQ + h * 16 + i] = bytes[src + i]! ^ xor;
      }
      const sd = (rowBase + at.scale * T) * 16 + at.half * 2;
      scales[n * nb + b] = bytes[sd]! | (bytes[sd + 1]! << 8);
    }
  }
  return { format, N, K, qs, scales };
}

/**
 * Element (n, k) of deq(W) read from tiles-layout bytes the way the kernels address it (word of a
 * chunk, byte or nibble of the word, the group's scale chunk): the CPU mirror of their reads.
 */
export function quantTilesElement(bytes: Uint8Array, N: number, K: number, format: QuantFormat, T: number, n: number, k: number): number {
  const lay = quantTilesLayout(N, K, format, T);
  const nb = K / QK;
  const b = Math.floor(k / QK);
  const j = k % QK;
  const at = quantTileChunks(format, nb, b);
  const rowBase = Math.floor(n / T) * lay.kc * T + (n % T);
  const word = (chunk: number, w: number) => {
    const o = ((rowBase + chunk * T) * 4 + w) * 4;
    return (bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24)) >>> 0;
  };
  const sw = word(at.scale, at.half >> 1);
  const d = f16BitsToF32((sw >>> ((at.half & 1) * 16)) & 0xffff);
  if (format === "q8_0") {
    const e = j % 16; // element within the half-block chunk: word e >> 2, byte e & 3
    const u = (word(at.quant(j >> 4), e >> 2) >>> (8 * (e & 3))) & 0xff;
    return (u - 128) * d;
  }
  const e = j & 15; // byte e: word e >> 2, byte e & 3; nibble j >> 4
  const nib = (word(at.quant(0), e >> 2) >>> (8 * (e & 3) + 4 * (j >> 4))) & 15;
  return (nib - 8) * d;
}

/** deq(W) [N, K] read element by element from tiles-layout bytes (quantTilesElement). */
export function dequantizeQuantTiles(bytes: Uint8Array, N: number, K: number, format: QuantFormat, T: number): Float32Array {
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = quantTilesElement(bytes, N, K, format, T, n, k);
  return out;
}
