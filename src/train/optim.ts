// AdamW with f32 master weights, global-norm gradient clipping, warmup + decay schedules and
// gradient accumulation (kernels/adamw.wgsl; reference adamwReference below).
//
// One optimizer step, encoded with no host sync:
//   SUMSQ over every gradient (windows of CHUNK elements → one partial each, fixed slots),
//   FINALIZE (one workgroup: global norm and clip factor into `stats` [4] = [norm, clip, Σg², 0]),
//   STEP per parameter (reads the clip factor from `stats` on the GPU; does nothing when Σg² is
//   NaN or inf, so a non-finite gradient leaves weights and moments as they were).
// Every reduction has a fixed order: same seed and data, same bits, run after run.
// Master weights: an f32 parameter is its own master (updated in place, the forward reads it);
// an f16 parameter gets an f32 master copy, and STEP writes the rounded f16 weights back.
// Gradient accumulation: the trainer sums micro-batch gradients into the same gradient tensors
// (trainStep's `accumulate`), then calls step() once and zeroGrad(). `gradScale` in step()
// divides a plain sum (e.g. 1/microBatches) when the losses were not normalised globally.

import { releaseGemvPack } from "../ops/linear.js";
import { ShapeError, UnsupportedError, UsageError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../ops/common.js";
import { f16ArrayToF32 } from "../util/f16.js";

/** Invocations per workgroup of every stage. */
const ADAMW_WG = 64;
/** Elements per invocation in SUMSQ: one partial per CHUNK = WG·PER elements. */
const SUMSQ_PER = 64;
export const ADAMW_CHUNK = ADAMW_WG * SUMSQ_PER;

export type AdamwStage = "sumsq" | "finalize" | "step";

export function adamwKernel(stage: AdamwStage, weight: "f32" | "f16" = "f32"): KernelVariant {
  if (stage !== "step" && weight !== "f32") throw new UnsupportedError(`adamw: stage ${stage} has no ${weight} variant`);
  const f16 = stage === "step" && weight === "f16";
  const bindings: KernelVariant["bindings"] =
    stage === "step" ? (f16 ? ["read", "read", "read_write", "read_write", "read_write", "read_write", "uniform"] : ["read", "read", "read_write", "read_write", "read_write", "uniform"]) : ["read", "read_write", "uniform"];
  return {
    file: "adamw",
    name: `adamw_${stage}${stage === "step" ? `_${weight}` : ""}_wg${ADAMW_WG}${stage === "sumsq" ? `_per${SUMSQ_PER}` : ""}`,
    defines: { SUMSQ: stage === "sumsq", FINALIZE: stage === "finalize", STEP: stage === "step", F16: f16, WG: ADAMW_WG, PER: SUMSQ_PER },
    bindings,
  };
}

// ------------------------------------------------------------------ schedule

export interface ScheduleOptions {
  /** Steps of linear warmup from 0 to the base rate (default 0). */
  warmupSteps?: number;
  /** Steps of the whole run (the decay reaches its floor there). Needed unless decay is "constant". */
  totalSteps?: number;
  /** After warmup: "cosine" (default), "linear" or "constant". */
  decay?: "cosine" | "linear" | "constant";
  /** The floor as a fraction of the base rate (default 0). */
  minLrRatio?: number;
}

/**
 * Learning rate of optimizer step `step` (0-based), as transformers' get_{cosine,linear}_schedule_with_warmup:
 * step < warmup: base·step/warmup; then progress p = (step − warmup)/(total − warmup) clamped to
 * [0, 1]: cosine base·(r + (1 − r)·½(1 + cos πp)), linear base·(r + (1 − r)(1 − p)), r = minLrRatio.
 */
export function learningRate(base: number, step: number, s: ScheduleOptions = {}): number {
  const warm = s.warmupSteps ?? 0;
  const decay = s.decay ?? "cosine";
  const r = s.minLrRatio ?? 0;
  if (!Number.isInteger(step) || step < 0) throw new UsageError(`learningRate: step must be an integer ≥ 0, got ${step}`);
  if (warm > 0 && step < warm) return (base * step) / warm;
  if (decay === "constant") return base;
  const total = s.totalSteps;
  if (total === undefined || !(total > warm)) throw new UsageError(`learningRate: decay '${decay}' needs totalSteps > warmupSteps (got ${total}, ${warm})`);
  const p = Math.min(1, Math.max(0, (step - warm) / (total - warm)));
  const f = decay === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - p;
  return base * (r + (1 - r) * f);
}

// ------------------------------------------------------------------ optimizer

/** A trainable tensor: the weight the forward reads and its f32 gradient (same shape). */
export interface TrainParam {
  /** Hugging Face / PEFT name, e.g. "model.layers.0.self_attn.q_proj.weight". */
  name: string;
  weight: Tensor;
  grad: Tensor;
  /** Apply weight decay (default: 2-D weights yes, norms and biases no). */
  decay: boolean;
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (default 0), applied to params with decay = true. */
  weightDecay?: number;
  /** Clip the global gradient norm to this (≤ 0 or absent: no clipping). */
  maxGradNorm?: number;
  schedule?: ScheduleOptions;
}

interface Slot {
  param: TrainParam;
  master: Tensor;
  m: Tensor;
  v: Tensor;
  /** First partial of this gradient in the SUMSQ buffer. */
  slot0: number;
}

export class AdamW {
  private t = 0;
  private constructor(
    readonly ctx: GpuContext,
    private readonly slots: Slot[],
    private readonly partials: Tensor,
    /** f32 [4]: [global norm, clip factor, Σg², 0] of the last step. */
    readonly stats: Tensor,
    readonly opts: Required<Omit<AdamWOptions, "schedule">> & { schedule: ScheduleOptions },
  ) {}

  /** Creates moments (zero) and f32 masters (f16 weights are read back once and widened). */
  static async create(ctx: GpuContext, params: readonly TrainParam[], opts: AdamWOptions): Promise<AdamW> {
    for (const p of params) releaseGemvPack(p.weight); // updated in place: a tiled GEMV copy would go stale
    const o = {
      lr: opts.lr,
      beta1: opts.beta1 ?? 0.9,
      beta2: opts.beta2 ?? 0.999,
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? 0,
      maxGradNorm: opts.maxGradNorm ?? 0,
      schedule: opts.schedule ?? { decay: "constant" as const },
    };
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === "number" && !Number.isFinite(v)) throw new UsageError(`AdamW: ${k} must be finite, got ${v}`);
    }
    if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new UsageError(`AdamW: betas must lie in [0, 1), got ${o.beta1}, ${o.beta2}`);
    if (!(o.eps > 0)) throw new UsageError(`AdamW: eps must be > 0, got ${o.eps}`);
    const names = new Set<string>();
    const slots: Slot[] = [];
    let count = 0;
    for (const p of params) {
      if (names.has(p.name)) throw new UsageError(`AdamW: parameter '${p.name}' is listed twice`);
      names.add(p.name);
      expectDType(p.weight, ["f32", "f16"], "AdamW", `weight '${p.name}'`);
      expectDType(p.grad, ["f32"], "AdamW", `grad of '${p.name}'`);
      expectShape(p.grad, p.weight.shape, "AdamW", `grad of '${p.name}'`);
      if (p.grad.buffer === p.weight.buffer) throw new ShapeError(`AdamW: '${p.name}' has its gradient in its weight's buffer`);
      const n = p.weight.numel;
      let master: Tensor;
      if (p.weight.dtype === "f32") {
        master = p.weight;
      } else {
        master = ctx.upload(f16ArrayToF32((await p.weight.read()) as Uint16Array), p.weight.shape, "f32", `adamw.master.${p.name}`);
      }
      const m = ctx.upload(new Float32Array(n), p.weight.shape, "f32", `adamw.m.${p.name}`);
      const v = ctx.upload(new Float32Array(n), p.weight.shape, "f32", `adamw.v.${p.name}`);
      slots.push({ param: p, master, m, v, slot0: count });
      count += Math.ceil(n / ADAMW_CHUNK);
    }
    const partials = ctx.empty([Math.max(count, 1)], "f32", "adamw.partials");
    if (partials.byteLength > ctx.limits.maxStorageBufferBindingSize) throw new UnsupportedError(`AdamW: ${count} norm partials exceed one storage binding`);
    const stats = ctx.upload(new Float32Array(4), [4], "f32", "adamw.stats");
    return new AdamW(ctx, slots, partials, stats, o);
  }

  /** Optimizer steps taken so far. */
  get stepCount(): number {
    return this.t;
  }

  /** Restores the step count (bias corrections and schedule) when resuming from a checkpoint. */
  setStepCount(t: number): void {
    if (!Number.isInteger(t) || t < 0) throw new RangeError(`AdamW step count must be a non-negative integer, got ${t}`);
    this.t = t;
  }
  /** The learning rate the next step() uses. */
  get nextLr(): number {
    return learningRate(this.opts.lr, this.t, this.opts.schedule);
  }
  /** The f32 master and moments of a parameter (for checkpoints and tests). */
  state(name: string): { master: Tensor; m: Tensor; v: Tensor } {
    const s = this.slots.find((x) => x.param.name === name);
    if (!s) throw new UsageError(`AdamW: no parameter '${name}'`);
    return { master: s.master, m: s.m, v: s.v };
  }

  /** Encodes one update of every parameter from its gradient (no host sync). */
  async step(opts: { gradScale?: number } = {}): Promise<void> {
    const ctx = this.ctx;
    const o = this.opts;
    const gradScale = opts.gradScale ?? 1;
    if (!Number.isFinite(gradScale)) throw new UsageError(`AdamW.step: gradScale must be finite, got ${gradScale}`);
    const lr = learningRate(o.lr, this.t, o.schedule);
    this.t++;
    const bc1 = 1 - o.beta1 ** this.t;
    const bc2 = 1 - o.beta2 ** this.t;
    const kSum = await ctx.kernels.get(adamwKernel("sumsq"));
    const kFin = await ctx.kernels.get(adamwKernel("finalize"));
    const kStep32 = await ctx.kernels.get(adamwKernel("step", "f32"));
    const kStep16 = this.slots.some((s) => s.param.weight.dtype === "f16") ? await ctx.kernels.get(adamwKernel("step", "f16")) : null;
    const count = this.partials.numel;
    /** The whole Params struct (64 bytes) of kernels/adamw.wgsl. */
    const params = (n: number, slot0: number, f: { lr?: number; decay?: number; stepSize?: number; maxNorm?: number } = {}) =>
      new Params().u32(n).u32(slot0).u32(0).u32(0)
        .f32(f.lr ?? 0).f32(o.beta1).f32(o.beta2).f32(o.eps)
        .f32(f.decay ?? 1).f32(f.stepSize ?? 0).f32(Math.sqrt(bc2)).f32(gradScale)
        .f32(f.maxNorm ?? 0).u32(0).u32(0).u32(0)
        .bytes();
    for (const s of this.slots) {
      const n = s.param.grad.numel;
      for (const w of this.windows(n, s.param.name)) {
        const rows = Math.min(w.rows * ADAMW_CHUNK, n - w.firstRow * ADAMW_CHUNK);
        const res = { tensor: s.param.grad, byteOffset: w.firstRow * ADAMW_CHUNK * 4, byteSize: rows * 4 };
        ctx.dispatch(kSum, [res, this.partials], params(rows, s.slot0 + w.firstRow), grid(ctx, w.rows));
      }
    }
    ctx.dispatch(kFin, [this.partials, this.stats], params(count, 0, { maxNorm: o.maxGradNorm }), [1]);
    for (const s of this.slots) {
      const n = s.param.grad.numel;
      const wd = s.param.decay ? o.weightDecay : 0;
      const f16 = s.param.weight.dtype === "f16";
      for (const w of this.windows(n, s.param.name)) {
        const e0 = w.firstRow * ADAMW_CHUNK;
        const rows = Math.min(w.rows * ADAMW_CHUNK, n - e0);
        const win = (t: Tensor) => ({ tensor: t, byteOffset: e0 * 4, byteSize: rows * 4 });
        const p = params(rows, 0, { lr, decay: 1 - lr * wd, stepSize: lr / bc1 });
        const groups = grid(ctx, Math.ceil(Math.ceil(rows / 2) / ADAMW_WG));
        if (f16) {
          const w16 = { tensor: s.param.weight, byteOffset: e0 * 2, byteSize: Math.ceil(rows / 2) * 4 };
          ctx.dispatch(kStep16!, [win(s.param.grad), this.stats, win(s.master), win(s.m), win(s.v), w16], p, groups);
        } else {
          ctx.dispatch(kStep32, [win(s.param.grad), this.stats, win(s.master), win(s.m), win(s.v)], p, groups);
        }
      }
    }
  }

  /** Zero-fills every gradient (after step(), before the next accumulation). */
  zeroGrad(): void {
    for (const s of this.slots) this.ctx.clear(s.param.grad);
  }

  /** [global gradient norm before clipping, clip factor] of the last step (one host sync). */
  async lastGradNorm(): Promise<{ norm: number; clip: number }> {
    const s = await this.stats.read();
    return { norm: s[0]!, clip: s[1]! };
  }

  dispose(): void {
    for (const s of this.slots) {
      if (s.master !== s.param.weight) s.master.dispose();
      s.m.dispose();
      s.v.dispose();
    }
    this.partials.dispose();
    this.stats.dispose();
  }

  /** Windows of whole CHUNKs that fit one binding (f32 element windows; f16 ones are half as long). */
  private windows(n: number, name: string) {
    return this.ctx.bindingWindows(Math.ceil(n / ADAMW_CHUNK), ADAMW_CHUNK * 4, `AdamW '${name}'`);
  }
}

// ------------------------------------------------------------------ CPU references

/** torch.nn.utils.clip_grad_norm_ (float64): norm = sqrt(Σ g²) over all grads, clip = min(1, max/(norm + 1e-6)). */
export function clipFactorReference(grads: readonly ArrayLike<number>[], maxNorm: number): { norm: number; clip: number } {
  let total = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) total += g[i]! * g[i]!;
  const norm = Math.sqrt(total);
  return { norm, clip: maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1 };
}

export interface AdamwReferenceOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count after this update (bias corrections). */
  t: number;
  /** Multiplier of the gradient (clip factor × gradScale). */
  gradFactor: number;
}

/** One AdamW update in float64, in place on w, m, v (torch.optim.AdamW, amsgrad off). */
export function adamwReference(w: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, o: AdamwReferenceOptions): void {
  const bc1 = 1 - o.beta1 ** o.t;
  const bc2 = 1 - o.beta2 ** o.t;
  for (let i = 0; i < w.length; i++) {
    const gi = g[i]! * o.gradFactor;
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
    w[i] = w[i]! * (1 - o.lr * o.weightDecay) - (o.lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + o.eps));
  }
}
