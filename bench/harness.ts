// Benchmark harness. Timing method "wall-sync": each sample encodes `reps` launches, submits once
// and waits for onSubmittedWorkDone; time per launch = sample / reps. Warm-up samples run first
// (pipeline creation, first-dispatch compilation). Reported: median with min/max spread.
// Bandwidth figures count bytes read + bytes written by the kernel; the device's own figure is
// copyBufferToBuffer measured the same way (each byte read once and written once), so
// "ratio to copy" compares like with like.

import { execSync } from "node:child_process";
import { cpus, loadavg, totalmem } from "node:os";
import { checkOutput, writeFileAtomic } from "../src/io/output.js";
import type { GpuContext } from "../src/gpu/context.js";

export interface BenchRow {
  /** Suite (op family), e.g. "gemv". */
  bench: string;
  /** Kernel variant label as the op's resolver reports it. */
  variant: string;
  /** Human-readable shape, e.g. "M=1 N=4096 K=4096 f16". */
  shape: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
  gflops?: number;
  gbps?: number;
  /** gbps / copy bandwidth measured in the same run. */
  ratioToCopy?: number;
  extra?: Record<string, number | string>;
}

export interface BenchEnv {
  quick: boolean;
  /** Device copy bandwidth in GB/s (read + write bytes per second), measured first in this run. */
  copyGBps: number;
  log: (line: string) => void;
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
}

export async function timeGpu(ctx: GpuContext, encode: () => Promise<void> | void, opts: { warmup?: number; samples?: number; reps?: number } = {}): Promise<Timing> {
  const { warmup = 2, samples = 7, reps = 1 } = opts;
  const times: number[] = [];
  for (let s = 0; s < warmup + samples; s++) {
    await ctx.sync();
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await encode();
    await ctx.sync();
    const dt = (performance.now() - t0) / reps;
    if (s >= warmup) times.push(dt);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, minMs: times[0]!, maxMs: times[times.length - 1]!, samples: times.length };
}

/** A row with bandwidth / FLOP figures derived from a timing. */
export function row(
  env: BenchEnv,
  base: { bench: string; variant: string; shape: string; bytes?: number; flops?: number; extra?: Record<string, number | string> },
  t: Timing,
): BenchRow {
  const s = t.medianMs / 1e3;
  const r: BenchRow = { bench: base.bench, variant: base.variant, shape: base.shape, medianMs: t.medianMs, minMs: t.minMs, maxMs: t.maxMs, samples: t.samples };
  if (base.flops !== undefined) r.gflops = base.flops / s / 1e9;
  if (base.bytes !== undefined) {
    r.gbps = base.bytes / s / 1e9;
    r.ratioToCopy = r.gbps / env.copyGBps;
  }
  if (base.extra) r.extra = base.extra;
  return r;
}

/** Device copy bandwidth: copyBufferToBuffer of `bytes`, GB/s counting read + write. */
export async function measureCopy(ctx: GpuContext, bytes: number, samples = 7): Promise<{ gbps: number; timing: Timing }> {
  const n = Math.floor(bytes / 4);
  const a = ctx.empty([n], "f32", "copy-src");
  const b = ctx.empty([n], "f32", "copy-dst");
  ctx.clear(a);
  const t = await timeGpu(ctx, () => ctx.copy(a.buffer, 0, b.buffer, 0, n * 4), { samples, reps: 4 });
  a.dispose();
  b.dispose();
  return { gbps: (2 * n * 4) / (t.medianMs / 1e3) / 1e9, timing: t };
}

/** The machine a multi-process bench ran on, for its results file (load average at start and now). */
export function machineMeta(loadStart: number[]): { cpus: number; cpuModel: string; memGiB: number; loadAvg: { start: number[]; end: number[] }; node: string } {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "?", memGiB: Math.round(totalmem() / 2 ** 30), loadAvg: { start: loadStart, end: loadavg() }, node: process.version };
}

/** The short commit of the checkout at repoRoot ("unknown" outside a git checkout): bench outputs are named and tagged by it. */
export function gitCommit(repoRoot: string): string {
  try {
    return execSync("git rev-parse --short HEAD", { cwd: repoRoot, stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  } catch {
    return "unknown";
  }
}

/**
 * A standalone bench's outputs BASE.json (results) and BASE.md (report), flag --out: checked before
 * any work (only our own tagged files are replaced) and written atomically.
 */
export const benchOutputs = {
  check: async (base: string): Promise<void> => {
    await checkOutput({ flag: "--out", path: base + ".json", kind: "bench-results" });
    await checkOutput({ flag: "--out", path: base + ".md", kind: "bench-report" });
  },
  write: async (base: string, json: string, md: string): Promise<void> => {
    await writeFileAtomic(base + ".json", "bench-results", json, { flag: "--out" });
    await writeFileAtomic(base + ".md", "bench-report", md, { flag: "--out" });
  },
};
