// GPU buffer pool: a decode loop allocates nothing after warm-up. Buffers are grouped by usage and
// a rounded size class; release() returns a buffer to its class, acquire() takes the most recent.
// WebGPU orders queue work, so a buffer released while earlier commands still use it may be
// handed out again for later commands without hazard (staging buffers are released after unmap).
// A new buffer that would take the live ones past the memory budget (src/gpu/budget.ts) is
// refused with GpuOutOfMemoryError naming the tensor and what holds the memory, by label group.

import { GpuOutOfMemoryError } from "../errors.js";

/** Rounds a byte size up to its class: 256 B steps up to 1 MiB, then 1/8-octave steps (≤ 12.5% slack). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 1 << 20) return Math.ceil(b / 256) * 256;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

function formatSize(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** What a buffer's memory belongs to, from its label: the part before the first '.', '[' or ':'. */
function labelGroup(label: string): string {
  return /^[^.[:\s]+/.exec(label)?.[0] ?? "unlabelled";
}

export interface PoolStats {
  /** GPUBuffers ever created by this pool. */
  created: number;
  /** acquire() calls served from the free lists. */
  reused: number;
  /** Bytes in buffers handed out and not yet released. */
  liveBytes: number;
  /** Bytes in buffers waiting in free lists. */
  pooledBytes: number;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly owned = new Set<GPUBuffer>();
  readonly stats: PoolStats = { created: 0, reused: 0, liveBytes: 0, pooledBytes: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly onCreate: (buffer: GPUBuffer, label: string) => void = () => {},
    /** The device's maxBufferSize: a size class never rounds past it. */
    private readonly maxBufferSize = Infinity,
    /** The memory budget (src/gpu/budget.ts): live + new bytes may not exceed it. */
    private readonly budget: () => { bytes: number; source: string } = () => ({ bytes: Infinity, source: "none" }),
    /** Whether free buffers may be destroyed now (no open command batch can still reference them). */
    private readonly canTrim: () => boolean = () => true,
  ) {}

  /** Live bytes by what they belong to (label prefix: "model", "kv", "index", …), largest first. */
  liveByGroup(): [string, number][] {
    const m = new Map<string, number>();
    for (const b of this.owned) m.set(labelGroup(b.label), (m.get(labelGroup(b.label)) ?? 0) + b.size);
    return [...m].sort((a, b) => b[1] - a[1]);
  }

  acquire(bytes: number, usage: number, label: string): GPUBuffer {
    const size = Math.max(Math.ceil(bytes / 4) * 4, Math.min(sizeClass(bytes), Math.floor(this.maxBufferSize / 4) * 4));
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    const reused = list?.pop();
    if (reused) {
      this.stats.reused++;
      this.stats.pooledBytes -= size;
      this.stats.liveBytes += size;
      reused.label = label;
      this.owned.add(reused);
      return reused;
    }
    const budget = this.budget();
    if (this.stats.liveBytes + this.stats.pooledBytes + size > budget.bytes) {
      if (this.canTrim()) this.trim(); // free buffers first (else they stay over the budget until the batch is submitted)
      if (this.stats.liveBytes + size > budget.bytes) {
        const parts = this.liveByGroup().map(([g, n]) => `${g} ${formatSize(n)}`).join(", ");
        throw new GpuOutOfMemoryError(
          `tensor '${label}' needs ${formatSize(size)} of GPU memory, over the budget of ${formatSize(budget.bytes)} (${budget.source}): ` +
            `${formatSize(this.stats.liveBytes)} in use${parts ? ` (${parts})` : ""}; nothing was allocated`,
          "shorten the context or the input, store weights as f16, or raise the budget with --gpu-memory SIZE",
        );
      }
    }
    const buffer = this.device.createBuffer({ size, usage, label });
    this.stats.created++;
    this.stats.liveBytes += size;
    this.owned.add(buffer);
    this.onCreate(buffer, label);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.owned.delete(buffer)) throw new Error(`buffer '${buffer.label}' released twice or not from this pool`);
    const key = `${buffer.usage}:${buffer.size}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buffer);
    this.stats.liveBytes -= buffer.size;
    this.stats.pooledBytes += buffer.size;
  }

  /** Destroys every pooled (free) buffer. Live buffers are untouched. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooledBytes = 0;
  }
}
