// Fused top-k cosine search: GB/s of index scanned (the index bytes; the query and the k outputs
// are negligible) against the device's copy bandwidth. Full mode: N = 10^4 .. 10^6 at D = 2048
// and 4096 f16 (up to 8 GB: sizes over maxBufferSize are skipped with a log line); quick: small.
import type { GpuContext } from "../src/gpu/context.js";
import { storeType } from "../src/ops/common.js";
import { cosineTopK, cosineTopKKernel } from "../src/ops/search.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const dt = ctx.hasF16 ? "f16" : "f32";
  const bytesPer = dt === "f16" ? 2 : 4;
  const cases: [number, number, number][] = env.quick
    ? [[10_000, 1024, 10], [100_000, 64, 64]]
    : [[10_000, 2048, 10], [100_000, 2048, 10], [100_000, 4096, 64], [1_000_000, 2048, 10], [1_000_000, 1024, 64]];
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
    const t = await timeGpu(ctx, () => cosineTopK(ctx, q, index, k, { outIds, outScores }).then(() => undefined), { reps: 1, samples: env.quick ? 3 : 5, warmup: 1 });
    const name = cosineTopKKernel({ stage: "scan", index: storeType(ctx, dt), vec4: D % 4 === 0 }).name;
    rows.push(row(env, { bench: "search", variant: name, shape: `N=${N} D=${D} k=${k} ${dt}`, bytes }, t));
    for (const x of [index, q, outIds, outScores]) x.dispose();
  }
  return rows;
}
