// The demo's metrics (src/demo/metrics.ts) against hand-computed examples, the trivial baselines
// (src/demo/baselines.ts),
// and `onegen eval` / `onegen demo` end to end on a stand-in model: a tiny random
// LlamaForCausalLM written with the safetensors writer, with the demo tokenizer (scores near
// zero: only the mechanics and the JSON shape are checked), plus the "absent model" errors.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rm, readdir } from "node:fs/promises";
import { assertRejects } from "./helpers/check.js";
import { loadDemoData, type ElGold } from "../src/demo/data.js";
import { accuracyAt1, answerF1, entityLinkingF1, exactMatch, extractMentions, mentionDetectionF1, multiHopScores, multisetPrf, normalizeAnswer, type ElPrediction } from "../src/demo/metrics.js";
import { dictionaryMentions, lexicalRetrieve, lexicalDocs, mostFrequentEntity, mostFrequentEntityLinking, surfaceTable, trivialScores } from "../src/demo/baselines.js";
import { openDemoIndexes } from "../src/demo/indexes.js";
import { evalCommand, requireModelDir } from "../src/cli/eval.js";
import { demoCommand } from "../src/cli/demo.js";
import { LoadError, UsageError } from "../src/errors.js";
import { gpu } from "./helpers/gpu.js";
import { loadDecoder } from "../src/model/load.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { scratchDir } from "./helpers/scratch.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = join(ROOT, "demo", "data");
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: got ${a}, want ${b}`);

// ------------------------------------------------------------------ metrics

test("multisetPrf: OneGen's my_f1 counts duplicates as separate units", () => {
  // gold a,a,b; pred a,c → keys 0-a,1-a,0-b vs 0-a,0-c: tp 1, fp 1, fn 2
  const r = multisetPrf(["a", "a", "b"], ["a", "c"]);
  assert.equal([r.tp, r.fp, r.fn], [1, 1, 2]);
  close(r.precision, 1 / 2, "P");
  close(r.recall, 1 / 3, "R");
  close(r.f1, 0.4, "F1"); // 2·(1/2)(1/3)/(5/6)
  // duplicate predictions of a single gold unit: only one matches
  const d = multisetPrf(["a"], ["a", "a", "a"]);
  assert.equal([d.tp, d.fp, d.fn], [1, 2, 0]);
  close(d.f1, 0.5, "dup F1"); // P 1/3, R 1
  // empty predictions and empty gold
  assert.equal(multisetPrf(["a"], []), { precision: 0, recall: 0, f1: 0, tp: 0, fp: 0, fn: 1 });
  assert.equal(multisetPrf([], []), { precision: 0, recall: 0, f1: 0, tp: 0, fp: 0, fn: 0 });
});

const GOLD: ElGold[] = [
  {
    id: "s0",
    text: "Mara Voss met Mara Voss in Lindvale.",
    labels: [
      { span: [0, 9], entity_id: "P1" },
      { span: [14, 23], entity_id: "P2" },
      { span: [27, 35], entity_id: "C1" },
    ],
  },
  { id: "s1", text: "Orvex Labs hired Ada.", labels: [{ span: [0, 10], entity_id: "O1" }, { span: [17, 20], entity_id: "Unknown" }] },
];

test("entityLinkingF1: OneGen's units (doc, stripped surface, id); duplicates, partial mentions, Unknown, empty", () => {
  const preds: ElPrediction[] = [
    {
      output: null,
      mentions: [
        { mention: " Mara Voss ", entity: "P1" }, // stripped → correct
        { mention: "Mara Voss", entity: "P1" }, // second occurrence of (s0, Mara Voss, P1): gold has P2 → FP
        { mention: "Lindvale", entity: "C1" }, // correct
        { mention: null, entity: "C9" }, // an [LK] without a mention: ignored
      ],
    },
    {
      output: null,
      mentions: [
        { mention: "Orvex", entity: "O1" }, // partial mention → FP (and the gold O1 is missed)
        { mention: "Ada", entity: "P7" }, // equals an Unknown gold surface: dropped
      ],
    },
  ];
  const r = entityLinkingF1(GOLD, preds);
  // gold units: (0,Mara Voss,P1) (0,Mara Voss,P2) (0,Lindvale,C1) (1,Orvex Labs,O1) = 4
  // pred units: (0,Mara Voss,P1)×2 (0,Lindvale,C1) (1,Orvex,O1) = 4; tp 2
  assert.equal([r.tp, r.fp, r.fn], [2, 2, 2]);
  close(r.f1, 0.5, "F1");
  // the same mention in another document does not match
  const wrongDoc = entityLinkingF1(GOLD, [{ output: null, mentions: [] }, { output: null, mentions: [{ mention: "Lindvale", entity: "C1" }] }]);
  assert.equal([wrongDoc.tp, wrongDoc.fp, wrongDoc.fn], [0, 1, 4]);
  // empty predictions
  const none = entityLinkingF1(GOLD, [{ output: null, mentions: [] }, { output: null, mentions: [] }]);
  assert.equal([none.tp, none.fp, none.fn, none.f1], [0, 0, 4, 0]);
  // all correct
  const all = entityLinkingF1(GOLD, [
    { output: null, mentions: [{ mention: "Mara Voss", entity: "P2" }, { mention: "Mara Voss", entity: "P1" }, { mention: "Lindvale", entity: "C1" }] },
    { output: null, mentions: [{ mention: "Orvex Labs", entity: "O1" }] },
  ]);
  close(all.f1, 1, "all-correct F1");
  assert.throws(() => entityLinkingF1(GOLD, []), /2 gold sentences, 0 predictions/);
});

test("mentionDetectionF1 and extractMentions: per document by default, pooled as OneGen's script", () => {
  assert.equal(extractMentions("<MENTION>a b</MENTION>[LK] x <MENTION>c</MENTION> <MENTION>open"), ["a b", "c"]);
  const preds: ElPrediction[] = [
    { output: "<MENTION>Mara Voss</MENTION>[LK][_CONTINUE_] met Mara Voss in <MENTION>Lindvale</MENTION>[LK][_CONTINUE_]. <MENTION>Orvex Labs</MENTION>", mentions: [] },
    { output: null, mentions: [] },
  ];
  // gold: (0,Mara Voss)×2 (0,Lindvale) (1,Orvex Labs) (1,Ada) = 5; pred (0,Mara Voss) (0,Lindvale) (0,Orvex Labs) = 3
  const r = mentionDetectionF1(GOLD, preds);
  assert.equal([r.tp, r.fp, r.fn], [2, 1, 3]);
  close(r.f1, 2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5), "MD F1");
  const pooled = mentionDetectionF1(GOLD, preds, { pooled: true });
  assert.equal([pooled.tp, pooled.fp, pooled.fn], [3, 0, 2]); // Orvex Labs matches across documents
});

test("normalizeAnswer / exactMatch / answerF1 / multiHopScores: SQuAD-HotpotQA rules", () => {
  assert.is(normalizeAnswer("  The  Lindvale, Inc.! "), "lindvale inc");
  assert.is(normalizeAnswer("an apple a day"), "apple day");
  assert.is(exactMatch("the Lindvale.", "Lindvale"), 1);
  assert.is(exactMatch(null, "Lindvale"), 0);
  assert.is(exactMatch(null, "None"), 1); // a missing answer is the string "None", as OneGen's str(None)
  close(answerF1("Orvex Labs Kestport", "Orvex Labs"), (2 * (2 / 3) * 1) / (2 / 3 + 1), "partial F1");
  assert.is(answerF1("yes", "no"), 0);
  assert.is(answerF1("no", "no"), 1);
  assert.is(answerF1("Labs Labs", "Labs"), 2 * 0.5 * 1 / 1.5); // repeated tokens count once per gold occurrence
  const s = multiHopScores(["Lindvale", null, "Orvex"], ["lindvale", "1954", "Orvex Labs"]);
  close(s.em, 1 / 3, "EM");
  close(s.f1, (1 + 0 + 2 / 3) / 3, "F1");
  assert.equal(multiHopScores([], []), { em: 0, f1: 0 });
  const a = accuracyAt1(["P1", "P2", "C1"], ["P1", null, "C2"]);
  assert.equal(a, { correct: 1, total: 3, accuracy: 1 / 3 });
});

test("trivial baselines: dictionary mentions, most frequent entity, lexical retrieval", () => {
  assert.equal(dictionaryMentions("Mara Voss met Mara Vossberg in Lindvale.", ["Mara Voss", "Lindvale", "Mara"]), [[0, 9], [14, 18], [31, 39]]);
  const kb = [
    { id: "P2", type: "person", name: "Mara Voss", description: "" },
    { id: "P1", type: "person", name: "Mara Voss", description: "" },
    { id: "C1", type: "city", name: "Lindvale", description: "" },
  ];
  const table = surfaceTable(kb, [GOLD[0]!, { id: "x", text: "Mara Voss", labels: [{ span: [0, 9], entity_id: "P2" }] }]);
  assert.is(mostFrequentEntity(table, "Mara Voss"), "P2"); // P2 seen twice, P1 once
  assert.is(mostFrequentEntity(table, "Lindvale"), "C1");
  assert.is(mostFrequentEntity(table, "Nowhere"), null);
  const tie = surfaceTable(kb, []);
  assert.is(mostFrequentEntity(tie, "Mara Voss"), "P1"); // unseen: the smallest id
  const p = mostFrequentEntityLinking("Then Mara Voss left Lindvale.", table);
  assert.is(p.output, "Then <MENTION>Mara Voss</MENTION>[LK][_CONTINUE_] left <MENTION>Lindvale</MENTION>[LK][_CONTINUE_].");
  assert.equal(p.mentions, [{ mention: "Mara Voss", entity: "P2" }, { mention: "Lindvale", entity: "C1" }]);
  const docs = lexicalDocs([
    { id: "A", text: "Mara Voss is a chemist born in Lindvale.[SE]" },
    { id: "B", text: "Mara Voss is a painter born in Kestport.[SE]" },
  ]);
  assert.equal(lexicalRetrieve("the painter Mara Voss", docs), { id: "B", score: 3 });
  assert.equal(lexicalRetrieve("Mara Voss", docs), { id: "A", score: 2 }); // tie: the first
});

test("trivial scores on the committed demo data: defined, and below a perfect linker on ambiguous names", async () => {
  const data = await loadDemoData(DATA, "test");
  const t = trivialScores(data);
  for (const k of ["el_micro_f1", "md_f1", "retrieval_acc_at1", "multihop_em", "multihop_f1"] as const) assert.ok(t[k] >= 0 && t[k] <= 1, `${k} = ${t[k]}`);
  assert.ok(t.md_f1 > 0.9, `dictionary mention detection finds the KB names: ${t.md_f1}`);
  assert.ok(t.el_micro_f1_ambiguous < 0.75, `most-frequent entity cannot resolve ambiguous names: ${t.el_micro_f1_ambiguous}`);
  assert.ok(t.el_micro_f1 < 0.95, `trivial EL micro-F1 ${t.el_micro_f1}`);
});

// ------------------------------------------------------------------ end to end on a random model

/** A tiny random LlamaForCausalLM with the demo tokenizer (scripts/demo/init_model.mjs), in a temporary directory. */
async function standInModel(root: string): Promise<string> {
  const { initModel } = (await import(pathToFileURL(join(ROOT, "scripts", "demo", "init_model.mjs")).href)) as {
    initModel(o: Record<string, unknown>): Promise<{ out: string }>;
  };
  const dir = join(root, "model");
  await initModel({ out: dir, data: DATA, seed: 1010, hidden: 32, layers: 2, heads: 2, "kv-heads": 1, intermediate: 64, "max-positions": 1024 });
  return dir;
}

async function capture(fn: () => Promise<number>): Promise<{ rc: number; out: string; err: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  let out = "";
  let err = "";
  const grab = (sink: (s: string) => void) =>
    ((chunk: string | Uint8Array) => {
      sink(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString());
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = grab((s) => (out += s));
  process.stderr.write = grab((s) => (err += s));
  try {
    return { rc: await fn(), out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

let fixture: Promise<{ root: string; model: string; index: string }> | null = null;
function standIn() {
  return (fixture ??= (async () => {
    const root = scratchDir("demo");
    return { root, model: await standInModel(root), index: join(root, "index") };
  })());
}

test("copy-input entity linking on a random stand-in model: whatever it samples, the output is the input with mention markup", async () => {
  const { model: dir, root } = await standIn();
  const index = join(root, "index-copy-input");
  const ctx = await gpu();
  const data = await loadDemoData(DATA, "test");
  const model = await loadDecoder(ctx, dir, { dtype: "f32" });
  const indexes = await openDemoIndexes(ctx, model, index, data, { build: true });
  const strip = (s: string) => s.replace(/<MENTION>|<\/MENTION>|\[LK\]|\[_CONTINUE_\]/g, "");
  try {
    let mentions = 0;
    for (const [i, s] of data.elTest.slice(0, 6).entries()) {
      // sampling at a high temperature: the random model takes every kind of allowed step
      const r = await runEntityLinking(model, indexes.el, { text: s.text }, { copyInput: true, temperature: 3, seed: 40 + i, maxNewTokens: 200 });
      assert.is(r.finish, "eos", `${s.id}: ends with </s> once the input is written`);
      assert.is(strip(r.annotated!), s.text + "</s>", `${s.id}: ${r.annotated}`);
      for (const m of r.mentions) {
        assert.ok(m.span !== null, `${s.id}: mention ${JSON.stringify(m.mention)} maps to the input`);
        assert.is(s.text.slice(m.span[0], m.span[1]), m.mention);
        mentions++;
      }
      assert.is(r.retrievals.length, r.mentions.length, `${s.id}: one [LK] retrieval per mention`);
      // greedy: the two-pass baseline under the same rule writes the same ids
      const one = await runEntityLinking(model, indexes.el, { text: s.text }, { copyInput: true, maxNewTokens: 200 });
      const two = await runEntityLinking(model, indexes.el, { text: s.text }, { copyInput: true, maxNewTokens: 200, twoPass: true });
      assert.equal(two.ids, one.ids, `${s.id}: two-pass = one-pass`);
      assert.is(strip(one.annotated!), s.text + "</s>");
    }
    assert.ok(mentions >= 3, `the sampled runs opened mentions (${mentions})`);
    const free = await runEntityLinking(model, indexes.el, { text: data.elTest[0]!.text }, { maxNewTokens: 40 });
    assert.not.equal(strip(free.annotated!), data.elTest[0]!.text + "</s>", "without the rule the random model does not copy (the test can tell)");
  } finally {
    indexes.dispose();
    model.dispose();
  }
});

test("onegen demo on a stand-in model: builds and saves both indexes, prints examples and held-out scores", async () => {
  const { model, index } = await standIn();
  const r = await capture(() => demoCommand(["--model", model, "--index", index, "--data", DATA, "--examples", "1", "--limit", "1", "--quiet"]));
  assert.is(r.rc, 0, r.err);
  if (process.env.DEMO_TEST_VERBOSE) process.stdout.write(r.out);
  assert.match(r.out, /indexes .*: entities \d+ \(built\), fragments \d+ \(built\)/);
  assert.match(r.out, /entity linking \(held-out sentences; free decoding, as OneGen\)/);
  assert.match(r.out, /multi-hop QA \(held-out questions\)/);
  assert.match(r.out, /question: .*\n(  hop 1: retrieved .*\n)?(  hop 2: retrieved .*\n)?  answer: .* gold: ".*"/);
  assert.match(r.out, /entity linking micro-F1 +\d\.\d{3} +\(copy-input decoding \d\.\d{3}; trivial most-frequent entity \d\.\d{3}\)/);
  assert.match(r.out, /entity-linking decoding: free \(--el-decoding copy-input for the other\)/);
  assert.match(r.out, /timing: \d+ ms per sentence, \d+ ms per question/);
  assert.equal((await readdir(index)).sort(), ["el", "mhqa"]);
  const copy = await capture(() => demoCommand(["--model", model, "--index", index, "--data", DATA, "--examples", "1", "--limit", "1", "--quiet", "--el-decoding", "copy-input"]));
  assert.is(copy.rc, 0, copy.err);
  assert.match(copy.out, /entity linking \(held-out sentences; copy-input decoding: the output is the input/);
  assert.match(copy.out, /entity linking micro-F1 +\d\.\d{3} +\(free decoding \d\.\d{3};/);
  await assertRejects(() => demoCommand(["--model", model, "--index", index, "--data", DATA, "--el-decoding", "greedy"]), UsageError, [/--el-decoding must be one of copy-input, free, got 'greedy'/], "demo");
  // --input: entity linking on the user's sentence, with the saved indexes loaded
  const u = await capture(() => demoCommand(["--model", model, "--index", index, "--data", DATA, "--input", "The chemist Mara Voss was born in Lindvale.", "--quiet"]));
  assert.is(u.rc, 0, u.err);
  if (process.env.DEMO_TEST_VERBOSE) process.stdout.write(u.out);
  assert.match(u.out, /\(loaded\).*\(loaded\)/);
  assert.match(u.out, /input: +The chemist Mara Voss was born in Lindvale\./);
  assert.match(u.out, /\d+ tokens, \d+ retrieval\(s\), \d+ ms, one-pass/);
  // both decodings; copy-input writes the input's ids (the stand-in's vocabulary lacks "Voss" and "Lindvale": <unk>)
  const copied = /decoding: free \(as OneGen\)\n  output: .*\n[^]*decoding: copy-input \(the output is the input with mention markup\)\n  output: +(.*)\n/.exec(u.out);
  assert.ok(copied, u.out);
  assert.is(copied[1]!.replace(/<MENTION>|<\/MENTION>|\[LK\]|\[_CONTINUE_\]/g, ""), "The chemist Mara<unk> was born in<unk>.</s>");
});

test("onegen eval --json on a stand-in model: the issue's JSON shape (two-pass included by default), scores in [0, 1]", async () => {
  const { model, index } = await standIn();
  const r = await capture(() => evalCommand(["--model", model, "--index", index, "--data", DATA, "--json", "--limit", "2", "--max-new-tokens", "12", "--build-index"]));
  assert.is(r.rc, 0, r.err);
  const j = JSON.parse(r.out) as Record<string, unknown>;
  const keys = ["el_micro_f1", "md_f1", "retrieval_acc_at1", "multihop_em", "multihop_f1"];
  for (const part of [j, j.two_pass as Record<string, unknown>, j.trivial as Record<string, unknown>]) {
    assert.ok(part && typeof part === "object", "two_pass and trivial are objects");
    for (const k of keys) {
      const v = part[k];
      assert.ok(typeof v === "number" && v >= 0 && v <= 1, `${k} = ${String(v)}`);
    }
  }
  assert.is(j.split, "test");
  assert.equal(j.examples, { el: 2, mh: 2 });
  assert.is(j.mode, "one-pass");
  assert.is(j.el_decoding, "free", "the default entity-linking decoding (OneGen's) is reported");
  assert.is((j.two_pass as Record<string, unknown>).mode, "two-pass");
  // greedy decoding: the two-pass baseline reproduces the one-pass outputs, hence the same scores
  for (const k of ["el_micro_f1", "md_f1", "multihop_em", "multihop_f1"]) assert.is((j.two_pass as Record<string, number>)[k], j[k], k);
  const one = await capture(() => evalCommand(["--model", model, "--index", index, "--data", DATA, "--json", "--no-two-pass", "--limit", "1", "--max-new-tokens", "12"]));
  assert.is(one.rc, 0, one.err);
  assert.is((JSON.parse(one.out) as Record<string, unknown>).two_pass, null, "--no-two-pass skips the baseline");
  await assertRejects(() => evalCommand(["--model", model, "--index", index, "--data", DATA, "--two-pass", "--no-two-pass"]), UsageError, [/contradict/], "eval");
});

test("absent model: `onegen eval` / `onegen demo` say how to produce it; a missing index is refused without --build-index", async () => {
  const { root, model } = await standIn();
  const missing = join(root, "no-model");
  await assertRejects(() => evalCommand(["--model", missing, "--data", DATA, "--json"]), LoadError, [/no-model' has no config\.json/], "eval, missing --model");
  await assertRejects(() => demoCommand(["--model", missing, "--data", DATA]), LoadError, [/no-model' has no config\.json/], "demo, missing --model");
  // the bundled default (demo/model ships with the package): its own message and how to produce it
  const b = (await assertRejects(() => requireModelDir(missing, true), LoadError, [/bundled demo model .*no-model' does not exist/], "bundled default missing")) as LoadError;
  assert.match(b.hint ?? "", /make_data\.mjs.*onegen train/);
  await assertRejects(
    () => evalCommand(["--model", model, "--index", join(root, "no-index"), "--data", DATA, "--json", "--limit", "1"]),
    LoadError,
    [/no-index[\\/]el' does not exist/, /run `onegen demo` once/],
    "eval, missing index",
  );
});

test.after(async () => {
  if (fixture) await rm((await fixture).root, { recursive: true, force: true });
});

test.run();
