// Synthetic checkpoints for benchmarks: a Decoder built directly on the GPU for a given shape,
// without files. Weights are f16 (f32 when the device lacks shader-f16), seeded random values
// with std ≈ 0.02 (normal); RMSNorm weights are 1; RoPE inverse frequencies from the config.
//
// Generating 10^9 random halves on the host would take minutes, so one block of RANDOM_BLOCK
// values is generated once per seed and tiled into every weight tensor (with a per-tensor start
// offset, and a block length that is not a power of two so consecutive rows differ). The values
// are only meant to be sane for timing (finite activations, no NaN); they model no language.

import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { Decoder, type DecoderWeights, type LayerWeights } from "../src/model/decoder.js";
import type { DocumentIndex } from "../src/onegen/index.js";
import { computeInvFreq, parameterCount, parseModelConfig, type ModelConfig } from "../src/model/config.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { isQuantDType } from "../src/gpu/tensor.js";
import { toTilesLayout } from "../src/ops/linear.js";

/** Random values generated on the host per seed: 2 Mi + 1994 (even, so f16 writes stay 4-byte aligned). */
const RANDOM_BLOCK = (1 << 21) + 1994;
/** Weight standard deviation (Llama initialiser_range). */
const WEIGHT_STD = 0.02;

/** Named shapes: config.json fields of real models (or cut-down stacks of them). */
export const SYNTHETIC_SHAPES = {
  /** Llama-2-7B: full width and vocabulary, 4 of its 32 layers. */
  "llama2-7b-4layers": { hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 4, vocab_size: 32000, rms_norm_eps: 1e-5, max_position_embeddings: 4096 },
  /**
   * OneGen-EntityLinking-Llama2-7B (zjunlp/OneGen): Llama-2-7B, all 32 layers, its vocabulary of
   * 32,000 plus OneGen's 3 added tokens [_CONTINUE_], [SE], [LK] (ids 32000-32002).
   */
  "onegen-el-llama2-7b": { hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 32, vocab_size: 32003, rms_norm_eps: 1e-5, max_position_embeddings: 4096 },
  /** The same vocabulary (Llama-2 + OneGen's 3 tokens) on a 2-layer, D 256 stack (intermediate 704: rows of whole 32-weight blocks, so it quantizes): quick checks of the 7B path. */
  "onegen-el-tiny": { hidden_size: 256, intermediate_size: 704, num_attention_heads: 4, num_key_value_heads: 4, num_hidden_layers: 2, vocab_size: 32003, rms_norm_eps: 1e-5, max_position_embeddings: 4096 },
  /** TinyLlama-1.1B (GQA 32/4), the full 22-layer stack. */
  "tinyllama-1.1b": { hidden_size: 2048, intermediate_size: 5632, num_attention_heads: 32, num_key_value_heads: 4, num_hidden_layers: 22, vocab_size: 32000, rms_norm_eps: 1e-5, max_position_embeddings: 2048 },
  /** A ~134M-parameter Llama (untied lm_head): the llama.cpp comparison point. */
  "llama-134m": { hidden_size: 768, intermediate_size: 2048, num_attention_heads: 12, num_key_value_heads: 12, num_hidden_layers: 12, vocab_size: 32000, rms_norm_eps: 1e-5, max_position_embeddings: 2048 },
  /** Quick-mode smoke shape (GQA, 2 layers, small vocabulary). */
  tiny: { hidden_size: 256, intermediate_size: 688, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 2048, rms_norm_eps: 1e-5, max_position_embeddings: 512 },
  /** `tiny` with a 4,096-position context: the OneGen loop benchmark (contexts up to 4,096). */
  "tiny-4k": { hidden_size: 256, intermediate_size: 688, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 2048, rms_norm_eps: 1e-5, max_position_embeddings: 4096 },
} as const;

export type SyntheticShapeName = keyof typeof SYNTHETIC_SHAPES;

/** The ModelConfig of a named synthetic shape (parsed like a real config.json). */
export function syntheticConfig(name: SyntheticShapeName, opts: { layers?: number } = {}): ModelConfig {
  const s = { ...SYNTHETIC_SHAPES[name], ...(opts.layers !== undefined ? { num_hidden_layers: opts.layers } : {}) };
  return parseModelConfig({ architectures: ["LlamaForCausalLM"], model_type: "llama", tie_word_embeddings: false, rope_theta: 10000, ...s }, null, `synthetic:${name}`);
}

export interface SyntheticModel {
  name: string;
  decoder: Decoder;
  config: ModelConfig;
  /** Parameters (tied embeddings once). */
  params: number;
  /** GPU bytes of all weight tensors. */
  weightBytes: number;
  /** Bytes of the weights one decode token reads: every layer matrix, the norms, lm_head and one embedding row. */
  decodeWeightBytes: number;
  /** Host milliseconds to allocate and fill the weights (uploads complete). */
  buildMs: number;
  dispose(): void;
}

/** Builds a decoder of `config` with seeded random f16 weights, directly on the GPU. */
export async function buildSyntheticDecoder(ctx: GpuContext, config: ModelConfig, opts: { seed?: number; name?: string } = {}): Promise<SyntheticModel> {
  const t0 = performance.now();
  const dtype = ctx.hasF16 ? "f16" : "f32";
  const rng = new Rng(opts.seed ?? 1234);
  const block32 = rng.fillNormal(RANDOM_BLOCK, WEIGHT_STD);
  const block: Float32Array | Uint16Array = dtype === "f16" ? f32ArrayToF16(block32) : block32;
  const ones: Float32Array | Uint16Array = dtype === "f16" ? f32ArrayToF16(new Float32Array(config.hiddenSize).fill(1)) : new Float32Array(config.hiddenSize).fill(1);
  const all: Tensor[] = [];
  let tensorIndex = 0;

  const randomTensor = (shape: number[], label: string): Tensor => {
    const t = ctx.empty(shape, dtype, label);
    all.push(t);
    // Start each tensor at a different (even) place in the block.
    let src = (tensorIndex++ * 7919 * 2) % RANDOM_BLOCK;
    for (let off = 0; off < t.numel; ) {
      const n = Math.min(RANDOM_BLOCK - src, t.numel - off);
      ctx.write(t, block.subarray(src, src + n), off);
      off += n;
      src = 0;
    }
    return t;
  };
  const normTensor = (label: string): Tensor => {
    const t = ctx.upload(ones, [config.hiddenSize], dtype, label);
    all.push(t);
    return t;
  };

  const D = config.hiddenSize, I = config.intermediateSize;
  const q = config.numHeads * config.headDim, kv = config.numKvHeads * config.headDim;
  const embed = randomTensor([config.vocabSize, D], "model.embed_tokens.weight");
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      inputNorm: normTensor(`${p}input_layernorm.weight`),
      q: randomTensor([q, D], `${p}self_attn.q_proj.weight`),
      k: randomTensor([kv, D], `${p}self_attn.k_proj.weight`),
      v: randomTensor([kv, D], `${p}self_attn.v_proj.weight`),
      qBias: null,
      kBias: null,
      vBias: null,
      o: randomTensor([D, q], `${p}self_attn.o_proj.weight`),
      oBias: null,
      postNorm: normTensor(`${p}post_attention_layernorm.weight`),
      gate: randomTensor([I, D], `${p}mlp.gate_proj.weight`),
      gateBias: null,
      up: randomTensor([I, D], `${p}mlp.up_proj.weight`),
      upBias: null,
      down: randomTensor([D, I], `${p}mlp.down_proj.weight`),
      downBias: null,
    });
    // Let each layer's uploads drain so the host does not queue gigabytes of staging copies.
    await ctx.sync();
  }
  const norm = normTensor("model.norm.weight");
  const lmHead = config.tieWordEmbeddings ? embed : randomTensor([config.vocabSize, D], "lm_head.weight");
  const invFreq = ctx.upload(computeInvFreq(config), [config.headDim / 2], "f32", "rope.inv_freq");
  await ctx.sync();

  const weights: DecoderWeights = { embed, layers, norm, lmHead, invFreq };
  const weightBytes = all.reduce((s, t) => s + t.byteLength, 0) + invFreq.byteLength;
  const eb = dtype === "f16" ? 2 : 4;
  const layerBytes = layers.reduce((s, L) => s + [L.q, L.k, L.v, L.o, L.gate, L.up, L.down, L.inputNorm, L.postNorm].reduce((a, t) => a + t.byteLength, 0), 0);
  const decodeWeightBytes = layerBytes + norm.byteLength + lmHead.byteLength + D * eb;
  return {
    name: opts.name ?? "synthetic",
    decoder: new Decoder(ctx, config, weights),
    config,
    params: parameterCount(config),
    weightBytes,
    decodeWeightBytes,
    buildMs: performance.now() - t0,
    dispose: () => {
      for (const t of all) t.dispose();
      invFreq.dispose();
    },
  };
}

/**
 * A second decoder over `m`'s weights with the projections (and an untied lm_head) in the tiles
 * layout of T rows (src/gpu/tensor.ts TilesLayout: what loadDecoder's gemvLayout 'tiles' gives),
 * for layout A/B benches: both layouts are held at once (loadDecoder holds one); norms, embedding
 * and biases are shared. dispose() frees the tiles only.
 */
export async function tiledDecoder(ctx: GpuContext, m: SyntheticModel, T: number): Promise<{ decoder: Decoder; dispose(): void }> {
  const w = m.decoder.weights;
  const made: Tensor[] = [];
  const tile = async (t: Tensor): Promise<Tensor> => {
    if (isQuantDType(t.dtype)) return t;
    const u = await toTilesLayout(ctx, t, T);
    made.push(u);
    return u;
  };
  try {
    const layers: LayerWeights[] = [];
    for (const L of w.layers) layers.push({ ...L, q: await tile(L.q), k: await tile(L.k), v: await tile(L.v), o: await tile(L.o), gate: await tile(L.gate), up: await tile(L.up), down: await tile(L.down) });
    const lmHead = w.lmHead === w.embed ? w.lmHead : await tile(w.lmHead);
    return { decoder: new Decoder(ctx, m.config, { ...w, layers, lmHead }), dispose: () => made.forEach((t) => t.dispose()) };
  } catch (e) {
    made.forEach((t) => t.dispose());
    throw e;
  }
}

/** A named synthetic shape on the GPU. */
export async function buildSynthetic(ctx: GpuContext, name: SyntheticShapeName, seed = 1234): Promise<SyntheticModel> {
  return buildSyntheticDecoder(ctx, syntheticConfig(name), { seed, name });
}

/** Rows in the host block of random index vectors (prime, so tiled chunks start at varying rows). */
const INDEX_BLOCK_ROWS = 16411;

export interface SyntheticIndexOptions {
  seed?: number;
  /** Entries (fragments) per document (default 64): documents are added in runs of this many entries. */
  entriesPerDocument?: number;
  /** Tokens per document (default 16), drawn uniformly from [tokenLow, tokenHigh). */
  documentTokens?: number;
  tokenLow?: number;
  tokenHigh?: number;
  /** Rows uploaded per appendEntries call (default 16384). */
  chunkRows?: number;
}

/**
 * Grows `index` to `entries` entries of random (normal, then L2-normalized on the GPU) vectors,
 * through its public API: addDocument (short random token documents, ids "syn-<n>") and
 * appendEntries (f32 rows uploaded in chunks). As with the weights, one host block of
 * INDEX_BLOCK_ROWS random rows is generated per seed and tiled (each chunk starting at a different
 * row), so an index of 10^6 entries holds repeated vectors: search ties break towards the lower
 * entry, which the GPU kernel and the CPU reference both do. Returns the host milliseconds spent
 * (uploads complete).
 */
export async function fillSyntheticIndex(index: DocumentIndex, entries: number, opts: SyntheticIndexOptions = {}): Promise<number> {
  const t0 = performance.now();
  const ctx = index.ctx;
  const D = index.dim;
  const per = opts.entriesPerDocument ?? 64;
  const docLen = opts.documentTokens ?? 16;
  const lo = opts.tokenLow ?? 0;
  const hi = opts.tokenHigh ?? 1000;
  const chunkRows = opts.chunkRows ?? 16384;
  const rng = new Rng((opts.seed ?? 4321) + index.count);
  const block = rng.fillNormal(INDEX_BLOCK_ROWS * D, 1);
  const need = entries - index.count;
  if (need <= 0) return 0;
  // Every call starts new documents (a document's entries must be contiguous and last).
  let owed = 0;
  let curDoc = -1;
  index.reserve(entries, index.totalTokens + Math.ceil(need / per + 1) * docLen, index.documentCount + Math.ceil(need / per) + 1);
  const chunk = ctx.empty([Math.min(chunkRows, need), D], "f32", "synthetic.index_rows");
  let src = (index.count * 7919) % INDEX_BLOCK_ROWS;
  try {
    for (let done = 0; done < need; ) {
      const m = Math.min(chunkRows, need - done);
      const rows = m === chunk.shape[0] ? chunk : ctx.empty([m, D], "f32", "synthetic.index_tail");
      for (let off = 0; off < m; ) {
        const n = Math.min(INDEX_BLOCK_ROWS - src, m - off);
        ctx.write(rows, block.subarray(src * D, (src + n) * D), off * D);
        off += n;
        src = (src + n) % INDEX_BLOCK_ROWS;
      }
      const owners = new Array<number>(m);
      for (let r = 0; r < m; r++) {
        if (owed === 0) {
          const toks = Array.from({ length: docLen }, () => lo + rng.int(hi - lo));
          curDoc = index.addDocument(`syn-${index.documentCount}`, toks);
          owed = per;
        }
        owners[r] = curDoc;
        owed--;
      }
      await index.appendEntries(rows, owners);
      ctx.submit();
      await ctx.sync();
      if (rows !== chunk) rows.dispose();
      done += m;
    }
  } finally {
    chunk.dispose();
  }
  return performance.now() - t0;
}
