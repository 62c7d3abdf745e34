// Safetensors: a strict reader and a writer that follows the reference implementation.
//
// Format (https://github.com/huggingface/safetensors, safetensors/src/tensor.rs):
//   8 bytes   N, u64 little-endian: the header's byte length (at most 100,000,000)
//   N bytes   UTF-8 JSON object: { "__metadata__"?: {string: string},
//                                  "<tensor>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ... }
//             padded at the end with spaces (0x20) to a multiple of 8 bytes by writers
//   rest      the tensors' bytes, row-major little-endian; data_offsets are relative to the
//             first byte after the header and must tile [0, rest) exactly: no gaps, no overlap.
//
// The reader reads the 8-byte prefix, checks N against the file size before allocating
// anything, reads the header, validates every rule below and never reads tensor data until
// asked. Every rejection is a SafetensorsFormatError (a LoadError) naming the file, the tensor
// when there is one, and the rule. Duplicate JSON keys are found by a small strict JSON parser
// (JSON.parse keeps the last duplicate silently).
//
// The writer: src/io/safetensors-write.ts; the strict JSON parser: src/io/strict-json.ts.

import { LoadError, UnsupportedError } from "../errors.js";
import { bf16ArrayToF32, convertF16ToF32 } from "../util/f16.js";
import type { ByteSource } from "./source.js";
import { JsonSyntaxError, parseStrictJson, type JsonValue } from "./strict-json.js";

// ---------------------------------------------------------------- dtypes

/** Every dtype of the reference implementation, in its enum order (increasing alignment). */
export const SAFETENSORS_DTYPES = [
  "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
  "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64",
] as const;
export type SafetensorsDtype = (typeof SAFETENSORS_DTYPES)[number];

/** Dtypes this runtime can read into host arrays. */
export const READABLE_DTYPES = ["F32", "F16", "BF16", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "F64", "BOOL"] as const;
export type ReadableDtype = (typeof READABLE_DTYPES)[number];

const DTYPE_BITS: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};
const DTYPE_RANK = new Map<string, number>(SAFETENSORS_DTYPES.map((d, i) => [d, i]));

export function isSafetensorsDtype(s: string): s is SafetensorsDtype {
  return DTYPE_RANK.has(s);
}
export function isReadableDtype(s: string): s is ReadableDtype {
  return (READABLE_DTYPES as readonly string[]).includes(s);
}
/** Bits per element (sub-byte dtypes: 4 or 6). */
export function dtypeBits(d: SafetensorsDtype): number {
  return DTYPE_BITS[d];
}
/** Position in the reference Dtype enum (increasing alignment): the writer's sort key. */
export function dtypeRank(d: SafetensorsDtype): number {
  return DTYPE_RANK.get(d)!;
}

/** Host arrays for each readable dtype (F16/BF16 as raw bits, BOOL as bytes, I64 as BigInt64Array). */
export type SafetensorsArray = Float32Array | Float64Array | Uint16Array | Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array | BigInt64Array;

// ---------------------------------------------------------------- errors

/** The rules a safetensors file must follow; each rejection names one. */
export type SafetensorsRule =
  | "file-too-short"
  | "header-too-large"
  | "header-past-eof"
  | "header-not-utf8"
  | "header-not-json"
  | "header-not-object"
  | "header-too-complex"
  | "duplicate-key"
  | "metadata-not-strings"
  | "entry-not-object"
  | "missing-field"
  | "unknown-dtype"
  | "bad-shape"
  | "bad-data-offsets"
  | "offsets-not-from-zero"
  | "offsets-gap"
  | "offsets-overlap"
  | "byte-length-mismatch"
  | "data-past-eof"
  | "trailing-bytes";

const RULE_TEXT: Readonly<Record<SafetensorsRule, string>> = {
  "file-too-short": "a file must hold at least the 8-byte header length",
  "header-too-large": "the header length must be at most 100,000,000 bytes",
  "header-past-eof": "the header must lie inside the file",
  "header-not-utf8": "the header must be UTF-8",
  "header-not-json": "the header must be JSON",
  "header-not-object": "the header must be a JSON object",
  "header-too-complex": `the header may hold at most ${(1 << 20).toLocaleString("en-US")} JSON values (this runtime's limit; a checkpoint needs about 8 per tensor)`,
  "duplicate-key": "JSON keys must be unique",
  "metadata-not-strings": "__metadata__ must map strings to strings",
  "entry-not-object": "each tensor entry must be an object",
  "missing-field": "each tensor entry needs dtype, shape and data_offsets",
  "unknown-dtype": "dtype must be one of the safetensors dtypes",
  "bad-shape": "shape must be a list of non-negative integers",
  "bad-data-offsets": "data_offsets must be two integers with begin <= end",
  "offsets-not-from-zero": "the first tensor's data must start at offset 0",
  "offsets-gap": "tensor data must be contiguous (no gaps)",
  "offsets-overlap": "tensor data must not overlap",
  "byte-length-mismatch": "end - begin must equal the shape's element count times the dtype size",
  "data-past-eof": "tensor data must lie inside the file",
  "trailing-bytes": "no bytes may follow the last tensor",
};

/** A safetensors file broke a format rule. */
export class SafetensorsFormatError extends LoadError {
  constructor(
    readonly file: string,
    readonly tensor: string | null,
    readonly rule: SafetensorsRule,
    detail: string,
  ) {
    super(`safetensors file '${file}'${tensor !== null ? `, tensor '${tensor}'` : ""}: ${detail} (rule ${rule}: ${RULE_TEXT[rule]})`);
  }
}

// ---------------------------------------------------------------- header

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Element count. */
  readonly numel: number;
  /** Byte offsets relative to the start of the data section (after the header). */
  readonly begin: number;
  readonly end: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  /** Tensors in data order (by offset). */
  readonly tensors: readonly TensorInfo[];
  readonly metadata: Readonly<Record<string, string>> | null;
  /** Byte length of the JSON header (N). */
  readonly headerLength: number;
  /** File offset of the data section: 8 + N. */
  readonly dataStart: number;
}

/**
 * The most JSON values a safetensors header may hold here. The format allows 100 MB of header,
 * which parsed into maps and bigints took 2 GB and 30 s (1.3 M empty tensors, measured on this
 * project's 2-core machine, 2026-12); real checkpoints hold ~8 values per tensor and at most a few
 * thousand tensors per file, so 2^20 values (~130 k tensors, ~200 MB parsed) is far above them.
 */
export const MAX_HEADER_VALUES = 1 << 20;

/** The largest header the reference implementation accepts. */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Reads the header length from the first 8 bytes: returns N, or throws for a file shorter than
 * 8 bytes, N over 100,000,000, or N past the end of the file. Nothing is allocated from N
 * before these checks.
 */
export function parseHeaderLength(prefix: Uint8Array, file: string, fileSize: number): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new SafetensorsFormatError(file, null, "file-too-short", `the file has ${fileSize} bytes`);
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsFormatError(file, null, "header-too-large", `the header length is ${n} bytes`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsFormatError(file, null, "header-past-eof", `the header length ${len} runs past the end of the ${fileSize}-byte file`);
  }
  return len;
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Validates the JSON header bytes against every rule; `fileSize` is the whole file's size. */
export function parseHeader(headerBytes: Uint8Array, file: string, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  const dataStart = 8 + headerLength;
  let text: string;
  try {
    text = fatalUtf8.decode(headerBytes);
  } catch {
    throw new SafetensorsFormatError(file, null, "header-not-utf8", "the header bytes are not valid UTF-8");
  }
  let root: JsonValue;
  try {
    root = parseStrictJson(text, MAX_HEADER_VALUES);
  } catch (e) {
    if (e instanceof JsonSyntaxError && e.tooManyValues) {
      throw new SafetensorsFormatError(file, null, "header-too-complex", `the ${headerLength}-byte header holds more than ${MAX_HEADER_VALUES} JSON values`);
    }
    if (e instanceof JsonSyntaxError && e.duplicate) {
      const { key, path } = e.duplicate;
      // Top level: the key is a tensor name (or __metadata__); deeper: path[0] is the tensor.
      const tensor = path.length > 0 ? path[0]! : key;
      const where = path.length === 0 ? "the header object" : path[0] === "__metadata__" ? "__metadata__" : `the entry of tensor '${path[0]}'`;
      throw new SafetensorsFormatError(file, tensor === "__metadata__" ? null : tensor, "duplicate-key", `key '${key}' appears twice in ${where}`);
    }
    throw new SafetensorsFormatError(file, null, "header-not-json", `the header is not valid JSON: ${(e as Error).message}`);
  }
  if (!(root instanceof Map)) {
    throw new SafetensorsFormatError(file, null, "header-not-object", `the header is a JSON ${jsonKind(root)}, not an object`);
  }
  let metadata: Record<string, string> | null = null;
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of root) {
    if (name === "__metadata__") {
      if (entry === null) continue; // the reference reads null as "no metadata"
      if (!(entry instanceof Map)) throw new SafetensorsFormatError(file, null, "metadata-not-strings", `__metadata__ is a JSON ${jsonKind(entry)}, not an object`);
      metadata = Object.create(null) as Record<string, string>;
      for (const [k, v] of entry) {
        if (typeof v !== "string") throw new SafetensorsFormatError(file, null, "metadata-not-strings", `__metadata__['${k}'] is a JSON ${jsonKind(v)}, not a string`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.push(parseEntry(file, name, entry));
  }
  // Data order: by (begin, end), as the reference does; then the tiling rules.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: TensorInfo | null = null;
  for (const t of tensors) {
    if (t.begin !== cursor) {
      if (prev === null) throw new SafetensorsFormatError(file, t.name, "offsets-not-from-zero", `the first tensor's data_offsets begin at ${t.begin}, not 0`);
      if (t.begin < cursor) {
        throw new SafetensorsFormatError(file, t.name, "offsets-overlap", `data_offsets [${t.begin}, ${t.end}] overlap tensor '${prev.name}' [${prev.begin}, ${prev.end}]`);
      }
      throw new SafetensorsFormatError(file, t.name, "offsets-gap", `data_offsets [${t.begin}, ${t.end}] leave a gap of ${t.begin - cursor} bytes after tensor '${prev.name}' [${prev.begin}, ${prev.end}]`);
    }
    cursor = t.end;
    prev = t;
  }
  const fileEnd = dataStart + cursor;
  if (fileEnd > fileSize) {
    throw new SafetensorsFormatError(file, prev?.name ?? null, "data-past-eof", `data ends at file byte ${fileEnd}, past the end of the ${fileSize}-byte file (truncated?)`);
  }
  if (fileEnd < fileSize) {
    throw new SafetensorsFormatError(file, prev?.name ?? null, "trailing-bytes", `${fileSize - fileEnd} bytes follow the last tensor's data (which ends at file byte ${fileEnd})`);
  }
  return { tensors, metadata, headerLength, dataStart };
}

function jsonKind(v: JsonValue): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (v instanceof Map) return "object";
  if (typeof v === "bigint") return "number";
  return typeof v;
}

function safeInt(v: JsonValue | undefined): number | null {
  if (typeof v !== "bigint" || v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(v);
}

function show(v: JsonValue | undefined): string {
  if (v === undefined) return "missing";
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? Number(x) : x instanceof Map ? Object.fromEntries(x) : x));
}

function parseEntry(file: string, name: string, entry: JsonValue): TensorInfo {
  if (!(entry instanceof Map)) throw new SafetensorsFormatError(file, name, "entry-not-object", `the entry is a JSON ${jsonKind(entry)}`);
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!entry.has(field)) throw new SafetensorsFormatError(file, name, "missing-field", `the entry has no '${field}'`);
  }
  const dtype = entry.get("dtype");
  if (typeof dtype !== "string" || !isSafetensorsDtype(dtype)) {
    throw new SafetensorsFormatError(file, name, "unknown-dtype", `dtype ${show(dtype)} is not one of ${SAFETENSORS_DTYPES.join(", ")}`);
  }
  const rawShape = entry.get("shape");
  if (!Array.isArray(rawShape)) throw new SafetensorsFormatError(file, name, "bad-shape", `shape is ${show(rawShape)}`);
  const shape: number[] = [];
  let numel = 1;
  for (const d of rawShape) {
    const v = safeInt(d);
    if (v === null) throw new SafetensorsFormatError(file, name, "bad-shape", `shape ${show(rawShape)} has the element ${show(d)}`);
    shape.push(v);
    numel *= v;
  }
  const offs = entry.get("data_offsets");
  const b = Array.isArray(offs) && offs.length === 2 ? safeInt(offs[0]) : null;
  const e = Array.isArray(offs) && offs.length === 2 ? safeInt(offs[1]) : null;
  if (b === null || e === null || b > e) {
    throw new SafetensorsFormatError(file, name, "bad-data-offsets", `data_offsets is ${show(offs)}`);
  }
  const bits = numel * DTYPE_BITS[dtype];
  if (!Number.isSafeInteger(bits) || bits % 8 !== 0 || bits / 8 !== e - b) {
    const want = Number.isSafeInteger(bits) ? `${bits / 8}` : "more than 2^53";
    throw new SafetensorsFormatError(
      file, name, "byte-length-mismatch",
      `data_offsets [${b}, ${e}] span ${e - b} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${want} bytes`,
    );
  }
  return { name, dtype, shape, numel, begin: b, end: e, byteLength: e - b };
}

// ---------------------------------------------------------------- reader

/** An open safetensors file: its validated header, and reads of tensor data on demand. */
export class SafetensorsFile {
  private readonly byName: Map<string, TensorInfo>;
  private constructor(
    readonly source: ByteSource,
    readonly header: SafetensorsHeader,
  ) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Reads and validates the header (two small reads; no tensor data). */
  static async open(source: ByteSource): Promise<SafetensorsFile> {
    const prefix = await source.read(0, Math.min(8, source.size));
    const n = parseHeaderLength(prefix, source.name, source.size);
    const headerBytes = await source.read(8, n);
    return new SafetensorsFile(source, parseHeader(headerBytes, source.name, source.size));
  }

  get name(): string {
    return this.source.name;
  }
  get tensors(): readonly TensorInfo[] {
    return this.header.tensors;
  }
  get metadata(): Readonly<Record<string, string>> | null {
    return this.header.metadata;
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }
  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new LoadError(`safetensors file '${this.name}' has no tensor '${name}'`);
    return t;
  }

  /** Reads `length` bytes of a tensor's data starting `offset` bytes into it. */
  async readBytes(name: string, offset = 0, length?: number): Promise<Uint8Array> {
    const t = this.info(name);
    const len = length ?? t.byteLength - offset;
    if (offset < 0 || len < 0 || offset + len > t.byteLength) {
      throw new LoadError(`safetensors file '${this.name}', tensor '${name}': byte range [${offset}, ${offset + len}) is outside its ${t.byteLength} bytes`);
    }
    return this.source.read(this.header.dataStart + t.begin + offset, len);
  }

  /** Reads a whole tensor as its host array type (F16/BF16 as raw bits). */
  async readTensor(name: string): Promise<{ info: TensorInfo; data: SafetensorsArray }> {
    const t = this.info(name);
    const bytes = await this.readBytes(name);
    return { info: t, data: bytesAsArray(bytes, t.dtype, `${this.name}:${name}`) };
  }

  /** Reads a float or integer tensor converted to f32 (I64/U32 values beyond 2^24 lose precision). */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return toF32(bytesAsArray(await this.readBytes(name), t.dtype, `${this.name}:${name}`), t.dtype);
  }

  close(): Promise<void> {
    return this.source.close?.() ?? Promise.resolve();
  }
}

/** Views little-endian bytes as the dtype's host array (copies when unaligned). */
export function bytesAsArray(bytes: Uint8Array, dtype: SafetensorsDtype, what: string): SafetensorsArray {
  if (!isReadableDtype(dtype)) throw new UnsupportedError(`${what}: dtype ${dtype} cannot be read (readable: ${READABLE_DTYPES.join(", ")})`);
  const size = DTYPE_BITS[dtype] / 8;
  const buf = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const n = buf.byteLength / size;
  switch (dtype) {
    case "F32": return new Float32Array(buf.buffer, buf.byteOffset, n);
    case "F64": return new Float64Array(buf.buffer, buf.byteOffset, n);
    case "F16":
    case "BF16":
    case "U16": return new Uint16Array(buf.buffer, buf.byteOffset, n);
    case "I16": return new Int16Array(buf.buffer, buf.byteOffset, n);
    case "I32": return new Int32Array(buf.buffer, buf.byteOffset, n);
    case "U32": return new Uint32Array(buf.buffer, buf.byteOffset, n);
    case "I64": return new BigInt64Array(buf.buffer, buf.byteOffset, n);
    case "I8": return new Int8Array(buf.buffer, buf.byteOffset, n);
    case "U8":
    case "BOOL": return new Uint8Array(buf.buffer, buf.byteOffset, n);
  }
}

/** Converts a host array of a dtype to f32 values. */
export function toF32(data: SafetensorsArray, dtype: SafetensorsDtype): Float32Array {
  if (dtype === "F16") return convertF16ToF32(data as Uint16Array);
  if (dtype === "BF16") return bf16ArrayToF32(data as Uint16Array);
  if (data instanceof Float32Array) return data;
  if (data instanceof BigInt64Array) return Float32Array.from(data, (x) => Number(x));
  return Float32Array.from(data as ArrayLike<number>);
}
