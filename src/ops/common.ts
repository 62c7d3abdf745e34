// Shared helpers for op launchers: uniform params packing, dispatch grids, argument checks.

import { ShapeError, UnsupportedError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import type { DType, Tensor } from "../gpu/tensor.js";

/** Packs a kernel's Params struct: 4-byte fields in declaration order, padded to 16 bytes. */
export class Params {
  private readonly view = new DataView(new ArrayBuffer(256));
  private offset = 0;
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`u32 param out of range: ${v}`);
    this.view.setUint32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  i32(v: number): this {
    this.view.setInt32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  f32(v: number): this {
    this.view.setFloat32(this.offset, v, true);
    this.offset += 4;
    return this;
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.view.buffer, 0, Math.max(16, Math.ceil(this.offset / 16) * 16));
  }
}

/**
 * Workgroup grid for `groups` workgroups: [x, y] with x ≤ maxComputeWorkgroupsPerDimension.
 * Kernels recover the linear workgroup index as wid.x + wid.y * num_workgroups.x and skip
 * indices ≥ their count (the grid may overshoot by less than one row).
 */
export function grid(ctx: GpuContext, groups: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [Math.max(groups, 0), 1];
  const y = Math.ceil(groups / max);
  if (y > max) throw new UnsupportedError(`${groups} workgroups exceed a ${max}×${max} grid`);
  return [Math.ceil(groups / y), y];
}

export function expectDType(t: Tensor, allowed: readonly DType[], op: string, name: string): void {
  if (!allowed.includes(t.dtype)) throw new ShapeError(`${op}: ${name} ('${t.label}') has dtype ${t.dtype}, expected ${allowed.join(" or ")}`);
}

export function expectShape(t: Tensor, shape: readonly number[], op: string, name: string): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ShapeError(`${op}: ${name} ('${t.label}') has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
}

/**
 * How a kernel handles a float tensor: "f32"; "f16" native (WGSL f16, needs shader-f16); "f16p"
 * the same f16 bytes read and written as packed pairs in u32 words (unpack2x16float /
 * pack2x16float; no feature needed). Variant names carry it, so a label says which path ran.
 */
export type StoreType = "f32" | "f16" | "f16p";

/** The store type ops pick for a tensor dtype: native f16 where the device has shader-f16, else packed pairs. */
export function storeType(ctx: GpuContext, dtype: "f32" | "f16"): StoreType {
  if (dtype === "f32") return "f32";
  return ctx.hasF16 ? "f16" : "f16p";
}

/** The device features a store type needs. */
export function storeFeatures(t: StoreType): GPUFeatureName[] {
  return t === "f16" ? ["shader-f16"] : [];
}
