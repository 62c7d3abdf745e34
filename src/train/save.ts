// Saving a trained model as a Hugging Face model directory, and growing a model's vocabulary.
//
// saveModelDir writes:
//   model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json when the
//     weights exceed maxShardBytes: every weight under its Hugging Face name, LoRA adapters merged
//     (W + (alpha/r)·B·A), lm_head omitted when embeddings are tied; dtype as the input's
//     torch_dtype (F32/F16/BF16) unless given;
//   config.json: the input's, field for field, with vocab_size set to the embedding rows and
//     torch_dtype (or v5 "dtype") set to the saved dtype;
//   generation_config.json, special_tokens_map.json, tokenizer.model, chat_template.jinja: copied;
//   tokenizer.json with the added tokens appended to added_tokens (ids after the vocabulary, as
//     transformers' add_tokens), tokenizer_config.json with them in added_tokens_decoder.
//   onegen-output.json: the output tag (src/io/output.ts), and with `adapters` an adapter/ subdir.
// saveAdapters writes PEFT's layout: adapter_model.safetensors (base_model.model.…lora_A/B.weight,
// F32) + adapter_config.json (+ the tag).
// Both write atomically through src/io/output.ts and refuse a directory they did not write.
// addTokensToDecoder grows embed_tokens (and an untied lm_head) to V' rows, the new rows set to the
// mean of the existing rows (OneGen initialises new tokens from the mean of description-token
// embeddings; with no description the mean over the vocabulary is the neutral choice).
// Everything is gathered on the host in f32, so the model must fit in host memory (small models
// and LoRA on models up to a few GB).

import { GpuOutOfMemoryError, LoadError, UsageError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import { DTYPE_BYTES, type Tensor } from "../gpu/tensor.js";
import { CONFIG_LIMITS } from "../model/config.js";
import { type SafetensorsDtype } from "../io/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../io/safetensors-write.js";
import { readJson, toModelDir, type ModelDir } from "../io/source.js";
import { Decoder, HF_LAYER_FIELDS } from "../model/decoder.js";
import { addTokensToTokenizerJson, type AddedTokenSpec } from "../tokenizer.js";
import { f16ArrayToF32, f32ArrayToF16, f32ToBf16Bits } from "../util/f16.js";
import { mergeLoraWeights, type LoraAdapters } from "./lora.js";
import { checkOutput, dirTag, outputTag, writeDirAtomic, OUTPUT_TAG_FILE, type InputPath } from "../io/output.js";


export interface HostWeight {
  shape: readonly number[];
  data: Float32Array;
}

async function readF32(t: Tensor): Promise<Float32Array> {
  const raw = await t.read();
  if (t.dtype === "f16") return f16ArrayToF32(raw as Uint16Array);
  if (t.dtype === "f32") return raw as Float32Array;
  throw new UsageError(`cannot export weight '${t.label}' of dtype ${t.dtype}`);
}

/** Every weight of the decoder in f32 under its Hugging Face name, LoRA merged when given. */
export async function exportWeights(decoder: Decoder, lora: LoraAdapters | null = null): Promise<Map<string, HostWeight>> {
  const w = decoder.weights;
  const out = new Map<string, HostWeight>();
  out.set("model.embed_tokens.weight", { shape: w.embed.shape, data: await readF32(w.embed) });
  for (const [l, L] of w.layers.entries()) {
    for (const [field, name] of HF_LAYER_FIELDS) {
      const t = L[field] as Tensor | null;
      if (t) out.set(`model.layers.${l}.${name}`, { shape: t.shape, data: await readF32(t) });
    }
  }
  out.set("model.norm.weight", { shape: w.norm.shape, data: await readF32(w.norm) });
  if (w.lmHead !== w.embed) out.set("lm_head.weight", { shape: w.lmHead.shape, data: await readF32(w.lmHead) });
  if (lora) {
    for (const [name, merged] of await mergeLoraWeights(w.layers, lora)) {
      const cur = out.get(name);
      if (!cur) throw new UsageError(`LoRA merge: no base weight '${name}'`);
      out.set(name, { shape: cur.shape, data: merged });
    }
  }
  return out;
}

function encodeAs(data: Float32Array, dtype: SafetensorsDtype): ArrayBufferView {
  if (dtype === "F32") return data;
  if (dtype === "F16") return f32ArrayToF16(data);
  if (dtype === "BF16") {
    const out = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = f32ToBf16Bits(data[i]!);
    return out;
  }
  throw new UsageError(`cannot save weights as ${dtype} (F32, F16 or BF16)`);
}

const TORCH_DTYPE: Record<string, SafetensorsDtype> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const DTYPE_NAME: Record<string, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

// ------------------------------------------------------------------ model directory

export interface SaveModelOptions {
  /** The input model directory: config.json (required unless `config` is given), tokenizer and generation files. */
  sourceDir?: string | ModelDir;
  /** The input config.json object (instead of reading it from sourceDir). */
  config?: Record<string, unknown>;
  /** Weight dtype (default: the input's torch_dtype / dtype, else F32). */
  dtype?: "F32" | "F16" | "BF16";
  /** Tokens to add to the tokenizer files (those already there keep their ids). */
  addedTokens?: readonly (string | AddedTokenSpec)[];
  /** Split the weights into shards of at most this many bytes (default 2 GiB). */
  maxShardBytes?: number;
  /** Also write the LoRA adapters to OUT/adapter (PEFT layout), in the same atomic swap. */
  adapters?: { lora: LoraAdapters; baseModel?: string };
  /** Names the output directory in messages (the CLI passes "--out"). */
  flag?: string;
  /** Paths the directory must not replace or hold (sourceDir is always one). */
  inputs?: readonly InputPath[];
}

export interface SavedModel {
  files: string[];
  dtype: SafetensorsDtype;
  vocabSize: number;
  shards: number;
  /** Ids of the added tokens in the saved tokenizer (empty without tokenizer files). */
  addedTokenIds: number[];
}

const COPIED = ["generation_config.json", "special_tokens_map.json", "tokenizer.model", "chat_template.jinja"];

/** The files of a Hugging Face model directory for a decoder (LoRA merged), in memory. */
export async function modelDirFiles(decoder: Decoder, lora: LoraAdapters | null, opts: SaveModelOptions = {}): Promise<{ files: Map<string, Uint8Array | string>; saved: SavedModel }> {
  const src = opts.sourceDir !== undefined ? await toModelDir(opts.sourceDir) : null;
  let config: Record<string, unknown>;
  if (opts.config) config = { ...opts.config };
  else if (src) {
    const raw = await readJson(src, "config.json");
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new LoadError(`${src.name}/config.json must be a JSON object`);
    config = { ...(raw as Record<string, unknown>) };
  } else throw new UsageError("saveModelDir: give sourceDir or config (the input model's config.json)");
  const srcDtype = TORCH_DTYPE[String(config.torch_dtype ?? config.dtype ?? "")];
  const dtype: SafetensorsDtype = opts.dtype ?? srcDtype ?? "F32";
  const weights = await exportWeights(decoder, lora);
  const V = decoder.weights.embed.shape[0]!;
  config.vocab_size = V;
  if ("dtype" in config && !("torch_dtype" in config)) config.dtype = DTYPE_NAME[dtype];
  else config.torch_dtype = DTYPE_NAME[dtype];
  const maxShard = opts.maxShardBytes ?? 2 ** 31;
  if (!(maxShard > 0)) throw new UsageError(`saveModelDir: maxShardBytes must be > 0, got ${maxShard}`);
  // Shards in name order, cut when the next tensor would overflow one.
  const bytesPer = dtype === "F32" ? 4 : 2;
  const shards: Map<string, TensorToWrite>[] = [new Map()];
  let size = 0;
  let total = 0;
  for (const name of [...weights.keys()].sort()) {
    const w = weights.get(name)!;
    const n = w.data.length * bytesPer;
    if (size > 0 && size + n > maxShard) {
      shards.push(new Map());
      size = 0;
    }
    shards[shards.length - 1]!.set(name, { dtype, shape: w.shape, data: encodeAs(w.data, dtype) });
    size += n;
    total += n;
  }
  const files = new Map<string, Uint8Array | string>();
  const json = (o: unknown) => JSON.stringify(o, null, 2) + "\n";
  if (shards.length === 1) files.set("model.safetensors", writeSafetensors(shards[0]!, { format: "pt" }));
  else {
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const name = `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`;
      files.set(name, writeSafetensors(s, { format: "pt" }));
      for (const t of s.keys()) weightMap[t] = name;
    });
    files.set("model.safetensors.index.json", json({ metadata: { total_size: total }, weight_map: weightMap }));
  }
  files.set("config.json", json(config));
  let addedTokenIds: number[] = [];
  if (src) {
    for (const f of COPIED) {
      if (!(await src.exists(f))) continue;
      const b = await src.open(f);
      files.set(f, await b.read(0, b.size));
      await b.close?.();
    }
    if (await src.exists("tokenizer.json")) {
      const { json: tj, ids } = addTokensToTokenizerJson(await readJson(src, "tokenizer.json"), opts.addedTokens ?? []);
      addedTokenIds = ids;
      const maxId = Math.max(...ids, -1);
      if (maxId >= V) throw new UsageError(`saveModelDir: added token id ${maxId} is outside the model's ${V} embedding rows`, "grow the model first (addTokensToDecoder)");
      files.set("tokenizer.json", JSON.stringify(tj, null, 2) + "\n");
      if (await src.exists("tokenizer_config.json")) {
        const tc = (await readJson(src, "tokenizer_config.json")) as Record<string, unknown>;
        const dec = tc.added_tokens_decoder;
        if (typeof dec === "object" && dec !== null && !Array.isArray(dec)) {
          const d = { ...(dec as Record<string, unknown>) };
          for (const t of (tj.added_tokens as { id: number; content: string; lstrip: boolean; rstrip: boolean; normalized: boolean; single_word: boolean; special: boolean }[])) {
            if (!(String(t.id) in d)) d[String(t.id)] = { content: t.content, lstrip: t.lstrip, normalized: t.normalized, rstrip: t.rstrip, single_word: t.single_word, special: t.special };
          }
          tc.added_tokens_decoder = d;
        }
        files.set("tokenizer_config.json", json(tc));
      }
    } else if ((opts.addedTokens ?? []).length > 0) {
      throw new UsageError(`saveModelDir: tokens to add, but '${src.name}' has no tokenizer.json`);
    }
  }
  return { files, saved: { files: [...files.keys()].sort(), dtype, vocabSize: V, shards: shards.length, addedTokenIds } };
}

/** Files of a model directory that a save rewrites; everything else in an existing one is kept. */
const MODEL_FILE_RE = /^(model.*\.safetensors|model\.safetensors\.index\.json|config\.json|generation_config\.json|special_tokens_map\.json|tokenizer\.model|tokenizer\.json|tokenizer_config\.json|chat_template\.jinja)$/;

/**
 * Writes a Hugging Face model directory atomically (src/io/output.ts writeDirAtomic): `outDir`
 * must be absent, empty or a model directory this project wrote (its onegen-output.json tag),
 * never the source model nor inside it. An existing one is replaced as a whole; the entries a save
 * does not write (a training run's checkpoints/, files the user put there) are carried over by
 * hard links, while the previous weights, config and tokenizer files (and a previous adapter/ of
 * ours when `adapters` is not given) are not. A crash at any point leaves the old or the new model.
 */
export async function saveModelDir(decoder: Decoder, lora: LoraAdapters | null, outDir: string, opts: SaveModelOptions = {}): Promise<SavedModel> {
  const inputs: InputPath[] = [...(opts.inputs ?? [])];
  if (typeof opts.sourceDir === "string") inputs.push({ flag: "sourceDir", path: opts.sourceDir });
  // Check before the (possibly long) export, so a bad outDir costs nothing.
  await checkOutput({ flag: opts.flag ?? "saveModelDir: outDir", path: outDir, kind: "model" }, inputs);
  const { files, saved } = await modelDirFiles(decoder, lora, opts);
  const adapter = opts.adapters ? await adapterFiles(opts.adapters.lora, opts.adapters.baseModel) : null;
  await writeDirAtomic(
    outDir,
    "model",
    async (w) => {
      for (const [name, data] of files) await w.writeFile(name, data);
      if (adapter) {
        await w.mkdir("adapter");
        await w.writeFile(`adapter/${OUTPUT_TAG_FILE}`, outputTag("adapter"));
        for (const [name, data] of adapter) await w.writeFile(`adapter/${name}`, data);
      }
    },
    {
      flag: opts.flag ?? "saveModelDir: outDir",
      inputs,
      keep: async (name, p) => !MODEL_FILE_RE.test(name) && !(name === "adapter" && (await dirTag(p)) === "adapter"),
    },
  );
  return saved;
}

async function adapterFiles(lora: LoraAdapters, baseModel: string | undefined): Promise<Map<string, Uint8Array | string>> {
  const { tensors, config } = await lora.tensors();
  return new Map<string, Uint8Array | string>([
    ["adapter_model.safetensors", writeSafetensors(tensors, { format: "pt" })],
    ["adapter_config.json", JSON.stringify({ ...config, base_model_name_or_path: baseModel ?? null }, null, 2) + "\n"],
  ]);
}

/**
 * Writes the adapters alone in PEFT's layout (adapter_model.safetensors + adapter_config.json),
 * atomically: `outDir` must be absent, empty or an adapter directory this project wrote.
 */
export async function saveAdapters(lora: LoraAdapters, outDir: string, opts: { baseModel?: string; flag?: string; inputs?: readonly InputPath[] } = {}): Promise<void> {
  await checkOutput({ flag: opts.flag ?? "saveAdapters: outDir", path: outDir, kind: "adapter" }, opts.inputs ?? []);
  const files = await adapterFiles(lora, opts.baseModel);
  await writeDirAtomic(outDir, "adapter", async (w) => {
    for (const [name, data] of files) await w.writeFile(name, data);
  }, { flag: opts.flag ?? "saveAdapters: outDir", inputs: opts.inputs ?? [] });
}

// ------------------------------------------------------------------ vocabulary growth

/**
 * A decoder whose embedding (and untied lm_head) have `vocabSize` rows: the old rows copied, the
 * new ones the mean of the old rows; same dtype. The other weights are shared with `decoder`.
 * dispose() frees the new tensors only (the caller still owns the old ones).
 */
export async function addTokensToDecoder(decoder: Decoder, vocabSize: number): Promise<{ decoder: Decoder; dispose(): void }> {
  const ctx: GpuContext = decoder.ctx;
  const w = decoder.weights;
  const [V0, D] = w.embed.shape as [number, number];
  if (!Number.isInteger(vocabSize) || vocabSize < V0) throw new UsageError(`addTokensToDecoder: vocabulary size ${vocabSize} is below the model's ${V0} rows (shrinking is not supported)`);
  // The new rows are sized by the tokenizer's largest id: bounded, and checked against the device
  // before the host copy (vocabSize × D f32) or any buffer is made.
  if (vocabSize > CONFIG_LIMITS.vocab_size) throw new LoadError(`addTokensToDecoder: vocabulary size ${vocabSize} (the tokenizer's largest id + 1) is over this runtime's limit of ${CONFIG_LIMITS.vocab_size}`);
  const tables = w.lmHead === w.embed ? 1 : 2;
  const rowBytes = D * DTYPE_BYTES[w.embed.dtype];
  if (vocabSize * rowBytes > ctx.limits.maxBufferSize || tables * vocabSize * rowBytes > ctx.memoryAvailable) {
    throw new GpuOutOfMemoryError(
      `addTokensToDecoder: growing the embedding${tables === 2 ? " and lm_head" : ""} from ${V0} to ${vocabSize} rows needs ${tables * vocabSize * rowBytes} bytes, ` +
        `over this device's maxBufferSize (${ctx.limits.maxBufferSize}) or the ${ctx.memoryAvailable} bytes left of the GPU memory budget (${ctx.memoryBudget.source})`,
      "check the tokenizer's added tokens (their ids set the new vocabulary size)",
    );
  }
  const grow = async (t: Tensor, label: string): Promise<Tensor> => {
    const old = await readF32(t);
    const data = new Float32Array(vocabSize * D);
    data.set(old);
    const mean = new Float64Array(D);
    for (let r = 0; r < V0; r++) for (let k = 0; k < D; k++) mean[k]! += old[r * D + k]!;
    for (let r = V0; r < vocabSize; r++) for (let k = 0; k < D; k++) data[r * D + k] = mean[k]! / V0;
    return t.dtype === "f16" ? ctx.upload(f32ArrayToF16(data), [vocabSize, D], "f16", label) : ctx.upload(data, [vocabSize, D], "f32", label);
  };
  const embed = await grow(w.embed, "model.embed_tokens.weight");
  const tied = w.lmHead === w.embed;
  const lmHead = tied ? embed : await grow(w.lmHead, "lm_head.weight");
  const d = new Decoder(ctx, { ...decoder.config, vocabSize }, { ...w, embed, lmHead });
  return {
    decoder: d,
    dispose: () => {
      embed.dispose();
      if (!tied) lmHead.dispose();
    },
  };
}
