// quant_block.wgsl: unpacking of GGUF Q8_0 / Q4_0 blocks in the split-blocks layout of
// src/quant/formats.ts, shared by the kernels that read quantized W directly (gemv_q, gemv_step).
// Included with `#include quant_block`; not a kernel. The including kernel defines Q8 (Q8_0 when
// true, Q4_0 otherwise). Reference: dequantizeMatrix in src/quant/formats.ts (w = q · d exactly).
//   Q8_0: a block's 32 int8 = 8 words; half-block h (elements 16h..16h+15) is one vec4<u32>:
//        word c holds elements 16h + 4c .. +3, lowest byte first.
//   Q4_0: a block's 16 bytes = 4 words, byte j = element j (low nibble) and j + 16 (high nibble);
//        half-block h = words 2h, 2h+1 (vec2<u32>): word c of it holds elements 8h + 4c .. +3 in
//        its low nibbles and 16 + 8h + 4c .. +3 in its high nibbles.
// Either way one half-block gives 4 weight chunks of 4 elements (W4), each paired with the x chunk
// q_x4 names. No shader-f16 (scales through unpack2x16float), no packed-integer builtins.

// Four weight chunks as struct members (static access only: no array a compiler could spill).
struct W4 { w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32> }

// The f16 scale at half e of a packed-pairs array, given the word that holds it (word e >> 1).
fn q_scale_f16(word: u32, e: u32) -> f32 {
  return unpack2x16float((word >> ((e & 1u) * 16u)) & 0xffffu).x;
}

// Index (in vec4s of the x row) of the x chunk paired with weight chunk c of half-block h of block b.
fn q_x4(b: u32, h: u32, c: u32) -> u32 {
#if Q8
  return b * 8u + h * 4u + c;                       // elements 16h + 4c
#else
  return b * 8u + h * 2u + (c & 1u) + (c >> 1u) * 4u; // c = 0,1: low nibbles; 2,3: high nibbles
#endif
}

// Q8_0 half-block: its 16 int8 as f32 integers.
fn q8_ints(p: vec4<u32>) -> W4 {
  let sh = vec4<u32>(24u, 16u, 8u, 0u);
  return W4(vec4<f32>((vec4<i32>(bitcast<i32>(p.x)) << sh) >> vec4<u32>(24u)),
            vec4<f32>((vec4<i32>(bitcast<i32>(p.y)) << sh) >> vec4<u32>(24u)),
            vec4<f32>((vec4<i32>(bitcast<i32>(p.z)) << sh) >> vec4<u32>(24u)),
            vec4<f32>((vec4<i32>(bitcast<i32>(p.w)) << sh) >> vec4<u32>(24u)));
}

// Q4_0 half-block: its 16 nibbles n (0..15), unshifted.
fn q4_nibbles(p: vec2<u32>) -> W4 {
  let lo = vec4<u32>(0u, 8u, 16u, 24u);
  let hi = vec4<u32>(4u, 12u, 20u, 28u);
  let m = vec4<u32>(15u);
  return W4(vec4<f32>((vec4<u32>(p.x) >> lo) & m), vec4<f32>((vec4<u32>(p.y) >> lo) & m),
            vec4<f32>((vec4<u32>(p.x) >> hi) & m), vec4<f32>((vec4<u32>(p.y) >> hi) & m));
}

// Q4_0 half-block: its 16 weights' integers n − 8.
fn q4_ints(p: vec2<u32>) -> W4 {
  let n = q4_nibbles(p);
  return W4(n.w0 - 8.0, n.w1 - 8.0, n.w2 - 8.0, n.w3 - 8.0);
}

// The weight chunks dequantized: integers · d (exact in f32).
fn w4_scaled(w: W4, d: f32) -> W4 {
  return W4(w.w0 * d, w.w1 * d, w.w2 * d, w.w3 * d);
}
