// A Hugging Face Llama directory (config.json, safetensors, tokenizer.json) → a GGUF file for
// llama.cpp's `llama` architecture, so that llama.cpp runs exactly our weights (bench/peer).
//
//   node dist/bench/peer/convert.js --model DIR --out FILE.gguf [--type F16|F32|BF16|Q8_0|Q4_0]
//
// Tensors (HF name → GGUF name, in this order): token_embd, then per layer attn_norm, attn_q,
// attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, then output_norm and output
// (absent when the embeddings are tied: llama.cpp then reads token_embd). Norm weights are F32;
// the matrices are `--type` (Q8_0 / Q4_0 quantized with ggml's reference rounding,
// src/io/ggml-quants.ts, every matrix including the embeddings and lm_head; with
// `--quantize projections` only the layers' projections, token_embd and output F16, which is what
// our loader's `--quantize` makes: the same blocks in both runtimes).
//
// RoPE: Hugging Face rotates halves (x[i], x[i + hd/2]) of each head, llama.cpp's `llama` graph
// adjacent pairs (x[2i], x[2i+1]). llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute)
// therefore reorders the rows of q_proj (per query head) and k_proj (per kv head):
//     w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in)
// i.e. row h·hd + 2i + s of the GGUF tensor is row h·hd + s·hd/2 + i of the HF one. q·k is unchanged
// (the same permutation on both), v and o are untouched.
//
// Vocabulary (tokenizer.json): a BPE model with a byte-level pre-tokenizer or decoder → "gpt2"
// (tokens, types, merges); a BPE model without it (SentencePiece converted: byte_fallback, ▁) or a
// Unigram model → "llama" (tokens, scores: Unigram's own or −id for BPE, types). No tokenizer.json:
// a synthesized "llama" vocabulary <unk>, <s>, </s>, the 256 byte pieces <0x00>..<0xFF> (llama.cpp's
// SentencePiece tokenizer aborts the process without them) and "<t{i}>" for the rest (needs
// vocab_size ≥ 259). Ids the tokenizer leaves unused get "[PAD{i}]". The benchmarks feed token ids,
// so the vocabulary only has to load.
import { UnsupportedError, UsageError } from "../../src/errors.js";
import { openCheckpoint, loadModelConfig } from "../../src/model/checkpoint.js";
import { bytesAsArray, toF32 } from "../../src/io/safetensors.js";
import { convertF32ToF16 } from "../../src/util/f16.js";
import { GGML_TYPES, LLAMA_FILE_TYPES, layoutGguf, writeGguf, type GgmlTypeName, type GgufTensorSpec, type GgufValue } from "../../src/io/gguf.js";
import { quantizeQ4_0, quantizeQ8_0 } from "../../src/io/ggml-quants.js";
import { FILE_FORMATS, GGUF_TAG_KEY, writeFileAtomic } from "../../src/io/output.js";
import { f32ToBf16Bits } from "../../src/util/f16.js";
import { isQuantizedWeight } from "../../src/quant/policy.js";
import type { ModelConfig } from "../../src/model/config.js";

export const GGUF_OUT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0"] as const;
export type GgufOutType = (typeof GGUF_OUT_TYPES)[number];

export interface PlannedGgufTensor {
  hf: string;
  gguf: string;
  shape: [number] | [number, number];
  /** Heads whose rows are permuted for llama.cpp's RoPE (q: heads, k: kv heads), or 0. */
  permuteHeads: number;
}

/** The llama-arch tensors of a config, in file order. */
export function llamaTensorPlan(c: ModelConfig): PlannedGgufTensor[] {
  const D = c.hiddenSize, F = c.intermediateSize, V = c.vocabSize, hd = c.headDim;
  const q = c.numHeads * hd, kv = c.numKvHeads * hd;
  const plan: PlannedGgufTensor[] = [{ hf: "model.embed_tokens.weight", gguf: "token_embd.weight", shape: [V, D], permuteHeads: 0 }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`, b = `blk.${l}.`;
    plan.push(
      { hf: p + "input_layernorm.weight", gguf: b + "attn_norm.weight", shape: [D], permuteHeads: 0 },
      { hf: p + "self_attn.q_proj.weight", gguf: b + "attn_q.weight", shape: [q, D], permuteHeads: c.numHeads },
      { hf: p + "self_attn.k_proj.weight", gguf: b + "attn_k.weight", shape: [kv, D], permuteHeads: c.numKvHeads },
      { hf: p + "self_attn.v_proj.weight", gguf: b + "attn_v.weight", shape: [kv, D], permuteHeads: 0 },
      { hf: p + "self_attn.o_proj.weight", gguf: b + "attn_output.weight", shape: [D, q], permuteHeads: 0 },
      { hf: p + "post_attention_layernorm.weight", gguf: b + "ffn_norm.weight", shape: [D], permuteHeads: 0 },
      { hf: p + "mlp.gate_proj.weight", gguf: b + "ffn_gate.weight", shape: [F, D], permuteHeads: 0 },
      { hf: p + "mlp.up_proj.weight", gguf: b + "ffn_up.weight", shape: [F, D], permuteHeads: 0 },
      { hf: p + "mlp.down_proj.weight", gguf: b + "ffn_down.weight", shape: [D, F], permuteHeads: 0 },
    );
  }
  plan.push({ hf: "model.norm.weight", gguf: "output_norm.weight", shape: [D], permuteHeads: 0 });
  if (!c.tieWordEmbeddings) plan.push({ hf: "lm_head.weight", gguf: "output.weight", shape: [V, D], permuteHeads: 0 });
  return plan;
}

/**
 * Reorders the rows of a [heads·hd, cols] matrix from Hugging Face's rotate-half order to
 * llama.cpp's adjacent-pair order: out row h·hd + 2i + s = in row h·hd + s·hd/2 + i.
 */
export function permuteRopeRows<T extends Float32Array | Uint16Array>(w: T, rows: number, cols: number, heads: number): T {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0) throw new UsageError(`RoPE permutation: ${rows} rows are not ${heads} heads of an even head_dim`);
  const hd = rows / heads, half = hd / 2;
  const out = new (w.constructor as { new (n: number): T })(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let s = 0; s < 2; s++) {
        const src = (h * hd + s * half + i) * cols, dst = (h * hd + 2 * i + s) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- vocabulary

const TT = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

export interface GgufVocab {
  model: "llama" | "gpt2";
  tokens: string[];
  scores: number[] | null;
  types: number[];
  merges: string[] | null;
  source: "tokenizer.json" | "synthesized";
}

type Json = Record<string, unknown>;

/** The GGUF vocabulary of `V` ids from a tokenizer.json object (or null: synthesized). */
export function ggufVocab(tj: Json | null, V: number, where: string): GgufVocab {
  const tokens: (string | null)[] = new Array(V).fill(null);
  const types: number[] = new Array(V).fill(TT.UNUSED);
  const scores: number[] = new Array(V).fill(0);
  if (tj === null) {
    if (V < 259) throw new UnsupportedError(`${where}: no tokenizer.json and vocab_size ${V} < 259: a synthesized SentencePiece vocabulary needs <unk>, <s>, </s> and the 256 byte pieces`);
    for (let i = 0; i < V; i++) (tokens[i] = `<t${i}>`), (types[i] = TT.NORMAL);
    ["<unk>", "<s>", "</s>"].forEach((t, i) => ((tokens[i] = t), (types[i] = i === 0 ? TT.UNKNOWN : TT.CONTROL)));
    for (let b = 0; b < 256; b++) (tokens[3 + b] = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`), (types[3 + b] = TT.BYTE);
    return { model: "llama", tokens: tokens as string[], scores, types, merges: null, source: "synthesized" };
  }
  const m = (tj.model ?? {}) as Json;
  const isByteLevel = (o: unknown): boolean => {
    if (!o || typeof o !== "object") return false;
    const x = o as Json;
    if (x.type === "ByteLevel") return true;
    return Array.isArray(x.pretokenizers ?? x.decoders) && ((x.pretokenizers ?? x.decoders) as unknown[]).some(isByteLevel);
  };
  let model: "llama" | "gpt2";
  let merges: string[] | null = null;
  const put = (tok: string, id: number, score: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new UnsupportedError(`${where}: token ${JSON.stringify(tok)} has id ${id}, outside the model's vocab_size ${V}`);
    tokens[id] = tok;
    scores[id] = score;
    types[id] = BYTE_PIECE.test(tok) ? TT.BYTE : TT.NORMAL;
  };
  if (m.type === "BPE") {
    const vocab = m.vocab as Record<string, number>;
    model = isByteLevel(tj.pre_tokenizer) || isByteLevel(tj.decoder) ? "gpt2" : "llama";
    for (const [tok, id] of Object.entries(vocab)) put(tok, id, model === "llama" && !BYTE_PIECE.test(tok) ? -id : 0);
    if (model === "gpt2") merges = ((m.merges ?? []) as unknown[]).map((x) => (Array.isArray(x) ? x.join(" ") : String(x)));
  } else if (m.type === "Unigram") {
    model = "llama";
    (m.vocab as [string, number][]).forEach(([tok, s], id) => put(tok, id, s));
    if (typeof m.unk_id === "number" && m.unk_id < V) types[m.unk_id] = TT.UNKNOWN;
  } else {
    throw new UnsupportedError(`${where}: tokenizer model '${String(m.type)}' has no GGUF vocabulary here (BPE or Unigram only)`);
  }
  for (const a of (tj.added_tokens ?? []) as Json[]) {
    const id = a.id as number, content = a.content as string;
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new UnsupportedError(`${where}: added token ${JSON.stringify(content)} has id ${id}, outside vocab_size ${V}`);
    tokens[id] = content;
    scores[id] = 0;
    types[id] = a.special ? TT.CONTROL : TT.USER_DEFINED;
  }
  const unk = typeof m.unk_token === "string" ? m.unk_token : null;
  for (let i = 0; i < V; i++) {
    if (tokens[i] === null) (tokens[i] = `[PAD${i}]`), (types[i] = TT.UNUSED), (scores[i] = 0);
    else if (tokens[i] === unk) types[i] = TT.UNKNOWN;
  }
  if (new Set(tokens).size !== V) throw new UnsupportedError(`${where}: the vocabulary holds duplicate token strings`);
  return { model, tokens: tokens as string[], scores: model === "llama" ? scores : null, types, merges, source: "tokenizer.json" };
}

// ---------------------------------------------------------------- conversion

export interface ConvertOptions {
  type?: GgufOutType;
  name?: string;
  /**
   * "all" (default): every matrix is `type`. "projections": only the decoder layers' projection
   * matrices (src/quant/policy.ts isQuantizedWeight, the tensors `--quantize` turns into blocks)
   * are `type`; token_embd and output stay F16, as our runtime keeps them. With Q8_0 / Q4_0 this
   * writes exactly the blocks our loader makes, so both runtimes run the same quantized model.
   */
  quantize?: "all" | "projections";
}

export interface ConvertResult {
  out: string;
  type: GgufOutType;
  tensors: number;
  bytes: number;
  vocab: GgufVocab["model"];
  vocabSource: GgufVocab["source"];
  ms: number;
}

/** The llama-arch metadata for `c` and its vocabulary, tag first. */
export function llamaMetadata(c: ModelConfig, v: GgufVocab, type: GgufOutType, name: string, tokenizerConfig: Json | null): [string, GgufValue][] {
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const md: [string, GgufValue][] = [
    [GGUF_TAG_KEY, { type: "string", value: FILE_FORMATS.gguf }],
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(LLAMA_FILE_TYPES[type])],
    ["general.alignment", u32(32)],
    ["llama.vocab_size", u32(c.vocabSize)],
    ["llama.context_length", u32(c.maxPositionEmbeddings)],
    ["llama.embedding_length", u32(c.hiddenSize)],
    ["llama.block_count", u32(c.numLayers)],
    ["llama.feed_forward_length", u32(c.intermediateSize)],
    ["llama.rope.dimension_count", u32(c.headDim)],
    ["llama.attention.head_count", u32(c.numHeads)],
    ["llama.attention.head_count_kv", u32(c.numKvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: c.rmsNormEps }],
    ["llama.rope.freq_base", { type: "f32", value: c.ropeTheta }],
  ];
  if (c.headDim !== c.hiddenSize / c.numHeads) md.push(["llama.attention.key_length", u32(c.headDim)], ["llama.attention.value_length", u32(c.headDim)]);
  if (c.ropeScaling.type === "linear") md.push(["llama.rope.scaling.type", { type: "string", value: "linear" }], ["llama.rope.scaling.factor", { type: "f32", value: c.ropeScaling.factor }]);
  md.push(["tokenizer.ggml.model", { type: "string", value: v.model }]);
  if (v.model === "gpt2") md.push(["tokenizer.ggml.pre", { type: "string", value: "default" }]);
  md.push(["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: v.tokens }]);
  if (v.scores) md.push(["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: v.scores }]);
  md.push(["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: v.types }]);
  if (v.merges) md.push(["tokenizer.ggml.merges", { type: "array", itemType: "string", value: v.merges }]);
  const unk = v.types.indexOf(TT.UNKNOWN);
  if (c.bosTokenId !== null) md.push(["tokenizer.ggml.bos_token_id", u32(c.bosTokenId)]);
  if (c.eosTokenIds.length > 0) md.push(["tokenizer.ggml.eos_token_id", u32(c.eosTokenIds[0]!)]);
  if (unk >= 0) md.push(["tokenizer.ggml.unknown_token_id", u32(unk)]);
  if (c.padTokenId !== null) md.push(["tokenizer.ggml.padding_token_id", u32(c.padTokenId)]);
  md.push(["tokenizer.ggml.add_bos_token", { type: "bool", value: tokenizerConfig?.add_bos_token !== false }]);
  md.push(["tokenizer.ggml.add_eos_token", { type: "bool", value: tokenizerConfig?.add_eos_token === true }]);
  return md;
}

/** The bytes of one tensor in `type` from f32 values (or f16 bits kept as they are). */
export function encodeTensor(values: Float32Array | Uint16Array, type: GgmlTypeName, what: string): Uint8Array {
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (values instanceof Uint16Array) {
    if (type !== "F16") throw new Error(`${what}: f16 bits can only be written as F16`);
    return bytesOf(values);
  }
  switch (type) {
    case "F32": return bytesOf(values);
    case "F16": {
      const { out, overflows } = convertF32ToF16(values);
      if (overflows > 0) throw new UnsupportedError(`${what}: ${overflows} value(s) overflow f16; write F32 or BF16`);
      return bytesOf(out);
    }
    case "BF16": return bytesOf(Uint16Array.from(values, (x) => f32ToBf16Bits(x)));
    case "Q8_0": return quantizeQ8_0(values);
    case "Q4_0": return quantizeQ4_0(values);
  }
}

async function readJsonFile(path: string): Promise<Json | null> {
  const { readFile } = await import("node:fs/promises");
  try {
    return JSON.parse(await readFile(path, "utf8")) as Json;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new UnsupportedError(`${path}: ${(e as Error).message}`);
  }
}

/** Converts model directory `dir` to the GGUF file `out` (written atomically, tagged). */
export async function convertToGguf(dir: string, out: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const t0 = performance.now();
  const { join, basename, resolve } = await import("node:path");
  const type = opts.type ?? "F16";
  if (!GGUF_OUT_TYPES.includes(type)) throw new UsageError(`--type must be one of ${GGUF_OUT_TYPES.join(", ")}, got '${type}'`);
  const c = await loadModelConfig(dir);
  const where = `${dir}/config.json`;
  if (c.architecture !== "LlamaForCausalLM" && c.architecture !== "MistralForCausalLM") throw new UnsupportedError(`${where}: ${c.architecture} does not map onto llama.cpp's 'llama' architecture here`);
  if (c.attentionBias || c.attentionOutputBias || c.mlpBias) throw new UnsupportedError(`${where}: projection biases are not written by this converter`);
  if (c.slidingWindow !== null) throw new UnsupportedError(`${where}: sliding_window ${c.slidingWindow}: llama.cpp's 'llama' graph attends to the whole context`);
  if (c.ropeScaling.type === "llama3") throw new UnsupportedError(`${where}: llama3 RoPE scaling needs a rope_freqs tensor, not written by this converter`);
  const tj = await readJsonFile(join(dir, "tokenizer.json"));
  const tc = await readJsonFile(join(dir, "tokenizer_config.json"));
  const vocab = ggufVocab(tj, c.vocabSize, tj ? join(dir, "tokenizer.json") : dir);
  const plan = llamaTensorPlan(c);
  const ckpt = await openCheckpoint(dir);
  try {
    for (const p of plan) {
      const t = ckpt.get(p.hf);
      if (t.info.shape.join() !== p.shape.join()) throw new UnsupportedError(`${dir}: tensor '${p.hf}' has shape [${t.info.shape.join(", ")}], config.json implies [${p.shape.join(", ")}]`);
    }
    const only = opts.quantize ?? "all";
    if (only !== "all" && only !== "projections") throw new UsageError(`--quantize must be all or projections, got '${String(only)}'`);
    const matrixType = (hf: string): GgmlTypeName => (only === "projections" && !isQuantizedWeight(hf) ? "F16" : type);
    const specs: GgufTensorSpec[] = plan.map((p) => ({ name: p.gguf, shape: p.shape, type: p.shape.length === 1 ? "F32" : matrixType(p.hf) }));
    for (const s of specs) {
      const bs = GGML_TYPES[s.type].blockSize;
      if (s.shape[s.shape.length - 1]! % bs !== 0) throw new UnsupportedError(`${dir}: tensor '${s.name}' [${s.shape.join(", ")}] cannot be ${s.type}: rows of ${s.shape[s.shape.length - 1]} are not whole ${bs}-value blocks`);
    }
    const layout = layoutGguf(llamaMetadata(c, vocab, type, opts.name ?? basename(resolve(dir)), tc), specs);
    let bytes = 0;
    const target = await writeFileAtomic(
      out,
      "gguf",
      async (sink) => {
        bytes = await writeGguf(sink, layout, async (spec, i) => {
          const p = plan[i]!;
          const t = ckpt.get(p.hf);
          const raw = await t.file.readBytes(p.hf);
          let values: Float32Array | Uint16Array =
            t.info.dtype === "F16" && spec.type === "F16" ? (bytesAsArray(raw, "F16", p.hf) as Uint16Array) : toF32(bytesAsArray(raw, t.info.dtype, p.hf), t.info.dtype);
          if (p.permuteHeads > 0) values = permuteRopeRows(values, p.shape[0], p.shape[1]!, p.permuteHeads);
          return encodeTensor(values, spec.type, p.hf);
        });
      },
      { flag: "--out", inputs: [{ flag: "--model", path: dir }] },
    );
    return { out: target, type, tensors: specs.length, bytes, vocab: vocab.model, vocabSource: vocab.source, ms: performance.now() - t0 };
  } finally {
    await ckpt.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const { parseArgs } = await import("../../src/cli/args.js");
  const args = parseArgs(argv, { values: ["model", "out", "type", "name", "quantize"], booleans: [] }, "peer convert");
  const model = args.flags.get("model"), out = args.flags.get("out");
  if (!model || !out) throw new UsageError("usage: node dist/bench/peer/convert.js --model DIR --out FILE.gguf [--type F16|F32|BF16|Q8_0|Q4_0] [--quantize all|projections] [--name NAME]");
  const r = await convertToGguf(model, out, {
    type: (args.flags.get("type") ?? "F16") as GgufOutType,
    ...(args.flags.get("name") ? { name: args.flags.get("name")! } : {}),
    ...(args.flags.get("quantize") ? { quantize: args.flags.get("quantize") as "all" | "projections" } : {}),
  });
  console.log(JSON.stringify(r));
}

const { pathToFileURL } = await import("node:url");
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  });
}
