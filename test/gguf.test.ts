// GGUF writer and strict reader (src/io/gguf.ts), ggml's Q8_0 / Q4_0 blocks with the reference
// rounding (src/io/ggml-quants.ts), and the HF → GGUF converter of the peer benchmark
// (bench/peer/convert.ts) on the model fixtures: bytes parsed back, hand-worked blocks, and the
// q/k row permutation checked by its meaning (llama.cpp's adjacent-pair RoPE on the converted rows
// gives the same attention scores as Hugging Face's rotate-half RoPE on the original ones).
// No llama.cpp here: bench/peer/logits.ts compares logits with it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LoadError, UnsupportedError, UsageError } from "../src/errors.js";
import { GgufFile, GgufFormatError, ggufBytes, layoutGguf, readGgufHeader, type GgufValue } from "../src/io/gguf.js";
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from "../src/io/ggml-quants.js";
import { bytesSource, openFileSource } from "../src/io/source.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { fileIsOurs, writeFileAtomic } from "../src/io/output.js";
import { f16BitsToF32, f32ToF16Bits } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { convertToGguf, ggufVocab, permuteRopeRows } from "../bench/peer/convert.js";
import { assertRejects } from "./helpers/check.js";
import { scratchDir } from "./helpers/scratch.js";

const FIXTURES = join(process.cwd(), "test", "fixtures", "models");
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// ---------------------------------------------------------------- quantized blocks

test("Q8_0: d = amax/127 as f16, codes rounded half away from zero", () => {
  const x = new Float32Array(32);
  x.set([127, -63.5, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49, -126.5]);
  const b = quantizeQ8_0(x);
  assert.is(b.length, 34);
  const dv = new DataView(b.buffer);
  assert.is(dv.getUint16(0, true), 0x3c00, "d = 1.0 as f16");
  const q = Array.from(new Int8Array(b.buffer, 2, 32));
  assert.equal(q.slice(0, 10), [127, -64, 1, -1, 2, 3, -3, 0, -127, 0]);
  assert.ok(q.slice(9).every((v) => v === 0));
});

test("Q8_0: a zero block has d = 0 and zero codes; the f16 d is rounded, the codes use the f32 d", () => {
  const z = quantizeQ8_0(new Float32Array(64));
  assert.ok(z.every((v) => v === 0));
  // amax 1 → d = 1/127 in f32 (not an f16 value): stored rounded to nearest even, codes from 1/d.
  const x = new Float32Array(32).fill(0.25);
  x[3] = -1;
  const b = quantizeQ8_0(x);
  assert.is(new DataView(b.buffer).getUint16(0, true), f32ToF16Bits(Math.fround(1 / 127)));
  assert.is(new Int8Array(b.buffer, 2, 32)[3], -127);
  assert.is(new Int8Array(b.buffer, 2, 32)[0], 32); // 0.25·127 = 31.75 → 32
});

test("Q4_0: d = max/−8 (signed value of largest |x|, first on ties), q = min(15, trunc(x/d + 8.5)), nibbles j | j+16", () => {
  const x = new Float32Array(32);
  x.set([-8, 7, 7.4, -7.5, 0.49, 0.5, -0.51, 8]); // |−8| = |8|: the first (−8) wins → d = 1
  x[16] = 3;
  x[17] = -3;
  const b = quantizeQ4_0(x);
  assert.is(b.length, 18);
  assert.is(new DataView(b.buffer).getUint16(0, true), 0x3c00);
  const lo = Array.from(b.subarray(2, 18), (v) => v & 15);
  const hi = Array.from(b.subarray(2, 18), (v) => v >> 4);
  // −8→0, 7→15, 7.4→15 (15.9 truncated), −7.5→1, 0.49→8, 0.5→9, −0.51→7 (7.99), 8→min(15, 16)=15
  assert.equal(lo.slice(0, 8), [0, 15, 15, 1, 8, 9, 7, 15]);
  assert.equal(hi.slice(0, 2), [11, 5]); // 3 → 11, −3 → 5
  assert.ok(lo.slice(8).every((v) => v === 8) && hi.slice(2).every((v) => v === 8), "zeros code 8");
  // Positive maximum: d = −1, so large positives map to code 0.
  const y = new Float32Array(32);
  y[0] = 8;
  y[1] = -8;
  y[2] = 2;
  const c = quantizeQ4_0(y);
  assert.is(f16BitsToF32(new DataView(c.buffer).getUint16(0, true)), -1);
  assert.equal([c[2]! & 15, c[3]! & 15, c[4]! & 15], [0, 15, 6]);
});

test("Q8_0 / Q4_0: dequantized values within half a step (f16 scale) on random rows; refuses partial blocks", () => {
  const rng = new Rng(7);
  const x = rng.fillNormal(32 * 40, 0.02);
  for (let i = 0; i < 32; i++) x[32 * 5 + i] = 0; // one zero block
  const q8 = dequantizeQ8_0(quantizeQ8_0(x));
  const q4 = dequantizeQ4_0(quantizeQ4_0(x));
  for (let blk = 0; blk < 40; blk++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]!));
    for (let j = 0; j < 32; j++) {
      const i = blk * 32 + j;
      // Half a step from rounding (a whole one where Q4_0 clamps code 16 to 15), plus |q|·|d − f16(d)|.
      assert.ok(Math.abs(q8[i]! - x[i]!) <= (amax / 127) * (0.5 + 127 * 2 ** -10) + 1e-9, `Q8_0 value ${i}`);
      assert.ok(Math.abs(q4[i]! - x[i]!) <= (amax / 8) * (1 + 8 * 2 ** -10) + 1e-9, `Q4_0 value ${i}`);
    }
  }
  assert.ok(q8.subarray(160, 192).every((v) => v === 0) && q4.subarray(160, 192).every((v) => v === 0));
  assert.throws(() => quantizeQ8_0(new Float32Array(40)), (e: Error) => e instanceof UsageError && /40 values/.test(e.message));
  assert.throws(() => dequantizeQ4_0(new Uint8Array(19)), (e: Error) => e instanceof UsageError);
});

// ---------------------------------------------------------------- writer + reader

const META: [string, GgufValue][] = [
  ["general.architecture", { type: "string", value: "llama" }],
  ["t.u8", { type: "u8", value: 200 }],
  ["t.i8", { type: "i8", value: -5 }],
  ["t.u16", { type: "u16", value: 60000 }],
  ["t.i16", { type: "i16", value: -300 }],
  ["t.u32", { type: "u32", value: 4000000000 }],
  ["t.i32", { type: "i32", value: -70000 }],
  ["t.f32", { type: "f32", value: 1e-5 }],
  ["t.bool", { type: "bool", value: true }],
  ["t.u64", { type: "u64", value: 2n ** 40n + 3n }],
  ["t.i64", { type: "i64", value: -(2n ** 40n) }],
  ["t.f64", { type: "f64", value: Math.PI }],
  ["t.strs", { type: "array", itemType: "string", value: ["<unk>", "▁héllo", ""] }],
  ["t.f32s", { type: "array", itemType: "f32", value: [0.5, -1, 3] }],
  ["t.i32s", { type: "array", itemType: "i32", value: [1, -2, 6] }],
  ["t.bools", { type: "array", itemType: "bool", value: [false, true] }],
];

function tensors() {
  const rng = new Rng(3);
  const f32 = rng.fillNormal(15, 1);
  const f16 = Uint16Array.from(rng.fillNormal(14, 1), (v) => f32ToF16Bits(v));
  const q8 = quantizeQ8_0(rng.fillNormal(128, 1));
  const q4 = quantizeQ4_0(rng.fillNormal(32, 1));
  return [
    { name: "a.f32", type: "F32" as const, shape: [3, 5], data: bytesOf(f32) },
    { name: "b.f16", type: "F16" as const, shape: [2, 7], data: bytesOf(f16) }, // 28 bytes: padded to 32
    { name: "c.q8", type: "Q8_0" as const, shape: [2, 64], data: q8 },
    { name: "d.q4", type: "Q4_0" as const, shape: [32], data: q4 },
  ];
}

test("GGUF header bytes: magic, version 3, u64 counts, the first key/value encoded as the spec says", async () => {
  const bytes = await ggufBytes(META.slice(0, 2), []);
  const dv = new DataView(bytes.buffer);
  assert.equal(Array.from(bytes.subarray(0, 4)), [0x47, 0x47, 0x55, 0x46]); // "GGUF"
  assert.is(dv.getUint32(4, true), 3);
  assert.is(dv.getBigUint64(8, true), 0n);
  assert.is(dv.getBigUint64(16, true), 2n);
  assert.is(dv.getBigUint64(24, true), 20n); // "general.architecture"
  assert.is(new TextDecoder().decode(bytes.subarray(32, 52)), "general.architecture");
  assert.is(dv.getUint32(52, true), 8); // string
  assert.is(dv.getBigUint64(56, true), 5n);
  assert.is(new TextDecoder().decode(bytes.subarray(64, 69)), "llama");
  assert.is(dv.getBigUint64(69 + 8, true) === undefined, false);
  assert.is(dv.getUint32(69 + 8 + 4, true), 0); // "t.u8" then type 0 (u8)
  assert.is(bytes[69 + 8 + 4 + 4], 200);
  assert.is(bytes.length % 32, 0, "padded to the alignment");
});

test("GGUF round trip: metadata of every type, tensor infos (ne reversed), aligned offsets, data and zero padding", async () => {
  const ts = tensors();
  const bytes = await ggufBytes(META, ts);
  const f = await GgufFile.open(bytesSource(bytes, "rt.gguf"));
  const h = f.header;
  assert.is(h.version, 3);
  assert.is(h.alignment, 32);
  assert.equal([...h.metadata.keys()], META.map(([k]) => k));
  for (const [k, v] of META) {
    const got = h.metadata.get(k)!;
    assert.is(got.type, v.type, k);
    if (v.type === "f32") assert.is(got.value, Math.fround(v.value as number));
    else if (v.type === "array" && v.itemType === "f32") assert.equal(got.value, (v.value as number[]).map(Math.fround));
    else assert.equal(got.value, v.value, k);
  }
  assert.is(h.dataStart % 32, 0);
  assert.equal(
    h.tensors.map((t) => [t.name, t.type, t.ne, t.offset, t.byteLength]),
    [
      ["a.f32", "F32", [5, 3], 0, 60],
      ["b.f16", "F16", [7, 2], 64, 28],
      ["c.q8", "Q8_0", [64, 2], 96, 136],
      ["d.q4", "Q4_0", [32], 256, 18],
    ],
  );
  for (const t of ts) assert.equal(Array.from(await f.readBytes(t.name)), Array.from(t.data), t.name);
  assert.ok(bytes.subarray(h.dataStart + 60, h.dataStart + 64).every((b) => b === 0), "padding after a.f32");
  assert.ok(bytes.subarray(h.dataStart + 256 + 18).every((b) => b === 0), "padding after the last tensor");
  assert.is(bytes.length, h.dataStart + 288);
});

test("GGUF general.alignment sets the alignment of the data section and offsets", async () => {
  const bytes = await ggufBytes([["general.alignment", { type: "u32", value: 64 }]], tensors());
  const h = await readGgufHeader(bytesSource(bytes, "a64.gguf"));
  assert.is(h.alignment, 64);
  assert.is(h.dataStart % 64, 0);
  assert.equal(h.tensors.map((t) => t.offset), [0, 64, 128, 320]);
  assert.throws(() => layoutGguf([["general.alignment", { type: "u32", value: 48 }]], []), (e: Error) => e instanceof UsageError && /power of two/.test(e.message));
});

test("GGUF writer refuses what it cannot write", async () => {
  assert.throws(() => layoutGguf([], [{ name: "q", type: "Q8_0", shape: [2, 40] }]), (e: Error) => e instanceof UsageError && /multiple of 32/.test(e.message));
  assert.throws(() => layoutGguf([["k", { type: "u8", value: 1 }], ["k", { type: "u8", value: 2 }]], []), (e: Error) => /given twice/.test(e.message));
  assert.throws(() => layoutGguf([["k", { type: "u32", value: -1 }]], []), (e: Error) => /is not a u32/.test(e.message));
  assert.throws(() => layoutGguf([], [{ name: "x", type: "F32", shape: [1, 1, 1, 1, 1] }]), (e: Error) => /dimensions/.test(e.message));
  await assertRejects(() => ggufBytes([], [{ name: "x", type: "F32", shape: [4], data: new Uint8Array(12) }]), UsageError, [/12 bytes given/, /needs 16/], "short data");
});

test("GGUF reader rejects malformed files, naming the rule", async () => {
  const good = await ggufBytes([["t.x", { type: "u8", value: 1 }], ["t.y", { type: "u8", value: 2 }]], tensors());
  const h = await readGgufHeader(bytesSource(good, "g"));
  const expectRule = async (bytes: Uint8Array, rule: string, what: string) => {
    const e = await assertRejects(() => readGgufHeader(bytesSource(bytes, "bad.gguf")), GgufFormatError, [new RegExp(`\\(${rule}\\)`), /bad\.gguf/], what);
    assert.ok(e instanceof LoadError);
  };
  const patched = (f: (b: Uint8Array, dv: DataView) => void) => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  await expectRule(patched((b) => (b[0] = 0x46)), "bad-magic", "magic");
  await expectRule(patched((_, dv) => dv.setUint32(4, 2, true)), "bad-version", "version 2");
  await expectRule(good.subarray(0, 20), "file-too-short", "20 bytes");
  await expectRule(good.subarray(0, good.length - 1), "data-past-eof", "truncated data");
  const longer = new Uint8Array(good.length + 1);
  longer.set(good);
  await expectRule(longer, "trailing-bytes", "one byte more");
  await expectRule(patched((_, dv) => dv.setBigUint64(8, 1n << 40n, true)), "count-too-large", "huge tensor count");
  // "t.y" → "t.x": a duplicate key. The key bytes follow the first kv (8+3+4+1 bytes) after the 24-byte header.
  await expectRule(patched((b) => (b[24 + 16 + 8 + 2] = "x".charCodeAt(0))), "duplicate-key", "duplicate key");
  // The first tensor info: name "a.f32" (8+5), n_dims (4), ne (2×8), type (4), offset (8).
  const info0 = 24 + 2 * 16;
  await expectRule(patched((_, dv) => dv.setUint32(info0 + 13 + 4 + 16, 99, true)), "unknown-ggml-type", "ggml type 99");
  await expectRule(patched((_, dv) => dv.setBigUint64(info0 + 13 + 4 + 16 + 4, 8n, true)), "offset-unaligned", "offset 8");
  await expectRule(patched((_, dv) => dv.setBigUint64(info0 + 13 + 4 + 16 + 4, 32n, true)), "offsets-not-tiling", "offset 32 (a gap)");
  await expectRule(patched((_, dv) => dv.setUint32(info0 + 13, 0, true)), "bad-dims", "0 dimensions");
  // c.q8's ne[0] (64) → 40: not whole Q8_0 blocks.
  const q8info = info0 + (13 + 4 + 16 + 12) + (13 + 4 + 16 + 12);
  assert.is(new DataView(good.buffer).getBigUint64(q8info + 16, true), 64n);
  await expectRule(patched((_, dv) => dv.setBigUint64(q8info + 16, 40n, true)), "block-rule", "Q8_0 ne[0] 40");
  assert.is(h.tensors.length, 4);
});

// ---------------------------------------------------------------- converter

/** HF rotate-half RoPE on one head vector at position p. */
function ropeHalf(x: Float64Array, p: number, theta: number): Float64Array {
  const hd = x.length, half = hd / 2, y = new Float64Array(hd);
  for (let i = 0; i < half; i++) {
    const a = p * theta ** (-(2 * i) / hd), c = Math.cos(a), s = Math.sin(a);
    y[i] = x[i]! * c - x[i + half]! * s;
    y[i + half] = x[i + half]! * c + x[i]! * s;
  }
  return y;
}
/** llama.cpp's adjacent-pair RoPE (mode 0) on one head vector at position p. */
function ropePairs(x: Float64Array, p: number, theta: number): Float64Array {
  const hd = x.length, y = new Float64Array(hd);
  for (let i = 0; i < hd / 2; i++) {
    const a = p * theta ** (-(2 * i) / hd), c = Math.cos(a), s = Math.sin(a);
    y[2 * i] = x[2 * i]! * c - x[2 * i + 1]! * s;
    y[2 * i + 1] = x[2 * i + 1]! * c + x[2 * i]! * s;
  }
  return y;
}
function matvecHead(w: Float32Array, cols: number, head: number, hd: number, x: Float64Array): Float64Array {
  const y = new Float64Array(hd);
  for (let r = 0; r < hd; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[(head * hd + r) * cols + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

test("converter: llama-gqa-f32 → GGUF parsed back; llama metadata, synthesized vocabulary, tensors in order, tagged output", async () => {
  const dir = join(FIXTURES, "llama-gqa-f32");
  const out = join(scratchDir("gguf-test"), "m.gguf");
  const r = await convertToGguf(dir, out, { type: "F32" });
  assert.is(r.tensors, 21);
  const f = await GgufFile.open(await openFileSource(out));
  const v = (k: string) => f.value(k);
  assert.is([...f.metadata.keys()][0], "onegen.format");
  assert.is(v("general.architecture"), "llama");
  assert.equal([v("llama.embedding_length"), v("llama.block_count"), v("llama.attention.head_count"), v("llama.attention.head_count_kv"), v("llama.feed_forward_length"), v("llama.vocab_size"), v("llama.rope.dimension_count")], [64, 2, 4, 2, 160, 384, 16]);
  const tokens = v("tokenizer.ggml.tokens") as string[];
  const types = v("tokenizer.ggml.token_type") as number[];
  assert.is(tokens.length, 384);
  assert.equal(tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.is(tokens[258], "<0xFF>");
  assert.ok(types.slice(3, 259).every((t) => t === 6), "byte pieces typed BYTE");
  assert.equal(f.tensors.slice(0, 3).map((t) => [t.name, t.ne]), [["token_embd.weight", [64, 384]], ["blk.0.attn_norm.weight", [64]], ["blk.0.attn_q.weight", [64, 64]]]);
  assert.is(f.tensors[f.tensors.length - 1]!.name, "output.weight");
  await f.close();
  assert.ok(await fileIsOurs(out, "gguf"), "tagged as ours");
  // The same file again: our own output may be replaced; a foreign GGUF may not.
  await convertToGguf(dir, out, { type: "F32" });
  const foreign = join(scratchDir("gguf-test"), "x.gguf");
  writeFileSync(foreign, await ggufBytes([["general.architecture", { type: "string", value: "llama" }]], []));
  assert.not.ok(await fileIsOurs(foreign, "gguf"));
  await assertRejects(() => convertToGguf(dir, foreign, { type: "F32" }), UsageError, [/x\.gguf/], "foreign file");
  await assertRejects(() => writeFileAtomic(foreign, "gguf", "x"), UsageError, [/onegen\.format/], "foreign file via writeFileAtomic");
});

test("converter: q/k rows permuted so adjacent-pair RoPE gives Hugging Face's attention scores (GQA); v unchanged", async () => {
  const dir = join(FIXTURES, "llama-gqa-f32");
  const out = join(scratchDir("gguf-test"), "m.gguf");
  await convertToGguf(dir, out, { type: "F32" });
  const g = await GgufFile.open(await openFileSource(out));
  const st = await SafetensorsFile.open(await openFileSource(join(dir, "model.safetensors")));
  const f32 = (b: Uint8Array) => new Float32Array(b.slice().buffer);
  const D = 64, hd = 16, H = 4, KV = 2, theta = 10000;
  const qHf = await st.readF32("model.layers.1.self_attn.q_proj.weight");
  const kHf = await st.readF32("model.layers.1.self_attn.k_proj.weight");
  const qGg = f32(await g.readBytes("blk.1.attn_q.weight"));
  const kGg = f32(await g.readBytes("blk.1.attn_k.weight"));
  assert.not.equal(Array.from(qGg), Array.from(qHf), "rows reordered");
  const rng = new Rng(11);
  const x1 = Float64Array.from(rng.fillNormal(D, 1)), x2 = Float64Array.from(rng.fillNormal(D, 1));
  for (let h = 0; h < H; h++) {
    const kvh = Math.floor(h / (H / KV));
    for (const [pq, pk] of [[5, 2], [17, 17], [3, 0]] as const) {
      const hf = dot(ropeHalf(matvecHead(qHf, D, h, hd, x1), pq, theta), ropeHalf(matvecHead(kHf, D, kvh, hd, x2), pk, theta));
      const gg = dot(ropePairs(matvecHead(qGg, D, h, hd, x1), pq, theta), ropePairs(matvecHead(kGg, D, kvh, hd, x2), pk, theta));
      assert.ok(Math.abs(hf - gg) <= 1e-9 * (1 + Math.abs(hf)), `head ${h} positions ${pq}/${pk}: ${hf} vs ${gg}`);
      // Without the permutation the scores differ (the check can fail).
      const wrong = dot(ropePairs(matvecHead(qHf, D, h, hd, x1), pq, theta), ropePairs(matvecHead(kHf, D, kvh, hd, x2), pk, theta));
      if (pq !== pk) assert.ok(Math.abs(hf - wrong) > 1e-6 * (1 + Math.abs(hf)), `unpermuted rows would differ (head ${h})`);
    }
  }
  assert.equal(Array.from(f32(await g.readBytes("blk.1.attn_v.weight"))), Array.from(await st.readF32("model.layers.1.self_attn.v_proj.weight")));
  assert.throws(() => permuteRopeRows(new Float32Array(6), 6, 1, 2), (e: Error) => e instanceof UsageError);
  await st.close();
  await g.close();
});

test("converter: F16 stays bit for bit (explicit head_dim), Q8_0 blocks equal quantizeQ8_0 of the permuted rows, refusals", async () => {
  const dir = join(FIXTURES, "mistral-headdim-gqa7-f16");
  const tmp = scratchDir("gguf-test");
  await convertToGguf(dir, join(tmp, "m.gguf"));
  const g = await GgufFile.open(await openFileSource(join(tmp, "m.gguf")));
  assert.is(g.value("llama.attention.key_length"), 24);
  assert.is(g.value("general.file_type"), 1);
  const st = await SafetensorsFile.open(await openFileSource(join(dir, "model.safetensors")));
  assert.equal(Array.from(await g.readBytes("blk.0.ffn_down.weight")), Array.from(await st.readBytes("model.layers.0.mlp.down_proj.weight")));
  assert.is(g.info("blk.0.attn_norm.weight").type, "F32");
  await assertRejects(() => convertToGguf(dir, join(tmp, "q.gguf"), { type: "Q8_0" }), UnsupportedError, [/token_embd\.weight/, /32-value blocks/], "rows of 56");
  // llama-gqa-f32 has D = 64: Q8_0 everywhere; attn_k is quantizeQ8_0 of the permuted rows.
  const d2 = join(FIXTURES, "llama-gqa-f32");
  await convertToGguf(d2, join(tmp, "q8.gguf"), { type: "Q8_0" });
  const q = await GgufFile.open(await openFileSource(join(tmp, "q8.gguf")));
  assert.is(q.value("general.file_type"), 7);
  const st2 = await SafetensorsFile.open(await openFileSource(join(d2, "model.safetensors")));
  const k = await st2.readF32("model.layers.0.self_attn.k_proj.weight");
  assert.equal(Array.from(await q.readBytes("blk.0.attn_k.weight")), Array.from(quantizeQ8_0(permuteRopeRows(k, 32, 64, 2))));
  // --quantize projections: the layers' projections Q4_0, token_embd and output as F16 (what our --quantize keeps float).
  await convertToGguf(d2, join(tmp, "q4p.gguf"), { type: "Q4_0", quantize: "projections" });
  const q4 = await GgufFile.open(await openFileSource(join(tmp, "q4p.gguf")));
  assert.equal(["token_embd.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight", "blk.1.ffn_norm.weight", "output.weight"].map((n) => q4.info(n).type), ["F16", "Q4_0", "Q4_0", "F32", "F16"]);
  const down = await st2.readF32("model.layers.1.mlp.down_proj.weight");
  assert.equal(Array.from(await q4.readBytes("blk.1.ffn_down.weight")), Array.from(quantizeQ4_0(down)));
  await q4.close();
  await assertRejects(() => convertToGguf(join(FIXTURES, "qwen2-bias-tied-f16"), join(tmp, "qw.gguf")), UnsupportedError, [/Qwen2ForCausalLM/], "qwen2");
  await assertRejects(() => convertToGguf(join(FIXTURES, "llama3-scaled-bf16-sharded"), join(tmp, "l3.gguf")), UnsupportedError, [/llama3 RoPE/], "llama3 scaling");
  await st.close();
  await st2.close();
  await g.close();
  await q.close();
});

test("vocabulary: SentencePiece-style BPE → llama (scores, byte pieces), byte-level BPE → gpt2 (merges), WordLevel refused", () => {
  const tj = JSON.parse(readFileSync(join(process.cwd(), "test", "fixtures", "llama2-tokenizer", "tokenizer.json"), "utf8")) as Record<string, unknown>;
  const v = ggufVocab(tj, 32000, "llama2");
  assert.is(v.model, "llama");
  assert.equal(v.tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert.equal(v.types.slice(0, 4), [2, 3, 3, 6]);
  assert.is(v.scores![1000], -1000);
  assert.is(v.merges, null);
  const bl = ggufVocab({ model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2 }, merges: ["a b"] }, pre_tokenizer: { type: "ByteLevel" }, added_tokens: [{ id: 3, content: "<|end|>", special: true }] }, 5, "bl");
  assert.is(bl.model, "gpt2");
  assert.equal(bl.tokens, ["a", "b", "ab", "<|end|>", "[PAD4]"]);
  assert.equal(bl.types, [1, 1, 1, 3, 5]);
  assert.equal(bl.merges, ["a b"]);
  assert.throws(() => ggufVocab({ model: { type: "WordLevel", vocab: {} } }, 10, "wl"), (e: Error) => e instanceof UnsupportedError && /WordLevel/.test(e.message));
  assert.throws(() => ggufVocab(null, 100, "small"), (e: Error) => /259/.test(e.message));
});

test.run();
