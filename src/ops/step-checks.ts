// Argument checks shared by the decode-step launchers (rope-kv, attention-step, embed-rows,
// advanceRows, sample with the step state).

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError, UnsupportedError } from "../errors.js";
import { expectDType } from "./common.js";
import { STEP_WORDS } from "./step-state.js";

/** The step state: u32 with at least STEP_WORDS words. */
export function expectStepState(op: string, step: Tensor): void {
  expectDType(step, ["u32"], op, "step");
  if (step.numel < STEP_WORDS) throw new ShapeError(`${op}: step ('${step.label}') holds ${step.numel} words, the step state needs ${STEP_WORDS}`);
}

/** The step kernels bind each tensor whole: refuse one over the storage binding limit. */
export function checkStepBinding(ctx: GpuContext, op: string, t: Tensor, what: string): void {
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (t.byteLength > limit) {
    throw new UnsupportedError(
      `${op}: ${what} ('${t.label}') [${t.shape.join(", ")}] ${t.dtype} is ${t.byteLength} bytes, over the storage binding limit of ${limit} bytes`,
      "the decode-step kernels bind it whole: use an f16 cache, a smaller capacity or fewer step rows",
    );
  }
}

/** Head counts a caller may state (checked against those the tensors imply). */
export interface StepHeads {
  heads?: number;
  kvHeads?: number;
  headDim?: number;
}

/** Refuses stated head counts that differ from the ones qkv and the caches imply. */
export function checkStepHeads(op: string, stated: StepHeads | undefined, implied: { H: number; Hkv: number; hd: number }, qkv: Tensor): void {
  if (!stated) return;
  for (const [k, v] of [["heads", implied.H], ["kvHeads", implied.Hkv], ["headDim", implied.hd]] as const) {
    const s = stated[k];
    if (s !== undefined && s !== v) throw new ShapeError(`${op}: ${k} ${s} does not match qkv ('${qkv.label}') [${qkv.shape.join(", ")}] and the caches, which imply ${k} ${v}`);
  }
}
