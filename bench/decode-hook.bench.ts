// What the retrieval decode hook costs on tokens that are not query tokens (issue 16 item 4: at
// most ~10% over the plain decode step). The bundled demo model and its multi-hop QA index
// (demo/model, demo/index/mhqa), one session; per arm, a generate() of N greedy tokens after a
// warm-up, the query token banned in both arms so that no step is a query step:
//   plain:      Session.generate, no hook;
//   search:     generateOnePass with retrieval (k 1), no injection;
//   inject:     generateOnePass with retrieval and injection (prefix/suffix empty: the injection
//               forward is sized by the longest document).
// Reported per token: wall ms (median of the samples) and dispatches (ctx.stats), and the ratio to
// plain measured in the same run, arms alternated sample by sample. Figures, never assertions.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GpuContext } from "../src/gpu/context.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { generateOnePass, type RetrievalGenerateOptions } from "../src/onegen/loop.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
type Arm = "plain" | "search" | "inject";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const N = env.quick ? 8 : 32;
  const samples = env.quick ? 2 : 5;
  const m = await loadDecoder(ctx, join(repoRoot, "demo", "model"), { dtype: "auto" });
  const index = await loadIndex(ctx, join(repoRoot, "demo", "index", "mhqa"), m.decoder);
  const V = m.decoder.vocabSize;
  const QUERY = V - 1;
  const prompt = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => (i * 37) % (V - 1));
  const s = Session.create(m.decoder, prompt.length + N + 8);
  const arms: Arm[] = ["plain", "search", "inject"];
  const times = new Map<Arm, number[]>(arms.map((a) => [a, []]));
  const dispatches = new Map<Arm, number>();
  const longest = index.documents.reduce((mx, d) => Math.max(mx, index.documentTokens(d.id).length), 0);
  const once = async (arm: Arm): Promise<number> => {
    s.truncate(0);
    await s.append(prompt);
    await ctx.sync();
    const opts: RetrievalGenerateOptions = { maxNewTokens: N, temperature: 0, bannedIds: [QUERY], stepsPerRead: 4 };
    if (arm !== "plain") opts.retrieval = { index, queryTokenId: QUERY, k: 1, inject: arm === "inject" ? { prefix: [], suffix: [] } : null };
    const d0 = ctx.stats.dispatches;
    const t0 = performance.now();
    let n = 0;
    for await (const t of generateOnePass(s, opts)) {
      if (t.retrieval) throw new Error("decode-hook bench: a query step happened");
      n++;
    }
    await ctx.sync();
    const ms = performance.now() - t0;
    dispatches.set(arm, (ctx.stats.dispatches - d0) / n);
    return ms / n;
  };
  for (const a of arms) await once(a); // warm-up (pipelines, pool)
  for (let i = 0; i < samples; i++) for (const a of arms) times.get(a)!.push(await once(a));
  s.dispose();
  index.dispose();
  m.dispose();
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const plainMs = med(times.get("plain")!);
  const rows: BenchRow[] = [];
  for (const a of arms) {
    const xs = [...times.get(a)!].sort((p, q) => p - q);
    const ms = med(xs);
    const ratio = ms / plainMs;
    env.log(`decode-hook: ${a}: ${ms.toFixed(2)} ms/token (×${ratio.toFixed(3)} plain), ${dispatches.get(a)!.toFixed(1)} dispatches/token (plain ${dispatches.get("plain")!.toFixed(1)})`);
    rows.push(
      row(
        env,
        { bench: "decode-hook", variant: a, shape: `demo mhqa, ${index.count} entries, longest doc ${longest} tokens, ${N} non-query tokens`, extra: { dispatchesPerToken: dispatches.get(a)!, ratioToPlain: ratio } },
        { medianMs: ms, minMs: xs[0]!, maxMs: xs[xs.length - 1]!, samples: xs.length },
      ),
    );
  }
  return rows;
}
