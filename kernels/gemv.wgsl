// gemv.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   for small M (decode)
// Reference: linearReference in src/ops/linear.ts (Hugging Face nn.Linear, y = x·Wᵀ + b).
//
// Bindings and Params: kernels/linear_io.wgsl (x [M, K], W [nw, K] f32 or f16 as packed u32 pairs
// or vec4<f16> with NATIVE_F16, bias, y [M, N]; every storage binding one window of at most
// maxStorageBufferBindingSize).
//
// Mapping (design "rows": measured best on lavapipe, see below): one invocation owns R rows of W
// (rows n = (gid·R + r), r < R) and all MB activation rows of its M-block, and walks the whole K
// reduction itself with VEC-element loads (f32: vec4<f32>; f16: vec4<u32> = 8 halves through
// unpack2x16float, which needs no shader-f16; VEC = 1 when K is not a multiple of that width,
// since rows then start unaligned). No workgroup memory, no barriers. Workgroups: x = blocks of
// WG·R rows (2-D grid for > 65,535), z = M-blocks of MB activation rows; rows past M reuse row
// M-1 for loads and skip the store.
// Accumulation: f32, per lane of a vec4 accumulator, lanes summed at the end; the bias (f32 or
// f16 widened) is added last. f16 weights are widened exactly to f32, so only the summation order
// differs from the reference.
//
// Designs measured (lavapipe: llvmpipe 8-wide, AMD EPYC 2 cores shared with other jobs, Node +
// Dawn, 2026-11-24; f16 W 4096×4096, M=1, interleaved A/B rounds; copyBufferToBuffer of 32 MiB in
// the same rounds 22–36 GB/s read+write):
//   rows, R=4, WG=64 (kept)                     7.7 ms  4.35 GB/s of W
//   rows, R=2                                    9.5 ms  3.52 GB/s
//   rows, W as vec4<f16> (NATIVE_F16, shader-f16) R=4: 11.3 ms 2.98 GB/s; R=2: 11.9 ms
//   rows, WG=1 (every load workgroup-uniform)   R=4: 20.1 ms; R=8: 18.6 ms
//   splitk (gemv_splitk.wgsl, WG=64 split K, tree reduction in workgroup memory) 19.5 ms 1.72 GB/s
//   splitk + subgroupAdd (SUBGROUP)              16.6 ms  2.03 GB/s
// The kernel is bound by instructions per W element, not by memory: f32 W moves twice the bytes
// in 1.5× the time (11.6 ms, 5.8 GB/s); our guess is llvmpipe's per-lane (gathered) loads. For
// M > 1 each W chunk is reused MB times, yet matmul.wgsl wins from M=4 on: every lane also loads
// the MB x chunks itself (a gather on llvmpipe), one x word per R = 4 MACs. gemv_bcast.wgsl loads
// one x element per lane and broadcasts it through the subgroup; it beats both where subgroups of
// 8 exist (GEMV_MAX_M, gemvBcastPreferred in src/ops/linear.ts).
#if NATIVE_F16
enable f16;
#endif

#include linear_io

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;

#include gemv_load
#include gemv_chunk
#include linear_bias
#include gemv_tile

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = tile_of(wid, nwg, lid);
  if (tile.x >= params.nw) { return; }
  let cpr = params.K / {{VECN}}u;      // chunks per row
  var acc: array<vec4<f32>, {{ACC}}>;  // [MB][R]
  var rows = tile_rows(tile.x);
  var ms = tile_ms(tile.y);
  for (var c = 0u; c < cpr; c++) {
    var xs: array<Chunk, {{MB}}>;
    for (var i = 0u; i < MB; i++) { xs[i] = load_x(ms[i], c, cpr); }
    for (var r = 0u; r < R; r++) {
      let wc = load_w(rows[r], c, cpr);
      for (var i = 0u; i < MB; i++) { acc[i * R + r] = fmac(wc, xs[i], acc[i * R + r]); }
    }
  }
  store_tile(&acc, tile.x, tile.y);
}
