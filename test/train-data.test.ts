// OneGen training data (src/train/data.ts): parsing train.jsonl/db.jsonl in OneGen's format,
// masking rules, uid resolution, validation errors naming file, line and field, and collation
// into packed batches (generation, anchor, positive and negative document rows).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { LoadError } from "../src/errors.js";
import { Tokenizer } from "../src/tokenizer.js";
import { collate, TrainData, type DataSpec } from "../src/train/data.js";
import { IGNORE_LABEL, validateContrastive } from "../src/train/losses.js";
import { Rng } from "../src/util/rng.js";
import { toyTokenizerJson, TOY_TOKENIZER_CONFIG, toyVocab } from "./fixtures/train-data/toy.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test", "fixtures", "train-data");
const TRAIN = readFileSync(join(DIR, "mh-train.jsonl"), "utf8");
const DB = readFileSync(join(DIR, "mh-db.jsonl"), "utf8");
const tok = new Tokenizer(toyTokenizerJson(), TOY_TOKENIZER_CONFIG, { addedTokens: ["[SE]", "[LK]", "<paragraph>", "</paragraph>"] });
const V = toyVocab().length;
const [SE, LK, P_OPEN, P_CLOSE] = [V, V + 1, V + 2, V + 3];
const id = (w: string) => tok.requireTokenId(w);

function spec(over: Partial<DataSpec> = {}): DataSpec {
  return { retrievalTokenIds: [LK], docTokenIds: [SE], maskSpans: [[P_OPEN, P_CLOSE]], maxLength: 64, tokenizer: tok, vocabSize: V + 4, ...over };
}
const files = { train: "mh-train.jsonl", db: "mh-db.jsonl" };
const parse = (train = TRAIN, db = DB, over: Partial<DataSpec> = {}) => TrainData.parse(train, db, spec(over), files);

function rejects(fn: () => unknown, ...patterns: RegExp[]): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof LoadError, `expected a LoadError, got ${String(e)}`);
    for (const p of patterns) assert.match((e as Error).message, p);
    return;
  }
  assert.unreachable(`expected an error matching ${patterns.join(" ")}`);
}

test("tokens: the toy tokenizer gives the added tokens single ids after the vocabulary", () => {
  assert.equal([SE, LK, P_OPEN, P_CLOSE], [...tok.addedTokenIds]);
  assert.equal(tok.encode("find k0 [LK] <paragraph> k0 </paragraph>", { addSpecialTokens: false }), [id("find"), id("k0"), LK, P_OPEN, id("k0"), P_CLOSE]);
});

test("documents: message, text and id forms; entries at [SE] outside the prompt; uid fragments", () => {
  const d = parse();
  assert.equal(d.docs.map((x) => x.uid), ["E0", "E1", "E2", "E3"]);
  const e0 = d.docs[0]!.seq;
  // "describe the entity" (prompt, masked) + "k0 d0 f1 [SE] k0 a0 f2 [SE]" (trained)
  assert.equal(e0.ids, [id("describe"), id("the"), id("entity"), id("k0"), id("d0"), id("f1"), SE, id("k0"), id("a0"), id("f2"), SE]);
  assert.equal(e0.reprPositions, [6, 10]);
  assert.equal([...e0.target], [0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1], "prompt masked; the token after [SE] masked");
  const e2 = d.docs[2]!.seq; // text document: "{text}[SE]", context only
  assert.equal(e2.ids, [id("k2"), id("d2"), id("f4"), SE]);
  assert.equal(e2.reprPositions, [3]);
  assert.equal([...e2.target], [0, 0, 0, 0]);
  assert.equal(d.docs[3]!.seq.ids, [22, 23, 9, SE]);
  assert.equal(d.resolve("E0-1", "x"), { doc: 0, fragment: 1, uid: "E0-1" });
  assert.equal(d.resolve("E2", "x"), { doc: 2, fragment: 0, uid: "E2" });
  assert.equal(d.entries().map((e) => e.uid), ["E0", "E0-1", "E1", "E2", "E3"]);
  // a text template
  const t = parse(TRAIN, DB, { docTemplate: "entity {text} {doc_token}" });
  assert.equal(t.docs[2]!.seq.ids, [id("entity"), id("k2"), id("d2"), id("f4"), SE]);
});

test("samples: prompt masked, <paragraph> spans masked, the label after [LK] masked, positives per [LK]", () => {
  const d = parse();
  assert.is(d.samples.length, 4);
  const s0 = d.samples[0]!;
  const words = "who is k0 find k0 [LK] <paragraph> k0 d0 f1 </paragraph> is a0 [LK] <paragraph> k0 a0 </paragraph> d0".split(" ");
  assert.equal(s0.seq.ids, words.map((w) => id(w)));
  //              who is k0 | find k0 [LK] <p> k0 d0 f1 </p> is a0 [LK] <p> k0 a0 </p> d0
  const want = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1];
  assert.equal([...s0.seq.target], want);
  assert.equal(s0.seq.reprPositions, [5, 13]);
  assert.equal(s0.positives.map((p) => p.map((r) => r.uid)), [["E0"], ["E0-1"]]);
  assert.equal(s0.negatives.map((p) => p.map((r) => r.uid)), [["E1", "E2"], ["E3"]]);
  // system + user are prompt; a list of two positives
  const s1 = d.samples[1]!;
  assert.equal(s1.positives[0]!.map((r) => r.uid), ["E1", "E2"]);
  assert.equal([...s1.seq.target].slice(0, 5), [0, 0, 0, 0, 0]);
  // no retrieval token; and a pre-tokenized sample whose [LK] has no positive
  assert.equal(d.samples[2]!.positives, []);
  assert.equal(d.samples[3]!.seq.ids, [9, 10, 22, 5, 22, LK, 10, 23]);
  assert.equal(d.samples[3]!.positives, [[]]);
});

test("validation: errors name the file, the line and the field", () => {
  const lines = TRAIN.trim().split("\n");
  const withLine = (i: number, s: string) => lines.map((l, j) => (j === i ? s : l)).join("\n");
  rejects(() => parse(withLine(1, "{not json")), /mh-train\.jsonl:2: not valid JSON/);
  rejects(() => parse(withLine(0, lines[0]!.replace(', "E0-1"]', "]").replace(', ["E3"]]', "]"))), /mh-train\.jsonl:1: messages\[1\]: 2 retrieval tokens in the content but 1 entries in "positive"/);
  rejects(() => parse(withLine(0, lines[0]!.replace(', ["E3"]]', "]"))), /mh-train\.jsonl:1: messages\[1\]: 2 retrieval tokens in the content but 1 lists in "negative"/);
  rejects(() => parse(withLine(1, lines[1]!.replace('"E2"]]', '"E9"]]'))), /mh-train\.jsonl:2: messages\[2\]\.positive\[0\]\[1\]: unknown uid 'E9'/, /mh-db\.jsonl/);
  rejects(() => parse(withLine(1, lines[1]!.replace('[["E0-1"]]', '[["E1-3"]]'))), /mh-train\.jsonl:2: messages\[2\]\.negative\[0\]\[0\]: uid 'E1-3' names entry 3 of document 'E1', which has 1/);
  rejects(() => parse(TRAIN, DB, { maxLength: 12 }), /mh-train\.jsonl:1: 19 tokens, over the maximum length of 12/);
  rejects(() => parse(TRAIN, DB, { maxLength: 10 }), /mh-db\.jsonl:1: 11 tokens, over the maximum length of 10/);
  rejects(() => parse(withLine(0, lines[0]!.replace("a0 </paragraph> d0", "a0 d0"))), /mh-train\.jsonl:1: messages\[1\]: a masked span opened by token/);
  rejects(() => parse(withLine(2, '{"messages": [{"role": "bot", "content": "x"}]}')), /mh-train\.jsonl:3: messages\[0\]\.role: must be system, user or assistant/);
  rejects(() => parse(withLine(2, '{"messages": [{"role": "assistant", "content": "is [LK]"}]}')), /mh-train\.jsonl:3: messages\[0\]: 1 retrieval token but no "positive" list/);
  rejects(() => parse(withLine(3, '{"messages": [{"role": "user", "ids": [9, 9999]}]}')), /mh-train\.jsonl:4: messages\[0\]\.ids: token id 9999 is outside the vocabulary/);
  rejects(() => parse(TRAIN, DB.replace('"uid": "E1"', '"uid": "E0"')), /mh-db\.jsonl:2: uid 'E0' is already used on line 1/);
  rejects(() => parse(TRAIN, DB.replace('"k1 d1 f3 [SE]"', '"k1 d1 f3"')), /mh-db\.jsonl:2: document 'E1' holds no document token/);
  rejects(() => parse(TRAIN, DB, { tokenizer: null }), /mh-db\.jsonl:1: messages\[0\]\.content: text needs a tokenizer/);
});

test("collate: OneGen row order, valid contrastive spec, negatives never a pair's own positive, seeded", () => {
  const d = parse();
  const c = collate(d, [2, 0, 1, 3], new Rng(5), { nNegPerPos: 2 });
  const b = c.batch;
  // rows: generation-only (samples 2 and 3), anchors (0, 1), positive documents, negative documents
  assert.equal(c.rows.generation, 2);
  assert.equal(c.rows.anchor, 2);
  assert.is(b.lengths[0], d.samples[2]!.seq.ids.length);
  assert.is(b.lengths[1], d.samples[3]!.seq.ids.length);
  assert.is(b.lengths[2], d.samples[0]!.seq.ids.length);
  assert.is(b.lengths[3], d.samples[1]!.seq.ids.length);
  assert.is(b.lengths.length, 4 + c.rows.positive + c.rows.negative);
  assert.is(b.ids.length, c.tokens);
  const r = b.retrieval!;
  validateContrastive(r, b.ids.length);
  assert.is(c.pairs, 3);
  assert.is(r.pairs.length, 3);
  // anchors sit on [LK] rows, documents on [SE] rows
  for (const p of r.pairs) assert.is(b.ids[p.anchor], LK);
  for (const row of r.docs) assert.is(b.ids[row], SE);
  // sample 1's positive is E1 or E2, and neither is among its negatives
  const p2 = r.pairs[2]!;
  for (const n of p2.negatives ?? []) assert.ok(n !== p2.positive);
  // every pair has nNegPerPos hard negatives (short lists topped up from the database)
  for (const p of r.pairs) assert.is(p.negatives!.length, 2);
  // labels: masked exactly where the target flags say
  let gen = 0;
  for (let t = 0; t < b.labels.length; t++) if (b.labels[t] !== IGNORE_LABEL) gen++;
  assert.is(gen, c.genTokens);
  // same seed, same batch; no random top-up when disabled
  assert.equal(JSON.stringify(collate(d, [2, 0, 1, 3], new Rng(5), { nNegPerPos: 2 })), JSON.stringify(c));
  const strict = collate(d, [0], new Rng(1), { nNegPerPos: 4, randomNegatives: false });
  assert.equal(strict.batch.retrieval!.pairs.map((p) => p.negatives!.length), [2, 1]);
  // only generation rows: no contrastive term
  const g = collate(d, [2, 3], new Rng(1));
  assert.is(g.batch.retrieval, undefined);
  assert.is(g.pairs, 0);
  // n_pos_per_sent = 1 keeps one [LK] of sample 0
  assert.is(collate(d, [0], new Rng(3), { nPosPerSample: 1 }).pairs, 1);
});

test.run();
