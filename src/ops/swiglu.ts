// SwiGLU activation of the Llama MLP: out = silu(gate) · up, element-wise over [T, F] f32.
// Tensors larger than one storage binding are processed in windows, one dispatch each.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError, UsageError } from "../errors.js";
import { expectDType, expectShape, grid, Params } from "./common.js";

/** Invocations per workgroup (one V element each), as for the add kernel. */
export const SWIGLU_WG = 256;

export interface SwigluVariant {
  /** vec4 loads/stores; needs the element count to be a multiple of 4. */
  vec4: boolean;
  wg: number;
}

export function swigluKernel(v: SwigluVariant): KernelVariant {
  return {
    file: "swiglu",
    name: `swiglu_f32${v.vec4 ? "_vec4" : ""}_wg${v.wg}`,
    defines: { V: v.vec4 ? "vec4<f32>" : "f32", WG: v.wg },
    bindings: ["read", "read", "read_write", "uniform"],
  };
}

export function resolveSwiglu(n: number, opts: { vec4?: boolean } = {}): SwigluVariant {
  if (opts.vec4 === true && n % 4 !== 0) throw new UsageError(`swiglu: vec4 requested but ${n} elements are not a multiple of 4`);
  return { vec4: opts.vec4 ?? n % 4 === 0, wg: SWIGLU_WG };
}

/** out = silu(gate) · up for gate, up [T, F] f32 (any shape, equal). Returns out (allocated if absent). */
export async function swiglu(ctx: GpuContext, gate: Tensor, up: Tensor, out?: Tensor, opts: { vec4?: boolean } = {}): Promise<Tensor> {
  const op = "swiglu";
  expectDType(gate, ["f32"], op, "gate");
  expectDType(up, ["f32"], op, "up");
  expectShape(up, gate.shape, op, "up");
  if (out) {
    expectDType(out, ["f32"], op, "out");
    expectShape(out, gate.shape, op, "out");
    if (out.buffer === gate.buffer || out.buffer === up.buffer) throw new ShapeError(`${op}: out ('${out.label}') must not alias gate or up`);
  }
  const n = gate.numel;
  const v = resolveSwiglu(n, opts);
  const kernel = await ctx.kernels.get(swigluKernel(v));
  const result = out ?? ctx.empty(gate.shape, "f32", "swiglu.out");
  const unit = v.vec4 ? 4 : 1;
  for (const w of ctx.bindingWindows(n / unit, unit * 4, `${op} '${gate.label}'`)) {
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * unit * 4 });
    ctx.dispatch(kernel, [win(gate), win(up), win(result)], new Params().u32(w.rows).bytes(), grid(ctx, Math.ceil(w.rows / v.wg)));
  }
  return result;
}

/** silu(x) = x / (1 + exp(−x)) in float64 (the definition; exp(−x) may overflow to inf, giving −0). */
export function siluReference(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** CPU reference: out[i] = silu(gate[i]) · up[i] in float64, rounded to f32. */
export function swigluReference(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = siluReference(gate[i]!) * up[i]!;
  return out;
}
