// rmsnorm.wgsl: y[t, i] = h[t, i] / sqrt(mean_j(h[t, j]²) + eps) · weight[i]
//   where h = x                      (plain variant; LAST_ROW: only row t = step[STEP_ROWS] − 1 of
//                                     the decode step's live rows, written to out row 0: the hidden
//                                     state decode hooks read; binding 2 is then the step state)
//   or    h = x + residual, and h is written back into residual (RESIDUAL variant: the fused
//         residual add of a pre-norm decoder block; residual is the residual stream, updated in place).
// Reference: rmsnormReference in src/ops/rmsnorm.ts.
//
// Bindings (group 0), activations bound as one window of whole rows:
//   0 x:        array<V>             read        [T, D] f32
//   1 weight:   array<W>             read        [D]    f32 or f16 (F16)
//  (RESIDUAL)   residual: array<V>   read_write  [T, D] f32  (in: residual stream, out: x + residual)
//   2|3 out:    array<V>             read_write  [T, D] f32  (must alias no other binding)
//   last params: Params              uniform
// V is f32, or vec4<f32> with VEC4 (D % 4 == 0; indices below are then in vec4 units, DV = D / 4).
// Mapping: one workgroup per row (linear workgroup index = x + y·num_x, rows ≥ T skip); the WG
// invocations stride over the row, accumulate Σh² in f32, then a tree reduction in workgroup
// memory gives the row's sum. Statistics and the output are f32; f16 weights are widened to f32.
// PACKED (f16 weights without shader-f16): W = u32 (scalar) or vec2<u32> (VEC4), packed pairs.
#include f16_enable
#include f16_packed

struct Params {
  T: u32,     // rows in this window
  DV: u32,    // row length in V units (D, or D / 4 with VEC4)
  D: f32,     // row length in elements, as f32 (the mean's divisor)
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<{{V}}>;
@group(0) @binding(1) var<storage, read> weight: array<{{W}}>;
#if LAST_ROW
#include step_state
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<{{V}}>;
@group(0) @binding(4) var<uniform> params: Params;
#else
#if RESIDUAL
@group(0) @binding(2) var<storage, read_write> residual: array<{{V}}>;
@group(0) @binding(3) var<storage, read_write> out: array<{{V}}>;
@group(0) @binding(4) var<uniform> params: Params;
#else
@group(0) @binding(2) var<storage, read_write> out: array<{{V}}>;
@group(0) @binding(3) var<uniform> params: Params;
#endif
#endif

// Weight element (or vec4 slot) i, widened to f32.
fn load_w(i: u32) -> {{V}} {
#if PACKED
#if VEC4
  return f16p_vec4(weight[i]);
#else
  return f16p_at(weight[i >> 1u], i);
#endif
#else
  return {{V}}(weight[i]);
#endif
}

var<workgroup> partial: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
#if LAST_ROW
  let base = (step[STEP_ROWS] - 1u) * params.DV;
  let obase = 0u;
#else
  let row = wid.x + wid.y * nwg.x;   // workgroup-uniform
  if (row >= params.T) { return; }
  let base = row * params.DV;
  let obase = base;
#endif
  var ss = 0.0;
  for (var i = lid; i < params.DV; i += {{WG}}u) {
#if RESIDUAL
    let h = x[base + i] + residual[base + i];
    residual[base + i] = h;
#else
    let h = x[base + i];
#endif
#if VEC4
    ss += dot(h, h);
#else
    ss += h * h;
#endif
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(partial[0] / params.D + params.eps);
  for (var i = lid; i < params.DV; i += {{WG}}u) {
    // Each invocation rereads only the elements it wrote itself: no barrier needed for residual.
#if RESIDUAL
    let h = residual[base + i];
#else
    let h = x[base + i];
#endif
    out[obase + i] = h * inv * load_w(i);
  }
}
