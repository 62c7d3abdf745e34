// One pass vs two passes END TO END on the demo's held-out tasks, the arms alternated example by
// example (one-pass first on even examples, two-pass first on odd ones), so that a load that drifts
// during the run (this machine is shared) moves both arms alike. `onegen eval` times the arms one
// after the other over the whole split; this bench is its load-robust counterpart for the ratio.
// Each example runs exactly what the demo and `onegen eval` run (src/demo/tasks.ts: linkSentence,
// answerQuestion: free decoding, greedy), so outputs must agree between the arms (checked: a
// mismatch is reported in the row's extra, never hidden).
// Rows: per task and arm, median ms per example (min/max spread), and the ratio two-pass ÷ one-pass
// of the summed times. Quick mode: the first 12 sentences and 6 questions; full: the whole split.
import { fileURLToPath } from "node:url";
import type { GpuContext } from "../src/gpu/context.js";
import { loadDecoder } from "../src/model/load.js";
import { loadDemoData } from "../src/demo/data.js";
import { openDemoIndexes } from "../src/demo/indexes.js";
import { answerQuestion, linkSentence } from "../src/demo/tasks.js";
import type { BenchEnv, BenchRow } from "./harness.js";

const DEMO = fileURLToPath(new URL("../../demo/", import.meta.url)); // dist/bench → demo/

type Arm = "one-pass" | "two-pass";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const model = await loadDecoder(ctx, DEMO + "model", { gemvLayout: "auto" }); // as onegen demo / eval load it
  const data = await loadDemoData(DEMO + "data", "test");
  const indexes = await openDemoIndexes(ctx, model, DEMO + "index", data);
  const el = data.elTest.slice(0, env.quick ? 12 : data.elTest.length);
  const mh = data.mhTest.slice(0, env.quick ? 6 : data.mhTest.length);
  const rows: BenchRow[] = [];
  const tasks = [
    {
      task: "entity-linking",
      inputs: el.map((s) => s.text),
      run: async (text: string, twoPass: boolean) => {
        const r = await linkSentence(model, indexes, text, { twoPass });
        return { out: JSON.stringify([r.annotated, r.mentions.map((m) => m.entity)]), tokens: r.stats.newTokens };
      },
    },
    {
      task: "multihop-qa",
      inputs: mh.map((q) => q.question),
      run: async (text: string, twoPass: boolean) => {
        const r = await answerQuestion(model, indexes, text, { twoPass });
        return { out: JSON.stringify([r.answer, r.retrievals.map((x) => x.hits[0]?.id ?? null)]), tokens: r.stats.newTokens };
      },
    },
  ];
  // warm-up: pipelines of both arms compiled before timing
  await tasks[0]!.run(el[0]!.text, false);
  await tasks[0]!.run(el[0]!.text, true);
  await tasks[1]!.run(mh[0]!.question, false);
  await tasks[1]!.run(mh[0]!.question, true);
  for (const t of tasks) {
    const ms: Record<Arm, number[]> = { "one-pass": [], "two-pass": [] };
    let mismatches = 0;
    let tokens = 0;
    // load-independent structure of each arm: readbacks (host round trips), dispatches and submits
    const counts: Record<Arm, { readbacks: number; dispatches: number; submits: number }> = { "one-pass": { readbacks: 0, dispatches: 0, submits: 0 }, "two-pass": { readbacks: 0, dispatches: 0, submits: 0 } };
    for (const [i, input] of t.inputs.entries()) {
      const order: Arm[] = i % 2 === 0 ? ["one-pass", "two-pass"] : ["two-pass", "one-pass"];
      const outs: Partial<Record<Arm, string>> = {};
      for (const arm of order) {
        await ctx.sync();
        const s0 = { ...ctx.stats };
        const t0 = performance.now();
        const r = await t.run(input, arm === "two-pass");
        ms[arm].push(performance.now() - t0);
        const c = counts[arm];
        c.readbacks += ctx.stats.readbacks - s0.readbacks;
        c.dispatches += ctx.stats.dispatches - s0.dispatches; // replayed dispatches included
        c.submits += ctx.stats.submits - s0.submits;
        outs[arm] = r.out;
        if (arm === "one-pass") tokens += r.tokens;
      }
      if (outs["one-pass"] !== outs["two-pass"]) mismatches++;
    }
    const sum = (a: Arm) => ms[a].reduce((x, y) => x + y, 0);
    const ratio = sum("two-pass") / sum("one-pass");
    for (const arm of ["one-pass", "two-pass"] as Arm[]) {
      const xs = ms[arm];
      rows.push({
        bench: "eval-ab",
        variant: arm,
        shape: `demo ${t.task}, ${xs.length} examples`,
        medianMs: median(xs),
        minMs: Math.min(...xs),
        maxMs: Math.max(...xs),
        samples: xs.length,
        extra: { totalMs: Math.round(sum(arm)), msPerExample: Math.round(sum(arm) / xs.length), speedupTwoOverOne: Math.round(ratio * 100) / 100, outputMismatches: mismatches, generatedTokensOnePass: tokens,
          readbacksPerExample: Math.round((10 * counts[arm].readbacks) / xs.length) / 10,
          dispatchesPerExample: Math.round(counts[arm].dispatches / xs.length),
          submitsPerExample: Math.round((10 * counts[arm].submits) / xs.length) / 10 },
      });
    }
    env.log(`eval-ab ${t.task}: one-pass ${Math.round(sum("one-pass") / t.inputs.length)} ms/example, two-pass ${Math.round(sum("two-pass") / t.inputs.length)} ms/example, two-pass ÷ one-pass ×${ratio.toFixed(2)}; outputs differ on ${mismatches} of ${t.inputs.length}; readbacks per example ${(counts["one-pass"].readbacks / t.inputs.length).toFixed(1)} vs ${(counts["two-pass"].readbacks / t.inputs.length).toFixed(1)}`);
  }
  for (const i of [indexes.el, indexes.mh]) i.dispose();
  model.dispose();
  return rows;
}
