// Helpers shared by the backward-op launchers (src/train/ops/*): binding checks and aligned
// sub-ranges of tensors, in the style of src/ops/common.ts.

import { ShapeError, UnsupportedError } from "../../errors.js";
import type { BufferWindow, GpuContext } from "../../gpu/context.js";
import { DTYPE_BYTES, type Tensor } from "../../gpu/tensor.js";

/** Throws UnsupportedError when `t` cannot be bound whole (the op binds it in one piece). */
export function requireOneBinding(ctx: GpuContext, t: Tensor, op: string, what: string, hint?: string): void {
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (t.byteLength > limit) {
    throw new UnsupportedError(
      `${op}: ${what} ('${t.label}') [${t.shape.join(", ")}] ${t.dtype} is ${t.byteLength} bytes, over the storage binding limit of ${limit} bytes`,
      hint ?? "split the batch into fewer rows per call",
    );
  }
}

/**
 * Elements [first, first + count) of `t` as a binding that starts at the aligned address at or
 * below them; `base` is the element offset of `first` inside the binding (pass it to the kernel).
 */
export function alignedSpan(ctx: GpuContext, t: Tensor, first: number, count: number): { res: BufferWindow; base: number } {
  const e = DTYPE_BYTES[t.dtype];
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const start = first * e;
  const at = start - (start % align);
  return { res: { tensor: t, byteOffset: at, byteSize: Math.max(4, start + count * e - at) }, base: (start - at) / e };
}

/** Distinct buffers: an output must not alias an input of the same dispatch. */
export function expectNoAlias(op: string, out: Tensor, inputs: readonly Tensor[]): void {
  for (const i of inputs) {
    if (i.buffer === out.buffer) throw new ShapeError(`${op}: output '${out.label}' shares its buffer with input '${i.label}'`);
  }
}

/** Float64 copy of any numeric array (references compute in float64). */
export function f64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a as ArrayLike<number>);
}
