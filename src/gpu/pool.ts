// GPU buffer pool: a decode loop allocates nothing after warm-up. Buffers are grouped by usage and
// a rounded size class; release() returns a buffer to its class, acquire() takes the most recent.
// WebGPU orders queue work, so a buffer released while earlier commands still use it may be
// handed out again for later commands without hazard (staging buffers are released after unmap).
// A new buffer that would take the live ones past the memory budget (src/gpu/budget.ts) is
// refused with GpuOutOfMemoryError naming the tensor and what holds the memory, by label group.
//
// Captured programs (src/gpu/capture.ts) pin buffers: while a capture is open every buffer handed
// out, and every pool buffer a recorded command binds, is pinned by it; a pinned buffer that is
// released is "held" (still counted live) instead of freed, until every program pinning it is
// disposed. A buffer released during the capture that only this capture pins goes to the
// capture's own free list, so later acquisitions inside the same capture can reuse it (the
// recorded commands keep queue order, as normal encoding does), but nothing outside it can.

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
  /** Of liveBytes: released buffers kept for the captured programs that pin them. */
  heldBytes: number;
}

/** The open capture's pin set and its own free list. */
interface CaptureState {
  pins: Set<GPUBuffer>;
  free: Map<string, GPUBuffer[]>;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly owned = new Set<GPUBuffer>();
  /** How many captured programs (the open capture included) pin each buffer. */
  private readonly pins = new Map<GPUBuffer, number>();
  /** Released buffers kept while pinned. */
  private readonly held = new Set<GPUBuffer>();
  private capture: CaptureState | null = null;
  readonly stats: PoolStats = { created: 0, reused: 0, liveBytes: 0, pooledBytes: 0, heldBytes: 0 };

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
    for (const b of this.held) m.set("captured", (m.get("captured") ?? 0) + b.size);
    return [...m].sort((a, b) => b[1] - a[1]);
  }

  acquire(bytes: number, usage: number, label: string): GPUBuffer {
    const size = Math.max(Math.ceil(bytes / 4) * 4, Math.min(sizeClass(bytes), Math.floor(this.maxBufferSize / 4) * 4));
    const key = `${usage}:${size}`;
    const cap = this.capture;
    if (cap) {
      const mine = cap.free.get(key)?.pop();
      if (mine) {
        this.stats.reused++;
        this.held.delete(mine);
        this.stats.heldBytes -= size;
        mine.label = label;
        this.owned.add(mine);
        return mine;
      }
    }
    const list = this.free.get(key);
    const reused = list?.pop();
    if (reused) {
      this.stats.reused++;
      this.stats.pooledBytes -= size;
      this.stats.liveBytes += size;
      reused.label = label;
      this.owned.add(reused);
      if (cap) this.pin(reused);
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
    if (cap) this.pin(buffer);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.owned.delete(buffer)) throw new Error(`buffer '${buffer.label}' released twice or not from this pool`);
    const pinned = this.pins.get(buffer);
    if (pinned !== undefined) {
      this.held.add(buffer);
      this.stats.heldBytes += buffer.size;
      const cap = this.capture;
      if (cap && pinned === 1 && cap.pins.has(buffer)) {
        const key = `${buffer.usage}:${buffer.size}`;
        let list = cap.free.get(key);
        if (!list) cap.free.set(key, (list = []));
        list.push(buffer);
      }
      return;
    }
    this.toFree(buffer);
  }

  private toFree(buffer: GPUBuffer): void {
    const key = `${buffer.usage}:${buffer.size}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buffer);
    this.stats.liveBytes -= buffer.size;
    this.stats.pooledBytes += buffer.size;
  }

  /** Whether this pool handed out `buffer` and it is live or held (not free, not foreign). */
  holds(buffer: GPUBuffer): boolean {
    return this.owned.has(buffer) || this.held.has(buffer);
  }

  /** Opens a capture: buffers handed out from now on, and those passed to pinForCapture, are pinned by it. */
  beginCapture(): void {
    if (this.capture) throw new Error("BufferPool.beginCapture: a capture is already open");
    this.capture = { pins: new Set(), free: new Map() };
  }

  /** Pins a buffer a recorded command binds (no-op for buffers this pool does not hold). */
  pinForCapture(buffer: GPUBuffer): void {
    const cap = this.capture;
    if (!cap || cap.pins.has(buffer) || !this.holds(buffer)) return;
    this.pin(buffer);
  }

  /** Closes the open capture; returns the buffers it pinned (the program unpins them at dispose). */
  endCapture(): Set<GPUBuffer> {
    const cap = this.capture;
    if (!cap) throw new Error("BufferPool.endCapture: no capture is open");
    this.capture = null;
    return cap.pins;
  }

  /** Drops one program's pins; a released buffer no program pins any more returns to the free lists. */
  unpin(buffers: Iterable<GPUBuffer>): void {
    for (const b of buffers) {
      const n = this.pins.get(b);
      if (n === undefined) continue;
      if (n > 1) {
        this.pins.set(b, n - 1);
        continue;
      }
      this.pins.delete(b);
      if (this.held.delete(b)) {
        this.stats.heldBytes -= b.size;
        this.toFree(b);
      }
    }
  }

  private pin(buffer: GPUBuffer): void {
    this.capture!.pins.add(buffer);
    this.pins.set(buffer, (this.pins.get(buffer) ?? 0) + 1);
  }

  /** Destroys every pooled (free) buffer. Live buffers are untouched. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooledBytes = 0;
  }
}
