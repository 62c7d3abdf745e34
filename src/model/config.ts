// Model configuration from a Hugging Face config.json (+ generation_config.json), the tensors a
// checkpoint of that configuration must hold, and the RoPE inverse frequencies.
//
// Supported: LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM (pre-norm decoder, RMSNorm,
// SwiGLU MLP, grouped-query attention, RoPE). Both RoPE layouts are read:
//   older (transformers ≤ 4.x):  "rope_theta": 1e4, "rope_scaling": {"type"|"rope_type": ..., "factor": ...} | null
//   newer (transformers 5):      "rope_parameters": {"rope_type": ..., "rope_theta": ..., "factor": ...}
// Unsupported architectures and RoPE types (dynamic, yarn, longrope, ...) are refused by name.
//
// Dimension names: D hidden, I intermediate, L layers, H heads, Hkv kv heads, hd head dim, V vocab.

import { LoadError, ShapeError, UnsupportedError } from "../errors.js";

export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export type RopeScaling =
  | { type: "none" }
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface ModelConfig {
  architecture: Architecture;
  /** config.json's model_type ("llama", "qwen2", "mistral"). */
  modelType: string;
  hiddenSize: number; // D
  intermediateSize: number; // I
  numLayers: number; // L
  numHeads: number; // H
  numKvHeads: number; // Hkv
  headDim: number; // hd
  rmsNormEps: number;
  vocabSize: number; // V
  tieWordEmbeddings: boolean;
  /** q/k/v projections have biases (Qwen2 always; Llama when attention_bias). */
  attentionBias: boolean;
  /** o_proj has a bias (Llama with attention_bias). */
  attentionOutputBias: boolean;
  /** gate/up/down projections have biases (Llama mlp_bias). */
  mlpBias: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  /** generation_config.json's ids first, then config.json's; no duplicates. */
  eosTokenIds: number[];
  padTokenId: number | null;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Sliding-window attention span in tokens, when the model uses it (Mistral; Qwen2 with use_sliding_window). */
  slidingWindow: number | null;
  /** Qwen2: layers ≥ this index use the sliding window (HF's max_window_layers). */
  maxWindowLayers: number | null;
  /** The checkpoint's declared dtype (torch_dtype / dtype), e.g. "bfloat16"; informational. */
  torchDtype: string | null;
}

type Json = Record<string, unknown>;

/**
 * Upper bounds on config.json's sizes, checked before anything is sized by them (tensor name
 * lists, KV caches, kernels). Generous next to real models (Llama-3.1-405B: D 16384, I 53248,
 * L 126, H 128, V 128256; Llama 4 Scout: 10M positions); their reasons:
 *   layers ≤ 1024, heads ≤ 1024, head_dim ≤ 1024: per-layer name lists and per-head kernels;
 *   hidden, intermediate ≤ 2^20; vocab ≤ 2^24: every [V, D] / [I, D] matrix stays addressable by u32;
 *   max_position_embeddings, sliding_window ≤ 2^24: positions travel as f32 in RoPE (exact to 2^24).
 */
export const CONFIG_LIMITS = {
  hidden_size: 1 << 20,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  vocab_size: 1 << 24,
  max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
  max_window_layers: 1 << 24,
} as const;

/** The largest finite f32, and the smallest positive normal one. */
export const F32_MAX = 3.4028234663852886e38;
export const F32_MIN_NORMAL = 1.1754943508222875e-38;

/** A positive number that stays finite and non-zero (normal) in f32, else LoadError naming the field. */
function f32Positive(v: number, field: string, file: string): number {
  if (v > F32_MAX) throw new LoadError(`${file}: '${field}' is ${v}, which overflows f32 (largest ${F32_MAX.toPrecision(5)}); the kernels compute in f32`);
  if (v < F32_MIN_NORMAL) throw new LoadError(`${file}: '${field}' is ${v}, which underflows f32 (smallest normal ${F32_MIN_NORMAL.toPrecision(5)}); the kernels compute in f32`);
  return v;
}

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class Fields {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
  ) {}
  has(k: string): boolean {
    return this.obj[k] !== undefined && this.obj[k] !== null;
  }
  raw(k: string): unknown {
    return this.obj[k];
  }
  int(k: string, dflt?: number, min = 1): number {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      throw new LoadError(`${this.file}: required field '${k}' is missing`);
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw new LoadError(`${this.file}: '${k}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    const max = (CONFIG_LIMITS as Readonly<Record<string, number>>)[k];
    if (max !== undefined && v > max) throw new LoadError(`${this.file}: '${k}' is ${v}, over this runtime's limit of ${max} (see CONFIG_LIMITS in src/model/config.ts)`);
    return v;
  }
  num(k: string, dflt?: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      throw new LoadError(`${this.file}: required field '${k}' is missing`);
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new LoadError(`${this.file}: '${k}' must be a positive number, got ${JSON.stringify(v)}`);
    return f32Positive(v, k, this.file);
  }
  bool(k: string, dflt: boolean): boolean {
    const v = this.obj[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") throw new LoadError(`${this.file}: '${k}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  str(k: string): string | null {
    const v = this.obj[k];
    return typeof v === "string" ? v : null;
  }
}

/** Per-architecture defaults, as in transformers' configuration classes. */
const DEFAULTS: Readonly<Record<Architecture, { maxPos: number; ropeTheta: number; eps: number; modelType: string }>> = {
  LlamaForCausalLM: { maxPos: 2048, ropeTheta: 10000, eps: 1e-6, modelType: "llama" },
  Qwen2ForCausalLM: { maxPos: 32768, ropeTheta: 10000, eps: 1e-6, modelType: "qwen2" },
  MistralForCausalLM: { maxPos: 4096 * 32, ropeTheta: 10000, eps: 1e-6, modelType: "mistral" },
};

function tokenIds(v: unknown, what: string): number[] {
  if (v === undefined || v === null) return [];
  const arr = Array.isArray(v) ? v : [v];
  for (const x of arr) if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) throw new LoadError(`${what} must be a token id or a list of them, got ${JSON.stringify(v)}`);
  return arr as number[];
}

/**
 * Parses config.json (already JSON-parsed) and optionally generation_config.json into a ModelConfig.
 * `file` names the config in errors.
 */
export function parseModelConfig(config: unknown, generationConfig: unknown = null, file = "config.json"): ModelConfig {
  if (!isObj(config)) throw new LoadError(`${file}: must be a JSON object`);
  // transformers 5 multimodal-style configs nest the text model; our architectures do not.
  const archs = config.architectures;
  let architecture: string | null = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : null;
  if (architecture === null) {
    const mt = typeof config.model_type === "string" ? config.model_type : null;
    architecture = mt === "llama" ? "LlamaForCausalLM" : mt === "qwen2" ? "Qwen2ForCausalLM" : mt === "mistral" ? "MistralForCausalLM" : null;
    if (architecture === null) throw new LoadError(`${file}: no 'architectures' and no known 'model_type' (${JSON.stringify(config.model_type)})`);
  }
  if (Array.isArray(archs) && archs.length > 1) throw new UnsupportedError(`${file}: several architectures ${JSON.stringify(archs)}; expected one of ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture)) {
    throw new UnsupportedError(`${file}: architecture '${architecture}' is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`);
  }
  const arch = architecture as Architecture;
  const f = new Fields(config, file);
  const d = DEFAULTS[arch];

  const act = f.str("hidden_act") ?? "silu";
  if (act !== "silu") throw new UnsupportedError(`${file}: hidden_act '${act}' is not supported (only 'silu')`);

  const hiddenSize = f.int("hidden_size");
  const numHeads = f.int("num_attention_heads");
  const numKvHeads = f.int("num_key_value_heads", numHeads);
  if (numKvHeads > numHeads) throw new LoadError(`${file}: num_key_value_heads (${numKvHeads}) must not exceed num_attention_heads (${numHeads})`);
  if (numHeads % numKvHeads !== 0) throw new LoadError(`${file}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  let headDim: number;
  if (f.has("head_dim")) headDim = f.int("head_dim");
  else {
    if (hiddenSize % numHeads !== 0) throw new LoadError(`${file}: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and head_dim is not given`);
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new LoadError(`${file}: head_dim ${headDim} must be even for RoPE`);

  const { ropeTheta, ropeScaling } = parseRope(config, d.ropeTheta, file);

  let attentionBias = false;
  let attentionOutputBias = false;
  let mlpBias = false;
  let slidingWindow: number | null = null;
  let maxWindowLayers: number | null = null;
  if (arch === "LlamaForCausalLM") {
    attentionBias = attentionOutputBias = f.bool("attention_bias", false);
    mlpBias = f.bool("mlp_bias", false);
  } else if (arch === "Qwen2ForCausalLM") {
    // Qwen2Attention hard-codes bias=True on q/k/v (and False on o_proj); attention_bias may override in newer configs.
    attentionBias = f.bool("attention_bias", true);
    if (f.bool("use_sliding_window", false) && f.has("sliding_window")) {
      slidingWindow = f.int("sliding_window");
      maxWindowLayers = f.int("max_window_layers", 28, 0);
    }
  } else {
    if (f.has("sliding_window")) slidingWindow = f.int("sliding_window");
  }
  const pr = config.partial_rotary_factor;
  if (pr !== undefined && pr !== null && pr !== 1 && pr !== 1.0) throw new UnsupportedError(`${file}: partial_rotary_factor ${JSON.stringify(pr)} is not supported (only 1.0)`);

  let gen: Json = {};
  if (generationConfig !== null && generationConfig !== undefined) {
    if (!isObj(generationConfig)) throw new LoadError("generation_config.json: must be a JSON object");
    gen = generationConfig;
  }
  const eos = [...tokenIds(gen.eos_token_id, "generation_config.json: eos_token_id"), ...tokenIds(config.eos_token_id, `${file}: eos_token_id`)];
  const bos = tokenIds(gen.bos_token_id ?? config.bos_token_id, "bos_token_id");
  const pad = tokenIds(gen.pad_token_id ?? config.pad_token_id, "pad_token_id");

  const torchDtype = f.str("torch_dtype") ?? f.str("dtype");
  return {
    architecture: arch,
    modelType: f.str("model_type") ?? d.modelType,
    hiddenSize,
    intermediateSize: f.int("intermediate_size"),
    numLayers: f.int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: f.num("rms_norm_eps", d.eps),
    vocabSize: f.int("vocab_size"),
    tieWordEmbeddings: f.bool("tie_word_embeddings", false),
    attentionBias,
    attentionOutputBias,
    mlpBias,
    maxPositionEmbeddings: f.int("max_position_embeddings", d.maxPos),
    bosTokenId: bos[0] ?? null,
    eosTokenIds: [...new Set(eos)],
    padTokenId: pad[0] ?? null,
    ropeTheta,
    ropeScaling,
    slidingWindow,
    maxWindowLayers,
    torchDtype,
  };
}

function parseRope(config: Json, defaultTheta: number, file: string): { ropeTheta: number; ropeScaling: RopeScaling } {
  const params = config.rope_parameters;
  let theta: unknown;
  let scaling: Json | null;
  let where: string;
  let thetaField = "rope_theta";
  if (params !== undefined && params !== null) {
    if (!isObj(params)) throw new LoadError(`${file}: rope_parameters must be an object, got ${JSON.stringify(params)}`);
    if (!("rope_type" in params) && !("rope_theta" in params) && Object.values(params).some(isObj)) {
      throw new UnsupportedError(`${file}: per-layer-type rope_parameters (${Object.keys(params).join(", ")}) are not supported`);
    }
    where = "rope_parameters";
    scaling = params;
    theta = params.rope_theta ?? config.rope_theta;
    if (params.rope_theta !== undefined && params.rope_theta !== null) thetaField = "rope_parameters.rope_theta";
    if (params.partial_rotary_factor !== undefined && params.partial_rotary_factor !== 1) {
      throw new UnsupportedError(`${file}: rope_parameters.partial_rotary_factor ${JSON.stringify(params.partial_rotary_factor)} is not supported (only 1.0)`);
    }
  } else {
    where = "rope_scaling";
    const rs = config.rope_scaling;
    if (rs !== undefined && rs !== null && !isObj(rs)) throw new LoadError(`${file}: rope_scaling must be an object or null, got ${JSON.stringify(rs)}`);
    scaling = (rs as Json | null | undefined) ?? null;
    theta = config.rope_theta;
  }
  let ropeTheta = defaultTheta;
  if (theta !== undefined && theta !== null) {
    if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 0) throw new LoadError(`${file}: rope_theta must be a positive number, got ${JSON.stringify(theta)}`);
    ropeTheta = f32Positive(theta, thetaField, file);
  }
  if (scaling === null) return { ropeTheta, ropeScaling: { type: "none" } };
  const type = scaling.rope_type ?? scaling.type ?? "default";
  if (typeof type !== "string") throw new LoadError(`${file}: ${where}.rope_type must be a string, got ${JSON.stringify(type)}`);
  const num = (k: string): number => {
    const v = scaling![k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new LoadError(`${file}: ${where}.${k} must be a number for rope type '${type}', got ${JSON.stringify(v)}`);
    if (v <= 0) throw new LoadError(`${file}: ${where}.${k} must be positive, got ${v}`);
    return f32Positive(v, `${where}.${k}`, file);
  };
  switch (type) {
    case "default":
      return { ropeTheta, ropeScaling: { type: "none" } };
    case "linear": {
      const factor = num("factor");
      return { ropeTheta, ropeScaling: { type: "linear", factor } };
    }
    case "llama3": {
      const s: RopeScaling = {
        type: "llama3",
        factor: num("factor"),
        lowFreqFactor: num("low_freq_factor"),
        highFreqFactor: num("high_freq_factor"),
        originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
      };
      if (s.highFreqFactor <= s.lowFreqFactor) throw new LoadError(`${file}: ${where}.high_freq_factor (${s.highFreqFactor}) must exceed low_freq_factor (${s.lowFreqFactor})`);
      return { ropeTheta, ropeScaling: s };
    }
    default:
      throw new UnsupportedError(`${file}: rope type '${type}' is not supported (supported: default, linear, llama3)`);
  }
}

/**
 * RoPE inverse frequencies, length hd/2: inv_freq[i] = 1 / theta^(2i/hd), then the scaling rule
 * (transformers' _compute_default/linear_scaling/llama3_parameters). Computed in float64 and
 * rounded once to f32. transformers computes the power in float32, so its values can differ from
 * these by about one f32 ulp.
 */
export function computeInvFreq(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float32Array {
  const hd = config.headDim;
  const half = hd / 2;
  const base = new Float64Array(half);
  for (let i = 0; i < half; i++) base[i] = 1 / config.ropeTheta ** ((2 * i) / hd);
  const out = new Float32Array(half);
  const s = config.ropeScaling;
  for (let i = 0; i < half; i++) {
    const f = base[i]!;
    if (s.type === "none") out[i] = f;
    else if (s.type === "linear") out[i] = f / s.factor;
    else {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) out[i] = f; // high frequency: unchanged
      else if (wavelen > lowWavelen) out[i] = f / s.factor; // low frequency: scaled
      else {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        out[i] = ((1 - smooth) * f) / s.factor + smooth * f;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- expected tensors

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

/** Every tensor a checkpoint of this configuration must hold, with its shape. */
export function expectedTensors(c: ModelConfig): ExpectedTensor[] {
  const D = c.hiddenSize;
  const I = c.intermediateSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const out: ExpectedTensor[] = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, D] }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { name: `${p}.input_layernorm.weight`, shape: [D] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [q, D] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kv, D] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kv, D] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [D, q] },
    );
    if (c.attentionBias) {
      out.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [q] },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kv] },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kv] },
      );
    }
    if (c.attentionOutputBias) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [D] });
    out.push(
      { name: `${p}.post_attention_layernorm.weight`, shape: [D] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, D] },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, D] },
      { name: `${p}.mlp.down_proj.weight`, shape: [D, I] },
    );
    if (c.mlpBias) {
      out.push({ name: `${p}.mlp.gate_proj.bias`, shape: [I] }, { name: `${p}.mlp.up_proj.bias`, shape: [I] }, { name: `${p}.mlp.down_proj.bias`, shape: [D] });
    }
  }
  out.push({ name: "model.norm.weight", shape: [D] });
  if (!c.tieWordEmbeddings) out.push({ name: "lm_head.weight", shape: [c.vocabSize, D] });
  return out;
}

/**
 * The embedding's row count wins over config.vocab_size (checkpoints are often padded, or a
 * tokenizer was extended and the embedding resized without updating the config). Returns the
 * config with vocabSize set from `model.embed_tokens.weight`, and whether it changed.
 */
export function reconcileVocabSize(c: ModelConfig, shapeOf: (name: string) => readonly number[] | undefined): { config: ModelConfig; changed: boolean } {
  const emb = shapeOf("model.embed_tokens.weight");
  if (!emb) throw new LoadError("the checkpoint has no 'model.embed_tokens.weight'");
  if (emb.length !== 2) throw new ShapeError(`'model.embed_tokens.weight' has shape [${emb.join(", ")}], expected [V, ${c.hiddenSize}]`);
  const rows = emb[0]!;
  if (rows > CONFIG_LIMITS.vocab_size) throw new LoadError(`'model.embed_tokens.weight' has ${rows} rows, over this runtime's vocabulary limit of ${CONFIG_LIMITS.vocab_size}`);
  return rows === c.vocabSize ? { config: c, changed: false } : { config: { ...c, vocabSize: rows }, changed: true };
}

export interface WeightCheck {
  missing: string[];
  wrongShape: { name: string; expected: number[]; actual: readonly number[] }[];
  /** Tensors present but not used by this architecture (e.g. rotary_emb.inv_freq of old checkpoints). */
  unused: string[];
}

/** Compares a checkpoint's tensor shapes with the configuration; returns what differs. */
export function compareWeights(c: ModelConfig, shapes: ReadonlyMap<string, readonly number[]>): WeightCheck {
  const expected = expectedTensors(c);
  const want = new Set(expected.map((e) => e.name));
  const res: WeightCheck = { missing: [], wrongShape: [], unused: [] };
  for (const e of expected) {
    const s = shapes.get(e.name);
    if (!s) res.missing.push(e.name);
    else if (s.length !== e.shape.length || s.some((x, i) => x !== e.shape[i])) res.wrongShape.push({ name: e.name, expected: e.shape, actual: s });
  }
  for (const n of shapes.keys()) if (!want.has(n)) res.unused.push(n);
  return res;
}

/**
 * The number of decoder layers a checkpoint holds: one more than the largest N of its
 * `model.layers.N.*` tensors (0 when it has none).
 */
export function checkpointLayerCount(names: Iterable<string>): number {
  let n = 0;
  for (const name of names) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/**
 * Throws LoadError listing every missing tensor and ShapeError naming each wrong shape. The layer
 * count is compared with the checkpoint's first, so a config claiming more layers than the
 * checkpoint holds is refused before a per-layer list of names is built.
 */
export function checkWeights(c: ModelConfig, shapes: ReadonlyMap<string, readonly number[]>, where = "checkpoint"): WeightCheck {
  const held = checkpointLayerCount(shapes.keys());
  if (c.numLayers > held) {
    throw new LoadError(`${where}: config.json says num_hidden_layers ${c.numLayers}, but the checkpoint holds ${held} layer(s)${held > 0 ? ` (model.layers.0 … model.layers.${held - 1})` : ""}; a config and its checkpoint must agree`);
  }
  const r = compareWeights(c, shapes);
  if (r.missing.length > 0) {
    const list = r.missing.length > 20 ? `${r.missing.slice(0, 20).join(", ")} and ${r.missing.length - 20} more` : r.missing.join(", ");
    throw new LoadError(
      `${where}: ${r.missing.length} tensor(s) that ${c.architecture} needs are missing: ${list}`,
      c.tieWordEmbeddings ? undefined : r.missing.includes("lm_head.weight") ? "if the model ties lm_head to the embedding, config.json should say tie_word_embeddings: true" : undefined,
    );
  }
  if (r.wrongShape.length > 0) {
    throw new ShapeError(
      `${where}: ${r.wrongShape.length} tensor(s) have shapes that do not match config.json: ` +
        r.wrongShape.slice(0, 5).map((w) => `'${w.name}' expected [${w.expected.join(", ")}], actual [${w.actual.join(", ")}]`).join("; ") +
        (r.wrongShape.length > 5 ? `; and ${r.wrongShape.length - 5} more` : ""),
    );
  }
  return r;
}

/** Parameter count of the model's tensors (tied embeddings counted once). */
export function parameterCount(c: ModelConfig): number {
  return expectedTensors(c).reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);
}

/** KV cache bytes for `contextLength` tokens: K and V, every layer, Hkv × hd per token. */
export function kvCacheBytes(c: ModelConfig, contextLength: number, bytesPerElement = 2, batch = 1): number {
  return 2 * c.numLayers * contextLength * batch * c.numKvHeads * c.headDim * bytesPerElement;
}
