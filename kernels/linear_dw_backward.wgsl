// linear_dw_backward.wgsl: dW[n, k] (+)= Σ_m dY[m, n0 + n] · x[m, k]      (dW = dYᵀ·x)
// Backward of y = x·Wᵀ (+ b) with respect to W (reference: linearBackwardReference in
// src/train/ops/linear_backward.ts). dW is the f32 gradient of the f32 master weight; it may
// exceed one storage binding: the launcher binds it in windows of whole rows n0..n0+nw.
//
// Bindings (group 0):
//   0 dy:     array<f32>  read        [M, N] f32 (whole; columns n0..n0+nw are read)
//   1 x:      array<XT>   read        [M, K] f32 (vec4<f32> with VEC4)
//   2 dw:     array<f32>  read_write  [nw, K] rows n0.. of dW [N, K]
//   3 params: Params      uniform
// Mapping: register tiling without workgroup memory. One invocation computes TN rows of dW × 8
// consecutive columns (two vec4 accumulators per row), walking the M rows: per m it loads TN
// scalars of dY and two 4-wide chunks of x row m. gid.x over column blocks of 8, gid.y over row
// blocks of TN. Edge tiles clamp loads and skip stores. VEC4 needs K % 4 == 0.
// Accumulation: f32, sequential over m (deterministic: no atomics, one writer per element).

struct Params {
  M: u32,          // rows of dY and x (tokens)
  N: u32,          // dY row stride, elements
  K: u32,          // x / dW row length, elements
  nw: u32,         // rows of dW in this window
  n0: u32,         // first row of dW (column of dY) in this window
  accumulate: u32, // 1: dW += result (gradient accumulation), 0: dW = result
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<{{XT}}>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TN: u32 = {{TN}}u;

// Elements k..k+3 of x row m (zero past K).
fn load_x(m: u32, k: u32) -> vec4<f32> {
#if VEC4
  return x[(m * params.K + k) / 4u];
#else
  var r = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < params.K) { r[i] = x[m * params.K + k + i]; }
  }
  return r;
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k_base = gid.x * 8u;
  let n_base = gid.y * TN;
  if (k_base >= params.K || n_base >= params.nw) { return; }
  var cols: array<u32, {{TN}}>;
  for (var j = 0u; j < TN; j++) { cols[j] = params.n0 + min(n_base + j, params.nw - 1u); }
  var acc: array<vec4<f32>, {{ACC}}>;   // [TN][2]
  let kb1 = select(k_base, k_base + 4u, k_base + 4u < params.K);   // past K: reload (stores skipped)
  for (var m = 0u; m < params.M; m++) {
    let x0 = load_x(m, k_base);
    let x1 = load_x(m, kb1);
    for (var j = 0u; j < TN; j++) {
      let g = dy[m * params.N + cols[j]];
      acc[2u * j] = fma(vec4<f32>(g), x0, acc[2u * j]);
      acc[2u * j + 1u] = fma(vec4<f32>(g), x1, acc[2u * j + 1u]);
    }
  }
  for (var j = 0u; j < TN; j++) {
    let n = n_base + j;
    if (n >= params.nw) { break; }
    for (var c = 0u; c < 8u; c++) {
      let k = k_base + c;
      if (k >= params.K) { break; }
      let o = n * params.K + k;
      let v = acc[2u * j + c / 4u][c % 4u];
      dw[o] = select(v, dw[o] + v, params.accumulate != 0u);
    }
  }
}
