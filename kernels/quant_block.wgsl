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

// ---- The tiles layout (src/gpu/tensor.ts TilesLayout for q8_0 / q4_0; host transform and CPU
// mirror of these reads: src/quant/tiles.ts). A packed row's 16-byte chunks come in groups of 8
// blocks: the quant chunks of the group's blocks (QCB per block), then one chunk of their 8 f16
// scales. Q4_0 chunk = a block's 16 GGUF bytes; Q8_0 chunk = a half-block's 16 bytes as q + 128.
// Unpacking without a shift per element: a word's bytes (Q8_0) or low nibbles (Q4_0; the high
// ones after one shift of the word) are masked in place, giving u·2^(8i) in lane i, and paired with
// x·2^(−8i) (qt_xscale): both exact in f32, so each product is exactly u·x.
#if Q8
const QCB: u32 = 2u;        // quant chunks per block
const QOFF: f32 = 128.0;    // stored u = q + 128
#else
const QCB: u32 = 1u;
const QOFF: f32 = 8.0;      // nibble n = q + 8
#endif
const QGC: u32 = 8u * QCB + 1u;   // chunks per group of 8 blocks (quants, then the scales chunk)

// Chunks per packed row of nb blocks.
fn qt_kc(nb: u32) -> u32 { return nb * QCB + (nb + 7u) / 8u; }

// What x is multiplied by, per lane of an x vec4, to pair with qt_u8 / qt_n4.
fn qt_xscale() -> vec4<f32> {
#if Q8
  return vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 65536.0);
#else
  return vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
#endif
}

// Q8_0: word w's unsigned bytes u0..u3 as (u0, u1·2^8, u2·2^16, u3·2^16).
fn qt_u8(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w, w, w, w >> 8u) & vec4<u32>(0xffu, 0xff00u, 0xff0000u, 0xff0000u)));
}

// Q4_0: word w's nibbles at bits 0, 8, 16, 24 as (n0, n1·2^8, n2·2^16, n3·2^24).
fn qt_n4(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) & vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf000000u)));
}

// a + Σ u·x of one block of one row: p0 (and p1, Q8_0's second half-block) its quant chunks,
// xp[k] = x vec4 k of the block (elements 4k .. 4k+3) · qt_xscale(). Start a at −QOFF·Σx and
// multiply by d to get the block's Σ deq(w)·x.
fn qt_block_dot(p0: vec4<u32>, p1: vec4<u32>, xp: array<vec4<f32>, 8>, a: vec4<f32>) -> vec4<f32> {
  var s = a;
#if Q8
  s = fma(qt_u8(p0.x), xp[0], s);
  s = fma(qt_u8(p0.y), xp[1], s);
  s = fma(qt_u8(p0.z), xp[2], s);
  s = fma(qt_u8(p0.w), xp[3], s);
  s = fma(qt_u8(p1.x), xp[4], s);
  s = fma(qt_u8(p1.y), xp[5], s);
  s = fma(qt_u8(p1.z), xp[6], s);
  s = fma(qt_u8(p1.w), xp[7], s);
#else
  // word c: low nibbles = elements 4c .. 4c+3, high nibbles = 16 + 4c .. +3
  s = fma(qt_n4(p0.x), xp[0], s);
  s = fma(qt_n4(p0.x >> 4u), xp[4], s);
  s = fma(qt_n4(p0.y), xp[1], s);
  s = fma(qt_n4(p0.y >> 4u), xp[5], s);
  s = fma(qt_n4(p0.z), xp[2], s);
  s = fma(qt_n4(p0.z >> 4u), xp[6], s);
  s = fma(qt_n4(p0.w), xp[3], s);
  s = fma(qt_n4(p0.w >> 4u), xp[7], s);
#endif
  return s;
}

// Scale of block j (0..7) of a group, from the group's scales chunk.
fn qt_scale(sv: vec4<u32>, j: u32) -> f32 {
  return unpack2x16float(sv[j >> 1u])[j & 1u];
}
