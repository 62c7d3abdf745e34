// Residual add (out = a + b): a pure streaming kernel, so its GB/s against copy bandwidth shows
// how close a trivial kernel gets to the device's memory roofline.
import type { GpuContext } from "../src/gpu/context.js";
import { add } from "../src/ops/elementwise.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const sizes = env.quick ? [1 << 16, 1 << 20] : [1 << 16, 1 << 20, 1 << 24];
  for (const dtype of ["f32", "f16"] as const) {
    if (dtype === "f16" && !ctx.hasF16) continue;
    for (const n of sizes) {
      const a = ctx.empty([n], dtype, "a");
      const b = ctx.empty([n], dtype, "b");
      const out = ctx.empty([n], dtype, "out");
      ctx.clear(a);
      ctx.clear(b);
      const t = await timeGpu(ctx, () => add(ctx, a, b, out).then(() => undefined), { reps: 4, samples: env.quick ? 3 : 7 });
      const bytes = 3 * n * (dtype === "f32" ? 4 : 2);
      rows.push(row(env, { bench: "elementwise", variant: `add_${dtype}_wg256`, shape: `n=${n} ${dtype}`, bytes }, t));
      a.dispose();
      b.dispose();
      out.dispose();
    }
  }
  return rows;
}
