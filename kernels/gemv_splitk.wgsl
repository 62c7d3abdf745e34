// gemv_splitk.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   for small M (decode)
// Reference: linearReference in src/ops/linear.ts. Same bindings and Params as gemv.wgsl.
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

struct Params {
  K: u32,        // reduction length, elements
  nw: u32,       // rows of W in this window (outputs per activation row)
  M: u32,        // activation rows in this M-window
  N: u32,        // y row stride, elements (full output width)
  n0: u32,       // first output column of this window
  x_base: u32,   // element offset of x row m0 inside the x binding (in VEC units when VEC > 1)
  y_base: u32,   // element offset of y[m0, 0] inside the y binding
  b_base: u32,   // element offset of bias[n0] inside the bias binding (in bias elements)
  bias_kind: u32, // 0: no bias (binding 2 is a dummy), 1: f32 bias, 2: f16 bias
}

@group(0) @binding(0) var<storage, read> x: array<{{XT}}>;
@group(0) @binding(1) var<storage, read> w: array<{{WT}}>;
@group(0) @binding(2) var<storage, read> bias: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;

// One VEC-wide chunk of W row `row`, chunk `c`, widened to f32 (lo = elements 0..3, hi = 4..7).
struct Chunk { lo: vec4<f32>, hi: vec4<f32> }

fn load_w(row: u32, c: u32, cpr: u32) -> Chunk {
#if WF16
#if VEC8
  let p = w[row * cpr + c];
  return Chunk(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)),
               vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w)));
#else
  let e = row * params.K + c;           // element index of a half
  let bits = (w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
  return Chunk(vec4<f32>(unpack2x16float(bits).x, 0.0, 0.0, 0.0), vec4<f32>());
#endif
#else
#if VEC4
  return Chunk(w[row * cpr + c], vec4<f32>());
#else
  return Chunk(vec4<f32>(w[row * cpr + c], 0.0, 0.0, 0.0), vec4<f32>());
#endif
#endif
}

fn load_x(m: u32, c: u32, cpr: u32) -> Chunk {
#if VEC8
  let i = params.x_base + m * cpr * 2u + c * 2u;
  return Chunk(x[i], x[i + 1u]);
#else
#if VEC4
  return Chunk(x[params.x_base + m * cpr + c], vec4<f32>());
#else
  return Chunk(vec4<f32>(x[params.x_base + m * cpr + c], 0.0, 0.0, 0.0), vec4<f32>());
#endif
#endif
}

#include linear_bias

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
  var rows: array<u32, {{R}}>;
  var ms: array<u32, {{MB}}>;
  for (var r = 0u; r < R; r++) { rows[r] = min(row0 + r, params.nw - 1u); }
  for (var i = 0u; i < MB; i++) { ms[i] = min(mb0 + i, params.M - 1u); }
  for (var c = lid; c < cpr; c += {{WG}}u) {
    var xs: array<Chunk, {{MB}}>;
    for (var i = 0u; i < MB; i++) { xs[i] = load_x(ms[i], c, cpr); }
    for (var r = 0u; r < R; r++) {
      let wc = load_w(rows[r], c, cpr);
      for (var i = 0u; i < MB; i++) {
#if VEC8
        acc[i * R + r] = fma(wc.lo, xs[i].lo, fma(wc.hi, xs[i].hi, acc[i * R + r]));
#else
        acc[i * R + r] = fma(wc.lo, xs[i].lo, acc[i * R + r]);
#endif
      }
    }
  }
#if SUBGROUP
  // subgroupAdd within each subgroup, then one partial per subgroup through workgroup memory.
  let nsg = ({{WG}}u + sg_size - 1u) / sg_size;
  for (var j = 0u; j < {{ACC}}u; j++) {
    let a = acc[j];
    let s = subgroupAdd((a.x + a.y) + (a.z + a.w));
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
    let a = acc[j];
    red[j * {{WG}}u + lid] = (a.x + a.y) + (a.z + a.w);
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
