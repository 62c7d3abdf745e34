// kv_append_backward.wgsl: backward of kv_append (rows k[t] written to cache row positions[t]):
//   dk[t, g, d] = dk_cache[g, positions[t], d],  dv likewise   (0 when positions[t] ≥ S)
// A gather: each output element has one writer. Positions must be distinct (a later write of
// the same cache row in the forward would have overwritten the earlier one, whose gradient is 0;
// not checked: they live on the GPU). Reference: kvAppendBackwardReference in
// src/train/ops/attention_backward.ts.
//
// Bindings (group 0):
//   0 dk_cache:  array<f32>  read        [Hkv, S, hd]
//   1 dv_cache:  array<f32>  read        [Hkv, S, hd]
//   2 positions: array<u32>  read        [T]
//   3 dk:        array<f32>  read_write  [T, Hkv, hd]
//   4 dv:        array<f32>  read_write  [T, Hkv, hd]
//   5 params:    Params      uniform
// Mapping: one invocation per element of dk (linear index over [T, Hkv, hd]). Pure copy.

struct Params {
  T: u32,
  Hkv: u32,
  S: u32,
  hd: u32,
}

@group(0) @binding(0) var<storage, read> dk_cache: array<f32>;
@group(0) @binding(1) var<storage, read> dv_cache: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> dk: array<f32>;
@group(0) @binding(4) var<storage, read_write> dv: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.T * params.Hkv * params.hd) { return; }
  let d = i % params.hd;
  let r = i / params.hd;
  let g = r % params.Hkv;
  let t = r / params.Hkv;
  let pos = positions[t];
  if (pos >= params.S) {
    dk[i] = 0.0;
    dv[i] = 0.0;
    return;
  }
  let src = (g * params.S + pos) * params.hd + d;
  dk[i] = dk_cache[src];
  dv[i] = dv_cache[src];
}
