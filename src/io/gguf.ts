// GGUF (ggml's model file format, version 3): a writer that streams tensors larger than memory and
// a strict reader of what it wrote, for handing our weights to llama.cpp (bench/peer) and,
// later, for checking quantized blocks byte for byte.
//
// Layout (ggml docs/gguf.md), all little-endian:
//   u32 magic "GGUF" | u32 version = 3 | u64 tensor_count | u64 metadata_kv_count
//   metadata kv:  string key | u32 value_type | value
//                 string = u64 byte length + UTF-8 bytes (no NUL); array = u32 item_type | u64 n | n items
//   tensor info:  string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset
//                 ne[0] is the innermost (contiguous) dimension: the reverse of a row-major shape;
//                 offset is relative to the data section and a multiple of the alignment
//   zero padding to the alignment (metadata "general.alignment", u32, default 32)
//   data section: each tensor at its offset, padded with zeros to the alignment (the last one too:
//                 ggml reads the data section as the sum of padded sizes)
//
// Shapes in this module's API are row-major (outermost first, as safetensors and our tensors);
// the file holds them reversed. Quantized types need ne[0] to be a multiple of their block.
//
// The reader enforces: magic, version 3, counts and string lengths within the file before any
// allocation, UTF-8 keys and strings, no duplicate keys or tensor names, known value and ggml
// types, a u32 general.alignment that is a power of two, dimensions ≥ 1 (at most 4), offsets
// aligned, tensors tiling the data section in order without overlap, and the file ending exactly at
// the padded end of the data section. Every rejection is a GgufFormatError naming the file and rule.

import { LoadError, UsageError } from "../errors.js";

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;
const GGUF_DEFAULT_ALIGNMENT = 32;
/** Dimensions a ggml tensor can have. */
const GGML_MAX_DIMS = 4;

/** Metadata value types, by their id in the file. */
const GGUF_VALUE_TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPES)[number];
export type GgufScalarType = Exclude<GgufValueTypeName, "string" | "array">;
export type GgufItemType = Exclude<GgufValueTypeName, "array">;

const SCALAR_BYTES: Readonly<Record<GgufScalarType, number>> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: GgufScalarType; value: number | bigint | boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufItemType; value: readonly GgufScalar[] | ArrayLike<number> };

/** The ggml tensor types this module writes and reads: id, elements per block, bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, blockBytes: 4 },
  F16: { id: 1, blockSize: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockSize: 32, blockBytes: 18 },
  Q8_0: { id: 8, blockSize: 32, blockBytes: 34 },
  BF16: { id: 30, blockSize: 1, blockBytes: 2 },
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;
const GGML_TYPE_BY_ID = new Map<number, GgmlTypeName>(Object.entries(GGML_TYPES).map(([n, t]) => [t.id, n as GgmlTypeName]));

/** llama.cpp's general.file_type values ("mostly X") for the types above. */
export const LLAMA_FILE_TYPES: Readonly<Record<GgmlTypeName, number>> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 };

/** Bytes of a tensor of `type` with row-major `shape` (checks the block rule). */
function ggmlTensorBytes(type: GgmlTypeName, shape: readonly number[], what = "tensor"): number {
  const t = GGML_TYPES[type];
  const inner = shape[shape.length - 1] ?? 1;
  if (inner % t.blockSize !== 0) throw new UsageError(`${what}: ${type} needs the innermost dimension to be a multiple of ${t.blockSize}, shape is [${shape.join(", ")}]`);
  let n = 1;
  for (const d of shape) n *= d;
  return (n / t.blockSize) * t.blockBytes;
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

// ---------------------------------------------------------------- errors

export type GgufRule =
  | "file-too-short"
  | "bad-magic"
  | "bad-version"
  | "count-too-large"
  | "string-past-eof"
  | "string-not-utf8"
  | "unknown-value-type"
  | "nested-array"
  | "duplicate-key"
  | "bad-alignment"
  | "bad-dims"
  | "unknown-ggml-type"
  | "block-rule"
  | "duplicate-tensor"
  | "offset-unaligned"
  | "offsets-not-tiling"
  | "data-past-eof"
  | "trailing-bytes";

export class GgufFormatError extends LoadError {
  constructor(
    readonly file: string,
    readonly rule: GgufRule,
    detail: string,
  ) {
    super(`GGUF file '${file}': ${detail} (${rule})`);
  }
}

// ---------------------------------------------------------------- writer

export interface GgufTensorSpec {
  name: string;
  type: GgmlTypeName;
  /** Row-major shape (outermost first); written reversed as ne[]. */
  shape: readonly number[];
}

export interface GgufTensorLayout extends GgufTensorSpec {
  /** Offset in the data section. */
  offset: number;
  byteLength: number;
}

export interface GgufLayout {
  /** Header, metadata, tensor infos and the padding up to the data section. */
  headerBytes: Uint8Array;
  alignment: number;
  tensors: GgufTensorLayout[];
  /** Bytes of the data section, every tensor padded to the alignment. */
  dataBytes: number;
}

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(type: GgufScalarType, v: number | bigint | boolean, what: string): void {
    const n = SCALAR_BYTES[type];
    this.room(n);
    const dv = this.view, at = this.length;
    const num = (): number => {
      if (typeof v !== "number") throw new UsageError(`${what}: ${type} value must be a number, got ${typeof v}`);
      return v;
    };
    const int = (lo: number, hi: number): number => {
      const x = num();
      if (!Number.isInteger(x) || x < lo || x > hi) throw new UsageError(`${what}: ${x} is not a ${type}`);
      return x;
    };
    switch (type) {
      case "u8": dv.setUint8(at, int(0, 255)); break;
      case "i8": dv.setInt8(at, int(-128, 127)); break;
      case "u16": dv.setUint16(at, int(0, 65535), true); break;
      case "i16": dv.setInt16(at, int(-32768, 32767), true); break;
      case "u32": dv.setUint32(at, int(0, 2 ** 32 - 1), true); break;
      case "i32": dv.setInt32(at, int(-(2 ** 31), 2 ** 31 - 1), true); break;
      case "f32": dv.setFloat32(at, num(), true); break;
      case "f64": dv.setFloat64(at, num(), true); break;
      case "bool":
        if (typeof v !== "boolean") throw new UsageError(`${what}: bool value must be a boolean`);
        dv.setUint8(at, v ? 1 : 0);
        break;
      case "u64":
      case "i64": {
        const b = typeof v === "bigint" ? v : BigInt(int(type === "u64" ? 0 : Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
        if (type === "u64") dv.setBigUint64(at, b, true);
        else dv.setBigInt64(at, b, true);
        break;
      }
    }
    this.length += n;
  }
  pad(a: number): void {
    const n = alignUp(this.length, a) - this.length;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function typeId(t: GgufValueTypeName): number {
  return GGUF_VALUE_TYPES.indexOf(t);
}

/**
 * Lays out a GGUF file without touching tensor data: the header bytes and each tensor's offset
 * (tensors in the given order). `metadata` in file order; general.alignment, when present, must
 * be a u32 power of two and sets the alignment.
 */
export function layoutGguf(metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensorSpec[]): GgufLayout {
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, v] of metadata) {
    if (keys.has(key)) throw new UsageError(`GGUF metadata key '${key}' given twice`);
    keys.add(key);
    if (key === "general.alignment") {
      if (v.type !== "u32" || typeof v.value !== "number" || v.value <= 0 || (v.value & (v.value - 1)) !== 0) throw new UsageError(`GGUF metadata 'general.alignment' must be a u32 power of two`);
      alignment = v.value;
    }
    w.string(key);
    w.u32(typeId(v.type));
    if (v.type === "string") w.string(v.value);
    else if (v.type === "array") {
      if ((v.itemType as string) === "array") throw new UsageError(`GGUF metadata '${key}': nested arrays are not written`);
      w.u32(typeId(v.itemType));
      w.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) {
        const x = v.value[i] as GgufScalar;
        if (v.itemType === "string") {
          if (typeof x !== "string") throw new UsageError(`GGUF metadata '${key}'[${i}] must be a string`);
          w.string(x);
        } else w.scalar(v.itemType, x as number | bigint | boolean, `GGUF metadata '${key}'[${i}]`);
      }
    } else w.scalar(v.type, v.value, `GGUF metadata '${key}'`);
  }
  const names = new Set<string>();
  const laid: GgufTensorLayout[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new UsageError(`GGUF tensor '${t.name}' given twice`);
    names.add(t.name);
    if (!(t.type in GGML_TYPES)) throw new UsageError(`GGUF tensor '${t.name}': unknown ggml type '${t.type}'`);
    if (t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS || t.shape.some((d) => !Number.isSafeInteger(d) || d < 1)) {
      throw new UsageError(`GGUF tensor '${t.name}': shape [${t.shape.join(", ")}] must have 1 to ${GGML_MAX_DIMS} dimensions ≥ 1`);
    }
    const byteLength = ggmlTensorBytes(t.type, t.shape, `GGUF tensor '${t.name}'`);
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]!);
    w.u32(GGML_TYPES[t.type].id);
    w.u64(offset);
    laid.push({ ...t, offset, byteLength });
    offset += alignUp(byteLength, alignment);
  }
  w.pad(alignment);
  return { headerBytes: w.result(), alignment, tensors: laid, dataBytes: offset };
}

/** Where a GGUF file's bytes go, in order (a FileSink from src/io/output.ts fits). */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

/**
 * Streams a GGUF file: the header, then each tensor's bytes from `data(tensor, index)` (exactly
 * its byteLength, produced one tensor at a time so peak memory is one tensor), zero-padded.
 * Returns the file's size.
 */
export async function writeGguf(sink: ByteSink, layout: GgufLayout, data: (t: GgufTensorLayout, index: number) => Promise<Uint8Array> | Uint8Array): Promise<number> {
  await sink.write(layout.headerBytes);
  let at = 0;
  const zeros = new Uint8Array(layout.alignment);
  for (let i = 0; i < layout.tensors.length; i++) {
    const t = layout.tensors[i]!;
    if (at !== t.offset) throw new Error(`GGUF writer: tensor '${t.name}' at ${at}, laid out at ${t.offset}`);
    const bytes = await data(t, i);
    if (bytes.byteLength !== t.byteLength) throw new UsageError(`GGUF tensor '${t.name}': ${bytes.byteLength} bytes given, ${t.type} [${t.shape.join(", ")}] needs ${t.byteLength}`);
    await sink.write(bytes);
    const pad = alignUp(t.byteLength, layout.alignment) - t.byteLength;
    if (pad > 0) await sink.write(zeros.subarray(0, pad));
    at += t.byteLength + pad;
  }
  return layout.headerBytes.byteLength + layout.dataBytes;
}

/** A whole GGUF file in memory (tests, small models). */
export async function ggufBytes(metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly (GgufTensorSpec & { data: Uint8Array })[]): Promise<Uint8Array> {
  const layout = layoutGguf(metadata, tensors);
  const out = new Uint8Array(layout.headerBytes.byteLength + layout.dataBytes);
  let at = 0;
  await writeGguf({ write: async (b) => void (out.set(b, at), (at += b.byteLength)) }, layout, (_, i) => tensors[i]!.data);
  return out;
}

// ---------------------------------------------------------------- reader

export interface GgufTensorInfo {
  name: string;
  type: GgmlTypeName;
  /** ne[] as stored (innermost first). */
  ne: number[];
  /** Row-major shape (ne reversed). */
  shape: number[];
  /** Offset in the data section. */
  offset: number;
  byteLength: number;
}

export interface GgufHeader {
  version: number;
  alignment: number;
  /** Metadata in file order. */
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** File offset of the data section. */
  dataStart: number;
  /** Padded byte length of the data section. */
  dataBytes: number;
}

/** Something that reads byte ranges of a file (src/io/source.ts ByteSource fits). */
export interface GgufSource {
  readonly name: string;
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

class ByteReader {
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly src: GgufSource) {}
  private fail(rule: GgufRule, detail: string): never {
    throw new GgufFormatError(this.src.name, rule, detail);
  }
  private async need(n: number, rule: GgufRule, what: string): Promise<DataView> {
    if (this.pos + n > this.src.size) this.fail(rule, `${what} needs ${n} bytes at offset ${this.pos}, past the end of the file (${this.src.size} bytes)`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const len = Math.min(this.src.size - this.pos, Math.max(n, 1 << 20));
      this.buf = await this.src.read(this.pos, len);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return new DataView(this.buf.buffer, this.buf.byteOffset + at, n);
  }
  async u32(what: string, rule: GgufRule = "file-too-short"): Promise<number> {
    return (await this.need(4, rule, what)).getUint32(0, true);
  }
  async u64(what: string, rule: GgufRule = "file-too-short"): Promise<number> {
    const v = (await this.need(8, rule, what)).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail("count-too-large", `${what} is ${v}, beyond any file this reader accepts`);
    return Number(v);
  }
  async string(what: string): Promise<string> {
    const n = await this.u64(`${what} length`, "string-past-eof");
    if (this.pos + n > this.src.size) this.fail("string-past-eof", `${what} of ${n} bytes at offset ${this.pos} runs past the end of the file`);
    const dv = await this.need(n, "string-past-eof", what);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(dv.buffer, dv.byteOffset, n));
    } catch {
      return this.fail("string-not-utf8", `${what} at offset ${this.pos - n} is not UTF-8`);
    }
  }
  async scalar(type: GgufScalarType, what: string): Promise<number | bigint | boolean> {
    const dv = await this.need(SCALAR_BYTES[type], "file-too-short", what);
    switch (type) {
      case "u8": return dv.getUint8(0);
      case "i8": return dv.getInt8(0);
      case "u16": return dv.getUint16(0, true);
      case "i16": return dv.getInt16(0, true);
      case "u32": return dv.getUint32(0, true);
      case "i32": return dv.getInt32(0, true);
      case "f32": return dv.getFloat32(0, true);
      case "f64": return dv.getFloat64(0, true);
      case "bool": {
        const b = dv.getUint8(0);
        if (b > 1) this.fail("unknown-value-type", `${what}: bool byte ${b}`);
        return b === 1;
      }
      case "u64": return dv.getBigUint64(0, true);
      case "i64": return dv.getBigInt64(0, true);
    }
  }
}

/** Reads and validates a GGUF file's header, metadata and tensor infos (no tensor data). */
export async function readGgufHeader(src: GgufSource): Promise<GgufHeader> {
  const r = new ByteReader(src);
  const fail = (rule: GgufRule, detail: string): never => {
    throw new GgufFormatError(src.name, rule, detail);
  };
  if (src.size < 24) fail("file-too-short", `${src.size} bytes, a header needs 24`);
  const magic = await r.u32("magic");
  if (magic !== GGUF_MAGIC) fail("bad-magic", `starts with 0x${magic.toString(16).padStart(8, "0")}, not "GGUF"`);
  const version = await r.u32("version");
  if (version !== GGUF_VERSION) fail("bad-version", `version ${version}, this reader reads ${GGUF_VERSION}`);
  const nTensors = await r.u64("tensor count");
  const nKv = await r.u64("metadata count");
  // Every kv needs ≥ 8+4+1 bytes and every tensor info ≥ 8+4+8+4+8: bound the counts by the file.
  if (nKv * 13 + nTensors * 32 > src.size) fail("count-too-large", `${nTensors} tensors and ${nKv} metadata entries cannot fit in ${src.size} bytes`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = await r.string(`metadata key #${i}`);
    if (metadata.has(key)) fail("duplicate-key", `metadata key '${key}' appears twice`);
    const tid = await r.u32(`metadata '${key}' type`);
    const type = GGUF_VALUE_TYPES[tid];
    if (type === undefined) fail("unknown-value-type", `metadata '${key}' has value type ${tid}`);
    if (type === "string") metadata.set(key, { type, value: await r.string(`metadata '${key}'`) });
    else if (type === "array") {
      const iid = await r.u32(`metadata '${key}' item type`);
      const itemType = GGUF_VALUE_TYPES[iid];
      if (itemType === undefined) fail("unknown-value-type", `metadata '${key}' has array item type ${iid}`);
      if (itemType === "array") fail("nested-array", `metadata '${key}' is an array of arrays`);
      const n = await r.u64(`metadata '${key}' length`);
      const itemMin = itemType === "string" ? 8 : SCALAR_BYTES[itemType as GgufScalarType];
      if (r.pos + n * itemMin > src.size) fail("count-too-large", `metadata '${key}' claims ${n} items, past the end of the file`);
      const items: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) items[j] = itemType === "string" ? await r.string(`metadata '${key}'[${j}]`) : await r.scalar(itemType as GgufScalarType, `metadata '${key}'[${j}]`);
      metadata.set(key, { type: "array", itemType: itemType as GgufItemType, value: items });
    } else metadata.set(key, { type, value: await r.scalar(type as GgufScalarType, `metadata '${key}'`) } as GgufValue);
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    if (al.type !== "u32" || typeof al.value !== "number" || al.value === 0 || (al.value & (al.value - 1)) !== 0) fail("bad-alignment", `general.alignment must be a u32 power of two`);
    alignment = al.value as number;
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = await r.string(`tensor name #${i}`);
    if (names.has(name)) fail("duplicate-tensor", `tensor '${name}' appears twice`);
    names.add(name);
    const nd = await r.u32(`tensor '${name}' n_dims`);
    if (nd < 1 || nd > GGML_MAX_DIMS) fail("bad-dims", `tensor '${name}' has ${nd} dimensions (1 to ${GGML_MAX_DIMS})`);
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(await r.u64(`tensor '${name}' ne[${d}]`));
    if (ne.some((d) => d < 1)) fail("bad-dims", `tensor '${name}' has a zero dimension: ne [${ne.join(", ")}]`);
    const gid = await r.u32(`tensor '${name}' type`);
    const type = GGML_TYPE_BY_ID.get(gid);
    if (type === undefined) fail("unknown-ggml-type", `tensor '${name}' has ggml type ${gid} (known: ${Object.entries(GGML_TYPES).map(([n, t]) => `${n}=${t.id}`).join(", ")})`);
    const t = GGML_TYPES[type!];
    if (ne[0]! % t.blockSize !== 0) fail("block-rule", `tensor '${name}' is ${type} with ne[0] = ${ne[0]}, not a multiple of ${t.blockSize}`);
    const offset = await r.u64(`tensor '${name}' offset`);
    if (offset % alignment !== 0) fail("offset-unaligned", `tensor '${name}' at data offset ${offset}, not a multiple of ${alignment}`);
    let numel = 1;
    for (const d of ne) numel *= d;
    if (!Number.isSafeInteger(numel)) fail("count-too-large", `tensor '${name}' has ${ne.join("×")} elements`);
    tensors.push({ name, type: type!, ne, shape: [...ne].reverse(), offset, byteLength: (numel / t.blockSize) * t.blockBytes });
  }
  const dataStart = alignUp(r.pos, alignment);
  let expect = 0;
  for (const t of tensors) {
    if (t.offset !== expect) fail("offsets-not-tiling", `tensor '${t.name}' at data offset ${t.offset}, the previous tensor's padded end is ${expect}`);
    expect += alignUp(t.byteLength, alignment);
  }
  if (dataStart + expect > src.size) fail("data-past-eof", `the data section needs ${dataStart + expect} bytes, the file has ${src.size}`);
  if (dataStart + expect < src.size) fail("trailing-bytes", `${src.size - dataStart - expect} bytes after the padded data section`);
  return { version, alignment, metadata, tensors, dataStart, dataBytes: expect };
}

/** A GGUF header plus reads of tensor data. */
export class GgufFile {
  private readonly byName: Map<string, GgufTensorInfo>;
  private constructor(
    readonly source: GgufSource,
    readonly header: GgufHeader,
  ) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }
  static async open(source: GgufSource): Promise<GgufFile> {
    return new GgufFile(source, await readGgufHeader(source));
  }
  get tensors(): readonly GgufTensorInfo[] {
    return this.header.tensors;
  }
  get metadata(): ReadonlyMap<string, GgufValue> {
    return this.header.metadata;
  }
  /** A metadata value, or undefined. */
  value(key: string): GgufValue["value"] | undefined {
    return this.header.metadata.get(key)?.value;
  }
  info(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new LoadError(`GGUF file '${this.source.name}' has no tensor '${name}'`);
    return t;
  }
  /** The tensor's bytes as stored (blocks for quantized types). */
  readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    return this.source.read(this.header.dataStart + t.offset, t.byteLength);
  }
  close(): Promise<void> {
    return this.source.close?.() ?? Promise.resolve();
  }
}
