// OneGen in-loop retrieval (generateOnePass: Session.generate with the retrieval hook): the query token's hidden state is
// searched and the best document injected on the GPU, with no host readback in between.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { argmaxRow } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { generateOnePass, type RetrievalGenerateOptions as GenerateOptions, type RetrievalToken as GeneratedToken } from "../src/onegen/loop.js";
import { encodeDocuments } from "../src/onegen/encode.js";
import { DocumentIndex } from "../src/onegen/index.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { Rng } from "../src/util/rng.js";

const DOC_TOKEN = 5;
const QUERY = 9;
const PROMPT = [11, 40, 73, 200, 17];

let setup: Promise<{ m: LoadedDecoder; index: DocumentIndex; docs: { id: string; ids: number[] }[] }> | null = null;
function world() {
  return (setup ??= (async () => {
    const ctx = await gpu();
    const m = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true });
    const rng = new Rng(99);
    const docs = Array.from({ length: 24 }, (_, i) => {
      const n = 3 + rng.int(9);
      const ids = Array.from({ length: n }, () => 20 + rng.int(300));
      return { id: `doc-${i}`, ids: [...ids, DOC_TOKEN] };
    });
    const index = await encodeDocuments(m.decoder, docs, { docTokenId: DOC_TOKEN, dtype: "f32", cacheDtype: "f32" });
    return { m, index, docs };
  })());
}

/** Hidden state (final norm) at the last position of a plain forward over `ids`. */
async function lastHidden(m: LoadedDecoder, ids: number[]): Promise<Float32Array> {
  const s = new Session(m.decoder, m.decoder.createCache(ids.length, "f32"));
  const out = await s.append(ids, { logits: "none", keepHidden: true });
  const h = (await (out.hidden as Tensor).read()) as Float32Array;
  out.hidden?.dispose();
  s.dispose();
  const D = m.config.hiddenSize;
  return h.slice((ids.length - 1) * D, ids.length * D);
}

async function collect(s: Session, opts: GenerateOptions): Promise<{ toks: GeneratedToken[]; finish: string }> {
  const toks: GeneratedToken[] = [];
  const it = generateOnePass(s, opts);
  for (let r = await it.next(); ; r = await it.next()) {
    if (r.done) return { toks, finish: r.value };
    toks.push(r.value);
  }
}

test("in-loop retrieval equals a search over the query token's hidden state from a plain forward", async () => {
  const { m, index } = await world();
  const s = new Session(m.decoder, m.decoder.createCache(64, "f32"));
  await s.append(PROMPT);
  // force the query token right away, then another one later
  const { toks } = await collect(s, {
    maxNewTokens: 6,
    forceAfter: [{ pattern: PROMPT.slice(-1), token: QUERY }],
    retrieval: { index, queryTokenId: QUERY, k: 5 },
    stepsPerRead: 6,
  });
  assert.is(toks[0]!.id, QUERY);
  const r = toks[0]!.retrieval;
  assert.ok(r, "no retrieval event on the query token");
  assert.is(r.position, PROMPT.length);
  const want = await index.search(await lastHidden(m, [...PROMPT, QUERY]), 5);
  assert.equal(r.hits.map((h) => h.id), want.map((h) => h.id));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(r.hits[i]!.score - want[i]!.score) < 1e-4, `score ${i}: ${r.hits[i]!.score} vs ${want[i]!.score}`);
  for (const t of toks.slice(1)) if (t.id !== QUERY) assert.not.ok(t.retrieval, "retrieval on a non-query token");
  s.dispose();
});

test("injection: the best document is prefilled on the GPU and generation continues like a fresh forward", async () => {
  const { m, index } = await world();
  const ctx = m.decoder.ctx;
  const V = m.decoder.vocabSize;
  const prefix = [301, 302];
  const suffix = [303];
  const s = new Session(m.decoder, m.decoder.createCache(128, "f32"));
  await s.append(PROMPT);
  const before = ctx.stats.readbacks;
  const { toks } = await collect(s, {
    maxNewTokens: 8,
    forceAfter: [{ pattern: PROMPT.slice(-1), token: QUERY }],
    retrieval: { index, queryTokenId: QUERY, k: 3, maxRetrievals: 1, inject: { prefix, suffix } },
    stepsPerRead: 8,
  });
  // 8 steps in one batch (the query token, the step that feeds the injection, 6 tokens after it):
  // one readback of the history, which carries the hits of the one retrieval in the hook's record
  // words; then one more step for the 8th token and its readback. Nothing between query and
  // continuation, and no readback of the hits' own.
  assert.is(ctx.stats.readbacks - before, 2, `readbacks: ${ctx.stats.readbacks - before}`);
  assert.is(toks.length, 8);
  const inj = toks[0]!.injected;
  assert.ok(inj && "ids" in inj, `no injection: ${JSON.stringify(inj)}`);
  const best = toks[0]!.retrieval!.hits[0]!;
  assert.is(inj.document, best.id);
  assert.equal(inj.ids, [...prefix, ...Array.from(index.documentTokens(best.id)), ...suffix]);
  // the session's ids are prompt, query, injected text, continuation
  const seq = [...PROMPT, QUERY, ...inj.ids, ...toks.slice(1).map((t) => t.id)];
  assert.equal(s.ids, seq);
  // the continuation equals the greedy argmax of a full forward over the whole sequence
  const f = new Session(m.decoder, m.decoder.createCache(seq.length, "f32"));
  const out = await f.append(seq, { logits: "all" });
  const logits = (await (out.logits as Tensor).read()) as Float32Array;
  f.dispose();
  const start = PROMPT.length + 1 + inj.ids.length;
  for (let j = 1; j < toks.length; j++) assert.is(toks[j]!.id, argmaxRow(logits, start + j - 2, V), `token ${j} after injection`);
  // maxRetrievals 1: a later query token is not searched
  assert.ok(toks.slice(1).every((t) => !t.retrieval));
  // the session continues from there: more tokens, same cache
  const more = await collect(s, { maxNewTokens: 3 });
  const seq2 = [...seq, ...more.toks.map((t) => t.id)];
  const f2 = new Session(m.decoder, m.decoder.createCache(seq2.length, "f32"));
  const l2 = (await ((await f2.append(seq2.slice(0, -1), { logits: "all" })).logits as Tensor).read()) as Float32Array;
  f2.dispose();
  for (let j = 0; j < 3; j++) assert.is(more.toks[j]!.id, argmaxRow(l2, seq.length - 1 + j, V));
  s.dispose();
});

test("an injection that does not fit is refused and ends generation with context-full", async () => {
  const { m, index } = await world();
  const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + 4, "f32"));
  await s.append(PROMPT);
  const { toks, finish } = await collect(s, {
    maxNewTokens: 10,
    forceAfter: [{ pattern: PROMPT.slice(-1), token: QUERY }],
    retrieval: { index, queryTokenId: QUERY, inject: { prefix: [1, 2, 3], suffix: [4] } },
  });
  assert.is(finish, "context-full");
  assert.is(toks[0]!.id, QUERY);
  assert.equal(toks[0]!.injected, { refused: true });
  assert.is(toks.length, 1);
  s.dispose();
});

test("with no query token, the retrieval hook leaves the generated ids as plain decoding's; a hook-free call encodes no retrieval work", async () => {
  const { m, index } = await world();
  const ctx = m.decoder.ctx;
  const N = 6;
  const run = async (retrieval: GenerateOptions["retrieval"]) => {
    const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 40, "f32"));
    await s.append(PROMPT);
    await ctx.sync();
    const d0 = ctx.stats.dispatches;
    const { toks } = await collect(s, { maxNewTokens: N, bannedIds: [QUERY], stepsPerRead: 3, ...(retrieval ? { retrieval } : {}) });
    const d = ctx.stats.dispatches - d0;
    s.dispose();
    return { ids: toks.map((t) => t.id), d, toks };
  };
  const plain = await run(undefined);
  const search = await run({ index, queryTokenId: QUERY, k: 2 });
  const inject = await run({ index, queryTokenId: QUERY, k: 2, inject: { prefix: [1], suffix: [2] } });
  assert.equal(search.ids, plain.ids);
  assert.equal(inject.ids, plain.ids);
  assert.ok([...search.toks, ...inject.toks].every((t) => !t.retrieval && !t.injected));
  // an empty index: plain decoding exactly
  const none = DocumentIndex.create(ctx, index.dim);
  const empty = await run({ index: none, queryTokenId: QUERY });
  none.dispose();
  assert.is(empty.d, plain.d);
  assert.ok(search.d > plain.d && inject.d > search.d, `dispatches: plain ${plain.d}, search ${search.d}, inject ${inject.d}`);
});

test.run();
