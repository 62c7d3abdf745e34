// Safetensors reader and writer (host side; GPU uploads are in checkpoint.test.ts).
// Every rejection rule has a crafted file written to a temp dir and opened through the Node file
// source; each must fail with a SafetensorsFormatError naming the file, the tensor (when there is
// one) and the rule, within a second, and after reading no more bytes than the file holds.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:http";
import { LoadError, UnsupportedError } from "../src/errors.js";
import { SafetensorsFile, SafetensorsFormatError, bytesAsArray, type SafetensorsRule } from "../src/io/safetensors.js";
import { convertBf16ToF16, convertF16ToF32 } from "../src/util/f16.js";
import { layoutSafetensors, writeSafetensors, type TensorToWrite } from "../src/io/safetensors-write.js";
import { parseStrictJson } from "../src/io/strict-json.js";
import { blobSource, bytesSource, httpSource, openFileSource, type ByteSource } from "../src/io/source.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { scratchDir } from "./helpers/scratch.js";

const tmp = scratchDir("st");
const enc = new TextEncoder();

/** 8-byte little-endian length + header text + data bytes. `n` overrides the declared length. */
function craft(header: string | Uint8Array, data: Uint8Array | number = 0, n?: bigint): Uint8Array {
  const h = typeof header === "string" ? enc.encode(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.byteLength + d.byteLength);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(d, 8 + h.byteLength);
  return out;
}

/** Wraps a source and records the largest single read (proof that nothing large was read). */
function counting(src: ByteSource): ByteSource & { maxRead: number; total: number } {
  const c = {
    name: src.name,
    size: src.size,
    maxRead: 0,
    total: 0,
    async read(offset: number, length: number): Promise<Uint8Array> {
      c.maxRead = Math.max(c.maxRead, length);
      c.total += length;
      return src.read(offset, length);
    },
    close: () => src.close?.() ?? Promise.resolve(),
  };
  return c;
}

interface Case {
  what: string;
  bytes: Uint8Array;
  rule: SafetensorsRule;
  tensor?: string;
  detail?: RegExp;
}

const t1 = (extra = "") => `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}${extra}}`;
const cases: Case[] = [
  { what: "5-byte file", bytes: new Uint8Array(5), rule: "file-too-short", detail: /5 bytes/ },
  { what: "empty file", bytes: new Uint8Array(0), rule: "file-too-short" },
  { what: "header length 100,000,001", bytes: craft("{}", 0, 100_000_001n), rule: "header-too-large", detail: /100000001/ },
  { what: "header length 2^64-1", bytes: craft("{}", 0, 0xffffffffffffffffn), rule: "header-too-large" },
  { what: "header length past EOF", bytes: craft("{}", 0, 99_999_999n), rule: "header-past-eof", detail: /99999999/ },
  { what: "header length one past EOF", bytes: craft("{} ", 0, 4n), rule: "header-past-eof" },
  { what: "invalid UTF-8", bytes: craft(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), rule: "header-not-utf8" },
  { what: "not JSON", bytes: craft(`{"a": }`), rule: "header-not-json" },
  { what: "JSON with trailing garbage", bytes: craft(`{} x`), rule: "header-not-json" },
  { what: "not an object (array)", bytes: craft(`[1, 2]`), rule: "header-not-object", detail: /array/ },
  { what: "not an object (string)", bytes: craft(`"hello"`), rule: "header-not-object" },
  { what: "a million-element shape (2 MB of header)", bytes: craft(`{"w":{"dtype":"F32","shape":[${"1,".repeat(1 << 20)}1],"data_offsets":[0,4]}}`, 4), rule: "header-too-complex", detail: /more than 1048576 JSON values/ },
  { what: "duplicate tensor name", bytes: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), rule: "duplicate-key", tensor: "a", detail: /'a'/ },
  { what: "duplicate field in a tensor entry", bytes: craft(`{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8), rule: "duplicate-key", tensor: "w", detail: /'dtype'/ },
  { what: "duplicate __metadata__ key", bytes: craft(`{"__metadata__":{"k":"1","k":"2"}}`), rule: "duplicate-key", detail: /'k'.*__metadata__/ },
  { what: "duplicate key with escapes", bytes: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), rule: "duplicate-key", tensor: "a" },
  { what: "metadata value not a string", bytes: craft(`{"__metadata__":{"format":1}}`), rule: "metadata-not-strings", detail: /'format'/ },
  { what: "metadata not an object", bytes: craft(`{"__metadata__":"pt"}`), rule: "metadata-not-strings" },
  { what: "entry not an object", bytes: craft(`{"w":[1,2]}`), rule: "entry-not-object", tensor: "w" },
  { what: "entry without data_offsets", bytes: craft(`{"w":{"dtype":"F32","shape":[2]}}`, 8), rule: "missing-field", tensor: "w", detail: /data_offsets/ },
  { what: "unknown dtype", bytes: craft(`{"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}`, 8), rule: "unknown-dtype", tensor: "w", detail: /F17/ },
  { what: "lowercase dtype", bytes: craft(`{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}`, 8), rule: "unknown-dtype", tensor: "w" },
  { what: "negative dimension", bytes: craft(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), rule: "bad-shape", tensor: "w" },
  { what: "fractional dimension", bytes: craft(`{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, 8), rule: "bad-shape", tensor: "w" },
  { what: "string dimension", bytes: craft(`{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, 8), rule: "bad-shape", tensor: "w" },
  { what: "shape not a list", bytes: craft(`{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, 8), rule: "bad-shape", tensor: "w" },
  { what: "dimension past 2^53", bytes: craft(`{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}`, 8), rule: "bad-shape", tensor: "w" },
  { what: "begin > end", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "one offset", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "three offsets", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "string offset", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "negative offset", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "float offset", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}`, 8), rule: "bad-data-offsets", tensor: "w" },
  { what: "offsets not from 0", bytes: craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), rule: "offsets-not-from-zero", tensor: "w", detail: /begin at 4/ },
  { what: "gap between tensors", bytes: craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), rule: "offsets-gap", tensor: "b", detail: /gap of 4 bytes after tensor 'a'/ },
  { what: "overlapping tensors", bytes: craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), rule: "offsets-overlap", tensor: "b", detail: /overlap tensor 'a'/ },
  { what: "identical offsets", bytes: craft(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), rule: "offsets-overlap" },
  { what: "byte length too short for shape", bytes: craft(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), rule: "byte-length-mismatch", tensor: "w", detail: /needs 12 bytes/ },
  { what: "byte length of BF16 as if F32", bytes: craft(`{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}}`, 16), rule: "byte-length-mismatch", tensor: "w" },
  { what: "shape whose byte size overflows 2^53", bytes: craft(`{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, 8), rule: "byte-length-mismatch", tensor: "w", detail: /2\^53/ },
  { what: "huge offsets (file claims petabytes)", bytes: craft(`{"w":{"dtype":"U8","shape":[1000000000000000],"data_offsets":[0,1000000000000000]}}`, 8), rule: "data-past-eof", tensor: "w" },
  { what: "truncated data", bytes: craft(t1(), 4), rule: "data-past-eof", tensor: "a" },
  { what: "trailing bytes", bytes: craft(t1(), 9), rule: "trailing-bytes", tensor: "a", detail: /1 bytes follow/ },
  { what: "trailing bytes after an empty header", bytes: craft("{}", 3), rule: "trailing-bytes" },
];

test("every rejection rule: the error names the file, the tensor and the rule, fast, with small reads", async () => {
  const seenRules = new Set<SafetensorsRule>();
  for (const [i, c] of cases.entries()) {
    const path = join(tmp, `bad-${i}.safetensors`);
    writeFileSync(path, c.bytes);
    const src = counting(await openFileSource(path));
    const t0 = performance.now();
    let err: unknown = null;
    try {
      await SafetensorsFile.open(src);
    } catch (e) {
      err = e;
    } finally {
      await src.close?.();
    }
    const ms = performance.now() - t0;
    if (!(err instanceof SafetensorsFormatError)) return assert.unreachable(`${c.what}: expected SafetensorsFormatError, got ${String(err)}`);
    assert.ok(err instanceof LoadError, `${c.what}: is a LoadError`);
    assert.is(err.rule, c.rule, `${c.what}: rule (message: ${err.message})`);
    assert.ok(err.message.includes(path), `${c.what}: names the file: ${err.message}`);
    assert.ok(err.message.includes(`rule ${c.rule}`), `${c.what}: names the rule: ${err.message}`);
    if (c.tensor !== undefined) {
      assert.is(err.tensor, c.tensor, `${c.what}: tensor`);
      assert.ok(err.message.includes(`tensor '${c.tensor}'`), `${c.what}: names the tensor: ${err.message}`);
    }
    if (c.detail) assert.match(err.message, c.detail, `${c.what}`);
    // a guard against pathological parsing (a 78 MB header once took 30 s), not a speed target: the
    // million-element header takes ~0.4 s alone and passed 1 s with two test runs sharing 2 cores
    assert.ok(ms < 10_000, `${c.what}: took ${ms.toFixed(1)} ms`);
    assert.ok(src.maxRead <= c.bytes.byteLength, `${c.what}: read ${src.maxRead} bytes at once from a ${c.bytes.byteLength}-byte file`);
    seenRules.add(c.rule);
  }
  // Every rule of the type has at least one crafted file.
  const all: SafetensorsRule[] = [
    "file-too-short", "header-too-large", "header-past-eof", "header-not-utf8", "header-not-json", "header-not-object", "header-too-complex", "duplicate-key",
    "metadata-not-strings", "entry-not-object", "missing-field", "unknown-dtype", "bad-shape", "bad-data-offsets", "offsets-not-from-zero",
    "offsets-gap", "offsets-overlap", "byte-length-mismatch", "data-past-eof", "trailing-bytes",
  ];
  for (const r of all) assert.ok(seenRules.has(r), `rule ${r} has a crafted file`);
});

test("a header length of 100,000,000 is refused only for running past the file, without a large read", async () => {
  const src = counting(bytesSource(craft("{}", 0, 100_000_000n), "big-claim.safetensors"));
  const e = await SafetensorsFile.open(src).then(() => null, (x: unknown) => x);
  assert.ok(e instanceof SafetensorsFormatError && e.rule === "header-past-eof", String(e));
  assert.is(src.maxRead, 8);
});

test("valid edge cases are accepted: empty file, zero-size and scalar tensors, padding, offset order ≠ key order, metadata", async () => {
  const empty = await SafetensorsFile.open(bytesSource(craft("{}"), "empty"));
  assert.is(empty.tensors.length, 0);
  assert.is(empty.metadata, null);
  assert.is((await SafetensorsFile.open(bytesSource(craft(`{"__metadata__":null}`), "null-meta"))).metadata, null, "null metadata, as the reference");
  const hdr = `{"z":{"dtype":"F32","shape":[],"data_offsets":[4,8]},"__metadata__":{"format":"pt","note":"\\u00e9\\n"},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}      `;
  const data = new Uint8Array(8);
  new DataView(data.buffer).setInt32(0, -7, true);
  new DataView(data.buffer).setFloat32(4, 2.5, true);
  const f = await SafetensorsFile.open(bytesSource(craft(hdr, data), "edge"));
  assert.equal(f.names(), ["a", "e", "z"], "data order");
  assert.equal({ ...f.metadata }, { format: "pt", note: "é\n" });
  assert.equal(f.info("z").shape, []);
  assert.is(f.info("z").numel, 1);
  assert.equal(Array.from((await f.readTensor("a")).data as Int32Array), [-7]);
  assert.equal(Array.from((await f.readTensor("z")).data as Float32Array), [2.5]);
  assert.is((await f.readTensor("e")).data.length, 0);
  await assertRejects(() => f.readBytes("missing"), LoadError, [/no tensor 'missing'/], "missing tensor");
  await assertRejects(() => f.readBytes("a", 2, 4), LoadError, [/outside its 4 bytes/], "range");
});

test("strict JSON: escapes, nesting, integers as bigint, duplicates at any depth", () => {
  const v = parseStrictJson(` {"s":"a\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u263A\\ud83d\\ude00","n":[0,-1,12345678901234567890,1.5,-2e3,true,false,null],"o":{}} `);
  assert.ok(v instanceof Map);
  const m = v as Map<string, unknown>;
  assert.is(m.get("s"), 'a"b\\c/\b\f\n\r\t☺😀');
  assert.equal(m.get("n"), [0n, -1n, 12345678901234567890n, 1.5, -2000, true, false, null]);
  assert.ok(m.get("o") instanceof Map);
  assert.throws(() => parseStrictJson(`{"a":{"b":1,"b":2}}`), /duplicate key 'b'/);
  assert.throws(() => parseStrictJson(`{"__proto__":1,"__proto__":2}`), /duplicate key '__proto__'/);
  for (const bad of [`{"a":1,}`, `[1,]`, `{"a" 1}`, `01`, `1.`, `"\t"`, `"\\x"`, `tru`, `{'a':1}`, ``, `[`.repeat(100) + `]`.repeat(100)]) {
    assert.throws(() => parseStrictJson(bad), undefined, `rejects ${JSON.stringify(bad.slice(0, 20))}`);
  }
});

function tensorsOfEveryDtype(rng: Rng): Map<string, TensorToWrite> {
  const m = new Map<string, TensorToWrite>();
  const f = rng.fillNormal(6);
  m.set("f32", { dtype: "F32", shape: [2, 3], data: f });
  m.set("f64", { dtype: "F64", shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) });
  m.set("f16", { dtype: "F16", shape: [5], data: Uint16Array.from(rng.fillNormal(5), (x) => f32ToF16Bits(x)) });
  m.set("bf16", { dtype: "BF16", shape: [1, 5], data: Uint16Array.from(rng.fillNormal(5), (x) => f32ToBf16Bits(x)) });
  m.set("i8", { dtype: "I8", shape: [3], data: Int8Array.from([-128, 0, 127]) });
  m.set("u8", { dtype: "U8", shape: [3], data: Uint8Array.from([0, 1, 255]) });
  m.set("i16", { dtype: "I16", shape: [2], data: Int16Array.from([-32768, 32767]) });
  m.set("u16", { dtype: "U16", shape: [2], data: Uint16Array.from([0, 65535]) });
  m.set("i32", { dtype: "I32", shape: [3], data: Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1]) });
  m.set("u32", { dtype: "U32", shape: [1], data: Uint32Array.from([2 ** 32 - 1]) });
  m.set("i64", { dtype: "I64", shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n + 1n]) });
  m.set("bool", { dtype: "BOOL", shape: [4], data: Uint8Array.from([1, 0, 0, 1]) });
  m.set("empty", { dtype: "F32", shape: [0], data: new Float32Array(0) });
  return m;
}

test("writer → reader round trip of every readable dtype (bit-exact), through file, Blob and memory sources", async () => {
  const tensors = tensorsOfEveryDtype(new Rng(11));
  const bytes = writeSafetensors(tensors, { format: "pt", b: "2" });
  const path = join(tmp, "all.safetensors");
  writeFileSync(path, bytes);
  const sources: ByteSource[] = [await openFileSource(path), blobSource(new Blob([new Uint8Array(bytes)]), "all.blob"), bytesSource(bytes, "all.mem")];
  for (const src of sources) {
    const f = await SafetensorsFile.open(src);
    assert.equal({ ...f.metadata }, { b: "2", format: "pt" }, src.name);
    assert.is(f.tensors.length, tensors.size);
    for (const [name, t] of tensors) {
      const { info, data } = await f.readTensor(name);
      assert.is(info.dtype, t.dtype, `${src.name} ${name} dtype`);
      assert.equal([...info.shape], [...t.shape], `${src.name} ${name} shape`);
      assert.is(data.constructor, t.data.constructor, `${src.name} ${name} array type`);
      assert.equal(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), `${src.name} ${name} bytes`);
    }
    await f.close();
  }
  // readF32 converts half types
  const f = await SafetensorsFile.open(bytesSource(bytes, "m"));
  const bf = tensors.get("bf16")!.data as Uint16Array;
  assertEqualArrays(await f.readF32("bf16"), Array.from(bf, bf16BitsToF32), "bf16 → f32");
  // a dtype the format knows but this runtime cannot read
  const f8 = await SafetensorsFile.open(bytesSource(craft(`{"q":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`, 8), "f8"));
  await assertRejects(() => f8.readTensor("q"), UnsupportedError, [/F8_E4M3/, /f8:q/], "F8 read");
});

test("writer follows the reference layout: dtype (largest first), then name; __metadata__ first; spaces to a multiple of 8", () => {
  const m = new Map<string, TensorToWrite>([
    ["b", { dtype: "F16", shape: [1], data: new Uint16Array(1) }],
    ["a", { dtype: "F16", shape: [1], data: new Uint16Array(1) }],
    ["z", { dtype: "F32", shape: [1], data: new Float32Array(1) }],
    ["m", { dtype: "BF16", shape: [1], data: new Uint16Array(1) }],
    ["i", { dtype: "I64", shape: [1], data: new BigInt64Array(1) }],
    ["u", { dtype: "U8", shape: [3], data: new Uint8Array(3) }],
  ]);
  const layout = layoutSafetensors(m, { y: "1", x: "2" });
  assert.equal(layout.order, ["i", "z", "m", "a", "b", "u"]);
  const n = Number(new DataView(layout.headerBytes.buffer).getBigUint64(0, true));
  assert.is(n % 8, 0);
  assert.is(layout.headerBytes.byteLength, 8 + n);
  const text = new TextDecoder().decode(layout.headerBytes.subarray(8));
  const json = text.trimEnd();
  assert.is(text.slice(json.length), " ".repeat(n - json.length), "padding is spaces");
  assert.ok(n - json.length < 8);
  assert.is(
    json,
    `{"__metadata__":{"x":"2","y":"1"},"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},` +
      `"m":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]},"a":{"dtype":"F16","shape":[1],"data_offsets":[14,16]},` +
      `"b":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},"u":{"dtype":"U8","shape":[3],"data_offsets":[18,21]}}`,
  );
  assert.is(layout.dataBytes, 21);
  // names compare by UTF-8 bytes, and integer-like names keep their place
  assert.equal(layoutSafetensors({ "é": { dtype: "U8", shape: [1] }, z: { dtype: "U8", shape: [1] }, "10": { dtype: "U8", shape: [1] }, "9": { dtype: "U8", shape: [1] } }).order, ["10", "9", "z", "é"]);
  assert.throws(() => writeSafetensors({ w: { dtype: "F32", shape: [3], data: new Float32Array(2) } }), /needs 12/);
  assert.throws(() => layoutSafetensors({ __metadata__: { dtype: "F32", shape: [1] } }), /__metadata__/);
});

test("the golden fixtures' Python-written files read back and re-serialise byte for byte", async () => {
  const root = "test/fixtures/models";
  const dirs = readdirSync(root).filter((d) => !d.endsWith(".md"));
  assert.ok(dirs.length >= 1, "fixtures exist");
  let files = 0;
  for (const d of dirs) {
    for (const name of readdirSync(join(root, d)).filter((x) => x.startsWith("model") && x.endsWith(".safetensors"))) {
      const path = join(root, d, name);
      const f = await SafetensorsFile.open(await openFileSource(path));
      assert.equal({ ...f.metadata }, { format: "pt" }, path);
      const m = new Map<string, TensorToWrite>();
      for (const t of f.tensors) m.set(t.name, { dtype: t.dtype, shape: t.shape, data: await f.readBytes(t.name) });
      await f.close();
      const again = writeSafetensors(m, f.metadata);
      assert.ok(Buffer.compare(Buffer.from(again), readFileSync(path)) === 0, `${path}: re-serialised bytes differ`);
      files++;
    }
  }
  assert.ok(files >= 5, `checked ${files} files`);
});

test("16-bit lookup tables: BF16 → f16 equals rounding through f32 (overflows counted); f16 → f32 exact", () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const { out, overflows } = convertBf16ToF16(all);
  let want = 0;
  for (let b = 0; b < 65536; b++) {
    const x = bf16BitsToF32(b);
    const h = f32ToF16Bits(x);
    if (out[b] !== h) assert.unreachable(`bf16 0x${b.toString(16)}: got 0x${out[b]!.toString(16)}, want 0x${h.toString(16)}`);
    if (Number.isFinite(x) && (h & 0x7fff) === 0x7c00) want++;
  }
  assert.is(overflows, want);
  assertEqualArrays(convertF16ToF32(all), Array.from(all, f16BitsToF32), "f16 → f32 table");
  assert.ok(overflows > 0);
  assert.is(bytesAsArray(new Uint8Array(3).subarray(1), "U16", "t").length, 1, "unaligned views are copied");
});

test("HTTP range source reads byte ranges and refuses a server without Range support", async () => {
  const bytes = writeSafetensors(tensorsOfEveryDtype(new Rng(3)));
  let honourRange = true;
  const server = createServer((req, res) => {
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
    if (req.method === "HEAD") {
      res.writeHead(200, { "content-length": bytes.byteLength });
      res.end();
    } else if (m && honourRange) {
      const body = bytes.subarray(Number(m[1]), Number(m[2]) + 1);
      res.writeHead(206, { "content-length": body.byteLength });
      res.end(body);
    } else {
      res.writeHead(200);
      res.end(bytes);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const addr = server.address();
    const url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/m.safetensors`;
    const f = await SafetensorsFile.open(await httpSource(url));
    assert.equal(Array.from((await f.readTensor("i32")).data as Int32Array), [-(2 ** 31), 0, 2 ** 31 - 1]);
    honourRange = false;
    await assertRejects(() => f.readTensor("f32"), LoadError, [/expected 206/, /m\.safetensors/], "no Range support");
  } finally {
    server.close();
  }
});

test.run();
