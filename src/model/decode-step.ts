// The decode step of Session.generate, built once per generate() call and replayed per token.
//
// One step (all on the GPU, no host writes, no readback):
//   head: logits rules (banned ids, copy-input, force-after; only those in use) → sample the next
//         id from `logits` into `token` → advance: the rows fed this step are the token, or the L
//         ids an injecting hook planned at the previous step (then no token is fed and the history
//         gets INJECTED_ID); context, history and the step state move on.
//   body: hooks' beforeForward work → forward of the T live rows (T = step[STEP_ROWS], read on the
//         GPU by every kernel; fixed grids, so one list of dispatches serves T = 1 and T = L) →
//         hooks' afterForward work → logits of the last row.
// Per layer the forward is 6 dispatches (7 when attention splits its keys):
//   gemv_step(RMSNorm prologue; q|k|v) → rope_kv (RoPE on q and k + KV-cache append) →
//   attention_step (+ combine) → gemv_step(o; residual epilogue) →
//   gemv_step(RMSNorm prologue; gate|up; SwiGLU epilogue) → gemv_step(down; residual epilogue)
// then gemv_step(final RMSNorm prologue; lm_head; last row only) into `logits` (and, when a hook
// needs it, the last row's final-norm hidden state by rmsnormLastRow).
// The head and the body are captured programs (src/gpu/capture.ts): replaying them encodes the
// recorded dispatches with no parameter packing, bind-group or kernel lookups. The last step of a
// generate() call without hooks replays only the head (its forward would be wasted).
// Prefill (Session.append) uses Decoder.forward; both are checked against the same float64
// references (test/parity.test.ts, test/step-chain.test.ts).

import type { GpuContext } from "../gpu/context.js";
import type { CapturedProgram } from "../gpu/capture.js";
import type { Tensor } from "../gpu/tensor.js";
import type { Decoder, KVCache } from "./decoder.js";
import type { DecodeHook, DecodeStep } from "./hooks.js";
import { copyInput, forceAfter, planAdvanceRows, type CopyInputRule } from "../ops/decode_state.js";
import { maskLogits, planSample } from "../ops/sample.js";
import { rmsnormLastRow } from "../ops/rmsnorm.js";
import { planGemvStep } from "../ops/gemv-step.js";
import { planRopeKv } from "../ops/rope-kv.js";
import { planAttentionStep } from "../ops/attention-step.js";
import { planEmbedRows } from "../ops/embed-rows.js";
import { STEP_COUNT } from "../ops/step-state.js";

/** What the step's launchers prepare once (kernels, bindings, params, owned scratch). */
interface Plan {
  encode(ctx: GpuContext): void;
  dispose(): void;
}

export interface StepRules {
  banned: Tensor | null;
  copy: { table: Tensor; from: number; rule: CopyInputRule } | null;
  forced: readonly { pattern: Tensor; token: number }[];
}

export interface StepSampling {
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
}

/** The session's GPU decode state the step reads and writes. */
export interface StepState {
  /** u32 [STEP_WORDS] (src/ops/step-state.ts). */
  step: Tensor;
  /** u32 [1]: the sampled id. */
  token: Tensor;
  /** u32 [capacity]: every id in the cache. */
  context: Tensor;
  /** f32 [1, V]: logits of the last fed row (sampled by the next step). */
  logits: Tensor;
  /** u32 [stride · maxSteps]: per step, the id fed (or INJECTED_ID) and the hooks' record words. */
  history: Tensor;
  stride: number;
  maxSteps: number;
}

export interface DecodeStepOptions {
  decoder: Decoder;
  cache: KVCache;
  state: StepState;
  rules: StepRules;
  sampling: StepSampling;
  hooks: readonly DecodeHook[];
  /** Each hook's word within a step's record (-1: none). */
  recordOffsets: readonly number[];
  window: number;
}

/** Activations of the step forward: [maxRows, width] f32 each (the first T rows are live). */
interface StepActivations {
  rows: Tensor;
  plan: Tensor;
  resid: Tensor;
  qkv: Tensor;
  att: Tensor;
  mlp: Tensor;
  hidden: Tensor | null;
}

export class DecodeStepProgram {
  private constructor(
    private readonly ctx: GpuContext,
    readonly head: CapturedProgram,
    readonly body: CapturedProgram,
    private readonly acts: StepActivations,
    /** Rows one step can feed (1, or the largest injection a hook may plan). */
    readonly maxRows: number,
    private readonly plans: readonly Plan[],
  ) {}

  /** Dispatches a full step replays. */
  get dispatches(): number {
    return this.head.dispatches + this.body.dispatches;
  }

  /** Encodes one step into the current batch (`forward` false: the head only). */
  replay(forward = true): void {
    this.head.replay();
    if (forward) this.body.replay();
  }

  dispose(): void {
    this.head.dispose();
    this.body.dispose();
    for (const p of this.plans) p.dispose();
    const a = this.acts;
    for (const t of [a.rows, a.plan, a.resid, a.qkv, a.att, a.mlp, a.hidden]) t?.dispose();
  }

  static async build(o: DecodeStepOptions): Promise<DecodeStepProgram> {
    const { decoder, cache, state: s, rules, sampling, hooks } = o;
    const ctx = decoder.ctx;
    const c = decoder.config;
    const maxRows = Math.max(1, ...hooks.map((h) => h.maxInjectRows));
    const D = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
    const I = decoder.weights.layers[0]?.gate.shape[0] ?? 0;
    const acts: StepActivations = {
      rows: ctx.empty([maxRows], "u32", "step.rows"),
      plan: ctx.empty([maxRows], "u32", "step.plan"),
      resid: ctx.empty([maxRows, D], "f32", "step.resid"),
      qkv: ctx.empty([maxRows, (H + 2 * Hkv) * hd], "f32", "step.qkv"),
      att: ctx.empty([maxRows, H * hd], "f32", "step.att"),
      mlp: ctx.empty([maxRows, I], "f32", "step.mlp"),
      hidden: hooks.some((h) => h.needsHidden) ? ctx.empty([1, D], "f32", "step.hidden") : null,
    };
    const plans: Plan[] = [];
    let head: CapturedProgram | null = null;
    let body: CapturedProgram | null = null;
    try {
      const sampler = await planSample(ctx, s.logits, s.token, { ...sampling, step: s.step, stepWord: STEP_COUNT });
      plans.push(sampler);
      const advance = await planAdvanceRows(ctx, { token: s.token, plan: acts.plan, step: s.step, rows: acts.rows, context: s.context, history: s.history, stride: s.stride });
      plans.push(advance);
      const forward = await planStepForward(decoder, cache, acts, s.step, s.logits, o.window);
      plans.push(...forward);
      ctx.beginCapture("decode.head");
      try {
        if (rules.banned) await maskLogits(ctx, s.logits, rules.banned);
        if (rules.copy) await copyInput(ctx, s.context, rules.copy.table, s.step, s.logits, rules.copy.from, rules.copy.rule);
        for (const f of rules.forced) await forceAfter(ctx, s.context, f.pattern, s.logits, s.step, f.token);
        sampler.encode(ctx);
        advance.encode(ctx);
      } finally {
        head = ctx.endCapture();
      }
      ctx.beginCapture("decode.body");
      try {
        const view = (i: number): DecodeStep => ({
          ctx, step: s.step, token: s.token, rows: acts.rows, context: s.context, logits: s.logits, history: s.history,
          stride: s.stride, recordOffset: o.recordOffsets[i] ?? -1, maxSteps: s.maxSteps, plan: acts.plan, capacity: cache.capacity, window: o.window,
        });
        for (const [i, h] of hooks.entries()) await h.beforeForward?.(view(i));
        for (const p of forward.slice(0, -1)) p.encode(ctx);
        if (acts.hidden) await rmsnormLastRow(ctx, acts.resid, decoder.weights.norm, decoder.config.rmsNormEps, s.step, acts.hidden);
        for (const [i, h] of hooks.entries()) await h.afterForward?.(view(i), acts.hidden);
        // lm_head last: a hook's search reads the hidden state; the logits are the next step's
        forward[forward.length - 1]!.encode(ctx);
      } finally {
        body = ctx.endCapture();
      }
      return new DecodeStepProgram(ctx, head, body, acts, maxRows, plans);
    } catch (e) {
      head?.dispose();
      body?.dispose();
      for (const p of plans) p.dispose();
      for (const t of Object.values(acts)) (t as Tensor | null)?.dispose();
      throw e;
    }
  }
}

/**
 * Plans the forward of the step's live rows (see the file header): embed, 6 plans per layer, and
 * lm_head (last). Built once per generate() call; encoded once into the captured body.
 */
async function planStepForward(decoder: Decoder, cache: KVCache, a: StepActivations, step: Tensor, logits: Tensor, window: number): Promise<Plan[]> {
  const { ctx, config: c, weights: w } = decoder;
  const eps = c.rmsNormEps;
  const heads = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim };
  const plans: Plan[] = [];
  try {
    plans.push(await planEmbedRows(ctx, a.rows, w.embed, step, a.resid));
    for (let l = 0; l < c.numLayers; l++) {
      const L = w.layers[l]!;
      plans.push(await planGemvStep(ctx, { x: a.resid, w: [L.q, L.k, L.v], bias: [L.qBias, L.kBias, L.vBias], norm: { weight: L.inputNorm, eps }, step, y: a.qkv }));
      plans.push(await planRopeKv(ctx, a.qkv, w.invFreq, cache.k[l]!, cache.v[l]!, step, heads));
      plans.push(await planAttentionStep(ctx, a.qkv, cache.k[l]!, cache.v[l]!, step, { ...heads, out: a.att, window }));
      plans.push(await planGemvStep(ctx, { x: a.att, w: L.o, bias: L.oBias ? [L.oBias] : null, epilogue: "residual", step, y: a.resid }));
      plans.push(await planGemvStep(ctx, { x: a.resid, w: [L.gate, L.up], bias: L.gateBias || L.upBias ? [L.gateBias, L.upBias] : null, norm: { weight: L.postNorm, eps }, epilogue: "swiglu", step, y: a.mlp }));
      plans.push(await planGemvStep(ctx, { x: a.mlp, w: L.down, bias: L.downBias ? [L.downBias] : null, epilogue: "residual", step, y: a.resid }));
    }
    plans.push(await planGemvStep(ctx, { x: a.resid, w: w.lmHead, norm: { weight: w.norm, eps }, lastRow: true, step, y: logits }));
  } catch (e) {
    for (const p of plans) p.dispose();
    throw e;
  }
  return plans;
}
