// Synthetic Hugging Face model directories for the peer comparison: the named shapes of
// bench/synthetic.ts written to disk (config.json, one F16 model.safetensors, and the Llama-2
// tokenizer of test/fixtures/llama2-tokenizer when the vocabulary is 32,000), so that our loader
// and llama.cpp (through bench/peer/convert.ts) read the same weights.
//
// Weights as bench/synthetic.ts makes them on the GPU: one host block of seeded normal values
// (std 0.02) tiled into every matrix from a per-tensor start, RMSNorm weights 1. Written streaming
// (one tensor in memory at a time) through writeDirAtomic (the directory is tagged as our model
// output); `synthetic.json` records shape, seed and generator version, so a later run reuses a
// directory that matches and rewrites one that does not.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { layoutSafetensors } from "../../src/io/safetensors-write.js";
import { writeDirAtomic } from "../../src/io/output.js";
import { expectedTensors } from "../../src/model/config.js";
import { f32ArrayToF16 } from "../../src/util/f16.js";
import { Rng } from "../../src/util/rng.js";
import { SYNTHETIC_SHAPES, syntheticConfig, type SyntheticShapeName } from "../synthetic.js";

const RANDOM_BLOCK = (1 << 21) + 1994;
const WEIGHT_STD = 0.02;
const GENERATOR = "onegen-peer-synth-1";

export interface SyntheticDirInfo {
  generator: string;
  shape: SyntheticShapeName;
  seed: number;
}

/** The tokenizer copied into directories whose vocabulary is Llama-2's. */
export function llama2TokenizerDir(repoRoot: string): string {
  return join(repoRoot, "test", "fixtures", "llama2-tokenizer");
}

/** Whether `dir` already holds the synthetic model of `shape` and `seed`. */
export async function syntheticDirMatches(dir: string, shape: SyntheticShapeName, seed: number): Promise<boolean> {
  try {
    const info = JSON.parse(await readFile(join(dir, "synthetic.json"), "utf8")) as SyntheticDirInfo;
    return info.generator === GENERATOR && info.shape === shape && info.seed === seed;
  } catch {
    return false;
  }
}

/** Writes the synthetic model directory of `shape` (F16 weights). Returns its path. */
export async function writeSyntheticModelDir(dir: string, shape: SyntheticShapeName, repoRoot: string, seed = 1234): Promise<string> {
  const c = syntheticConfig(shape);
  const s = SYNTHETIC_SHAPES[shape];
  const tensors = expectedTensors(c);
  const specs = new Map(tensors.map((t) => [t.name, { dtype: "F16" as const, shape: t.shape }]));
  const layout = layoutSafetensors(specs, { format: "pt" });
  const block = f32ArrayToF16(new Rng(seed).fillNormal(RANDOM_BLOCK, WEIGHT_STD));
  const indexOf = new Map(tensors.map((t, i) => [t.name, i]));
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...s,
    hidden_act: "silu",
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float16",
  };
  const withTokenizer = c.vocabSize === 32000;
  return writeDirAtomic(
    dir,
    "model",
    async (w) => {
      await w.writeFile("config.json", JSON.stringify(config, null, 2) + "\n");
      await w.writeFile("synthetic.json", JSON.stringify({ generator: GENERATOR, shape, seed } satisfies SyntheticDirInfo) + "\n");
      if (withTokenizer) {
        for (const f of ["tokenizer.json", "tokenizer_config.json"]) await w.writeFile(f, await readFile(join(llama2TokenizerDir(repoRoot), f)));
      }
      const sink = await w.open("model.safetensors");
      try {
        await sink.write(layout.headerBytes);
        for (const name of layout.order) {
          const spec = specs.get(name)!;
          const n = spec.shape.reduce((a, b) => a * b, 1);
          const out = new Uint16Array(n);
          if (/norm\.weight$/.test(name)) out.fill(0x3c00); // 1.0
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
    },
    { flag: "--models-dir" },
  );
}
