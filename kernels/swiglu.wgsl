// swiglu.wgsl: out[i] = silu(gate[i]) · up[i], silu(x) = x · sigmoid(x) = x / (1 + exp(−x))
// Reference: swigluReference in src/ops/swiglu.ts.
//
// Bindings (group 0), each one window of at most maxStorageBufferBindingSize bytes:
//   0 gate:   array<V>  read        [n]  f32 (the [T, F] tensors, flattened)
//   1 up:     array<V>  read        [n]  f32
//   2 out:    array<V>  read_write  [n]  f32 (may alias neither input)
//   3 params: Params    uniform
// V is f32, or vec4<f32> with VEC4 (n % 4 == 0; then n below counts vec4s).
// Mapping: one invocation per V element on a 2-D grid of workgroups (linear index x + y·num_x).
// Precision: f32 throughout; silu from kernels/silu.wgsl (no overflow for any x; see there).

struct Params {
  n: u32,      // V elements in this window
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<{{V}}>;
@group(0) @binding(1) var<storage, read> up: array<{{V}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{V}}>;
@group(0) @binding(3) var<uniform> params: Params;

#include silu

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.n) { return; }
  out[i] = silu(gate[i]) * up[i];
}
