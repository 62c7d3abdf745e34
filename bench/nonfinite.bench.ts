// Non-finite scan (countNonFinite, run on every float weight while a model loads): a pure
// streaming read, so its GB/s against copy bandwidth shows what the check adds to a load.
import type { GpuContext } from "../src/gpu/context.js";
import { countNonFinite, nonfiniteKernel } from "../src/ops/nonfinite.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const sizes = env.quick ? [1 << 16, 1 << 22] : [1 << 16, 1 << 22, 1 << 26];
  const counts = ctx.upload(new Uint32Array(1), [1], "u32", "counts");
  for (const dtype of ["f32", "f16"] as const) {
    for (const n of sizes) {
      const x = ctx.empty([n], dtype, "x");
      ctx.clear(x);
      const t = await timeGpu(ctx, () => countNonFinite(ctx, x, counts, 0), { reps: 4, samples: env.quick ? 3 : 7 });
      const bytes = n * (dtype === "f32" ? 4 : 2);
      rows.push(row(env, { bench: "nonfinite", variant: nonfiniteKernel(dtype, "body").name, shape: `n=${n} ${dtype}`, bytes }, t));
      x.dispose();
    }
  }
  counts.dispose();
  return rows;
}
