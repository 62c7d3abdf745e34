// gemv_chunk.wgsl: the W chunk of the rows-design GEMV kernels (gemv, gemv_step), widened to f32.
// Included with `#include gemv_chunk`; not a kernel. A chunk is VEC consecutive elements of one W
// row: 8 f16 (four u32 words of packed pairs, unpack2x16float: no shader-f16 needed), 4 f32, or 1
// element (K not a multiple of the vector width: rows then start unaligned). Elements 0..3 go to
// lo, 4..7 to hi; unused lanes are 0. f16 widening is exact. Needs the define VEC8 (fmac). Reference: linearReference in
// src/ops/linear.ts (and gemvStepReference in src/ops/gemv-step.ts).

struct Chunk { lo: vec4<f32>, hi: vec4<f32> }

// Eight f16 elements packed in four words (element 2i in the low half of word i).
fn chunk_f16x8(p: vec4<u32>) -> Chunk {
  return Chunk(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)),
               vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w)));
}

// One f16 element e of a packed array, given the word that holds it (word e >> 1).
fn chunk_f16x1(word: u32, e: u32) -> Chunk {
  let bits = (word >> ((e & 1u) * 16u)) & 0xffffu;
  return Chunk(vec4<f32>(unpack2x16float(bits).x, 0.0, 0.0, 0.0), vec4<f32>());
}

fn chunk_f32x4(v: vec4<f32>) -> Chunk {
  return Chunk(v, vec4<f32>());
}

fn chunk_f32x1(v: f32) -> Chunk {
  return Chunk(vec4<f32>(v, 0.0, 0.0, 0.0), vec4<f32>());
}

// acc + w·v lane by lane, hi half first (VEC8: the 8-element chunk; else lo only).
fn fmac(w: Chunk, v: Chunk, acc: vec4<f32>) -> vec4<f32> {
#if VEC8
  return fma(w.lo, v.lo, fma(w.hi, v.hi, acc));
#else
  return fma(w.lo, v.lo, acc);
#endif
}

// The four lanes of an accumulator summed pairwise.
fn hsum(a: vec4<f32>) -> f32 {
  return (a.x + a.y) + (a.z + a.w);
}
