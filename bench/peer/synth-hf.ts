// Synthetic Hugging Face model directories for the peer comparison and the 7B quantization bench:
// the named shapes of bench/synthetic.ts written to disk (config.json, F16 or BF16 safetensors,
// one file or shards listed by model.safetensors.index.json as transformers' save_pretrained
// writes them, and the Llama-2 tokenizer of test/fixtures/llama2-tokenizer when the vocabulary is
// 32,000 plus the shape's added tokens, e.g. OneGen's [_CONTINUE_], [SE], [LK]), so that our
// loader and llama.cpp (through bench/peer/convert.ts) read the same weights.
//
// Weights as bench/synthetic.ts makes them on the GPU: one host block of seeded normal values
// (std 0.02) tiled into every matrix from a per-tensor start, RMSNorm weights 1. Written streaming
// (one tensor in memory at a time: the largest, a 7B embedding, is 262 MB) through writeDirAtomic
// (the directory is tagged as our model output); `synthetic.json` records shape, layers, dtype,
// shards, seed and generator version, so a later run reuses a directory that matches and rewrites
// one that does not.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { layoutSafetensors } from "../../src/io/safetensors-write.js";
import { writeDirAtomic } from "../../src/io/output.js";
import { expectedTensors } from "../../src/model/config.js";
import { addTokensToTokenizerJson } from "../../src/tokenizer.js";
import { f32ArrayToF16, f32ToBf16Bits } from "../../src/util/f16.js";
import { Rng } from "../../src/util/rng.js";
import { SYNTHETIC_SHAPES, syntheticConfig, type SyntheticShapeName } from "../synthetic.js";

const RANDOM_BLOCK = (1 << 21) + 1994;
const WEIGHT_STD = 0.02;
const GENERATOR = "onegen-peer-synth-1";
/** Tokens OneGen's entity-linking checkpoints add to Llama-2's vocabulary (ids 32000, 32001, 32002). */
export const ONEGEN_EL_ADDED_TOKENS = ["[_CONTINUE_]", "[SE]", "[LK]"] as const;
const LLAMA2_VOCAB = 32000;

export interface SyntheticDirOptions {
  seed?: number;
  /** Weight dtype on disk (default F16). */
  dtype?: "F16" | "BF16";
  /** Safetensors files (default 1: model.safetensors; N > 1: model-0000i-of-0000N.safetensors + index). */
  shards?: number;
  /** Decoder layers instead of the shape's (a cut-down stack). */
  layers?: number;
}

export interface SyntheticDirInfo {
  generator: string;
  shape: SyntheticShapeName;
  seed: number;
  /** The shape's config fields as written (a shape whose definition changed does not match). */
  config?: Record<string, number>;
  /** Absent when F16, one file, the shape's layers. */
  dtype?: "F16" | "BF16";
  shards?: number;
  layers?: number;
}

function infoOf(shape: SyntheticShapeName, o: SyntheticDirOptions): SyntheticDirInfo {
  const layers = o.layers ?? SYNTHETIC_SHAPES[shape].num_hidden_layers;
  const info: SyntheticDirInfo = { generator: GENERATOR, shape, seed: o.seed ?? 1234, config: { ...SYNTHETIC_SHAPES[shape], num_hidden_layers: layers } };
  // The defaults keep the record of earlier directories (so they still match).
  if ((o.dtype ?? "F16") !== "F16") info.dtype = o.dtype!;
  if ((o.shards ?? 1) !== 1) info.shards = o.shards!;
  if (layers !== SYNTHETIC_SHAPES[shape].num_hidden_layers) info.layers = layers;
  return info;
}

/** The safetensors files of a directory written with `shards` files, in order. */
export function shardFileNames(shards: number): string[] {
  if (shards === 1) return ["model.safetensors"];
  const w = (n: number): string => String(n).padStart(5, "0");
  return Array.from({ length: shards }, (_, i) => `model-${w(i + 1)}-of-${w(shards)}.safetensors`);
}

/** The tokenizer copied into directories whose vocabulary is Llama-2's. */
export function llama2TokenizerDir(repoRoot: string): string {
  return join(repoRoot, "test", "fixtures", "llama2-tokenizer");
}

/** Whether `dir` already holds the synthetic model of `shape` (and `seed`, dtype, shards, layers). */
export async function syntheticDirMatches(dir: string, shape: SyntheticShapeName, seed: number | SyntheticDirOptions): Promise<boolean> {
  const want = infoOf(shape, typeof seed === "number" ? { seed } : seed);
  try {
    const info = JSON.parse(await readFile(join(dir, "synthetic.json"), "utf8")) as SyntheticDirInfo;
    return JSON.stringify(info) === JSON.stringify(want);
  } catch {
    return false;
  }
}

/**
 * Writes the synthetic model directory of `shape` (F16 weights in one file unless `opts` says
 * otherwise). Shards split the tensors in the state-dict order (embeddings, layers, final norm,
 * lm_head) by cumulative size (a tensor goes where its middle byte falls) into `shards` files of
 * about equal size, as save_pretrained does
 * with a max_shard_size; model.safetensors.index.json maps every tensor to its file. Returns the path.
 */
export async function writeSyntheticModelDir(dir: string, shape: SyntheticShapeName, repoRoot: string, seedOrOpts: number | SyntheticDirOptions = 1234): Promise<string> {
  const o: SyntheticDirOptions = typeof seedOrOpts === "number" ? { seed: seedOrOpts } : seedOrOpts;
  const seed = o.seed ?? 1234;
  const dtype = o.dtype ?? "F16";
  const shards = o.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`synthetic: shards must be a positive integer, got ${shards}`);
  const c = syntheticConfig(shape, o.layers !== undefined ? { layers: o.layers } : {});
  const s = { ...SYNTHETIC_SHAPES[shape], num_hidden_layers: c.numLayers };
  const tensors = expectedTensors(c);
  const indexOf = new Map(tensors.map((t, i) => [t.name, i]));
  const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
  const totalBytes = tensors.reduce((a, t) => a + numel(t.shape) * 2, 0);
  // Shard of each tensor: by the byte offset of its middle in state-dict order.
  const files = shardFileNames(shards);
  const shardOf = new Map<string, number>();
  let at = 0;
  for (const t of tensors) {
    const n = numel(t.shape) * 2;
    shardOf.set(t.name, Math.min(shards - 1, Math.floor(((at + n / 2) * shards) / totalBytes)));
    at += n;
  }
  for (let i = 0; i < shards; i++) if (![...shardOf.values()].includes(i)) throw new Error(`synthetic: ${shards} shards leave shard ${i + 1} empty for shape ${shape}`);
  const block32 = new Rng(seed).fillNormal(RANDOM_BLOCK, WEIGHT_STD);
  const block = dtype === "F16" ? f32ArrayToF16(block32) : Uint16Array.from(block32, (x) => f32ToBf16Bits(x));
  const one = dtype === "F16" ? 0x3c00 : 0x3f80;
  const added = c.vocabSize - LLAMA2_VOCAB;
  const addedTokens = added === 0 ? [] : added === ONEGEN_EL_ADDED_TOKENS.length ? [...ONEGEN_EL_ADDED_TOKENS] : null;
  const withTokenizer = addedTokens !== null;
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...s,
    hidden_act: "silu",
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtype === "F16" ? "float16" : "bfloat16",
  };
  return writeDirAtomic(
    dir,
    "model",
    async (w) => {
      await w.writeFile("config.json", JSON.stringify(config, null, 2) + "\n");
      await w.writeFile("synthetic.json", JSON.stringify(infoOf(shape, o)) + "\n");
      if (withTokenizer) {
        const tdir = llama2TokenizerDir(repoRoot);
        const tj = JSON.parse(await readFile(join(tdir, "tokenizer.json"), "utf8")) as unknown;
        const cfg = JSON.parse(await readFile(join(tdir, "tokenizer_config.json"), "utf8")) as { added_tokens_decoder: Record<string, unknown>; additional_special_tokens?: string[] };
        const { json, ids } = addTokensToTokenizerJson(tj, addedTokens);
        ids.forEach((id, i) => (cfg.added_tokens_decoder[String(id)] = { content: addedTokens[i], lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }));
        if (addedTokens.length > 0) cfg.additional_special_tokens = [...addedTokens];
        await w.writeFile("tokenizer.json", JSON.stringify(json));
        await w.writeFile("tokenizer_config.json", JSON.stringify(cfg, null, 2) + "\n");
      }
      if (shards > 1) {
        const weightMap = Object.fromEntries(tensors.map((t) => [t.name, files[shardOf.get(t.name)!]!]));
        await w.writeFile("model.safetensors.index.json", JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + "\n");
      }
      for (let f = 0; f < shards; f++) {
        const mine = tensors.filter((t) => shardOf.get(t.name) === f);
        const specs = new Map(mine.map((t) => [t.name, { dtype, shape: t.shape }]));
        const layout = layoutSafetensors(specs, { format: "pt" });
        const sink = await w.open(files[f]!);
        try {
          await sink.write(layout.headerBytes);
          for (const name of layout.order) {
            const n = numel(specs.get(name)!.shape);
            const out = new Uint16Array(n);
            if (/norm\.weight$/.test(name)) out.fill(one);
            else {
              let src = (indexOf.get(name)! * 7919 * 2) % RANDOM_BLOCK;
              for (let off = 0; off < n; ) {
                const k = Math.min(RANDOM_BLOCK - src, n - off);
                out.set(block.subarray(src, src + k), off);
                off += k;
                src = 0;
              }
            }
            await sink.write(new Uint8Array(out.buffer));
          }
          await sink.sync();
        } finally {
          await sink.close();
        }
      }
    },
    { flag: "--models-dir" },
  );
}
