// swiglu_backward.wgsl: backward of out = silu(gate) · up, silu(g) = g·σ(g):
//   d_up[i]   = dout[i] · silu(gate[i])
//   d_gate[i] = dout[i] · up[i] · σ(g)·(1 + g·(1 − σ(g)))      (silu'(g))
// Reference: swigluBackwardReference in src/train/ops/swiglu_backward.ts.
//
// Bindings (group 0), each one window of at most maxStorageBufferBindingSize bytes:
//   0 gate:   array<V>  read        [n] f32
//   1 up:     array<V>  read        [n] f32
//   2 dout:   array<V>  read        [n] f32
//   3 dgate:  array<V>  read_write  [n] f32
//   4 dup:    array<V>  read_write  [n] f32
//   5 params: Params    uniform
// V is f32, or vec4<f32> with VEC4 (n counts V elements). One invocation per V element on a 2-D
// grid of workgroups. σ from e = exp(−|g|) ∈ (0, 1] as the forward kernel (never overflows);
// silu' → 0 for g ≪ 0 (e underflows: σ = 0) and → 1 for g ≫ 0. f32 throughout.

struct Params {
  n: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<{{V}}>;
@group(0) @binding(1) var<storage, read> up: array<{{V}}>;
@group(0) @binding(2) var<storage, read> dout: array<{{V}}>;
@group(0) @binding(3) var<storage, read_write> dgate: array<{{V}}>;
@group(0) @binding(4) var<storage, read_write> dup: array<{{V}}>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.n) { return; }
  let g = gate[i];
  let e = exp(-abs(g));
  let s = select(e / (1.0 + e), 1.0 / (1.0 + e), g >= {{V}}(0.0));
  let zero = s == {{V}}(0.0);
  let silu = select(g * s, {{V}}(0.0), zero);
  let dsilu = select(s * (1.0 + g * (1.0 - s)), {{V}}(0.0), zero);
  let d = dout[i];
  dup[i] = d * silu;
  dgate[i] = d * up[i] * dsilu;
}
