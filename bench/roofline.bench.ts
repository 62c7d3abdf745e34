// The compute roofline: a reference FLOP rate to pair with the copy bandwidth that run.ts
// measures first (the memory roofline). It is the best figure of the linear op's resolver-picked
// matmul (kernels/matmul.wgsl, the fastest design measured, see src/ops/linear.ts) on square,
// compute-bound problems (arithmetic intensity ≈ N/3 FLOP per byte for f32, ≫ the machine balance),
// f32 and f16 weights. The last row, variant "best", is the reference FLOP rate the report uses.
import type { GpuContext } from "../src/gpu/context.js";
import { linear, resolveLinear } from "../src/ops/linear.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const n = env.quick ? 256 : 1024;
  const dtypes = ctx.hasF16 ? (["f32", "f16"] as const) : (["f32"] as const);
  for (const wd of dtypes) {
    const x = ctx.empty([n, n], "f32", "roofline.x");
    const w = ctx.empty([n, n], wd, "roofline.w");
    const y = ctx.empty([n, n], "f32", "roofline.y");
    const data = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
    ctx.write(x, data);
    ctx.write(w, data); // f16 weights: rounded on upload
    const plan = resolveLinear(ctx, n, n, n, wd);
    const t = await timeGpu(ctx, () => linear(ctx, x, w, { out: y }).then(() => undefined), { warmup: 1, samples: env.quick ? 3 : 5, reps: 1 });
    rows.push(row(env, { bench: "roofline", variant: plan.label, shape: `M=N=K=${n} ${wd}`, flops: 2 * n * n * n }, t));
    x.dispose();
    w.dispose();
    y.dispose();
  }
  const best = rows.reduce((a, b) => ((b.gflops ?? 0) > (a.gflops ?? 0) ? b : a));
  rows.push({ ...best, variant: "best", shape: `${best.variant} ${best.shape}`, extra: { role: "reference FLOP rate (compute roofline)" } });
  env.log(`roofline: reference FLOP rate ${best.gflops!.toFixed(2)} GFLOP/s (${best.variant}, ${best.shape}); copy bandwidth ${env.copyGBps.toFixed(2)} GB/s`);
  return rows;
}
