// The demo data generator (scripts/demo/make_data.mjs) and the demo tokenizer
// (src/demo/tokenizer-builder.ts): determinism, the committed demo/data is the generator's output,
// splits do not overlap, ambiguity is present in the test split, the OneGen training format is
// consistent (one positive/negative list per retrieval token, every uid in the db, injected
// paragraphs equal the stored documents), and the tokenizer loads, keeps every special token one
// id and round-trips every text.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readFile, stat, rm } from "node:fs/promises";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../src/onegen/defaults.js";
import { markerIdsOf } from "../src/onegen/token-names.js";
import { Tokenizer } from "../src/tokenizer.js";
import { allSpecialTokens, buildDemoTokenizer, demoCorpusTexts, ONEGEN_TOKENS, pretokenize, writeDemoTokenizer } from "../src/demo/tokenizer-builder.js";
import { loadDemoData, type ElGold, type MhGold } from "../src/demo/data.js";
import { scratchDir } from "./helpers/scratch.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = join(ROOT, "demo", "data");

interface MakeData {
  DEMO_SEED: number;
  EL_INPUT_TEMPLATE: string;
  MH_INPUT_TEMPLATE: string;
  TOKENS: Record<string, string>;
  generateDemoData(seed?: number): { files: Map<string, string>; stats: Record<string, unknown> };
}
let mod: Promise<MakeData> | null = null;
const makeData = (): Promise<MakeData> => (mod ??= import(pathToFileURL(join(ROOT, "scripts", "demo", "make_data.mjs")).href) as Promise<MakeData>);

interface Msg {
  role: string;
  content: string;
  positive?: string[];
  negative?: string[][];
}
const jsonl = <T>(text: string): T[] => text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as T);
const count = (s: string, sub: string): number => s.split(sub).length - 1;

test("make_data: deterministic for a seed, different for another, and the committed demo/data is its output", async () => {
  const m = await makeData();
  const a = m.generateDemoData(m.DEMO_SEED);
  const b = m.generateDemoData(m.DEMO_SEED);
  assert.equal([...a.files.keys()], [...b.files.keys()]);
  for (const [k, v] of a.files) assert.ok(b.files.get(k) === v, `${k} differs between two runs with the same seed`);
  const c = m.generateDemoData(m.DEMO_SEED + 1);
  assert.ok(c.files.get("el/gold_test.jsonl") !== a.files.get("el/gold_test.jsonl"), "another seed gives other sentences");
  let bytes = 0;
  for (const [rel, text] of a.files) {
    const committed = await readFile(join(DATA, rel), "utf8");
    assert.ok(committed === text, `demo/data/${rel} is not the generator's output: run node scripts/demo/make_data.mjs`);
    bytes += (await stat(join(DATA, rel))).size;
  }
  assert.ok(bytes < 4 << 20, `demo/data is ${bytes} bytes (keep it a few MB)`);
});

test("make_data: templates and token names are OneGen's (src/onegen/defaults.ts)", async () => {
  const m = await makeData();
  assert.is(m.EL_INPUT_TEMPLATE, ONEGEN_ENTITY_LINKING.inputTemplate);
  assert.is(m.MH_INPUT_TEMPLATE, ONEGEN_MULTIHOP_QA.inputTemplate);
  assert.is(m.TOKENS.lk, ONEGEN_ENTITY_LINKING.queryToken);
  assert.is(m.TOKENS.se, ONEGEN_ENTITY_LINKING.docToken);
  assert.is(m.TOKENS.cont, ONEGEN_ENTITY_LINKING.continueToken);
  assert.is(m.TOKENS.qr, ONEGEN_MULTIHOP_QA.queryToken);
  assert.is(m.TOKENS.dfr, ONEGEN_MULTIHOP_QA.docToken);
  for (const k of ["mentionOpen", "mentionClose"] as const) assert.is(m.TOKENS[k], ONEGEN_ENTITY_LINKING[k]);
  for (const k of ["paragraphOpen", "paragraphClose", "answerOpen", "answerClose"] as const) assert.is(m.TOKENS[k], ONEGEN_MULTIHOP_QA[k]);
});

test("splits: no sentence or question in two splits; OneGen train files hold only the train split", async () => {
  const el: Record<string, ElGold[]> = {};
  const mh: Record<string, MhGold[]> = {};
  for (const s of ["train", "dev", "test"]) {
    el[s] = jsonl<ElGold>(await readFile(join(DATA, "el", `gold_${s}.jsonl`), "utf8"));
    mh[s] = jsonl<MhGold>(await readFile(join(DATA, "mhqa", `gold_${s}.jsonl`), "utf8"));
    assert.ok(el[s]!.length > 0 && mh[s]!.length > 0, `${s} split is empty`);
  }
  const texts = (rows: ElGold[]) => new Set(rows.map((r) => r.text));
  for (const [x, y] of [["train", "dev"], ["train", "test"], ["dev", "test"]] as const) {
    const a = texts(el[x]!);
    for (const r of el[y]!) assert.not.ok(a.has(r.text), `sentence in ${x} and ${y}: ${r.text}`);
    const q = new Set(mh[x]!.map((r) => r.question));
    for (const r of mh[y]!) assert.not.ok(q.has(r.question), `question in ${x} and ${y}: ${r.question}`);
  }
  for (const s of ["train", "dev", "test"]) assert.is(texts(el[s]!).size, el[s]!.length, `duplicate sentences within ${s}`);
  // the OneGen training file is exactly the train split, in order
  const elTrain = jsonl<{ messages: Msg[] }>(await readFile(join(DATA, "el", "train.jsonl"), "utf8"));
  assert.equal(elTrain.map((r) => r.messages[0]!.content), el.train!.map((r) => ONEGEN_ENTITY_LINKING.inputTemplate.split("{input}").join(r.text)));
  const mhTrain = jsonl<{ messages: Msg[] }>(await readFile(join(DATA, "mhqa", "train.jsonl"), "utf8"));
  assert.equal(mhTrain.map((r) => r.messages[0]!.content), mh.train!.map((r) => ONEGEN_MULTIHOP_QA.inputTemplate.split("{input}").join(r.question)));
});

test("ambiguity: test mentions whose name denotes several entities, resolved differently across the test split", async () => {
  const data = await loadDemoData(DATA, "test");
  const byName = new Map<string, Set<string>>();
  for (const e of data.kb) byName.set(e.name, (byName.get(e.name) ?? new Set()).add(e.id));
  const ambiguousNames = [...byName.values()].filter((v) => v.size > 1).length;
  assert.ok(ambiguousNames >= 20, `${ambiguousNames} ambiguous names`);
  let mentions = 0;
  let ambiguous = 0;
  const sensesInTest = new Map<string, Set<string>>();
  for (const s of data.elTest) {
    for (const l of s.labels) {
      const name = s.text.slice(l.span[0], l.span[1]);
      assert.is(name, l.name, `${s.id}: span text equals the label's name`);
      assert.ok(byName.get(name)?.has(l.entity_id), `${s.id}: ${l.entity_id} is named '${name}'`);
      mentions++;
      if (byName.get(name)!.size > 1) {
        ambiguous++;
        assert.ok(l.ambiguous, `${s.id}: '${name}' is flagged ambiguous`);
        sensesInTest.set(name, (sensesInTest.get(name) ?? new Set()).add(l.entity_id));
      }
    }
  }
  assert.ok(ambiguous / mentions >= 0.2, `${ambiguous} of ${mentions} test mentions are ambiguous`);
  const bothSenses = [...sensesInTest.values()].filter((v) => v.size > 1).length;
  assert.ok(bothSenses >= 5, `${bothSenses} names appear in the test split with two different entities`);
});

test("OneGen format: one positive and negative list per retrieval token, uids in the db, paragraphs equal the documents", async () => {
  const elDb = jsonl<{ uid: string; messages: Msg[] }>(await readFile(join(DATA, "el", "db.jsonl"), "utf8"));
  const mhDb = jsonl<{ uid: string; messages: Msg[] }>(await readFile(join(DATA, "mhqa", "db.jsonl"), "utf8"));
  const elDocs = jsonl<{ id: string; text: string }>(await readFile(join(DATA, "el", "docs.jsonl"), "utf8"));
  const mhDocs = new Map(jsonl<{ id: string; text: string }>(await readFile(join(DATA, "mhqa", "docs.jsonl"), "utf8")).map((d) => [d.id, d.text]));
  const se = ONEGEN_ENTITY_LINKING.docToken;
  const dfr = ONEGEN_MULTIHOP_QA.docToken;
  const elFrags = new Map<string, number>();
  elDb.forEach((d, i) => {
    assert.not.ok(d.uid.includes("-"), `uid ${d.uid} must not hold '-' (OneGen splits uids on it)`);
    assert.is(count(d.messages[0]!.content, se), 1, "the EL instruction holds one [SE] (skipped)");
    assert.is(count(d.messages[1]!.content, se), 1);
    assert.equal(elDocs[i], { id: d.uid, text: d.messages[0]!.content + d.messages[1]!.content });
    elFrags.set(d.uid, 1);
  });
  const mhFrags = new Map<string, number>();
  for (const d of mhDb) {
    assert.is(d.messages[0]!.content, "");
    const n = count(d.messages[1]!.content, dfr);
    assert.ok(n >= 1);
    mhFrags.set(d.uid, n);
    assert.is(mhDocs.get(d.uid), d.messages[1]!.content);
  }
  const inDb = (frags: Map<string, number>, uid: string): boolean => {
    const [doc, f] = uid.includes("-") ? [uid.split("-")[0]!, Number(uid.split("-")[1])] : [uid, 0];
    return frags.has(doc) && f < frags.get(doc)!;
  };
  const check = (file: string, frags: Map<string, number>, query: string) => async () => {
    const rows = jsonl<{ messages: Msg[] }>(await readFile(join(DATA, file), "utf8"));
    for (const [i, r] of rows.entries()) {
      const [user, asst] = r.messages;
      assert.is(user!.role, "user");
      assert.is(asst!.role, "assistant");
      assert.ok(asst!.content.endsWith("</s>"), `${file}:${i + 1}: the target ends with </s>`);
      const n = count(asst!.content, query);
      assert.ok(n >= 1 && asst!.positive!.length === n && asst!.negative!.length === n, `${file}:${i + 1}: ${n} ${query} vs ${asst!.positive!.length} positives, ${asst!.negative!.length} negative lists`);
      asst!.positive!.forEach((p, j) => {
        assert.ok(inDb(frags, p), `${file}:${i + 1}: positive ${p} is not in the db`);
        const negs = asst!.negative![j]!;
        assert.ok(negs.length >= 1 && negs.every((x) => inDb(frags, x)), `${file}:${i + 1}: negatives ${negs.join(",")}`);
        assert.not.ok(negs.includes(p) || negs.some((x) => x.split("-")[0] === p.split("-")[0]), `${file}:${i + 1}: a negative of ${p} is from its own document`);
      });
    }
    return rows;
  };
  await check("el/train.jsonl", elFrags, ONEGEN_ENTITY_LINKING.queryToken)();
  const mhRows = await check("mhqa/train.jsonl", mhFrags, ONEGEN_MULTIHOP_QA.queryToken)();
  // every <paragraph> after a query token is exactly the stored document of its positive (what the runtime injects)
  for (const r of mhRows) {
    const asst = r.messages[1]!;
    const parts = asst.content.split(ONEGEN_MULTIHOP_QA.queryToken).slice(1);
    parts.forEach((p, j) => {
      assert.ok(p.startsWith(ONEGEN_MULTIHOP_QA.paragraphOpen));
      const doc = p.slice(ONEGEN_MULTIHOP_QA.paragraphOpen.length, p.indexOf(ONEGEN_MULTIHOP_QA.paragraphClose));
      assert.is(doc, mhDocs.get(asst.positive![j]!.split("-")[0]!));
    });
    assert.is(count(asst.content, ONEGEN_MULTIHOP_QA.answerOpen), 1);
  }
  // gold annotated sentences: removing the annotation gives the text back
  const gold = jsonl<ElGold>(await readFile(join(DATA, "el", "gold_test.jsonl"), "utf8"));
  for (const s of gold) {
    const plain = s.annotated!.split(/<MENTION>|<\/MENTION>\[LK\]\[_CONTINUE_\]/).join("");
    assert.is(plain, s.text);
    assert.is(count(s.annotated!, "[LK]"), s.labels.length);
  }
});

test("demo tokenizer: loads with src/tokenizer.ts, each special token is one id, every demo text round-trips", async () => {
  const texts = await demoCorpusTexts(DATA);
  const files = buildDemoTokenizer(texts);
  assert.ok(files.vocabSize < 5000, `vocabulary ${files.vocabSize}`);
  const tok = new Tokenizer(files.tokenizerJson, files.tokenizerConfig, { name: "demo" });
  assert.is(tok.vocabSize, files.vocabSize);
  assert.is(tok.bosToken, "<s>");
  assert.is(tok.eosTokenId, 2);
  assert.equal(tok.encode("hi", { addSpecialTokens: true }), tok.encode("hi", { addSpecialTokens: false }), "no BOS/EOS added (OneGen's configs)");
  const specials = allSpecialTokens();
  specials.forEach((s, i) => {
    assert.equal(tok.encode(s), [i], `${s} is one id`);
    assert.equal(tok.encode(`x${s}y`).length, 3, `${s} is matched inside text`);
    assert.ok(tok.isSpecial(i));
  });
  assert.equal(ONEGEN_TOKENS.map((t) => tok.requireTokenId(t)), ONEGEN_TOKENS.map((_, i) => 4 + i));
  let tokens = 0;
  for (const t of texts) {
    const ids = tok.encode(t);
    tokens += ids.length;
    assert.not.ok(ids.includes(3), `no <unk> in ${JSON.stringify(t.slice(0, 60))}`);
    const back = tok.decode(ids);
    if (back !== t) assert.is(back, t, "round trip");
    assert.equal(ids.map((id) => tok.idToToken(id)), pretokenize(t), "tokenizer.json splits as the reference pretokenize()");
  }
  assert.ok(tokens > 100_000, `${tokens} tokens in the corpus`);
  // unknown words become <unk>; markers tokenize the same after text as alone (src/onegen/token-names.ts's rule)
  assert.equal(tok.encode("Zyx"), [3]);
  const V = tok.vocabSize;
  assert.equal(markerIdsOf("</MENTION>", tok, V, "t", "after-text"), markerIdsOf("</MENTION>", tok, V, "t", "standalone"));
  assert.equal(tok.encode("The chemist").map((i) => tok.idToToken(i)), ["The", " chemist"]);
});

test("writeDemoTokenizer: writes tokenizer.json + tokenizer_config.json that Tokenizer.fromDir loads; same corpus, same files", async () => {
  const dir = scratchDir("demo-tok");
  try {
    const a = await writeDemoTokenizer(DATA, join(dir, "a"));
    const b = await writeDemoTokenizer(DATA, join(dir, "b"));
    assert.is(a.vocabSize, b.vocabSize);
    assert.is(await readFile(join(dir, "a", "tokenizer.json"), "utf8"), await readFile(join(dir, "b", "tokenizer.json"), "utf8"));
    const tok = await Tokenizer.fromDir(join(dir, "a"));
    const first = jsonl<ElGold>(await readFile(join(DATA, "el", "gold_test.jsonl"), "utf8"))[0]!;
    const s = `${first.annotated!}</s>`;
    assert.is(tok.vocabSize, a.vocabSize);
    assert.is(tok.decode(tok.encode(s)), s);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
