// rope_kv: RoPE on the q and k heads of a decode step's live rows plus the KV-cache append, in one
// dispatch (kernels/rope_kv.wgsl). T and the positions are read on the GPU from the step state
// (src/ops/step-state.ts): row t of the step sits at cache position p0 + t, p0 = LAST + 1 − T.
//
// API
//   const plan = await planRopeKv(ctx, qkv, invFreq, kCache, vCache, step, heads?);  // once per step program
//   plan.encode(ctx);                                                                // per token
//   await ropeKv(ctx, ...same)    one-shot: plan + encode (inside a capture, or tests)
//     qkv     f32 [maxRows, (H + 2·Hkv)·hd]: per row H q heads, Hkv k heads, Hkv v heads. The q
//             heads are rotated in place; k and v are read (k rotated on the way to the cache).
//     invFreq f32 [hd/2] (rope.ts: the same angle f32(pos)·invFreq[i] and the same sin/cos code,
//             kernels/rope_sincos.wgsl), kCache, vCache [Hkv, S, hd] f32|f16 (f16 through packed
//             pairs without shader-f16), step u32 [8] (read only).
//     H is qkv's width / hd − 2·Hkv (Hkv, hd from the caches); hd must be even. heads:
//     optional { heads, kvHeads, headDim } the caller states; a mismatch is a ShapeError.
//   ropeKvReference(...): the CPU reference = ropeReference on q and k + kvAppendReference.
// The grid is fixed (J·(H + Hkv) invocations, J = ceil(hd/4)), independent of T; positions ≥ S
// write no cache row (as kvAppend).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { dispatchPlan, type DispatchPlan } from "./dispatch-plan.js";
import { ropeReference } from "./rope.js";
import { kvAppendReference } from "./attention.js";
import { checkStepBinding, checkStepHeads, expectStepState, type StepHeads } from "./step-checks.js";

const ROPE_KV_WG = 64;

function ropeKvVariant(cache: StoreType): KernelVariant {
  return {
    file: "rope_kv",
    name: `rope_kv_${cache}_wg${ROPE_KV_WG}`,
    defines: { F16: cache === "f16", PACKED: cache === "f16p", CT: cache === "f16p" ? "u32" : cache, WG: ROPE_KV_WG },
    bindings: ["read", "read", "read_write", "read_write", "read_write", "uniform"],
    features: storeFeatures(cache),
  };
}

export interface RopeKvDims {
  maxRows: number;
  H: number;
  Hkv: number;
  hd: number;
  /** Cache capacity in positions. */
  S: number;
}

/** Shapes of qkv / invFreq / caches / step checked; returns the dimensions. */
function ropeKvDims(op: string, qkv: Tensor, invFreq: Tensor, kCache: Tensor, vCache: Tensor, step: Tensor): RopeKvDims {
  expectDType(kCache, ["f32", "f16"], op, "kCache");
  expectDType(vCache, [kCache.dtype], op, "vCache");
  if (kCache.shape.length !== 3) throw new ShapeError(`${op}: kCache ('${kCache.label}') has shape [${kCache.shape.join(", ")}], expected [Hkv, S, hd]`);
  expectShape(vCache, kCache.shape, op, "vCache");
  const [Hkv, S, hd] = kCache.shape as [number, number, number];
  if (hd % 2 !== 0) throw new ShapeError(`${op}: head dim ${hd} (from kCache '${kCache.label}') must be even for rotate-half RoPE`);
  expectDType(qkv, ["f32"], op, "qkv");
  if (qkv.shape.length !== 2) throw new ShapeError(`${op}: qkv ('${qkv.label}') has shape [${qkv.shape.join(", ")}], expected [maxRows, (H + 2·Hkv)·hd]`);
  const [maxRows, width] = qkv.shape as [number, number];
  const H = width / hd - 2 * Hkv;
  if (!Number.isInteger(H) || H < 1) throw new ShapeError(`${op}: qkv ('${qkv.label}') rows of ${width} elements are not (H + 2·${Hkv})·${hd} for some H ≥ 1`);
  expectDType(invFreq, ["f32"], op, "invFreq");
  expectShape(invFreq, [hd / 2], op, "invFreq");
  expectStepState(op, step);
  return { maxRows, H, Hkv, hd, S };
}

/** Plans the rope_kv dispatch (see the header). */
export async function planRopeKv(ctx: GpuContext, qkv: Tensor, invFreq: Tensor, kCache: Tensor, vCache: Tensor, step: Tensor, heads?: StepHeads): Promise<DispatchPlan> {
  const op = "ropeKv";
  const { maxRows, H, Hkv, hd, S } = ropeKvDims(op, qkv, invFreq, kCache, vCache, step);
  checkStepHeads(op, heads, { H, Hkv, hd }, qkv);
  for (const [t, what] of [[qkv, "qkv"], [kCache, "kCache"], [vCache, "vCache"]] as const) checkStepBinding(ctx, op, t, what);
  const variant = ropeKvVariant(storeType(ctx, kCache.dtype as "f32" | "f16"));
  const kernel = await ctx.kernels.get(variant);
  const J = Math.ceil(hd / 4);
  const units = J * (H + Hkv);
  const params = new Params().u32(H).u32(Hkv).u32(hd).u32(hd / 2).u32(S).u32(J).u32((H + 2 * Hkv) * hd).u32(maxRows).bytes();
  const workgroups = grid(ctx, Math.ceil(units / ROPE_KV_WG));
  return dispatchPlan(ctx, `${variant.name} units=${units}`, [{ kernel, resources: [step, invFreq, qkv, kCache, vCache], params, workgroups }]);
}

/** One-shot: plans and encodes rope_kv (tests, benches; a step program keeps the plan). */
export async function ropeKv(ctx: GpuContext, qkv: Tensor, invFreq: Tensor, kCache: Tensor, vCache: Tensor, step: Tensor, heads?: StepHeads): Promise<void> {
  (await planRopeKv(ctx, qkv, invFreq, kCache, vCache, step, heads)).encode(ctx);
}

/** The cache positions of a step's live rows: p0 + t, p0 = last + 1 − rows (step_first_pos). */
export function stepPositions(last: number, rows: number): Uint32Array {
  return Uint32Array.from({ length: rows }, (_, t) => last + 1 - rows + t);
}

/**
 * CPU reference of rope_kv (returns updated copies): qkv [maxRows, (H + 2Hkv)·hd] with the q heads
 * of rows t < rows rotated (ropeReference) and the caches [Hkv, S, hd] (f16 as raw bits) with the
 * rotated k and the v of those rows appended at positions last + 1 − rows + t (kvAppendReference).
 * `rows` is clamped to maxRows, as the kernel does.
 */
export function ropeKvReference<C extends Float32Array | Uint16Array>(
  qkv: Float32Array,
  kCache: C,
  vCache: C,
  invFreq: Float32Array,
  state: { last: number; rows: number },
  dims: RopeKvDims,
): { qkv: Float32Array; kCache: C; vCache: C } {
  const { maxRows, H, Hkv, hd, S } = dims;
  const W = (H + 2 * Hkv) * hd;
  const T = Math.min(state.rows, maxRows);
  const positions = stepPositions(state.last, state.rows).subarray(0, T);
  const q = new Float32Array(T * H * hd);
  const k = new Float32Array(T * Hkv * hd);
  const v = new Float32Array(T * Hkv * hd);
  for (let t = 0; t < T; t++) {
    q.set(qkv.subarray(t * W, t * W + H * hd), t * H * hd);
    k.set(qkv.subarray(t * W + H * hd, t * W + (H + Hkv) * hd), t * Hkv * hd);
    v.set(qkv.subarray(t * W + (H + Hkv) * hd, (t + 1) * W), t * Hkv * hd);
  }
  const qr = ropeReference(q, positions, invFreq, H, hd);
  const kr = ropeReference(k, positions, invFreq, Hkv, hd);
  const out = qkv.slice();
  for (let t = 0; t < T; t++) out.set(qr.subarray(t * H * hd, (t + 1) * H * hd), t * W);
  const caches = kvAppendReference(kr, v, kCache, vCache, positions, { Hkv, S, hd });
  return { qkv: out, kCache: caches.kCache, vCache: caches.vCache };
}
