// The bindings of one dispatch: the resources an op passes (tensors, windows of them, raw
// buffers) checked against the kernel's layout and the runtime's limits (count, offset alignment,
// binding size, a writable buffer bound twice), and the bind groups made of them, cached by the
// buffers and ranges they bind.

import { GpuValidationError, ShapeError, UnsupportedError } from "../errors.js";
import type { RuntimeLimits } from "./adapter-info.js";
import type { Kernel } from "./kernels.js";
import { Tensor } from "./tensor.js";

/** A byte range of a tensor bound to one storage binding. */
export interface BufferWindow {
  readonly tensor: Tensor;
  readonly byteOffset: number;
  readonly byteSize: number;
}
export type BindingResource = Tensor | BufferWindow | { readonly buffer: GPUBuffer; readonly offset?: number; readonly size?: number };

/** The storage entries of a dispatch (the uniform entry, when the kernel has one, comes last). */
export interface DispatchEntries {
  entries: GPUBindGroupEntry[];
  /** Identity of the storage entries (kernel + buffer ids + ranges). */
  key: string;
  hasUniform: boolean;
}

/** Params of one dispatch: at most 256 bytes. */
export function checkParamsSize(params: Uint8Array): void {
  if (params.byteLength > 256) throw new ShapeError(`params of ${params.byteLength} bytes: at most 256 bytes per dispatch`);
}

export class BindGroups {
  private readonly groups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;

  constructor(
    private readonly device: GPUDevice,
    private readonly limits: Readonly<RuntimeLimits>,
  ) {}

  /** A stable small id per buffer (part of the cache keys). */
  bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  /** The bind group of `entries` under `key`, made once. */
  group(kernel: Kernel, entries: GPUBindGroupEntry[], key: string): GPUBindGroup {
    let bindGroup = this.groups.get(key);
    if (!bindGroup) {
      if (this.groups.size > 8192) this.groups.clear();
      bindGroup = this.device.createBindGroup({ label: kernel.name, layout: kernel.layout, entries });
      this.groups.set(key, bindGroup);
    }
    return bindGroup;
  }

  /** The storage entries of a dispatch, checked (count, alignment, binding limit, aliasing), and their cache key. */
  entries(kernel: Kernel, resources: readonly BindingResource[], params: Uint8Array | null): DispatchEntries {
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
}
