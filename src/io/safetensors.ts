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
// The writer orders tensors like the reference `prepare()`: by dtype, largest alignment first
// (the reference Dtype enum's order, descending), then by name (byte order); offsets contiguous
// from 0; `__metadata__` first; the header padded with spaces to a multiple of 8.

import { LoadError, UnsupportedError } from "../errors.js";
import { bf16ArrayToF32, f16ArrayToF32, f32ToF16Bits } from "../util/f16.js";
import type { ByteSource } from "./source.js";

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

// ---------------------------------------------------------------- strict JSON

/** JSON values with objects as Maps (no prototype keys) and integer literals as bigint. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly duplicate: { key: string; path: string[] } | null = null,
    readonly tooManyValues = false,
  ) {
    super(message);
  }
}

/**
 * The most JSON values a safetensors header may hold here. The format allows 100 MB of header,
 * which parsed into maps and bigints took 2 GB and 30 s (1.3 M empty tensors, measured on this
 * project's 2-core machine, 2026-12); real checkpoints hold ~8 values per tensor and at most a few
 * thousand tensors per file, so 2^20 values (~130 k tensors, ~200 MB parsed) is far above them.
 */
export const MAX_HEADER_VALUES = 1 << 20;

const MAX_DEPTH = 64;

/**
 * Parses JSON strictly (RFC 8259): duplicate keys in any object are an error; integer literals
 * (no fraction or exponent) become bigint so that offsets past 2^53 are not silently rounded.
 */
export function parseStrictJson(text: string, maxValues = Infinity): JsonValue {
  let i = 0;
  let values = 0;
  const n = text.length;
  const path: string[] = [];
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const fail = (what: string): never => {
    throw new JsonSyntaxError(i < n ? `${what} at character ${i}` : `${what} at end of input`);
  };
  const str = (): string => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case "\\": out += "\\"; break;
          case "/": out += "/"; break;
          case "b": out += "\b"; break;
          case "f": out += "\f"; break;
          case "n": out += "\n"; break;
          case "r": out += "\r"; break;
          case "t": out += "\t"; break;
          case "u": {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            i -= 2;
            fail("bad escape");
        }
        start = i;
      } else i++;
    }
  };
  const num = (): number | bigint => {
    const start = i;
    if (text[i] === "-") i++;
    if (text[i] === "0") i++;
    else if (text[i]! >= "1" && text[i]! <= "9") while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    else fail("bad number");
    let isInt = true;
    if (text[i] === ".") {
      isInt = false;
      i++;
      if (!(text[i]! >= "0" && text[i]! <= "9")) fail("bad number");
      while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    }
    if (text[i] === "e" || text[i] === "E") {
      isInt = false;
      i++;
      if (text[i] === "+" || text[i] === "-") i++;
      if (!(text[i]! >= "0" && text[i]! <= "9")) fail("bad number");
      while (i < n && text[i]! >= "0" && text[i]! <= "9") i++;
    }
    const lit = text.slice(start, i);
    if (!isInt) return Number(lit);
    // Integers of more than 30 digits are out of every range we check; keep BigInt's cost bounded.
    return lit.replace("-", "").length > 30 ? (lit.startsWith("-") ? -(10n ** 30n) : 10n ** 30n) : BigInt(lit);
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    if (++values > maxValues) throw new JsonSyntaxError(`more than ${maxValues} values`, null, true);
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: JsonObject = new Map();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const key = str();
        if (obj.has(key)) throw new JsonSyntaxError(`duplicate key '${key}'`, { key, path: [...path] });
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        path.push(key);
        obj.set(key, value(depth + 1));
        path.pop();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === "t" && text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (c === "f" && text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (c === "n" && text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return num();
    return fail("unexpected character");
  };
  const v = value(0);
  ws();
  if (i < n) fail("unexpected data after the JSON value");
  return v;
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

// ---------------------------------------------------------------- 16-bit conversions (lookup tables)

let bf16ToF16Table: Uint16Array | null = null;
let f16ToF32Table: Float32Array | null = null;

// util/f16.ts converts element by element; loading converts whole checkpoints, so the two 16-bit
// conversions on the load path go through 65,536-entry tables built from those same functions.

/** bf16 bits → f16 bits for all 65,536 patterns (round to nearest even; exact reuse of f32ToF16Bits). */
function bf16ToF16Lut(): Uint16Array {
  if (!bf16ToF16Table) {
    const t = new Uint16Array(65536);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let b = 0; b < 65536; b++) {
      u[0] = b << 16;
      t[b] = f32ToF16Bits(f[0]!);
    }
    bf16ToF16Table = t;
  }
  return bf16ToF16Table;
}
function f16ToF32Lut(): Float32Array {
  if (!f16ToF32Table) f16ToF32Table = f16ArrayToF32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  return f16ToF32Table;
}

/**
 * bf16 bits → f16 bits. Finite bf16 values beyond f16's range (|x| > 65504) become ±inf; their
 * count is returned so callers can refuse a lossy load instead of producing infinities silently.
 */
export function convertBf16ToF16(src: Uint16Array, out = new Uint16Array(src.length)): { out: Uint16Array; overflows: number } {
  const lut = bf16ToF16Lut();
  let overflows = 0;
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    const h = lut[b]!;
    out[i] = h;
    if ((h & 0x7fff) === 0x7c00 && (b & 0x7f80) !== 0x7f80) overflows++;
  }
  return { out, overflows };
}

export function convertF16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const lut = f16ToF32Lut();
  for (let i = 0; i < src.length; i++) out[i] = lut[src[i]!]!;
  return out;
}

/** f32 → f16 bits; finite values beyond f16's range become ±inf and are counted. */
export function convertF32ToF16(src: Float32Array, out = new Uint16Array(src.length)): { out: Uint16Array; overflows: number } {
  let overflows = 0;
  for (let i = 0; i < src.length; i++) {
    const x = src[i]!;
    const h = f32ToF16Bits(x);
    out[i] = h;
    if ((h & 0x7fff) === 0x7c00 && Number.isFinite(x)) overflows++;
  }
  return { out, overflows };
}

// ---------------------------------------------------------------- writer

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
  entries.sort(([an, a], [bn, b]) => DTYPE_RANK.get(b.dtype)! - DTYPE_RANK.get(a.dtype)! || utf8Compare(an, bn));
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
    const bits = numel * DTYPE_BITS[t.dtype];
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
    const want = (numel * DTYPE_BITS[t.dtype]) / 8;
    if (t.data.byteLength !== want) {
      throw new LoadError(`tensor '${name}': ${t.data.byteLength} bytes of data given, shape [${t.shape.join(", ")}] of ${t.dtype} needs ${want}`);
    }
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += want;
  }
  return out;
}
