// rope_sincos.wgsl: the RoPE angle reduction and sin/cos polynomials shared by rope.wgsl and
// rope_kv.wgsl (included with `#include rope_sincos`; not a kernel). The precision argument is in
// rope.wgsl's header: reduce_angle(a) = a mod 2π with a three-part 2π (exact products for
// |k| < 2^16), then sincos_reduced cuts a quadrant and evaluates the Cephes sinf/cosf minimax
// polynomials on |y| ≤ π/4 (only +, ×, round: the same few-ulp result on every adapter).
// Reference: ropeReference in src/ops/rope.ts (float64 cos/sin of the f32 angle).

const TWO_PI_A: f32 = 6.28125;                   // 201 / 32
const TWO_PI_B: f32 = 0.0019378662109375;        // 254 / 2^17
const TWO_PI_C: f32 = -2.5590313725842e-6;       // 2π − A − B, rounded to f32
const INV_TWO_PI: f32 = 0.15915494309189535;

/** a mod 2π in about [−π, π], see rope.wgsl's header. */
fn reduce_angle(a: f32) -> f32 {
  let k = round(a * INV_TWO_PI);
  return ((a - k * TWO_PI_A) - k * TWO_PI_B) - k * TWO_PI_C;
}

const HALF_PI_A: f32 = 1.5703125;                      // π/2 in three parts (Cephes DP1..3 × 2)
const HALF_PI_B: f32 = 4.837512969970703125e-4;
const HALF_PI_C: f32 = 7.54978995489188216e-8;
const TWO_OVER_PI: f32 = 0.6366197723675814;

/** (sin r, cos r) for |r| ≲ π (a reduced angle), without the built-in sin/cos; see rope.wgsl's header. */
fn sincos_reduced(r: f32) -> vec2<f32> {
  let q = round(r * TWO_OVER_PI);
  let y = ((r - q * HALF_PI_A) - q * HALF_PI_B) - q * HALF_PI_C;
  let z = y * y;
  let sy = y + y * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let cy = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  let quadrant = ((i32(q) % 4) + 4) % 4;
  switch quadrant {
    case 0: { return vec2<f32>(sy, cy); }
    case 1: { return vec2<f32>(cy, -sy); }
    case 2: { return vec2<f32>(-sy, -cy); }
    default: { return vec2<f32>(-cy, sy); }
  }
}
