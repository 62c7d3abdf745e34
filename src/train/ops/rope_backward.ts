// Backward of rotate-half RoPE (src/ops/rope.ts): the forward rotates each pair (i, i + hd/2) by
// a = positions[t]·invFreq[i]; the gradient is rotated by −a (kernels/rope.wgsl with INVERSE), in
// place on dy [T, nHeads, hd] f32, for q and k alike.

import { ShapeError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import type { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { requireOneBinding } from "./common.js";
import { ropeForward64 } from "../../ops/rope.js";

/** Invocations per workgroup; one invocation per (row, pair), as the forward. */
const ROPE_BWD_WG = 64;

export function ropeBackwardKernel(): KernelVariant {
  return { file: "rope", name: `rope_backward_f32_wg${ROPE_BWD_WG}`, defines: { WG: ROPE_BWD_WG, INVERSE: true }, bindings: ["read", "read", "read_write", "uniform"] };
}

/** dy [T, nHeads, hd] f32 → dx in place. positions u32 [T], invFreq f32 [hd/2] (as the forward). */
export async function ropeBackward(ctx: GpuContext, dy: Tensor, positions: Tensor, invFreq: Tensor): Promise<void> {
  const op = "ropeBackward";
  expectDType(dy, ["f32"], op, "dy");
  expectDType(positions, ["u32"], op, "positions");
  expectDType(invFreq, ["f32"], op, "invFreq");
  if (dy.shape.length !== 3) throw new ShapeError(`${op}: dy ('${dy.label}') has shape [${dy.shape.join(", ")}], expected [T, nHeads, hd]`);
  const [T, nH, hd] = dy.shape as [number, number, number];
  if (hd % 2 !== 0) throw new ShapeError(`${op}: dy ('${dy.label}') head dim ${hd} must be even for rotate-half RoPE`);
  expectShape(positions, [T], op, "positions");
  expectShape(invFreq, [hd / 2], op, "invFreq");
  requireOneBinding(ctx, dy, op, "dy");
  const kernel = await ctx.kernels.get(ropeBackwardKernel());
  if (T === 0 || nH === 0 || hd === 0) return;
  const params = new Params().u32(T).u32(nH).u32(hd).u32(hd / 2).bytes();
  ctx.dispatch(kernel, [positions, invFreq, dy], params, grid(ctx, Math.ceil((T * hd) / 2 / ROPE_BWD_WG)));
}

/** CPU reference (float64 rotation by −a, a = fround(f32(pos)·invFreq[i]) as the forward). dy [T, nHeads, hd]; returns dx. */
export function ropeBackwardReference(dy: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, nHeads: number, hd: number): Float64Array {
  return ropeForward64(dy, positions, invFreq, nHeads, hd, -1);
}
