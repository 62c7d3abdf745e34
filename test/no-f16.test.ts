// Every f16 data path on a device without shader-f16 (issue 18: Chromium's SwiftShader has none):
// the bundled demo's f16 indexes, f16 KV caches and F16/BF16 checkpoints loaded with dtype "auto"
// run on the browser-like device (test/helpers/gpu.ts: shader-f16 not requested, 256-byte offset
// alignments enforced) through the packed-pairs kernels, and give what the f16 device gives:
// the same retrievals and outputs, the same logits within float rounding, the same golden parity.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { browserLike, gpu } from "./helpers/gpu.js";
import { FIXTURE_ROOT, fixtureNames, readGolden, relL2 } from "./helpers/golden.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import type { DocumentIndex } from "../src/onegen/index.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { loadDemoData } from "../src/demo/data.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEMO_MODEL = join(ROOT, "demo", "model");

test("the browser-like device really lacks shader-f16 and the default one (lavapipe) has it", async () => {
  const web = await browserLike();
  assert.not.ok(web.hasF16, "browser-like device has shader-f16");
  assert.is(web.limits.minStorageBufferOffsetAlignment, 256);
  const def = await gpu();
  // The comparison below is only meaningful when the default device takes the native path.
  assert.ok(def.hasF16, `the default test device '${def.adapter.description}' lacks shader-f16`);
});

async function demo(ctx: GpuContext): Promise<{ model: LoadedDecoder; el: DocumentIndex; mh: DocumentIndex }> {
  const model = await loadDecoder(ctx, DEMO_MODEL, { dtype: "auto" });
  const el = await loadIndex(ctx, join(ROOT, "demo", "index", "el"), model.decoder);
  const mh = await loadIndex(ctx, join(ROOT, "demo", "index", "mhqa"), model.decoder);
  return { model, el, mh };
}

test("the demo's f16 indexes load without shader-f16 (checks included) and search, link and answer exactly as with it", async () => {
  const def = await demo(await gpu());
  const web = await demo(await browserLike());
  try {
    assert.is(web.el.dtype, "f16", "index kept as f16, not converted");
    assert.is(web.el.count, def.el.count);
    // every stored vector as a query: the same top-5 ids, scores equal to float rounding
    const vecs = await def.el.readVectors();
    assert.ok(Buffer.from((await web.el.readVectors()).buffer).equals(Buffer.from(vecs.buffer)), "the same stored vectors");
    for (let r = 0; r < def.el.count; r += 37) {
      const q = vecs.subarray(r * def.el.dim, (r + 1) * def.el.dim);
      const a = await def.el.search(q, 5);
      const b = await web.el.search(q, 5);
      assert.equal(b.map((h) => h.entry), a.map((h) => h.entry), `entry ${r}: top-5 entries`);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]!.score - b[i]!.score) <= 1e-6, `entry ${r} hit ${i}: score ${b[i]!.score} vs ${a[i]!.score}`);
    }
    // end to end: entity linking and multi-hop QA on held-out examples (f16 KV cache on both)
    const data = await loadDemoData(join(ROOT, "demo", "data"), "test");
    for (const s of data.elTest.slice(0, 2)) {
      const a = await runEntityLinking(def.model, def.el, { text: s.text }, { maxNewTokens: 64, copyInput: true });
      const b = await runEntityLinking(web.model, web.el, { text: s.text }, { maxNewTokens: 64, copyInput: true });
      assert.is(b.annotated, a.annotated, `${s.id}: annotated`);
      assert.equal(b.mentions.map((m) => m.entity), a.mentions.map((m) => m.entity), `${s.id}: entities`);
    }
    for (const q of data.mhTest.slice(0, 2)) {
      const a = await runMultiHopQa(def.model, def.mh, { text: q.question }, { maxNewTokens: 256, stopAfterAnswer: true });
      const b = await runMultiHopQa(web.model, web.mh, { text: q.question }, { maxNewTokens: 256, stopAfterAnswer: true });
      assert.equal(b.retrievals.map((x) => x.hits[0]?.id), a.retrievals.map((x) => x.hits[0]?.id), `${q._id}: retrieved documents`);
      assert.is(b.answer, a.answer, `${q._id}: answer`);
    }
  } finally {
    for (const d of [def, web]) {
      d.el.dispose();
      d.mh.dispose();
      d.model.dispose();
    }
  }
});

/** Logits [T, V] of the golden ids through an f16 KV cache: a prefill chunk, then single-token decode steps. */
async function logitsOf(model: LoadedDecoder, ids: number[], chunks: number[]): Promise<Float32Array> {
  const V = model.decoder.vocabSize;
  const session = new Session(model.decoder, model.decoder.createCache(ids.length));
  const logits = new Float32Array(ids.length * V);
  let at = 0;
  try {
    for (const n of chunks) {
      const out = await session.append(ids.slice(at, at + n), { logits: "all" });
      logits.set((await (out.logits as Tensor).read()) as Float32Array, at * V);
      out.logits?.dispose();
      at += n;
    }
  } finally {
    session.dispose();
  }
  return logits;
}

for (const name of fixtureNames()) {
  test(`no shader-f16: ${name} loaded with dtype auto over an f16 KV cache matches the f16 device and the float64 golden`, async () => {
    const golden = await readGolden(name);
    const T = golden.ids.length;
    const chunks = [Math.floor(T / 2), ...Array<number>(T - Math.floor(T / 2)).fill(1)]; // prefill, then decode steps
    const def = await loadDecoder(await gpu(), join(FIXTURE_ROOT, name), { dtype: "auto", noTokenizer: true });
    const web = await loadDecoder(await browserLike(), join(FIXTURE_ROOT, name), { dtype: "auto", noTokenizer: true });
    try {
      const wdt = def.decoder.weights.layers[0]!.q.dtype;
      assert.is(web.decoder.weights.layers[0]!.q.dtype, wdt, "dtype auto picks the same weight dtype without shader-f16");
      assert.is(web.decoder.weights.norm.dtype, def.decoder.weights.norm.dtype);
      const a = await logitsOf(def, golden.ids, chunks);
      const b = await logitsOf(web, golden.ids, chunks);
      const V = golden.vocab;
      // the two devices store identical f16 values and widen them exactly: only f32 summation
      // order may differ (none does today), so far below the golden tolerance
      const between = relL2(b, a, V);
      assert.ok(between <= 1e-5, `${name}: browser-like vs default logits relative L2 ${between.toExponential(2)} > 1e-5`);
      // parity.test.ts's tolerances for an f16 cache: 5e-3 with f16 weights, 1e-3 with f32
      const tol = wdt === "f16" ? 5e-3 : 1e-3;
      const e = relL2(b, golden.logits, V);
      assert.ok(e <= tol, `${name} (weights ${wdt}): browser-like logits vs float64 golden relative L2 ${e.toExponential(2)} > ${tol}`);
      // and it was the packed path that ran (variant names say which; a native f16 variant cannot
      // even be created on this device: the kernel registry refuses it)
      const names = (await browserLike()).kernels.names();
      for (const prefix of ["kv_append_f16p_", "attention_prefill_f16p_", "attention_decode_f16p_", ...(wdt === "f16" ? ["rmsnorm_f16p", "embedding_f16p_"] : [])]) {
        assert.ok(names.some((n) => n.startsWith(prefix)), `no ${prefix}* kernel ran on the browser-like device: ${names.join(", ")}`);
      }
    } finally {
      def.dispose();
      web.dispose();
    }
  });
}

test.run();
