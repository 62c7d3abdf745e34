// From a Hugging Face model directory to a ready Decoder: config + checkpoint (src/model/checkpoint.ts),
// weights mapped onto the decoder's structure, RoPE inverse frequencies uploaded, tokenizer loaded
// when the directory has one (commands given token ids work without it).

import type { GpuContext } from "../gpu/context.js";
import { isQuantDType, type Tensor } from "../gpu/tensor.js";
import type { QuantFormat } from "../quant/formats.js";
import { UnsupportedError, UsageError } from "../errors.js";
import { loadModel, type LoadProgress } from "./checkpoint.js";
import type { ModelDir } from "../io/source.js";
import { recoverOutput } from "../io/output.js";
import { computeInvFreq, type ModelConfig } from "./config.js";
import { Decoder, HF_LAYER_FIELDS, type DecoderWeights, type LayerWeights } from "./decoder.js";
import { tryLoadTokenizer, type Tokenizer, type TokenizerOptions } from "../tokenizer.js";
import { decodeWeightLayout, gemvTiledShape } from "../ops/linear.js";
import { isQuantizedWeight } from "../quant/policy.js";

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
   * How the projection weights (q, k, v, o, gate, up, down of every layer, and an untied lm_head)
   * lie on the GPU: "rows" (row-major, as in the file; quantized: split blocks) or "tiles"
   * (lane-interleaved tiles, src/gpu/tensor.ts TilesLayout: each f32/f16 weight is transformed right
   * after its upload and the row-major copy freed, so there is one copy; q8_0/q4_0 weights, quantized
   * while loading or stored, are transformed on the host before their upload, src/quant/tiles.ts;
   * the file on disk is untouched). Every reader of those weights then reads tiles (gemv_step,
   * gemv_tiled, matmul's TILES path, gemv_q/matmul_q TILES, the embedding gathers); a tied embedding stays row-major (the
   * decode step's embed_rows reads it). Training, saving and LoRA need "rows": they refuse tiles
   * in one line. "auto": the layout measured faster for decode on this device class
   * (decodeWeightLayout in src/ops/linear.ts); the inference commands (generate, run, forward,
   * index, search, eval, demo: src/cli/model.ts loadOnDevice) load with it; `serve` still loads
   * "rows". Default "rows": a library caller that may train or save asks for "auto"/"tiles"
   * explicitly.
   */
  gemvLayout?: "auto" | "tiles" | "rows";
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
  /** The projections' layout: "rows", or "tiles (T=8)", with why when "auto" chose it. */
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
  const want = opts.gemvLayout ?? "rows";
  if (want !== "auto" && want !== "tiles" && want !== "rows") throw new UsageError(`loadDecoder: gemvLayout must be "auto", "tiles" or "rows", got '${String(want)}'`);
  const layout = want === "auto" ? decodeWeightLayout(ctx) : want;
  const T = gemvTiledShape(ctx).T;
  const loaded = await loadModel(ctx, dir, {
    dtype,
    ...(layout === "tiles" ? { tiles: { T, select: (name: string) => isQuantizedWeight(name) || name === "lm_head.weight" } } : {}),
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
  const tiled = [...w.values()].filter((t) => t.layout).length;
  const gemvLayout = tiled > 0 ? `tiles (T=${T}, ${tiled} weights)${want === "auto" ? " (auto: measured faster on this device class)" : ""}` : `rows${want === "auto" ? " (auto: measured faster on this device class)" : ""}`;
  return {
    decoder: new Decoder(ctx, c, weights),
    config: c,
    tokenizer,
    weightBytes: loaded.plan.weightBytes,
    quantization: loaded.quantization ? `${loaded.quantization.format} (stored)` : opts.quantize ? `${opts.quantize} (quantized while loading)` : null,
    unusedTensors: loaded.check.unused,
    gemvLayout,
    dispose: () => {
      for (const t of w.values()) t.dispose();
      invFreq.dispose();
    },
  };
}
