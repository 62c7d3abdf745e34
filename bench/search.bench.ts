// Fused top-k cosine search: GB/s of index scanned (the index bytes; the query and the k outputs
// are negligible) against the device's copy bandwidth. Full mode: N = 10^4 .. 10^6 at D = 2048
// and 4096 f16 (up to 8 GB: sizes over maxBufferSize are skipped with a log line); quick: small.
// "A/B": the two index layouts of kernels/topk_cosine.wgsl (rows: the index as stored, one row per
// invocation; tiled: its lane-interleaved copy) alternated round by round in one process on the
// demo's index shapes (721 entries, D = 128; D = 576 as a 134M-shape model would give) and larger
// ones; the copy is made before timing (its own time is printed once). Figures recorded in
// src/ops/search.ts (cosineTopKPreferredLayout).
// "gate": per-call dispatches and time of the gated search (what a non-query decode token pays
// with gate 0) against gate 1 and the ungated search, 16 calls per submit.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { storeType } from "../src/ops/common.js";
import { COSINE_TOPK_LAYOUTS, cosineIndexPack, cosineTopK, cosineTopKKernel, cosineTopKPreferredLayout, cosineTopKTiledShape, releaseCosineIndexPack, type CosineTopKLayout, type TopkTileShape } from "../src/ops/search.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { measureCopy, row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

function fillRandom(ctx: GpuContext, t: Tensor, rng: Rng): void {
  const block = Math.min(t.numel, 1 << 20);
  const data = rng.fillUniform(block).map((v) => v - 0.5);
  const src = t.dtype === "f16" ? f32ArrayToF16(data) : data;
  for (let off = 0; off < t.numel; off += block) ctx.write(t, src.subarray(0, Math.min(block, t.numel - off)), off);
}

const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(7);
  const dt = ctx.hasF16 ? "f16" : "f32";
  const bytesPer = dt === "f16" ? 2 : 4;
  const cases: [number, number, number][] = env.quick
    ? [[10_000, 1024, 10], [100_000, 64, 64]]
    : [[10_000, 2048, 10], [100_000, 2048, 10], [100_000, 4096, 64], [1_000_000, 2048, 10], [1_000_000, 1024, 64]];
  const auto = cosineTopKPreferredLayout(ctx);
  for (const [N, D, k] of cases) {
    const bytes = N * D * bytesPer;
    if (bytes > ctx.limits.maxBufferSize) {
      env.log(`search: N=${N} D=${D} ${dt} needs ${bytes} bytes > maxBufferSize, skipped`);
      continue;
    }
    const index = ctx.empty([N, D], dt, "index");
    ctx.clear(index);
    const q = ctx.upload(new Float32Array(D).fill(1), [D], "f32", "q");
    const outIds = ctx.empty([k], "u32", "ids");
    const outScores = ctx.empty([k], "f32", "scores");
    if (auto === "tiled") await cosineIndexPack(ctx, index, N);
    const t = await timeGpu(ctx, () => cosineTopK(ctx, q, index, k, { outIds, outScores }).then(() => undefined), { reps: 1, samples: env.quick ? 3 : 5, warmup: 1 });
    const name = cosineTopKKernel(auto === "tiled" ? { stage: "scan", layout: "tiled", index: dt } : { stage: "scan", index: storeType(ctx, dt), vec4: D % 4 === 0 }).name;
    rows.push(row(env, { bench: "search", variant: name, shape: `N=${N} D=${D} k=${k} ${dt}`, bytes }, t));
    releaseCosineIndexPack(index);
    for (const x of [index, q, outIds, outScores]) x.dispose();
  }
  await layoutAB(ctx, env, rng, rows);
  await gateCost(ctx, env, rng, rows);
  return rows;
}

/** [N, D, k] for the rows-vs-tiled A/B. */
function abShapes(quick: boolean): [number, number, number][] {
  const s: [number, number, number][] = [[721, 128, 1], [721, 128, 5], [721, 576, 5], [10_000, 2048, 10]];
  if (!quick) s.push([100_000, 2048, 10], [100_000, 576, 10]);
  return s;
}

async function layoutAB(ctx: GpuContext, env: BenchEnv, rng: Rng, rows: BenchRow[]): Promise<void> {
  const rounds = env.quick ? 3 : 5;
  for (const dt of ctx.hasF16 ? (["f16", "f32"] as const) : (["f32"] as const)) {
    for (const [N, D, k] of abShapes(env.quick)) {
      if (dt === "f32" && N * D > 2e7) continue; // f32 only on the small shapes (the index stays f16 by default)
      const index = ctx.empty([N, D], dt, "bench.index");
      fillRandom(ctx, index, rng);
      const q = ctx.upload(rng.fillNormal(D), [D], "f32", "bench.q");
      const outIds = ctx.empty([k], "u32", "ids");
      const outScores = ctx.empty([k], "f32", "scores");
      await ctx.sync();
      const p0 = performance.now();
      await cosineIndexPack(ctx, index, N, cosineTopKTiledShape(ctx).T);
      await ctx.sync();
      const packMs = performance.now() - p0;
      const bytes = N * D * (dt === "f16" ? 2 : 4);
      const reps = bytes > 8e6 ? 1 : 8;
      const copy = await measureCopy(ctx, 32 << 20, 5);
      // the rows layout, the tiled one with this device class's tile shape, and other tile shapes
      // (T rows per tile, R rows per invocation; T8 R1 = without query-load sharing, T256 R1 = one
      // tile per batch of the workgroup)
      const def = cosineTopKTiledShape(ctx);
      const shapes: TopkTileShape[] = [def, ...[{ T: 8, R: 1 }, { T: 8, R: 8 }, { T: 64, R: 4 }, { T: 256, R: 1 }].filter((t) => t.T !== def.T || t.R !== def.R)];
      const arms = [
        { label: "rows", layout: "rows" as const, medians: [] as number[], mins: [] as number[], maxs: [] as number[] },
        ...shapes.map((tile) => ({ label: `tiled T${tile.T} R${tile.R}`, layout: "tiled" as const, tile, medians: [] as number[], mins: [] as number[], maxs: [] as number[] })),
      ];
      for (let r = 0; r < rounds; r++) {
        for (const arm of r % 2 === 0 ? arms : [...arms].reverse()) {
          const opts = { outIds, outScores, layout: arm.layout, ...("tile" in arm ? { tile: arm.tile } : {}) };
          if ("tile" in arm) await cosineIndexPack(ctx, index, N, arm.tile.T); // outside the timing
          const t = await timeGpu(ctx, () => cosineTopK(ctx, q, index, k, opts).then(() => undefined), { warmup: r === 0 ? 1 : 0, samples: 3, reps });
          arm.medians.push(t.medianMs);
          arm.mins.push(t.minMs);
          arm.maxs.push(t.maxMs);
        }
      }
      const rowsMs = med(arms[0]!.medians);
      for (const arm of arms) {
        const ms = med(arm.medians);
        const t = { medianMs: ms, minMs: Math.min(...arm.mins), maxMs: Math.max(...arm.maxs), samples: arm.medians.length * 3 };
        const gbps = bytes / (ms / 1e3) / 1e9;
        rows.push(row(env, { bench: "search", variant: `topk_cosine_${arm.label}`, shape: `A/B N=${N} D=${D} k=${k} ${dt}`, bytes, extra: { copyGBps: +copy.gbps.toFixed(2), ofCopy: +(gbps / copy.gbps).toFixed(3), speedup: +(rowsMs / ms).toFixed(2), ...(arm.layout === "tiled" ? { packMs: +packMs.toFixed(2) } : {}) } }, t));
        env.log(`  A/B ${arm.label.padEnd(14)} N=${N} D=${D} k=${k} ${dt}: ${ms.toFixed(3)} ms  ${gbps.toFixed(2)} GB/s  ${(gbps / copy.gbps).toFixed(3)} of copy (${copy.gbps.toFixed(1)} GB/s beside)  ×${(rowsMs / ms).toFixed(2)} vs rows${arm.label === arms[1]!.label ? `  (copy made once in ${packMs.toFixed(1)} ms)` : ""}`);
      }
      releaseCosineIndexPack(index);
      for (const x of [index, q, outIds, outScores]) x.dispose();
    }
  }
}

/**
 * Cost of the gated search per call: dispatches and wall time per call with gate 0 (a non-query
 * token), gate 1 and no gate, 16 calls encoded per submit; also the raw-hidden query (normWeight).
 */
async function gateCost(ctx: GpuContext, env: BenchEnv, rng: Rng, rows: BenchRow[]): Promise<void> {
  const calls = 16;
  const shapes: [number, number, number][] = env.quick ? [[721, 128, 1], [10_000, 2048, 10]] : [[721, 128, 1], [10_000, 2048, 10], [100_000, 2048, 10]];
  const dt = "f16";
  for (const [N, D, k] of shapes) {
    const index = ctx.empty([N, D], dt, "bench.index");
    fillRandom(ctx, index, rng);
    const q = ctx.upload(rng.fillNormal(D), [D], "f32", "bench.q");
    const g = ctx.upload(rng.fillUniform(D), [D], "f32", "bench.norm");
    const outIds = ctx.empty([k], "u32", "ids");
    const outScores = ctx.empty([k], "f32", "scores");
    const gates = [ctx.upload(Uint32Array.of(0), [1], "u32", "gate0"), ctx.upload(Uint32Array.of(1), [1], "u32", "gate1")];
    for (const layout of COSINE_TOPK_LAYOUTS as readonly CosineTopKLayout[]) {
      await cosineIndexPack(ctx, index, N);
      const arms: { name: string; gate?: Tensor; norm?: Tensor }[] = [
        { name: "gate=0", gate: gates[0]! },
        { name: "gate=1", gate: gates[1]! },
        { name: "ungated" },
        { name: "gate=0 normWeight", gate: gates[0]!, norm: g },
        { name: "gate=1 normWeight", gate: gates[1]!, norm: g },
      ];
      const res = arms.map(() => [] as number[]);
      const disp = arms.map(() => 0);
      const rounds = env.quick ? 3 : 5;
      for (let r = 0; r < rounds; r++) {
        for (let a = 0; a < arms.length; a++) {
          const arm = arms[a]!;
          const opts = { outIds, outScores, layout, ...(arm.gate ? { gate: arm.gate } : {}), ...(arm.norm ? { normWeight: arm.norm } : {}) };
          const before = ctx.stats.dispatches;
          const reps = arm.gate === gates[0] || N * D < 1e7 ? calls : 1;
          const t = await timeGpu(ctx, () => cosineTopK(ctx, q, index, k, opts).then(() => undefined), { warmup: r === 0 ? 1 : 0, samples: 3, reps });
          disp[a] = (ctx.stats.dispatches - before) / ((r === 0 ? 4 : 3) * reps);
          res[a]!.push(t.medianMs);
        }
      }
      for (let a = 0; a < arms.length; a++) {
        const ms = med(res[a]!);
        const t = { medianMs: ms, minMs: Math.min(...res[a]!), maxMs: Math.max(...res[a]!), samples: res[a]!.length };
        rows.push(row(env, { bench: "search", variant: `topk_cosine_${layout} ${arms[a]!.name}`, shape: `gate N=${N} D=${D} k=${k} ${dt}`, extra: { dispatchesPerCall: disp[a]! } }, t));
        env.log(`  gate ${layout.padEnd(6)} ${arms[a]!.name.padEnd(18)} N=${N} D=${D} k=${k}: ${ms.toFixed(3)} ms/call, ${disp[a]} dispatches/call`);
      }
    }
    releaseCosineIndexPack(index);
    for (const x of [index, q, g, outIds, outScores, ...gates]) x.dispose();
  }
}
