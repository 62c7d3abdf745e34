// residual_backward.wgsl: dst[i] += alpha · src[i]       (gradient accumulation)
// The residual add y = a + b passes dy unchanged to both a and b; where a gradient flows into a
// buffer that already holds another contribution (the residual stream, a tensor read by several
// ops, micro-batch accumulation), this kernel adds it. Reference: accumulateGradReference in
// src/train/ops/residual_backward.ts.
//
// Bindings (group 0), each one window of at most maxStorageBufferBindingSize bytes:
//   0 src:    array<V>  read        [n] f32
//   1 dst:    array<V>  read_write  [n] f32 (must not alias src)
//   2 params: Params    uniform
// V is f32, or vec4<f32> with VEC4. One invocation per V element on a 2-D grid. f32.

struct Params {
  n: u32,      // V elements in this window
  alpha: f32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<{{V}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{V}}>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.n) { return; }
  dst[i] = fma({{V}}(params.alpha), src[i], dst[i]);
}
