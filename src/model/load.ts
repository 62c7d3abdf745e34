// From a Hugging Face model directory to a ready Decoder: config + checkpoint (src/model/checkpoint.ts),
// weights mapped onto the decoder's structure, RoPE inverse frequencies uploaded, tokenizer loaded
// when the directory has one (commands given token ids work without it).

import type { GpuContext } from "../gpu/context.js";
import { isQuantDType, type Tensor } from "../gpu/tensor.js";
import type { QuantFormat } from "../quant/formats.js";
import { UnsupportedError } from "../errors.js";
import { loadModel, type LoadProgress } from "./checkpoint.js";
import type { ModelDir } from "../io/source.js";
import { recoverOutput } from "../io/output.js";
import { computeInvFreq, type ModelConfig } from "./config.js";
import { Decoder, HF_LAYER_FIELDS, type DecoderWeights, type LayerWeights } from "./decoder.js";
import { tryLoadTokenizer, type Tokenizer, type TokenizerOptions } from "../tokenizer.js";
import { gemvPackBytes, gemvTiledPreferred, gemvTiledShape, packGemvWeight, releaseGemvPack } from "../ops/linear.js";

export interface LoadDecoderOptions {
  /** Float weights on the GPU: "auto" (F32 stays f32, F16/BF16 become f16), or force "f16"/"f32". */
  dtype?: "auto" | "f16" | "f32";
  /**
   * Quantize the decoder layers' projection weights while loading (GGUF Q8_0 / Q4_0 blocks, host
   * per tensor; src/quant/policy.ts says which tensors and why). Embeddings, norms, biases and
   * lm_head stay as `dtype` says. A directory saved quantized (`onegen quantize`) loads as stored
   * without this option; giving another format for it is refused.
   */
  quantize?: QuantFormat;
  /** Context length the caller plans to use (added to the memory plan). */
  contextLength?: number;
  /** Refuse to load when weights + KV cache (+ reserve) exceed this many bytes (default: the context's budget). */
  budgetBytes?: number;
  /** GPU memory the caller will add after loading (e.g. an index), planned with the weights. */
  reserve?: readonly { what: string; bytes: number }[];
  onProgress?: (p: LoadProgress) => void;
  /** Skip the tokenizer even if the directory has one. */
  noTokenizer?: boolean;
  tokenizer?: TokenizerOptions;
  /**
   * Decode's GEMV weight layout (src/ops/linear.ts): "rows" (default) makes no copies; "auto" makes
   * tiled copies of the projection weights where gemv_tiled measured faster (gemvTiledPreferred)
   * and the memory budget has room for them; "tiled" always (refused when over budget). Not the
   * default yet: on lavapipe (2026-12-02, loaded 2-core machine) gemv_tiled won on lm_head-sized
   * matrices (×1.4–2.8) and decode of the 134M shape (×1.43) but lost on 768×2048 and 2048×2048
   * (×0.78–0.83) and tied on TinyLlama (×1.02), while its copies are not yet in the memory plan
   * (MemoryPlan / onegen info): a per-shape choice counted in the plan comes first. The row-major
   * weights stay (prefill, training, LoRA merge and saving read them), so the copies are extra
   * bytes (LoadedDecoder.gemvLayout says how many). Code that changes a weight in place releases its
   * copy first (releaseGemvPack; TrainModel and AdamW do).
   */
  gemvLayout?: "auto" | "tiled" | "rows";
}

export interface LoadedDecoder {
  decoder: Decoder;
  config: ModelConfig;
  tokenizer: Tokenizer | null;
  /** GPU bytes of the weights (quantized weights at their packed size). */
  weightBytes: number;
  /** The projections' block format: "q4_0 (quantized while loading)", "q8_0 (stored)", or null (float). */
  quantization: string | null;
  /**
   * Checkpoint tensors this architecture does not use (not uploaded), e.g. an old checkpoint's
   * rotary_emb.inv_freq or a head another model added. Reported, never silently dropped: the CLI
   * prints them as a warning line; an API caller decides.
   */
  unusedTensors: readonly string[];
  /** What decode's GEMV reads: "rows", or "tiled (N MiB of copies)", or "rows (why not tiled)". */
  gemvLayout: string;
  /** Frees every weight tensor. */
  dispose(): void;
}

export async function loadDecoder(ctx: GpuContext, dir: string | ModelDir, opts: LoadDecoderOptions = {}): Promise<LoadedDecoder> {
  const dtype = opts.dtype ?? "auto";
  // A model directory this project wrote may have been left aside by a save interrupted while
  // swapping directories (src/io/output.ts): put it back before reading.
  if (typeof dir === "string") await recoverOutput(dir);
  // f16 weights need no shader-f16: every kernel that reads them has a packed-pairs path.
  const loaded = await loadModel(ctx, dir, {
    dtype,
    ...(opts.quantize !== undefined ? { quantize: opts.quantize } : {}),
    ...(opts.contextLength !== undefined ? { contextLength: opts.contextLength } : {}),
    ...(opts.budgetBytes !== undefined ? { budgetBytes: opts.budgetBytes } : {}),
    ...(opts.reserve !== undefined ? { reserve: opts.reserve } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  const c = loaded.config;
  if (c.architecture === "Qwen2ForCausalLM" && c.slidingWindow !== null && (c.maxWindowLayers ?? 0) < c.numLayers) {
    throw new UnsupportedError(`Qwen2 with per-layer sliding-window attention (use_sliding_window, max_window_layers ${c.maxWindowLayers}) is not supported`);
  }
  const w = loaded.weights;
  const get = (name: string): Tensor => {
    const t = w.get(name);
    if (!t) throw new UnsupportedError(`weight '${name}' was not loaded`);
    return t;
  };
  const opt = (name: string): Tensor | null => w.get(name) ?? null;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const layer: Partial<Record<keyof LayerWeights, Tensor | null>> = {};
    for (const [field, name] of HF_LAYER_FIELDS) {
      const full = `model.layers.${l}.${name}`;
      layer[field] = name.endsWith(".bias") ? opt(full) : get(full); // biases are optional, weights are not
    }
    layers.push(layer as LayerWeights);
  }
  const embed = get("model.embed_tokens.weight");
  const invFreq = ctx.upload(computeInvFreq(c), [c.headDim / 2], "f32", "rope.inv_freq");
  const weights: DecoderWeights = {
    embed,
    layers,
    norm: get("model.norm.weight"),
    lmHead: c.tieWordEmbeddings ? embed : get("lm_head.weight"),
    invFreq,
  };
  const tokenizer = opts.noTokenizer ? null : await tryLoadTokenizer(dir, opts.tokenizer ?? {});
  // Tiled GEMV copies exist for float weights only (quantized ones are read in their blocks).
  const projections = [...new Set([...layers.flatMap((L) => [L.q, L.k, L.v, L.o, L.gate, L.up, L.down]), weights.lmHead])].filter((t) => !isQuantDType(t.dtype));
  let gemvLayout: string;
  try {
    gemvLayout = await packProjections(ctx, projections, opts.gemvLayout ?? "rows");
  } catch (e) {
    for (const t of projections) releaseGemvPack(t);
    for (const t of w.values()) t.dispose();
    invFreq.dispose();
    throw e;
  }
  return {
    decoder: new Decoder(ctx, c, weights),
    config: c,
    tokenizer,
    weightBytes: loaded.plan.weightBytes,
    quantization: loaded.quantization ? `${loaded.quantization.format} (stored)` : opts.quantize ? `${opts.quantize} (quantized while loading)` : null,
    unusedTensors: loaded.check.unused,
    gemvLayout,
    dispose: () => {
      for (const t of projections) releaseGemvPack(t);
      for (const t of w.values()) t.dispose();
      invFreq.dispose();
    },
  };
}

/** Makes the tiled GEMV copies of `projections` per LoadDecoderOptions.gemvLayout; returns the layout's description. */
async function packProjections(ctx: GpuContext, projections: readonly Tensor[], layout: "auto" | "tiled" | "rows"): Promise<string> {
  if (layout === "rows") return "rows";
  if (layout === "auto" && !gemvTiledPreferred(ctx)) return "rows (gemv_tiled not measured faster on this device class)";
  const { T } = gemvTiledShape(ctx);
  const bytes = projections.reduce((a, t) => a + gemvPackBytes(t.shape[0]!, t.shape[1]!, t.dtype as "f32" | "f16", T), 0);
  const MiB = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes > ctx.memoryAvailable) {
    const why = `tiled GEMV copies need ${MiB(bytes)}, ${MiB(ctx.memoryAvailable)} left of the GPU memory budget (${ctx.memoryBudget.source})`;
    if (layout === "tiled") throw new UnsupportedError(`loadDecoder: ${why}`, "load with gemvLayout 'rows' or raise the budget");
    return `rows (${why})`;
  }
  for (const t of projections) await packGemvWeight(ctx, t);
  return `tiled (${MiB(bytes)} of copies beside the row-major weights)`;
}
