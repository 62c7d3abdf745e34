// One training step on the GPU: a forward over a packed batch that keeps every activation the
// backward needs, OneGen's joint loss (src/train/losses.ts), and the backward through the final
// norm, every decoder layer and the embedding, producing f32 gradients of every weight (full
// fine-tuning) or of the LoRA adapters only (base frozen).
//
// The forward is the model's own (Decoder.forward) with a ForwardRecorder: it hands over the
// activations the backward needs and adds the LoRA term to the adapted projections. Keys and
// values go to an f32 cache [Hkv, T, hd] per layer that this step owns.
// Saved per layer: x, n1, q, K, V, att, xm, n2, g, u, s (+ LoRA inputs): O(T·(8D + 3F)) floats,
// meant for training lengths where that fits (full activations, no recomputation).
// Backward per layer, dX the gradient of x' (residual adds pass it through; rmsnorm backward
// accumulates into it): down → swiglu → gate/up → post-norm → o → attention (dq, dK, dV) →
// kvAppend⁻¹ → rope⁻¹ → q/k/v → input norm. All gradient tensors accumulate (+=), so several
// micro-batches sum into the same buffers (TrainStepOptions.accumulate).
// Host syncs per step: one when the batch has a contrastive term (gather the anchor and
// document rows, compute L_ret on the host, scatter its gradient back), one to read the losses.

import { GpuOutOfMemoryError, ShapeError, UsageError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { HF_LAYER_FIELDS, KVCache, type Decoder, type ForwardRecorder, type LayerWeights, type Projection, type SavedActivation } from "../model/decoder.js";
import { packedCausalRanges } from "../ops/attention.js";
import { embedding } from "../ops/embedding.js";
import { linear, releaseGemvPack } from "../ops/linear.js";
import { contrastiveLoss, contrastiveRows, validateContrastive, type ContrastiveSpec } from "./losses.js";
import { LORA_MODULE_WEIGHTS, LORA_MODULES, LoraAdapters, loraDropout, moduleName, type LoraConfig, type LoraModule } from "./lora.js";
import type { TrainParam } from "./optim.js";
import { attentionBackward, kvAppendBackward } from "./ops/attention_backward.js";
import { crossEntropy, IGNORE_LABEL } from "./ops/cross_entropy.js";
import { embeddingBackward } from "./ops/embedding_backward.js";
import { linearBackwardBias, linearBackwardInput, linearBackwardWeight } from "./ops/linear_backward.js";
import { accumulateGrad } from "./ops/residual_backward.js";
import { rmsnormBackward } from "./ops/rmsnorm_backward.js";
import { ropeBackward } from "./ops/rope_backward.js";
import { swigluBackward } from "./ops/swiglu_backward.js";

export type TrainMode = { mode: "full" } | { mode: "lora"; lora: LoraConfig };

/**
 * GPU bytes of the training state a run adds to the loaded model (activations excluded, they
 * are per batch): f32 gradients, AdamW's f32 m and v, f32 master copies of f16 weights (full
 * fine-tuning), or the LoRA adapters A [r, K] and B [N, r] with their gradients and moments.
 */
export function trainingStateBytes(decoder: Decoder, mode: TrainMode): { gradients: number; optimizer: number; adapters: number; total: number } {
  const w = decoder.weights;
  let gradients = 0;
  let optimizer = 0;
  let adapters = 0;
  if (mode.mode === "lora") {
    const r = mode.lora.rank;
    const targets = mode.lora.targets ?? LORA_MODULES;
    for (const L of w.layers) {
      for (const module of targets) {
        const t = L[LORA_MODULE_WEIGHTS[module]?.weight ?? "q"] as Tensor | null;
        if (!t) continue;
        const [N, K] = t.shape as [number, number];
        const n = r * K + N * r;
        adapters += 4 * n;
        gradients += 4 * n;
        optimizer += 8 * n;
      }
    }
  } else {
    const seen = new Set<Tensor>();
    const add = (t: Tensor | null): void => {
      if (!t || seen.has(t)) return;
      seen.add(t);
      gradients += 4 * t.numel;
      optimizer += 8 * t.numel + (t.dtype === "f16" ? 4 * t.numel : 0);
    };
    add(w.embed);
    for (const L of w.layers) for (const [field] of HF_LAYER_FIELDS) add(L[field] as Tensor | null);
    add(w.norm);
    add(w.lmHead);
  }
  return { gradients, optimizer, adapters, total: gradients + optimizer + adapters };
}


export class TrainModel {
  /** Gradient of each trainable base weight, keyed by the weight tensor (tied embeddings share one). */
  private readonly gradOf = new Map<Tensor, Tensor>();
  private readonly paramList: TrainParam[] = [];
  /** Training steps run (the LoRA dropout masks' step index). */
  steps = 0;

  private constructor(
    readonly decoder: Decoder,
    readonly lora: LoraAdapters | null,
  ) {}

  /**
   * Full fine-tuning (gradients for every weight) or LoRA (adapters only, base frozen). The
   * training state (trainingStateBytes) is checked against the GPU memory budget left first.
   */
  static create(decoder: Decoder, mode: TrainMode = { mode: "full" }): TrainModel {
    const ctx = decoder.ctx;
    const w = decoder.weights;
    // Training reads and updates weights row-major (backward kernels, AdamW, saving): a decoder
    // loaded with its projections in the tiles layout (loadDecoder's gemvLayout) is refused.
    for (const t of [w.embed, w.lmHead, ...w.layers.flatMap((L) => HF_LAYER_FIELDS.map(([f]) => L[f] as Tensor | null))]) t?.refuseTiles("TrainModel");
    if (mode.mode === "lora") LoraAdapters.validate(w.layers, mode.lora);
    // Full fine-tuning changes every weight in place: opt-in tiled GEMV copies (packGemvWeight)
    // would go stale, so they are freed before the budget check (LoRA leaves the base frozen).
    if (mode.mode === "full") {
      for (const L of w.layers) for (const [field] of HF_LAYER_FIELDS) releaseGemvPack(L[field] as Tensor | null);
      releaseGemvPack(w.lmHead);
    }
    const plan = trainingStateBytes(decoder, mode);
    if (plan.total > ctx.memoryAvailable) {
      const MiB = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;
      throw new GpuOutOfMemoryError(
        `training state needs ${MiB(plan.total)} (gradients ${MiB(plan.gradients)}, AdamW moments and f32 masters ${MiB(plan.optimizer)}` +
          `${plan.adapters ? `, LoRA adapters ${MiB(plan.adapters)}` : ""}), more than the ${MiB(ctx.memoryAvailable)} left of the GPU memory budget of ` +
          `${MiB(ctx.memoryBudget.bytes)} (${ctx.memoryBudget.source}) after the model's ${MiB(ctx.pool.stats.liveBytes)}; nothing was allocated`,
        mode.mode === "full" ? "train LoRA adapters (--lora R) instead of every weight, or raise the budget (--gpu-memory SIZE)" : "lower the LoRA rank or its targets, or raise the budget (--gpu-memory SIZE)",
      );
    }
    if (mode.mode === "lora") {
      const m = new TrainModel(decoder, LoraAdapters.create(ctx, w.layers, mode.lora));
      m.paramList.push(...m.lora!.params());
      return m;
    }
    const m = new TrainModel(decoder, null);
    const addParam = (name: string, t: Tensor | null) => {
      if (!t || m.gradOf.has(t)) return; // absent bias, or the tied lm_head
      const g = ctx.upload(new Float32Array(t.numel), t.shape, "f32", `grad.${name}`);
      m.gradOf.set(t, g);
      m.paramList.push({ name, weight: t, grad: g, decay: t.shape.length === 2 });
    };
    addParam("model.embed_tokens.weight", w.embed);
    w.layers.forEach((L, l) => {
      for (const [field, name] of HF_LAYER_FIELDS) addParam(`model.layers.${l}.${name}`, L[field] as Tensor | null);
    });
    addParam("model.norm.weight", w.norm);
    addParam("lm_head.weight", w.lmHead);
    return m;
  }

  get ctx(): GpuContext {
    return this.decoder.ctx;
  }
  /** Trainable parameters with their gradient tensors (for AdamW). */
  get params(): readonly TrainParam[] {
    return this.paramList;
  }
  /** Gradients by parameter name. */
  grads(): Map<string, Tensor> {
    return new Map(this.paramList.map((p) => [p.name, p.grad]));
  }
  zeroGrads(): void {
    for (const p of this.paramList) this.ctx.clear(p.grad);
  }
  /** The gradient of a base weight, or null when it is frozen. */
  gradFor(weight: Tensor | null): Tensor | null {
    return weight ? (this.gradOf.get(weight) ?? null) : null;
  }
  dispose(): void {
    for (const g of this.gradOf.values()) g.dispose();
    this.lora?.dispose();
  }
}

export interface TrainBatch {
  /** Token ids [T] of the packed sequences. */
  ids: ArrayLike<number>;
  /** Sequence lengths, summing to T (no attention across sequences; positions restart at 0). */
  lengths: readonly number[];
  /** Next-token labels [T] (IGNORE_LABEL = masked), e.g. from nextTokenLabels(). */
  labels: ArrayLike<number>;
  /** The contrastive term (absent: L_ret = 0). */
  retrieval?: ContrastiveSpec;
}

export interface TrainStepOptions {
  lambdaGen?: number;
  lambdaRet?: number;
  /** Add to the gradients already held (micro-batch accumulation) instead of starting from zero. */
  accumulate?: boolean;
  /** Divisor of L_gen (default: this batch's unmasked rows); pass the accumulated batch's count. */
  genNormalizer?: number;
  /** Divisor of L_ret (default: this batch's pairs). */
  retNormalizer?: number;
  /** Step index of the LoRA dropout masks (default: the model's step counter, then incremented). */
  dropoutStep?: number;
}

export interface TrainStepResult {
  /** λ_gen·L_gen + λ_ret·L_ret. */
  loss: number;
  lossGen: number;
  lossRet: number;
  /** Unmasked generation rows. */
  genTokens: number;
  /** Contrastive pairs, and those whose positive ranked first. */
  pairs: number;
  pairsCorrect: number;
  /** Gradients by parameter name (the model's own buffers). */
  grads: Map<string, Tensor>;
}

interface LoraSaved {
  /** The adapter input after dropout (the layer input itself when p = 0). */
  xd: Tensor;
  /** xd·Aᵀ [M, r]. */
  xa: Tensor;
  salt: number;
}

/** The LoRA module adapting each projection. */
const MODULE_OF = Object.fromEntries(Object.entries(LORA_MODULE_WEIGHTS).map(([m, { weight }]) => [weight, m])) as Record<Projection, LoraModule>;

interface LayerSaved {
  x: Tensor;
  n1: Tensor;
  q: Tensor;
  kc: Tensor;
  vc: Tensor;
  att: Tensor;
  xm: Tensor;
  n2: Tensor;
  g: Tensor;
  u: Tensor;
  s: Tensor;
  lora: Map<LoraModule, LoraSaved>;
}

/** Runs forward, loss and backward for one (micro-)batch; returns the losses and the gradients. */
export async function trainStep(model: TrainModel, batch: TrainBatch, opts: TrainStepOptions = {}): Promise<TrainStepResult> {
  const { ctx, decoder } = model;
  const c = decoder.config;
  const w = decoder.weights;
  const T = batch.ids.length;
  const D = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
  const V = decoder.vocabSize;
  const lambdaGen = opts.lambdaGen ?? 1;
  const lambdaRet = opts.lambdaRet ?? 1;
  if (!Number.isFinite(lambdaGen) || !Number.isFinite(lambdaRet)) throw new UsageError(`trainStep: λ_gen and λ_ret must be finite, got ${lambdaGen}, ${lambdaRet}`);
  if (T === 0) throw new ShapeError("trainStep: empty batch");
  if (batch.lengths.reduce((a, b) => a + b, 0) !== T || batch.lengths.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new ShapeError(`trainStep: sequence lengths [${batch.lengths.join(", ")}] must be positive and sum to the ${T} ids`);
  }
  if (batch.labels.length !== T) throw new ShapeError(`trainStep: ${batch.labels.length} labels for ${T} ids`);
  for (let t = 0; t < T; t++) {
    const id = batch.ids[t]!;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new UsageError(`trainStep: token id ${id} at position ${t} is outside the vocabulary of ${c.vocabSize}`);
  }
  for (let t = 0; t < T; t++) {
    const lb = batch.labels[t]!;
    if (lb !== IGNORE_LABEL && (!Number.isInteger(lb) || lb < 0 || lb >= V)) throw new UsageError(`trainStep: label ${lb} at row ${t} is outside the vocabulary of ${V} (mask with IGNORE_LABEL)`);
  }
  if (batch.retrieval) validateContrastive(batch.retrieval, T);
  if (!opts.accumulate) model.zeroGrads();

  const step = opts.dropoutStep ?? model.steps;
  model.steps++;
  const lora = model.lora;
  const live: Tensor[] = [];
  const keep = <X extends Tensor>(t: X): X => {
    live.push(t);
    return t;
  };
  const positions = new Uint32Array(T);
  {
    let t = 0;
    for (const n of batch.lengths) for (let i = 0; i < n; i++) positions[t++] = i;
  }
  const posT = keep(ctx.upload(positions, [T], "u32", "train.positions"));
  const rowsT = keep(ctx.upload(Uint32Array.from({ length: T }, (_, i) => i), [T], "u32", "train.cache_rows"));
  const rangesT = keep(ctx.upload(packedCausalRanges(batch.lengths), [T, 2], "u32", "train.ranges"));
  const idsT = keep(ctx.upload(Uint32Array.from(batch.ids), [T], "u32", "train.ids"));

  try {
    // ---------------------------------------------------------------- forward
    const saved = Array.from({ length: c.numLayers + 1 }, () => ({ lora: new Map<LoraModule, LoraSaved>() }) as Partial<LayerSaved> & { lora: Map<LoraModule, LoraSaved> });
    const recorder: ForwardRecorder = {
      save(l: number, name: SavedActivation, t: Tensor): void {
        saved[l]![name] = keep(t);
      },
      async project(l: number, name: Projection, x: Tensor, y: Tensor): Promise<void> {
        const module = MODULE_OF[name];
        const ad = lora?.get(l, module);
        if (!ad) return;
        const salt = lora!.salt(step, l, module);
        const xd = lora!.dropout > 0 ? keep(await loraDropout(ctx, x, salt, lora!.dropout)) : x;
        const xa = keep(await linear(ctx, xd, ad.A));
        const y2 = await linear(ctx, xa, ad.B);
        await accumulateGrad(ctx, y, y2, lora!.scale);
        y2.dispose();
        saved[l]!.lora.set(module, { xd, xa, salt });
      },
    };
    const kc: Tensor[] = [];
    const vc: Tensor[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      kc.push(keep(ctx.empty([Hkv, T, hd], "f32", `train.k.${l}`)));
      vc.push(keep(ctx.empty([Hkv, T, hd], "f32", `train.v.${l}`)));
    }
    const out = await decoder.forward(new KVCache(kc, vc, T, "f32"), { ids: idsT, ropePositions: posT, cacheRows: rowsT, ranges: rangesT }, { keepHidden: true, recorder });
    const hidden = keep(out.hidden!);
    const logits = keep(out.logits!);
    const SAVED: readonly SavedActivation[] = ["x", "n1", "q", "att", "xm", "n2", "g", "u", "s"];
    for (let l = 0; l < c.numLayers; l++) {
      for (const name of SAVED) if (!saved[l]![name]) throw new ShapeError(`trainStep: the forward handed over no '${name}' of layer ${l} (Decoder.forward and ForwardRecorder disagree)`);
    }
    const x = saved[c.numLayers]!.x;
    if (!x) throw new ShapeError("trainStep: the forward handed over no final residual");
    const layers = saved.slice(0, c.numLayers).map((S, l) => ({ ...S, kc: kc[l]!, vc: vc[l]! }) as LayerSaved);

    // ---------------------------------------------------------------- losses
    const ce = await crossEntropy(ctx, logits, batch.labels, { scale: lambdaGen, ...(opts.genNormalizer !== undefined ? { normalizer: opts.genNormalizer } : {}) });
    keep(ce.loss);
    keep(ce.rowStats);
    const dHidden = keep(await linearBackwardInput(ctx, logits, w.lmHead)); // logits now hold dlogits
    const gLm = model.gradFor(w.lmHead);
    if (gLm) await linearBackwardWeight(ctx, logits, hidden, { dw: gLm, accumulate: true });

    let lossRet = 0;
    let pairs = 0;
    let pairsCorrect = 0;
    if (batch.retrieval && batch.retrieval.pairs.length > 0) {
      const spec = batch.retrieval;
      const rows = contrastiveRows(spec);
      const rowIds = keep(ctx.upload(Uint32Array.from(rows), [rows.length], "u32", "train.ret_rows"));
      const picked = keep(await embedding(ctx, rowIds, hidden));
      const E = await picked.read();
      const res = contrastiveLoss(E, rows, D, spec, opts.retNormalizer !== undefined ? { normalizer: opts.retNormalizer } : {});
      lossRet = res.loss;
      pairs = res.pairs;
      pairsCorrect = res.correct;
      const dRows = keep(ctx.upload(Float32Array.from(res.dE, (g) => g * lambdaRet), [rows.length, D], "f32", "train.ret_grad"));
      await embeddingBackward(ctx, rowIds, dRows, dHidden, { accumulate: true });
    }

    // ---------------------------------------------------------------- backward
    const dX = keep(ctx.empty([T, D], "f32", "train.dx"));
    await normBackward(model, x, w.norm, dHidden, dX, false);
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const L = w.layers[l]!;
      const S = layers[l]!;
      const F = S.g.shape[1]!;
      const dS = keep(ctx.empty([T, F], "f32", "train.ds"));
      await projBackward(model, l, "down_proj", S.s, dX, dS, false, S.lora);
      const { dgate, dup } = await swigluBackward(ctx, S.g, S.u, dS);
      keep(dgate);
      keep(dup);
      const dN2 = keep(ctx.empty([T, D], "f32", "train.dn2"));
      await projBackward(model, l, "gate_proj", S.n2, dgate, dN2, false, S.lora);
      await projBackward(model, l, "up_proj", S.n2, dup, dN2, true, S.lora);
      await normBackward(model, S.xm, L.postNorm, dN2, dX, true);
      const dAtt = keep(ctx.empty([T, H * hd], "f32", "train.datt"));
      await projBackward(model, l, "o_proj", S.att.view([T, H * hd]), dX, dAtt, false, S.lora);
      const ab = await attentionBackward(ctx, S.q.view([T, H, hd]), S.kc, S.vc, rangesT, S.att, dAtt.view([T, H, hd]));
      for (const t of [ab.dq, ab.dk, ab.dv, ab.stats]) keep(t);
      const kv = await kvAppendBackward(ctx, ab.dk, ab.dv, rowsT);
      keep(kv.dk);
      keep(kv.dv);
      await ropeBackward(ctx, ab.dq, posT, w.invFreq);
      await ropeBackward(ctx, kv.dk, posT, w.invFreq);
      const dN1 = keep(ctx.empty([T, D], "f32", "train.dn1"));
      await projBackward(model, l, "q_proj", S.n1, ab.dq.view([T, H * hd]), dN1, false, S.lora);
      await projBackward(model, l, "k_proj", S.n1, kv.dk.view([T, Hkv * hd]), dN1, true, S.lora);
      await projBackward(model, l, "v_proj", S.n1, kv.dv.view([T, Hkv * hd]), dN1, true, S.lora);
      await normBackward(model, S.x, L.inputNorm, dN1, dX, true);
    }
    const gEmb = model.gradFor(w.embed);
    if (gEmb) await embeddingBackward(ctx, idsT, dX, gEmb, { accumulate: true });

    const ceLoss = await ce.loss.read();
    const genNorm = opts.genNormalizer ?? ceLoss[1]!;
    const lossGen = genNorm > 0 ? ceLoss[2]! / genNorm : 0; // Σ row losses / normalizer, before λ_gen
    return {
      loss: lambdaGen * lossGen + lambdaRet * lossRet,
      lossGen,
      lossRet,
      genTokens: ceLoss[1]!,
      pairs,
      pairsCorrect,
      grads: model.grads(),
    };
  } finally {
    for (const t of live) t.dispose();
  }
}

/** RMSNorm backward into dx (accumulate: the residual stream's gradient already there). */
async function normBackward(model: TrainModel, x: Tensor, weight: Tensor, dy: Tensor, dx: Tensor, accumulate: boolean): Promise<void> {
  const gw = model.gradFor(weight);
  const r = await rmsnormBackward(model.ctx, x, weight, dy, model.decoder.config.rmsNormEps, {
    dx,
    accumulate,
    weightGrad: gw !== null,
    ...(gw ? { dw: gw, accumulateDw: true } : {}),
  });
  r.rstd.dispose();
}

/**
 * Backward of y = x·Wᵀ (+b) (+ s·(drop(x)·Aᵀ)·Bᵀ): dx (+)= dy·W (+ drop⁻¹(s·dy·B·A)); base
 * gradients when trainable; dA, dB when the module has an adapter.
 */
async function projBackward(model: TrainModel, l: number, module: LoraModule, x: Tensor, dy: Tensor, dx: Tensor, accumulate: boolean, saved: Map<LoraModule, LoraSaved>): Promise<void> {
  const ctx = model.ctx;
  const L = model.decoder.weights.layers[l]!;
  const field = LORA_MODULE_WEIGHTS[module].weight;
  const wt = L[field] as Tensor;
  const bias = L[`${field}Bias` as keyof LayerWeights] as Tensor | null;
  await linearBackwardInput(ctx, dy, wt, { dx, accumulate });
  const gw = model.gradFor(wt);
  if (gw) await linearBackwardWeight(ctx, dy, x, { dw: gw, accumulate: true });
  const gb = model.gradFor(bias);
  if (gb) await linearBackwardBias(ctx, dy, { db: gb, accumulate: true });
  const lora = model.lora;
  const ad = lora?.get(l, module);
  if (!ad || !lora) return;
  const sv = saved.get(module);
  if (!sv) throw new ShapeError(`trainStep: no saved LoRA input for ${moduleName(l, module)}`);
  const dys = ctx.empty(dy.shape, "f32", "lora.dy_scaled");
  const dxa = ctx.empty([...dy.shape.slice(0, -1), lora.rank], "f32", "lora.dxa");
  try {
    ctx.clear(dys);
    await accumulateGrad(ctx, dys, dy, lora.scale);
    await linearBackwardWeight(ctx, dys, sv.xa, { dw: ad.gradB, accumulate: true });
    await linearBackwardInput(ctx, dys, ad.B, { dx: dxa });
    await linearBackwardWeight(ctx, dxa, sv.xd, { dw: ad.gradA, accumulate: true });
    if (lora.dropout > 0) {
      const tmp = await linearBackwardInput(ctx, dxa, ad.A);
      await loraDropout(ctx, tmp, sv.salt, lora.dropout, { out: dx, accumulate: true });
      tmp.dispose();
    } else {
      await linearBackwardInput(ctx, dxa, ad.A, { dx, accumulate: true });
    }
  } finally {
    dys.dispose();
    dxa.dispose();
  }
}
