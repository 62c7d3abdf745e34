// linear_io.wgsl: the Params and bindings of the dense linear kernels (gemv, gemv_splitk,
// gemv_tiled, matmul). Included with `#include linear_io`; not a kernel. TILED adds gemv_tiled's
// two fields. Reference: linearReference in src/ops/linear.ts (y = x·Wᵀ + b).
//   0 x:      array<XT>     read        [M, K] rows m0.. of the activations, from params.x_base
//   1 w:      array<WT>     read        [nw, K] rows n0..n0+nw of W (f32, f16 as packed pairs or
//                                       vec4<f16>; gemv_tiled: its lane-interleaved copy)
//   2 bias:   array<u32>    read        [N] f32 bits or f16 pairs from params.b_base; a dummy
//                                       when params.bias_kind = 0
//   3 y:      array<f32>    read_write  [M, N] rows m0.. from params.y_base; one dispatch writes
//                                       columns n0..n0+nw
//   4 params: Params        uniform

struct Params {
  K: u32,         // reduction length, elements
  nw: u32,        // rows of W in this window (outputs per activation row)
  M: u32,         // activation rows in this M-window
  N: u32,         // y row stride, elements (full output width)
  n0: u32,        // first output column (row of W) of this window
  x_base: u32,    // offset of x row m0 inside the x binding, in x's element units
  y_base: u32,    // element offset of y[m0, 0] inside the y binding
  b_base: u32,    // element offset of bias[n0] inside the bias binding (bias elements)
  bias_kind: u32, // 0: no bias (binding 2 is a dummy), 1: f32 bias, 2: f16 bias
#if TILED
  kc: u32,        // chunks per packed row, ceil(K / CE)
  tiles: u32,     // tiles in this window
#endif
}

@group(0) @binding(0) var<storage, read> x: array<{{XT}}>;
@group(0) @binding(1) var<storage, read> w: array<{{WT}}>;
@group(0) @binding(2) var<storage, read> bias: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
