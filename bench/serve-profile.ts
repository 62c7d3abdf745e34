// Where `onegen serve`'s batched step spends the GPU's time, per kernel (issue 19): the engine
// (src/serve/engine.ts, captured steps) on a synthetic model, profiled with timestamp queries
// (src/gpu/profiler.ts: every dispatch its own timed pass, so tiny kernels read high), per weight
// layout and concurrency:
//
//   node dist/bench/serve-profile.js [--shape llama-134m] [--layouts rows,tiles] [--levels 1,8]
//       [--prompt 8] [--tokens 8] [--rounds 3] [--out DIR]
//
// Per layout (row-major, or the lane-interleaved tiles of 8 rows `gemvLayout: "auto"` loads on
// software adapters; the same weights) and level C: C greedy requests of a --prompt-token prompt
// and --tokens tokens submitted at once after a warm-up; the profiler attached from the submit to
// the last token, so the prompts' prefill (one forward over all C prompts) is in the totals.
// --rounds rounds, each running every level on every layout, the layouts' order rotated per round
// (timestamps on a software adapter stretch with the machine's load: arms are interleaved).
// Figures: medians over the rounds of GPU ms in all and per generated token, the ratio of each
// level to the first, the layouts' ratio per round; GPU ms per kernel summed over the rounds. Written to OUT/DATE-COMMIT-serve-profile-SHAPE.json and .md (tagged, atomically)
// when --out is given; printed always. Figures are GPU timestamps, not wall time: host work, the
// readback's latency and the Node binding's polling are not in them (bench/serve.bench.ts has the
// wall and CPU figures).
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "../src/cli/args.js";
import { UsageError } from "../src/errors.js";
import { openDevice } from "../src/gpu/device.js";
import { Profiler, type KernelTiming } from "../src/gpu/profiler.js";
import { BENCH_REPORT_TAG, FILE_FORMATS } from "../src/io/output.js";
import { BatchEngine } from "../src/serve/engine.js";
import { benchOutputs, gitCommit, machineMeta } from "./harness.js";
import { SYNTHETIC_SHAPES, buildSynthetic, tiledDecoder, type SyntheticShapeName } from "./synthetic.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, "..", "..");
const LAYOUTS = ["rows", "tiles"] as const;
type Layout = (typeof LAYOUTS)[number];

interface Options {
  shape: SyntheticShapeName;
  layouts: Layout[];
  levels: number[];
  prompt: number;
  tokens: number;
  rounds: number;
  outDir: string | null;
}

function parse(argv: string[]): Options {
  const a = parseArgs(argv, { values: ["shape", "layouts", "levels", "prompt", "tokens", "rounds", "out"], booleans: [] }, "serve-profile");
  const int = (k: string, v: string, lo: number, hi: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new UsageError(`serve-profile: --${k} must hold integers in [${lo}, ${hi}], got '${v}'`);
    return n;
  };
  const shape = a.flags.get("shape") ?? "llama-134m";
  if (!(shape in SYNTHETIC_SHAPES)) throw new UsageError(`serve-profile: --shape names no shape '${shape}' (shapes: ${Object.keys(SYNTHETIC_SHAPES).join(", ")})`);
  const layouts = (a.flags.get("layouts") ?? LAYOUTS.join(",")).split(",").filter(Boolean);
  for (const l of layouts) if (!LAYOUTS.includes(l as Layout)) throw new UsageError(`serve-profile: --layouts names no layout '${l}' (layouts: ${LAYOUTS.join(", ")})`);
  const levels = (a.flags.get("levels") ?? "1,8").split(",").filter(Boolean).map((v) => int("levels", v, 1, 64));
  if (levels.length === 0) throw new UsageError("serve-profile: --levels needs at least one concurrency");
  const out = a.flags.get("out");
  return {
    shape: shape as SyntheticShapeName,
    layouts: layouts as Layout[],
    levels,
    prompt: int("prompt", a.flags.get("prompt") ?? "8", 1, 1024),
    tokens: int("tokens", a.flags.get("tokens") ?? "8", 2, 1024),
    rounds: int("rounds", a.flags.get("rounds") ?? "3", 1, 100),
    outDir: out === undefined ? null : resolve(out),
  };
}

interface LevelResult {
  layout: Layout;
  concurrency: number;
  steps: number;
  tokens: number;
  /** Median over the rounds. */
  gpuMs: number;
  /** Per round, in round order. */
  roundGpuMs: number[];
  /** Summed over the rounds. */
  kernels: KernelTiming[];
}

const median = (xs: number[]): number => {
  const t = [...xs].sort((a, b) => a - b);
  const m = t.length >> 1;
  return t.length % 2 ? t[m]! : (t[m - 1]! + t[m]!) / 2;
};


function markdown(meta: Record<string, unknown>, o: Options, adapter: string, rs: LevelResult[]): string {
  const lines = [
    `# Serve: GPU time per kernel, ${o.shape}, layouts ${o.layouts.join(" / ")}, concurrency ${o.levels.join(" / ")}`,
    BENCH_REPORT_TAG,
    "",
    `Commit ${meta.commit} · ${meta.date} · ${meta.cpus} CPUs (${meta.cpuModel}) · adapter ${adapter} · load average (1/5/15 min) start ${(meta.loadAvg as { start: number[] }).start.map((x) => x.toFixed(2)).join("/")}, end ${(meta.loadAvg as { end: number[] }).end.map((x) => x.toFixed(2)).join("/")}`,
    "",
    `Method (bench/serve-profile.ts): the serve engine's captured steps; C greedy requests (${o.prompt}-token prompts, ${o.tokens} tokens each) submitted at once, every dispatch timed by timestamp queries (its own pass), the prompts' prefill included; ${o.rounds} rounds, the layouts' order rotated per round; medians over the rounds. GPU time only (no host work, no readback latency).`,
    "",
    "| layout | concurrency | steps | tokens | GPU ms | GPU ms / token | × of first level per token | projections (gemv/matmul) share |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rs) {
    const first = rs.find((x) => x.layout === r.layout)!;
    const proj = r.kernels.filter((k) => /^(gemv|matmul)/.test(k.kernel)).reduce((s, k) => s + k.totalMs, 0);
    const all = r.kernels.reduce((s, k) => s + k.totalMs, 0); // both summed over the rounds
    lines.push(`| ${r.layout} | ${r.concurrency} | ${r.steps} | ${r.tokens} | ${r.gpuMs.toFixed(0)} | ${(r.gpuMs / r.tokens).toFixed(1)} | ${(r.gpuMs / r.tokens / (first.gpuMs / first.tokens)).toFixed(2)} | ${((100 * proj) / all).toFixed(0)}% |`);
  }
  const layoutsHere = [...new Set(rs.map((r) => r.layout))];
  if (layoutsHere.length > 1) {
    lines.push("", `| concurrency | ${layoutsHere.slice(1).map((l) => `GPU ms ${l} / ${layoutsHere[0]}: median (per round)`).join(" | ")} |`, `|---:|${layoutsHere.slice(1).map(() => "---:").join("|")}|`);
    for (const C of o.levels) {
      const base = rs.find((r) => r.layout === layoutsHere[0] && r.concurrency === C);
      if (!base) continue;
      lines.push(`| ${C} | ${layoutsHere.slice(1).map((l) => {
        const r = rs.find((x) => x.layout === l && x.concurrency === C);
        if (!r) return "-";
        const per = r.roundGpuMs.map((x, i) => x / base.roundGpuMs[i]!);
        return `${median(per).toFixed(2)} (${per.map((x) => x.toFixed(2)).join(", ")})`;
      }).join(" | ")} |`);
    }
  }
  lines.push("", "Per kernel (GPU ms summed over the rounds; calls):", "");
  for (const r of rs) {
    lines.push(`- ${r.layout}, concurrency ${r.concurrency}: ` + r.kernels.map((k) => `${k.kernel} ${k.totalMs.toFixed(0)} (${k.calls})`).join(", "));
  }
  lines.push("");
  return lines.join("\n");
}

async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  const log = (s: string) => process.stdout.write(s + "\n");
  const loadStart = loadavg();
  const commit = gitCommit(repoRoot);
  const date = new Date().toISOString();
  const base = o.outDir ? join(o.outDir, `${date.slice(0, 10)}-${commit}-serve-profile-${o.shape}`) : null;
  if (base) {
    await benchOutputs.check(base);
  }
  const ctx = await openDevice({ profiling: true, dawnOptions: ["disable-dawn-features=timestamp_quantization"] });
  const results: LevelResult[] = [];
  try {
    const m = await buildSynthetic(ctx, o.shape);
    const cleanup: (() => void)[] = [() => m.dispose()];
    try {
      const V = m.config.vocabSize;
      const slot = o.prompt + o.tokens + 8;
      const engines = new Map<Layout, BatchEngine>();
      for (const layout of o.layouts) {
        let decoder = m.decoder;
        if (layout === "tiles") {
          const t = await tiledDecoder(ctx, m, 8);
          cleanup.unshift(() => t.dispose());
          decoder = t.decoder;
        }
        const engine = new BatchEngine(decoder, { maxBatch: Math.max(...o.levels), slotTokens: slot, maxQueue: 0, eosIds: [], decode: () => "", stepMode: "captured" });
        engines.set(layout, engine);
        cleanup.unshift(() => engine.dispose());
      }
      const run = (engine: BatchEngine, C: number, n: number): Promise<number[]> =>
        Promise.all(
          Array.from({ length: C }, (_, i) =>
            new Promise<number>((res, rej) =>
              engine.submit(
                [{ prompt: Array.from({ length: o.prompt }, (_, j) => (1 + 97 * i + 31 * j) % V), temperature: 0, seed: 0, maxTokens: n, stop: [], ignoreEos: true }],
                [{ onEnd: (r) => res(r.completionTokens), onError: rej }],
              ),
            ),
          ),
        );
      // warm-up: pipelines, captured programs of every width
      for (const engine of engines.values()) for (const C of o.levels) await run(engine, C, 3);
      const got = new Map<string, { steps: number; tokens: number; ms: number[]; kernels: Map<string, { calls: number; ms: number }> }>();
      for (let round = 0; round < o.rounds; round++) {
        const order = o.layouts.map((_, i) => o.layouts[(i + round) % o.layouts.length]!);
        for (const C of o.levels) {
          for (const layout of order) {
            const engine = engines.get(layout)!;
            const prof = new Profiler(ctx);
            ctx.profiler = prof;
            const s0 = engine.stats.steps;
            let tokens: number;
            let kernels: KernelTiming[];
            try {
              tokens = (await run(engine, C, o.tokens)).reduce((s, x) => s + x, 0);
              if (prof.untimed > 0) throw new UsageError(`serve-profile: ${prof.untimed} dispatches at concurrency ${C} found the profiler's ${prof.capacity} slots full (untimed): lower --tokens or --levels`);
              kernels = await prof.collect();
            } finally {
              ctx.profiler = null;
              prof.destroy();
            }
            const ms = kernels.reduce((s, k) => s + k.totalMs, 0);
            const key = `${layout} ${C}`;
            const g = got.get(key) ?? { steps: engine.stats.steps - s0, tokens, ms: [] as number[], kernels: new Map<string, { calls: number; ms: number }>() };
            g.ms.push(ms);
            for (const k of kernels) {
              const t = g.kernels.get(k.kernel) ?? { calls: 0, ms: 0 };
              t.calls += k.calls;
              t.ms += k.totalMs;
              g.kernels.set(k.kernel, t);
            }
            got.set(key, g);
            log(`serve-profile: round ${round + 1}/${o.rounds} ${o.shape} ${layout} concurrency ${C}: ${engine.stats.steps - s0} steps, ${tokens} tokens, GPU ${ms.toFixed(0)} ms (${(ms / tokens).toFixed(1)} ms/token); top: ${kernels.slice(0, 2).map((k) => `${k.kernel} ${k.totalMs.toFixed(0)} ms`).join(", ")} (load ${loadavg()[0]!.toFixed(2)})`);
          }
        }
      }
      for (const layout of o.layouts) {
        for (const C of o.levels) {
          const g = got.get(`${layout} ${C}`)!;
          const kernels = [...g.kernels].map(([kernel, t]) => ({ kernel, calls: t.calls, totalMs: t.ms, meanMs: t.ms / t.calls })).sort((a, b) => b.totalMs - a.totalMs);
          results.push({ layout, concurrency: C, steps: g.steps, tokens: g.tokens, gpuMs: median(g.ms), roundGpuMs: g.ms, kernels });
        }
      }
      for (const engine of engines.values()) await engine.drain(0);
    } finally {
      for (const f of cleanup) f();
    }
    const meta = { format: FILE_FORMATS["bench-results"], kind: "serve-profile", commit, date, ...machineMeta(loadStart), settings: o };
    const md = markdown(meta, o, ctx.adapter.description, results);
    log("\n" + md);
    if (base) {
      await benchOutputs.write(base, JSON.stringify({ ...meta, adapter: ctx.adapter.description, results }, null, 2) + "\n", md);
      log(`wrote ${base}.json, ${base}.md`);
    }
  } finally {
    ctx.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  });
}
