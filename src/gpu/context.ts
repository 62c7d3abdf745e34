// GpuContext: one device, its buffer pool, kernel registry and the current command batch.
//
// Batching: ops encode into one shared command encoder (one long compute pass while no copy or
// profiling intervenes); submit() ends a logical step with one queue.submit. The host reads back
// only through read()/readF32()/readBytes(), each counted in `stats`, so tests can assert how
// many host syncs a loop performs.
//
// Uniform parameters go to a per-batch arena of 64 KiB uniform buffers addressed with dynamic
// offsets; the arena is written with writeBuffer just before its batch is submitted (queue order
// keeps earlier batches' values intact), so a decode step allocates no GPU memory for them.
//
// Capture / replay (src/gpu/capture.ts): between beginCapture() and endCapture() dispatches,
// copies and clears are recorded into a CapturedProgram instead of being encoded; its replay()
// encodes them into the open batch with no host-side work besides the WebGPU calls.

import type { MemoryBudget } from "./budget.js";
import { DeviceLostError, GpuOutOfMemoryError, GpuValidationError, ShapeError, UnsupportedError, UsageError } from "../errors.js";
import { f16ArrayToF32, f32ArrayToF16 as float32ToF16 } from "../util/f16.js";
import { BufferPool } from "./pool.js";
import { CMD_CLEAR, CMD_COPY, CMD_DISPATCH, CMD_DISPATCH_INDIRECT, CapturedProgram, type ProgramHost, type RecordedCommand, type ReplayTarget } from "./capture.js";
import { KernelRegistry, type Kernel, type KernelVariant } from "./kernels.js";
import { Profiler } from "./profiler.js";
import { DTYPE_BYTES, Tensor, checkQuantShape, checkShape, isQuantDType, numel, tilesBytes, tilesLayout, type DType, type HostArray } from "./tensor.js";

/** Limits this runtime honours (may be stricter than the device's, e.g. a forced binding size for tests). */
export interface RuntimeLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  maxUniformBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
  minUniformBufferOffsetAlignment: number;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** "node-dawn" | "navigator.gpu" | "injected" */
  backend: string;
  isSoftware: boolean;
  /** What the adapter offers (the device gets the optional features and these limits' values). */
  features: readonly string[];
  limits: Readonly<Record<string, number>>;
}

export interface RuntimeStats {
  submits: number;
  dispatches: number;
  /** Host readbacks (mapAsync of a staging buffer). */
  readbacks: number;
  bytesReadBack: number;
  /** Host → GPU writes (uploads; not counting the per-batch uniform arena). */
  uploads: number;
  /** GPUBuffers created over the context's life (pool, staging and arena). */
  buffersCreated: number;
  /** CapturedProgram.replay() calls (their dispatches are counted in `dispatches` too). */
  replays: number;
  /** Dispatches encoded by replays (per replay: replayDispatches / replays, or the program's `dispatches`). */
  replayDispatches: number;
  /** Cumulative host time spent encoding replays (performance.now around each replay's encoding), ms. */
  replayEncodeMs: number;
}

/** A byte range of a tensor bound to one storage binding. */
export interface BufferWindow {
  readonly tensor: Tensor;
  readonly byteOffset: number;
  readonly byteSize: number;
}
export type BindingResource = Tensor | BufferWindow | { readonly buffer: GPUBuffer; readonly offset?: number; readonly size?: number };

/** A window of whole rows bound at the aligned offset at or below its first row (see bindingSpans). */
interface SpanPlan {
  /** Aligned byte offset of the binding. */
  byteOffset: number;
  byteSize: number;
  /** Elements between the binding's start and the first row: kernels add it to their indices. */
  elementBase: number;
  firstRow: number;
  rows: number;
}

export interface WindowPlan {
  /** Byte offset of the window into each tensor with this row size. */
  byteOffset: number;
  firstRow: number;
  rows: number;
}

const ARENA_CHUNK_BYTES = 64 * 1024;
/** kernels/gate.wgsl: condition → indirect arguments for a gated block of dispatches (launched by beginGate). */
export const GATE_VARIANT: KernelVariant = { file: "gate", name: "gate_args", defines: {}, bindings: ["read", "read", "read_write", "uniform"] };

/**
 * CPU reference of kernels/gate.wgsl: the indirect arguments of a block of n dispatches, the
 * workgroup counts (x, y, z) of `template` when flag != 0, else (0, 1, 1) (an empty dispatch).
 */
export function gateArgsReference(flag: number, template: ArrayLike<number>, n: number): Uint32Array {
  const out = new Uint32Array(3 * n);
  for (let i = 0; i < n; i++) {
    out[3 * i] = flag !== 0 ? template[3 * i]! : 0;
    out[3 * i + 1] = flag !== 0 ? template[3 * i + 1]! : 1;
    out[3 * i + 2] = flag !== 0 ? template[3 * i + 2]! : 1;
  }
  return out;
}
const TENSOR_USAGE = 0x0080 /* STORAGE */ | 0x0004 /* COPY_SRC */ | 0x0008; /* COPY_DST */

export class GpuContext {
  readonly pool: BufferPool;
  readonly kernels: KernelRegistry;
  readonly stats: RuntimeStats = { submits: 0, dispatches: 0, readbacks: 0, bytesReadBack: 0, uploads: 0, buffersCreated: 0, replays: 0, replayDispatches: 0, replayEncodeMs: 0 };
  profiler: Profiler | null = null;
  /**
   * GPU bytes this context may hold in tensors (src/gpu/budget.ts); openDevice sets it from the
   * adapter or its memoryBudgetBytes option. The pool refuses allocations past it.
   */
  memoryBudget: MemoryBudget = { bytes: Infinity, source: "no budget set" };

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly pendingErrors: Error[] = [];
  private lost: string | null = null;
  private destroyed = false;
  private readonly arena: { buffer: GPUBuffer; host: Uint8Array }[] = [];
  private arenaChunk = 0;
  private arenaOffset = 0;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private readonly staging: GPUBuffer[] = [];
  /** Buffer writes that must land just before the open batch runs (see beginGate). */
  /** Kernels dispatched in the open batch (named in errors found when it is submitted). */
  private readonly batchKernels = new Set<string>();
  private readonly deferredWrites: { buffer: GPUBuffer; data: Uint8Array }[] = [];
  /** Buffers to return to the pool once the open batch is submitted. */
  private readonly releaseAfterSubmit: GPUBuffer[] = [];
  /** Buffers to destroy once the open batch is submitted (uniforms of disposed programs). */
  private readonly destroyAfterSubmit: GPUBuffer[] = [];
  private gate: { flagName: string; counts: number[]; args: GPUBuffer; template: GPUBuffer; max: number; kernelName: string } | null = null;
  /** The open capture (beginCapture … endCapture): commands are recorded here instead of encoded. */
  private capture: { label: string; commands: RecordedCommand[] } | null = null;
  /** Programs captured and not disposed. */
  private readonly programs = new Set<CapturedProgram>();
  private readonly replayTarget: ReplayTarget;
  private readonly programHost: ProgramHost;

  constructor(
    readonly device: GPUDevice,
    readonly features: ReadonlySet<string>,
    readonly limits: Readonly<RuntimeLimits>,
    readonly adapter: Readonly<AdapterDescription>,
    /** Keeps the provider object (Dawn's `create()` result) alive while the device is. */
    private keepAlive: unknown = null,
  ) {
    this.pool = new BufferPool(device, () => this.stats.buffersCreated++, limits.maxBufferSize, () => this.memoryBudget, () => this.encoder === null);
    this.kernels = new KernelRegistry(device, features);
    const ctx = this;
    this.replayTarget = {
      pass: (label) => this.beginPass(label),
      afterDispatch: () => this.endPass(),
      encoder: () => {
        this.endPass();
        return this.commandEncoder();
      },
      get profiling() {
        return ctx.profiler !== null;
      },
    };
    this.programHost = {
      replayProgram: (p) => this.replayProgram(p),
      releaseProgram: (p, uniform) => {
        this.programs.delete(p);
        if (this.destroyed) return;
        this.pool.unpin(p.pinned);
        // The open batch may hold replays of it: destroyed buffers cannot be submitted.
        if (uniform) {
          if (this.encoder) this.destroyAfterSubmit.push(uniform);
          else uniform.destroy();
        }
      },
      get isDestroyed() {
        return ctx.destroyed;
      },
    };
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const e = ev.error;
      this.pendingErrors.push(
        e instanceof GPUOutOfMemoryError ? new GpuOutOfMemoryError(`GPU out of memory: ${e.message}`) : new GpuValidationError(`GPU error: ${e.message}`),
      );
    };
    void device.lost.then((info) => {
      if (!this.destroyed) this.lost = `${info.reason}: ${info.message}`;
    });
  }

  /** Budget bytes not held by live tensors (free pooled buffers count as available). */
  get memoryAvailable(): number {
    return Math.max(0, this.memoryBudget.bytes - this.pool.stats.liveBytes);
  }

  get hasF16(): boolean {
    return this.features.has("shader-f16");
  }
  get hasSubgroups(): boolean {
    return this.features.has("subgroups");
  }
  get hasTimestamps(): boolean {
    return this.features.has("timestamp-query");
  }

  // ---------------------------------------------------------------- tensors

  /** A new tensor with undefined contents (from the pool). */
  empty<D extends DType>(shape: readonly number[], dtype: D, label = "tensor"): Tensor<D> {
    this.assertUsable();
    checkShape(shape, `tensor '${label}'`);
    if (isQuantDType(dtype)) checkQuantShape(shape, dtype, `tensor '${label}'`);
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    if (bytes > this.limits.maxBufferSize) {
      throw new UnsupportedError(
        `tensor '${label}' [${shape.join(", ")}] ${dtype} needs ${bytes} bytes, over this device's maxBufferSize (${this.limits.maxBufferSize})`,
      );
    }
    const buffer = this.pool.acquire(Math.ceil(bytes / 4) * 4, TENSOR_USAGE, label);
    return new Tensor(this, shape, dtype, buffer, label);
  }

  /**
   * A new weight tensor [N, K] f32|f16 in the tiles layout (src/gpu/tensor.ts TilesLayout), contents
   * undefined; its buffer holds the padded tiles (tilesBytes), which is what the pool counts.
   */
  emptyTiles<D extends "f32" | "f16">(shape: readonly [number, number], dtype: D, T: number, label = "tensor"): Tensor<D> {
    this.assertUsable();
    checkShape(shape, `tensor '${label}'`);
    const layout = tilesLayout(shape[0], shape[1], dtype, T);
    const bytes = tilesBytes(layout);
    if (bytes > this.limits.maxBufferSize) {
      throw new UnsupportedError(`tensor '${label}' [${shape.join(", ")}] ${dtype} in tiles of ${T} rows needs ${bytes} bytes, over this device's maxBufferSize (${this.limits.maxBufferSize})`);
    }
    const buffer = this.pool.acquire(bytes, TENSOR_USAGE, label);
    return new Tensor(this, shape, dtype, buffer, label, true, layout);
  }

  /** Uploads host data as a new tensor. f16 data is given as raw bits (Uint16Array) or as numbers to round. */
  upload<D extends DType>(data: ArrayLike<number> | ArrayBufferView, shape: readonly number[], dtype: D, label = "tensor"): Tensor<D> {
    const t = this.empty(shape, dtype, label);
    try {
      this.write(t, data);
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  /** Overwrites a tensor's contents from host data (ordered after every op encoded so far). */
  write(t: Tensor, data: ArrayLike<number> | ArrayBufferView, elementOffset = 0): void {
    t.assertLive();
    t.refuseTiles("write");
    this.refuseInGate(`write to '${t.label}'`);
    this.refuseInCapture(`write to '${t.label}'`, "a host write would have to be repeated by every replay: upload before beginCapture, or compute the data on the GPU");
    const bytes = toBytes(data, t.dtype, t.label);
    if (isQuantDType(t.dtype) && (elementOffset !== 0 || bytes.byteLength !== t.byteLength)) {
      // Quantized data is two arrays (quants, then scales): only whole-tensor writes are meaningful.
      throw new ShapeError(`write to '${t.label}': ${t.dtype} tensors are written whole (${t.byteLength} bytes at offset 0), got ${bytes.byteLength} bytes at element ${elementOffset}`);
    }
    const elems = bytes.byteLength / DTYPE_BYTES[t.dtype];
    if (elementOffset + elems > t.numel) {
      throw new ShapeError(`write to '${t.label}': ${elems} elements at offset ${elementOffset} exceed its ${t.numel} elements`);
    }
    // Commands already encoded but not submitted must see the old contents: submit them first.
    if (this.encoder) this.submit();
    const byteOffset = elementOffset * DTYPE_BYTES[t.dtype];
    const head = byteOffset % 4;
    if (head === 0 && bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(t.buffer, byteOffset, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } else {
      // writeBuffer needs 4-byte alignment: widen to whole words, keeping the neighbours' bytes
      // only when they are ours to overwrite (the data region). Padding bytes are zeroed.
      if (head !== 0 || (byteOffset + bytes.byteLength) % 4 !== 0) {
        if (head !== 0 || byteOffset + bytes.byteLength < t.byteLength) {
          throw new ShapeError(`write to '${t.label}': unaligned partial writes of ${t.dtype} are not supported (offset ${elementOffset}, ${elems} elements)`);
        }
      }
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(t.buffer, byteOffset, padded.buffer, 0, padded.byteLength);
    }
    this.stats.uploads++;
  }

  releaseBuffer(buffer: GPUBuffer): void {
    this.pool.release(buffer);
  }

  /** Reads a tensor back; f16 as raw bits. One host sync. */
  async read<D extends DType>(t: Tensor<D>): Promise<HostArray<D>> {
    t.assertLive();
    t.refuseTiles("read");
    const bytes = await this.readBytes(t.buffer, 0, t.byteLength);
    const buf = bytes.buffer;
    switch (t.dtype) {
      case "f32":
        return new Float32Array(buf, 0, t.numel) as HostArray<D>;
      case "f16":
        return new Uint16Array(buf, 0, t.numel) as HostArray<D>;
      case "u32":
        return new Uint32Array(buf, 0, t.numel) as HostArray<D>;
      case "q8_0":
      case "q4_0":
        return new Uint8Array(buf, 0, t.byteLength) as HostArray<D>;
      default:
        return new Int32Array(buf, 0, t.numel) as HostArray<D>;
    }
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    if (isQuantDType(t.dtype)) throw new UnsupportedError(`readF32('${t.label}'): ${t.dtype} is read as bytes (read(), then dequantizeMatrix of src/quant/formats.ts)`);
    const data = await this.read(t);
    if (data instanceof Float32Array) return data;
    if (data instanceof Uint16Array) return f16ArrayToF32(data);
    return Float32Array.from(data);
  }

  /**
   * Copies `byteLength` bytes at `byteOffset` of a buffer to the host: submits the open batch,
   * copies into a staging buffer and maps it. Counted in stats.readbacks.
   */
  async readBytes(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<Uint8Array> {
    this.assertUsable();
    this.refuseInCapture(`readback of '${buffer.label}'`, "read back after endCapture() and a replay");
    const start = byteOffset - (byteOffset % 4);
    const size = Math.max(4, Math.ceil((byteOffset + byteLength - start) / 4) * 4);
    const staging = this.acquireStaging(size);
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(buffer, start, staging, 0, size);
    this.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, size);
    } catch (e) {
      this.throwPendingErrors();
      this.staging.push(staging);
      throw this.lost ? new DeviceLostError(`GPU device lost during readback: ${this.lost}`) : e;
    }
    const out = new Uint8Array(byteLength);
    out.set(new Uint8Array(staging.getMappedRange(0, size), byteOffset - start, byteLength));
    staging.unmap();
    this.staging.push(staging);
    this.stats.readbacks++;
    this.stats.bytesReadBack += byteLength;
    this.throwPendingErrors();
    return out;
  }

  private acquireStaging(size: number): GPUBuffer {
    const i = this.staging.findIndex((b) => b.size >= size && b.size <= Math.max(size * 4, 65536));
    if (i >= 0) return this.staging.splice(i, 1)[0]!;
    this.stats.buffersCreated++;
    return this.device.createBuffer({ size: Math.max(size, 256), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: "readback-staging" });
  }

  /**
   * Splits a row-major tensor region into windows that each fit one storage binding, for ops on
   * tensors larger than maxStorageBufferBindingSize. Window offsets are multiples of
   * minStorageBufferOffsetAlignment. `rowBytes` is the byte size of the unit that must not be split.
   */
  bindingWindows(rows: number, rowBytes: number, what: string, maxRowsPerWindow = Infinity): WindowPlan[] {
    const limit = this.limits.maxStorageBufferBindingSize;
    if (rowBytes > limit) {
      throw new UnsupportedError(`${what}: one row of ${rowBytes} bytes exceeds the storage binding limit of ${limit} bytes`);
    }
    if (rows * rowBytes <= limit && rows <= maxRowsPerWindow) return [{ byteOffset: 0, firstRow: 0, rows }];
    const align = this.limits.minStorageBufferOffsetAlignment;
    const rowAlign = align / gcd(rowBytes, align); // rows per window must be a multiple of this
    let per = Math.min(Math.floor(limit / rowBytes), maxRowsPerWindow);
    per -= per % rowAlign;
    if (per <= 0) throw new UnsupportedError(`${what}: rows of ${rowBytes} bytes cannot be split at ${align}-byte aligned offsets within ${limit} bytes`);
    const plan: WindowPlan[] = [];
    for (let r = 0; r < rows; r += per) plan.push({ byteOffset: r * rowBytes, firstRow: r, rows: Math.min(per, rows - r) });
    return plan;
  }

  /**
   * Like bindingWindows, but a window may start at any row: it is bound at the aligned offset at
   * or below its first row, and `elementBase` (elements of `elementBytes`) says where that row
   * starts inside the binding. Needed where an aligned row boundary would make windows larger
   * than the binding limit (e.g. 20,000-byte rows under a browser's 256-byte alignment need
   * 8-row steps). rowBytes must be a multiple of 4 and of elementBytes.
   */
  bindingSpans(rows: number, rowBytes: number, elementBytes: number, what: string): SpanPlan[] {
    const limit = this.limits.maxStorageBufferBindingSize;
    if (rows * rowBytes <= limit) return [{ byteOffset: 0, byteSize: rows * rowBytes, elementBase: 0, firstRow: 0, rows }];
    const align = this.limits.minStorageBufferOffsetAlignment;
    // A row starts at a multiple of elementBytes, so at most align − elementBytes bytes lie
    // between the aligned binding start and the row.
    const per = Math.floor((limit - Math.max(0, align - elementBytes)) / rowBytes);
    if (per <= 0) throw new UnsupportedError(`${what}: one row of ${rowBytes} bytes (plus up to ${align - elementBytes} bytes to the ${align}-byte aligned binding start) exceeds the storage binding limit of ${limit} bytes`);
    const plan: SpanPlan[] = [];
    for (let r = 0; r < rows; r += per) {
      const n = Math.min(per, rows - r);
      const start = r * rowBytes;
      const at = start - (start % align);
      plan.push({ byteOffset: at, byteSize: start - at + n * rowBytes, elementBase: (start - at) / elementBytes, firstRow: r, rows: n });
    }
    return plan;
  }

  // ---------------------------------------------------------------- encoding

  /**
   * Encodes one dispatch into the current batch. `params` (≤ 256 bytes) becomes the kernel's
   * uniform binding (the last binding). Every storage binding is checked against the runtime's
   * binding limit so an op that forgets to window a large tensor fails loudly.
   */
  dispatch(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null, workgroups: readonly [number, number?, number?]): void {
    const [x, y = 1, z = 1] = workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new UnsupportedError(`kernel '${kernel.name}': dispatch [${x}, ${y}, ${z}] exceeds maxComputeWorkgroupsPerDimension (${maxWg})`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    if (this.capture) {
      this.record(kernel, resources, params, x, y, z, null, 0);
      return;
    }
    const { bindGroup, dynamicOffset } = this.bind(kernel, resources, params);
    const pass = this.beginPass(kernel.name);
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, bindGroup, dynamicOffset === null ? [] : [dynamicOffset]);
    const g = this.gate;
    if (g) {
      const i = g.counts.length / 3;
      if (i >= g.max) throw new UnsupportedError(`gated block '${g.kernelName}': more than ${g.max} dispatches (raise maxDispatches in beginGate)`);
      g.counts.push(x, y, z);
      pass.dispatchWorkgroupsIndirect(g.args, 12 * i);
    } else {
      pass.dispatchWorkgroups(x, y, z);
    }
    this.afterDispatch(kernel.name);
  }

  /**
   * Starts a gated block: every dispatch encoded until endGate() runs only if flag[0] != 0 on the
   * GPU when the block executes. The block's workgroup counts are recorded while encoding and
   * written (just before the batch is submitted) into a template that a tiny kernel, encoded
   * here ahead of the block, turns into indirect arguments: (x, y, z) or (0, 1, 1). No host
   * readback is involved. Copies, clears and writes cannot be gated and are refused inside.
   */
  async beginGate(flag: Tensor, label: string, maxDispatches = 1024): Promise<void> {
    if (this.gate) throw new UnsupportedError(`beginGate('${label}'): gated blocks do not nest (open: '${this.gate.kernelName}')`);
    this.refuseInCapture(`beginGate('${label}')`, "gated blocks cannot be captured: make the kernels read their condition or row count from a GPU buffer");
    if (flag.dtype !== "u32") throw new ShapeError(`beginGate('${label}'): flag '${flag.label}' must be u32`);
    const kernel = await this.kernels.get(GATE_VARIANT);
    const bytes = 12 * maxDispatches;
    const template = this.pool.acquire(bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, `gate.template.${label}`);
    const args = this.pool.acquire(bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT, `gate.args.${label}`);
    this.dispatch(kernel, [flag, { buffer: template, offset: 0, size: bytes }, { buffer: args, offset: 0, size: bytes }], new Uint8Array(Uint32Array.of(maxDispatches, 0, 0, 0).buffer), [Math.ceil(maxDispatches / 64)]);
    this.gate = { flagName: flag.label, counts: [], args, template, max: maxDispatches, kernelName: label };
  }

  /** Ends the gated block started by beginGate(); returns how many dispatches it holds. */
  endGate(): number {
    const g = this.gate;
    if (!g) throw new UnsupportedError("endGate() without beginGate()");
    this.gate = null;
    const data = new Uint8Array(12 * g.max);
    const counts = new Uint32Array(data.buffer);
    counts.set(g.counts);
    this.deferredWrites.push({ buffer: g.template, data });
    this.releaseAfterSubmit.push(g.template, g.args);
    return g.counts.length / 3;
  }

  /** Like dispatch(), with the workgroup counts read from `indirect` (3 × u32 at `offset` bytes) on the GPU. */
  dispatchIndirect(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null, indirect: GPUBuffer, offset = 0): void {
    if (this.capture) {
      this.record(kernel, resources, params, 0, 0, 0, indirect, offset);
      return;
    }
    const { bindGroup, dynamicOffset } = this.bind(kernel, resources, params);
    const pass = this.beginPass(kernel.name);
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, bindGroup, dynamicOffset === null ? [] : [dynamicOffset]);
    pass.dispatchWorkgroupsIndirect(indirect, offset);
    this.afterDispatch(kernel.name);
  }

  /** Encodes a buffer copy into the batch (in order with dispatches). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.assertUsable();
    this.refuseInGate("copy");
    if (this.capture) {
      this.pool.pinForCapture(src);
      this.pool.pinForCapture(dst);
      this.capture.commands.push({ kind: CMD_COPY, src, srcOffset, dst, dstOffset, size });
      return;
    }
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Zero-fills a tensor (in order with dispatches). */
  clear(t: Tensor): void {
    this.assertUsable();
    this.refuseInGate("clear");
    t.assertLive();
    const size = Math.ceil(t.byteLength / 4) * 4;
    if (this.capture) {
      this.pool.pinForCapture(t.buffer);
      this.capture.commands.push({ kind: CMD_CLEAR, buffer: t.buffer, offset: 0, size });
      return;
    }
    this.endPass();
    this.commandEncoder().clearBuffer(t.buffer, 0, size);
  }

  /** Ends the current logical step: one queue.submit for everything encoded since the last one. */
  submit(): void {
    this.assertUsable();
    this.refuseInCapture("submit()", "nothing runs while capturing: call endCapture(), then replay() and submit()");
    if (!this.encoder) return;
    this.endPass();
    this.profiler?.resolve(this.encoder);
    // The arena's host copies are written just before the batch that reads them.
    for (let i = 0; i <= this.arenaChunk && i < this.arena.length; i++) {
      const used = i < this.arenaChunk ? ARENA_CHUNK_BYTES : this.arenaOffset;
      if (used > 0) {
        const c = this.arena[i]!;
        this.device.queue.writeBuffer(c.buffer, 0, c.host.buffer, c.host.byteOffset, used);
      }
    }
    this.arenaChunk = 0;
    this.arenaOffset = 0;
    if (this.gate) throw new UnsupportedError(`submit() inside the gated block '${this.gate.kernelName}'`);
    for (const w of this.deferredWrites) this.device.queue.writeBuffer(w.buffer, 0, w.data.buffer, w.data.byteOffset, w.data.byteLength);
    this.deferredWrites.length = 0;
    // Errors Dawn finds when the batch is finished or submitted are attributed to its kernels.
    const kernels = [...this.batchKernels];
    this.batchKernels.clear();
    this.device.pushErrorScope("validation");
    const cmd = this.encoder.finish({ label: "onegen-batch" });
    this.encoder = null;
    this.device.queue.submit([cmd]);
    void this.device.popErrorScope().then((err) => {
      if (err) this.pendingErrors.push(new GpuValidationError(`GPU validation error in a batch running kernels [${kernels.join(", ")}]: ${err.message}`));
    });
    this.stats.submits++;
    for (const b of this.releaseAfterSubmit) this.pool.release(b);
    this.releaseAfterSubmit.length = 0;
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit.length = 0;
  }

  /** Submits and waits for the GPU to finish; throws any GPU error raised so far. */
  async sync(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.throwPendingErrors();
  }

  /** Throws (once) the first GPU error reported since the last check. */
  throwPendingErrors(): void {
    if (this.lost) throw new DeviceLostError(`GPU device lost: ${this.lost}`);
    const e = this.pendingErrors.shift();
    if (e) {
      this.pendingErrors.length = 0;
      throw e;
    }
  }

  /** Destroys the device; the process can then exit. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.capture = null;
    this.programs.clear();
    this.encoder = null;
    this.pass = null;
    this.pool.trim();
    this.device.destroy();
    this.keepAlive = null;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  // ---------------------------------------------------------------- capture / replay

  /**
   * Starts recording: until endCapture(), dispatch / dispatchIndirect / copy / clear are recorded
   * into a program instead of being encoded (nothing runs). Refused inside a gated block, inside
   * another capture; write(), readbacks, submit() and beginGate() are refused while it is open.
   * See src/gpu/capture.ts.
   */
  beginCapture(label: string): void {
    this.assertUsable();
    if (this.capture) throw new UnsupportedError(`beginCapture('${label}') inside the capture '${this.capture.label}': captures do not nest`);
    if (this.gate) throw new UnsupportedError(`beginCapture('${label}') inside the gated block '${this.gate.kernelName}'`);
    this.pool.beginCapture();
    this.capture = { label, commands: [] };
  }

  /** Whether a capture is open (its label), or null. */
  get capturing(): string | null {
    return this.capture?.label ?? null;
  }

  /**
   * Ends the capture: writes the recorded params into one program-owned uniform buffer (once),
   * creates the bind groups, and returns the program (replay() per step, dispose() at the end).
   */
  endCapture(): CapturedProgram {
    const cap = this.capture;
    if (!cap) throw new UsageError("endCapture() without beginCapture()");
    this.capture = null;
    const pinned = this.pool.endCapture();
    try {
      this.assertUsable();
      const align = Math.max(this.limits.minUniformBufferOffsetAlignment, 16);
      const offsets: number[] = new Array(cap.commands.length).fill(0);
      let end = 0;
      cap.commands.forEach((c, i) => {
        if ((c.kind === CMD_DISPATCH || c.kind === CMD_DISPATCH_INDIRECT) && c.params) {
          const at = roundUp(end, align);
          offsets[i] = at;
          end = at + roundUp(c.params.byteLength, 16);
        }
      });
      let uniform: GPUBuffer | null = null;
      if (end > 0) {
        const host = new Uint8Array(roundUp(end, 16));
        cap.commands.forEach((c, i) => {
          if ((c.kind === CMD_DISPATCH || c.kind === CMD_DISPATCH_INDIRECT) && c.params) host.set(c.params, offsets[i]!);
        });
        uniform = this.device.createBuffer({ size: host.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `capture.${cap.label}.params` });
        this.stats.buffersCreated++;
        this.device.queue.writeBuffer(uniform, 0, host.buffer, 0, host.byteLength);
      }
      const groups = new Map<string, GPUBindGroup>();
      const prog = new CapturedProgram(
        cap.label,
        this.programHost,
        cap.commands,
        uniform,
        offsets,
        (c, uniformSize) => {
          const key = `${c.key}|u${uniformSize}`;
          const known = groups.get(key);
          if (known) return { group: known, created: false };
          const entries = uniformSize > 0 ? [...c.entries, { binding: c.entries.length, resource: { buffer: uniform!, offset: 0, size: uniformSize } }] : c.entries;
          const group = this.device.createBindGroup({ label: `${cap.label}:${c.kernel}`, layout: c.layout, entries });
          groups.set(key, group);
          return { group, created: true };
        },
        pinned,
      );
      this.programs.add(prog);
      return prog;
    } catch (e) {
      if (!this.destroyed) this.pool.unpin(pinned);
      throw e;
    }
  }

  /**
   * beginCapture(label), `body()`, endCapture(): the program of what body encodes. When body
   * throws, the capture is cancelled (nothing is kept) and the error is rethrown.
   */
  async captureProgram(label: string, body: () => Promise<void> | void): Promise<CapturedProgram> {
    this.beginCapture(label);
    try {
      await body();
    } catch (e) {
      if (this.capture?.label === label) this.cancelCapture();
      throw e;
    }
    return this.endCapture();
  }

  /** Abandons the open capture (e.g. after an op failed inside it): nothing is kept, its pins are dropped. */
  cancelCapture(): void {
    if (!this.capture) return;
    this.capture = null;
    this.pool.unpin(this.pool.endCapture());
  }

  /** Captured programs not yet disposed. */
  get liveProgramCount(): number {
    return this.programs.size;
  }

  private replayProgram(p: CapturedProgram): void {
    this.assertUsable();
    if (!this.programs.has(p)) throw new UsageError(`captured program '${p.label}' does not belong to this GpuContext`);
    if (this.capture) throw new UnsupportedError(`replay of '${p.label}' inside the capture '${this.capture.label}': captures do not nest`);
    if (this.gate) throw new UnsupportedError(`replay of '${p.label}' inside the gated block '${this.gate.kernelName}': only dispatches encoded one by one can be gated`);
    const t0 = performance.now();
    p.encodeInto(this.replayTarget);
    const dt = performance.now() - t0;
    p.replays++;
    p.encodeMs += dt;
    const s = this.stats;
    s.replays++;
    s.replayDispatches += p.dispatches;
    s.replayEncodeMs += dt;
    s.dispatches += p.dispatches;
    for (const k of p.kernelNames) this.batchKernels.add(k);
  }

  private record(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null, x: number, y: number, z: number, indirect: GPUBuffer | null, indirectOffset: number): void {
    const { entries, key, hasUniform } = this.bindEntries(kernel, resources, params);
    for (const e of entries) this.pool.pinForCapture((e.resource as GPUBufferBinding).buffer);
    if (indirect) this.pool.pinForCapture(indirect);
    if (hasUniform) checkParamsSize(params!);
    this.capture!.commands.push({
      kind: indirect ? CMD_DISPATCH_INDIRECT : CMD_DISPATCH,
      kernel: kernel.name,
      pipeline: kernel.pipeline,
      layout: kernel.layout,
      entries,
      key,
      params: hasUniform ? params!.slice() : null,
      x,
      y,
      z,
      indirect,
      indirectOffset,
    });
  }

  // ---------------------------------------------------------------- internals

  private refuseInCapture(what: string, hint: string): void {
    if (this.capture) throw new UnsupportedError(`${what} inside the capture '${this.capture.label}'`, hint);
  }

  private refuseInGate(what: string): void {
    if (this.gate) throw new UnsupportedError(`${what} inside the gated block '${this.gate.kernelName}': only dispatches can be gated`);
  }

  private assertUsable(): void {
    if (this.destroyed) throw new DeviceLostError("this GpuContext was destroyed");
    if (this.lost) throw new DeviceLostError(`GPU device lost: ${this.lost}`);
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: "onegen-batch" });
    return this.encoder;
  }

  private beginPass(label: string): GPUComputePassEncoder {
    this.assertUsable();
    if (this.profiler) {
      this.endPass();
      this.pass = this.commandEncoder().beginComputePass({ label, timestampWrites: this.profiler.nextWrites(label) });
      return this.pass;
    }
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass({ label: "onegen-pass" });
    return this.pass;
  }

  private afterDispatch(kernel: string): void {
    this.stats.dispatches++;
    this.batchKernels.add(kernel);
    if (this.profiler) this.endPass();
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  private bind(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null): { bindGroup: GPUBindGroup; dynamicOffset: number | null } {
    const { entries, key: storageKey, hasUniform } = this.bindEntries(kernel, resources, params);
    let key = storageKey;
    let dynamicOffset: number | null = null;
    if (hasUniform) {
      const { chunk, offset } = this.allocUniform(params!);
      dynamicOffset = offset;
      entries.push({ binding: resources.length, resource: { buffer: chunk, offset: 0, size: roundUp(params!.byteLength, 16) } });
      key += `|u${this.bufferId(chunk)}:${params!.byteLength}`;
    }
    let bindGroup = this.bindGroups.get(key);
    if (!bindGroup) {
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      bindGroup = this.device.createBindGroup({ label: kernel.name, layout: kernel.layout, entries });
      this.bindGroups.set(key, bindGroup);
    }
    return { bindGroup, dynamicOffset };
  }

  /** The storage entries of a dispatch, checked (count, alignment, binding limit, aliasing), and their cache key. */
  private bindEntries(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null): { entries: GPUBindGroupEntry[]; key: string; hasUniform: boolean } {
    const kinds = kernel.variant.bindings;
    const hasUniform = kinds[kinds.length - 1] === "uniform";
    const expected = hasUniform ? kinds.length - 1 : kinds.length;
    if (resources.length !== expected) {
      throw new ShapeError(`kernel '${kernel.name}': expected ${expected} buffer bindings, got ${resources.length}`);
    }
    if (hasUniform && !params) throw new ShapeError(`kernel '${kernel.name}': needs a params uniform`);
    const entries: GPUBindGroupEntry[] = [];
    let key = kernel.name;
    const limit = this.limits.maxStorageBufferBindingSize;
    resources.forEach((r, binding) => {
      let buffer: GPUBuffer, offset: number, size: number;
      if (r instanceof Tensor) {
        r.assertLive();
        buffer = r.buffer;
        offset = 0;
        size = Math.max(4, Math.ceil(r.byteLength / 4) * 4);
      } else if ("tensor" in r) {
        r.tensor.assertLive();
        buffer = r.tensor.buffer;
        offset = r.byteOffset;
        size = Math.min(Math.ceil(r.byteSize / 4) * 4, buffer.size - offset);
      } else {
        buffer = r.buffer;
        offset = r.offset ?? 0;
        size = r.size ?? buffer.size - offset;
      }
      // The device checks its own alignment; a stricter runtime alignment (a simulated browser
      // profile) is enforced here, so an op that forgets to align a window fails on every device.
      if (kinds[binding] !== "uniform" && offset % this.limits.minStorageBufferOffsetAlignment !== 0) {
        throw new GpuValidationError(
          `kernel '${kernel.name}': binding ${binding} ('${buffer.label}') starts at byte ${offset}, not a multiple of minStorageBufferOffsetAlignment (${this.limits.minStorageBufferOffsetAlignment})`,
          "bind windows at aligned offsets (GpuContext.bindingWindows, or an aligned span with an element base in the params)",
        );
      }
      if (size > limit) {
        throw new UnsupportedError(
          `kernel '${kernel.name}': binding ${binding} ('${buffer.label}') spans ${size} bytes, over the storage binding limit of ${limit} bytes`,
          "the op must split this tensor into windows (GpuContext.bindingWindows)",
        );
      }
      entries.push({ binding, resource: { buffer, offset, size } });
      key += `|${this.bufferId(buffer)}:${offset}:${size}`;
    });
    // WebGPU forbids a buffer bound writable together with any other binding of it in one
    // dispatch; Dawn reports that only when the batch is finished, without the kernel's name.
    for (let i = 0; i < entries.length; i++) {
      if (kinds[i] !== "read_write") continue;
      const bi = (entries[i]!.resource as GPUBufferBinding).buffer;
      for (let j = 0; j < entries.length; j++) {
        if (j !== i && (entries[j]!.resource as GPUBufferBinding).buffer === bi) {
          throw new GpuValidationError(
            `kernel '${kernel.name}': buffer '${bi.label}' is bound writable (binding ${i}) and again as binding ${j} in one dispatch`,
            "an op's output must not alias its inputs",
          );
        }
      }
    }
    return { entries, key, hasUniform };
  }

  private allocUniform(params: Uint8Array): { chunk: GPUBuffer; offset: number } {
    const align = Math.max(this.limits.minUniformBufferOffsetAlignment, 16);
    const size = roundUp(params.byteLength, 16);
    checkParamsSize(params);
    if (this.arenaOffset + size > ARENA_CHUNK_BYTES) {
      this.arenaChunk++;
      this.arenaOffset = 0;
    }
    let c = this.arena[this.arenaChunk];
    if (!c) {
      this.stats.buffersCreated++;
      c = {
        buffer: this.device.createBuffer({ size: ARENA_CHUNK_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `uniform-arena-${this.arenaChunk}` }),
        host: new Uint8Array(ARENA_CHUNK_BYTES),
      };
      this.arena.push(c);
    }
    const offset = this.arenaOffset;
    c.host.set(params, offset);
    this.arenaOffset = roundUp(offset + size, align);
    return { chunk: c.buffer, offset };
  }
}

function checkParamsSize(params: Uint8Array): void {
  if (params.byteLength > 256) throw new ShapeError(`params of ${params.byteLength} bytes: at most 256 bytes per dispatch`);
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Host data → the bytes of a dtype. Numbers are converted; typed arrays of the dtype's own kind pass through. */
function toBytes(data: ArrayLike<number> | ArrayBufferView, dtype: DType, label: string): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    const ok =
      (dtype === "f32" && data instanceof Float32Array) ||
      (dtype === "f16" && data instanceof Uint16Array) ||
      (dtype === "u32" && data instanceof Uint32Array) ||
      (dtype === "i32" && data instanceof Int32Array) ||
      (isQuantDType(dtype) && data instanceof Uint8Array);
    if (ok) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (dtype === "f16" && data instanceof Float32Array) return new Uint8Array(float32ToF16(data).buffer);
    if (data instanceof DataView) throw new ShapeError(`upload to '${label}': pass a typed array, not a DataView`);
  }
  const arr = data as ArrayLike<number>;
  switch (dtype) {
    case "f32":
      return new Uint8Array(Float32Array.from(arr).buffer);
    case "f16":
      return new Uint8Array(float32ToF16(arr).buffer);
    case "u32":
      return new Uint8Array(Uint32Array.from(arr).buffer);
    case "i32":
      return new Uint8Array(Int32Array.from(arr).buffer);
    case "q8_0":
    case "q4_0":
      throw new ShapeError(`upload to '${label}': ${dtype} data is given as its bytes (a Uint8Array, src/quant/formats.ts packQuantized)`);
  }
}
