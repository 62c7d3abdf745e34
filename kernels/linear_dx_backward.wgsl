// linear_dx_backward.wgsl: dX[m, k] (+)= Σ_{n < nw} dY[m, n0 + n] · W[n, k]
// Backward of y = x·Wᵀ (+ b) with respect to x (reference: linearBackwardReference in
// src/train/ops/linear_backward.ts). W may exceed one storage binding: the launcher binds it in
// windows of whole rows n0..n0+nw and dispatches once per window, the first window writing dX
// (or adding to it when the caller asked to accumulate), later windows adding to it.
//
// Bindings (group 0):
//   0 dy:     array<f32>  read        [M, N] f32 (whole; columns n0.. of this window are read)
//   1 w:      array<WT>   read        [nw, K] rows n0..n0+nw of W: f32 (vec4<f32> with VEC4) or
//                                     f16 read as packed halves (vec2<u32> = 4 halves with VEC4,
//                                     u32 = 2 halves otherwise)
//   2 dx:     array<f32>  read_write  [M, K] f32
//   3 params: Params      uniform
// Mapping: register tiling without workgroup memory (as kernels/matmul.wgsl). One invocation
// computes TM rows of dX × 8 consecutive columns (two vec4 accumulators per row), walking the
// nw rows of W: per n it loads TM scalars of dY and two 4-wide chunks of W row n. gid.x runs
// over column blocks of 8, gid.y over row blocks of TM. Edge tiles clamp loads and skip stores;
// VEC4 needs K % 4 == 0 (W rows start vec4-aligned), otherwise W is read element by element.
// Accumulation: f32; f16 weights widened exactly (unpack2x16float, no shader-f16 needed).

struct Params {
  M: u32,          // rows of dY / dX
  N: u32,          // dY row stride (all output features), elements
  K: u32,          // dX row length, elements
  nw: u32,         // rows of W in this window
  n0: u32,         // first row of W (column of dY) in this window
  accumulate: u32, // 1: dX += result, 0: dX = result
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<{{WT}}>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TM: u32 = {{TM}}u;

// Elements k..k+3 of W row n as f32 (zero past K).
fn load_w(n: u32, k: u32) -> vec4<f32> {
#if VEC4
#if WF16
  let p = w[(n * params.K + k) / 4u];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
#else
  return w[(n * params.K + k) / 4u];
#endif
#else
  var r = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < params.K) {
      let e = n * params.K + k + i;
#if WF16
      r[i] = unpack2x16float((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu).x;
#else
      r[i] = w[e];
#endif
    }
  }
  return r;
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k_base = gid.x * 8u;
  let m_base = gid.y * TM;
  if (k_base >= params.K || m_base >= params.M) { return; }
  var ms: array<u32, {{TM}}>;
  for (var i = 0u; i < TM; i++) { ms[i] = min(m_base + i, params.M - 1u); }
  var acc: array<vec4<f32>, {{ACC}}>;   // [TM][2]
  for (var n = 0u; n < params.nw; n++) {
    let w0 = load_w(n, k_base);
    // Second chunk; past K it reloads the first (its stores are skipped).
    let w1 = load_w(n, select(k_base, k_base + 4u, k_base + 4u < params.K));
    for (var i = 0u; i < TM; i++) {
      let g = dy[ms[i] * params.N + params.n0 + n];
      acc[2u * i] = fma(vec4<f32>(g), w0, acc[2u * i]);
      acc[2u * i + 1u] = fma(vec4<f32>(g), w1, acc[2u * i + 1u]);
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = m_base + i;
    if (m >= params.M) { break; }
    for (var c = 0u; c < 8u; c++) {
      let k = k_base + c;
      if (k >= params.K) { break; }
      let o = m * params.K + k;
      let v = acc[2u * i + c / 4u][c % 4u];
      dx[o] = select(v, dx[o] + v, params.accumulate != 0u);
    }
  }
}
