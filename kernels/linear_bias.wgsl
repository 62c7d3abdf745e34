// linear_bias.wgsl: the bias load shared by the linear kernels (gemv, gemv_splitk, gemv_tiled,
// matmul). Included with `#include linear_bias`; not a kernel. The including kernel declares
// `bias: array<u32>` (f32 bits, or f16 packed pairs) and a `params` with `b_base` (first element
// of the bias window) and `bias_kind` (0 none, 1 f32, 2 f16). Reference: linearReference in
// src/ops/linear.ts (bias added in f32).

// Bias element n of the window, widened to f32 (0 without a bias).
fn load_bias(n: u32) -> f32 {
  let e = params.b_base + n;
  switch params.bias_kind {
    case 1u: { return bitcast<f32>(bias[e]); }
    case 2u: { return unpack2x16float((bias[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu).x; }
    default: { return 0.0; }
  }
}
