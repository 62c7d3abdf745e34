// OneGen tasks (src/onegen/stream.ts, entity-linking.ts, multihop-qa.ts, rerank.ts, parse-output.ts)
// and the two-pass baseline (src/onegen/baseline.ts) on the tiny random fixture (untrained: these
// tests check mechanics, never answer quality). No tokenizer
// there, so tokens are ids: doc token 7, query token 9, [_CONTINUE_] 10, markers 300-306.
// The model is steered with extra forcing rules where a test needs an annotated mention or a
// second query token. Text-side pieces (mention spans, answers) use the real Llama-2 tokenizer.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { fixtureBlob, fixtureDir, modelFixture } from "./helpers/fixtures.js";
import { filesDir } from "../src/io/source.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { encodeDocuments } from "../src/onegen/encode.js";
import { DocumentIndex } from "../src/onegen/index.js";
import { cosineTopKReference } from "../src/ops/search.js";
import { Rng } from "../src/util/rng.js";
import { UsageError } from "../src/errors.js";
import { loadTokenizer, type Tokenizer } from "../src/tokenizer.js";
import { markerIdsOf } from "../src/onegen/token-names.js";
import type { EntityLinkingOptions, MultiHopOptions, TaskEvent, TaskResult } from "../src/onegen/protocol.js";
import { streamRun } from "../src/onegen/stream.js";
import { annotatedMentions, extractAnswer, extractAnswerIds, mapMentionsToInput } from "../src/onegen/parse-output.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import { rerank } from "../src/onegen/rerank.js";
import { checkTrace } from "../src/onegen/trace.js";

const DOC = 7;
const Q = 9; // [LK] / [Question Representation]
const CONT = 10; // [_CONTINUE_]
const OPEN = [300];
const CLOSE = [301, 302];
const PRE = [303];
const SUF = [304];
const ANS_OPEN = [305];
const ANS_CLOSE = [306];
// Scores: f32 index and f32 KV cache; the decode-path and prefill-path hidden states differ only
// in f32 summation order (see test/onegen-index.test.ts), so 1e-4 has a wide margin.
const TOL = 1e-4;

let setup: Promise<{ m: LoadedDecoder; index: DocumentIndex; vectors: Float32Array }> | null = null;
function world() {
  return (setup ??= (async () => {
    const ctx = await gpu();
    const m = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true });
    const rng = new Rng(7011);
    const docs = Array.from({ length: 12 }, (_, i) => {
      const ids = Array.from({ length: 3 + rng.int(6) }, () => 20 + rng.int(260));
      return { id: `doc-${i}`, ids: [...ids, DOC] };
    });
    const index = await encodeDocuments(m.decoder, docs, { docTokenId: DOC, dtype: "f32", cacheDtype: "f32" });
    return { m, index, vectors: await index.readVectors() };
  })());
}

/** Final-norm hidden state at the last position of a plain forward over `ids` (as `onegen forward`). */
async function lastHidden(m: LoadedDecoder, ids: readonly number[]): Promise<Float32Array> {
  const s = new Session(m.decoder, m.decoder.createCache(ids.length, "f32"));
  const out = await s.append(ids, { logits: "none", keepHidden: true });
  const h = (await (out.hidden as Tensor).read()) as Float32Array;
  out.hidden?.dispose();
  s.dispose();
  const D = m.config.hiddenSize;
  return h.slice((ids.length - 1) * D, ids.length * D);
}

/** Every retrieval equals a brute-force CPU cosine over the hidden state of the prefix ending at its position. */
async function checkRetrievalsBruteForce(m: LoadedDecoder, index: DocumentIndex, vectors: Float32Array, r: TaskResult, k: number, query = Q): Promise<void> {
  for (const ret of r.retrievals) {
    assert.is(r.ids[ret.position], query, `ids[${ret.position}] is the query token`);
    const h = await lastHidden(m, r.ids.slice(0, ret.position + 1));
    const kk = Math.min(k, index.count);
    const want = cosineTopKReference(h, vectors, index.count, index.dim, kk);
    assert.equal(ret.hits.map((x) => x.entry), Array.from(want.ids), `hits at ${ret.position}`);
    ret.hits.forEach((x, j) => {
      assert.ok(Math.abs(x.score - want.scores[j]!) < TOL, `score ${j} at ${ret.position}: ${x.score} vs ${want.scores[j]}`);
      const e = index.entry(x.entry);
      assert.is(x.id, e.id);
      assert.is(x.fragment, e.fragment);
    });
  }
}

function sameRun(a: TaskResult, b: TaskResult, what: string): void {
  assert.equal(a.ids, b.ids, `${what}: ids`);
  assert.equal(a.trace.segments, b.trace.segments, `${what}: segments`);
  assert.is(a.finish, b.finish, `${what}: finish`);
  assert.equal(a.retrievals.map((r) => [r.position, r.source, r.hits.map((h) => h.id + "/" + h.fragment)]), b.retrievals.map((r) => [r.position, r.source, r.hits.map((h) => h.id + "/" + h.fragment)]), `${what}: hits`);
  a.retrievals.forEach((r, i) => r.hits.forEach((h, j) => assert.ok(Math.abs(h.score - b.retrievals[i]!.hits[j]!.score) < TOL, `${what}: score ${i}/${j}: ${h.score} vs ${b.retrievals[i]!.hits[j]!.score}`)));
  assert.equal(a.injections, b.injections, `${what}: injections`);
}

const PROMPT = [11, 40, Q, 73, 200, 17]; // holds a query token (prompt retrieval, no injection)
// steer the untrained model into one annotated mention: <MENTION> 50 51 </MENTION> [LK]
const MENTION_RULES = [
  { pattern: [17], token: OPEN[0]! },
  { pattern: [...OPEN], token: 50 },
  { pattern: [...OPEN, 50], token: 51 },
  { pattern: [50, 51], token: CLOSE[0]! },
  { pattern: [51, CLOSE[0]!], token: CLOSE[1]! },
  { pattern: [...CLOSE], token: Q },
];
const EL: EntityLinkingOptions = { queryToken: Q, continueToken: CONT, mentionOpen: OPEN, mentionClose: CLOSE, cacheDtype: "f32", maxNewTokens: 12, k: 3, forceAfter: MENTION_RULES };

test("entity linking: the forcing rule fires after </MENTION>[LK]; trace consistent; retrievals equal a brute-force search; span in the input ids", async () => {
  const { m, index, vectors } = await world();
  const events: TaskEvent[] = [];
  const input = [40, 50, 51, 60];
  const r = await runEntityLinking(m, index, { ids: input }, { ...EL, idsTemplate: { before: [11, Q], after: [17] }, onEvent: (e) => events.push(e) });
  const P = 2 + input.length + 1;
  assert.equal(r.promptIds, [11, Q, ...input, 17]);
  assert.equal(r.ids.slice(P, P + 7), [...OPEN, 50, 51, ...CLOSE, Q, CONT], "mention, [LK], then the forced [_CONTINUE_]");
  assert.is(r.ids.length, P + 12);
  assert.equal(checkTrace(r.trace, Q), []);
  assert.equal(r.trace.ids, r.ids);
  assert.equal(r.trace.segments[0], { kind: "prompt", start: 0, end: P });
  assert.equal(r.trace.segments[1], { kind: "forced", start: P, end: P + 7 }, "every id up to [_CONTINUE_] came from a rule");
  assert.ok(r.trace.segments.slice(2).every((s) => s.kind === "generated"));
  // retrievals: the prompt's [LK] (position 1) and the generated one
  assert.equal(r.retrievals.map((x) => [x.position, x.source]), [[1, "prompt"], [P + 5, "generated"]]);
  assert.equal(r.trace.retrievals.map((x) => x.position), [1, P + 5]);
  assert.is(r.retrievals[1]!.hits.length, 3);
  await checkRetrievalsBruteForce(m, index, vectors, r, 3);
  assert.equal(r.mentions, [
    { mention: null, mentionIds: [50, 51], span: [1, 3], position: P + 5, entity: r.retrievals[1]!.hits[0]!.id, fragment: r.retrievals[1]!.hits[0]!.fragment, score: r.retrievals[1]!.hits[0]!.score },
  ]);
  assert.is(r.spanUnit, "token");
  assert.is(r.annotated, null);
  assert.is(r.injections.length, 0);
  // events: tokens at consecutive positions, each retrieval right after its token, done last
  const toks = events.filter((e) => e.type === "token");
  assert.equal(toks.map((e) => e.position), Array.from({ length: 12 }, (_, i) => P + i));
  const iRet = events.findIndex((e) => e.type === "retrieval" && e.source === "generated");
  assert.equal(events[iRet - 1], { type: "token", id: Q, position: P + 5, kind: "forced" });
  assert.equal(events[events.length - 1], { type: "done", finish: "max-tokens", length: r.ids.length });
  assert.equal(events[0]!.type, "retrieval", "the prompt retrieval comes first");
});

test("entity linking: two-pass baseline equals one-pass (hits, scores, continuation, trace)", async () => {
  const { m, index } = await world();
  const a = await runEntityLinking(m, index, { ids: PROMPT }, { ...EL, maxNewTokens: 16 });
  const b = await runEntityLinking(m, index, { ids: PROMPT }, { ...EL, maxNewTokens: 16, twoPass: true });
  assert.is(a.mode, "one-pass");
  assert.is(b.mode, "two-pass");
  assert.is(a.retrievals.length, 2);
  sameRun(a, b, "entity linking");
  assert.equal(a.mentions.map((x) => [x.entity, x.span]), b.mentions.map((x) => [x.entity, x.span]));
});

// multi-hop: force a query token after the prompt, after each injection write <A> 60 </A> and ask again
const MH_RULES = [
  { pattern: [17], token: Q },
  { pattern: [...SUF], token: ANS_OPEN[0]! },
  { pattern: [...ANS_OPEN], token: 60 },
  { pattern: [...ANS_OPEN, 60], token: ANS_CLOSE[0]! },
  { pattern: [60, ...ANS_CLOSE], token: Q },
];
const MH: MultiHopOptions = { queryToken: Q, paragraphOpen: PRE, paragraphClose: SUF, answerOpen: ANS_OPEN, answerClose: ANS_CLOSE, cacheDtype: "f32", k: 2, forceAfter: MH_RULES };
const MH_PROMPT = [11, 40, 73, 200, 17];

test("multi-hop QA: injection as <paragraph>doc</paragraph>, at most maxRetrievals, answer from the last run; two-pass equal", async () => {
  const { m, index, vectors } = await world();
  const P = MH_PROMPT.length;
  const r = await runMultiHopQa(m, index, { ids: MH_PROMPT }, { ...MH, maxRetrievals: 2, maxNewTokens: 14 });
  assert.equal(checkTrace(r.trace, Q), []);
  assert.equal(r.trace.ids, r.ids);
  assert.is(r.retrievals.length, 2, "maxRetrievals 2");
  assert.is(r.injections.length, 2);
  const [i1, i2] = r.injections as { position: number; start: number; ids: number[]; document: string }[];
  assert.is(i1!.position, P);
  assert.equal(i1!.ids, [...PRE, ...index.documentTokens(r.retrievals[0]!.hits[0]!.id), ...SUF], "injected = prefix + the best document's index tokens + suffix");
  assert.equal(r.ids.slice(i1!.start, i1!.start + i1!.ids.length), i1!.ids);
  assert.equal(r.ids.slice(i1!.start + i1!.ids.length, i2!.position + 1), [...ANS_OPEN, 60, ...ANS_CLOSE, Q]);
  // the third query token is generated (forced) but not searched: maxRetrievals reached
  const after2 = i2!.start + i2!.ids.length;
  assert.equal(r.ids.slice(after2, after2 + 4), [...ANS_OPEN, 60, ...ANS_CLOSE, Q]);
  assert.not.ok(r.retrievals.some((x) => x.position === after2 + 3));
  assert.equal(r.trace.segments.map((s) => s.kind), ["prompt", "forced", "injected", "forced", "injected", "forced", "generated"]);
  assert.equal(r.answerIds, [60]);
  assert.is(r.answer, null, "no tokenizer: ids only");
  await checkRetrievalsBruteForce(m, index, vectors, r, 2);
  const b = await runMultiHopQa(m, index, { ids: MH_PROMPT }, { ...MH, maxRetrievals: 2, maxNewTokens: 14, twoPass: true });
  sameRun(r, b, "multi-hop");
  assert.equal(b.answerIds, [60]);
});

test("multi-hop QA: default maxRetrievals is OneGen's 5; answer null when the last run has none", async () => {
  const { m, index } = await world();
  const r = await runMultiHopQa(m, index, { ids: MH_PROMPT }, { ...MH, maxNewTokens: 6 * 5 + 4 });
  assert.is(r.retrievals.length, 5);
  assert.is(r.injections.length, 5);
  assert.ok(r.ids.filter((t) => t === Q).length >= 6, "query tokens past the fifth are not searched");
  // without the answer rules the run after the last injection holds no answer
  const plain = await runMultiHopQa(m, index, { ids: [...MH_PROMPT] }, { ...MH, forceAfter: [MH_RULES[0]!], maxNewTokens: 4 });
  assert.is(plain.injections.length, 1);
  assert.is(plain.answerIds, null);
});

test("a prompt that ends with the query token: retrieved and injected by the host exactly as the loop injects a generated one", async () => {
  const { m, index } = await world();
  // (a) the query token is the prompt's last id; (b) the loop generates it (forced) after the same prefix
  const a = await runMultiHopQa(m, index, { ids: [...MH_PROMPT, Q] }, { ...MH, forceAfter: [], maxNewTokens: 6 });
  const b = await runMultiHopQa(m, index, { ids: MH_PROMPT }, { ...MH, forceAfter: [MH_RULES[0]!], maxNewTokens: 7 });
  assert.equal(a.retrievals.map((x) => x.source), ["prompt"]);
  assert.equal(b.retrievals.map((x) => x.source), ["generated"]);
  assert.equal(a.ids, b.ids, "same sequence: prompt, query, injected document, continuation");
  assert.equal(a.trace.segments.map((s) => s.kind), ["prompt", "injected", "generated"]);
  assert.equal(a.retrievals[0]!.hits.map((h) => h.id), b.retrievals[0]!.hits.map((h) => h.id));
  const c = await runMultiHopQa(m, index, { ids: [...MH_PROMPT, Q] }, { ...MH, forceAfter: [], maxNewTokens: 6, twoPass: true });
  sameRun(a, c, "prompt-end injection");
});

test("defined outcomes: empty index (no retrieval), k > entries (all entries), injection overflow (refused, context-full)", async () => {
  const { m, index } = await world();
  const ctx = m.decoder.ctx;
  const empty = DocumentIndex.create(ctx, m.config.hiddenSize, { dtype: "f32" });
  for (const twoPass of [false, true]) {
    const el = await runEntityLinking(m, empty, { ids: PROMPT }, { ...EL, twoPass });
    assert.is(el.retrievals.length, 0, "empty index: nothing retrieved");
    assert.equal(el.ids.slice(PROMPT.length, PROMPT.length + 7), [...OPEN, 50, 51, ...CLOSE, Q, CONT], "the query token and the forcing rule still work");
    assert.equal(el.mentions.map((x) => [x.mentionIds, x.entity, x.score]), [[[50, 51], null, null]]);
    const mh = await runMultiHopQa(m, empty, { ids: [...MH_PROMPT, Q] }, { ...MH, twoPass, maxNewTokens: 4 });
    assert.equal([mh.retrievals.length, mh.injections.length, mh.finish], [0, 0, "max-tokens"]);
    assert.equal(checkTrace(mh.trace, Q), []);
    // k larger than the index: every entry, best first
    const big = await runEntityLinking(m, index, { ids: PROMPT }, { ...EL, twoPass, k: 50, maxNewTokens: 7 });
    for (const x of big.retrievals) {
      assert.is(x.hits.length, index.count);
      assert.equal([...x.hits.map((h) => h.entry)].sort((p, q) => p - q), Array.from({ length: index.count }, (_, i) => i));
      for (let j = 1; j < x.hits.length; j++) assert.ok(x.hits[j - 1]!.score >= x.hits[j]!.score);
    }
    // overflow: the injection does not fit the session → refused, context-full, nothing injected
    const tight = MH_PROMPT.length + 3;
    const ov = await runMultiHopQa(m, index, { ids: MH_PROMPT }, { ...MH, twoPass, capacity: tight, maxNewTokens: 10 });
    assert.is(ov.finish, "context-full");
    assert.equal(ov.injections, [{ position: MH_PROMPT.length, refused: true }]);
    assert.is(ov.retrievals.length, 1, "the search still happened");
    assert.equal(ov.ids, [...MH_PROMPT, Q]);
    assert.equal(ov.trace.segments.map((s) => s.kind), ["prompt", "forced"]);
    // overflow for a prompt that ends with the query token
    const ov2 = await runMultiHopQa(m, index, { ids: [...MH_PROMPT, Q] }, { ...MH, twoPass, capacity: MH_PROMPT.length + 2, forceAfter: [] });
    assert.is(ov2.finish, "context-full");
    assert.equal(ov2.injections, [{ position: MH_PROMPT.length, refused: true }]);
    assert.equal(ov2.ids, [...MH_PROMPT, Q]);
  }
  empty.dispose();
  // a prompt longer than the model's context is refused up front
  await assertRejects(() => runMultiHopQa(m, index, { ids: new Array(200).fill(20) }, MH), UsageError, [/200 tokens/, /context of 128/], "prompt too long");
  // names without a tokenizer are refused with the '#ID' hint
  await assertRejects(() => runEntityLinking(m, index, { ids: PROMPT }, {}), UsageError, [/\[LK\]/, /#<id>/], "token name without a tokenizer");
});

test("streamRun: an event stream over an existing session (events in session order, done with the length)", async () => {
  const { m, index } = await world();
  const s = new Session(m.decoder, m.decoder.createCache(64, "f32"));
  const events: TaskEvent[] = [];
  const it = streamRun(s, MH_PROMPT, { maxNewTokens: 5, forceAfter: [MH_RULES[0]!], retrieval: { index, queryTokenId: Q, k: 1, inject: { prefix: PRE, suffix: SUF } } });
  let finish = "";
  for (let r = await it.next(); ; r = await it.next()) {
    if (r.done) {
      finish = r.value;
      break;
    }
    events.push(r.value);
  }
  assert.equal(events.map((e) => e.type), ["token", "retrieval", "injection", "token", "token", "token", "token", "done"]);
  const inj = events[2] as { start: number; ids: number[]; position: number };
  assert.is(inj.position, MH_PROMPT.length);
  assert.is(inj.start, MH_PROMPT.length + 1);
  assert.is((events[3] as { position: number }).position, inj.start + inj.ids.length, "the next token follows the injected ids");
  assert.is(finish, "max-tokens");
  assert.equal(events[7], { type: "done", finish: "max-tokens", length: s.length });
  s.dispose();
});

test("rerank: candidates from the index and encoded on the fly score as a brute-force cosine over the query state", async () => {
  const { m, index, vectors } = await world();
  const query = [11, 40, 73];
  const docs = index.documents.slice(0, 5);
  const cands = [...docs.map((d) => ({ id: d.id })), { id: "fresh", ids: Array.from(index.documentTokens(docs[2]!.id)) }];
  const got = await rerank(m, index, { ids: query }, cands, { queryToken: Q, cacheDtype: "f32" });
  const h = await lastHidden(m, [...query, Q]);
  let n = 0;
  for (const x of h) n += x * x;
  const want = docs.map((d) => {
    let dot = 0;
    for (let i = 0; i < index.dim; i++) dot += h[i]! * vectors[d.firstEntry * index.dim + i]!;
    return { id: d.id, score: dot / Math.sqrt(n) };
  });
  want.push({ id: "fresh", score: want[2]!.score });
  want.sort((a, b) => b.score - a.score);
  assert.equal(got.map((g) => g.id).filter((id) => id !== "fresh" && id !== docs[2]!.id), want.map((w) => w.id).filter((id) => id !== "fresh" && id !== docs[2]!.id));
  for (const g of got) assert.ok(Math.abs(g.score - want.find((w) => w.id === g.id)!.score) < TOL, `${g.id}: ${g.score}`);
  assert.is(got.find((g) => g.id === "fresh")!.source, "encoded");
  for (let j = 1; j < got.length; j++) assert.ok(got[j - 1]!.score >= got[j]!.score);
  await assertRejects(() => rerank(m, index, { ids: query }, [{ id: "nope" }], { queryToken: Q }), UsageError, [/nope/, /not in the index/], "unknown candidate");
});

// ------------------------------------------------------------------ text side, real Llama-2 tokenizer

let tokP: Promise<Tokenizer> | null = null;
const llama2 = () => (tokP ??= loadTokenizer(fixtureDir("llama2-tokenizer"), { addedTokens: ["[_CONTINUE_]", "[SE]", "[LK]", "[Question Representation]", "[Document Fragment Representation]"] }));

/** Code-point offset of a UTF-16 index. */
const cp = (s: string, i: number): number => Array.from(s.slice(0, i)).length;

test("entity-linking span mapping: generated annotations → character spans in the input (Llama-2 tokenizer + OneGen tokens)", async () => {
  const tok = await llama2();
  const LK = tok.tokenToId("[LK]")!;
  const input = "🙂 David and Victoria named their children Brooklyn, Romeo, Cruz, and Harper   Seven. David smiled.";
  const output =
    "🙂 <MENTION>David</MENTION>[LK][_CONTINUE_] and <MENTION>Victoria</MENTION>[LK][_CONTINUE_] named their children <MENTION>Brooklyn</MENTION>[LK][_CONTINUE_], " +
    "Romeo, <MENTION>Madrid</MENTION>[LK][_CONTINUE_] Cruz, and <MENTION>Harper Seven</MENTION>[LK][_CONTINUE_]. <MENTION>David</MENTION>[LK][_CONTINUE_] smiled.[LK]";
  const ids = tok.encode(output, { addSpecialTokens: false });
  const found = annotatedMentions(ids, LK, { open: "<MENTION>", close: "</MENTION>" }, (x) => tok.decode(x));
  assert.equal(found.map((f) => f.mention), ["David", "Victoria", "Brooklyn", "Madrid", "Harper Seven", "David", null]);
  assert.equal(found.map((f) => ids[f.index]), new Array(7).fill(LK));
  const spans = mapMentionsToInput(input, found.map((f) => f.mention));
  const at = (s: string, from = 0): [number, number] => {
    const i = input.indexOf(s, from);
    return [cp(input, i), cp(input, i) + Array.from(s).length];
  };
  assert.equal(spans, [
    at("David"),
    at("Victoria"),
    at("Brooklyn"),
    null, // not in the input: no span, the search position stays
    at("Harper   Seven"), // whitespace runs match
    at("David", input.indexOf("Seven")), // the second David, searching forward
    null,
  ]);
  assert.is(spans[0]![0], 2, "code points: the emoji counts as one character");
  // the spans cut the input at the mention text
  const chars = Array.from(input);
  assert.is(chars.slice(...spans[4]!).join(""), "Harper   Seven");
  // markers given as ids work the same on the decoded text (in-context tokenization of </MENTION>)
  const close = markerIdsOf("</MENTION>", tok, tok.vocabSize, "test", "after-text");
  assert.equal(close.map((i) => tok.idToToken(i)), ["</", "MENT", "ION", ">"]);
  assert.equal(ids.slice(ids.indexOf(LK) - close.length, ids.indexOf(LK)), close, "the forcing pattern matches the generated ids");
});

test("answer extraction: first complete <FINAL-ANSWER>…</FINAL-ANSWER>, text and ids", async () => {
  const tok = await llama2();
  const text = "First, who? [Question Representation]<paragraph>x</paragraph> So <FINAL-ANSWER>Paris, France</FINAL-ANSWER> and <FINAL-ANSWER>Rome</FINAL-ANSWER>";
  const decoded = tok.decode(tok.encode(text, { addSpecialTokens: false }));
  assert.is(extractAnswer(decoded, "<FINAL-ANSWER>", "</FINAL-ANSWER>"), "Paris, France");
  assert.is(extractAnswer("<FINAL-ANSWER>unfinished", "<FINAL-ANSWER>", "</FINAL-ANSWER>"), null);
  assert.is(extractAnswer("no answer", "<FINAL-ANSWER>", "</FINAL-ANSWER>"), null);
  assert.equal(extractAnswerIds([1, 305, 5, 6, 306, 305, 7, 306], [305], [306]), [5, 6]);
  assert.equal(extractAnswerIds([1, 305, 5, 6], [305], [306]), null);
  assert.equal(extractAnswerIds([5, 306, 305, 8, 9, 306], [305], [306]), [8, 9], "a close before any open is ignored");
});

// ------------------------------------------------------------------ text mode end to end
// The fixture's weights with a character-level tokenizer (BPE without merges, Metaspace; ids 3-97
// are the printable characters, 98-100 are [_CONTINUE_], [SE], [LK]): the whole text path of the
// runners (templates, in-context markers, decoded output, spans) on a real model of vocab 384.

function charTokenizerJson(): unknown {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let c = 33; c <= 126; c++) vocab[String.fromCharCode(c)] = Object.keys(vocab).length;
  vocab["\u2581"] = Object.keys(vocab).length;
  const tok = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [tok(0, "<unk>"), tok(1, "<s>"), tok(2, "</s>"), tok(98, "[_CONTINUE_]"), tok(99, "[SE]"), tok(100, "[LK]")],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
    post_processor: null,
    decoder: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
  };
}

let textWorld: Promise<{ m: LoadedDecoder; index: DocumentIndex }> | null = null;
function charWorld() {
  return (textWorld ??= (async () => {
    // The llama-gqa-f32 fixture with a character tokenizer, as an in-memory model directory.
    const files = new Map<string, Blob>();
    for (const f of ["config.json", "model.safetensors"]) files.set(f, await fixtureBlob(`models/llama-gqa-f32/${f}`));
    files.set("tokenizer.json", new Blob([JSON.stringify(charTokenizerJson())]));
    files.set("tokenizer_config.json", new Blob([JSON.stringify({ add_bos_token: false, add_eos_token: false, bos_token: "<s>", eos_token: "</s>" })]));
    const m = await loadDecoder(await gpu(), filesDir(files, "llama-gqa-f32 + char tokenizer"));
    const docs = ["David Beckham", "Victoria Beckham", "Rome, Italy", "Paris", "Brooklyn"].map((text, i) => ({ id: `Q${i}`, text }));
    const index = await encodeDocuments(m.decoder, docs, { docTokenId: 99, tokenizer: m.tokenizer, dtype: "f32", cacheDtype: "f32" });
    return { m, index };
  })());
}

/** Rules that force `target` right after `prefix` (each pattern is everything since the prefix). */
function steer(prefix: readonly number[], target: readonly number[]): { pattern: number[]; token: number }[] {
  return target.map((t, i) => ({ pattern: [...prefix, ...target.slice(0, i)], token: t }));
}

test("text mode: entity linking on a character tokenizer: annotated output, mentions, character spans, links; two-pass equal", async () => {
  const { m, index, vectors } = await charWorld().then(async (w) => ({ ...w, vectors: await w.index.readVectors() }));
  const tok = m.tokenizer!;
  const text = "David met Victoria in Rome.";
  const template = "T: {input} A:";
  const prompt = tok.encode(template.replace("{input}", text), { addSpecialTokens: false });
  const target = tok.encode(" <MENTION>David</MENTION>[LK][_CONTINUE_] met <MENTION>Victoria</MENTION>[LK][_CONTINUE_] in", { addSpecialTokens: false });
  const opts: EntityLinkingOptions = { template, cacheDtype: "f32", k: 2, maxNewTokens: target.length + 2, forceAfter: steer(prompt.slice(-2), target) };
  const r = await runEntityLinking(m, index, { text }, opts);
  assert.equal(r.promptIds, prompt);
  assert.equal(r.ids.slice(prompt.length, prompt.length + target.length), target);
  assert.ok(r.annotated!.startsWith("<MENTION>David</MENTION>[LK][_CONTINUE_] met <MENTION>Victoria</MENTION>[LK][_CONTINUE_] in"), r.annotated!);
  assert.is(r.spanUnit, "char");
  assert.equal(r.mentions.map((x) => [x.mention, x.span]), [["David", [0, 5]], ["Victoria", [10, 18]]]);
  assert.equal(r.mentions.map((x) => r.ids[x.position]), [100, 100]);
  assert.equal(r.mentions.map((x) => r.ids[x.position + 1]), [98, 98], "[_CONTINUE_] after each [LK]");
  assert.equal(r.mentions.map((x) => x.entity), r.retrievals.map((x) => x.hits[0]!.id));
  assert.equal(checkTrace(r.trace, 100), []);
  // the forced [_CONTINUE_] is the task's rule: with only the steering up to [LK] it still comes
  const upToLk = target.slice(0, target.indexOf(100) + 1);
  const r2 = await runEntityLinking(m, index, { text }, { ...opts, maxNewTokens: upToLk.length + 1, forceAfter: steer(prompt.slice(-2), upToLk) });
  assert.is(r2.ids[r2.ids.length - 1], 98);
  assert.equal(r2.trace.segments.slice(-1)[0], { kind: "forced", start: prompt.length, end: r2.ids.length });
  await checkRetrievalsBruteForce(m, index, vectors, r, 2, 100);
  const b = await runEntityLinking(m, index, { text }, { ...opts, twoPass: true });
  sameRun(r, b, "text entity linking");
  assert.equal(b.mentions, r.mentions.map((x, i) => ({ ...x, score: b.mentions[i]!.score })));
});

test("text mode: multi-hop QA with OneGen's markers as text: <paragraph> injection and the <FINAL-ANSWER> answer", async () => {
  const { m, index } = await charWorld();
  const tok = m.tokenizer!;
  const template = "Q: {input}";
  const prompt = tok.encode(template.replace("{input}", "Where?"), { addSpecialTokens: false });
  const suffix = tok.encode("</paragraph>", { addSpecialTokens: false });
  const answer = tok.encode("<FINAL-ANSWER>Rome</FINAL-ANSWER>", { addSpecialTokens: false });
  const r = await runMultiHopQa(m, index, { text: "Where?" }, {
    template,
    queryToken: "[LK]",
    cacheDtype: "f32",
    maxNewTokens: 1 + answer.length + 2,
    forceAfter: [{ pattern: prompt.slice(-2), token: 100 }, ...steer(suffix, answer)],
  });
  assert.is(r.injections.length, 1);
  const inj = r.injections[0] as { ids: number[]; document: string };
  assert.ok(tok.decode(inj.ids).startsWith("<paragraph>"), tok.decode(inj.ids));
  assert.ok(tok.decode(inj.ids).endsWith("</paragraph>"));
  assert.is(r.answer, "Rome");
  assert.ok(r.output!.includes("<FINAL-ANSWER>Rome</FINAL-ANSWER>"));
  // stopAfterAnswer ends the run at the closing marker
  const s = await runMultiHopQa(m, index, { text: "Where?" }, {
    template,
    queryToken: "[LK]",
    cacheDtype: "f32",
    maxNewTokens: 1 + answer.length + 8,
    stopAfterAnswer: true,
    forceAfter: [{ pattern: prompt.slice(-2), token: 100 }, ...steer(suffix, answer)],
  });
  assert.is(s.finish, "stop-string");
  assert.ok(tok.decode(s.ids).endsWith("</FINAL-ANSWER>"));
  // text options with ids input (and the reverse) are refused, never ignored
  await assertRejects(() => runMultiHopQa(m, index, { ids: prompt }, { template, queryToken: "[LK]" }), UsageError, [/text template/], "template with ids");
  await assertRejects(() => runMultiHopQa(m, index, { text: "x" }, { idsTemplate: { before: [], after: [] }, queryToken: "[LK]" }), UsageError, [/ids template/], "ids template with text");
});

test.run();
