// Sampling (one workgroup per row): time per call at Llama vocabulary sizes for argmax, plain
// temperature sampling, top-k, top-p and top-k+top-p. GB/s = logits bytes / time (an effective
// one-pass figure: top-k reads the row 4 more times, top-p about 34 more times).
import type { GpuContext } from "../src/gpu/context.js";
import { sample, sampleKernel, type SampleOptions } from "../src/ops/sample.js";
import { Rng } from "../src/util/rng.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(5);
  const modes: [string, Omit<SampleOptions, "seed" | "step">][] = [
    ["argmax", { temperature: 0 }],
    ["temperature", { temperature: 0.8 }],
    ["top-k 50", { temperature: 0.8, topK: 50 }],
    ["top-p 0.9", { temperature: 0.8, topP: 0.9 }],
    ["top-k 50 + top-p 0.9", { temperature: 0.8, topK: 50, topP: 0.9 }],
  ];
  for (const V of env.quick ? [32000] : [32000, 128256]) {
    for (const B of env.quick ? [1] : [1, 8]) {
      const logits = ctx.upload(rng.fillNormal(B * V, 2), [B, V], "f32", "logits");
      const out = ctx.empty([B], "u32", "ids");
      for (const [label, o] of modes) {
        let step = 0;
        const t = await timeGpu(ctx, () => sample(ctx, logits, out, { ...o, seed: 1, step: step++ }), { reps: 4, samples: env.quick ? 3 : 7 });
        rows.push(row(env, { bench: "sample", variant: sampleKernel().name, shape: `${label} B=${B} V=${V}`, bytes: B * V * 4 }, t));
      }
      logits.dispose();
      out.dispose();
    }
  }
  return rows;
}
