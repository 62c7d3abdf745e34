// Uniform parameters of the open batch: a per-batch arena of 64 KiB uniform buffers addressed with
// dynamic offsets. Each dispatch's params are copied into the arena's host side; flush() writes
// the used bytes with writeBuffer just before the batch is submitted (queue order keeps earlier
// batches' values intact), so a decode step allocates no GPU memory for them.

import type { RuntimeLimits } from "./adapter-info.js";
import { checkParamsSize } from "./bind-groups.js";

const ARENA_CHUNK_BYTES = 64 * 1024;

export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

export class UniformArena {
  private readonly chunks: { buffer: GPUBuffer; host: Uint8Array }[] = [];
  private chunk = 0;
  private offset = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly limits: Readonly<RuntimeLimits>,
    /** Called for every GPUBuffer the arena creates (ctx.stats.buffersCreated). */
    private readonly onCreate: () => void,
  ) {}

  /** Copies `params` into the arena: the chunk and the dynamic offset to bind them at. */
  alloc(params: Uint8Array): { chunk: GPUBuffer; offset: number } {
    const align = Math.max(this.limits.minUniformBufferOffsetAlignment, 16);
    const size = roundUp(params.byteLength, 16);
    checkParamsSize(params);
    if (this.offset + size > ARENA_CHUNK_BYTES) {
      this.chunk++;
      this.offset = 0;
    }
    let c = this.chunks[this.chunk];
    if (!c) {
      this.onCreate();
      c = {
        buffer: this.device.createBuffer({ size: ARENA_CHUNK_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `uniform-arena-${this.chunk}` }),
        host: new Uint8Array(ARENA_CHUNK_BYTES),
      };
      this.chunks.push(c);
    }
    const offset = this.offset;
    c.host.set(params, offset);
    this.offset = roundUp(offset + size, align);
    return { chunk: c.buffer, offset };
  }

  /** Writes the used part of every chunk to the GPU (before the batch that reads them) and starts over. */
  flush(): void {
    for (let i = 0; i <= this.chunk && i < this.chunks.length; i++) {
      const used = i < this.chunk ? ARENA_CHUNK_BYTES : this.offset;
      if (used > 0) {
        const c = this.chunks[i]!;
        this.device.queue.writeBuffer(c.buffer, 0, c.host.buffer, c.host.byteOffset, used);
      }
    }
    this.chunk = 0;
    this.offset = 0;
  }
}
