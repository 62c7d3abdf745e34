// The projections of a batched decode step (`onegen serve`, src/serve/engine.ts): M = 1, 2, 4, 8,
// 16 rows (M sequences, one token each) on the ~134M Llama shape's matrices (f16 W: q/k/v/o
// 768×768, gate/up 2048×768, down 768×2048, lm_head 32000×768; --quick: 256-wide stand-ins), W
// row-major and in the tiles layout (T = 8, what loadDecoder's gemvLayout 'tiles' gives on
// software adapters). Numbered variants (llm.c style), every one kept runnable, alternated round
// by round in one process:
//   v1 gemv        rows design, r4, MB = min(M, 2) (the resolver's pick for M ≤ 2 without subgroups)
//   v2 gemv_tiled  tiles, T8 R8, MB = min(M, 2) (the same with a tiled W)
//   v3 matmul      t4x8, rows or tiles (the resolver's pick for M > 2 before gemv_bcast)
//   v4 gemv_bcast  r4, MB = 1/2/4/8 (bcastMB), rows or tiles: x broadcast through the subgroup,
//                  each W chunk loaded once per MB rows (the resolver's pick for M ≤ 16 where it runs)
// Timed by the process's CPU time per call (process.cpuUsage: lavapipe runs the dispatches on
// this process's worker threads), which swings less than wall time with the shared machine's
// load; extra.ofM1 = the arm's CPU time ÷ v1 gemv's at M = 1 on the same shape, extra.ofV3 = ÷ the
// matmul arm's at the same M and layout. On a hardware GPU the CPU time is the host's only: read
// the wall-clock columns there. Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { bcastMB, BCAST_T, gemvBcastUsable, launchLinear, linearLabel, toTilesLayout, type LinearKernelDesc } from "../src/ops/linear.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

type Layout = "rows" | "tiles";
interface Arm {
  v: string;
  M: number;
  layout: Layout;
  desc: LinearKernelDesc;
}

const tilesOf = (l: Layout) => (l === "tiles" ? { tilesT: BCAST_T } : {});
const V1 = (M: number): LinearKernelDesc => ({ algo: "gemv", wDtype: "f16", vec: 8, rows: 4, mb: Math.min(M, 2), wg: [64, 1] });
const V2 = (M: number): LinearKernelDesc => ({ algo: "gemv_tiled", wDtype: "f16", vec: 8, rows: 8, mb: Math.min(M, 2), wg: [8, 1] });
const V3 = (l: Layout): LinearKernelDesc => ({ algo: "matmul", wDtype: "f16", vec: 4, rows: 8, mb: 4, wg: [64, 1], ...tilesOf(l) });
const V4 = (M: number, l: Layout): LinearKernelDesc => ({ algo: "gemv_bcast", wDtype: "f16", vec: 8, rows: 4, mb: bcastMB(M), wg: [8, 1], ...tilesOf(l) });

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shapes: [string, number, number][] = env.quick
    ? [["256×256", 256, 256], ["688×256", 688, 256]]
    : [["q/k/v/o 768×768", 768, 768], ["gate/up 2048×768", 2048, 768], ["down 768×2048", 768, 2048], ["lm_head 32000×768", 32000, 768]];
  // BATCH_GEMV_MS=32,128: other row counts (prefill-sized M: is gemv_bcast still ahead of matmul?).
  const Ms = process.env.BATCH_GEMV_MS ? process.env.BATCH_GEMV_MS.split(",").map(Number) : env.quick ? [1, 8] : [1, 2, 4, 8, 16];
  if (!Ms.every((m) => Number.isInteger(m) && m >= 1 && m <= 4096)) throw new Error(`batch-gemv: BATCH_GEMV_MS must list integers in 1..4096, got '${process.env.BATCH_GEMV_MS}'`);
  const bcast = gemvBcastUsable(ctx);
  if (!bcast) env.log("batch-gemv: this device cannot run gemv_bcast (needs subgroups of ≥ 8 invocations): v4 arms skipped");
  const arms: Arm[] = [];
  for (const M of Ms) {
    if (M <= 2) arms.push({ v: "v1", M, layout: "rows", desc: V1(M) }, { v: "v2", M, layout: "tiles", desc: V2(M) });
    for (const l of ["rows", "tiles"] as const) {
      arms.push({ v: "v3", M, layout: l, desc: V3(l) });
      if (bcast) arms.push({ v: "v4", M, layout: l, desc: V4(M, l) });
    }
  }
  const rounds = env.quick ? 2 : 5;
  const reps = env.quick ? 2 : 3;
  const rng = new Rng(8);
  const rows: BenchRow[] = [];
  const key = (a: Arm) => `M=${a.M} ${a.v} ${a.layout} ${linearLabel(a.desc)}`;
  const Mmax = Math.max(...Ms);
  for (const [name, N, K] of shapes) {
    const w = ctx.upload(f32ArrayToF16(rng.fillNormal(N * K, 0.02)), [N, K], "f16", "batch-gemv.w");
    let wt: Tensor | null = null;
    const x = ctx.upload(rng.fillNormal(Mmax * K, 1), [Mmax, K], "f32", "batch-gemv.x");
    const y = ctx.empty([Mmax, N], "f32", "batch-gemv.y");
    try {
      wt = await toTilesLayout(ctx, w, BCAST_T);
      const cpu = new Map<string, number[]>();
      const wall = new Map<string, number[]>();
      for (let r = 0; r <= rounds; r++) {
        for (const a of r % 2 === 0 ? arms : [...arms].reverse()) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) await launchLinear(ctx, a.desc, x, a.layout === "tiles" ? wt : w, null, y, a.M, N, K);
          await ctx.sync();
          const c = process.cpuUsage(c0);
          if (r === 0) continue; // warm-up: compiles every variant
          (cpu.get(key(a)) ?? cpu.set(key(a), []).get(key(a))!).push((c.user + c.system) / 1000 / reps);
          (wall.get(key(a)) ?? wall.set(key(a), []).get(key(a))!).push((performance.now() - t0) / reps);
        }
      }
      const med = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
      const base = med(cpu.get(key(arms[0]!))!);
      for (const a of arms) {
        const c = med(cpu.get(key(a))!);
        const v3 = med(cpu.get(key({ v: "v3", M: a.M, layout: a.layout, desc: V3(a.layout) }))!);
        const wl = [...wall.get(key(a))!].sort((p, q) => p - q);
        env.log(`batch-gemv: ${name} ${key(a).padEnd(58)} ${c.toFixed(2)} CPU-ms (×${(c / base).toFixed(2)} of M=1 v1, ×${(c / v3).toFixed(2)} of v3 matmul), wall ${med(wl).toFixed(2)} ms`);
        rows.push(
          row(
            env,
            { bench: "batch-gemv", variant: key(a), shape: `${name} f16`, bytes: N * K * 2, flops: 2 * a.M * N * K, extra: { cpuMs: c, ofM1: c / base, ofV3: c / v3 } },
            { medianMs: med(wl), minMs: wl[0]!, maxMs: wl[wl.length - 1]!, samples: wl.length },
          ),
        );
      }
    } finally {
      w.dispose();
      wt?.dispose();
      x.dispose();
      y.dispose();
    }
  }
  return rows;
}
