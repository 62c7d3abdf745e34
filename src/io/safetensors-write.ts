// The safetensors writer, following the reference implementation: tensors ordered like the
// reference `prepare()` (by dtype, largest alignment first, then by name in byte order), offsets
// contiguous from 0, `__metadata__` first, the header padded with spaces to a multiple of 8. The
// format and the strict reader: src/io/safetensors.ts.

import { LoadError } from "../errors.js";
import { dtypeBits, dtypeRank, isSafetensorsDtype, MAX_HEADER_BYTES, type SafetensorsDtype } from "./safetensors.js";

/** One tensor to write: its bytes as a typed array of the dtype's width (F16/BF16 as raw bits) or raw bytes. */
export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: ArrayBufferView;
}

export interface SafetensorsLayout {
  /** The 8-byte length prefix followed by the padded JSON header. */
  headerBytes: Uint8Array;
  /** Tensor names in data order. */
  order: string[];
  /** Byte length of the data section. */
  dataBytes: number;
}

function utf8Compare(a: string, b: string): number {
  const enc = new TextEncoder();
  const x = enc.encode(a);
  const y = enc.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/**
 * Lays out a safetensors file without touching tensor data: the header bytes and the order in
 * which the tensors' bytes must follow (for streaming writers of files larger than memory).
 */
export function layoutSafetensors(
  tensors: ReadonlyMap<string, { dtype: SafetensorsDtype; shape: readonly number[] }> | Readonly<Record<string, { dtype: SafetensorsDtype; shape: readonly number[] }>>,
  metadata: Readonly<Record<string, string>> | null = null,
): SafetensorsLayout {
  type Spec = { dtype: SafetensorsDtype; shape: readonly number[] };
  const entries: [string, Spec][] = tensors instanceof Map ? [...(tensors as ReadonlyMap<string, Spec>).entries()] : Object.entries(tensors as Readonly<Record<string, Spec>>);
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new LoadError("a tensor cannot be named '__metadata__'");
    if (!isSafetensorsDtype(t.dtype)) throw new LoadError(`tensor '${name}': unknown dtype '${String(t.dtype)}'`);
    for (const d of t.shape) if (!Number.isSafeInteger(d) || d < 0) throw new LoadError(`tensor '${name}': shape [${t.shape.join(", ")}] must hold non-negative integers`);
  }
  // The reference's prepare(): dtype descending in enum order, then name ascending.
  entries.sort(([an, a], [bn, b]) => dtypeRank(b.dtype) - dtypeRank(a.dtype) || utf8Compare(an, bn));
  const order: string[] = [];
  let offset = 0;
  const meta = metadata ? Object.fromEntries(Object.keys(metadata).sort(utf8Compare).map((k) => [k, metadata[k]])) : null;
  if (meta) {
    for (const [k, v] of Object.entries(meta)) if (typeof v !== "string") throw new LoadError(`__metadata__['${k}'] must be a string`);
  }
  // JSON object key order: __metadata__ first, then data order. Built as a string so that
  // integer-like tensor names keep their place (JS objects would move them first).
  const parts: string[] = [];
  if (meta) parts.push(`"__metadata__":${JSON.stringify(meta)}`);
  for (const [name, t] of entries) {
    let numel = 1;
    for (const d of t.shape) numel *= d;
    const bits = numel * dtypeBits(t.dtype);
    if (bits % 8 !== 0) throw new LoadError(`tensor '${name}': ${numel} elements of ${t.dtype} are not a whole number of bytes`);
    const n = bits / 8;
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] })}`);
    offset += n;
    order.push(name);
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new LoadError(`the safetensors header would be ${padded} bytes, over the limit of ${MAX_HEADER_BYTES}`);
  const headerBytes = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(padded), true);
  headerBytes.set(json, 8);
  return { headerBytes, order, dataBytes: offset };
}

/** Serializes tensors (and string metadata) into one safetensors file in memory. */
export function writeSafetensors(
  tensors: ReadonlyMap<string, TensorToWrite> | Readonly<Record<string, TensorToWrite>>,
  metadata: Readonly<Record<string, string>> | null = null,
): Uint8Array {
  const map: ReadonlyMap<string, TensorToWrite> = tensors instanceof Map ? (tensors as ReadonlyMap<string, TensorToWrite>) : new Map(Object.entries(tensors as Readonly<Record<string, TensorToWrite>>));
  const layout = layoutSafetensors(map, metadata);
  const out = new Uint8Array(layout.headerBytes.byteLength + layout.dataBytes);
  out.set(layout.headerBytes, 0);
  let at = layout.headerBytes.byteLength;
  for (const name of layout.order) {
    const t = map.get(name)!;
    let numel = 1;
    for (const d of t.shape) numel *= d;
    const want = (numel * dtypeBits(t.dtype)) / 8;
    if (t.data.byteLength !== want) {
      throw new LoadError(`tensor '${name}': ${t.data.byteLength} bytes of data given, shape [${t.shape.join(", ")}] of ${t.dtype} needs ${want}`);
    }
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += want;
  }
  return out;
}
