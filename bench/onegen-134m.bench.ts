// OneGen one pass vs two passes on the Llama 134M shape (synthetic f16, 12 layers, D 768): the
// same measures as bench/onegen.bench.ts (time from feeding the query token to its hits; time to
// the first token after an injection), one index size (10^3 entries).
// Setup prefills each context once (untimed); every two-pass sample re-encodes it, so the two-pass
// arm gets one sample per measure. Default: context 1,024, both measures. With
// ONEGEN_BENCH_134M_CONTEXT=4096 (or 2048): contexts 256 (where the warm-up runs) and that one,
// the "hits" measure only at the long one (a retrieval; each two-pass sample at 4,096 re-encodes
// 4,097 tokens: a 4,096-token prefill took 527 s here on 2026-12-02 at load ~5).
// Full mode only (quick mode returns no rows).
import type { GpuContext } from "../src/gpu/context.js";
import type { BenchEnv, BenchRow } from "./harness.js";
import { benchPlan } from "./onegen.bench.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  if (env.quick) {
    env.log("onegen-134m: skipped in quick mode (a 1,024-token prefill of the 134M shape takes minutes here)");
    return [];
  }
  const long = Number(process.env.ONEGEN_BENCH_134M_CONTEXT ?? 1024);
  if (![1024, 2048, 4096].includes(long)) throw new Error(`onegen-134m: ONEGEN_BENCH_134M_CONTEXT must be 1024, 2048 or 4096, got '${process.env.ONEGEN_BENCH_134M_CONTEXT}'`);
  if (long === 1024) {
    return benchPlan(ctx, env, {
      shape: "llama-134m",
      contexts: [1024],
      entries: [1_000],
      samples: () => ({ one: 2, two: 1 }),
      skipped: ["134M shape: context 1,024 and 10^3 entries only (each two-pass sample re-encodes the whole context; ONEGEN_BENCH_134M_CONTEXT=4096 runs the long context)"],
    });
  }
  return benchPlan(ctx, env, {
    shape: "llama-134m",
    contexts: [256, long],
    entries: [1_000],
    samples: (c) => (c === long ? { one: 2, two: 1 } : { one: 2, two: 2 }),
    measures: ["hits"],
    skipped: [`134M shape: contexts 256 and ${long}, the retrieval ("hits") measure only, 10^3 entries (each two-pass sample at ${long} re-encodes the whole context)`],
  });
}
