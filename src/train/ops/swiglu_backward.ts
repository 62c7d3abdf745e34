// Backward of SwiGLU out = silu(gate) · up (src/ops/swiglu.ts): d_gate and d_up in one
// element-wise pass (kernels/swiglu_backward.wgsl), windowed above the binding limit.

import { UsageError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import type { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { expectNoAlias } from "./common.js";

/** Invocations per workgroup (one V element each), as the forward. */
const SWIGLU_BWD_WG = 256;

export function swigluBackwardKernel(vec4: boolean): KernelVariant {
  return {
    file: "swiglu_backward",
    name: `swiglu_backward_f32${vec4 ? "_vec4" : ""}_wg${SWIGLU_BWD_WG}`,
    defines: { V: vec4 ? "vec4<f32>" : "f32", WG: SWIGLU_BWD_WG },
    bindings: ["read", "read", "read", "read_write", "read_write", "uniform"],
  };
}

/**
 * gate, up, dout [T, F] f32 (any equal shapes) → { dgate, dup } (allocated when absent).
 * `vec4` forces vec4 on (throws when the size is not a multiple of 4) or off.
 */
export async function swigluBackward(
  ctx: GpuContext,
  gate: Tensor,
  up: Tensor,
  dout: Tensor,
  opts: { dgate?: Tensor; dup?: Tensor; vec4?: boolean } = {},
): Promise<{ dgate: Tensor; dup: Tensor }> {
  const op = "swigluBackward";
  for (const [t, n] of [[gate, "gate"], [up, "up"], [dout, "dout"]] as const) {
    expectDType(t, ["f32"], op, n);
    expectShape(t, gate.shape, op, n);
  }
  const n = gate.numel;
  if (opts.vec4 === true && n % 4 !== 0) throw new UsageError(`${op}: vec4 requested but ${n} elements are not a multiple of 4`);
  const vec4 = opts.vec4 ?? n % 4 === 0;
  const dgate = opts.dgate ?? ctx.empty(gate.shape, "f32", "swiglu.dgate");
  const dup = opts.dup ?? ctx.empty(gate.shape, "f32", "swiglu.dup");
  for (const [t, name] of [[dgate, "dgate"], [dup, "dup"]] as const) {
    expectDType(t, ["f32"], op, name);
    expectShape(t, gate.shape, op, name);
    expectNoAlias(op, t, [gate, up, dout]);
  }
  expectNoAlias(op, dgate, [dup]);
  const kernel = await ctx.kernels.get(swigluBackwardKernel(vec4));
  const unit = vec4 ? 4 : 1;
  for (const w of ctx.bindingWindows(n / unit, unit * 4, `${op} '${gate.label}'`)) {
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * unit * 4 });
    ctx.dispatch(kernel, [win(gate), win(up), win(dout), win(dgate), win(dup)], new Params().u32(w.rows).bytes(), grid(ctx, Math.ceil(w.rows / SWIGLU_BWD_WG)));
  }
  return { dgate, dup };
}

/** CPU reference (float64): σ = 1/(1+e^−g); dup = dout·g·σ; dgate = dout·up·σ·(1 + g(1 − σ)). */
export function swigluBackwardReference(gate: ArrayLike<number>, up: ArrayLike<number>, dout: ArrayLike<number>): { dgate: Float64Array; dup: Float64Array } {
  const n = gate.length;
  const dgate = new Float64Array(n);
  const dup = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    const s = 1 / (1 + Math.exp(-g));
    dup[i] = dout[i]! * g * s;
    dgate[i] = dout[i]! * up[i]! * s * (1 + g * (1 - s));
  }
  return { dgate, dup };
}

/** Forward in float64 (for finite differences). */
export function swigluForward64(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const y = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) y[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  return y;
}
