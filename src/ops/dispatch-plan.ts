// A planned list of dispatches: what the decode-step launchers (rope-kv, attention-step,
// embed-rows, advanceRows, sample with the step state) return, so that a step built once (or
// captured: src/gpu/capture.ts) encodes with no host work besides ctx.dispatch.
//
//   const plan = await planX(ctx, ...);   // checks shapes, fetches kernels, packs params once,
//                                          // allocates scratch the plan owns
//   plan.encode(ctx);                      // per use: only ctx.dispatch(...) calls, in order
//   plan.dispose();                        // returns the plan's scratch tensors to the pool
//
// The params bytes are packed once and reused by every encode; they are valid because every
// value a step kernel needs per token (rows T, positions, step index) is read on the GPU from the
// step state (src/ops/step-state.ts).

import type { BindingResource, GpuContext } from "../gpu/context.js";
import type { Kernel } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { UsageError } from "../errors.js";

export interface PlannedDispatch {
  readonly kernel: Kernel;
  readonly resources: readonly BindingResource[];
  readonly params: Uint8Array | null;
  readonly workgroups: readonly [number, number?, number?];
}

export interface DispatchPlan {
  /** What was planned, for logs and benches, e.g. "rope_kv_f16_wg64 units=576". */
  readonly label: string;
  readonly dispatches: readonly PlannedDispatch[];
  /** Encodes the planned dispatches into ctx's current batch (ctx: the context the plan was made on). */
  encode(ctx: GpuContext): void;
  /** Returns scratch tensors the plan owns (e.g. split-K partials) to the pool; encode() then throws. */
  dispose(): void;
}

export function dispatchPlan(ctx: GpuContext, label: string, dispatches: readonly PlannedDispatch[], owned: readonly Tensor[] = []): DispatchPlan {
  let disposed = false;
  return {
    label,
    dispatches,
    encode(c: GpuContext): void {
      if (c !== ctx) throw new UsageError(`${label}: encode() on another GpuContext than the plan was made on`);
      if (disposed) throw new UsageError(`${label}: encode() after dispose()`);
      for (const d of dispatches) c.dispatch(d.kernel, d.resources, d.params, d.workgroups);
    },
    dispose(): void {
      if (disposed) return;
      disposed = true;
      for (const t of owned) t.dispose();
    },
  };
}
