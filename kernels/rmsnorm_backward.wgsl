// rmsnorm_backward.wgsl: input gradient of y = x · r · w, r = 1/sqrt(mean(x²) + eps), per row:
//   dx[t, i] (+)= r·w[i]·dy[t, i] − x[t, i] · r³/D · Σ_j w[j]·dy[t, j]·x[t, j]
//   rstd[t]  = r                      (saved for the weight gradient, rmsnorm_dw_backward.wgsl)
// Reference: rmsnormBackwardReference in src/train/ops/rmsnorm_backward.ts.
// For the fused-residual forward (h = x + residual; y = rmsnorm(h)), pass h as x and the
// residual stream's gradient as dx with accumulate = 1: dh = dstream + ∂y/∂h·dy, which is both
// the gradient of x and of residual (an add passes its gradient through to both inputs).
//
// Bindings (group 0), activations bound as one window of whole rows:
//   0 x:      array<f32>  read        [T, D] f32 (the norm's input h)
//   1 weight: array<WT>   read        [D] f32, or f16 as packed pairs (u32) with WF16
//   2 dy:     array<f32>  read        [T, D] f32
//   3 dx:     array<f32>  read_write  [T, D] f32 (must alias no input)
//   4 rstd:   array<f32>  read_write  [rstd_base + T] f32 (row t of this window at rstd_base + t)
//   5 params: Params      uniform
// Mapping: one workgroup per row (linear workgroup index x + y·num_x); WG invocations stride over
// the row accumulating Σx² and Σw·dy·x in f32, tree-reduced in workgroup memory; then each
// invocation writes its own elements of dx. Accumulation f32; f16 weights widened exactly.

struct Params {
  T: u32,          // rows in this window
  D: u32,          // row length, elements
  Df: f32,         // D as f32
  eps: f32,
  accumulate: u32, // 1: dx += grad, 0: dx = grad
  rstd_base: u32,  // element offset of this window's first row inside the rstd binding
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<{{WT}}>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> part_ss: array<f32, {{WG}}>;
var<workgroup> part_dot: array<f32, {{WG}}>;

fn load_w(i: u32) -> f32 {
#if WF16
  return unpack2x16float((weight[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu).x;
#else
  return weight[i];
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;   // workgroup-uniform
  if (row >= params.T) { return; }
  let base = row * params.D;
  var ss = 0.0;
  var dt = 0.0;
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let xv = x[base + i];
    ss += xv * xv;
    dt += load_w(i) * dy[base + i] * xv;
  }
  part_ss[lid] = ss;
  part_dot[lid] = dt;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      part_ss[lid] += part_ss[lid + s];
      part_dot[lid] += part_dot[lid + s];
    }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(part_ss[0] / params.Df + params.eps);
  let c = r * r * r * part_dot[0] / params.Df;
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let g = r * load_w(i) * dy[base + i] - x[base + i] * c;
    dx[base + i] = select(g, dx[base + i] + g, params.accumulate != 0u);
  }
  if (lid == 0u) { rstd[params.rstd_base + row] = r; }
}
