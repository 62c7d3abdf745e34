// The toy OneGen retrieval task of test/train-toy.test.ts at a larger size: a random Llama trained
// with the joint loss (full fine-tuning); reports held-out retrieval accuracy@1 before and after
// training (chance = 1/entities), the first/last-5-step mean of both losses, and the time per
// optimizer step and tokens/s. Quick mode runs the test's size.
import type { GpuContext } from "../src/gpu/context.js";
import { runToy } from "../test/fixtures/train-data/toy.js";
import type { BenchEnv, BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const cfg = env.quick
    ? { entities: 20, perEntity: 3, dims: { D: 48, L: 2, H: 4, Hkv: 2, F: 96 }, steps: 60, batchSize: 6, lr: 3e-3, seed: 9 }
    : { entities: 40, perEntity: 4, dims: { D: 128, L: 4, H: 4, Hkv: 2, F: 352 }, steps: 150, batchSize: 8, lr: 2e-3, seed: 9 };
  const r = await runToy(ctx, cfg);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const secs = r.history.map((h) => h.seconds * 1000).sort((a, b) => a - b);
  const tokens = r.history.reduce((s, h) => s + h.tokens, 0);
  const d = cfg.dims;
  const extra = {
    entities: cfg.entities,
    steps: cfg.steps,
    acc_before: r.before,
    acc_after: r.after,
    chance: 1 / cfg.entities,
    loss_gen_first5: mean(r.history.slice(0, 5).map((h) => h.loss_gen)),
    loss_gen_last5: mean(r.history.slice(-5).map((h) => h.loss_gen)),
    loss_ret_first5: mean(r.history.slice(0, 5).map((h) => h.loss_ret)),
    loss_ret_last5: mean(r.history.slice(-5).map((h) => h.loss_ret)),
    tokens_per_s: tokens / r.seconds,
  };
  env.log(`train-toy: held-out acc@1 ${r.before.toFixed(3)} → ${r.after.toFixed(3)} (chance ${(1 / cfg.entities).toFixed(3)}), ${(tokens / r.seconds).toFixed(0)} tok/s`);
  return [
    {
      bench: "train-toy",
      variant: "full_ft_infonce",
      shape: `D=${d.D} L=${d.L} H=${d.H}/${d.Hkv} F=${d.F} B=${cfg.batchSize} entities=${cfg.entities}`,
      medianMs: secs[Math.floor(secs.length / 2)]!,
      minMs: secs[0]!,
      maxMs: secs[secs.length - 1]!,
      samples: secs.length,
      extra,
    },
  ];
}
