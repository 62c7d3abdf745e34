// OneGen one pass vs two passes on the Llama 134M shape (synthetic f16, 12 layers, D 768) at a
// context of 1,024 tokens: the same measures as bench/onegen.bench.ts (time from feeding the query
// token to its hits; time to the first token after an injection), one index size (10^3 entries).
// Setup prefills the context once (untimed); every two-pass sample re-encodes it, so the two-pass
// arm gets one sample per measure. At 4,096 tokens that prefill alone took 527 s here (2026-12-02,
// load average ~5), so the suite runs at 1,024. Full mode only (quick mode returns no rows).
import type { GpuContext } from "../src/gpu/context.js";
import type { BenchEnv, BenchRow } from "./harness.js";
import { benchPlan } from "./onegen.bench.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  if (env.quick) {
    env.log("onegen-134m: skipped in quick mode (a 4,096-token prefill of the 134M shape takes minutes here)");
    return [];
  }
  return benchPlan(ctx, env, {
    shape: "llama-134m",
    contexts: [1024],
    entries: [1_000],
    samples: () => ({ one: 2, two: 1 }),
    skipped: ["134M shape: context 1,024 and 10^3 entries only (each two-pass sample re-encodes the whole context; a 4,096-token prefill took 527 s here)"],
  });
}
