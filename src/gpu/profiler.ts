// GPU profiler on timestamp-query: while attached (ctx.profiler = new Profiler(ctx)), every
// dispatch gets its own compute pass whose begin/end timestamps are written to a query set.
// collect() reads the timestamps back (one host sync) and sums durations per kernel name.
// Timestamps have the device's resolution (Dawn quantizes them unless the
// `timestamp_quantization` feature is disabled); per-pass overhead inflates tiny kernels.

import { UnsupportedError } from "../errors.js";
import type { GpuContext } from "./context.js";

/** Most dispatches one query set can time (WebGPU's 4,096-query limit, two per dispatch). */
const MAX_TIMED_DISPATCHES = 2048;

export interface KernelTiming {
  kernel: string;
  calls: number;
  totalMs: number;
  meanMs: number;
}

export class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private labels: string[] = [];
  private resolvedUpTo = 0;
  private readonly totals = new Map<string, { calls: number; ns: bigint }>();
  private pendingResolves: { from: number; to: number; labels: string[] }[] = [];
  /** Dispatches since the last collect() that found the query set full (not timed, not in the totals). */
  untimed = 0;

  constructor(
    private readonly ctx: GpuContext,
    /** Dispatches that can be timed between two collect() calls. */
    readonly capacity = 2048,
  ) {
    if (!ctx.hasTimestamps) throw new UnsupportedError("profiling needs the 'timestamp-query' feature, which this device was not opened with", "open it with openDevice({ profiling: true })");
    // WebGPU caps a query set at 4,096 queries: two per timed dispatch.
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_TIMED_DISPATCHES) {
      throw new UnsupportedError(`Profiler capacity ${capacity}: between 1 and ${MAX_TIMED_DISPATCHES} dispatches (a query set holds at most 4,096 timestamps)`);
    }
    this.querySet = ctx.device.createQuerySet({ type: "timestamp", count: capacity * 2, label: "profiler" });
    this.resolveBuffer = ctx.device.createBuffer({
      size: capacity * 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      label: "profiler-resolve",
    });
  }

  /** Timestamp writes for the next pass (called by GpuContext). */
  nextWrites(label: string): GPUComputePassTimestampWrites | undefined {
    const i = this.labels.length;
    if (i >= this.capacity) {
      this.untimed++; // full: later dispatches are not timed
      return undefined;
    }
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Resolves the queries written in this batch (called by GpuContext before finishing it). */
  resolve(encoder: GPUCommandEncoder): void {
    const from = this.resolvedUpTo;
    const to = this.labels.length;
    if (to === from) return;
    // resolveQuerySet needs a 256-byte aligned destination: resolve everything written so far to 0.
    encoder.resolveQuerySet(this.querySet, 0, 2 * to, this.resolveBuffer, 0);
    this.pendingResolves.push({ from, to, labels: this.labels.slice(from, to) });
    this.resolvedUpTo = to;
  }

  /** Reads the timings back and clears them for the next interval. */
  async collect(): Promise<KernelTiming[]> {
    this.ctx.submit();
    const n = this.resolvedUpTo;
    if (n > 0) {
      const bytes = await this.ctx.readBytes(this.resolveBuffer, 0, n * 16);
      const ts = new BigUint64Array(bytes.buffer, 0, n * 2);
      for (const { from, to, labels } of this.pendingResolves) {
        for (let i = from; i < to; i++) {
          const dt = ts[2 * i + 1]! - ts[2 * i]!;
          const label = labels[i - from]!;
          const t = this.totals.get(label) ?? { calls: 0, ns: 0n };
          t.calls++;
          t.ns += dt > 0n ? dt : 0n;
          this.totals.set(label, t);
        }
      }
    }
    const out = [...this.totals].map(([kernel, { calls, ns }]) => ({
      kernel,
      calls,
      totalMs: Number(ns) / 1e6,
      meanMs: Number(ns) / 1e6 / calls,
    }));
    out.sort((a, b) => b.totalMs - a.totalMs);
    this.totals.clear();
    this.labels = [];
    this.pendingResolves = [];
    this.resolvedUpTo = 0;
    this.untimed = 0;
    return out;
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuffer.destroy();
  }
}
