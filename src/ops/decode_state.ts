// GPU-side decode bookkeeping (kernels/decode_state.wgsl): advancing the position after a
// sampled token, and the "force token after a sequence" logits processor. Both keep the decode
// loop free of host writes, so several steps can share one submit.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, Params } from "./common.js";

const FORCE_WG = 256;

const ADVANCE: KernelVariant = {
  file: "decode_state",
  name: "decode_advance",
  defines: { ADVANCE: true },
  bindings: ["read", "read_write", "read_write", "read_write", "uniform"],
};
const FORCE: KernelVariant = {
  file: "decode_state",
  name: `force_after_wg${FORCE_WG}`,
  defines: { ADVANCE: false, WG: FORCE_WG },
  bindings: ["read", "read", "read", "read_write", "uniform"],
};

/**
 * position += 1; ranges = [start, position + 1) with start = max(ranges[0], position + 1 - window)
 * when `window` > 0; context[position] = token.
 */
export async function advancePosition(ctx: GpuContext, token: Tensor, position: Tensor, ranges: Tensor, context: Tensor, window = 0): Promise<void> {
  for (const [t, n] of [[token, "token"], [position, "position"], [ranges, "ranges"], [context, "context"]] as const) expectDType(t, ["u32"], "advancePosition", n);
  const k = await ctx.kernels.get(ADVANCE);
  ctx.dispatch(k, [token, position, ranges, context], new Params().u32(context.numel).u32(window).u32(0).u32(0).f32(-Infinity).bytes(), [1]);
}

/**
 * With last = position[0] (read on the GPU): if context[last-n+1..=last] equals `pattern`, all
 * logits but `forcedId` become -inf (in place).
 */
export async function forceAfter(ctx: GpuContext, context: Tensor, pattern: Tensor, logits: Tensor, position: Tensor, forcedId: number): Promise<void> {
  expectDType(context, ["u32"], "forceAfter", "context");
  expectDType(position, ["u32"], "forceAfter", "position");
  expectDType(pattern, ["u32"], "forceAfter", "pattern");
  expectDType(logits, ["f32"], "forceAfter", "logits");
  const V = logits.shape[logits.shape.length - 1]!;
  if (logits.numel !== V) throw new ShapeError(`forceAfter: logits ('${logits.label}') must hold one row, got [${logits.shape.join(", ")}]`);
  if (forcedId >= V) throw new ShapeError(`forceAfter: forced id ${forcedId} is outside the vocabulary (${V})`);
  const k = await ctx.kernels.get(FORCE);
  ctx.dispatch(k, [context, pattern, position, logits], new Params().u32(0).u32(pattern.numel).u32(forcedId).u32(V).f32(-Infinity).bytes(), [1]);
}

export function advanceReference(position: number, ranges: [number, number], window = 0): { position: number; ranges: [number, number] } {
  const p = position + 1;
  return { position: p, ranges: [window > 0 && p + 1 > window ? p + 1 - window : ranges[0], p + 1] };
}

export function forceAfterReference(context: ArrayLike<number>, pattern: ArrayLike<number>, logits: Float32Array, last: number, forcedId: number): Float32Array {
  const out = logits.slice();
  const n = pattern.length;
  if (n === 0 || last + 1 < n) return out;
  for (let i = 0; i < n; i++) if (context[last + 1 - n + i] !== pattern[i]) return out;
  for (let v = 0; v < out.length; v++) if (v !== forcedId) out[v] = -Infinity;
  return out;
}
