// rope_backward.wgsl: backward of rotate-half RoPE (kernels/rope.wgsl), in place on the gradient
// (reference: ropeBackwardReference in src/train/ops/rope_backward.ts). The forward is a rotation
// of each pair (x[i], x[i+hd/2]) by a = f32(positions[t])·inv_freq[i]; its Jacobian is that
// rotation matrix, so the gradient is rotated by −a (the transpose):
//     dx[t,h,i]        =  dy[t,h,i]·cos a + dy[t,h,i+hd/2]·sin a
//     dx[t,h,i+hd/2]   =  dy[t,h,i+hd/2]·cos a − dy[t,h,i]·sin a
//
// Bindings (group 0):
//   0 positions: array<u32>  read        [T]
//   1 inv_freq:  array<f32>  read        [hd/2]
//   2 x:         array<f32>  read_write  [T, nH, hd]  (dy in, dx out, in place)
//   3 params:    Params      uniform
// Mapping, angle reduction and precision: as kernels/rope.wgsl (one invocation per (t, i),
// looping over the nH heads; the angle reduced mod 2π in f32). All arithmetic f32.

struct Params {
  T: u32,       // rows
  nH: u32,      // heads per row
  hd: u32,      // head dim (even)
  half: u32,    // hd / 2
}

@group(0) @binding(0) var<storage, read> positions: array<u32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TWO_PI_A: f32 = 6.28125;                   // 201 / 32
const TWO_PI_B: f32 = 0.0019378662109375;        // 254 / 2^17
const TWO_PI_C: f32 = -2.5590313725842e-6;       // 2π − A − B, rounded to f32
const INV_TWO_PI: f32 = 0.15915494309189535;

/** a mod 2π in about [−π, π], see the header. */
fn reduce_angle(a: f32) -> f32 {
  let k = round(a * INV_TWO_PI);
  return ((a - k * TWO_PI_A) - k * TWO_PI_B) - k * TWO_PI_C;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (idx >= params.T * params.half) { return; }
  let t = idx / params.half;
  let i = idx % params.half;
  let a = reduce_angle(f32(positions[t]) * inv_freq[i]);
  let c = cos(a);
  let s = sin(a);
  let row = t * params.nH * params.hd;
  for (var h = 0u; h < params.nH; h++) {
    let j = row + h * params.hd + i;
    let x0 = x[j];
    let x1 = x[j + params.half];
    x[j] = x0 * c + x1 * s;
    x[j + params.half] = x1 * c - x0 * s;
  }
}
