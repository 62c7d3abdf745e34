// `onegen serve`'s batching engine (src/serve/engine.ts) at concurrency 1, 2, 4, 8 (16 in the
// full run): C sequences submitted at once, each an 8-token prompt and N greedy tokens
// (ignoreEos, so every sequence runs its N steps), on the ~134M-parameter Llama shape (full) or
// the tiny shape (--quick). Reported per concurrency: total generated tokens/s over the whole run
// (prefill included), the median per-request latency (submit → last token), and the total
// throughput's ratio to concurrency 1 measured in the same run. The engine is driven directly
// (no HTTP: the server adds a JSON/SSE write per token on the host). Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import { BatchEngine } from "../src/serve/engine.js";
import { buildSynthetic } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shape = env.quick ? "tiny" : "llama-134m";
  const N = env.quick ? 16 : 32;
  const samples = env.quick ? 1 : 3;
  const levels = env.quick ? [1, 2, 4, 8] : [1, 2, 4, 8, 16];
  const m = await buildSynthetic(ctx, shape);
  const V = m.config.vocabSize;
  const slot = 8 + N + 8;
  const engine = new BatchEngine(m.decoder, { maxBatch: Math.max(...levels), slotTokens: slot, maxQueue: 0, eosIds: [], decode: () => "" });
  const once = async (C: number): Promise<{ ms: number; tokens: number; latencies: number[] }> => {
    const t0 = performance.now();
    const latencies: number[] = [];
    let tokens = 0;
    await Promise.all(
      Array.from({ length: C }, (_, i) => {
        const prompt = Array.from({ length: 8 }, (_, j) => (1 + 97 * i + 31 * j) % V);
        return new Promise<void>((resolve, reject) => {
          engine.submit(
            [{ prompt, temperature: 0, seed: 0, maxTokens: N, stop: [], ignoreEos: true }],
            [
              {
                onEnd: (r) => {
                  tokens += r.completionTokens;
                  latencies.push(performance.now() - t0);
                  resolve();
                },
                onError: reject,
              },
            ],
          );
        });
      }),
    );
    return { ms: performance.now() - t0, tokens, latencies };
  };
  const rows: BenchRow[] = [];
  try {
    for (const C of levels) await once(C); // warm-up: the pipelines of every batch size (kernel variants differ by rows), the pool
    let base = 0;
    for (const C of levels) {
      const rates: number[] = [];
      const lat: number[] = [];
      for (let s = 0; s < samples; s++) {
        const r = await once(C);
        rates.push((r.tokens / r.ms) * 1000);
        lat.push(...r.latencies);
      }
      rates.sort((a, b) => a - b);
      lat.sort((a, b) => a - b);
      const tps = rates[Math.floor(rates.length / 2)]!;
      if (C === 1) base = tps;
      const latency = lat[Math.floor(lat.length / 2)]!;
      env.log(`serve: ${shape} concurrency ${C}: ${tps.toFixed(1)} tokens/s total (×${(tps / base).toFixed(2)} of one stream), median latency ${latency.toFixed(0)} ms for ${N} tokens`);
      rows.push(
        row(
          env,
          { bench: "serve", variant: `concurrency ${C}`, shape: `${shape}, 8-token prompts, ${N} greedy tokens each`, extra: { tokensPerS: tps, ratioToOne: tps / base, medianLatencyMs: latency } },
          { medianMs: latency, minMs: lat[0]!, maxMs: lat[lat.length - 1]!, samples: lat.length },
        ),
      );
    }
  } finally {
    await engine.drain(0);
    engine.dispose();
    m.dispose();
  }
  return rows;
}
