// Backward of RMSNorm y = x · r · w, r = 1/sqrt(mean(x²) + eps) (src/ops/rmsnorm.ts):
//   dx (+)= r·w·dy − x · r³/D · Σ_j w_j·dy_j·x_j      kernels/rmsnorm_backward.wgsl (row-parallel)
//   dw (+)= Σ_t dy[t]·x[t]·r[t]                        kernels/rmsnorm_dw_backward.wgsl (column-parallel)
// The first kernel saves r per row (rstd [T]); the second reduces over rows inside one
// invocation per column: no float atomics, no [T, D] partials.
// Fused residual (forward h = x + residual written back into the stream, y = rmsnorm(h)): call
// with x = h and { dx: dStream, accumulate: true }; dStream then holds dh, the gradient of both
// the block input and the residual stream (an add passes its gradient through unchanged).

import { ShapeError, UsageError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import type { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { alignedSpan, expectNoAlias } from "./common.js";

/** Invocations per workgroup of the row kernel (one workgroup per row), as the forward on software GPUs. */
const ROW_WG = 64;
/** Invocations per workgroup of the column kernel (one invocation per column). */
const COL_WG = 64;

export function rmsnormBackwardKernel(weight: "f32" | "f16"): KernelVariant {
  return {
    file: "rmsnorm_backward",
    name: `rmsnorm_backward_${weight}_wg${ROW_WG}`,
    defines: { WF16: weight === "f16", WT: weight === "f16" ? "u32" : "f32", WG: ROW_WG },
    bindings: ["read", "read", "read", "read_write", "read_write", "uniform"],
  };
}

export function rmsnormDwBackwardKernel(): KernelVariant {
  return { file: "rmsnorm_dw_backward", name: `rmsnorm_dw_backward_f32_wg${COL_WG}`, defines: { WG: COL_WG }, bindings: ["read", "read", "read", "read_write", "uniform"] };
}

export interface RmsnormBackwardOptions {
  /** dx [T, D] f32 (allocated when absent). */
  dx?: Tensor;
  /** Add to dx instead of overwriting (the fused-residual form: dx is the residual stream's gradient). */
  accumulate?: boolean;
  /** dw [D] f32 to write; skipped when `weightGrad` is false. Allocated when absent. */
  dw?: Tensor;
  /** Add to dw (gradient accumulation over micro-batches). */
  accumulateDw?: boolean;
  /** Compute dw (default true; false for a frozen norm weight). */
  weightGrad?: boolean;
}

/**
 * Gradients of y = rmsnorm(x)·weight. x, dy [T, D] f32 (x: the norm's input h); weight [D]
 * f32|f16. Returns { dx, dw (null when weightGrad is false), rstd [T] f32 }.
 */
export async function rmsnormBackward(
  ctx: GpuContext,
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  eps: number,
  opts: RmsnormBackwardOptions = {},
): Promise<{ dx: Tensor; dw: Tensor | null; rstd: Tensor }> {
  const op = "rmsnormBackward";
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [T, D]`);
  const [T, D] = x.shape as [number, number];
  expectDType(x, ["f32"], op, "x");
  expectDType(dy, ["f32"], op, "dy");
  expectShape(dy, [T, D], op, "dy");
  expectDType(weight, ["f32", "f16"], op, "weight");
  expectShape(weight, [D], op, "weight");
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new UsageError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  if (opts.accumulate && !opts.dx) throw new ShapeError(`${op}: accumulate needs an existing dx tensor`);
  if (opts.accumulateDw && !opts.dw) throw new ShapeError(`${op}: accumulateDw needs an existing dw tensor`);
  const dx = opts.dx ?? ctx.empty([T, D], "f32", "rmsnorm.dx");
  expectDType(dx, ["f32"], op, "dx");
  expectShape(dx, [T, D], op, "dx");
  expectNoAlias(op, dx, [x, weight, dy]);
  const wantDw = opts.weightGrad ?? true;
  const dw = wantDw ? (opts.dw ?? ctx.empty([D], "f32", "rmsnorm.dw")) : null;
  if (dw) {
    expectDType(dw, ["f32"], op, "dw");
    expectShape(dw, [D], op, "dw");
    expectNoAlias(op, dw, [x, weight, dy, dx]);
  }
  const rstd = ctx.empty([Math.max(T, 1)], "f32", "rmsnorm.rstd");
  const kRow = await ctx.kernels.get(rmsnormBackwardKernel(weight.dtype as "f32" | "f16"));
  const kCol = await ctx.kernels.get(rmsnormDwBackwardKernel());
  if (T === 0 || D === 0) {
    if (dw && !opts.accumulateDw) ctx.clear(dw);
    return { dx, dw, rstd };
  }
  const wins = ctx.bindingWindows(T, D * 4, `${op} '${x.label}'`);
  wins.forEach((w, i) => {
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * D * 4 });
    const rs = alignedSpan(ctx, rstd, w.firstRow, w.rows);
    const p = new Params().u32(w.rows).u32(D).f32(D).f32(eps).u32(opts.accumulate ? 1 : 0).u32(rs.base).bytes();
    ctx.dispatch(kRow, [win(x), weight, win(dy), win(dx), rs.res], p, grid(ctx, w.rows));
    if (dw) {
      const pc = new Params().u32(w.rows).u32(D).u32(i > 0 || opts.accumulateDw ? 1 : 0).u32(rs.base).bytes();
      ctx.dispatch(kCol, [win(x), win(dy), rs.res, dw], pc, grid(ctx, Math.ceil(D / COL_WG)));
    }
  });
  return { dx, dw, rstd };
}

/** CPU reference (float64). x, dy [T, D]; weight [D]. Returns dx [T, D], dw [D], rstd [T]. */
export function rmsnormBackwardReference(x: ArrayLike<number>, weight: ArrayLike<number>, dy: ArrayLike<number>, T: number, D: number, eps: number): { dx: Float64Array; dw: Float64Array; rstd: Float64Array } {
  const dx = new Float64Array(T * D);
  const dw = new Float64Array(D);
  const rstd = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    let dot = 0;
    for (let i = 0; i < D; i++) {
      const xv = x[t * D + i]!;
      ss += xv * xv;
      dot += weight[i]! * dy[t * D + i]! * xv;
    }
    const r = 1 / Math.sqrt(ss / D + eps);
    rstd[t] = r;
    for (let i = 0; i < D; i++) {
      const xv = x[t * D + i]!;
      dx[t * D + i] = r * weight[i]! * dy[t * D + i]! - (xv * r * r * r * dot) / D;
      dw[i]! += dy[t * D + i]! * xv * r;
    }
  }
  return { dx, dw, rstd };
}

/** Forward in float64 (for finite differences): y [T, D] = x · r · weight. */
export function rmsnormForward64(x: ArrayLike<number>, weight: ArrayLike<number>, T: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[t * D + i]! * x[t * D + i]!;
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[t * D + i] = x[t * D + i]! * r * weight[i]!;
  }
  return y;
}
