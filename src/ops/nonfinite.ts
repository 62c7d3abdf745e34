// Non-finite check: counts NaN and ±inf values of f32/f16 tensors on the GPU (kernels/nonfinite.wgsl).
// The kernel tests the exponent bits of raw 32-bit words, so f16 tensors need no shader-f16 feature.
// countNonFinite adds one tensor's count into a slot of a u32 counter buffer without a readback;
// NonFiniteScan checks many tensors into one buffer and reads all the counts back once (the
// model loader checks every float weight this way, src/model/checkpoint.ts).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, grid, Params } from "./common.js";

/** Body: vec4 items per invocation and invocations per workgroup (a workgroup covers 4·WG·PER words = 16 KiB); see the header of kernels/nonfinite.wgsl for the measurements. */
const VEC4_WG = 256;
const VEC4_PER = 4;
/** Tail (≤ 4 words per window): one word per invocation. */
const TAIL_WG = 64;

/** The body (vec4 loads) or the tail (u32 loads) variant for a dtype. Neither needs shader-f16. */
export function nonfiniteKernel(dtype: "f32" | "f16", part: "body" | "tail"): KernelVariant {
  const vec4 = part === "body";
  const wg = vec4 ? VEC4_WG : TAIL_WG;
  const per = vec4 ? VEC4_PER : 1;
  return {
    file: "nonfinite",
    name: `nonfinite_${dtype}${vec4 ? "_vec4" : ""}_wg${wg}_per${per}`,
    defines: { F16: dtype === "f16", VEC4: vec4, WG: wg, PER: per },
    bindings: ["read", "read_write", "uniform"],
  };
}

/**
 * counts[slot] += the number of NaN/±inf elements of `t` (f32 or f16, any size: tensors over one
 * storage binding are scanned in windows). Per window: the body as vec4 words, then the last
 * (≤ 4) words, which hold an odd f16 tensor's padding half, as u32. `counts` is u32; nothing is
 * read back.
 */
export async function countNonFinite(ctx: GpuContext, t: Tensor, counts: Tensor, slot: number): Promise<void> {
  const op = "countNonFinite";
  expectDType(t, ["f32", "f16"], op, "t");
  expectDType(counts, ["u32"], op, "counts");
  if (!Number.isInteger(slot) || slot < 0 || slot >= counts.numel) throw new ShapeError(`${op}: slot ${slot} is outside counts ('${counts.label}', ${counts.numel} slots)`);
  const n = t.numel;
  if (n === 0) return;
  const dtype = t.dtype as "f32" | "f16";
  const body = await ctx.kernels.get(nonfiniteKernel(dtype, "body"));
  const tail = await ctx.kernels.get(nonfiniteKernel(dtype, "tail"));
  const perWord = dtype === "f16" ? 2 : 1;
  const words = Math.ceil(n / perWord);
  for (const w of ctx.bindingWindows(words, 4, `${op} '${t.label}'`)) {
    const elems = Math.min(w.rows * perWord, n - w.firstRow * perWord);
    const padded = elems < w.rows * perWord; // an odd f16 count: the last word's high half is padding
    const items = Math.floor((padded ? w.rows - 1 : w.rows) / 4);
    if (items > 0) {
      const params = new Params().u32(items).u32(elems).u32(slot).u32(0).bytes();
      ctx.dispatch(body, [{ tensor: t, byteOffset: w.byteOffset, byteSize: items * 16 }, counts], params, grid(ctx, Math.ceil(items / (VEC4_WG * VEC4_PER))));
    }
    if (4 * items < w.rows) {
      const params = new Params().u32(w.rows).u32(elems).u32(slot).u32(4 * items).bytes();
      ctx.dispatch(tail, [{ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * 4 }, counts], params, grid(ctx, Math.ceil((w.rows - 4 * items) / TAIL_WG)));
    }
  }
}

/** CPU reference: NaN/±inf elements of an f32 array, or of f16 raw bits (exponent 0x1f). */
export function countNonFiniteReference(data: Float32Array | Uint16Array): number {
  let c = 0;
  if (data instanceof Uint16Array) {
    for (let i = 0; i < data.length; i++) if ((data[i]! & 0x7c00) === 0x7c00) c++;
  } else {
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) c++;
  }
  return c;
}

/**
 * Checks many tensors with one readback: add() encodes each tensor's scan into its own slot of a
 * u32 counter buffer, read() returns the tensors with a non-zero count (one host sync).
 */
export class NonFiniteScan {
  private readonly names: string[] = [];

  private constructor(
    readonly ctx: GpuContext,
    private readonly counts: Tensor,
  ) {}

  /** A scan for up to `capacity` tensors (the counter buffer is 4·capacity bytes, zeroed). */
  static create(ctx: GpuContext, capacity: number): NonFiniteScan {
    if (!Number.isInteger(capacity) || capacity < 0) throw new ShapeError(`NonFiniteScan: capacity must be a non-negative integer, got ${capacity}`);
    return new NonFiniteScan(ctx, ctx.upload(new Uint32Array(Math.max(1, capacity)), [Math.max(1, capacity)], "u32", "nonfinite.counts"));
  }

  /** Encodes the scan of `t` (f32 or f16), reported under `name` (default: its label). */
  async add(t: Tensor, name = t.label): Promise<void> {
    if (this.names.length >= this.counts.numel) throw new ShapeError(`NonFiniteScan: more than ${this.counts.numel} tensors added`);
    await countNonFinite(this.ctx, t, this.counts, this.names.length);
    this.names.push(name);
  }

  /** The tensors holding NaN/±inf, in the order added, with their counts (one readback). */
  async read(): Promise<{ name: string; count: number }[]> {
    if (this.names.length === 0) return [];
    const counts = await this.counts.read();
    const bad: { name: string; count: number }[] = [];
    this.names.forEach((name, i) => {
      if (counts[i]! > 0) bad.push({ name, count: counts[i]! });
    });
    return bad;
  }

  dispose(): void {
    this.counts.dispose();
  }
}
