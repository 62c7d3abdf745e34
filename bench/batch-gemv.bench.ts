// The projections of a batched decode step (`onegen serve`, src/serve/engine.ts): M = 8 rows
// (8 sequences, one token each) against one M = 1 GEMV, on the ~134M Llama shape's matrices
// (f16 W: q/k/v/o 768×768, gate/up 2048×768, down 768×2048, lm_head 32000×768; --quick: 256-wide
// stand-ins). The question: how much does an 8-row step cost over a 1-row one, per projection,
// and does any kernel tiling reuse each loaded weight across the rows better than the resolver's
// pick (matmul t4x8 for M ≥ 3, src/ops/linear.ts GEMV_MAX_M)? Arms, alternated round by round in
// one process: gemv rows r4 mb1 at M = 1 (the base), matmul TM×TN tilings at M = 8 (scalar
// dot accumulators: TM activation rows × TN weight rows per invocation, so each W chunk is loaded
// once per TM rows), and gemv rows with MB = 2/4/8 activation rows per block at M = 8 (vec4
// accumulators MB·R). Timed by the process's CPU time per call (process.cpuUsage: lavapipe runs
// the dispatches on this process's worker threads), which swings less than wall time with the
// shared machine's load; extra.ofM1 = the arm's CPU time ÷ the M = 1 GEMV's. On a hardware GPU
// the CPU time is the host's only: read the wall-clock columns there. Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import { launchLinear, linearLabel, type LinearKernelDesc } from "../src/ops/linear.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

const M1: LinearKernelDesc = { algo: "gemv", wDtype: "f16", vec: 8, rows: 4, mb: 1, wg: [64, 1] };
const mm = (tm: number, tn: number): LinearKernelDesc => ({ algo: "matmul", wDtype: "f16", vec: 4, rows: tn, mb: tm, wg: [64, 1] });
const gv = (r: number, mb: number): LinearKernelDesc => ({ algo: "gemv", wDtype: "f16", vec: 8, rows: r, mb, wg: [64, 1] });

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const shapes: [string, number, number][] = env.quick
    ? [["256×256", 256, 256], ["688×256", 688, 256]]
    : [["q/k/v/o 768×768", 768, 768], ["gate/up 2048×768", 2048, 768], ["down 768×2048", 768, 2048], ["lm_head 32000×768", 32000, 768]];
  const arms: { desc: LinearKernelDesc; M: number }[] = [
    { desc: M1, M: 1 },
    ...[mm(4, 8), mm(4, 4), mm(8, 4), mm(8, 2), mm(2, 8), mm(8, 1)].map((desc) => ({ desc, M: 8 })),
    ...[gv(4, 2), gv(2, 4), gv(1, 8)].map((desc) => ({ desc, M: 8 })),
  ];
  const rounds = env.quick ? 2 : 4;
  const reps = env.quick ? 2 : 4;
  const rng = new Rng(8);
  const rows: BenchRow[] = [];
  for (const [name, N, K] of shapes) {
    const w = ctx.upload(f32ArrayToF16(rng.fillNormal(N * K, 0.02)), [N, K], "f16", "batch-gemv.w");
    const x = ctx.upload(rng.fillNormal(8 * K, 1), [8, K], "f32", "batch-gemv.x");
    const y = ctx.empty([8, N], "f32", "batch-gemv.y");
    try {
      const cpu = new Map<string, number[]>();
      const wall = new Map<string, number[]>();
      for (let r = 0; r <= rounds; r++) {
        for (const a of r % 2 === 0 ? arms : [...arms].reverse()) {
          const label = linearLabel(a.desc);
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) await launchLinear(ctx, a.desc, x, w, null, y, a.M, N, K);
          await ctx.sync();
          const c = process.cpuUsage(c0);
          if (r === 0) continue; // warm-up: compiles every variant
          (cpu.get(label) ?? cpu.set(label, []).get(label)!).push((c.user + c.system) / 1000 / reps);
          (wall.get(label) ?? wall.set(label, []).get(label)!).push((performance.now() - t0) / reps);
        }
      }
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const base = med(cpu.get(linearLabel(M1))!);
      for (const a of arms) {
        const label = linearLabel(a.desc);
        const c = med(cpu.get(label)!);
        const wl = [...wall.get(label)!].sort((p, q) => p - q);
        env.log(`batch-gemv: ${name} M=${a.M} ${label.padEnd(32)} ${c.toFixed(2)} CPU-ms (×${(c / base).toFixed(2)} of M=1), wall ${med(wl).toFixed(2)} ms`);
        rows.push(
          row(
            env,
            { bench: "batch-gemv", variant: `M=${a.M} ${label}`, shape: `${name} f16`, bytes: N * K * 2, flops: 2 * a.M * N * K, extra: { cpuMs: c, ofM1: c / base } },
            { medianMs: med(wl), minMs: wl[0]!, maxMs: wl[wl.length - 1]!, samples: wl.length },
          ),
        );
      }
    } finally {
      w.dispose();
      x.dispose();
      y.dispose();
    }
  }
  return rows;
}
