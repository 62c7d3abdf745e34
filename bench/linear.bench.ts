// Linear layers: GEMV (decode, M = 1 and 2) on real Llama-2-7B and TinyLlama weight shapes, GB/s
// of bytes moved (W + x read, y written; W is > 99% of it) against copy bandwidth; matmul
// (prefill) GFLOP/s. Each row's variant is the resolver's label. For 4096×4096 f16 the losing
// designs run as A/B arms in the same process (figures recorded in kernels/gemv.wgsl).
// "gemv vs gemv_tiled": the rows design and the tiled copy (kernels/gemv_tiled.wgsl) alternated
// round by round in one process on decode shapes, with copyBufferToBuffer re-measured beside each
// shape (extra.copyGBps, extra.ofCopy) and the tiled/rows speed ratio (extra.speedup).
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { launchLinear, linear, linearLabel, resolveLinear, type LinearKernelDesc, type LinearVariantName } from "../src/ops/linear.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { packGemvWeight, releaseGemvPack } from "../src/ops/linear.js";
import { measureCopy, row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

type WD = "f32" | "f16";
interface Arm {
  label: string;
  go: (x: Tensor, w: Tensor, y: Tensor) => Promise<unknown>;
}

/** Fills a tensor with U(-1, 1) values by repeating a 1 Mi-element random block (fast for 262 MB). */
function fillRandom(ctx: GpuContext, t: Tensor, rng: Rng): void {
  const block = Math.min(t.numel, 1 << 20);
  const data = rng.fillUniform(block);
  const src = t.dtype === "f16" ? f32ArrayToF16(data) : data;
  for (let off = 0; off < t.numel; off += block) {
    const n = Math.min(block, t.numel - off);
    ctx.write(t, src.subarray(0, n), off);
  }
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(99);
  // [M, N, K, dtype]: GEMV on real weight shapes; matmul on prefill-sized blocks.
  const gemvShapes: [number, number, number, WD][] = env.quick
    ? [
        [1, 2048, 2048, "f16"],
        [1, 1024, 1024, "f32"],
      ]
    : [
        [1, 4096, 4096, "f16"],
        [1, 11008, 4096, "f16"],
        [1, 4096, 11008, "f16"],
        [1, 32000, 4096, "f16"],
        [1, 2048, 2048, "f16"],
        [1, 5632, 2048, "f16"],
        [1, 2048, 5632, "f16"],
        [1, 32000, 2048, "f16"],
        [2, 4096, 4096, "f16"],
        [1, 4096, 4096, "f32"],
        [1, 11008, 4096, "f32"],
      ];
  const matmulShapes: [number, number, number, WD][] = env.quick
    ? [
        [128, 256, 256, "f32"],
        [128, 256, 256, "f16"],
      ]
    : [
        [1024, 1024, 1024, "f32"],
        [1024, 1024, 1024, "f16"],
        [128, 4096, 4096, "f16"],
        [128, 2048, 2048, "f16"],
        [128, 5632, 2048, "f16"],
        [17, 4096, 4096, "f16"],
      ];
  const run = async (M: number, N: number, K: number, wd: WD, arms: Arm[]) => {
    const x = ctx.empty([M, K], "f32", "bench.x");
    const w = ctx.empty([N, K], wd, "bench.w");
    const y = ctx.empty([M, N], "f32", "bench.y");
    fillRandom(ctx, x, rng);
    fillRandom(ctx, w, rng);
    const bytes = N * K * (wd === "f16" ? 2 : 4) + M * K * 4 + M * N * 4;
    const big = 2 * M * N * K > 2e9;
    for (const arm of arms) {
      const t = await timeGpu(ctx, () => arm.go(x, w, y).then(() => undefined), {
        warmup: big ? 1 : 2,
        samples: env.quick ? 3 : big ? 3 : 5,
        reps: big ? 1 : M <= 2 ? 4 : 2,
      });
      rows.push(row(env, { bench: "linear", variant: arm.label, shape: `M=${M} N=${N} K=${K} ${wd}`, bytes, flops: 2 * M * N * K }, t));
    }
    x.dispose();
    w.dispose();
    y.dispose();
  };
  const auto = (M: number, N: number, K: number, wd: WD): Arm => ({
    label: resolveLinear(ctx, M, N, K, wd).label,
    go: (x: Tensor, w: Tensor, y: Tensor) => linear(ctx, x, w, { out: y }),
  });
  const forced = (M: number, N: number, K: number, wd: WD, variant: LinearVariantName): Arm => ({
    label: resolveLinear(ctx, M, N, K, wd, variant).label,
    go: (x: Tensor, w: Tensor, y: Tensor) => linear(ctx, x, w, { out: y, variant }),
  });
  const desc = (M: number, N: number, K: number, d: LinearKernelDesc): Arm => ({
    label: linearLabel(d),
    go: (x: Tensor, w: Tensor, y: Tensor) => launchLinear(ctx, d, x, w, null, y, M, N, K),
  });

  for (const [M, N, K, wd] of gemvShapes) {
    const arms: Arm[] = [auto(M, N, K, wd)];
    if (!env.quick && M === 1 && N === 4096 && K === 4096 && wd === "f16") {
      arms.push(forced(M, N, K, wd, "gemv_splitk"));
      if (ctx.hasSubgroups) arms.push(forced(M, N, K, wd, "gemv_subgroup"));
      if (ctx.hasF16) arms.push(desc(M, N, K, { ...resolveLinear(ctx, M, N, K, wd).desc, nativeF16: true }));
      arms.push(forced(M, N, K, wd, "matmul"));
    }
    if (!env.quick && M === 2) arms.push(forced(M, N, K, wd, "matmul"));
    await run(M, N, K, wd, arms);
  }
  for (const [M, N, K, wd] of matmulShapes) await run(M, N, K, wd, [auto(M, N, K, wd)]);
  await tiledVsRows(ctx, env, rng, rows);
  return rows;
}

/** Decode shapes for the rows-vs-tiled A/B ([M, N, K, dtype]). */
const AB_SHAPES: [number, number, number, WD][] = [
  [1, 768, 2048, "f16"],
  [1, 2048, 2048, "f16"],
  [1, 5632, 2048, "f16"],
  [1, 2048, 5632, "f16"],
  [1, 32000, 2048, "f16"],
  [1, 4096, 4096, "f16"],
  [2, 2048, 2048, "f16"],
  [1, 2048, 2048, "f32"],
];

/**
 * gemv (rows of W per invocation) against gemv_tiled (W's tiled copy), alternated round by round in
 * one process; the copy bandwidth is measured again beside each shape, since a shared machine's
 * load drifts. Each arm's figure is the median of its round medians.
 */
async function tiledVsRows(ctx: GpuContext, env: BenchEnv, rng: Rng, rows: BenchRow[]): Promise<void> {
  const rounds = env.quick ? 3 : 5;
  for (const [M, N, K, wd] of AB_SHAPES) {
    const x = ctx.empty([M, K], "f32", "bench.x");
    const w = ctx.empty([N, K], wd, "bench.w");
    const y = ctx.empty([M, N], "f32", "bench.y");
    fillRandom(ctx, x, rng);
    fillRandom(ctx, w, rng);
    await packGemvWeight(ctx, w);
    const arms = (["gemv", "gemv_tiled"] as const).map((v) => ({ plan: resolveLinear(ctx, M, N, K, wd, v, true), medians: [] as number[], mins: [] as number[], maxs: [] as number[] }));
    const bytes = N * K * (wd === "f16" ? 2 : 4) + M * K * 4 + M * N * 4;
    const reps = N * K >= 32e6 ? 1 : 4;
    const copy = await measureCopy(ctx, 32 << 20, 5);
    for (let r = 0; r < rounds; r++) {
      for (const arm of r % 2 === 0 ? arms : [...arms].reverse()) {
        const t = await timeGpu(ctx, () => launchLinear(ctx, arm.plan.desc, x, w, null, y, M, N, K), { warmup: r === 0 ? 1 : 0, samples: 3, reps });
        arm.medians.push(t.medianMs);
        arm.mins.push(t.minMs);
        arm.maxs.push(t.maxMs);
      }
    }
    const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
    const rowsMs = med(arms[0]!.medians);
    for (const arm of arms) {
      const ms = med(arm.medians);
      const t = { medianMs: ms, minMs: Math.min(...arm.mins), maxMs: Math.max(...arm.maxs), samples: arm.medians.length * 3 };
      const gbps = bytes / (ms / 1e3) / 1e9;
      rows.push(
        row(env, { bench: "linear", variant: arm.plan.label, shape: `A/B M=${M} N=${N} K=${K} ${wd}`, bytes, flops: 2 * M * N * K, extra: { copyGBps: +copy.gbps.toFixed(2), ofCopy: +(gbps / copy.gbps).toFixed(3), speedup: +(rowsMs / ms).toFixed(2) } }, t),
      );
      env.log(`  A/B ${arm.plan.label.padEnd(34)} M=${M} N=${N} K=${K} ${wd}: ${ms.toFixed(2)} ms  ${gbps.toFixed(2)} GB/s  ${(gbps / copy.gbps).toFixed(3)} of copy (${copy.gbps.toFixed(1)} GB/s beside)  ×${(rowsMs / ms).toFixed(2)} vs rows`);
    }
    releaseGemvPack(w);
    for (const t of [x, w, y]) t.dispose();
  }
}
