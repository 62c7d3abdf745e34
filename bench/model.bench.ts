// Model-level benchmarks on synthetic checkpoints (bench/synthetic.ts): prefill tokens/s and
// decode tokens/s through the public Session API (Session.append / Session.generate, greedy).
//
// Prefill: session.truncate(0), append(prompt) (logits of the last row only), await the GPU;
//   median over samples after a short warm-up prompt that compiles the pipelines.
// Decode: after a prompt, one warm-up generate, then generate(maxNewTokens = spr·(n+2)) with
//   stepsPerRead = spr. Tokens arrive in batches of spr (one readback each); batch k's time is
//   the gap between the first tokens of batches k-1 and k. The first batch (it re-feeds the
//   prompt's last token) and the last one (its final step runs no forward) are left out; the
//   figure is the median batch time / spr. Counters (dispatches, submits, readbacks, bytes read
//   back) are ctx.stats deltas over the same measured batches.
// Memory roofline of decode: bytes one token must read (every weight matrix, norms, lm_head, one
//   embedding row, plus the K/V rows attended at the window's mean context length) divided by
//   the copy bandwidth of this run (read+write bytes/s, the harness's convention), over the
//   measured time per token: 1.0 would be a decoder running at the device's copy speed.
// The row's gbps/ratioToCopy are exactly that (bytes per token / time per token).
import type { GpuContext } from "../src/gpu/context.js";
import { Session } from "../src/model/session.js";
import { Rng } from "../src/util/rng.js";
import { buildSynthetic, tiledDecoder, type SyntheticModel, type SyntheticShapeName } from "./synthetic.js";
import { gemvTiledShape } from "../src/ops/linear.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";

/**
 * Quoted reference figures (from the project brief, NOT measured here): llama.cpp through
 * node-llama-cpp 3.22.1 on this kind of machine, greedy decode tok/s of the F16 models.
 */
export const REFERENCE_DECODE: Readonly<Record<string, { model: string; vulkanLavapipe: number; cpu: number }>> = {
  "llama-134m": { model: "Llama 134M F16", vulkanLavapipe: 6.8, cpu: 47 },
  "tinyllama-1.1b": { model: "TinyLlama-1.1B F16", vulkanLavapipe: 1.2, cpu: 14.6 },
};
export const REFERENCE_SOURCE = "the project brief (llama.cpp via node-llama-cpp 3.22.1)";
/** Targets: first 1.5× llama.cpp's Vulkan-on-lavapipe figure, then half its CPU figure. */
export const TARGET_VULKAN_FACTOR = 1.5;
export const TARGET_CPU_FACTOR = 0.5;

interface ModelCase {
  shape: SyntheticShapeName;
  /** Prefill prompt lengths measured, each with its sample count. */
  prompts: { T: number; samples: number }[];
  /** Prompt before decode. */
  decodePrompt: number;
  /** Measured decode batches (plus one leading and one trailing batch). */
  decodeBatches: number;
  /** Why some configurations were left out (printed). */
  notes?: string[];
}

/** Decode steps per submit + readback: the Session default, recorded in every decode row. */
const STEPS_PER_READ = 4;
/** Warm-up prompt: compiles the prefill pipelines (matmul, attention) at a fraction of the cost. */
const WARMUP_PROMPT = 8;

function cases(quick: boolean): ModelCase[] {
  if (quick) return [{ shape: "tiny", prompts: [{ T: 16, samples: 2 }], decodePrompt: 16, decodeBatches: 3 }];
  // Sample counts sized for a ~10-minute full run on a loaded 2-core lavapipe machine: this suite
  // took 6.7 min with 3 samples of the 134M T=512 prefill (22 s each), a 128-token TinyLlama
  // prefill is ≈ 250 GFLOP ≈ 53 s (2026-11-24).
  return [
    { shape: "llama-134m", prompts: [{ T: 128, samples: 3 }, { T: 512, samples: 1 }], decodePrompt: 128, decodeBatches: 6 },
    {
      shape: "tinyllama-1.1b",
      prompts: [{ T: 128, samples: 1 }],
      decodePrompt: 128,
      decodeBatches: 3,
      notes: ["prefill T=512 skipped: ≈ 1.0 TFLOP, ≈ 3.5 min per sample at the 4.7 GFLOP/s its T=128 prefill reached (53 s, 2026-11-24)"],
    },
    {
      shape: "llama2-7b-4layers",
      prompts: [{ T: 128, samples: 1 }],
      decodePrompt: 128,
      decodeBatches: 3,
      notes: ["prefill T=512 skipped: ≈ 0.85 TFLOP, ≈ 4 min per sample at the 3.3 GFLOP/s its T=128 prefill reached (62 s, 2026-11-24)"],
    },
  ];
}

function median(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)]!, minMs: s[0]!, maxMs: s[s.length - 1]!, samples: s.length };
}

function randomIds(rng: Rng, n: number, V: number): number[] {
  return Array.from({ length: n }, () => rng.int(V));
}

/** FLOPs of a prefill of T tokens on an empty cache (matrices, attention scores and mixing, one lm_head row). */
function prefillFlops(m: SyntheticModel, T: number): number {
  const c = m.config;
  const D = c.hiddenSize, I = c.intermediateSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const perTokenMatrix = 2 * (D * q + 2 * D * kv + q * D + 3 * D * I);
  const attention = 4 * c.numHeads * c.headDim * ((T * (T + 1)) / 2); // QKᵀ and P·V over causal pairs
  return c.numLayers * (perTokenMatrix * T + attention) + 2 * c.vocabSize * D;
}

function fmtBytes(b: number): string {
  return b >= 1 << 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const mc of cases(env.quick)) {
    for (const n of mc.notes ?? []) env.log(`model ${mc.shape}: ${n}`);
    await ctx.sync();
    ctx.pool.trim();
    const baseLive = ctx.pool.stats.liveBytes;
    let m: SyntheticModel;
    try {
      m = await buildSynthetic(ctx, mc.shape);
    } catch (e) {
      env.log(`model ${mc.shape}: skipped, building the synthetic checkpoint failed: ${(e as Error).message}`);
      continue;
    }
    env.log(`model ${mc.shape}: ${(m.params / 1e6).toFixed(1)}M params, ${fmtBytes(m.weightBytes)} of weights built in ${(m.buildMs / 1000).toFixed(1)} s`);
    try {
      rows.push(...(await benchModel(ctx, env, m, mc, baseLive)));
    } finally {
      m.dispose();
      await ctx.sync();
      ctx.pool.trim();
    }
  }
  return rows;
}

async function benchModel(ctx: GpuContext, env: BenchEnv, m: SyntheticModel, mc: ModelCase, baseLive: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const c = m.config;
  const V = c.vocabSize;
  const rng = new Rng(7);
  const spr = STEPS_PER_READ;
  const decodeTokens = spr * (mc.decodeBatches + 2);
  const capacity = Math.max(...mc.prompts.map((p) => p.T), mc.decodePrompt + 2 * spr + decodeTokens + 2);
  const session = Session.create(m.decoder, capacity);
  try {
    // ---- prefill
    await session.append(randomIds(rng, WARMUP_PROMPT, V));
    await ctx.sync();
    for (const { T, samples } of mc.prompts) {
      const prompt = randomIds(rng, T, V);
      const times: number[] = [];
      for (let s = 0; s < samples; s++) {
        session.truncate(0);
        await ctx.sync();
        const t0 = performance.now();
        await session.append(prompt);
        await ctx.sync();
        times.push(performance.now() - t0);
      }
      const t = median(times);
      const r = row(env, { bench: "model", variant: "prefill", shape: `${m.name} T=${T}`, flops: prefillFlops(m, T) }, t);
      r.extra = { model: m.name, tokPerS: T / (t.medianMs / 1e3), promptTokens: T, params: m.params };
      rows.push(r);
      env.log(`model ${m.name} prefill T=${T}: ${(T / (t.medianMs / 1e3)).toFixed(1)} tok/s (${(t.medianMs / 1e3).toFixed(2)} s, ${t.samples} sample(s))`);
    }

    // ---- decode
    session.truncate(0);
    await session.append(randomIds(rng, mc.decodePrompt, V));
    for await (const _ of session.generate({ maxNewTokens: spr, temperature: 0, stepsPerRead: spr })) void _; // warm-up
    const startLen = session.length;
    const batchStart: number[] = [];
    const snaps: { dispatches: number; submits: number; readbacks: number; bytesReadBack: number }[] = [];
    let count = 0;
    const tGen = performance.now();
    for await (const _ of session.generate({ maxNewTokens: decodeTokens, temperature: 0, stepsPerRead: spr })) {
      void _;
      if (count % spr === 0) {
        batchStart.push(performance.now());
        const s = ctx.stats;
        snaps.push({ dispatches: s.dispatches, submits: s.submits, readbacks: s.readbacks, bytesReadBack: s.bytesReadBack });
      }
      count++;
    }
    if (count !== decodeTokens) throw new Error(`model ${m.name}: generate returned ${count} tokens, expected ${decodeTokens} (finish: ${session.finishReason})`);
    // Batches 1..nb-2 are measured: durations between first tokens of consecutive batches.
    const nb = batchStart.length;
    const perToken: number[] = [];
    for (let k = 1; k <= nb - 2; k++) perToken.push((batchStart[k]! - batchStart[k - 1]!) / spr);
    const t = median(perToken);
    const measuredTokens = (nb - 2) * spr;
    const s0 = snaps[0]!, s1 = snaps[nb - 2]!;
    const meanContext = startLen + spr + measuredTokens / 2; // cache rows attended, mean over the measured steps
    const kvElem = session.cache.dtype === "f16" ? 2 : 4;
    const kvReadBytes = 2 * c.numLayers * c.numKvHeads * c.headDim * kvElem * meanContext;
    const bytesPerToken = m.decodeWeightBytes + kvReadBytes;
    const pool = ctx.pool.stats;
    const gpuBytes = pool.liveBytes + pool.pooledBytes - baseLive;
    const tokPerS = 1000 / t.medianMs;
    const r = row(env, { bench: "model", variant: "decode", shape: `${m.name} ctx≈${Math.round(meanContext)}`, bytes: bytesPerToken }, t);
    const extra: Record<string, number | string> = {
      model: m.name,
      tokPerS,
      msPerToken: t.medianMs,
      rooflineRatio: r.ratioToCopy!,
      rooflineMsPerToken: (bytesPerToken / (env.copyGBps * 1e9)) * 1e3,
      weightBytesPerToken: m.decodeWeightBytes,
      kvReadBytesPerToken: Math.round(kvReadBytes),
      weightBytes: m.weightBytes,
      kvCacheBytes: session.cache.bytes,
      kvCacheCapacity: session.capacity,
      poolLiveBytes: pool.liveBytes - baseLive,
      poolFreeBytes: pool.pooledBytes,
      gpuBytes,
      dispatchesPerToken: (s1.dispatches - s0.dispatches) / measuredTokens,
      submitsPerToken: (s1.submits - s0.submits) / measuredTokens,
      hostSyncsPerToken: (s1.readbacks - s0.readbacks) / measuredTokens,
      bytesReadBackPerToken: (s1.bytesReadBack - s0.bytesReadBack) / measuredTokens,
      stepsPerRead: spr,
      measuredTokens,
      generateWallMs: performance.now() - tGen,
      params: m.params,
    };
    const ref = REFERENCE_DECODE[m.name];
    if (ref) {
      extra.refSource = REFERENCE_SOURCE;
      extra.refVulkanTokS = ref.vulkanLavapipe;
      extra.refCpuTokS = ref.cpu;
      extra.ratioToRefVulkan = tokPerS / ref.vulkanLavapipe;
      extra.ratioToTargetVulkan = tokPerS / (TARGET_VULKAN_FACTOR * ref.vulkanLavapipe);
      extra.ratioToRefCpu = tokPerS / ref.cpu;
      extra.ratioToTargetCpu = tokPerS / (TARGET_CPU_FACTOR * ref.cpu);
    }
    r.extra = extra;
    rows.push(r);
    env.log(
      `model ${m.name} decode (measured here): ${tokPerS.toFixed(2)} tok/s, ${t.medianMs.toFixed(1)} ms/token (min ${t.minMs.toFixed(1)}, max ${t.maxMs.toFixed(1)}), ` +
        `${(r.ratioToCopy! * 100).toFixed(1)}% of the memory roofline (${fmtBytes(bytesPerToken)}/token at ${env.copyGBps.toFixed(2)} GB/s = ${(extra.rooflineMsPerToken as number).toFixed(1)} ms), ` +
        `GPU memory ${fmtBytes(gpuBytes)} (weights ${fmtBytes(m.weightBytes)}, KV cache ${fmtBytes(session.cache.bytes)}), ` +
        `${(extra.dispatchesPerToken as number).toFixed(1)} dispatches/token, ${(extra.hostSyncsPerToken as number).toFixed(2)} host syncs/token, ${(extra.bytesReadBackPerToken as number).toFixed(1)} B read back/token, stepsPerRead ${spr}`,
    );
    if (ref) {
      const vt = TARGET_VULKAN_FACTOR * ref.vulkanLavapipe, ct = TARGET_CPU_FACTOR * ref.cpu;
      env.log(
        `  vs quoted reference figures, not measured here (${REFERENCE_SOURCE}), ${ref.model}: ` +
          `Vulkan/lavapipe ${ref.vulkanLavapipe} tok/s → ours ×${(tokPerS / ref.vulkanLavapipe).toFixed(2)}; target 1.5× Vulkan ${vt.toFixed(1)} → ×${(tokPerS / vt).toFixed(2)}; ` +
          `CPU ${ref.cpu} tok/s → ×${(tokPerS / ref.cpu).toFixed(2)}; target CPU/2 ${ct.toFixed(1)} → ×${(tokPerS / ct).toFixed(2)}`,
      );
    }
    rows.push(...(await decodeLayoutAB(ctx, env, m, session, mc.decodePrompt, rng)));
  } finally {
    session.dispose();
  }
  return rows;
}

/**
 * Decode (the captured step: gemv_step for every projection) with the projections row-major ("v1
 * rows") against the same weights in the tiles layout ("v2 tiles", src/gpu/tensor.ts TilesLayout,
 * what loadDecoder's gemvLayout 'tiles' gives), alternated round by round. Bench-only: the tiles
 * are made once from the synthetic decoder's weights into a second decoder, so both layouts are
 * held at once (loadDecoder holds one); norms, embedding and biases are shared.
 */
export async function decodeLayoutAB(ctx: GpuContext, env: BenchEnv, m: SyntheticModel, session: Session, prompt: number, rng: Rng, rounds = 3): Promise<BenchRow[]> {
  const spr = STEPS_PER_READ;
  const T = gemvTiledShape(ctx).T;
  const tiled = await tiledDecoder(ctx, m, T);
  const sessions = { rows: session, tiles: Session.create(tiled.decoder, session.capacity) };
  const ms: Record<"rows" | "tiles", number[]> = { rows: [], tiles: [] };
  const tokens = spr * 3;
  try {
    for (let r = 0; r < rounds; r++) {
      for (const layout of r % 2 === 0 ? (["rows", "tiles"] as const) : (["tiles", "rows"] as const)) {
        const s = sessions[layout];
        s.truncate(0);
        await s.append(randomIds(rng, prompt, m.config.vocabSize));
        for await (const _ of s.generate({ maxNewTokens: spr, temperature: 0, stepsPerRead: spr })) void _; // warm-up batch
        await ctx.sync();
        const t0 = performance.now();
        let n = 0;
        for await (const _ of s.generate({ maxNewTokens: tokens, temperature: 0, stepsPerRead: spr })) n++;
        ms[layout].push((performance.now() - t0) / n);
      }
    }
  } finally {
    sessions.tiles.dispose();
    tiled.dispose();
  }
  const out: BenchRow[] = [];
  const rowsMs = median(ms.rows).medianMs;
  for (const layout of ["rows", "tiles"] as const) {
    const t = median(ms[layout]);
    const r = row(env, { bench: "model", variant: `decode ${layout === "rows" ? "v1 rows" : `v2 tiles T=${T}`} A/B`, shape: `${m.name} ctx≈${prompt + spr}` }, t);
    r.extra = { model: m.name, tokPerS: 1000 / t.medianMs, msPerToken: t.medianMs, speedup: rowsMs / t.medianMs, rounds, msRounds: ms[layout].map((v) => v.toFixed(1)).join(",") };
    out.push(r);
  }
  const tilesMs = median(ms.tiles).medianMs;
  env.log(`model ${m.name} decode layout A/B (${rounds} alternated rounds of ${tokens} tokens): v1 rows ${(1000 / rowsMs).toFixed(2)} tok/s, v2 tiles ${(1000 / tilesMs).toFixed(2)} tok/s → ×${(rowsMs / tilesMs).toFixed(2)}`);
  return out;
}
