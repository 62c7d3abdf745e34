// Index build throughput: encodeDocuments (src/onegen/encode.ts) on a synthetic decoder
// (bench/synthetic.ts) into a new DocumentIndex: documents/s, tokens/s and entries/s for a few
// batch sizes (tokens per packed forward). Figures are reported, never asserted.
//
// Documents: pre-tokenized random ids (seeded) of DOC_TOKENS tokens with the doc token at every
// FRAGMENT_EVERY-th position and at the end, so each document gives DOC_TOKENS / FRAGMENT_EVERY
// entries. Each sample is one encodeDocuments call over all documents, timed from the call to its
// return (encodeDocuments waits for every batch's forward, so the vectors are in the index); the
// index is disposed after each sample. A warm-up call on a few documents compiles the pipelines
// and computes the model fingerprint (cached per decoder) first.
// GFLOP/s counts the decoder's matrix FLOPs (2 · non-embedding matrix parameters per token; no
// lm_head: encodeDocuments computes no logits) plus the causal attention within each document.
import type { GpuContext } from "../src/gpu/context.js";
import { encodeDocuments, type DocumentInput } from "../src/onegen/encode.js";
import { Rng } from "../src/util/rng.js";
import type { ModelConfig } from "../src/model/config.js";
import { buildSynthetic, type SyntheticShapeName } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";

interface Case {
  shape: SyntheticShapeName;
  documents: number;
  docTokens: number;
  batchTokens: number[];
  samples: number;
}

/** One doc token every this many tokens (the last token is always one). */
const FRAGMENT_EVERY = 32;

function cases(quick: boolean): { list: Case[]; skipped: string[] } {
  if (quick) return { list: [{ shape: "tiny", documents: 16, docTokens: 32, batchTokens: [256], samples: 2 }], skipped: [] };
  return {
    list: [
      { shape: "tiny", documents: 128, docTokens: 64, batchTokens: [128, 512, 2048], samples: 2 },
      // ≈ 0.17 GFLOP per token: 1,024 tokens took 21 s at batchTokens 1024 and 31 s at 256 (2026-11-24).
      { shape: "llama-134m", documents: 16, docTokens: 64, batchTokens: [1024], samples: 1 },
    ],
    skipped: ["llama-134m: 16 documents, batchTokens 1024 only, one sample (≈ 21 s here; batchTokens 256 took 31 s, 2026-11-24); TinyLlama and larger shapes skipped for time"],
  };
}

function stats(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)]!, minMs: s[0]!, maxMs: s[s.length - 1]!, samples: s.length };
}

/** Matrix FLOPs per token without lm_head, and attention FLOPs of one causal document of n tokens. */
function encodeFlops(c: ModelConfig, n: number): number {
  const D = c.hiddenSize, I = c.intermediateSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const matrix = 2 * (D * q + 2 * D * kv + q * D + 3 * D * I) * n;
  const attention = 4 * c.numHeads * c.headDim * ((n * (n + 1)) / 2);
  return c.numLayers * (matrix + attention);
}

function makeDocs(rng: Rng, count: number, len: number, docToken: number, V: number, prefix: string): DocumentInput[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length: len }, (_, p) => ((p + 1) % FRAGMENT_EVERY === 0 || p === len - 1 ? docToken : rng.int(V - 8)));
    return { id: `${prefix}-${i}`, ids };
  });
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const { list, skipped } = cases(env.quick);
  for (const s of skipped) env.log(`index-build: ${s}`);
  const rows: BenchRow[] = [];
  for (const c of list) {
    await ctx.sync();
    ctx.pool.trim();
    const m = await buildSynthetic(ctx, c.shape);
    try {
      const V = m.config.vocabSize;
      const DOC = V - 1;
      const rng = new Rng(5);
      const docs = makeDocs(rng, c.documents, c.docTokens, DOC, V, "doc");
      const tokens = c.documents * c.docTokens;
      const entriesPerDoc = docs[0]!.ids!.filter((t) => t === DOC).length;
      const flops = c.documents * encodeFlops(m.config, c.docTokens);
      // warm-up: two documents in one forward compile the pipelines (prefill kernels do not depend on T)
      const w = await encodeDocuments(m.decoder, makeDocs(rng, 2, c.docTokens, DOC, V, "warm"), { docTokenId: DOC, batchTokens: 2 * c.docTokens });
      w.dispose();
      for (const bt of c.batchTokens) {
        const times: number[] = [];
        let entries = 0;
        for (let s = 0; s < c.samples; s++) {
          await ctx.sync();
          const t0 = performance.now();
          const index = await encodeDocuments(m.decoder, docs, { docTokenId: DOC, batchTokens: bt });
          times.push(performance.now() - t0);
          entries = index.count;
          index.dispose();
        }
        if (entries !== c.documents * entriesPerDoc) throw new Error(`index-build: ${entries} entries, expected ${c.documents * entriesPerDoc}`);
        const t = stats(times);
        const sec = t.medianMs / 1e3;
        const r = row(env, { bench: "index-build", variant: "encodeDocuments", shape: `${m.name} batchTokens=${bt} ${c.documents}×${c.docTokens} tok`, flops }, t);
        r.extra = {
          model: m.name,
          batchTokens: bt,
          documents: c.documents,
          tokensPerDocument: c.docTokens,
          entries,
          docsPerS: c.documents / sec,
          tokensPerS: tokens / sec,
          entriesPerS: entries / sec,
          batches: Math.ceil(tokens / (Math.floor(bt / c.docTokens) * c.docTokens)),
        };
        rows.push(r);
        env.log(
          `index-build ${m.name} batchTokens=${bt}: ${(c.documents / sec).toFixed(1)} documents/s, ${(tokens / sec).toFixed(0)} tokens/s, ${(entries / sec).toFixed(1)} entries/s ` +
            `(${c.documents} documents of ${c.docTokens} tokens in ${sec.toFixed(2)} s, ${r.gflops!.toFixed(2)} GFLOP/s, ${t.samples} sample(s))`,
        );
      }
    } finally {
      m.dispose();
      await ctx.sync();
      ctx.pool.trim();
    }
  }
  return rows;
}
