// Captured programs: a fixed list of encoded GPU commands recorded once and replayed many times
// (tinygrad's TinyJit idea) so that a decode step costs almost no host work per token.
//
//   ctx.beginCapture("step");
//   … ops encode as usual: ctx.dispatch / dispatchIndirect / copy / clear are RECORDED, not run …
//   const prog = ctx.endCapture();
//   prog.replay(); ctx.submit();   // per token: the recorded commands, encoded into the open batch
//   prog.dispose();                // when the shape changes or the session ends
// (or `const prog = await ctx.captureProgram("step", async () => { … })`, which cancels the capture
// with ctx.cancelCapture() when the body throws.)
//
// What is recorded: per dispatch its pipeline, a bind group made once, its workgroup counts (or
// indirect buffer) and its params, baked into one program-owned uniform buffer written once at
// endCapture (each dispatch its own dynamic offset); copies and clears with their ranges. replay()
// issues exactly setPipeline / setBindGroup / dispatchWorkgroups(Indirect) / copyBufferToBuffer /
// clearBuffer: no params packing, no bind-group or kernel lookups, no awaits. Nothing runs during
// the capture itself (the first replay runs the first step).
//
// Refused inside a capture (UnsupportedError): write()/upload() (a host write would have to be
// repeated per replay), readbacks, submit()/sync(), nested captures,
// replaying another program. Host-side values an op computes at capture time (shapes, positions
// given as numbers, a step index in params) are frozen: only GPU-resident state may change
// between replays.
//
// Buffer ownership (src/gpu/pool.ts): every pool buffer the program binds, and every buffer the
// pool hands out during the capture, is pinned by the program until dispose(): a tensor disposed
// inside the capture may be reused by a later acquisition inside the same capture (as the pool
// does when encoding normally, queue order keeps that safe), but by nothing outside it until the
// program is disposed; a bound tensor disposed by its owner after endCapture stays allocated.
//
// Profiling (openDevice({ profiling: true }) with ctx.profiler attached): replay goes through the
// same pass management as dispatch(), so every replayed dispatch gets its own timed pass.

import { DeviceLostError, UsageError } from "../errors.js";

export const CMD_DISPATCH = 0;
export const CMD_DISPATCH_INDIRECT = 1;
export const CMD_COPY = 2;
export const CMD_CLEAR = 3;

/** One recorded command, as the context records it (before endCapture makes the bind groups). */
export type RecordedCommand =
  | {
      kind: typeof CMD_DISPATCH | typeof CMD_DISPATCH_INDIRECT;
      kernel: string;
      pipeline: GPUComputePipeline;
      layout: GPUBindGroupLayout;
      /** Storage entries (the uniform entry is added at endCapture). */
      entries: GPUBindGroupEntry[];
      /** Identity of the storage entries (kernel + buffer ids + ranges), to share bind groups. */
      key: string;
      params: Uint8Array | null;
      x: number;
      y: number;
      z: number;
      indirect: GPUBuffer | null;
      indirectOffset: number;
    }
  | { kind: typeof CMD_COPY; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { kind: typeof CMD_CLEAR; buffer: GPUBuffer; offset: number; size: number };

/** What replay needs from the context (its pass and encoder management). */
export interface ReplayTarget {
  /** The open compute pass (a new timed one per dispatch while profiling). */
  pass(label: string): GPUComputePassEncoder;
  /** Called after each dispatch (ends the pass while profiling). */
  afterDispatch(): void;
  /** The batch's command encoder with no pass open (for copies and clears). */
  encoder(): GPUCommandEncoder;
  readonly profiling: boolean;
}

/** The context's side of a program: checks and bookkeeping around replay and dispose. */
export interface ProgramHost {
  replayProgram(p: CapturedProgram): void;
  /** Unpins the program's buffers and destroys its uniform buffer (after the open batch is submitted). */
  releaseProgram(p: CapturedProgram, uniform: GPUBuffer | null): void;
  readonly isDestroyed: boolean;
}

const NO_OFFSETS: number[] = [];

export class CapturedProgram {
  /** Dispatches (direct and indirect) one replay encodes. */
  readonly dispatches: number;
  /** Commands one replay encodes (dispatches, copies, clears). */
  readonly commands: number;
  /** Distinct kernel names (GPU errors in a batch name them). */
  readonly kernelNames: readonly string[];
  /** Bytes of the program-owned params uniform buffer. */
  readonly uniformBytes: number;
  /** Bind groups the program created (shared where a dispatch repeats another's buffers). */
  readonly bindGroupCount: number;
  /** Times replay() ran, and its cumulative host encode time (performance.now around the encoding). */
  replays = 0;
  encodeMs = 0;

  private readonly ops: Uint8Array;
  private readonly pipelines: (GPUComputePipeline | null)[];
  private readonly bindGroups: (GPUBindGroup | null)[];
  private readonly offsets: number[][];
  private readonly labels: string[];
  /** Per command: x, y, z for dispatches; indirect offset; copy src/dst offsets and size; clear offset and size. */
  private readonly ints: Float64Array;
  private readonly bufA: (GPUBuffer | null)[];
  private readonly bufB: (GPUBuffer | null)[];
  private disposed = false;

  /** @internal Built by buildCapturedProgram (GpuContext.endCapture()). */
  constructor(
    readonly label: string,
    private readonly host: ProgramHost,
    commands: readonly RecordedCommand[],
    private readonly uniform: GPUBuffer | null,
    uniformOffsets: readonly number[],
    makeBindGroup: (c: Extract<RecordedCommand, { kind: 0 | 1 }>, uniformSize: number) => { group: GPUBindGroup; created: boolean },
    /** Pool buffers pinned by this program (unpinned at dispose). */
    readonly pinned: ReadonlySet<GPUBuffer>,
  ) {
    const n = commands.length;
    this.commands = n;
    this.ops = new Uint8Array(n);
    this.pipelines = new Array(n).fill(null);
    this.bindGroups = new Array(n).fill(null);
    this.offsets = new Array(n).fill(NO_OFFSETS);
    this.labels = new Array(n).fill("");
    this.ints = new Float64Array(3 * n);
    this.bufA = new Array(n).fill(null);
    this.bufB = new Array(n).fill(null);
    const names = new Set<string>();
    let dispatches = 0;
    let groups = 0;
    commands.forEach((c, i) => {
      this.ops[i] = c.kind;
      switch (c.kind) {
        case CMD_DISPATCH:
        case CMD_DISPATCH_INDIRECT: {
          dispatches++;
          names.add(c.kernel);
          this.labels[i] = c.kernel;
          this.pipelines[i] = c.pipeline;
          const { group, created } = makeBindGroup(c, c.params ? Math.ceil(c.params.byteLength / 16) * 16 : 0);
          if (created) groups++;
          this.bindGroups[i] = group;
          if (c.params) this.offsets[i] = [uniformOffsets[i]!];
          if (c.kind === CMD_DISPATCH) this.ints.set([c.x, c.y, c.z], 3 * i);
          else {
            this.bufA[i] = c.indirect;
            this.ints[3 * i] = c.indirectOffset;
          }
          break;
        }
        case CMD_COPY:
          this.bufA[i] = c.src;
          this.bufB[i] = c.dst;
          this.ints.set([c.srcOffset, c.dstOffset, c.size], 3 * i);
          break;
        case CMD_CLEAR:
          this.bufA[i] = c.buffer;
          this.ints.set([c.offset, c.size, 0], 3 * i);
          break;
      }
    });
    this.dispatches = dispatches;
    this.kernelNames = [...names];
    this.uniformBytes = uniform?.size ?? 0;
    this.bindGroupCount = groups;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Encodes the recorded commands into the context's open batch (submit it as usual). Refused
   * after dispose(), after the context was destroyed, or inside a capture.
   */
  replay(): void {
    if (this.disposed) throw new UsageError(`captured program '${this.label}' was replayed after dispose()`);
    if (this.host.isDestroyed) throw new DeviceLostError(`captured program '${this.label}': its GpuContext was destroyed`);
    this.host.replayProgram(this);
  }

  /**
   * Frees the uniform buffer (once the open batch, which may hold replays, is submitted) and
   * returns the buffers the program pinned to the pool. Idempotent.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.host.releaseProgram(this, this.uniform);
    // Let the bind groups (and the buffers they reference) be collected with the program's lists.
    this.bindGroups.fill(null);
    this.bufA.fill(null);
    this.bufB.fill(null);
  }

  /** @internal The encoding loop (GpuContext.replayProgram times it and keeps the stats). */
  encodeInto(t: ReplayTarget): void {
    const { ops, pipelines, bindGroups, offsets, ints, bufA, bufB, labels } = this;
    const prof = t.profiling;
    let pass: GPUComputePassEncoder | null = null;
    let last: GPUComputePipeline | null = null;
    for (let i = 0, n = ops.length; i < n; i++) {
      const op = ops[i]!;
      if (op <= CMD_DISPATCH_INDIRECT) {
        if (pass === null || prof) {
          pass = t.pass(labels[i]!);
          last = null;
        }
        const p = pipelines[i]!;
        if (p !== last) {
          pass.setPipeline(p);
          last = p;
        }
        pass.setBindGroup(0, bindGroups[i]!, offsets[i]!);
        if (op === CMD_DISPATCH) pass.dispatchWorkgroups(ints[3 * i]!, ints[3 * i + 1]!, ints[3 * i + 2]!);
        else pass.dispatchWorkgroupsIndirect(bufA[i]!, ints[3 * i]!);
        if (prof) t.afterDispatch();
      } else {
        pass = null;
        const enc = t.encoder();
        if (op === CMD_COPY) enc.copyBufferToBuffer(bufA[i]!, ints[3 * i]!, bufB[i]!, ints[3 * i + 1]!, ints[3 * i + 2]!);
        else enc.clearBuffer(bufA[i]!, ints[3 * i]!, ints[3 * i + 1]!);
      }
    }
  }
}

/**
 * The program of a finished capture: writes the recorded params into one program-owned uniform
 * buffer (once; each dispatch at its own offset, a multiple of `uniformAlign` and 16) and makes
 * the bind groups (shared where dispatches bind the same buffers). `onCreate` counts the buffer.
 */
export function buildCapturedProgram(
  device: GPUDevice,
  label: string,
  commands: readonly RecordedCommand[],
  host: ProgramHost,
  pinned: ReadonlySet<GPUBuffer>,
  uniformAlign: number,
  onCreate: () => void,
): CapturedProgram {
  const align = Math.max(uniformAlign, 16);
  const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;
  const offsets: number[] = new Array(commands.length).fill(0);
  let end = 0;
  commands.forEach((c, i) => {
    if ((c.kind === CMD_DISPATCH || c.kind === CMD_DISPATCH_INDIRECT) && c.params) {
      const at = roundUp(end, align);
      offsets[i] = at;
      end = at + roundUp(c.params.byteLength, 16);
    }
  });
  let uniform: GPUBuffer | null = null;
  if (end > 0) {
    const bytes = new Uint8Array(roundUp(end, 16));
    commands.forEach((c, i) => {
      if ((c.kind === CMD_DISPATCH || c.kind === CMD_DISPATCH_INDIRECT) && c.params) bytes.set(c.params, offsets[i]!);
    });
    uniform = device.createBuffer({ size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `capture.${label}.params` });
    onCreate();
    device.queue.writeBuffer(uniform, 0, bytes.buffer, 0, bytes.byteLength);
  }
  const groups = new Map<string, GPUBindGroup>();
  return new CapturedProgram(
    label,
    host,
    commands,
    uniform,
    offsets,
    (c, uniformSize) => {
      const key = `${c.key}|u${uniformSize}`;
      const known = groups.get(key);
      if (known) return { group: known, created: false };
      const entries = uniformSize > 0 ? [...c.entries, { binding: c.entries.length, resource: { buffer: uniform!, offset: 0, size: uniformSize } }] : c.entries;
      const group = device.createBindGroup({ label: `${label}:${c.kernel}`, layout: c.layout, entries });
      groups.set(key, group);
      return { group, created: true };
    },
    pinned,
  );
}
