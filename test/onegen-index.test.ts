// OneGen document index: encoding, search, incremental add, save/load, refusals, CLI commands.
// Model: the tiny random fixtures (no tokenizer: documents are token ids, the doc token is id 7).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { cp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { browserLike, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { FIXTURE_ROOT } from "./helpers/golden.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import type { Decoder } from "../src/model/decoder.js";
import type { GpuContext } from "../src/gpu/context.js";
import { DocumentIndex, type SearchHit } from "../src/onegen/index.js";
import { loadIndex, saveIndex, type IndexFileWriter } from "../src/onegen/index-files.js";
import { encodeDocuments, packBatches, prepareDocuments, renderDocument, type DocumentInput } from "../src/onegen/encode.js";
import { loadTokenizer } from "../src/tokenizer.js";
import { modelFingerprint } from "../src/onegen/fingerprint.js";
import { cosineTopKReference, TOPK_MAX_K } from "../src/ops/search.js";
import { LoadError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import { openFileSource } from "../src/io/source.js";
import { indexCommand } from "../src/cli/index.js";
import { searchCommand } from "../src/cli/search.js";
import { scratchDir } from "./helpers/scratch.js";

const MODEL = join(FIXTURE_ROOT, "llama-gqa-f32"); // D = 64, V = 384, f32 weights
const OTHER = join(FIXTURE_ROOT, "qwen2-bias-tied-f16"); // D = 64 too
const DOC = 7; // the document-side token
const rng = new Rng(20261124);

// Tolerances on scores. f32 index + f32 KV cache: the packed forward and the plain forward differ
// only in f32 summation order (relative ~1e-6 on hidden states), so 1e-4 has wide margin.
// f16 index: each stored component carries ≤ 2⁻¹¹ relative rounding, so a cosine of unit
// vectors moves by ≤ 2⁻¹¹·Σ|qᵢrᵢ| ≤ 4.9e-4; plus the f16 KV cache's effect on the hidden states
// (relative L2 ~3e-4 on this fixture, parity test): 3e-3.
const TOL_F32 = 1e-4;
const TOL_F16 = 3e-3;

let models: Promise<{ ctx: GpuContext; a: LoadedDecoder }> | null = null;
function model(): Promise<{ ctx: GpuContext; a: LoadedDecoder }> {
  models ??= (async () => {
    const ctx = await gpu();
    return { ctx, a: await loadDecoder(ctx, MODEL) };
  })();
  return models;
}

/** Random documents of ids in [10, V) with 1–3 doc tokens (one always last). */
function makeDocs(n: number, prefix: string, V = 384, minOcc = 1): DocumentInput[] {
  const docs: DocumentInput[] = [];
  for (let i = 0; i < n; i++) {
    const len = 6 + rng.int(20);
    const ids = Array.from({ length: len }, () => 10 + rng.int(V - 10));
    const occ = minOcc + rng.int(3);
    ids[len - 1] = DOC;
    for (let o = 1; o < occ; o++) ids[1 + rng.int(len - 2)] = DOC;
    docs.push({ id: `${prefix}${i}`, ids });
  }
  return docs;
}

/** Final-norm hidden states [T, D] of one plain forward (a fresh cache, positions 0..T−1). */
async function plainHidden(dec: Decoder, ids: readonly number[], cacheDtype: "f32" | "f16"): Promise<Float32Array> {
  const s = new Session(dec, dec.createCache(ids.length, cacheDtype));
  const out = await s.append(ids, { logits: "none", keepHidden: true });
  const h = await out.hidden!.readF32();
  out.hidden!.dispose();
  s.dispose();
  return h;
}

interface RefEntry {
  id: string;
  fragment: number;
  vec: Float64Array; // unit
}

async function referenceEntries(dec: Decoder, docs: DocumentInput[], cacheDtype: "f32" | "f16", skip = 0): Promise<RefEntry[]> {
  const D = dec.hiddenSize;
  const out: RefEntry[] = [];
  for (const d of docs) {
    const h = await plainHidden(dec, d.ids!, cacheDtype);
    let f = 0;
    let seen = 0;
    d.ids!.forEach((t, p) => {
      if (t !== DOC || seen++ < skip) return;
      const v = Float64Array.from(h.subarray(p * D, (p + 1) * D));
      const n = Math.hypot(...v);
      for (let i = 0; i < D; i++) v[i]! /= n;
      out.push({ id: d.id, fragment: f++, vec: v });
    });
  }
  return out;
}

/** Brute-force cosine (float64), best first, ties → lower entry. */
function bruteForce(entries: RefEntry[], q: Float32Array): { id: string; fragment: number; score: number }[] {
  const qn = Math.hypot(...q);
  return entries
    .map((e, i) => ({ i, id: e.id, fragment: e.fragment, score: e.vec.reduce((s, x, j) => s + x * q[j]!, 0) / qn }))
    .sort((a, b) => b.score - a.score || a.i - b.i);
}

/**
 * Hits equal the reference: same length, scores within tol, and the same (id, fragment) at each
 * rank, except among reference entries whose scores lie within 2·tol of each other (a near-tie
 * may legitimately order either way); those must still be a permutation of each other.
 */
function assertHits(got: SearchHit[], want: { id: string; fragment: number; score: number }[], k: number, tol: number, what: string): void {
  assert.is(got.length, Math.min(k, want.length), `${what}: hit count`);
  const key = (h: { id: string; fragment: number }) => `${h.id}#${h.fragment}`;
  for (let j = 0; j < got.length; j++) {
    const g = got[j]!;
    const w = want[j]!;
    if (Math.abs(g.score - w.score) > tol) assert.unreachable(`${what}: rank ${j}: score ${g.score}, want ${w.score} (tol ${tol})`);
    if (key(g) !== key(w)) {
      const near = want.filter((x) => Math.abs(x.score - w.score) <= 2 * tol).map(key);
      if (!near.includes(key(g)) || near.length < 2) assert.unreachable(`${what}: rank ${j}: got ${key(g)} (${g.score}), want ${key(w)} (${w.score})`);
    }
  }
}

async function queryVector(dec: Decoder, ids: number[], cacheDtype: "f32" | "f16"): Promise<Float32Array> {
  const h = await plainHidden(dec, ids, cacheDtype);
  const D = dec.hiddenSize;
  return h.slice((ids.length - 1) * D, ids.length * D);
}

test("encode + search equals brute-force cosine over plain-forward hidden states (f32 and f16 index)", async () => {
  const { a } = await model();
  const dec = a.decoder;
  const docs = makeDocs(10, "d");
  for (const [dtype, cacheDtype, tol] of [["f32", "f32", TOL_F32], ["f16", "f16", TOL_F16]] as const) {
    let batches = 0;
    const index = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype, cacheDtype, batchTokens: 64, onProgress: (p) => (batches = p.batchesTotal) });
    assert.ok(batches > 1 && batches < docs.length, `several documents per forward (${batches} batches)`);
    const ref = await referenceEntries(dec, docs, cacheDtype);
    assert.is(index.count, ref.length, "one entry per doc-token occurrence");
    for (let qn = 0; qn < 3; qn++) {
      const q = await queryVector(dec, Array.from({ length: 5 + qn * 4 }, () => 10 + rng.int(370)), cacheDtype);
      const want = bruteForce(ref, q);
      for (const k of [1, 8, ref.length]) assertHits(await index.search(q, k), want, k, tol, `${dtype} query ${qn} k=${k}`);
    }
    // the stored vectors are the reference's unit vectors
    const got = await index.readVectors();
    const flat = new Float64Array(ref.length * dec.hiddenSize);
    ref.forEach((e, i) => flat.set(e.vec, i * dec.hiddenSize));
    assertClose(got, flat, { atol: dtype === "f32" ? 2e-5 : 2e-3, rtol: 0 }, `${dtype} stored vectors`);
    index.dispose();
  }
});

test("packed-batch encoding equals one-document-per-forward encoding; packing is greedy in order", async () => {
  const { a } = await model();
  const dec = a.decoder;
  const docs = makeDocs(8, "p");
  const packed = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype: "f32", cacheDtype: "f32", batchTokens: 80 });
  const single = DocumentIndex.create(dec.ctx, dec.hiddenSize, { dtype: "f32", capacity: 1, tokenCapacity: 1, documentCapacity: 1 });
  for (const d of docs) await encodeDocuments(dec, [d], { docTokenId: DOC, cacheDtype: "f32", index: single });
  assert.is(single.count, packed.count);
  assert.equal(single.documents, packed.documents, "same documents, fragments and token offsets");
  assertClose(await single.readVectors(), await packed.readVectors(), { atol: 1e-5, rtol: 0 }, "vectors");
  assert.equal(packBatches([5, 5, 5, 9, 1], 10), [[0, 1], [2], [3, 4]]);
  packed.dispose();
  single.dispose();
});

test("skip-first drops the first n occurrences per document; a document left with none is an error naming it", async () => {
  const { a } = await model();
  const dec = a.decoder;
  const docs = makeDocs(5, "s", 384, 2); // 2–4 occurrences each
  const all = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype: "f32", cacheDtype: "f32" });
  const skipped = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype: "f32", cacheDtype: "f32", skipFirst: 1 });
  assert.is(skipped.count, all.count - docs.length);
  assert.is(skipped.skipFirst, 1);
  const va = await all.readVectors();
  const vs = await skipped.readVectors();
  const D = dec.hiddenSize;
  skipped.documents.forEach((d, i) => {
    const full = all.documents[i]!;
    assert.is(d.fragments, full.fragments - 1, `document ${d.id} fragments`);
    // fragment f of the skipped index is occurrence f + 1, i.e. fragment f + 1 of the full one
    assertClose(vs.subarray(d.firstEntry * D, (d.firstEntry + d.fragments) * D), va.subarray((full.firstEntry + 1) * D, (full.firstEntry + full.fragments) * D), { atol: 1e-6, rtol: 0 }, `document ${d.id}`);
  });
  const one = { id: "lonely", ids: [11, 12, DOC] };
  await assertRejects(() => encodeDocuments(dec, [docs[0]!, one], { docTokenId: DOC, skipFirst: 1 }), UsageError, [/lonely/, /skipped/], "nothing left to index");
  await assertRejects(() => encodeDocuments(dec, [{ id: "none", ids: [11, 12] }], { docTokenId: DOC }), UsageError, [/'none'/, /0 occurrence/], "no doc token");
  await assertRejects(() => encodeDocuments(dec, [{ id: "long", ids: new Array(50).fill(DOC) }], { docTokenId: DOC, batchTokens: 40 }), UsageError, [/'long'/, /50 tokens/, /40 tokens per batch/], "too long for a batch");
  await assertRejects(() => encodeDocuments(dec, [{ id: "ctx", ids: new Array(dec.config.maxPositionEmbeddings + 1).fill(DOC) }], { docTokenId: DOC, batchTokens: 1 << 20 }), UsageError, [/'ctx'/, /context/], "longer than the context");
  await assertRejects(() => encodeDocuments(dec, [{ id: "oov", ids: [1000, DOC] }], { docTokenId: DOC }), UsageError, [/'oov'/, /1000/], "out-of-vocabulary id");
  await assertRejects(() => encodeDocuments(dec, [{ id: "x", ids: [DOC] }, { id: "x", ids: [DOC] }], { docTokenId: DOC }), UsageError, [/'x'/, /twice/], "duplicate id");
  await assertRejects(() => encodeDocuments(dec, [{ id: "t", text: "hello" }], { docTokenId: DOC }), UsageError, [/'t'/, /tokenizer/], "text without a tokenizer");
  all.dispose();
  skipped.dispose();
});

test("incremental add (forced growth from capacity 1) equals a one-shot build; GPU token and table buffers", async () => {
  const { a } = await model();
  const dec = a.decoder;
  const docs = makeDocs(9, "i");
  const oneShot = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype: "f32", cacheDtype: "f32" });
  const inc = DocumentIndex.create(dec.ctx, dec.hiddenSize, { dtype: "f32", capacity: 1, tokenCapacity: 1, documentCapacity: 1 });
  await encodeDocuments(dec, docs.slice(0, 2), { docTokenId: DOC, cacheDtype: "f32", index: inc });
  await encodeDocuments(dec, docs.slice(2, 7), { docTokenId: DOC, cacheDtype: "f32", index: inc, batchTokens: 30 });
  await encodeDocuments(dec, docs.slice(7), { docTokenId: DOC, cacheDtype: "f32", index: inc });
  assert.ok(inc.capacity >= inc.count && inc.count === oneShot.count);
  assertClose(await inc.readVectors(), await oneShot.readVectors(), { atol: 1e-5, rtol: 0 }, "vectors");
  const allIds = docs.flatMap((d) => d.ids!);
  assertEqualArrays((await inc.tokens.read()).subarray(0, allIds.length), allIds, "GPU token buffer");
  const dt = await inc.documentTable.read();
  const et = await inc.entryTable.read();
  inc.documents.forEach((d, i) => {
    assertEqualArrays(dt.subarray(2 * i, 2 * i + 2), [d.tokenOffset, d.tokenCount], `document table ${i}`);
    assertEqualArrays(inc.documentTokens(d.id), docs[i]!.ids!, `host tokens ${d.id}`);
    for (let f = 0; f < d.fragments; f++) assertEqualArrays(et.subarray(2 * (d.firstEntry + f), 2 * (d.firstEntry + f) + 2), [i, f], `entry table ${d.id}#${f}`);
  });
  await assertRejects(() => encodeDocuments(dec, [docs[0]!], { docTokenId: DOC, index: inc }), UsageError, [/'i0'/, /twice/], "re-adding an id");
  await assertRejects(() => encodeDocuments(dec, [{ id: "z", ids: [8] }], { docTokenId: 8, index: inc }), UsageError, [/doc token id 7/], "another doc token");
  assert.is(inc.documentCount, docs.length, "rejected calls leave the index unchanged");
  oneShot.dispose();
  inc.dispose();
});

test("empty index → no hits; k > entries → every entry; k over the kernel limit → UsageError", async () => {
  const ctx = await gpu();
  const D = 24;
  const ix = DocumentIndex.create(ctx, D);
  assert.equal(await ix.search(rng.fillNormal(D), 5), [], "empty index");
  const v = rng.fillNormal(3 * D);
  await ix.addVectors("three", v);
  const hits = await ix.search(v.slice(D, 2 * D), 10);
  assert.is(hits.length, 3, "k > count returns count hits");
  assert.is(hits[0]!.fragment, 1);
  assert.ok(Math.abs(hits[0]!.score - 1) < 2e-3, `self-similarity ${hits[0]!.score}`);
  await assertRejects(() => ix.search(v.slice(0, D), TOPK_MAX_K + 1), UsageError, [/exceeds/], "k too large");
  await assertRejects(() => ix.search(v.slice(0, D - 1), 1), Error, [/23 values, expected 24/], "query length");
  ix.dispose();
});

test("1,000,000 entries under a forced 1 MiB storage binding limit: search equals a CPU brute force", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 1 << 20 });
  const D = 16, N = 1_000_000, k = 10;
  const ix = DocumentIndex.create(ctx, D, { dtype: "f16" });
  const docs = 4;
  const input = rng.fillNormal(N * D);
  for (let d = 0; d < docs; d++) await ix.addVectors(`big${d}`, input.subarray((d * N * D) / docs, ((d + 1) * N * D) / docs));
  assert.is(ix.count, N);
  assert.ok(ix.vectors.byteLength > 16 * ctx.limits.maxStorageBufferBindingSize, "the index spans many bindings");
  const stored = await ix.readVectors();
  // the stored rows are the inputs normalized (f16 rounding), spot-checked
  for (const r of [0, 1, 262_143, 262_144, 777_777, N - 1]) {
    const row = input.subarray(r * D, (r + 1) * D);
    const n = Math.hypot(...row);
    assertClose(stored.subarray(r * D, (r + 1) * D), Array.from(row, (x) => x / n), { atol: 1e-3, rtol: 0 }, `row ${r}`);
  }
  for (let qn = 0; qn < 2; qn++) {
    const q = rng.fillNormal(D);
    const want = cosineTopKReference(q, stored, N, D, k);
    const hits = await ix.search(q, k);
    assertEqualArrays(hits.map((h) => h.entry), want.ids, `query ${qn}: entries`);
    assertClose(hits.map((h) => h.score), want.scores, { atol: 1e-5, rtol: 0 }, `query ${qn}: scores`);
    for (const h of hits) {
      assert.is(h.id, `big${Math.floor(h.entry / (N / docs))}`);
      assert.is(h.fragment, h.entry % (N / docs));
    }
  }
  ix.dispose();
});

async function tmp(): Promise<string> {
  return scratchDir("index-test");
}

test("save/load round trip (f16 and f32, replacing an existing index, no leftovers); empty index round trip", async () => {
  const { ctx, a } = await model();
  const dec = a.decoder;
  const docs = makeDocs(6, "r");
  const root = await tmp();
  for (const dtype of ["f16", "f32"] as const) {
    const ix = await encodeDocuments(dec, docs, { docTokenId: DOC, dtype, skipFirst: 0 });
    const dir = join(root, `ix-${dtype}`);
    await saveIndex(ix, dir);
    await saveIndex(ix, dir); // replaces the existing index
    assert.equal((await readdir(root)).filter((n) => n.startsWith(".")), [], "no temporary or old directories left");
    const back = await loadIndex(ctx, dir, dec);
    assert.is(back.dtype, dtype);
    assert.equal(back.documents, ix.documents);
    assert.equal(back.docToken, { id: DOC, name: null });
    assert.equal(back.model, ix.model);
    assertEqualArrays(await back.readVectors(), await ix.readVectors(), "vectors bit-exact");
    assertEqualArrays((await back.tokens.read()).subarray(0, back.totalTokens), (await ix.tokens.read()).subarray(0, ix.totalTokens), "tokens");
    assertEqualArrays((await back.entryTable.read()).subarray(0, 2 * back.count), (await ix.entryTable.read()).subarray(0, 2 * ix.count), "entry table");
    const q = rng.fillNormal(dec.hiddenSize);
    assert.equal(await back.search(q, 5), await ix.search(q, 5), "same hits");
    // the loaded index keeps growing
    await encodeDocuments(dec, makeDocs(2, `more-${dtype}-`), { docTokenId: DOC, index: back });
    assert.is(back.documentCount, docs.length + 2);
    const manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as Record<string, unknown>;
    assert.is(manifest.count, ix.count);
    assert.match(String((manifest.model as Record<string, unknown>).fingerprint), /^sha256:[0-9a-f]{64}$/);
    ix.dispose();
    back.dispose();
  }
  const empty = DocumentIndex.create(ctx, 64, { model: await modelFingerprint(dec) });
  await saveIndex(empty, join(root, "empty"));
  const e2 = await loadIndex(ctx, join(root, "empty"), dec);
  assert.is(e2.count, 0);
  assert.equal(await e2.search(rng.fillNormal(64), 3), []);
  await rm(root, { recursive: true, force: true });
});

test("without shader-f16 (browser-like device): encoding writes the same f16 index, and an f16 index saved on either device loads and searches on the other", async () => {
  const { ctx, a } = await model();
  const web = await browserLike();
  assert.not.ok(web.hasF16);
  const w = await loadDecoder(web, MODEL);
  const root = await tmp();
  try {
    const docs = makeDocs(9, "nf"); // odd hidden sizes are covered by l2norm.test.ts; here the real encode path
    const ix = await encodeDocuments(a.decoder, docs, { docTokenId: DOC, dtype: "f16", skipFirst: 0 });
    const iw = await encodeDocuments(w.decoder, docs, { docTokenId: DOC, dtype: "f16", skipFirst: 0 });
    assert.is(iw.dtype, "f16");
    assert.is(iw.count, ix.count);
    // the same forward on both devices, rounded once to f16 (packed pairs written with atomics there)
    assertClose(await iw.readVectors(), await ix.readVectors(), { atol: 2 ** -11, rtol: 0 }, "vectors encoded without shader-f16");
    await saveIndex(ix, join(root, "from-default"));
    await saveIndex(iw, join(root, "from-web"));
    const onWeb = await loadIndex(web, join(root, "from-default"), w.decoder); // norm and checksum checks included
    const onDefault = await loadIndex(ctx, join(root, "from-web"), a.decoder);
    assertEqualArrays(await onWeb.readVectors(), await ix.readVectors(), "f16 index loaded without shader-f16: bit-exact");
    for (let qn = 0; qn < 4; qn++) {
      const q = rng.fillNormal(a.decoder.hiddenSize);
      const want = await ix.search(q, 6);
      const got = await onWeb.search(q, 6);
      assert.equal(got.map((h) => h.entry), want.map((h) => h.entry), `query ${qn}: same entries without shader-f16`);
      got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i]!.score) <= 1e-6, `query ${qn} hit ${i}: score ${h.score} vs ${want[i]!.score}`));
      assert.equal((await onDefault.search(q, 6)).map((h) => h.entry), (await iw.search(q, 6)).map((h) => h.entry), `query ${qn}: web-built index on the default device`);
    }
    for (const x of [ix, iw, onWeb, onDefault]) x.dispose();
  } finally {
    w.dispose();
    await rm(root, { recursive: true, force: true });
  }
});

test("loading refuses another model (other fixture of the same size, modified config), a truncated or corrupt file", async () => {
  const { ctx, a } = await model();
  const dec = a.decoder;
  const root = await tmp();
  const dir = join(root, "ix");
  const ix = await encodeDocuments(dec, makeDocs(4, "m"), { docTokenId: DOC });
  await saveIndex(ix, dir);
  // the fingerprint does not depend on the dtype the same checkpoint is loaded in
  const asF16 = await loadDecoder(ctx, MODEL, { dtype: "f16" });
  assert.is((await modelFingerprint(asF16.decoder)).fingerprint, ix.model!.fingerprint);
  (await loadIndex(ctx, dir, asF16.decoder)).dispose();
  asF16.dispose();
  const other = await loadDecoder(ctx, OTHER);
  assert.is(other.decoder.hiddenSize, dec.hiddenSize);
  await assertRejects(() => loadIndex(ctx, dir, other.decoder), LoadError, [/different model/, /sha256:/], "other fixture");
  other.dispose();
  const modDir = join(root, "modified");
  await cp(MODEL, modDir, { recursive: true });
  const cfg = JSON.parse(await readFile(join(modDir, "config.json"), "utf8")) as Record<string, unknown>;
  cfg.rms_norm_eps = 1e-6; // was 1e-5
  await writeFile(join(modDir, "config.json"), JSON.stringify(cfg));
  const mod = await loadDecoder(ctx, modDir);
  await assertRejects(() => loadIndex(ctx, dir, mod.decoder), LoadError, [/different model/], "modified config");
  mod.dispose();
  // truncated vectors file
  const cut = join(root, "cut");
  await cp(dir, cut, { recursive: true });
  const vf = join(cut, "vectors.safetensors");
  await truncate(vf, (await stat(vf)).size - 10);
  await assertRejects(() => loadIndex(ctx, cut, dec), LoadError, [/vectors\.safetensors/, /truncated|past the end/], "truncated");
  // one flipped byte inside the vectors → checksum
  const flip = join(root, "flip");
  await cp(dir, flip, { recursive: true });
  const bytes = await readFile(join(flip, "vectors.safetensors"));
  const sf = await SafetensorsFile.open(await openFileSource(join(flip, "vectors.safetensors")));
  const at = sf.header.dataStart + sf.info("vectors").begin + 3; // inside `vectors`
  await sf.close();
  bytes[at]! ^= 0x10;
  await writeFile(join(flip, "vectors.safetensors"), bytes);
  await assertRejects(() => loadIndex(ctx, flip, dec), LoadError, [/corrupt/], "flipped byte");
  // manifest disagreeing with the tensors
  const bad = join(root, "bad");
  await cp(dir, bad, { recursive: true });
  const m = JSON.parse(await readFile(join(bad, "manifest.json"), "utf8")) as { count: number; documents: { fragments: number }[] };
  m.count += 1;
  m.documents[0]!.fragments += 1;
  for (const d of m.documents.slice(1)) (d as unknown as { firstEntry: number }).firstEntry += 1;
  await writeFile(join(bad, "manifest.json"), JSON.stringify(m));
  await assertRejects(() => loadIndex(ctx, bad, dec), LoadError, [/vectors/, /manifest says/], "manifest vs shapes");
  await assertRejects(() => loadIndex(ctx, join(root, "missing"), dec), LoadError, [/does not exist/], "missing directory");
  ix.dispose();
  await rm(root, { recursive: true, force: true });
});

test("atomic save: a writer failing mid-file leaves the previous index intact and no temporary files", async () => {
  const { ctx, a } = await model();
  const dec = a.decoder;
  const root = await tmp();
  const dir = join(root, "ix");
  const good = await encodeDocuments(dec, makeDocs(3, "g"), { docTokenId: DOC });
  await saveIndex(good, dir);
  const bigger = await encodeDocuments(dec, makeDocs(7, "b"), { docTokenId: DOC });
  let written = 0;
  const failing = (limit: number) => async (path: string): Promise<IndexFileWriter> => {
    const { open } = await import("node:fs/promises");
    const fh = await open(path, "wx");
    return {
      write: async (b) => {
        if (written + b.byteLength > limit) {
          await fh.write(b.subarray(0, limit - written)); // a partial write, then the failure
          throw new Error("injected write failure");
        }
        written += b.byteLength;
        await fh.write(b);
      },
      sync: () => fh.sync(),
      close: () => fh.close(),
    };
  };
  const size = (await stat(join(dir, "vectors.safetensors"))).size;
  for (const limit of [100, Math.floor(size * 0.8)]) { // in the header; inside the tensor data
    written = 0;
    await assertRejects(() => saveIndex(bigger, dir, { openWriter: failing(limit) }), Error, [/injected/], `failure after ${limit} bytes`);
    assert.equal((await readdir(root)).sort(), ["ix"], "no temporary directory left");
    const back = await loadIndex(ctx, dir, dec);
    assert.equal(back.documents, good.documents, "the previous index is intact");
    back.dispose();
  }
  // a failure on a first save leaves nothing behind
  written = 0;
  await assertRejects(() => saveIndex(good, join(root, "fresh"), { openWriter: failing(64) }), Error, [/injected/], "first save");
  assert.equal((await readdir(root)).sort(), ["ix"]);
  // a non-index directory is never replaced
  await writeFile(join(root, "notes.txt"), "keep me");
  await assertRejects(() => saveIndex(good, root), UsageError, [/refusing to replace/], "non-index directory");
  good.dispose();
  bigger.dispose();
  await rm(root, { recursive: true, force: true });
});

async function captureStdout(fn: () => Promise<number>): Promise<{ rc: number; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  let out = "";
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return { rc: await fn(), out };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

test("CLI: onegen index (JSONL of ids, #ID doc token) then onegen search --json equals the API; bad lines name the line", async () => {
  const { ctx, a } = await model();
  const root = await tmp();
  const docs = makeDocs(6, "c");
  const jsonl = join(root, "docs.jsonl");
  await writeFile(jsonl, docs.map((d) => JSON.stringify({ id: d.id, ids: d.ids })).join("\n") + "\n\n");
  const out = join(root, "ix");
  const built = await captureStdout(() => indexCommand(["--model", MODEL, "--docs", jsonl, "--out", out, "--doc-token", `#${DOC}`, "--batch-tokens", "64", "--quiet"]));
  assert.is(built.rc, 0);
  const qids = [12, 40, 99, 7, 250];
  const res = await captureStdout(() => searchCommand(["--model", MODEL, "--index", out, "--ids", qids.join(","), "--k", "4", "--json", "--quiet"]));
  assert.is(res.rc, 0);
  const hits = JSON.parse(res.out) as { id: string; fragment: number; score: number }[];
  assert.is(hits.length, 4);
  // the same through the API: load the saved index, query = last position of a plain forward
  const ix = await loadIndex(ctx, out, a.decoder);
  const q = await queryVector(a.decoder, qids, ctx.hasF16 ? "f16" : "f32");
  const want = await ix.search(q, 4);
  assert.equal(hits.map((h) => `${h.id}#${h.fragment}`), want.map((h) => `${h.id}#${h.fragment}`));
  assertClose(hits.map((h) => h.score), want.map((h) => h.score), { atol: 1e-6, rtol: 0 }, "CLI scores");
  // k larger than the index prints every entry
  const all = await captureStdout(() => searchCommand(["--model", MODEL, "--index", out, "--ids", "3,4", "--k", "500", "--json", "--quiet"]));
  assert.is((JSON.parse(all.out) as unknown[]).length, ix.count);
  ix.dispose();
  // bad input: the line number is named
  await writeFile(jsonl, `${JSON.stringify({ id: "a", ids: [1, DOC] })}\n${JSON.stringify({ id: "b", ids: [1, DOC] })}\n{"id": "c", "ids": [1, -2]}\n`);
  await assertRejects(() => indexCommand(["--model", MODEL, "--docs", jsonl, "--out", join(root, "x"), "--quiet"]), LoadError, [/docs\.jsonl:3/, /ids/], "bad line 3");
  await writeFile(jsonl, `{"id": "a", "ids": [1, 7]}\nnot json\n`);
  await assertRejects(() => indexCommand(["--model", MODEL, "--docs", jsonl, "--out", join(root, "x"), "--quiet"]), LoadError, [/docs\.jsonl:2/, /JSON/], "bad line 2");
  await writeFile(jsonl, `{"id": "a", "ids": [1, 7]}\n`);
  await assertRejects(() => indexCommand(["--model", MODEL, "--docs", jsonl, "--out", join(root, "x"), "--quiet"]), UsageError, [/\[SE\]/, /#<id>/], "named token without a tokenizer");
  await rm(root, { recursive: true, force: true });
});

test("text documents: rendered with the template, tokenized, doc token found (real Llama-2 tokenizer + OneGen tokens)", async () => {
  const tok = await loadTokenizer("test/fixtures/llama2-tokenizer", { addedTokens: ["[_CONTINUE_]", "[SE]", "[LK]"] });
  const SE = tok.requireTokenId("[SE]");
  const docs: DocumentInput[] = [
    { id: "paris", text: "Paris is the capital of France." },
    { id: "inline", text: "Rome[SE] is in Italy." },
  ];
  const p = prepareDocuments(docs, { docTokenId: SE, tokenizer: tok }, tok.vocabSize, 1000, 4096);
  assert.equal(p[0]!.ids, tok.encode("Paris is the capital of France.[SE]"));
  assert.equal(p[0]!.positions, [p[0]!.ids.length - 1], "the appended [SE] is the last token");
  assert.is(p[1]!.ids.filter((x) => x === SE).length, 1, "no second [SE] when the text has one");
  const twice = prepareDocuments(docs.slice(0, 1), { docTokenId: SE, tokenizer: tok, template: "{text}{doc_token} more{doc_token}", skipFirst: 1 }, tok.vocabSize, 1000, 4096);
  assert.is(twice[0]!.positions.length, 1, "two occurrences, the first skipped");
  assert.is(twice[0]!.ids[twice[0]!.positions[0]!], SE);
  assert.throws(() => prepareDocuments(docs.slice(0, 1), { docTokenId: SE, tokenizer: tok, template: "{text}" }, tok.vocabSize, 1000, 4096), /'paris'.*0 occurrence/);
});

test("templates: default appends the doc token unless present; string and function templates", () => {
  assert.is(renderDocument("Paris is a city.", "[SE]"), "Paris is a city.[SE]");
  assert.is(renderDocument("a [SE] b", "[SE]"), "a [SE] b");
  assert.is(renderDocument("x", "[D]", "<doc>{text}</doc>{doc_token}{doc_token}"), "<doc>x</doc>[D][D]");
  assert.is(renderDocument("x", "[D]", (t, d) => d + t), "[D]x");
});

test.run();
