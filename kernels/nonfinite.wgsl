// nonfinite.wgsl: counts[slot] += #{ i < n : x[i] is NaN, +inf or −inf }
// (reference: countNonFiniteReference in src/ops/nonfinite.ts).
//
// The tensor is read as raw 32-bit words, never as floats, so the f16 variant needs no
// shader-f16 feature (browsers' SwiftShader lacks it) and no NaN is ever propagated:
//   f32 (default): element i = word i;        non-finite ⇔ (w & 0x7f800000) == 0x7f800000
//   f16 (F16):     element 2i = low half of word i, 2i+1 = high half;
//                  non-finite ⇔ (h & 0x7c00) == 0x7c00 (all-ones exponent); subnormals and
//                  ±65504 (exponent 0x7800) are finite. An odd n leaves the high half of the last
//                  word as padding: not counted.
//
// Bindings (group 0):
//   0 x:      array<u32>          read        [words] one window of the tensor (≤ one storage binding)
//   1 counts: array<atomic<u32>>  read_write  [slots] one counter per checked tensor
//   2 params: Params              uniform
// Mapping: workgroup w (linear index x + y·num_x) owns words [w·WG·PER, (w+1)·WG·PER); invocation
// lid reads words w·WG·PER + k·WG + lid, k < PER (neighbouring lanes read neighbouring words).
// Accumulation: u32 per invocation; an invocation that found any adds its count with one
// atomicAdd (non-finite values are rare, so atomics almost never run). Counts wrap past 2³²−1;
// a tensor holds at most maxBufferSize / 2 elements, below that.

struct Params {
  words: u32,   // 32-bit words in this window
  n: u32,       // elements in this window (f32: = words; f16: 2·words or 2·words − 1)
  slot: u32,    // counts[slot] receives this tensor's count
  _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * {{WG}}u * {{PER}}u;
  var c = 0u;
  for (var k = 0u; k < {{PER}}u; k++) {
    let i = base + k * {{WG}}u + lid;
    if (i >= params.words) { break; }
    let w = x[i];
#if F16
    c += select(0u, 1u, (w & 0x7c00u) == 0x7c00u);
    // the high half of the last word is padding when n is odd
    c += select(0u, 1u, (w & 0x7c000000u) == 0x7c000000u && 2u * i + 1u < params.n);
#else
    c += select(0u, 1u, (w & 0x7f800000u) == 0x7f800000u);
#endif
  }
  if (c > 0u) { atomicAdd(&counts[params.slot], c); }
}
