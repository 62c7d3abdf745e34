// rmsnorm_dw_backward.wgsl: weight gradient of y = x · r · w:
//   dw[i] (+)= Σ_t dy[t, i] · x[t, i] · rstd[t]
// with rstd[t] = r of row t written by rmsnorm_backward.wgsl (reference:
// rmsnormBackwardReference in src/train/ops/rmsnorm_backward.ts). Column-parallel: the
// reduction over rows runs inside one invocation, so no float atomics and no [T, D] partials.
// Rows above one storage binding come in windows; every window after the first accumulates.
//
// Bindings (group 0):
//   0 x:      array<f32>  read        [T, D] f32 (window of rows)
//   1 dy:     array<f32>  read        [T, D] f32 (same window)
//   2 rstd:   array<f32>  read        [rstd_base + T] f32
//   3 dw:     array<f32>  read_write  [D] f32
//   4 params: Params      uniform
// Mapping: one invocation per column i (linear index (x + y·num_x)·WG + lid), looping over the
// window's rows; adjacent invocations read adjacent columns. Accumulation f32, sequential in t.

struct Params {
  T: u32,          // rows in this window
  D: u32,
  accumulate: u32, // 1: dw += grad, 0: dw = grad
  rstd_base: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.D) { return; }
  var s = 0.0;
  for (var t = 0u; t < params.T; t++) {
    let o = t * params.D + i;
    s += dy[o] * x[o] * rstd[params.rstd_base + t];
  }
  dw[i] = select(s, dw[i] + s, params.accumulate != 0u);
}
