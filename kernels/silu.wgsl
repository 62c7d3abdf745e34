// silu.wgsl: silu(x) = x · sigmoid(x) = x / (1 + exp(−x)), shared by swiglu and gemv_step (SWIGLU
// epilogue). Included with `#include silu`; not a kernel. The including kernel defines {{V}} (f32
// or vec4<f32>). Reference: siluReference in src/ops/swiglu.ts.
// sigmoid is evaluated from e = exp(−|x|) ∈ (0, 1], which never overflows: x ≥ 0 → 1 / (1 + e),
// x < 0 → e / (1 + e). For x < about −88 e underflows to 0 and silu returns 0 (true magnitude
// < 1e−36); silu(+inf) = +inf, silu(−inf) = 0; NaN stays NaN.
fn silu(x: {{V}}) -> {{V}} {
  let e = exp(-abs(x));
  let s = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= {{V}}(0.0));
  // s == 0 only when e underflowed (x ≪ 0): return 0 rather than x · 0 (NaN for x = −inf).
  return select(x * s, {{V}}(0.0), s == {{V}}(0.0));
}
