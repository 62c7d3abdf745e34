// Half-precision conversions on the host: IEEE binary16 (f16) and bfloat16 (bf16).
// Used for uploads, downloads, BF16 checkpoints and CPU references that model f16 storage.

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Rounds an f32 to the nearest f16 (round-half-to-even), returning the 16-bit pattern. */
export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // may carry into exponent: correct
  return sign | half;
}

/** Converts an f16 bit pattern to a number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Rounds an f32 to the nearest bf16 (round-half-to-even), returning the 16-bit pattern. */
export function f32ToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return ((x >>> 16) | 0x40) & 0xffff; // nan
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToF32(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0]!;
}

export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  return out;
}

export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]!);
  return out;
}

export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
  return out;
}

let bf16ToF16Table: Uint16Array | null = null;
let f16ToF32Table: Float32Array | null = null;

// Whole arrays on the checkpoint load path (src/model/checkpoint.ts): the two 16-bit conversions go
// through 65,536-entry tables built from the element functions above.

/** bf16 bits → f16 bits for all 65,536 patterns (round to nearest even; exact reuse of f32ToF16Bits). */
function bf16ToF16Lut(): Uint16Array {
  if (!bf16ToF16Table) {
    const t = new Uint16Array(65536);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let b = 0; b < 65536; b++) {
      u[0] = b << 16;
      t[b] = f32ToF16Bits(f[0]!);
    }
    bf16ToF16Table = t;
  }
  return bf16ToF16Table;
}
function f16ToF32Lut(): Float32Array {
  if (!f16ToF32Table) f16ToF32Table = f16ArrayToF32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  return f16ToF32Table;
}

/**
 * bf16 bits → f16 bits. Finite bf16 values beyond f16's range (|x| > 65504) become ±inf; their
 * count is returned so callers can refuse a lossy load instead of producing infinities silently.
 */
export function convertBf16ToF16(src: Uint16Array, out = new Uint16Array(src.length)): { out: Uint16Array; overflows: number } {
  const lut = bf16ToF16Lut();
  let overflows = 0;
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    const h = lut[b]!;
    out[i] = h;
    if ((h & 0x7fff) === 0x7c00 && (b & 0x7f80) !== 0x7f80) overflows++;
  }
  return { out, overflows };
}

export function convertF16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const lut = f16ToF32Lut();
  for (let i = 0; i < src.length; i++) out[i] = lut[src[i]!]!;
  return out;
}

/** f32 → f16 bits; finite values beyond f16's range become ±inf and are counted. */
export function convertF32ToF16(src: Float32Array, out = new Uint16Array(src.length)): { out: Uint16Array; overflows: number } {
  let overflows = 0;
  for (let i = 0; i < src.length; i++) {
    const x = src[i]!;
    const h = f32ToF16Bits(x);
    out[i] = h;
    if ((h & 0x7fff) === 0x7c00 && Number.isFinite(x)) overflows++;
  }
  return { out, overflows };
}
