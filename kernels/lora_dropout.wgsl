// lora_dropout.wgsl: seeded inverted dropout of LoRA inputs (reference: loraDropoutReference in
// src/train/lora.ts):
//   out[i] (+)= x[i] · keep(i) / (1 − p),  keep(i) = u(i) ≥ p,  u(i) = (pcg(salt ^ i) >> 8) / 2^24
// The same (salt, i) gives the same mask in the forward (x → dropped x) and the backward (the
// gradient of the dropped input → the input's gradient, accumulated). pcg is the PCG hash of
// kernels/sample.wgsl; salt is derived on the host from (seed, step, layer, module).
//
// Bindings (group 0):
//   0 x:   array<f32> read        [n]
//   1 out: array<f32> read_write  [n] (must not alias x)
//   2 params
// One invocation per element on a 2-D grid. f32.

struct Params {
  n: u32,
  salt: u32,
  accumulate: u32,  // 1: out += x·mask, 0: out = x·mask
  _pad0: u32,
  p: f32,           // drop probability in [0, 1)
  inv_keep: f32,    // 1 / (1 − p)
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.n) { return; }
  let u = f32(pcg(params.salt ^ i) >> 8u) / 16777216.0;
  var y = 0.0;
  if (u >= params.p) { y = x[i] * params.inv_keep; }
  if (params.accumulate != 0u) { y += out[i]; }
  out[i] = y;
}
