// Splitting a tensor larger than one storage binding (maxStorageBufferBindingSize) into windows of
// whole rows that each fit one, at offsets the device accepts (minStorageBufferOffsetAlignment).
// GpuContext.bindingWindows / bindingSpans call these with the context's limits.

import { UnsupportedError } from "../errors.js";
import type { RuntimeLimits } from "./adapter-info.js";

export interface WindowPlan {
  /** Byte offset of the window into each tensor with this row size. */
  byteOffset: number;
  firstRow: number;
  rows: number;
}

/** A window of whole rows bound at the aligned offset at or below its first row (see planBindingSpans). */
export interface SpanPlan {
  /** Aligned byte offset of the binding. */
  byteOffset: number;
  byteSize: number;
  /** Elements between the binding's start and the first row: kernels add it to their indices. */
  elementBase: number;
  firstRow: number;
  rows: number;
}

type WindowLimits = Pick<RuntimeLimits, "maxStorageBufferBindingSize" | "minStorageBufferOffsetAlignment">;

/**
 * Splits a row-major tensor region into windows that each fit one storage binding. Window offsets
 * are multiples of minStorageBufferOffsetAlignment. `rowBytes` is the byte size of the unit that
 * must not be split.
 */
export function planBindingWindows(limits: WindowLimits, rows: number, rowBytes: number, what: string, maxRowsPerWindow = Infinity): WindowPlan[] {
  const limit = limits.maxStorageBufferBindingSize;
  if (rowBytes > limit) {
    throw new UnsupportedError(`${what}: one row of ${rowBytes} bytes exceeds the storage binding limit of ${limit} bytes`);
  }
  if (rows * rowBytes <= limit && rows <= maxRowsPerWindow) return [{ byteOffset: 0, firstRow: 0, rows }];
  const align = limits.minStorageBufferOffsetAlignment;
  const rowAlign = align / gcd(rowBytes, align); // rows per window must be a multiple of this
  let per = Math.min(Math.floor(limit / rowBytes), maxRowsPerWindow);
  per -= per % rowAlign;
  if (per <= 0) throw new UnsupportedError(`${what}: rows of ${rowBytes} bytes cannot be split at ${align}-byte aligned offsets within ${limit} bytes`);
  const plan: WindowPlan[] = [];
  for (let r = 0; r < rows; r += per) plan.push({ byteOffset: r * rowBytes, firstRow: r, rows: Math.min(per, rows - r) });
  return plan;
}

/**
 * Like planBindingWindows, but a window may start at any row: it is bound at the aligned offset at
 * or below its first row, and `elementBase` (elements of `elementBytes`) says where that row
 * starts inside the binding. Needed where an aligned row boundary would make windows larger
 * than the binding limit (e.g. 20,000-byte rows under a browser's 256-byte alignment need
 * 8-row steps). rowBytes must be a multiple of 4 and of elementBytes.
 */
export function planBindingSpans(limits: WindowLimits, rows: number, rowBytes: number, elementBytes: number, what: string): SpanPlan[] {
  const limit = limits.maxStorageBufferBindingSize;
  if (rows * rowBytes <= limit) return [{ byteOffset: 0, byteSize: rows * rowBytes, elementBase: 0, firstRow: 0, rows }];
  const align = limits.minStorageBufferOffsetAlignment;
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

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
