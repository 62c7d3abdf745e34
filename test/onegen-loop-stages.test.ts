// The stages of kernels/onegen_loop.wgsl against their CPU references in src/onegen/loop.ts, one
// stage at a time on hand-made state (the whole loop is checked end to end in
// test/onegen-loop.test.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import {
  detect,
  detectReference,
  loopStateWords,
  planReference,
  record,
  RECORD_OVERFLOW,
  recordReference,
  resolve,
  resolveReference,
  type HostLoopState,
  type LoopParams,
} from "../src/onegen/loop.js";
import { INJECTED_ID, STEP_COUNT, STEP_LAST, STEP_PENDING, STEP_WORDS } from "../src/ops/step-state.js";

const STRIDE = 2;
const RECORD = 1;

function params(over: Partial<LoopParams> = {}): LoopParams {
  return { queryId: 9, maxRetrievals: 2, nPrefix: 2, nSuffix: 1, lMax: 12, capacity: 40, stride: STRIDE, record: RECORD, maxDocTokens: 100, k: 2, ...over };
}

function stepWords(last: number, j: number): Uint32Array {
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_LAST] = last;
  s[1] = 1;
  s[STEP_COUNT] = j + 1; // advance of step j has run
  return s;
}

test("DETECT equals detectReference: a search when the id fed at step j is the query token and searches are left; injection steps never search", async () => {
  const ctx = await gpu();
  const p = params();
  const prefix = [501, 502];
  const suffix = [503];
  const host: HostLoopState = { retrievals: 0, offset: 0, count: 0, length: 0 };
  const state = ctx.upload(loopStateWords(prefix, suffix), [8 + 3], "u32", "state");
  const history = ctx.upload(new Uint32Array(STRIDE * 6).fill(0x1234), [STRIDE * 6], "u32", "history");
  const ids = [4, 9, INJECTED_ID, 9, 9, 7];
  for (const [j, id] of ids.entries()) {
    ctx.write(history, Uint32Array.of(id), STRIDE * j);
    const step = ctx.upload(stepWords(10 + j, j), [STEP_WORDS], "u32", "step");
    await detect(ctx, step, state, history, p);
    ctx.submit();
    const want = detectReference(id, host, p);
    const s = await state.read();
    assert.is(s[0], want.search ? 1 : 0, `step ${j} (id ${id}): search flag`);
    assert.is(s[1], host.retrievals, `step ${j}: searches so far`);
    assert.equal(Array.from(s.slice(8)), [...prefix, ...suffix], "wrap ids untouched");
    const h = await history.read();
    assert.is(h[STRIDE * j + RECORD], want.record, `step ${j}: record word`);
    assert.is(h[STRIDE * j], id, `step ${j}: the id word is not written`);
    step.dispose();
  }
  // ids 9 at steps 1 and 3 searched; the third 9 (step 4) is past maxRetrievals 2
  assert.is(host.retrievals, 2);
  state.dispose();
  history.dispose();
});

test("RECORD equals recordReference: a step that searched gets its k hits and scores after its record word, in the id readback; other steps and words are untouched", async () => {
  const ctx = await gpu();
  for (const k of [1, 3, 70]) {
    // stride: id word, another hook's word, then this hook's record word + 2k words
    const rec = 2;
    const stride = rec + 1 + 2 * k;
    const p = params({ k, stride, record: rec });
    const steps = 3;
    const before = Uint32Array.from({ length: stride * steps }, (_, i) => 0x5000 + i);
    const history = ctx.upload(before, [before.length], "u32", "history");
    const hitIds = Uint32Array.from({ length: k }, (_, i) => (i === k - 1 && k > 1 ? 0xffffffff : 11 * i + 3));
    const hitScores = Float32Array.from({ length: k }, (_, i) => 0.9 - i / 7 - 1e-7 * i);
    const hits = ctx.upload(hitIds, [1, k], "u32", "hits");
    const scores = ctx.upload(hitScores, [1, k], "f32", "scores");
    const want = before.slice();
    for (const [j, searched] of [true, false, true].entries()) {
      const state = ctx.upload(Uint32Array.of(searched ? 1 : 0, 1, 0, 0, 0, 0, 0, 0), [8], "u32", "state");
      const step = ctx.upload(stepWords(10 + j, j), [STEP_WORDS], "u32", "step");
      await record(ctx, state, hits, scores, step, history, p);
      ctx.submit();
      const w = recordReference(searched, hitIds, hitScores, k);
      if (w) want.set(w, stride * j + rec + 1);
      state.dispose();
      step.dispose();
    }
    assert.equal(Array.from(await history.read()), Array.from(want), `k=${k}: history words`);
    for (const t of [history, hits, scores]) t.dispose();
  }
});

test("RESOLVE equals resolveReference + planReference: the plan, STEP_PENDING and the record for hits that fit, are clipped, overflow, miss or were not searched", async () => {
  const ctx = await gpu();
  const prefix = [501, 502];
  const suffix = [503];
  // 3 documents: tokens [10..14], [20..27], [30]; entries 0..3 → documents 0, 1, 1, 2
  const docTokens = [10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 26, 27, 30];
  const documentTable = [0, 5, 5, 8, 13, 1];
  const entryTable = [0, 0, 1, 0, 1, 1, 2, 0];
  const t = {
    docTokens: ctx.upload(Uint32Array.from(docTokens), [docTokens.length], "u32", "doc_tokens"),
    documentTable: ctx.upload(Uint32Array.from(documentTable), [3, 2], "u32", "document_table"),
    entryTable: ctx.upload(Uint32Array.from(entryTable), [4, 2], "u32", "entry_table"),
  };
  // [best entry, flag, position of the query token, capacity, maxDocTokens]
  const cases: [number, number, number, number, number][] = [
    [0, 1, 6, 40, 100], // document 0: L = 2 + 5 + 1
    [2, 1, 6, 40, 100], // document 1: L = 11
    [1, 1, 6, 40, 4], // clipped to 4 document tokens: L = 7
    [3, 1, 0, 40, 100], // one-token document at position 0
    [1, 1, 30, 40, 100], // 30 + 11 + 1 > 40: refused
    [1, 1, 28, 40, 100], // 28 + 11 + 1 = 40: fits exactly
    [1, 1, 6, 40, 100], // L = 11 ≤ lMax 12
    [0xffffffff, 1, 6, 40, 100], // no hit
    [0, 0, 6, 40, 100], // not searched this step
  ];
  for (const [entry, flag, pos, capacity, maxDocTokens] of cases) {
    const p = params({ capacity, maxDocTokens });
    const words = loopStateWords(prefix, suffix);
    words[0] = flag;
    const j = 3;
    const b = {
      hits: ctx.upload(Uint32Array.of(entry, 0xffffffff), [2], "u32", "hits"),
      step: ctx.upload(stepWords(pos, j), [STEP_WORDS], "u32", "step"),
      state: ctx.upload(words, [words.length], "u32", "state"),
      history: ctx.upload(Uint32Array.from({ length: STRIDE * 5 }, (_, i) => (i === STRIDE * j + RECORD && flag ? 0x80000000 : 0)), [STRIDE * 5], "u32", "history"),
      plan: ctx.upload(new Uint32Array(p.lMax).fill(77), [p.lMax], "u32", "plan"),
    };
    await resolve(ctx, b.hits, t.entryTable, t.documentTable, t.docTokens, b.step, b.state, b.history, b.plan, p);
    ctx.submit();
    const host: HostLoopState = { retrievals: 1, offset: 0, count: 0, length: 0 };
    const bits = resolveReference(flag === 1, entry, entryTable, documentTable, pos, host, p);
    const want = planReference(host, docTokens, prefix, suffix);
    const what = `entry ${entry}, flag ${flag}, position ${pos}, maxDocTokens ${maxDocTokens}`;
    const plan = Array.from(await b.plan.read());
    const step = await b.step.read();
    const record = (await b.history.read())[STRIDE * j + RECORD]!;
    assert.equal(plan.slice(0, want.length), want, `${what}: plan`);
    assert.ok(plan.slice(want.length).every((x) => x === 77), `${what}: rows past L untouched`);
    assert.is(step[STEP_PENDING], host.length, `${what}: STEP_PENDING`);
    assert.is(record, ((flag ? 0x80000000 : 0) | bits) >>> 0, `${what}: record`);
    if (pos === 30) assert.is(bits, RECORD_OVERFLOW, `${what}: refused`);
    for (const x of Object.values(b)) x.dispose();
  }
  for (const x of Object.values(t)) x.dispose();
});

test.run();
