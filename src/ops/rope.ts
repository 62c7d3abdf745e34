// RoPE (rotary position embedding), Hugging Face rotate-half layout, applied in place to
// x [T, nHeads, hd] f32 with per-row positions read from a GPU buffer (a decode step needs no host
// involvement). inv_freq [hd/2] f32 is computed on the host (default, linear, llama3 scalings live
// in src/model/config.ts); the kernel forms the angle as one f32 product pos·inv_freq, as HF does
// in float32, then reduces it mod 2π explicitly (see kernels/rope.wgsl for the precision bound).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, expectShape, grid, Params } from "./common.js";

/** Invocations per workgroup; one invocation per (row, pair). 64 keeps decode (T = 1, hd/2 = 64) in one workgroup. */
const ROPE_WG = 64;

export function ropeVariant(): KernelVariant {
  return {
    file: "rope",
    name: `rope_f32_wg${ROPE_WG}`,
    defines: { WG: ROPE_WG, INVERSE: false },
    bindings: ["read", "read", "read_write", "uniform"],
  };
}

/**
 * Rotates x [T, nHeads, hd] f32 in place: pair (i, i + hd/2) of every head of row t by the angle
 * positions[t]·invFreq[i]. positions: u32 [T]; invFreq: f32 [hd/2].
 */
export async function rope(ctx: GpuContext, x: Tensor, positions: Tensor, invFreq: Tensor): Promise<void> {
  const op = "rope";
  expectDType(x, ["f32"], op, "x");
  expectDType(positions, ["u32"], op, "positions");
  expectDType(invFreq, ["f32"], op, "invFreq");
  if (x.shape.length !== 3) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [T, nHeads, hd]`);
  const [T, nH, hd] = x.shape as [number, number, number];
  if (hd % 2 !== 0) throw new ShapeError(`${op}: x ('${x.label}') head dim ${hd} must be even for rotate-half RoPE`);
  expectShape(positions, [T], op, "positions");
  expectShape(invFreq, [hd / 2], op, "invFreq");
  const kernel = await ctx.kernels.get(ropeVariant());
  const params = new Params().u32(T).u32(nH).u32(hd).u32(hd / 2).bytes();
  ctx.dispatch(kernel, [positions, invFreq, x], params, grid(ctx, Math.ceil((T * hd) / 2 / ROPE_WG)));
}

/**
 * CPU reference of rope in float64, without rounding: x [T, nHeads, hd] rotated pairwise (i,
 * i + hd/2) by the angle a = fround(f32(pos)·invFreq[i]) (what HF computes), cos/sin in float64;
 * sign −1 rotates by −a (the backward: the Jacobian's transpose). invFreq [hd/2].
 */
export function ropeForward64(x: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, nHeads: number, hd: number, sign: 1 | -1 = 1): Float64Array {
  const half = hd / 2;
  const T = positions.length;
  if (x.length !== T * nHeads * hd || invFreq.length !== half) throw new ShapeError(`rope reference: sizes do not match T=${T}, nHeads=${nHeads}, hd=${hd}`);
  const y = new Float64Array(x.length);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround(Math.fround(positions[t]!) * invFreq[i]!);
      const c = Math.cos(a);
      const s = sign * Math.sin(a);
      for (let h = 0; h < nHeads; h++) {
        const j = (t * nHeads + h) * hd + i;
        y[j] = x[j]! * c - x[j + half]! * s;
        y[j + half] = x[j + half]! * c + x[j]! * s;
      }
    }
  }
  return y;
}

/** CPU reference of the rope kernel: ropeForward64 rounded once to f32 (returns a new array). */
export function ropeReference(x: Float32Array, positions: Uint32Array, invFreq: Float32Array, nHeads: number, hd: number): Float32Array {
  return Float32Array.from(ropeForward64(x, positions, invFreq, nHeads, hd));
}

