// The bundled demo model (demo/model + demo/index, trained by scripts/demo/train_demo.sh; see
// demo/MODEL_CARD.md) on a fixed sample of held-out data: the bundled indexes load and match the
// model; the annotated output and linked entity ids of 5 test sentences, with both entity-linking
// decodings, and the retrieved documents and answers of 5 test questions equal the ones recorded
// from the bundled model (greedy decoding, deterministic on one device; a retrained model must
// re-record them: RECORD_DEMO=1 prints the current values); entity-linking micro-F1 on the first
// EL_SUBSET test sentences, with the default decoding, stays ≥ 0.8 and above the trivial baseline
// on the same sentences; multi-hop exact match on the whole test split stays ≥ MH_EM_FLOOR and
// above the trivial baseline. No skip when the model is absent: the model is part of the package.
// The recorded values hold on the device they were recorded on; what must hold on any device is
// checked against an independent computation: a CPU forward composed of the ops' float64
// references (test/helpers/reference-forward.ts) over the ids a run produced, within tolerances.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gpu } from "./helpers/gpu.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { loadDemoData, type DemoData } from "../src/demo/data.js";
import { trivialScores } from "../src/demo/baselines.js";
import { openDemoIndexes, type DemoIndexes } from "../src/demo/indexes.js";
import { DEFAULT_EL_DECODING, type ElDecoding } from "../src/demo/tasks.js";
import { evaluateModel } from "../src/demo/eval.js";
import { ONEGEN_ENTITY_LINKING } from "../src/onegen/defaults.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import type { TaskResult } from "../src/onegen/protocol.js";
import type { DocumentIndex } from "../src/onegen/index.js";
import { cosineTopKReference } from "../src/ops/search.js";
import { loadReferenceModel, referenceForward, type ReferenceModel } from "./helpers/reference-forward.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MODEL = join(ROOT, "demo", "model");
const INDEX = join(ROOT, "demo", "index");
const DATA = join(ROOT, "demo", "data");

/** Sentences scored for the micro-F1 floor (the first N of the test split). */
const EL_SUBSET = 30;
const EL_F1_FLOOR = 0.8;

/** Recorded from the bundled model (the scripts/demo/train_demo.sh run of demo/MODEL_CARD.md). */
const EL_RECORDS: { id: string; decoding: ElDecoding; annotated: string; entities: (string | null)[] }[] = [
  { id: "el-test-000", decoding: "copy-input", annotated: "As a young engineer, <MENTION>Casimir Dalley</MENTION>[LK][_CONTINUE_] left <MENTION>Marwick</MENTION>[LK][_CONTINUE_] for <MENTION>Kestport</MENTION>[LK][_CONTINUE_].</s>", entities: ["P205","C009","C014"] },
  { id: "el-test-000", decoding: "free", annotated: "As a young engineer, <MENTION>Casimir Dalley</MENTION>[LK][_CONTINUE_] left <MENTION>Marwick</MENTION>[LK][_CONTINUE_] for <MENTION>Kestport</MENTION>[LK][_CONTINUE_].</s>", entities: ["P205","C009","C014"] },
  { id: "el-test-001", decoding: "copy-input", annotated: "Visitors to <MENTION>Ormford</MENTION>[LK][_CONTINUE_] in <MENTION>Kalmora</MENTION>[LK][_CONTINUE_] admire its old bridge.</s>", entities: ["C044","K002"] },
  { id: "el-test-001", decoding: "free", annotated: "Visitors to <MENTION>Ormford</MENTION>[LK][_CONTINUE_] in <MENTION>Kalmora</MENTION>[LK][_CONTINUE_] admire its old bridge.</s>", entities: ["C044","K002"] },
  { id: "el-test-002", decoding: "copy-input", annotated: "<MENTION>Cinder Works</MENTION>[LK][_CONTINUE_] was started by the pilot <MENTION>Fenna Solberg</MENTION>[LK][_CONTINUE_] in 1977.</s>", entities: ["O042","P143"] },
  { id: "el-test-002", decoding: "free", annotated: "<MENTION>Cinder Works</MENTION>[LK][_CONTINUE_] was started by the pilot <MENTION>Fenna Solberg</MENTION>[LK][_CONTINUE_] in 1977.</s>", entities: ["O042","P143"] },
  { id: "el-test-003", decoding: "copy-input", annotated: "The chemist <MENTION>Matthis Belring</MENTION>[LK][_CONTINUE_] joined <MENTION>Redfern Press</MENTION>[LK][_CONTINUE_] after leaving <MENTION>Rookgate</MENTION>[LK][_CONTINUE_].</s>", entities: ["P064","O016","C024"] },
  { id: "el-test-003", decoding: "free", annotated: "The chemist <MENTION>Matthis Belring</MENTION>[LK][_CONTINUE_] joined <MENTION>Redfern Press</MENTION>[LK][_CONTINUE_] after leaving <MENTION>Rookgate</MENTION>[LK][_CONTINUE_].</s>", entities: ["P064","O016","C024"] },
  { id: "el-test-004", decoding: "copy-input", annotated: "<MENTION>Zora Terberg</MENTION>[LK][_CONTINUE_], a painter from <MENTION>Ormwick</MENTION>[LK][_CONTINUE_], was born in 1958.</s>", entities: ["P155","C047"] },
  { id: "el-test-004", decoding: "free", annotated: "<MENTION>Zora Terberg</MENTION>[LK][_CONTINUE_], a painter from <MENTION>Ormwick</MENTION>[LK][_CONTINUE_], was born in 1958.</s>", entities: ["P155","C047"] },
];
const MH_RECORDS: { id: string; docs: string[]; answer: string | null }[] = [
  { id: "mh-test-000", docs: ["O013","P118"], answer: "Falcon Academy" },
  { id: "mh-test-001", docs: ["O024","P038"], answer: "Tormoor" },
  { id: "mh-test-002", docs: ["O031","P031"], answer: "historian" },
  { id: "mh-test-003", docs: ["O015","P184"], answer: "1907" },
  { id: "mh-test-004", docs: ["O037","P188"], answer: "1945" },
];
/** Multi-hop exact match on the 30 test questions must stay at least this (measured 0.5; the trivial baseline 0). */
const MH_EM_FLOOR = 0.4;
const RECORD = process.env.RECORD_DEMO === "1";

interface Bundle {
  model: LoadedDecoder;
  indexes: DemoIndexes;
  data: DemoData;
}
let bundle: Promise<Bundle> | null = null;
function bundled(): Promise<Bundle> {
  return (bundle ??= (async () => {
    assert.ok(existsSync(join(MODEL, "config.json")), `the bundled demo model '${MODEL}' is missing (produce it with scripts/demo/train_demo.sh)`);
    const ctx = await gpu();
    const data = await loadDemoData(DATA, "test");
    const model = await loadDecoder(ctx, MODEL, { dtype: "auto" });
    const indexes = await openDemoIndexes(ctx, model, INDEX, data, { build: false });
    return { model, indexes, data };
  })());
}

test("bundled demo model: loads with its prebuilt indexes (every entity and fragment)", async () => {
  const { model, indexes, data } = await bundled();
  assert.is(indexes.how.el, "loaded");
  assert.is(indexes.how.mh, "loaded");
  assert.is(indexes.el.documentCount, data.elDocs.length);
  assert.is(indexes.el.count, data.elDocs.length, "one [SE] entry per entity");
  assert.is(indexes.mh.documentCount, data.mhDocs.length);
  assert.ok(model.tokenizer !== null, "the model directory has its tokenizer");
});

test("bundled demo model: entity linking on 5 fixed held-out sentences, both decodings, gives the recorded output and entities", async () => {
  const { model, indexes, data } = await bundled();
  const got: string[] = [];
  for (const rec of EL_RECORDS) {
    const s = data.elTest.find((x) => x.id === rec.id);
    assert.ok(s, `test sentence ${rec.id}`);
    const maxNewTokens = Math.min(ONEGEN_ENTITY_LINKING.maxNewTokens, 3 * model.tokenizer!.encode(s.text, { addSpecialTokens: false }).length + 16);
    const r = await runEntityLinking(model, indexes.el, { text: s.text }, { maxNewTokens, copyInput: rec.decoding === "copy-input" });
    got.push(`  { id: ${JSON.stringify(rec.id)}, decoding: ${JSON.stringify(rec.decoding)}, annotated: ${JSON.stringify(r.annotated)}, entities: ${JSON.stringify(r.mentions.map((m) => m.entity))} },`);
    if (RECORD) continue;
    assert.is(r.annotated, rec.annotated, `${rec.id} (${rec.decoding}): annotated output`);
    assert.equal(r.mentions.map((m) => m.entity), rec.entities, `${rec.id} (${rec.decoding}): linked entities`);
  }
  if (RECORD) console.log(got.join("\n"));
  assert.is(new Set(EL_RECORDS.map((r) => r.id)).size, 5);
  assert.equal([...new Set(EL_RECORDS.map((r) => r.decoding))].sort(), ["copy-input", "free"]);
});

test("bundled demo model: multi-hop QA on 5 fixed held-out questions gives the recorded retrievals and answers", async () => {
  const { model, indexes, data } = await bundled();
  assert.is(MH_RECORDS.length, 5);
  const got: string[] = [];
  for (const rec of MH_RECORDS) {
    const q = data.mhTest.find((x) => x._id === rec.id);
    assert.ok(q, `test question ${rec.id}`);
    const r = await runMultiHopQa(model, indexes.mh, { text: q.question }, { maxNewTokens: 256, stopAfterAnswer: true });
    const docs = r.retrievals.map((x) => x.hits[0]?.id ?? "(none)");
    got.push(`  { id: ${JSON.stringify(rec.id)}, docs: ${JSON.stringify(docs)}, answer: ${JSON.stringify(r.answer)} },`);
    if (RECORD) continue;
    assert.equal(docs, rec.docs, `${rec.id}: retrieved documents`);
    assert.is(r.answer, rec.answer, `${rec.id}: answer`);
  }
  if (RECORD) console.log(got.join("\n"));
});

/** Slack of the float64 reference check: logits (a generated id's logit vs the best) and cosine scores. */
const LOGIT_TOL = 2e-3;
const SCORE_TOL = 1e-3;

/**
 * Every generated id of a greedy run is the reference's best pick (within LOGIT_TOL of its best
 * logit: a near-tie may go either way on another device), and every retrieval's best hit scores
 * within SCORE_TOL of the reference's score for that entry and of the reference's best entry.
 */
function checkAgainstReference(ref: ReferenceModel, r: TaskResult, index: DocumentIndex, vectors: Float32Array, allowed: number, what: string): { worstGap: number; worstScore: number } {
  const V = ref.config.vocabSize;
  const D = ref.config.hiddenSize;
  const { hidden, logits } = referenceForward(ref, r.ids, "f16");
  let worstGap = 0;
  let worstScore = 0;
  let generated = 0;
  for (const s of r.trace.segments) {
    if (s.kind !== "generated") continue;
    for (let p = s.start; p < s.end; p++) {
      const row = logits.subarray((p - 1) * V, p * V);
      let best = -Infinity;
      for (let v = 0; v < allowed; v++) best = Math.max(best, row[v]!);
      const gap = best - row[r.ids[p]!]!;
      worstGap = Math.max(worstGap, gap);
      assert.ok(gap <= LOGIT_TOL, `${what}: id ${r.ids[p]} at position ${p} is ${gap} below the reference's best logit`);
      generated++;
    }
  }
  assert.ok(generated > 0, `${what}: no generated ids`);
  assert.ok(r.retrievals.length > 0, `${what}: no retrievals`);
  for (const ret of r.retrievals) {
    const hit = ret.hits[0]!;
    const q = hidden.slice(ret.position * D, (ret.position + 1) * D);
    const all = cosineTopKReference(q, vectors, index.count, D, index.count);
    const mine = all.scores[Array.from(all.ids).indexOf(hit.entry)]!;
    worstScore = Math.max(worstScore, Math.abs(hit.score - mine), all.scores[0]! - mine);
    assert.ok(Math.abs(hit.score - mine) <= SCORE_TOL, `${what}: retrieval at ${ret.position}: score ${hit.score}, reference ${mine}`);
    assert.ok(all.scores[0]! - mine <= SCORE_TOL, `${what}: retrieval at ${ret.position}: entry ${hit.entry} scores ${mine}, the reference's best ${all.ids[0]} ${all.scores[0]}`);
  }
  return { worstGap, worstScore };
}

test("bundled demo model: runs agree with a CPU forward of the float64 op references (greedy picks and retrieval scores, within tolerances)", async () => {
  const { model, indexes, data } = await bundled();
  const ref = await loadReferenceModel(join(MODEL, "model.safetensors"), model.config);
  const allowed = Math.min(model.decoder.vocabSize, model.tokenizer!.vocabSize);
  const elVectors = await indexes.el.readVectors();
  const mhVectors = await indexes.mh.readVectors();
  let gap = 0;
  let score = 0;
  const t0 = performance.now();
  let tokens = 0;
  for (const id of ["el-test-001"]) {
    const s = data.elTest.find((x) => x.id === id)!;
    const maxNewTokens = Math.min(ONEGEN_ENTITY_LINKING.maxNewTokens, 3 * model.tokenizer!.encode(s.text, { addSpecialTokens: false }).length + 16);
    const r = await runEntityLinking(model, indexes.el, { text: s.text }, { maxNewTokens });
    const w = checkAgainstReference(ref, r, indexes.el, elVectors, allowed, id);
    tokens += r.ids.length;
    gap = Math.max(gap, w.worstGap);
    score = Math.max(score, w.worstScore);
  }
  for (const id of ["mh-test-003"]) {
    const q = data.mhTest.find((x) => x._id === id)!;
    const r = await runMultiHopQa(model, indexes.mh, { text: q.question }, { maxNewTokens: 256, stopAfterAnswer: true });
    const w = checkAgainstReference(ref, r, indexes.mh, mhVectors, allowed, id);
    tokens += r.ids.length;
    gap = Math.max(gap, w.worstGap);
    score = Math.max(score, w.worstScore);
  }
  console.log(`  demo model vs the float64 reference forward: worst logit gap of a pick ${gap.toExponential(2)} (tolerance ${LOGIT_TOL}), worst retrieval score difference ${score.toExponential(2)} (tolerance ${SCORE_TOL}); ${tokens} tokens, ${Math.round(performance.now() - t0)} ms`);
});

test(`bundled demo model: multi-hop exact match on the held-out questions ≥ ${MH_EM_FLOOR} and above the trivial baseline`, async () => {
  const { model, indexes, data } = await bundled();
  const s = await evaluateModel(model, indexes, data, { limitEl: 0, limitMh: data.mhTest.length, retrievalProbe: false });
  const t = trivialScores(data, { el: 0, mh: data.mhTest.length });
  console.log(`  demo model, ${s.examples.mh} test questions: multi-hop EM ${s.multihop_em.toFixed(3)} F1 ${s.multihop_f1.toFixed(3)} (trivial ${t.multihop_em.toFixed(3)} / ${t.multihop_f1.toFixed(3)}); ${s.timing.mh_ms_per_question} ms/question`);
  assert.is(s.examples.mh, data.mhTest.length);
  assert.ok(s.multihop_em >= MH_EM_FLOOR, `multi-hop EM ${s.multihop_em} < ${MH_EM_FLOOR}`);
  assert.ok(s.multihop_em > t.multihop_em, `multi-hop EM ${s.multihop_em} not above the trivial baseline ${t.multihop_em}`);
});

test(`bundled demo model: entity-linking micro-F1 on the first ${EL_SUBSET} held-out sentences ≥ ${EL_F1_FLOOR} and above the trivial baseline`, async () => {
  const { model, indexes, data } = await bundled();
  const s = await evaluateModel(model, indexes, data, { limitEl: EL_SUBSET, limitMh: 0, copyInput: DEFAULT_EL_DECODING === "copy-input" });
  const t = trivialScores(data, { el: EL_SUBSET, mh: 0 });
  console.log(`  demo model, first ${EL_SUBSET} test sentences (${s.el_decoding} decoding): EL micro-F1 ${s.el_micro_f1.toFixed(3)} (trivial ${t.el_micro_f1.toFixed(3)}), MD F1 ${s.md_f1.toFixed(3)}, retrieval@1 ${s.retrieval_acc_at1_el.toFixed(3)}; ${s.timing.el_ms_per_sentence} ms/sentence`);
  assert.is(s.examples.el, EL_SUBSET);
  assert.ok(s.el_micro_f1 >= EL_F1_FLOOR, `EL micro-F1 ${s.el_micro_f1} < ${EL_F1_FLOOR}`);
  assert.ok(s.el_micro_f1 > t.el_micro_f1, `EL micro-F1 ${s.el_micro_f1} not above the trivial baseline ${t.el_micro_f1}`);
});

test.after(async () => {
  if (!bundle) return;
  const b = await bundle.catch(() => null);
  b?.indexes.dispose();
  b?.model.dispose();
});

test.run();
