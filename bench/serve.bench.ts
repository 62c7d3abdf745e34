// `onegen serve`'s batching engine (src/serve/engine.ts) at concurrency 1, 2, 4, 8 (16 in the
// full run): C sequences submitted at once, each an 8-token prompt and N greedy tokens
// (ignoreEos, so every sequence runs its N steps), on the ~134M-parameter Llama shape (full) or
// the tiny shape (--quick). Two arms, alternated sample by sample in one process (the machine's
// load swings between minutes, so only ratios from one run mean much):
//   captured  the engine's default: one captured step program per batch bucket, ids sampled and
//             fed on the GPU, one readback per step;
//   forward   the earlier design (stepMode "forward"): one Decoder.forward encoded op by op per
//             step over every sequence's tokens, uploads per step.
// Reported per arm and concurrency: total generated tokens/s over the whole run (prefill
// included), the median per-request latency (submit → last token), the ratio of the total
// throughput to the same arm at concurrency 1, and per step the host's encode time and the wait
// for the step's readback. Beside the wall-clock rate, tokens per CPU-second of the process
// (process.cpuUsage: the host thread and lavapipe's worker threads, which run the "GPU" work), a
// figure that swings much less with the machine's load than wall time on a shared machine
// (bench/results/2026-12-02-5ef4eca-gemv-step-ab.json made the same observation). The engine is driven directly (no HTTP: the server adds a JSON/SSE
// write per token on the host). Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import { BatchEngine, type StepMode } from "../src/serve/engine.js";
import { buildSynthetic } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

const ARMS: readonly StepMode[] = ["forward", "captured"];

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shape = env.quick ? "tiny" : "llama-134m";
  const N = env.quick ? 16 : Number(process.env.SERVE_BENCH_TOKENS ?? 16);
  const samples = env.quick ? 1 : 3;
  const levels = env.quick ? [1, 2, 4, 8] : [1, 2, 4, 8, 16];
  const m = await buildSynthetic(ctx, shape);
  const V = m.config.vocabSize;
  const slot = 8 + N + 8;
  const maxBatch = Math.max(...levels);
  const engines = new Map(ARMS.map((a) => [a, new BatchEngine(m.decoder, { maxBatch, slotTokens: slot, maxQueue: 0, eosIds: [], decode: () => "", stepMode: a })]));
  const once = async (engine: BatchEngine, C: number, n: number) => {
    const s0 = { ...engine.stats };
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const latencies: number[] = [];
    let tokens = 0;
    await Promise.all(
      Array.from({ length: C }, (_, i) => {
        const prompt = Array.from({ length: 8 }, (_, j) => (1 + 97 * i + 31 * j) % V);
        return new Promise<void>((resolve, reject) => {
          engine.submit(
            [{ prompt, temperature: 0, seed: 0, maxTokens: n, stop: [], ignoreEos: true }],
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
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const s = engine.stats;
    const steps = s.steps - s0.steps;
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000, tokens, latencies, steps, hostMs: s.hostMs - s0.hostMs, waitMs: s.waitMs - s0.waitMs };
  };
  const rows: BenchRow[] = [];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  try {
    // warm-up: the pipelines and captured programs of every batch size, the pool (3 tokens: one
    // prefill step, two decode steps)
    for (const C of levels) for (const e of engines.values()) await once(e, C, 3);
    const base = new Map<StepMode, number>();
    const cpuBase = new Map<StepMode, number>();
    for (const C of levels) {
      const got = new Map(ARMS.map((a) => [a, { rates: [] as number[], cpuRates: [] as number[], lat: [] as number[], host: [] as number[], wait: [] as number[] }]));
      for (let s = 0; s < samples; s++) {
        for (const a of s % 2 === 0 ? ARMS : [...ARMS].reverse()) {
          const r = await once(engines.get(a)!, C, N);
          const g = got.get(a)!;
          g.rates.push((r.tokens / r.ms) * 1000);
          g.cpuRates.push((r.tokens / r.cpuMs) * 1000);
          g.lat.push(...r.latencies);
          g.host.push(r.hostMs / r.steps);
          g.wait.push(r.waitMs / r.steps);
        }
      }
      for (const a of ARMS) {
        const g = got.get(a)!;
        const tps = median(g.rates);
        const cps = median(g.cpuRates);
        if (C === 1) base.set(a, tps);
        if (C === 1) cpuBase.set(a, cps);
        const cpuRatio = cps / cpuBase.get(a)!;
        const lat = [...g.lat].sort((x, y) => x - y);
        const latency = median(lat);
        const ratio = tps / base.get(a)!;
        const vsForward = a === "forward" ? 1 : tps / median(got.get("forward")!.rates);
        env.log(`serve: ${shape} ${a} concurrency ${C}: ${tps.toFixed(2)} tokens/s total (×${ratio.toFixed(2)} of one stream, ×${vsForward.toFixed(2)} of forward), median latency ${latency.toFixed(0)} ms for ${N} tokens; ${cps.toFixed(2)} tokens per CPU-second (×${cpuRatio.toFixed(2)} of one stream); per step host ${median(g.host).toFixed(1)} ms, readback wait ${median(g.wait).toFixed(1)} ms`);
        rows.push(
          row(
            env,
            {
              bench: "serve",
              variant: `${a} concurrency ${C}`,
              shape: `${shape}, 8-token prompts, ${N} greedy tokens each`,
              extra: { tokensPerS: tps, ratioToOne: ratio, tokensPerCpuS: cps, cpuRatioToOne: cpuRatio, ratioToForward: vsForward, medianLatencyMs: latency, hostMsPerStep: median(g.host), waitMsPerStep: median(g.wait) },
            },
            { medianMs: latency, minMs: lat[0]!, maxMs: lat[lat.length - 1]!, samples: lat.length },
          ),
        );
      }
    }
  } finally {
    for (const e of engines.values()) {
      await e.drain(0);
      e.dispose();
    }
    m.dispose();
  }
  return rows;
}
