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
// throughput to the same arm at concurrency 1 (of the medians, and the median of the per-sample
// ratios: each sample runs every level and arm once, so the levels are interleaved too) and to
// the rows-nosg arm at the same concurrency,
// and per step the host's encode time and the wait for the step's readback. Beside the wall-clock
// rate, tokens per CPU-second of the process (process.cpuUsage: the host thread and lavapipe's
// worker threads, which run the "GPU" work), a figure that swings much less with the machine's
// load than wall time on a shared machine (bench/results/2026-12-02-5ef4eca-gemv-step-ab.json made
// the same observation). The engine is driven directly (no HTTP: the server adds a JSON/SSE write
// per token on the host). Figures, never assertions.
// Mixed arm (a retrieval request beside plain streams; SERVE_BENCH_PART=mixed runs it alone,
// =levels the concurrency levels alone): 4 plain streams (8-token prompts, NP greedy tokens,
// ignoreEos) submitted together with 1 retrieval job: a Session of its own with OneGen's in-loop
// retrieval hook (a synthetic index of 10^3 entries, injection of the hit's 16-token document),
// NR greedy tokens, 4 steps per readback; its query token is the id its greedy run without the
// hook emits most, so it retrieves and injects several times. Arms, alternated per sample:
//   exclusive  the retrieval job holds the device for its whole run (engine.exclusive: serve's
//              design before the job took turns): the plain streams stall meanwhile;
//   turns      the job takes turns with the batch (engine.interleave, the readbacks through its
//              turn: serve's --retrieval turns);
//   rows       the job as a row of the batched step (a RowTask: query tokens read from the
//              step's ids, searched and injected between steps: serve's default); its ids are
//              checked equal to the job on its own session;
//   plain      the 4 plain streams alone; retrieval: the job alone (references).
// Reported: the plain streams' total tokens/s (submit → last end), their tokens/s while the job
// ran, and the job's latency (start → end); for the rows arm also its searches (engine.stats: on a
// step's own final-norm row, or by a one-row forward) and the milliseconds each held the batch.
// SERVE_BENCH_MIXED_ARMS (comma-separated) runs some of the arms (ratios to an arm left out read 0).
import type { GpuContext } from "../src/gpu/context.js";
import { openDevice } from "../src/gpu/device.js";
import type { Decoder } from "../src/model/decoder.js";
import { gemvTiledShape } from "../src/ops/linear.js";
import { BatchEngine } from "../src/serve/engine.js";
import type { DeviceTurn } from "../src/model/session.js";
import { Session } from "../src/model/session.js";
import { DocumentIndex } from "../src/onegen/index.js";
import { generateOnePass } from "../src/onegen/loop.js";
import { buildSynthetic, fillSyntheticIndex, tiledDecoder, type SyntheticModel } from "./synthetic.js";
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
  const part = process.env.SERVE_BENCH_PART ?? "all";
  if (!["all", "levels", "mixed"].includes(part)) throw new Error(`serve bench: SERVE_BENCH_PART must be all, levels or mixed, got '${part}'`);
  const rows: BenchRow[] = [];
  if (part !== "mixed") rows.push(...(await benchLevels(ctx, env)));
  if (part !== "levels") rows.push(...(await benchMixed(ctx, env)));
  return rows;
}

async function benchLevels(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
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
    type Got = { rates: number[]; cpuRates: number[]; lat: number[]; host: number[]; wait: number[] };
    const gotAt = new Map(levels.map((C) => [C, new Map(arms.map((a) => [a, { rates: [], cpuRates: [], lat: [], host: [], wait: [] } as Got]))]));
    // Samples outermost, the levels (and the arms) interleaved inside each, their order reversed
    // every other sample: a level's ratio to the first level compares minutes alike.
    for (let s = 0; s < samples; s++) {
      for (const C of s % 2 === 0 ? levels : [...levels].reverse()) {
        for (const a of s % 2 === 0 ? arms : [...arms].reverse()) {
          const r = await once(engines.get(a)!, C, N);
          const g = gotAt.get(C)!.get(a)!;
          g.rates.push((r.tokens / r.ms) * 1000);
          g.cpuRates.push((r.tokens / r.cpuMs) * 1000);
          g.lat.push(...r.latencies);
          g.host.push(r.hostMs / r.steps);
          g.wait.push(r.waitMs / r.steps);
        }
      }
    }
    for (const C of levels) {
      const got = gotAt.get(C)!;
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
        // the same ratio sample by sample (the samples of both levels ran in the same pass), median
        const first = gotAt.get(levels[0]!)!.get(a)!.rates;
        const paired = median(g.rates.map((x, i) => x / first[i]!));
        const b = got.get(BASE_ARM);
        const vsBase = b ? tps / median(b.rates) : NaN;
        const cpuVsBase = b ? cps / median(b.cpuRates) : NaN;
        env.log(`serve: ${shape} ${a} concurrency ${C}: ${tps.toFixed(2)} tokens/s total (×${ratio.toFixed(2)} of concurrency ${levels[0]}, sample by sample ×${paired.toFixed(2)}, ×${vsBase.toFixed(2)} of ${BASE_ARM}), median latency ${latency.toFixed(0)} ms for ${N} tokens; ${cps.toFixed(2)} tokens per CPU-second (×${cpuRatio.toFixed(2)} of concurrency ${levels[0]}, ×${cpuVsBase.toFixed(2)} of ${BASE_ARM}); per step host ${median(g.host).toFixed(1)} ms, readback wait ${median(g.wait).toFixed(1)} ms`);
        rows.push(
          row(
            env,
            {
              bench: "serve",
              variant: `${a} concurrency ${C}`,
              shape: `${shape}, 8-token prompts, ${N} greedy tokens each`,
              extra: { tokensPerS: tps, ratioToOne: ratio, ratioToOnePaired: paired, tokensPerCpuS: cps, cpuRatioToOne: cpuRatio, ratioToBase: vsBase, cpuRatioToBase: cpuVsBase, medianLatencyMs: latency, hostMsPerStep: median(g.host), waitMsPerStep: median(g.wait) },
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

type MixedArm = "exclusive" | "turns" | "rows" | "plain" | "retrieval";

/** Plain streams beside one retrieval job (see the file header). */
async function benchMixed(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shape = env.quick ? "tiny" : "llama-134m";
  const NP = env.quick ? 16 : Number(process.env.SERVE_BENCH_PLAIN_TOKENS ?? 32);
  const NR = env.quick ? 12 : Number(process.env.SERVE_BENCH_RETRIEVAL_TOKENS ?? 16);
  const samples = env.quick ? 1 : Number(process.env.SERVE_BENCH_MIXED_SAMPLES ?? 3);
  const STREAMS = 4;
  const m: SyntheticModel = await buildSynthetic(ctx, shape);
  const V = m.config.vocabSize;
  const D = m.config.hiddenSize;
  const DOC = 16;
  const index = DocumentIndex.create(ctx, D);
  await fillSyntheticIndex(index, 1000, { documentTokens: DOC, tokenHigh: V - 8 });
  const slot = 8 + NP + 8;
  const capacity = 8 + 2 * NR + 8 * (DOC + 1); // prompt, tokens, up to 8 injections
  // one slot more for the rows arm's job, every slot as long as the job's session (the plain
  // streams' steps only attend to their own rows, so the other arms compute as before)
  const engine = new BatchEngine(m.decoder, { maxBatch: STREAMS + 1, slotTokens: Math.max(slot, capacity), maxQueue: 4, eosIds: [], decode: () => "", maxInterleaved: 1 });
  const jobPrompt = Array.from({ length: 8 }, (_, j) => (5 + 53 * j) % V);
  /** The retrieval job on its own session: tokens generated and retrievals made. */
  const job = async (query: number | null, turn?: DeviceTurn): Promise<{ ids: number[]; retrievals: number }> => {
    const s = Session.create(m.decoder, capacity);
    try {
      await s.append(jobPrompt);
      const ids: number[] = [];
      let retrievals = 0;
      const it = generateOnePass(s, {
        maxNewTokens: NR,
        temperature: 0,
        eosIds: [],
        stepsPerRead: 4,
        ...(query !== null ? { retrieval: { index, queryTokenId: query, k: 1, inject: { prefix: [], suffix: [] } } } : {}),
        ...(turn ? { turn } : {}),
      });
      for await (const t of it) {
        ids.push(t.id);
        if (t.retrieval) retrievals++;
      }
      return { ids, retrievals };
    } finally {
      s.dispose();
    }
  };
  /** The retrieval job as a row of the batched step. */
  const rowJob = (query: number): Promise<{ ids: number[]; retrievals: number }> =>
    new Promise((resolve, reject) => {
      const ids: number[] = [];
      let retrievals = 0;
      engine.submit(
        [
          {
            prompt: jobPrompt,
            temperature: 0,
            seed: 0,
            maxTokens: NR,
            stop: [],
            ignoreEos: true,
            task: {
              bannedIds: [],
              forceAfter: [],
              retrieval: { index, queryTokenId: query, k: 1, maxRetrievals: Infinity, inject: { prefix: [], suffix: [] } },
              onEvent: (e) => {
                if (e.type === "token") ids.push(e.id);
                else if (e.type === "retrieval") retrievals++;
                else if (e.type === "done") resolve({ ids, retrievals });
              },
            },
          },
        ],
        [{ onEnd: () => {}, onError: reject }],
      );
    });
  const rows: BenchRow[] = [];
  try {
    // the query token: the id the job's greedy run without the hook emits most (lowest on ties)
    const solo = await job(null);
    const counts = new Map<number, number>();
    for (const id of solo.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    const query = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
    const ref = await job(query);
    const once = async (arm: MixedArm) => {
      const t0 = performance.now();
      const g0 = engine.stats.tokensGenerated;
      let plainEnd = t0;
      let plainTokens = 0;
      const plainLat: number[] = [];
      const plain =
        arm === "retrieval"
          ? []
          : Array.from({ length: STREAMS }, (_, i) => {
              const prompt = Array.from({ length: 8 }, (_, j) => (1 + 97 * i + 31 * j) % V);
              return new Promise<void>((resolve, reject) => {
                engine.submit(
                  [{ prompt, temperature: 0, seed: 0, maxTokens: NP, stop: [], ignoreEos: true }],
                  [
                    {
                      onEnd: (r) => {
                        plainTokens += r.completionTokens;
                        plainEnd = performance.now();
                        plainLat.push(plainEnd - t0);
                        resolve();
                      },
                      onError: reject,
                    },
                  ],
                );
              });
            });
      let jobMs = 0;
      let during = 0;
      let retrievals = 0;
      const st0 = { ...engine.stats };
      if (arm !== "plain") {
        const j0 = performance.now();
        const gj = engine.stats.tokensGenerated;
        const r = arm === "turns" ? await engine.interleave((turn) => job(query, turn)).done : arm === "rows" ? await rowJob(query) : await engine.exclusive(() => job(query));
        if (r.ids.join() !== ref.ids.join()) throw new Error(`serve mixed bench: the ${arm} arm's job wrote other ids than the job alone`);
        jobMs = performance.now() - j0;
        during = engine.stats.tokensGenerated - gj;
        retrievals = r.retrievals;
      }
      await Promise.all(plain);
      if (arm !== "retrieval" && plainTokens !== STREAMS * NP) throw new Error(`serve mixed bench: ${plainTokens} plain tokens, expected ${STREAMS * NP}`);
      const plainMs = plainEnd - t0;
      if (arm !== "retrieval" && arm !== "rows" && engine.stats.tokensGenerated - g0 !== STREAMS * NP) throw new Error(`serve mixed bench: ${engine.stats.tokensGenerated - g0} plain tokens, expected ${STREAMS * NP}`);
      const searchForwards = engine.stats.searchForwards - st0.searchForwards;
      const searches = engine.stats.searchesFromStep - st0.searchesFromStep + engine.stats.searchesFromPrefill - st0.searchesFromPrefill + searchForwards;
      const searchMs = engine.stats.searchMs - st0.searchMs;
      return { plainTps: arm === "retrieval" ? 0 : (plainTokens / plainMs) * 1000, duringTps: jobMs > 0 ? (during / jobMs) * 1000 : 0, jobMs, retrievals, plainLat, searches, searchForwards, searchMs };
    };
    const MIXED_ARMS: MixedArm[] = ["exclusive", "turns", "rows", "plain", "retrieval"];
    const arms = listEnv("SERVE_BENCH_MIXED_ARMS", (s) => s as MixedArm, (v) => MIXED_ARMS.includes(v), MIXED_ARMS);
    // warm-up: pipelines, the step programs of widths 1..4, the pool
    const warm = arms.filter((a) => a === "turns" || a === "exclusive" || a === "rows");
    for (const a of warm.length ? warm : arms) await once(a);
    const got = new Map(arms.map((a) => [a, [] as Awaited<ReturnType<typeof once>>[]]));
    for (let i = 0; i < samples; i++) for (const a of i % 2 === 0 ? arms : [...arms].reverse()) got.get(a)!.push(await once(a));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const plainAlone = got.has("plain") ? median(got.get("plain")!.map((r) => r.plainTps)) : Infinity;
    const jobAlone = got.has("retrieval") ? median(got.get("retrieval")!.map((r) => r.jobMs)) : Infinity;
    const desc = `${shape}, ${STREAMS} plain streams × ${NP} greedy tokens + 1 retrieval job of ${NR} tokens (10^3 entries, ${DOC}-token injections, query id ${query})`;
    for (const a of arms) {
      const rs = got.get(a)!;
      const plainTps = median(rs.map((r) => r.plainTps));
      const duringTps = median(rs.map((r) => r.duringTps));
      const jobMs = median(rs.map((r) => r.jobMs));
      const retrievals = median(rs.map((r) => r.retrievals));
      const lat = rs.flatMap((r) => r.plainLat).sort((x, y) => x - y);
      const timed = a === "plain" ? lat : rs.map((r) => r.jobMs).sort((x, y) => x - y);
      // the rows arm's searches: how many ran a forward, and the median milliseconds one held the batch
      const searches = median(rs.map((r) => r.searches));
      const searchForwards = median(rs.map((r) => r.searchForwards));
      const perSearch = rs.filter((r) => r.searches > 0).map((r) => r.searchMs / r.searches);
      const searchMsEach = perSearch.length ? median(perSearch) : 0;
      env.log(
        `serve mixed: ${shape} ${a}: plain ${plainTps.toFixed(2)} tokens/s total (×${(plainTps / plainAlone).toFixed(2)} of the plain streams alone), ${duringTps.toFixed(2)} tokens/s while the job ran; retrieval job ${jobMs.toFixed(0)} ms (×${(jobMs / jobAlone).toFixed(2)} of alone), ${retrievals} retrievals` +
          (a === "rows" ? `; ${searches} searches (${searchForwards} by a one-row forward), ${searchMsEach.toFixed(1)} ms each between steps` : ""),
      );
      rows.push(
        row(
          env,
          {
            bench: "serve-mixed",
            variant: a,
            shape: desc,
            extra: { plainTokensPerS: plainTps, plainRatioToAlone: a === "retrieval" ? 0 : plainTps / plainAlone, plainTokensPerSDuringJob: duringTps, jobMs, jobRatioToAlone: a === "plain" ? 0 : jobMs / jobAlone, retrievals, plainMedianLatencyMs: lat.length ? median(lat) : 0, ...(a === "rows" ? { searches, searchForwards, searchMsEach } : {}) },
          },
          { medianMs: median(timed), minMs: timed[0]!, maxMs: timed[timed.length - 1]!, samples: timed.length },
        ),
      );
    }
  } finally {
    await engine.drain(0);
    engine.dispose();
    index.dispose();
    m.dispose();
  }
  return rows;
}
