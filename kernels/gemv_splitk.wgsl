// gemv_splitk.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   for small M (decode)
// Reference: linearReference in src/ops/linear.ts. Bindings and Params: kernels/linear_io.wgsl.
//
// Mapping (design "splitk", the GPU-style GEMV): one workgroup owns R rows of W and the MB
// activation rows of its M-block; its WG invocations split the K reduction (invocation l takes
// chunks l, l+WG, ...: adjacent invocations read adjacent 16-byte chunks), then reduce the R·MB
// partial sums through workgroup memory (a tree of barriers). Workgroups: x = row blocks of R
// (2-D grid), z = M-blocks. Accumulation f32, bias added last.
//
// Measured on lavapipe (figures in gemv.wgsl's header): about half the speed of "rows" there
// (f16 4096×4096 M=1: 19.5 ms tree, 16.6 ms SUBGROUP, vs 7.7 ms); its M-block is capped at 2 rows
// because llvmpipe took ~21 s to compile MB=8 (R·MB = 16 sums through 6 barrier rounds). Kept
// (not yet measured on a real GPU) as the layout one wants (adjacent invocations, adjacent chunks).
// With SUBGROUP (needs the 'subgroups' feature; Deno has none) the reduction is subgroupAdd plus
// one partial per subgroup in workgroup memory.
#if SUBGROUP
enable subgroups;
#endif

#include linear_io

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;

#include gemv_chunk
#include gemv_load
#include linear_bias
#include gemv_tile

var<workgroup> red: array<f32, {{ACC}} * {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUP
        @builtin(subgroup_size) sg_size: u32, @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
        @builtin(local_invocation_index) lid: u32) {
  let blk = wid.x + wid.y * nwg.x;
  let row0 = blk * R;
  if (row0 >= params.nw) { return; }   // uniform per workgroup: no barrier is skipped by half of it
  let mb0 = wid.z * MB;
  let cpr = params.K / {{VECN}}u;
  var acc: array<vec4<f32>, {{ACC}}>;
  var rows = tile_rows(row0);
  var ms = tile_ms(mb0);
  for (var c = lid; c < cpr; c += {{WG}}u) {
    var xs: array<Chunk, {{MB}}>;
    for (var i = 0u; i < MB; i++) { xs[i] = load_x(ms[i], c, cpr); }
    for (var r = 0u; r < R; r++) {
      let wc = load_w(rows[r], c, cpr);
      for (var i = 0u; i < MB; i++) { acc[i * R + r] = fmac(wc, xs[i], acc[i * R + r]); }
    }
  }
#if SUBGROUP
  // subgroupAdd within each subgroup, then one partial per subgroup through workgroup memory.
  let nsg = ({{WG}}u + sg_size - 1u) / sg_size;
  for (var j = 0u; j < {{ACC}}u; j++) {
    let s = subgroupAdd(hsum(acc[j]));
    if (sg_lane == 0u) { red[j * {{WG}}u + lid / sg_size] = s; }
  }
  workgroupBarrier();
  if (lid < {{ACC}}u) {
    var t = 0.0;
    for (var q = 1u; q < nsg; q++) { t += red[lid * {{WG}}u + q]; }
    red[lid * {{WG}}u] += t;
  }
#else
  for (var j = 0u; j < {{ACC}}u; j++) {
    red[j * {{WG}}u + lid] = hsum(acc[j]);
  }
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      for (var j = 0u; j < {{ACC}}u; j++) { red[j * {{WG}}u + lid] += red[j * {{WG}}u + lid + s]; }
    }
    workgroupBarrier();
  }
#endif
  if (lid < {{ACC}}u) {
    let i = lid / R;
    let r = lid % R;
    let n = row0 + r;
    let m = mb0 + i;
    if (n < params.nw && m < params.M) {
      y[params.y_base + m * params.N + params.n0 + n] = red[lid * {{WG}}u] + load_bias(n);
    }
  }
}
