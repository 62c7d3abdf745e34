// f16_packed.wgsl: helpers for f16 data stored as packed pairs in u32 words, for devices without
// the shader-f16 feature (browsers' SwiftShader). Included with `#include f16_packed`; not a kernel.
// Layout: element 2i is the low half of word i, element 2i+1 its high half (little-endian f16
// arrays read as u32). unpack2x16float / pack2x16float need no extension; widening is exact,
// narrowing rounds f32 → f16 like the f16() conversion of the native path.

// Element i of an f16 array, given the word holding it (word index i >> 1).
fn f16p_at(word: u32, i: u32) -> f32 {
  return unpack2x16float(word >> ((i & 1u) << 4u)).x;
}

// Four consecutive f16 elements (a vec4 slot: two words).
fn f16p_vec4(p: vec2<u32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
}

// Two f32 values rounded to f16, as one word (a = low half = even element).
fn f16p_pair(a: f32, b: f32) -> u32 {
  return pack2x16float(vec2<f32>(a, b));
}

// The f16 bits of one value placed in the half of the word that holds element i.
fn f16p_half_bits(v: f32, i: u32) -> u32 {
  return (pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu) << ((i & 1u) << 4u);
}

// Mask keeping the other half of the word that holds element i.
fn f16p_keep_mask(i: u32) -> u32 {
  return select(0xffff0000u, 0x0000ffffu, (i & 1u) == 1u);
}
