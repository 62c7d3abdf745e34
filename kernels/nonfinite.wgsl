// nonfinite.wgsl: counts[slot] += #{ i < n : x[i] is NaN, +inf or −inf }
// (reference: countNonFiniteReference in src/ops/nonfinite.ts).
//
// The tensor is read as raw 32-bit words, never as floats, so the f16 variant needs no
// shader-f16 feature (browsers' SwiftShader lacks it) and no NaN is ever propagated:
//   f32 (default): element i = word i;        non-finite ⇔ (w & 0x7f800000) == 0x7f800000
//   f16 (F16):     element 2i = low half of word i, 2i+1 = high half;
//                  non-finite ⇔ (h & 0x7c00) == 0x7c00 (all-ones exponent); subnormals and
//                  ±65504 (exponent 0x1e) are finite. An odd n leaves the high half of the last
//                  word as padding: not counted (that word is always in the scalar tail).
//
// Two variants per dtype, launched on one binding window (src/ops/nonfinite.ts):
//   VEC4:   words [0, 4·params.count) as vec4<u32> (the body; one bounds-checked load per 4 words)
//   scalar: words [params.first, params.count) as u32 (the tail: at most 4 words)
//
// Bindings (group 0):
//   0 x:      array<vec4<u32>> (VEC4) or array<u32>  read  one window of the tensor (≤ one storage binding)
//   1 counts: array<atomic<u32>>  read_write  [slots] one counter per checked tensor
//   2 params: Params              uniform
// Mapping: workgroup w (linear index x + y·num_x) owns items [w·WG·PER, (w+1)·WG·PER) (items:
// vec4s or words); invocation lid reads items w·WG·PER + k·WG + lid, k < PER (neighbouring lanes
// read neighbouring items). Accumulation: u32 per invocation; an invocation that found any adds
// its count with one atomicAdd (non-finite values are rare, so atomics almost never run).
// Counts wrap past 2³²−1; a tensor holds at most maxBufferSize / 2 elements, below that.
//
// Measured (lavapipe, busy 2-core machine, 2026-12-02, 64 MiB f32, best of 7): scalar u32 loads
// WG 256 × PER 16 61–88 ms, WG 64 × PER 64 49–65 ms, WG 256 × PER 4 94–159 ms; vec4 loads
// WG 256 × PER 4 35–45 ms (kept), WG 64 × PER 16 65–69 ms.

struct Params {
  count: u32,   // VEC4: vec4 items in this dispatch; scalar: end word (exclusive) in the window
  n: u32,       // elements in this window (f32: = words; f16: 2·words or 2·words − 1)
  slot: u32,    // counts[slot] receives this tensor's count
  first: u32,   // scalar: first word of the tail in the window (0 for VEC4)
}

#if VEC4
@group(0) @binding(0) var<storage, read> x: array<vec4<u32>>;
#else
@group(0) @binding(0) var<storage, read> x: array<u32>;
#endif
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * {{WG}}u * {{PER}}u;
#if VEC4
  var c4 = vec4<u32>(0u);
  for (var k = 0u; k < {{PER}}u; k++) {
    let i = base + k * {{WG}}u + lid;
    if (i >= params.count) { break; }
    let w = x[i];
#if F16
    c4 += select(vec4<u32>(0u), vec4<u32>(1u), (w & vec4<u32>(0x7c00u)) == vec4<u32>(0x7c00u));
    c4 += select(vec4<u32>(0u), vec4<u32>(1u), (w & vec4<u32>(0x7c000000u)) == vec4<u32>(0x7c000000u));
#else
    c4 += select(vec4<u32>(0u), vec4<u32>(1u), (w & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u));
#endif
  }
  let c = c4.x + c4.y + c4.z + c4.w;
#else
  var c = 0u;
  for (var k = 0u; k < {{PER}}u; k++) {
    let i = params.first + base + k * {{WG}}u + lid;
    if (i >= params.count) { break; }
    let w = x[i];
#if F16
    c += select(0u, 1u, (w & 0x7c00u) == 0x7c00u);
    c += select(0u, 1u, (w & 0x7c000000u) == 0x7c000000u && 2u * i + 1u < params.n);
#else
    c += select(0u, 1u, (w & 0x7f800000u) == 0x7f800000u);
#endif
  }
#endif
  if (c > 0u) { atomicAdd(&counts[params.slot], c); }
}
