// rope.wgsl: rotary position embedding, Hugging Face rotate-half layout, in place
// (reference: ropeReference in src/ops/rope.ts). With INVERSE, the rotation by −a: the backward
// of RoPE on a gradient (the Jacobian is the rotation; its transpose rotates back), reference
// ropeBackwardReference in src/train/ops/rope_backward.ts.
//   For row t, head h, pair i < hd/2, angle a = f32(positions[t]) · inv_freq[i] (one f32 product,
//   as HF computes it in float32):
//     x'[t,h,i]        = x[t,h,i]·cos a − x[t,h,i+hd/2]·sin a
//     x'[t,h,i+hd/2]   = x[t,h,i+hd/2]·cos a + x[t,h,i]·sin a
//
// Bindings (group 0):
//   0 positions: array<u32>  read        [T]          (cache positions, read on the GPU: no host sync)
//   1 inv_freq:  array<f32>  read        [hd/2]       (computed on the host: default/linear/llama3)
//   2 x:         array<f32>  read_write  [T, nH, hd]  (rotated in place)
//   3 params:    Params      uniform
// Mapping: one invocation per (t, i); it computes cos/sin once and loops over the nH heads, so
// the transcendental cost is T·hd/2, not T·nH·hd/2 (lavapipe: per-invocation overhead is large,
// so each invocation gets nH pairs of work). Linear index = wid.x + wid.y·num_x (2-D grid).
//
// Precision: WGSL only bounds sin/cos accuracy on [−π, π] (absolute 2^-11; lavapipe and GPUs are
// far better there, but degrade outside it). The f32 angle is therefore reduced explicitly:
// k = round(a / 2π), r = ((a − k·A) − k·B) − k·C with 2π ≈ A + B + C, A = 6.28125 and
// B = 254·2^-17 holding 8 significant bits each, so k·A and k·B are exact products for |k| < 2^16
// and a − k·A is exact (Sterbenz). The reduced angle carries an error of about 3e-7 rad against
// the f32 angle HF uses, for a < 2^16·2π ≈ 4.1e5 rad (positions < 411,774 at inv_freq[0] = 1);
// beyond that k·A rounds and the error grows like ulp(k)·A. The f32 angle itself is the same
// rounding HF has (HF also forms pos·inv_freq in float32), so it is not an error vs HF.
// sin/cos are not the built-ins: SwiftShader's (Chromium's CPU adapter) are less precise than
// lavapipe's even on [−π, π], so results would depend on the adapter. The reduced angle is cut
// once more into a quadrant q = round(r·2/π) and y = r − q·π/2 (three-part π/2, exact products
// for |q| ≤ 2), |y| ≤ π/4, where the Cephes sinf/cosf minimax polynomials are good to ~1 ulp;
// the quadrant then picks (±sin y, ±cos y). Only +, ×, round: the same few-ulp result on every
// adapter. Measured 2026-12-02 (hd 128, |x| ≤ 2, positions 0–3e5, max |error| vs the float64
// reference): Chromium 156 SwiftShader built-in sin/cos 4.2e-4, polynomials 5.6e-7; lavapipe
// built-ins 4.0e-7, polynomials 5.9e-7 (the tests' tolerance is 4e-6).
// All arithmetic f32. The angle reduction and the sin/cos polynomials live in kernels/rope_sincos.wgsl
// (#include rope_sincos), shared with rope_kv.wgsl so both rotate bit-identically.
#include rope_sincos

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

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (idx >= params.T * params.half) { return; }
  let t = idx / params.half;
  let i = idx % params.half;
  let a = reduce_angle(f32(positions[t]) * inv_freq[i]);
  let sc = sincos_reduced(a);
  let s = sc.x;
  let c = sc.y;
  let row = t * params.nH * params.hd;
  for (var h = 0u; h < params.nH; h++) {
    let j = row + h * params.hd + i;
    let x0 = x[j];
    let x1 = x[j + params.half];
#if INVERSE
    x[j] = x0 * c + x1 * s;
    x[j + params.half] = x1 * c - x0 * s;
#else
    x[j] = x0 * c - x1 * s;
    x[j + params.half] = x1 * c + x0 * s;
#endif
  }
}
