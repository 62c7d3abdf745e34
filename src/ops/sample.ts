// Token sampling on the GPU: argmax, or temperature / top-k / top-p with a counter-based RNG, the
// sampled id written to a GPU buffer (the next step's embedding gather reads it, so a decode step
// needs no host involvement). The exact definition is in kernels/sample.wgsl's header and in
// sampleReference below; summary:
//   temperature 0 → argmax (ties → lowest id).
//   else HF order: s = logits / temperature; top-k keeps every id whose logit is ≥ the k-th
//   largest (ties at the boundary kept); top-p keeps id i of that set iff the renormalized mass
//   of strictly larger values is < topP (the smallest top set reaching topP, ≥ 1 token); the id
//   is drawn by inverse CDF in ascending id order with u = sampleUniform01(seed, step, row).
//   If the kept mass is 0 or not finite, the argmax is returned.
//   A row holding NaN or +inf gets NONFINITE_ID instead of a token (−inf is a removed id, not an
//   error); the decode loop reads every sampled id back anyway, so the check costs no readback.
// Same seed + step + row → same id. Sums are f32 on the GPU and float64 in the reference, so the
// two can differ only when topP·Z or u·Z falls within rounding (≈1e-6 relative) of a boundary.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import { Tensor } from "../gpu/tensor.js";
import { ShapeError, UsageError } from "../errors.js";
import { expectDType, grid, Params } from "./common.js";
import { dispatchPlan, type DispatchPlan } from "./dispatch-plan.js";

/** The id sample() writes for a row of logits holding NaN or +inf (never a vocabulary id). */
export const NONFINITE_ID = 0xffffffff;

/** Invocations per workgroup (one workgroup per row); see bench/sample.bench.ts. */
export const SAMPLE_WG = 256;
const MASK_WG = 64;

export function sampleKernel(wg = SAMPLE_WG): KernelVariant {
  if (wg & (wg - 1)) throw new UsageError(`sample: workgroup size ${wg} must be a power of two`);
  return { file: "sample", name: `sample_f32_wg${wg}`, defines: { WG: wg }, bindings: ["read", "read", "read_write", "uniform"] };
}

export function maskLogitsKernel(): KernelVariant {
  return { file: "logits_mask", name: `logits_mask_f32_wg${MASK_WG}`, defines: { WG: MASK_WG }, bindings: ["read", "read_write", "uniform"] };
}

export interface SampleOptions {
  /** 0 = argmax. */
  temperature: number;
  /** Keep the topK largest logits (0 or absent = off; ≥ V = off). */
  topK?: number;
  /** Nucleus threshold in (0, 1] (absent or 1 = off). */
  topP?: number;
  /** RNG seed (u32). */
  seed: number;
  /**
   * RNG counter: a number, or a u32 tensor read on the GPU: word `stepWord` (plus `stepAdd`). The
   * decode step passes its step state with stepWord = STEP_COUNT (src/ops/step-state.ts: the index
   * j of the step being sampled, read before advance runs), so a captured step program needs no
   * per-token parameter and draws what a numeric step j draws.
   */
  step: Tensor | number;
  /** The word of a tensor step holding the counter (default 0). */
  stepWord?: number;
  /** Added to a tensor step (default 0). */
  stepAdd?: number;
  /** Element offset into outIds: row b writes outIds[outOffset + b] (default 0). */
  outOffset?: number;
  /** Workgroup size (power of two); default SAMPLE_WG. */
  wg?: number;
}

const dummySteps = new WeakMap<GpuContext, Tensor>();

function validate(opts: { temperature: number; topK?: number | undefined; topP?: number | undefined }, op: string): void {
  const { temperature, topK, topP } = opts;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new UsageError(`${op}: temperature must be finite and ≥ 0, got ${temperature}`);
  if (topK !== undefined && (!Number.isInteger(topK) || topK < 0 || topK > 0xffffffff)) throw new UsageError(`${op}: topK must be a non-negative integer, got ${topK}`);
  if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new UsageError(`${op}: topP must be in (0, 1], got ${topP}`);
}

/**
 * Samples one id per row of logits [B, V] (or [V]) f32 into outIds (u32, ≥ outOffset + B
 * elements). Encodes one dispatch per binding window of rows; nothing is read back.
 */
export async function sample(ctx: GpuContext, logits: Tensor, outIds: Tensor, opts: SampleOptions): Promise<void> {
  (await planSample(ctx, logits, outIds, opts)).encode(ctx);
}

/**
 * sample() as a plan (src/ops/dispatch-plan.ts): checks, kernel and params once, then
 * plan.encode(ctx) per use. With a tensor step nothing in the params changes per token.
 */
export async function planSample(ctx: GpuContext, logits: Tensor, outIds: Tensor, opts: SampleOptions): Promise<DispatchPlan> {
  const op = "sample";
  expectDType(logits, ["f32"], op, "logits");
  expectDType(outIds, ["u32"], op, "outIds");
  if (logits.shape.length !== 1 && logits.shape.length !== 2) throw new ShapeError(`${op}: logits ('${logits.label}') has shape [${logits.shape.join(", ")}], expected [B, V]`);
  const V = logits.shape[logits.shape.length - 1]!;
  const B = logits.shape.length === 1 ? 1 : logits.shape[0]!;
  validate(opts, op);
  if (V === 0) throw new ShapeError(`${op}: logits ('${logits.label}') has V = 0`);
  const outOffset = opts.outOffset ?? 0;
  if (!Number.isInteger(outOffset) || outOffset < 0 || outOffset + B > outIds.numel) {
    throw new ShapeError(`${op}: outIds ('${outIds.label}') has ${outIds.numel} elements, needs outOffset ${outOffset} + B ${B}`);
  }
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new UsageError(`${op}: seed must be a u32, got ${opts.seed}`);
  let stepT: Tensor;
  let stepConst: number;
  const fromBuffer = opts.step instanceof Tensor;
  const stepWord = opts.stepWord ?? 0;
  if (opts.step instanceof Tensor) {
    expectDType(opts.step, ["u32"], op, "step");
    if (!Number.isInteger(stepWord) || stepWord < 0 || stepWord >= opts.step.numel) {
      throw new ShapeError(`${op}: step ('${opts.step.label}') holds ${opts.step.numel} words, stepWord ${stepWord} is not one of them`);
    }
    stepT = opts.step;
    stepConst = opts.stepAdd ?? 0;
  } else {
    if (opts.stepWord !== undefined) throw new UsageError(`${op}: stepWord applies to a tensor step, not to the number ${opts.step}`);
    let d = dummySteps.get(ctx);
    if (!d || d.isDisposed) dummySteps.set(ctx, (d = ctx.upload([0], [1], "u32", "sample.step-unused")));
    stepT = d;
    stepConst = opts.step;
  }
  if (!Number.isInteger(stepConst) || stepConst < 0 || stepConst > 0xffffffff) throw new UsageError(`${op}: step must be a u32, got ${stepConst}`);
  const variant = sampleKernel(opts.wg ?? SAMPLE_WG);
  const kernel = await ctx.kernels.get(variant);
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  const dispatches = ctx.bindingSpans(B, V * 4, 4, `${op} logits '${logits.label}'`).map((w) => ({
    kernel,
    resources: [{ tensor: logits, byteOffset: w.byteOffset, byteSize: w.byteSize }, stepT, outIds],
    params: new Params()
      .u32(V)
      .u32(w.rows)
      .u32(w.firstRow)
      .u32(outOffset)
      .f32(opts.temperature)
      .u32(topK >= V ? 0 : topK)
      .f32(topP)
      .u32(opts.seed)
      .u32(stepConst)
      .u32(fromBuffer ? 1 : 0)
      .f32(-Infinity)
      .u32(w.elementBase)
      .u32(stepWord)
      .bytes(),
    workgroups: grid(ctx, w.rows),
  }));
  return dispatchPlan(ctx, variant.name, dispatches);
}

/** Sets logits[b, id] = −inf for every row b and every id in bannedIds (u32 [n]; ids ≥ V ignored). In place. */
export async function maskLogits(ctx: GpuContext, logits: Tensor, bannedIds: Tensor): Promise<void> {
  const op = "maskLogits";
  expectDType(logits, ["f32"], op, "logits");
  expectDType(bannedIds, ["u32"], op, "bannedIds");
  const V = logits.shape[logits.shape.length - 1] ?? 0;
  const B = logits.shape.length === 1 ? 1 : logits.shape[0]!;
  if (logits.shape.length < 1 || logits.shape.length > 2) throw new ShapeError(`${op}: logits ('${logits.label}') has shape [${logits.shape.join(", ")}], expected [B, V]`);
  const n = bannedIds.numel;
  if (n === 0 || V === 0) return;
  const kernel = await ctx.kernels.get(maskLogitsKernel());
  for (const w of ctx.bindingSpans(B, V * 4, 4, `${op} logits '${logits.label}'`)) {
    const params = new Params().u32(n).u32(V).u32(w.rows).f32(-Infinity).u32(w.elementBase).bytes();
    ctx.dispatch(kernel, [bannedIds, { tensor: logits, byteOffset: w.byteOffset, byteSize: w.byteSize }], params, [Math.ceil(n / MASK_WG)]);
  }
}

// ------------------------------------------------------------------ host side: RNG and references

/** PCG hash (Jarzynski & Olano 2020), the same u32 arithmetic as kernels/sample.wgsl. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) >>> 0)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The kernel's uniform draw in [0, 1) for (seed, step, row): 24 random bits. */
export function sampleUniform01(seed: number, step: number, row: number): number {
  return (pcgHash((pcgHash((pcgHash(seed) ^ step) >>> 0) ^ row) >>> 0) >>> 8) / 16777216;
}

/** Order-preserving u32 key of an f32 (as the kernel computes it). */
export function f32Key(x: number): number {
  const f = new Float32Array([x]);
  const b = new Uint32Array(f.buffer)[0]!;
  return (b & 0x80000000 ? ~b : b ^ 0x80000000) >>> 0;
}

export interface SampleReferenceOptions {
  temperature: number;
  topK?: number;
  topP?: number;
}

/**
 * CPU reference of sample(): logits [B, V] f32; uniform01(row) gives each row's draw (use
 * sampleUniform01(seed, step, row) to match the GPU). float64 sums, naive loops. Returns ids [B]
 * (NONFINITE_ID for a row holding NaN or +inf).
 */
export function sampleReference(logits: Float32Array, V: number, opts: SampleReferenceOptions, uniform01: (row: number) => number): Uint32Array {
  validate(opts, "sampleReference");
  const B = logits.length / V;
  const out = new Uint32Array(B);
  for (let b = 0; b < B; b++) {
    const l = logits.subarray(b * V, (b + 1) * V);
    if (l.some((x) => Number.isNaN(x) || x === Infinity)) {
      out[b] = NONFINITE_ID;
      continue;
    }
    const keys = new Array<number>(V);
    let arg = 0;
    for (let i = 0; i < V; i++) {
      keys[i] = f32Key(l[i]!);
      if (keys[i]! > keys[arg]!) arg = i;
    }
    if (opts.temperature === 0) {
      out[b] = arg;
      continue;
    }
    const T = opts.temperature;
    const s = (i: number) => Math.fround(l[i]! / T);
    const m = s(arg);
    const e = (i: number) => Math.exp(s(i) - m);
    // top-k: the k-th largest key, with multiplicity
    let tau = 0;
    const k = opts.topK ?? 0;
    if (k > 0 && k < V) tau = [...keys].sort((x, y) => y - x)[k - 1]!;
    let theta = tau;
    const p = opts.topP ?? 1;
    if (p < 1) {
      let Z = 0;
      for (let i = 0; i < V; i++) if (keys[i]! >= tau) Z += e(i);
      // kept ids by key, descending; walk groups of equal keys with the mass strictly above them
      const order: number[] = [];
      for (let i = 0; i < V; i++) if (keys[i]! >= tau) order.push(i);
      order.sort((x, y) => keys[y]! - keys[x]!);
      let above = 0;
      for (let j = 0; j < order.length; ) {
        const key = keys[order[j]!]!;
        if (!(above < p * Z)) break;
        theta = key;
        while (j < order.length && keys[order[j]!] === key) above += e(order[j++]!);
      }
    }
    let Zf = 0;
    for (let i = 0; i < V; i++) if (keys[i]! >= theta) Zf += e(i);
    if (!(Zf > 0 && Number.isFinite(Zf))) {
      out[b] = arg;
      continue;
    }
    const target = uniform01(b) * Zf;
    let cum = 0;
    let pick = -1;
    let last = 0;
    for (let i = 0; i < V && pick < 0; i++) {
      if (keys[i]! < theta) continue;
      cum += e(i);
      last = i;
      if (cum > target) pick = i;
    }
    out[b] = pick < 0 ? last : pick;
  }
  return out;
}

/** CPU reference of maskLogits (in place on a copy): logits [B, V]. */
export function maskLogitsReference(logits: Float32Array, V: number, banned: ArrayLike<number>): Float32Array {
  const out = Float32Array.from(logits);
  for (let b = 0; b < logits.length / V; b++) for (let j = 0; j < banned.length; j++) if (banned[j]! < V) out[b * V + banned[j]!] = -Infinity;
  return out;
}
