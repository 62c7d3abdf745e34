// `onegen serve`'s batching engine (src/serve/engine.ts) at concurrency 1, 2, 4, 8 (16 in the
// full run; SERVE_BENCH_LEVELS=1,8 for a reduced run): C sequences submitted at once, each an
// 8-token prompt and N greedy tokens (ignoreEos, so every sequence runs its N steps;
// SERVE_BENCH_TOKENS, default 16), on the ~134M-parameter Llama shape (full) or the tiny shape
// (--quick). Arms (SERVE_BENCH_ARMS, comma-separated; default the four captured ones), alternated
// sample by sample in one process (the machine's load swings between minutes, so only ratios from
// one run mean much):
//   rows        the engine's default step (captured: one step program per batch bucket, ids
//               sampled and fed on the GPU, one readback per step), projections row-major (what
//               `onegen serve` loaded before this comparison);
//   tiles       the same with the projections in the tiles layout (loadDecoder's gemvLayout
//               'tiles', what "auto" gives on software adapters);
//   rows-nosg, tiles-nosg   the same on a second device opened without the 'subgroups' feature:
//               the linear resolver as it was before gemv_bcast (gemv/gemv_tiled for M ≤ 2,
//               matmul t4x8 above; src/ops/linear.ts resolveLinear; nothing else auto-picks a
//               subgroup kernel), i.e. the "before" arms;
//   forward     the earlier step design (stepMode "forward": one Decoder.forward encoded op by op
//               per step, uploads per step), rows.
// Reported per arm and concurrency: total generated tokens/s over the whole run (prefill
// included), the median per-request latency (submit → last token), the ratio of the total
// throughput to the same arm at concurrency 1 and to the rows-nosg arm at the same concurrency,
// and per step the host's encode time and the wait for the step's readback. Beside the wall-clock
// rate, tokens per CPU-second of the process (process.cpuUsage: the host thread and lavapipe's
// worker threads, which run the "GPU" work), a figure that swings much less with the machine's
// load than wall time on a shared machine (bench/results/2026-12-02-5ef4eca-gemv-step-ab.json made
// the same observation). The engine is driven directly (no HTTP: the server adds a JSON/SSE write
// per token on the host). Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import { openDevice } from "../src/gpu/device.js";
import type { Decoder } from "../src/model/decoder.js";
import { gemvTiledShape } from "../src/ops/linear.js";
import { BatchEngine } from "../src/serve/engine.js";
import { buildSynthetic, tiledDecoder, type SyntheticModel } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

const ARM_NAMES = ["rows", "tiles", "rows-nosg", "tiles-nosg", "forward"] as const;
type ArmName = (typeof ARM_NAMES)[number];
const BASE_ARM: ArmName = "rows-nosg";

function listEnv<T extends string | number>(name: string, parse: (s: string) => T, ok: (v: T) => boolean, fallback: T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const vs = raw.split(",").map((s) => parse(s.trim()));
  for (const v of vs) if (!ok(v)) throw new Error(`serve bench: ${name}='${raw}': '${v}' is not allowed`);
  return vs;
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shape = env.quick ? "tiny" : "llama-134m";
  const N = env.quick ? 16 : Number(process.env.SERVE_BENCH_TOKENS ?? 16);
  const samples = env.quick ? 1 : 3;
  const levels = listEnv("SERVE_BENCH_LEVELS", Number, (v) => Number.isInteger(v) && v >= 1 && v <= 64, env.quick ? [1, 2, 4, 8] : [1, 2, 4, 8, 16]);
  const arms = listEnv("SERVE_BENCH_ARMS", (s) => s as ArmName, (v) => ARM_NAMES.includes(v), ["rows", "tiles", "rows-nosg", "tiles-nosg"]);
  const slot = 8 + N + 8;
  const maxBatch = Math.max(...levels);
  const T = gemvTiledShape(ctx).T;
  const cleanup: (() => void)[] = [];
  // One model per device (same seed, same weights); the tiles are made from it.
  const noSg = arms.some((a) => a.endsWith("-nosg")) ? await openDevice({ disableFeatures: ["subgroups"] }) : null;
  if (noSg) cleanup.push(() => noSg.destroy());
  const models = new Map<GpuContext, SyntheticModel>();
  const modelOn = async (c: GpuContext): Promise<SyntheticModel> => {
    let m = models.get(c);
    if (!m) {
      m = await buildSynthetic(c, shape);
      models.set(c, m);
      const mm = m;
      cleanup.unshift(() => mm.dispose());
    }
    return m;
  };
  const decoderFor = async (a: ArmName): Promise<Decoder> => {
    const c = a.endsWith("-nosg") ? noSg! : ctx;
    const m = await modelOn(c);
    if (!a.startsWith("tiles")) return m.decoder;
    const t = await tiledDecoder(c, m, T);
    cleanup.unshift(() => t.dispose());
    return t.decoder;
  };
  const engines = new Map<ArmName, BatchEngine>();
  for (const a of arms) {
    const e = new BatchEngine(await decoderFor(a), { maxBatch, slotTokens: slot, maxQueue: 0, eosIds: [], decode: () => "", stepMode: a === "forward" ? "forward" : "captured" });
    engines.set(a, e);
  }
  const V = [...models.values()][0]!.config.vocabSize;
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
    const base = new Map<ArmName, number>();
    const cpuBase = new Map<ArmName, number>();
    for (const C of levels) {
      const got = new Map(arms.map((a) => [a, { rates: [] as number[], cpuRates: [] as number[], lat: [] as number[], host: [] as number[], wait: [] as number[] }]));
      for (let s = 0; s < samples; s++) {
        for (const a of s % 2 === 0 ? arms : [...arms].reverse()) {
          const r = await once(engines.get(a)!, C, N);
          const g = got.get(a)!;
          g.rates.push((r.tokens / r.ms) * 1000);
          g.cpuRates.push((r.tokens / r.cpuMs) * 1000);
          g.lat.push(...r.latencies);
          g.host.push(r.hostMs / r.steps);
          g.wait.push(r.waitMs / r.steps);
        }
      }
      for (const a of arms) {
        const g = got.get(a)!;
        const tps = median(g.rates);
        const cps = median(g.cpuRates);
        if (C === levels[0]) base.set(a, tps);
        if (C === levels[0]) cpuBase.set(a, cps);
        const cpuRatio = cps / cpuBase.get(a)!;
        const lat = [...g.lat].sort((x, y) => x - y);
        const latency = median(lat);
        const ratio = tps / base.get(a)!;
        const b = got.get(BASE_ARM);
        const vsBase = b ? tps / median(b.rates) : NaN;
        const cpuVsBase = b ? cps / median(b.cpuRates) : NaN;
        env.log(`serve: ${shape} ${a} concurrency ${C}: ${tps.toFixed(2)} tokens/s total (×${ratio.toFixed(2)} of concurrency ${levels[0]}, ×${vsBase.toFixed(2)} of ${BASE_ARM}), median latency ${latency.toFixed(0)} ms for ${N} tokens; ${cps.toFixed(2)} tokens per CPU-second (×${cpuRatio.toFixed(2)} of concurrency ${levels[0]}, ×${cpuVsBase.toFixed(2)} of ${BASE_ARM}); per step host ${median(g.host).toFixed(1)} ms, readback wait ${median(g.wait).toFixed(1)} ms`);
        rows.push(
          row(
            env,
            {
              bench: "serve",
              variant: `${a} concurrency ${C}`,
              shape: `${shape}, 8-token prompts, ${N} greedy tokens each`,
              extra: { tokensPerS: tps, ratioToOne: ratio, tokensPerCpuS: cps, cpuRatioToOne: cpuRatio, ratioToBase: vsBase, cpuRatioToBase: cpuVsBase, medianLatencyMs: latency, hostMsPerStep: median(g.host), waitMsPerStep: median(g.wait) },
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
    for (const f of cleanup) f();
  }
  return rows;
}
