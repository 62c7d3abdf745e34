// Residual add y = a + b (src/ops/elementwise.ts add, rmsnorm's fused residual): its backward is
// the identity, da = db = dy, so no kernel computes it; gradients are passed through by reusing
// the same buffer. Where a second contribution must be added to a gradient buffer (the residual
// stream after a block, a tensor read by several ops, micro-batch accumulation), accumulateGrad
// adds it: dst += alpha · src (kernels/residual_backward.wgsl), windowed above the binding limit.

import { UsageError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import type { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { expectNoAlias } from "./common.js";

const ACC_WG = 256;

export function accumulateGradKernel(vec4: boolean): KernelVariant {
  return {
    file: "residual_backward",
    name: `accumulate_grad_f32${vec4 ? "_vec4" : ""}_wg${ACC_WG}`,
    defines: { V: vec4 ? "vec4<f32>" : "f32", WG: ACC_WG },
    bindings: ["read", "read_write", "uniform"],
  };
}

/** dst += alpha · src (f32, equal shapes, distinct buffers). */
export async function accumulateGrad(ctx: GpuContext, dst: Tensor, src: Tensor, alpha = 1): Promise<void> {
  const op = "accumulateGrad";
  expectDType(dst, ["f32"], op, "dst");
  expectDType(src, ["f32"], op, "src");
  expectShape(src, dst.shape, op, "src");
  expectNoAlias(op, dst, [src]);
  if (!Number.isFinite(alpha)) throw new UsageError(`${op}: alpha must be finite, got ${alpha}`);
  const n = dst.numel;
  const vec4 = n % 4 === 0;
  const kernel = await ctx.kernels.get(accumulateGradKernel(vec4));
  const unit = vec4 ? 4 : 1;
  for (const w of ctx.bindingWindows(n / unit, unit * 4, `${op} '${dst.label}'`)) {
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * unit * 4 });
    ctx.dispatch(kernel, [win(src), win(dst)], new Params().u32(w.rows).f32(alpha).bytes(), grid(ctx, Math.ceil(w.rows / ACC_WG)));
  }
}

/** CPU reference: dst + alpha·src (float64). */
export function accumulateGradReference(dst: ArrayLike<number>, src: ArrayLike<number>, alpha = 1): Float64Array {
  const out = new Float64Array(dst.length);
  for (let i = 0; i < dst.length; i++) out[i] = dst[i]! + alpha * src[i]!;
  return out;
}
