// The Llama-family decoder (Llama-2/3.x, Qwen2, Mistral) on the kernels in src/ops/.
//
// One forward over T new tokens, all f32 activations, weights f16 or f32:
//   r = embed[ids]                                            residual stream [T, D]
//   per layer l:
//     n = rmsnorm(r, ln1)            (layers > 0: fused with r += mlp_out)
//     q, k, v = n·Wqᵀ(+bq), n·Wkᵀ(+bk), n·Wvᵀ(+bv)            [T, H·hd], [T, Hkv·hd]
//     rope(q, k at ropePositions); kv cache rows cacheRows ← k, v
//     a = attention(q, K, V, ranges)                          query t sees cache rows ranges[t]
//     n = rmsnorm(a·Woᵀ, ln2) with r += a·Woᵀ
//     mlp_out = (silu(n·Wgᵀ) ⊙ n·Wuᵀ)·Wdᵀ
//   hidden = rmsnorm(mlp_out, norm) with r += mlp_out         the OneGen embedding
//   logits = hidden[rows]·lm_headᵀ                            (lm_head = embed when tied)
// Every temporary comes from the context's buffer pool and is released in the same call, so a
// decode loop allocates nothing after warm-up. Nothing is read back here.
// Training runs this same forward with a ForwardRecorder (src/train/model.ts): it is handed the
// activations the backward needs instead of their release, and may add to each projection's
// output (LoRA). Without a recorder the forward is the inference forward, dispatch for dispatch.

import type { GpuContext } from "../gpu/context.js";
import { DTYPE_BYTES, type DType, type Tensor } from "../gpu/tensor.js";
import { GpuOutOfMemoryError, ShapeError, UnsupportedError } from "../errors.js";
import { kvCacheBytes, type ModelConfig } from "./config.js";
import { embedding } from "../ops/embedding.js";
import { rmsnorm } from "../ops/rmsnorm.js";
import { linear } from "../ops/linear.js";
import { rope } from "../ops/rope.js";
import { attention, kvAppend } from "../ops/attention.js";
import { swiglu } from "../ops/swiglu.js";

export interface LayerWeights {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  qBias: Tensor | null;
  kBias: Tensor | null;
  vBias: Tensor | null;
  o: Tensor;
  oBias: Tensor | null;
  postNorm: Tensor;
  gate: Tensor;
  gateBias: Tensor | null;
  up: Tensor;
  upBias: Tensor | null;
  down: Tensor;
  downBias: Tensor | null;
}

/** LayerWeights fields and their Hugging Face tensor names (after `model.layers.N.`); biases only when present. */
export const HF_LAYER_FIELDS: readonly [keyof LayerWeights, string][] = [
  ["inputNorm", "input_layernorm.weight"],
  ["q", "self_attn.q_proj.weight"],
  ["qBias", "self_attn.q_proj.bias"],
  ["k", "self_attn.k_proj.weight"],
  ["kBias", "self_attn.k_proj.bias"],
  ["v", "self_attn.v_proj.weight"],
  ["vBias", "self_attn.v_proj.bias"],
  ["o", "self_attn.o_proj.weight"],
  ["oBias", "self_attn.o_proj.bias"],
  ["postNorm", "post_attention_layernorm.weight"],
  ["gate", "mlp.gate_proj.weight"],
  ["gateBias", "mlp.gate_proj.bias"],
  ["up", "mlp.up_proj.weight"],
  ["upBias", "mlp.up_proj.bias"],
  ["down", "mlp.down_proj.weight"],
  ["downBias", "mlp.down_proj.bias"],
];

export interface DecoderWeights {
  embed: Tensor;
  layers: LayerWeights[];
  norm: Tensor;
  /** The output projection; the same tensor as `embed` when embeddings are tied. */
  lmHead: Tensor;
  /** RoPE inverse frequencies [hd/2] f32, from computeInvFreq(config). */
  invFreq: Tensor;
}

/** Per-layer K and V caches, [Hkv, capacity, hd] each. */
export class KVCache {
  constructor(
    readonly k: Tensor[],
    readonly v: Tensor[],
    readonly capacity: number,
    readonly dtype: DType,
  ) {}
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
  get bytes(): number {
    return this.k.reduce((s, t) => s + t.byteLength, 0) * 2;
  }
}

/** Where the T new tokens go: all u32 GPU tensors, so a decode step needs no host data. */
export interface ForwardPlan {
  /** Token ids [T]. */
  ids: Tensor;
  /** RoPE position of each token [T] (position within its own sequence). */
  ropePositions: Tensor;
  /** Cache row each token's k/v is written to [T] (equal to ropePositions for one sequence). */
  cacheRows: Tensor;
  /** Cache rows each token attends to, [T, 2] = [start, end) (causal: end = own row + 1). */
  ranges: Tensor;
}

export interface ForwardOutputs {
  /** Final-norm hidden states of all T tokens [T, D] (pass `keepHidden`). */
  hidden: Tensor | null;
  /** Logits [n, V] for the selected rows (or all T rows). */
  logits: Tensor | null;
}

export interface ForwardOptions {
  /** Which token rows get logits: "all", "none", or a u32 tensor of row indices [n]. Default "all". */
  logitsRows?: "all" | "none" | Tensor;
  /** Keep the [T, D] final-norm hidden states (the OneGen embeddings) in the output. */
  keepHidden?: boolean;
  /** Write the logits into this tensor instead of a new one. */
  logitsOut?: Tensor;
  /** Training: receives the activations the backward needs and may extend the projections. */
  recorder?: ForwardRecorder;
}

/** A layer's projections, by their LayerWeights field (the bias is the field + "Bias"). */
export type Projection = "q" | "k" | "v" | "o" | "gate" | "up" | "down";

/**
 * Per-layer activations a recording forward hands over, [T, ·] f32 each:
 *   x   the residual stream entering the layer (layer = numLayers: entering the final norm)
 *   n1  rmsnorm(x)·ln1          q    n1·Wqᵀ after RoPE [T, H·hd]   att  attention output [T, H, hd]
 *   xm  x + att·Woᵀ             n2   rmsnorm(xm)·ln2
 *   g, u  n2·Wgᵀ, n2·Wuᵀ        s    silu(g) ⊙ u
 * The keys and values are the KV cache the caller passed (cache.k[l], cache.v[l]).
 */
export type SavedActivation = "x" | "n1" | "q" | "att" | "xm" | "n2" | "g" | "u" | "s";

/**
 * The training side of Decoder.forward (llm.c's one gpt2_forward for inference and training):
 * `save` takes ownership of an activation the forward would otherwise release (the caller
 * disposes it); `project`, when present, runs after y = x·Wᵀ (+b) of every projection and may
 * add into y in place (LoRA: y += s·(drop(x)·Aᵀ)·Bᵀ). x is valid until the forward returns.
 */
export interface ForwardRecorder {
  save(layer: number, name: SavedActivation, t: Tensor): void;
  project?(layer: number, name: Projection, x: Tensor, y: Tensor): Promise<void>;
}

export class Decoder {
  constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    readonly weights: DecoderWeights,
  ) {}

  get hiddenSize(): number {
    return this.config.hiddenSize;
  }
  get vocabSize(): number {
    return this.weights.lmHead.shape[0]!;
  }

  /** A KV cache of `capacity` positions; f16 by default on every device (packed pairs without shader-f16). */
  createCache(capacity: number, dtype: DType = "f16"): KVCache {
    const c = this.config;
    if (!Number.isInteger(capacity) || capacity <= 0) throw new ShapeError(`KV cache capacity must be a positive integer, got ${capacity}`);
    // attention binds each layer's K and V cache whole (src/ops/attention.ts checkBinding).
    const perLayer = c.numKvHeads * capacity * c.headDim * DTYPE_BYTES[dtype];
    if (perLayer > this.ctx.limits.maxStorageBufferBindingSize) {
      throw new UnsupportedError(
        `a KV cache of ${capacity} rows takes ${perLayer} bytes per layer for K (and as many for V), over this device's storage binding limit of ${this.ctx.limits.maxStorageBufferBindingSize} bytes (attention binds a layer's cache whole); nothing was allocated`,
        "shorten the context (--context) or use an f16 cache",
      );
    }
    // All layers at once against the budget: refusing at layer l would strand layers 0..l-1.
    const bytes = kvCacheBytes(c, capacity, DTYPE_BYTES[dtype]);
    if (bytes > this.ctx.memoryAvailable) {
      throw new GpuOutOfMemoryError(
        `a KV cache of ${capacity} rows needs ${bytes} bytes (K and V, ${c.numLayers} layers × ${c.numKvHeads} heads × ${c.headDim} × ${dtype}), ` +
          `more than the ${this.ctx.memoryAvailable} bytes left of the GPU memory budget of ${this.ctx.memoryBudget.bytes} (${this.ctx.memoryBudget.source}); nothing was allocated`,
        "shorten the context (--context) or the input, or raise the budget with --gpu-memory SIZE",
      );
    }
    const k: Tensor[] = [];
    const v: Tensor[] = [];
    try {
      for (let l = 0; l < c.numLayers; l++) {
        k.push(this.ctx.empty([c.numKvHeads, capacity, c.headDim], dtype, `kcache.${l}`));
        v.push(this.ctx.empty([c.numKvHeads, capacity, c.headDim], dtype, `vcache.${l}`));
      }
    } catch (e) {
      for (const t of [...k, ...v]) t.dispose();
      throw e;
    }
    return new KVCache(k, v, capacity, dtype);
  }

  /** Encodes one forward pass over plan.ids (nothing is submitted or read back). */
  async forward(cache: KVCache, plan: ForwardPlan, opts: ForwardOptions = {}): Promise<ForwardOutputs> {
    const { ctx, config: c, weights: w } = this;
    const rec = opts.recorder;
    const T = plan.ids.numel;
    if (T === 0) throw new ShapeError("forward: no tokens");
    const H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
    let l = 0;
    // An activation the forward is done with: released, or handed to the recorder.
    const done = (name: SavedActivation, t: Tensor): void => (rec ? rec.save(l, name, t) : t.dispose());
    const project = async (name: Projection, x: Tensor): Promise<Tensor> => {
      const L = w.layers[l]!;
      const y = await linear(ctx, x, L[name], { bias: L[`${name}Bias`] ?? undefined });
      if (rec?.project) await rec.project(l, name, x, y);
      return y;
    };
    let resid = await embedding(ctx, plan.ids, w.embed);
    // r += block, then rmsnorm(r)·weight. Inference updates the stream in place; a recording forward
    // keeps the state it supersedes (`was`), so the sum goes into block's buffer instead (x + b and
    // b + x are the same f32 sum, so both give the same bits).
    const addNorm = async (block: Tensor, weight: Tensor, was: SavedActivation, wasLayer: number): Promise<Tensor> => {
      if (!rec) {
        const n = await rmsnorm(ctx, block, weight, c.rmsNormEps, { residual: resid });
        block.dispose();
        return n;
      }
      const n = await rmsnorm(ctx, resid, weight, c.rmsNormEps, { residual: block });
      rec.save(wasLayer, was, resid);
      resid = block;
      return n;
    };
    let pending: Tensor | null = null; // the block output still to be added to the residual stream
    for (l = 0; l < c.numLayers; l++) {
      const L = w.layers[l]!;
      const n1: Tensor = pending ? await addNorm(pending, L.inputNorm, "xm", l - 1) : await rmsnorm(ctx, resid, L.inputNorm, c.rmsNormEps);
      const q = await project("q", n1);
      const k = await project("k", n1);
      const v = await project("v", n1);
      done("n1", n1);
      const q3 = q.view([T, H, hd]);
      const k3 = k.view([T, Hkv, hd]);
      await rope(ctx, q3, plan.ropePositions, w.invFreq);
      await rope(ctx, k3, plan.ropePositions, w.invFreq);
      await kvAppend(ctx, k3, v.view([T, Hkv, hd]), cache.k[l]!, cache.v[l]!, plan.cacheRows);
      k.dispose();
      v.dispose();
      const att = await attention(ctx, q3, cache.k[l]!, cache.v[l]!, plan.ranges);
      done("q", q);
      const o = await project("o", att.view([T, H * hd]));
      done("att", att);
      const n2 = await addNorm(o, L.postNorm, "x", l);
      const g = await project("gate", n2);
      const u = await project("up", n2);
      done("n2", n2);
      const s = await swiglu(ctx, g, u);
      done("g", g);
      done("u", u);
      pending = await project("down", s);
      done("s", s);
    }
    const hidden = await addNorm(pending!, w.norm, "xm", c.numLayers - 1);
    if (rec) rec.save(c.numLayers, "x", resid);
    else resid.dispose();

    let logits: Tensor | null = null;
    const rows = opts.logitsRows ?? "all";
    if (rows === "all") {
      logits = await linear(ctx, hidden, w.lmHead, { out: opts.logitsOut });
    } else if (rows !== "none") {
      const picked = await embedding(ctx, rows, hidden); // gather rows of an f32 table
      logits = await linear(ctx, picked, w.lmHead, { out: opts.logitsOut });
      picked.dispose();
    }
    if (!opts.keepHidden) {
      hidden.dispose();
      return { hidden: null, logits };
    }
    return { hidden, logits };
  }
}
