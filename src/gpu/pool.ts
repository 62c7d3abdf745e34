// GPU buffer pool: a decode loop allocates nothing after warm-up. Buffers are grouped by usage and
// a rounded size class; release() returns a buffer to its class, acquire() takes the most recent.
// WebGPU orders queue work, so a buffer released while earlier commands still use it may be
// handed out again for later commands without hazard (staging buffers are released after unmap).

/** Rounds a byte size up to its class: 256 B steps up to 1 MiB, then 1/8-octave steps (≤ 12.5% slack). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 1 << 20) return Math.ceil(b / 256) * 256;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
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
  ) {}

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
