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
 * CPU reference of rope (returns a new array): x [T, nHeads, hd], positions [T], invFreq [hd/2].
 * The angle is the f32 product fround(pos·invFreq[i]) (what HF computes); cos/sin and the rotation
 * are evaluated in float64 and rounded once to f32.
 */
export function ropeReference(x: Float32Array, positions: Uint32Array, invFreq: Float32Array, nHeads: number, hd: number): Float32Array {
  const half = hd / 2;
  const T = positions.length;
  if (x.length !== T * nHeads * hd || invFreq.length !== half) throw new ShapeError(`ropeReference: sizes do not match T=${T}, nHeads=${nHeads}, hd=${hd}`);
  const out = new Float32Array(x.length);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * hd;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(Math.fround(positions[t]!) * invFreq[i]!);
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x0 = x[base + i]!;
        const x1 = x[base + i + half]!;
        out[base + i] = x0 * c - x1 * s;
        out[base + i + half] = x1 * c + x0 * s;
      }
    }
  }
  return out;
}

