// `npm run bench [-- --quick] [-- --only NAME,NAME] [-- --out DIR]`
// Opens the device, measures copy bandwidth (the memory roofline), then runs every
// bench/*.bench.ts suite (discovered at run time), prints one fixed-width table and writes
// bench/results/latest.json, a dated copy, latest.md and latest.svg (bench/report.ts; quick mode:
// latest-quick.*, git-ignored). Figures are reported, never asserted. The result files are checked
// before the first benchmark and written atomically, only over earlier results (src/io/output.ts:
// "format": "onegen-bench" in the JSON, a tag line in the reports).
import { readdirSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { openDevice, describeContext } from "../src/gpu/device.js";
import { parseArgs } from "../src/cli/args.js";
import { UsageError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import { gitCommit, measureCopy, type BenchEnv, type BenchRow } from "./harness.js";
import { checkReportPaths, writeReport, type BenchResults } from "./report.js";
import { checkOutput, FILE_FORMATS, resolveReal, writeFileAtomic } from "../src/io/output.js";
import { cpus, loadavg } from "node:os";

type Suite = (ctx: GpuContext, env: BenchEnv) => Promise<BenchRow[]>;

export interface BenchOptions {
  quick: boolean;
  only: string[] | null;
  outDir: string | null;
  write: (s: string) => void;
}

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, "..", "..");

function fmt(v: number | undefined, digits = 2): string {
  if (v === undefined || !Number.isFinite(v)) return "-";
  if (v >= 1000) return v.toFixed(0);
  return v.toPrecision(3).replace(/\.?0+$/, "") === "" ? v.toFixed(digits) : v.toPrecision(3);
}

export function formatTable(rows: BenchRow[]): string {
  const head = ["bench", "variant", "shape", "median ms", "min–max ms", "GFLOP/s", "GB/s", "×copy"];
  const body = rows.map((r) => [
    r.bench,
    r.variant,
    r.shape,
    fmt(r.medianMs),
    `${fmt(r.minMs)}–${fmt(r.maxMs)}`,
    fmt(r.gflops),
    fmt(r.gbps),
    r.ratioToCopy === undefined ? "-" : r.ratioToCopy.toFixed(2),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}


/**
 * The results files of a run, checked before any benchmark runs (src/io/output.ts): the folder
 * exists (or its parent does, and it is created), and latest(.json|.md|.svg) and the dated copy
 * are absent, empty or earlier results.
 */
async function prepareOutputs(opts: BenchOptions, commit: string, day: string): Promise<{ outDir: string; latest: string; dated: string }> {
  const given = opts.outDir;
  const outDir = given ?? join(repoRoot, "bench", "results");
  const { real, exists } = await resolveReal(outDir);
  if (exists && !(await stat(real)).isDirectory()) throw new UsageError(`bench: --out '${outDir}' is a file: a directory is needed`);
  if (!exists) {
    try {
      await mkdir(real); // one level: a missing parent is refused below
    } catch (e) {
      throw new UsageError(`bench: --out '${outDir}' cannot be created: ${(e as Error).message}`);
    }
  }
  const latest = join(real, opts.quick ? "latest-quick.json" : "latest.json");
  const dated = join(real, `${day}-${commit}${opts.quick ? "-quick" : ""}.json`);
  for (const f of [latest, dated]) await checkOutput({ flag: "bench --out", path: f, kind: "bench-results" });
  await checkReportPaths(latest);
  return { outDir: real, latest, dated };
}

export async function runBenchmarks(opts: BenchOptions): Promise<{ rows: BenchRow[]; file: string }> {
  const suites = readdirSync(here).filter((f) => f.endsWith(".bench.js")).map((f) => f.replace(/\.bench\.js$/, ""));
  const unknown = (opts.only ?? []).filter((n) => !suites.includes(n));
  if (unknown.length > 0) throw new UsageError(`bench: --only names no suite ${unknown.map((n) => `'${n}'`).join(", ")} (suites: ${suites.sort().join(", ")})`);
  const loadStart = loadavg();
  const commit = gitCommit(repoRoot);
  const outputs = await prepareOutputs(opts, commit, new Date().toISOString().slice(0, 10));
  const ctx = await openDevice();
  try {
    const desc = describeContext(ctx);
    opts.write(`adapter: ${ctx.adapter.description} (${ctx.adapter.backend}); features: ${(desc.features as string[]).join(", ")}\n`);
    const copy = await measureCopy(ctx, opts.quick ? 16 << 20 : 64 << 20);
    opts.write(`copy bandwidth: ${copy.gbps.toFixed(2)} GB/s (read+write, ${opts.quick ? 16 : 64} MiB copyBufferToBuffer)\n`);
    const env: BenchEnv = { quick: opts.quick, copyGBps: copy.gbps, log: (l) => opts.write(l + "\n") };
    const rows: BenchRow[] = [
      { bench: "copy", variant: "copyBufferToBuffer", shape: `${opts.quick ? 16 : 64} MiB`, ...copy.timing, gbps: copy.gbps, ratioToCopy: 1 },
    ];
    const failed: { suite: string; message: string }[] = [];
    const suiteSeconds: Record<string, number> = {};
    const files = readdirSync(here).filter((f) => f.endsWith(".bench.js")).sort();
    for (const f of files) {
      const name = f.replace(/\.bench\.js$/, "");
      if (opts.only && !opts.only.includes(name)) continue;
      const mod = (await import(pathToFileURL(join(here, f)).href)) as { bench?: Suite };
      if (typeof mod.bench !== "function") throw new Error(`bench/${name}.bench.ts exports no bench() function`);
      const t0 = performance.now();
      let got: BenchRow[];
      try {
        got = await mod.bench(ctx, env);
      } catch (e) {
        // One failing suite is reported (and fails the run) without losing the others' figures.
        const message = (e as Error).message ?? String(e);
        failed.push({ suite: name, message });
        opts.write(`${name}: FAILED after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${message}\n`);
        continue;
      }
      rows.push(...got);
      suiteSeconds[name] = (performance.now() - t0) / 1000;
      opts.write(`${name}: ${got.length} rows in ${suiteSeconds[name]!.toFixed(1)} s\n`);
    }
    opts.write("\n" + formatTable(rows) + "\n");
    const date = new Date().toISOString();
    const meta: Omit<BenchResults, "rows"> & Record<string, unknown> = {
      format: FILE_FORMATS["bench-results"], // the output tag (first key): a later run may replace this file
      adapter: ctx.adapter.description,
      backend: ctx.adapter.backend,
      device: desc,
      commit,
      date,
      quick: opts.quick,
      copyGBps: copy.gbps,
      timingMethod: "wall-sync: encode reps launches, submit, await onSubmittedWorkDone; median of samples after warm-up",
      node: (globalThis as { process?: { version?: string } }).process?.version,
      // Other jobs share this machine: absolute figures depend on it.
      loadAvg: { start: loadStart, end: loadavg() },
      cpus: cpus().length,
      suiteSeconds,
      failed,
    };
    const json = JSON.stringify({ ...meta, rows }, null, 2) + "\n";
    const { latest, dated } = outputs;
    await writeFileAtomic(latest, "bench-results", json, { flag: "bench --out" });
    await writeFileAtomic(dated, "bench-results", json, { flag: "bench --out" });
    const report = await writeReport({ ...meta, rows }, latest); // latest.md + latest.svg (latest-quick.* in quick mode)
    opts.write(`\nwrote ${latest}, ${report.md}, ${report.svg}\n`);
    if (failed.length) {
      opts.write(`${failed.length} suite(s) failed: ${failed.map((f) => f.suite).join(", ")}\n`);
      process.exitCode = 1;
    }
    return { rows, file: latest };
  } finally {
    ctx.destroy();
  }
}

export function parseBenchArgs(argv: string[]): BenchOptions {
  // The CLI's strict parser: unknown options and stray words are usage errors (exit 2, one line).
  const args = parseArgs(argv, { values: ["only", "out"], booleans: ["quick"] }, "bench");
  const only = args.flags.get("only");
  return {
    quick: args.bools.has("quick"),
    only: only === undefined ? null : only.split(",").filter(Boolean),
    outDir: args.flags.get("out") ?? null,
    write: (s) => process.stdout.write(s),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  runBenchmarks(parseBenchArgs(process.argv.slice(2))).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = 1;
  });
}
