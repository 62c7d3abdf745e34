// gemv_repack.wgsl: packs W [N, K] (row-major, f32 or f16) into gemv_tiled.wgsl's lane-interleaved
// tiles, Wp[tile][c][lane] = W[tile·T + lane, c·CE .. c·CE + CE), zero past N and K.
// Reference: tiledCopyReference in src/ops/tiled-copy.ts. Runs once per weight or index (cached).
//
// Bindings (group 0):
//   0 src:    array<u32>            read        W rows ntile0·T .. of this window, from element
//                                               params.src_base (elements of W: halves or f32);
//                                               f16 read as packed pairs (no shader-f16)
//   1 dst:    array<u32>            read_write  packed tiles of this window, as u32 words
//   2 params: Params                uniform
//
// Mapping: one invocation per destination word (16-byte chunk = 4 words; f16: 2 halves a word).
// Bit-exact copy: no arithmetic on the values.

struct Params {
  N: u32,        // rows of W in this window
  K: u32,        // columns of W, elements
  kc: u32,       // chunks per packed row, ceil(K / CE)
  words: u32,    // destination words in this window = tiles · kc · T · 4
  src_base: u32, // element offset of W[first row of this window, 0] inside the src binding
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const T: u32 = {{T}}u;
const CE: u32 = {{CE}}u;

// Element (n, k) of W as bits (an f16 in the low half, or f32 bits); 0 outside [N, K].
fn elem(n: u32, k: u32) -> u32 {
  if (n >= params.N || k >= params.K) { return 0u; }
  let e = params.src_base + n * params.K + k;
#if WF16
  return (src[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
#else
  return src[e];
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let j = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (j >= params.words) { return; }
  let q = j / 4u;                 // chunk index
  let wi = j % 4u;                // word in chunk
  let lane = q % T;
  let c = (q / T) % params.kc;
  let tile = q / (T * params.kc);
  let n = tile * T + lane;
#if WF16
  let k = c * CE + wi * 2u;
  dst[j] = elem(n, k) | (elem(n, k + 1u) << 16u);
#else
  dst[j] = elem(n, c * CE + wi);
#endif
}
