// attention_step: decode-step attention over the KV cache for the live rows of a step, T read on
// the GPU from the step state (kernels/attention_step.wgsl, + kernels/attention_combine.wgsl with
// STEP when the keys are split). The key loop is the decode attention's (kernels/attention_core.wgsl),
// so results match attention() with the same split bit for bit.
//
// API
//   const plan = await planAttentionStep(ctx, qkv, kCache, vCache, step, { window, out, ... });
//   plan.encode(ctx);          // per token: 1 dispatch (no split) or 2 (split + combine)
//   plan.out                   // f32 [maxRows, H·hd]: rows t < T written (allocated if not given)
//   plan.dispose();            // returns the split partials (and an allocated out) to the pool
//   await attentionStep(ctx, qkv, kCache, vCache, step, out, opts)   one-shot (inside a capture)
//     opts: window, scale, splits, chunk, and optionally heads / kvHeads / headDim (checked)
//     qkv f32 [maxRows, (H + 2·Hkv)·hd] (q heads read; H = width/hd − 2·Hkv), kCache, vCache
//     [Hkv, S, hd] f32|f16, step u32 [8]. Row t sits at position e = p0 + t (p0 = LAST + 1 − T)
//     and attends to keys [start, e + 1), start = e + 1 − window when window > 0 and e + 1 > window,
//     else 0: the ranges Session uses (causalRangesFor), see stepRanges. GQA: query head h reads
//     kv head h / (H/Hkv).
//   attentionStepReference(...): attentionReference over stepRanges (float64).
// Kernels (opts.kernel): "split" (default) kernels/attention_step.wgsl; "lanes"
// kernels/attention_step_lanes.wgsl (lanes over GQA heads × head-dim slots, coalesced loads,
// scores reduced through workgroup memory): the classic GPU mapping, kept runnable for devices
// where barriers are cheap. Measured 2026-12-02 on lavapipe (2 cores, load ~20, interleaved,
// f16, min of 7 rounds): lanes 4.7–14× slower than split (TinyLlama ctx 2048 311 vs 48 ms; 134M
// ctx 2048 82 vs 3.8 ms): llvmpipe runs a workgroup barrier as a coroutine switch per 8-lane
// chunk, two per 4-key tile. A subgroup variant (one subgroup per (head, split), lanes over slots,
// subgroupAdd for the scores, no barriers) measured equal or slower (TinyLlama 2048: 28 vs 22 ms;
// 134M 2048: 4.0 vs 3.4 ms) and was not kept.
// Grid: H · nSplits invocations, fixed (independent of T); each loops over the live rows;
// consecutive invocations are the heads of one GQA group (opts.headsInner, measured). nSplits
// as the decode resolver picks it for one row (≈ 512 invocations, ≥ 64 keys per split, from the
// largest range: min(window, S) or S); the chunk is chosen per row on the GPU (0, default:
// max(64, ceil(len/nSplits))) or fixed by the caller (opts.chunk, the decode attention's rule).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError, UnsupportedError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { dispatchPlan, type DispatchPlan } from "./dispatch-plan.js";
import { ATTN_WG, COMBINE_WG, DECODE_MIN_CHUNK, DECODE_TARGET_UNITS, attentionCombineVariant, attentionIo, attentionReference } from "./attention.js";
import { checkStepBinding, checkStepHeads, expectStepState, type StepHeads } from "./step-checks.js";

function attentionStepVariant(cache: StoreType, vec4: boolean, split: boolean): KernelVariant {
  return {
    file: "attention_step",
    name: `attention_step_${split ? "split" : "single"}_${cache}_${vec4 ? "v4" : "s1"}_wg${ATTN_WG}`,
    ...attentionIo(cache, vec4, split, ATTN_WG),
  };
}

/** The lanes kernel (kernels/attention_step_lanes.wgsl): workgroup of WG ≥ group·slots lanes. */
function attentionStepLanesVariant(cache: StoreType, vec4: boolean, wg: number): KernelVariant {
  return {
    file: "attention_step_lanes",
    name: `attention_step_lanes_${cache}_${vec4 ? "v4" : "s1"}_wg${wg}`,
    ...attentionIo(cache, vec4, true, wg),
  };
}

export type AttentionStepKernel = "split" | "lanes";

export interface AttentionStepOptions extends StepHeads {
  /** Output f32 [maxRows, H·hd] (allocated, and owned by the plan, if absent). */
  out?: Tensor;
  /** Sliding window in keys (0 = full causal, the default). */
  window?: number;
  /** Softmax scale; default 1/sqrt(hd). */
  scale?: number;
  /** Key splits per row (default: the decode resolver's choice for one row; 1 = no combine pass). */
  splits?: number;
  /** Keys per split, fixed (needs splits > 1); default 0 = per row on the GPU (see the header). */
  chunk?: number;
  /**
   * Invocation order (results are the same bits either way): true (default): consecutive
   * invocations are the query heads of one GQA group at one split, so neighbouring lanes read the
   * same K/V rows; false: consecutive splits of one head, as the decode attention orders them.
   * Measured 2026-12-02 (lavapipe, 2 cores under load 19, interleaved, f16, ctx 2048): TinyLlama
   * (32/4 heads) min 6.1 vs 8.5 ms and 15.5 vs 33 ms in two runs; 134M (9/3) 2.4 vs 2.7, 2.6 vs 4.4.
   */
  headsInner?: boolean;
  /**
   * "split" (default): kernels/attention_step.wgsl, one invocation per (head, split) looping over
   * head-dim slots (the decode attention's key loop: the same bits). "lanes":
   * kernels/attention_step_lanes.wgsl, one workgroup per (kv head, split) with lanes over (GQA
   * head, slot): neighbouring lanes read neighbouring memory, a group's heads share K/V loads,
   * scores reduced through workgroup memory (always + combine; needs group·slots ≤ the device's
   * invocations per workgroup).
   */
  kernel?: AttentionStepKernel;
}

export interface AttentionStepPlan extends DispatchPlan {
  readonly out: Tensor;
  readonly nSplits: number;
  /** Fixed keys per split, or 0 (per row on the GPU). */
  readonly chunk: number;
}

/** The split count the plan picks for H heads over ranges of at most maxKeys keys (the decode resolver's rule for T = 1). */
export function attentionStepSplits(H: number, maxKeys: number): number {
  return Math.max(1, Math.min(Math.ceil(DECODE_TARGET_UNITS / H), Math.floor(maxKeys / DECODE_MIN_CHUNK)));
}

export async function planAttentionStep(ctx: GpuContext, qkv: Tensor, kCache: Tensor, vCache: Tensor, step: Tensor, opts: AttentionStepOptions = {}): Promise<AttentionStepPlan> {
  const op = "attentionStep";
  expectDType(kCache, ["f32", "f16"], op, "kCache");
  expectDType(vCache, [kCache.dtype], op, "vCache");
  if (kCache.shape.length !== 3) throw new ShapeError(`${op}: kCache ('${kCache.label}') has shape [${kCache.shape.join(", ")}], expected [Hkv, S, hd]`);
  expectShape(vCache, kCache.shape, op, "vCache");
  const [Hkv, S, hd] = kCache.shape as [number, number, number];
  expectDType(qkv, ["f32"], op, "qkv");
  if (qkv.shape.length !== 2) throw new ShapeError(`${op}: qkv ('${qkv.label}') has shape [${qkv.shape.join(", ")}], expected [maxRows, (H + 2·Hkv)·hd]`);
  const [maxRows, width] = qkv.shape as [number, number];
  const H = width / hd - 2 * Hkv;
  if (!Number.isInteger(H) || H < 1) throw new ShapeError(`${op}: qkv ('${qkv.label}') rows of ${width} elements are not (H + 2·${Hkv})·${hd} for some H ≥ 1`);
  checkStepHeads(op, opts, { H, Hkv, hd }, qkv);
  if (H % Hkv !== 0) throw new ShapeError(`${op}: ${H} query heads are not a multiple of ${Hkv} kv heads`);
  expectStepState(op, step);
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new ShapeError(`${op}: window ${window} must be a non-negative integer`);
  const maxKeys = window > 0 ? Math.min(window, S) : S;
  const nSplits = opts.splits ?? attentionStepSplits(H, maxKeys);
  if (!Number.isInteger(nSplits) || nSplits < 1) throw new ShapeError(`${op}: splits ${nSplits} must be a positive integer`);
  const chunk = opts.chunk ?? 0;
  if (!Number.isInteger(chunk) || chunk < 0) throw new ShapeError(`${op}: chunk ${chunk} must be a non-negative integer`);
  if (chunk > 0 && nSplits === 1 && opts.kernel !== "lanes") throw new UnsupportedError(`${op}: a fixed chunk (${chunk}) needs splits > 1`);
  if (opts.out) {
    expectDType(opts.out, ["f32"], op, "out");
    expectShape(opts.out, [maxRows, H * hd], op, "out");
  }
  const lanesKernel = opts.kernel === "lanes";
  if (opts.kernel !== undefined && opts.kernel !== "split" && opts.kernel !== "lanes") throw new UnsupportedError(`${op}: kernel '${String(opts.kernel)}' is not one of split, lanes`);
  const split = nSplits > 1 || lanesKernel;
  const vec4 = hd % 4 === 0;
  const slots = vec4 ? hd / 4 : hd;
  const partBytes = maxRows * H * nSplits * hd * 4;
  if (split && partBytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new UnsupportedError(
      `${op}: partial accumulators of ${partBytes} bytes (maxRows=${maxRows}, H=${H}, ${nSplits} splits, hd=${hd}) exceed the storage binding limit of ${ctx.limits.maxStorageBufferBindingSize} bytes`,
      "use fewer splits (opts.splits) or fewer step rows",
    );
  }
  for (const [t, what] of [[qkv, "qkv"], [kCache, "kCache"], [vCache, "vCache"], ...(opts.out ? [[opts.out, "out"] as const] : [])] as const) checkStepBinding(ctx, op, t, what);
  const group = H / Hkv;
  let lanesWg = 8;
  while (lanesWg < group * slots) lanesWg *= 2;
  if (lanesKernel && lanesWg > ctx.limits.maxComputeInvocationsPerWorkgroup) {
    throw new UnsupportedError(`${op}: the lanes kernel needs ${group}·${slots} = ${group * slots} lanes (GQA group × head-dim slots), over this device's ${ctx.limits.maxComputeInvocationsPerWorkgroup} invocations per workgroup`, "use kernel 'split'");
  }
  const cacheStore = storeType(ctx, kCache.dtype as "f32" | "f16");
  const variant = lanesKernel ? attentionStepLanesVariant(cacheStore, vec4, lanesWg) : attentionStepVariant(cacheStore, vec4, split);
  const kernel = await ctx.kernels.get(variant);
  const combine = split ? await ctx.kernels.get(attentionCombineVariant(vec4, true)) : null;
  const scale = opts.scale ?? 1 / Math.sqrt(hd);
  const units = H * nSplits;
  const params = lanesKernel
    ? new Params()
      .u32(H).u32(Hkv).u32(S).u32(group)
      .u32(nSplits).u32(chunk).u32(DECODE_MIN_CHUNK).u32(group * slots)
      .f32(scale).u32(slots).u32((H + 2 * Hkv) * slots).u32(window)
      .u32(maxRows)
      .bytes()
    : new Params()
      .u32(H).u32(S).u32(group).u32(nSplits)
      .u32(chunk).u32(DECODE_MIN_CHUNK).u32(units).f32(scale)
      .u32(slots).u32((H + 2 * Hkv) * slots).u32(window).u32(maxRows)
      .u32(opts.headsInner === false ? 0 : 1)
      .bytes();
  const owned: Tensor[] = [];
  const out = opts.out ?? ctx.empty([maxRows, H * hd], "f32", "attention_step.out");
  if (!opts.out) owned.push(out);
  const groups = lanesKernel ? grid(ctx, Hkv * nSplits) : grid(ctx, Math.ceil(units / ATTN_WG));
  let label = `${variant.name}${opts.headsInner === false ? " splits-inner" : ""}`;
  let plan: DispatchPlan;
  if (!combine) {
    plan = dispatchPlan(ctx, label, [{ kernel, resources: [qkv, kCache, vCache, step, out], params, workgroups: groups }], owned);
  } else {
    const partAcc = ctx.empty([maxRows, H, nSplits, hd], "f32", "attention_step.part_acc");
    const partMl = ctx.empty([maxRows, H, nSplits, 2], "f32", "attention_step.part_ml");
    owned.push(partAcc, partMl);
    const cparams = new Params().u32(H).u32(nSplits).u32(slots).u32(maxRows).bytes();
    label += ` splits=${nSplits}x${chunk === 0 ? "gpu" : chunk} +${combine.name}`;
    plan = dispatchPlan(
      ctx,
      label,
      [
        { kernel, resources: [qkv, kCache, vCache, step, partAcc, partMl], params, workgroups: groups },
        { kernel: combine, resources: [partAcc, partMl, step, out], params: cparams, workgroups: grid(ctx, Math.ceil((H * slots) / COMBINE_WG)) },
      ],
      owned,
    );
  }
  return { ...plan, encode: plan.encode, dispose: plan.dispose, out, nSplits, chunk };
}

/**
 * One-shot (inside a capture, tests, benches): plans, encodes into `out`, and returns the split
 * partials to the pool (later users are ordered after these dispatches, as in attention()).
 */
export async function attentionStep(ctx: GpuContext, qkv: Tensor, kCache: Tensor, vCache: Tensor, step: Tensor, out: Tensor, opts: Omit<AttentionStepOptions, "out"> = {}): Promise<Tensor> {
  const plan = await planAttentionStep(ctx, qkv, kCache, vCache, step, { ...opts, out });
  plan.encode(ctx);
  plan.dispose();
  return out;
}

/** Key ranges [T, 2] of a step's rows: row t at e = last + 1 − rows + t attends to [start, e + 1) (see the header). */
export function stepRanges(last: number, rows: number, window = 0): Uint32Array {
  const r = new Uint32Array(2 * rows);
  for (let t = 0; t < rows; t++) {
    const end = last + 1 - rows + t + 1;
    r[2 * t] = window > 0 && end > window ? end - window : 0;
    r[2 * t + 1] = end;
  }
  return r;
}

/**
 * CPU reference of attention_step: out [T, H·hd] for the live rows T = min(rows, maxRows), with
 * attentionReference (float64) over stepRanges. qkv [maxRows, (H + 2Hkv)·hd]; caches [Hkv, S, hd]
 * (f16 as raw bits).
 */
export function attentionStepReference(
  qkv: Float32Array,
  kCache: Float32Array | Uint16Array,
  vCache: Float32Array | Uint16Array,
  state: { last: number; rows: number },
  dims: { maxRows: number; H: number; Hkv: number; hd: number; S: number },
  window = 0,
  scale = 1 / Math.sqrt(dims.hd),
): Float32Array {
  const { maxRows, H, Hkv, hd, S } = dims;
  const T = Math.min(state.rows, maxRows);
  const W = (H + 2 * Hkv) * hd;
  const q = new Float32Array(T * H * hd);
  for (let t = 0; t < T; t++) q.set(qkv.subarray(t * W, t * W + H * hd), t * H * hd);
  return attentionReference(q, kCache, vCache, stepRanges(state.last, state.rows, window).subarray(0, 2 * T), { T, H, Hkv, S, hd }, scale);
}
