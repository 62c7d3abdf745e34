// GpuContext: one device, its buffer pool, kernel registry and the current command batch: tensors
// made, written and read back; dispatches, copies and clears encoded into the batch; submits;
// captures. The parts it delegates, one job a file: bindings and bind groups (bind-groups.ts),
// the per-batch params (uniform-arena.ts), windows of large tensors (binding-windows.ts), host
// data ⇄ bytes (host-data.ts), GPU errors (gpu-errors.ts), counters (stats.ts), device limits and
// description (adapter-info.ts), captured programs (capture.ts).
//
// Batching: ops encode into one shared command encoder (one long compute pass while no copy or
// profiling intervenes); submit() ends a logical step with one queue.submit. The host reads back
// only through read()/readF32()/readBytes(), each counted in `stats`, so tests can assert how
// many host syncs a loop performs.
//
// Uniform parameters go to a per-batch arena (src/gpu/uniform-arena.ts), so a decode step
// allocates no GPU memory for them.
//
// Capture / replay (src/gpu/capture.ts): between beginCapture() and endCapture() dispatches,
// copies and clears are recorded into a CapturedProgram instead of being encoded; its replay()
// encodes them into the open batch with no host-side work besides the WebGPU calls.

import type { MemoryBudget } from "./budget.js";
import { DeviceLostError, ShapeError, UnsupportedError, UsageError } from "../errors.js";
import { f16ArrayToF32 } from "../util/f16.js";
import type { AdapterDescription, RuntimeLimits } from "./adapter-info.js";
import { BindGroups, checkParamsSize, type BindingResource } from "./bind-groups.js";
import { planBindingSpans, planBindingWindows, type SpanPlan, type WindowPlan } from "./binding-windows.js";
import { BufferPool } from "./pool.js";
import { CMD_CLEAR, CMD_COPY, CMD_DISPATCH, CMD_DISPATCH_INDIRECT, CapturedProgram, buildCapturedProgram, type ProgramHost, type RecordedCommand, type ReplayTarget } from "./capture.js";
import { GpuErrorWatch } from "./gpu-errors.js";
import { hostArray, toBytes } from "./host-data.js";
import { KernelRegistry, type Kernel } from "./kernels.js";
import { Profiler } from "./profiler.js";
import { newRuntimeStats, type RuntimeStats } from "./stats.js";
import { sleep, WaitPacer, type HostWaitMode } from "./host-wait.js";
import { DTYPE_BYTES, Tensor, checkQuantShape, checkShape, isQuantDType, numel, tilesBytes, tilesLayout, type DType, type HostArray, type QuantDType } from "./tensor.js";
import { UniformArena, roundUp } from "./uniform-arena.js";

export type { AdapterDescription, RuntimeLimits } from "./adapter-info.js";
export type { BindingResource, BufferWindow } from "./bind-groups.js";
export type { SpanPlan, WindowPlan } from "./binding-windows.js";
export type { RuntimeStats } from "./stats.js";

const TENSOR_USAGE = 0x0080 /* STORAGE */ | 0x0004 /* COPY_SRC */ | 0x0008; /* COPY_DST */

export class GpuContext {
  readonly pool: BufferPool;
  readonly kernels: KernelRegistry;
  readonly stats: RuntimeStats = newRuntimeStats();
  profiler: Profiler | null = null;
  /**
   * GPU bytes this context may hold in tensors (src/gpu/budget.ts); openDevice sets it from the
   * adapter or its memoryBudgetBytes option. The pool refuses allocations past it.
   */
  memoryBudget: MemoryBudget = { bytes: Infinity, source: "no budget set" };
  /**
   * How readbacks and sync() wait for the GPU (src/gpu/host-wait.ts): "paced" sleeps for most of
   * the time the same work took before awaiting (Node + Dawn, whose pending promises spin the main
   * thread; openDevice's default there), "spin" awaits at once.
   */
  hostWait: HostWaitMode = "spin";
  readonly pacer = new WaitPacer();
  private dispatchesAtWait = 0;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly errors: GpuErrorWatch;
  private destroyed = false;
  private readonly arena: UniformArena;
  private readonly bindGroups: BindGroups;
  private readonly staging: GPUBuffer[] = [];
  /** Kernels dispatched in the open batch (named in errors found when it is submitted). */
  private readonly batchKernels = new Set<string>();
  /** Buffers to destroy once the open batch is submitted (uniforms of disposed programs). */
  private readonly destroyAfterSubmit: GPUBuffer[] = [];
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
    this.arena = new UniformArena(device, limits, () => this.stats.buffersCreated++);
    this.bindGroups = new BindGroups(device, limits);
    this.errors = new GpuErrorWatch(device, () => this.destroyed);
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
  emptyTiles<D extends "f32" | "f16" | QuantDType>(shape: readonly [number, number], dtype: D, T: number, label = "tensor"): Tensor<D> {
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

  /**
   * A new weight tensor [N, K] in the tiles layout from its tiles-layout bytes made on the host (a
   * quantized weight's: src/quant/tiles.ts toQuantTiles), written whole.
   */
  uploadTiles<D extends "f32" | "f16" | QuantDType>(bytes: Uint8Array, shape: readonly [number, number], dtype: D, T: number, label = "tensor"): Tensor<D> {
    const t = this.emptyTiles(shape, dtype, T, label);
    if (bytes.byteLength !== t.byteLength) {
      t.dispose();
      throw new ShapeError(`upload of '${label}' [${shape.join(", ")}] ${dtype} in tiles of ${T}: ${bytes.byteLength} bytes given, the layout holds ${t.byteLength}`);
    }
    this.refuseInCapture(`write to '${label}'`, "upload before beginCapture");
    if (this.encoder) this.submit();
    this.device.queue.writeBuffer(t.buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.stats.uploads++;
    return t;
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
    return hostArray(bytes.buffer, t.dtype, t.numel, t.byteLength);
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
      await this.waitFor(() => staging.mapAsync(GPUMapMode.READ, 0, size));
    } catch (e) {
      this.throwPendingErrors();
      this.staging.push(staging);
      throw this.errors.lost ? new DeviceLostError(`GPU device lost during readback: ${this.errors.lost}`) : e;
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
   * tensors larger than maxStorageBufferBindingSize (src/gpu/binding-windows.ts).
   */
  bindingWindows(rows: number, rowBytes: number, what: string, maxRowsPerWindow = Infinity): WindowPlan[] {
    return planBindingWindows(this.limits, rows, rowBytes, what, maxRowsPerWindow);
  }

  /** Windows that may start at any row, bound at an aligned offset with an element base (src/gpu/binding-windows.ts). */
  bindingSpans(rows: number, rowBytes: number, elementBytes: number, what: string): SpanPlan[] {
    return planBindingSpans(this.limits, rows, rowBytes, elementBytes, what);
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
    pass.dispatchWorkgroups(x, y, z);
    this.afterDispatch(kernel.name);
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
    this.arena.flush();
    // Errors Dawn finds when the batch is finished or submitted are attributed to its kernels.
    const kernels = [...this.batchKernels];
    this.batchKernels.clear();
    const encoder = this.encoder;
    this.encoder = null;
    this.errors.submit(encoder, kernels);
    this.stats.submits++;
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit.length = 0;
  }

  /** Submits and waits for the GPU to finish; throws any GPU error raised so far. */
  async sync(): Promise<void> {
    this.submit();
    await this.waitFor(() => this.device.queue.onSubmittedWorkDone());
    this.throwPendingErrors();
  }

  /**
   * Awaits a GPU promise made by `start` after the work was submitted; "paced": first sleeps for
   * the pacer's estimate of work keyed by the dispatches encoded since the last wait.
   */
  private async waitFor(start: () => Promise<unknown>): Promise<void> {
    const key = this.stats.dispatches - this.dispatchesAtWait;
    const paced = this.hostWait === "paced";
    const t0 = performance.now();
    if (paced) {
      const ms = this.pacer.sleepMs(key);
      if (ms > 0) await sleep(ms);
    }
    try {
      await start();
    } finally {
      this.dispatchesAtWait = this.stats.dispatches;
      if (paced) this.pacer.record(key, performance.now() - t0);
    }
  }

  /** Throws (once) the first GPU error reported since the last check. */
  throwPendingErrors(): void {
    this.errors.throwPending();
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
   * into a program instead of being encoded (nothing runs). Refused inside another capture;
   * write(), readbacks and submit() are refused while it is open.
   * See src/gpu/capture.ts.
   */
  beginCapture(label: string): void {
    this.assertUsable();
    if (this.capture) throw new UnsupportedError(`beginCapture('${label}') inside the capture '${this.capture.label}': captures do not nest`);
    this.pool.beginCapture();
    this.capture = { label, commands: [] };
  }

  /** Whether a capture is open (its label), or null. */
  get capturing(): string | null {
    return this.capture?.label ?? null;
  }

  /**
   * Ends the capture: returns the program of what was recorded (buildCapturedProgram in
   * src/gpu/capture.ts; replay() per step, dispose() at the end).
   */
  endCapture(): CapturedProgram {
    const cap = this.capture;
    if (!cap) throw new UsageError("endCapture() without beginCapture()");
    this.capture = null;
    const pinned = this.pool.endCapture();
    try {
      this.assertUsable();
      const prog = buildCapturedProgram(this.device, cap.label, cap.commands, this.programHost, pinned, this.limits.minUniformBufferOffsetAlignment, () => this.stats.buffersCreated++);
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
    const { entries, key, hasUniform } = this.bindGroups.entries(kernel, resources, params);
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

  private assertUsable(): void {
    if (this.destroyed) throw new DeviceLostError("this GpuContext was destroyed");
    if (this.errors.lost) throw new DeviceLostError(`GPU device lost: ${this.errors.lost}`);
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

  private bind(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null): { bindGroup: GPUBindGroup; dynamicOffset: number | null } {
    const { entries, key: storageKey, hasUniform } = this.bindGroups.entries(kernel, resources, params);
    let key = storageKey;
    let dynamicOffset: number | null = null;
    if (hasUniform) {
      const { chunk, offset } = this.arena.alloc(params!);
      dynamicOffset = offset;
      entries.push({ binding: resources.length, resource: { buffer: chunk, offset: 0, size: roundUp(params!.byteLength, 16) } });
      key += `|u${this.bindGroups.bufferId(chunk)}:${params!.byteLength}`;
    }
    return { bindGroup: this.bindGroups.group(kernel, entries, key), dynamicOffset };
  }
}
