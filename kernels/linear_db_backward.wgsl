// linear_db_backward.wgsl: db[n] (+)= Σ_m dY[m, n]      (bias gradient: column sums of dY)
// Reference: linearBackwardReference in src/train/ops/linear_backward.ts.
//
// Bindings (group 0):
//   0 dy:     array<f32>  read        [M, N] f32
//   1 db:     array<f32>  read_write  [N] f32
//   2 params: Params      uniform
// Mapping: one invocation per column n (linear index x + y·num_x·WG), looping over the M rows;
// adjacent invocations read adjacent columns. Accumulation: f32, sequential over m.

struct Params {
  M: u32,
  N: u32,
  accumulate: u32, // 1: db += result, 0: db = result
  _pad0: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let n = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (n >= params.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < params.M; m++) { s += dy[m * params.N + n]; }
  db[n] = select(s, db[n] + s, params.accumulate != 0u);
}
