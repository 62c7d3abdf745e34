// logits_mask.wgsl: logits[b, banned[j]] = −inf for every row b and every banned id < V
// (a logits processor: banned ids are never sampled). Reference: maskLogitsReference in src/ops/sample.ts.
//
// Bindings (group 0):
//   0 banned: array<u32>  read        [n]       ids ≥ V are ignored
//   1 logits: array<f32>  read_write  [rows, V] window of the [B, V] logits, from element elemBase
//   2 params: Params      uniform
// Mapping: one invocation per banned id, looping over the rows of the window.

struct Params {
  n: u32,        // banned ids
  V: u32,
  rows: u32,     // rows in this window
  neg_inf: f32,  // −inf (WGSL constant expressions cannot hold infinities)
  elemBase: u32, // elements from the binding's (aligned) start to the window's first row
}

@group(0) @binding(0) var<storage, read> banned: array<u32>;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= params.n) { return; }
  let id = banned[j];
  if (id >= params.V) { return; }
  for (var b = 0u; b < params.rows; b++) { logits[params.elemBase + b * params.V + id] = params.neg_inf; }
}
