#!/usr/bin/env node
// The demo model's training files (scripts/demo/train_demo.sh step 3), all from the TRAIN split.
//
//   node scripts/demo/training_files.mjs DATA_DIR WORK_DIR ROOT
//
// Needs WORK_DIR/init (the tokenizer) and ROOT/dist (the build). Deterministic: every random
// stream is a seeded mulberry32 (src/util/rng.ts).
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [data, out, root] = process.argv.slice(2);
const { loadTokenizer } = await import(pathToFileURL(`${root}/dist/src/tokenizer.js`).href);
const { Rng } = await import(pathToFileURL(`${root}/dist/src/util/rng.js`).href); // mulberry32
const MH_REPEAT = 2;
const lines = (f) => readFileSync(`${data}/${f}`, "utf8").split("\n").filter((l) => l.trim() !== "");
const write = (f, rows) => writeFileSync(`${out}/${f}`, rows.join("\n") + "\n");
const pre = (u) => "mh:" + u;
const mhTrain = lines("mhqa/train.jsonl").map((l) => {
  const o = JSON.parse(l);
  for (const m of o.messages) {
    if (m.positive) m.positive = m.positive.map((p) => (p === null ? null : Array.isArray(p) ? p.map(pre) : pre(p)));
    if (m.negative) m.negative = m.negative.map((n) => n.map(pre));
  }
  return JSON.stringify(o);
});
const mhDb = lines("mhqa/db.jsonl").map((l) => JSON.stringify({ ...JSON.parse(l), uid: pre(JSON.parse(l).uid) }));
const train = [...lines("el/train.jsonl")];
for (let r = 0; r < MH_REPEAT; r++) train.push(...mhTrain);
write("train.jsonl", train);
write("db.jsonl", [...lines("el/db.jsonl"), ...mhDb]);
write("train-gen.jsonl", train.map((l) => {
  const o = JSON.parse(l);
  for (const m of o.messages) if (m.positive) { m.positive = m.positive.map(() => null); delete m.negative; }
  return JSON.stringify(o);
}));
// copying curriculum: one seeded stream (Rng) per file; only words the tokenizer has with a leading space
const tk = await loadTokenizer(`${out}/init`);
const unk = tk.tokenToId("<unk>");
const known = (w) => { const ids = tk.encode(" " + w, { addSpecialTokens: false }); return ids.length === 1 && ids[0] !== unk; };
const texts = [...lines("el/gold_train.jsonl"), ...lines("mhqa/gold_train.jsonl")].map((l) => { const o = JSON.parse(l); return o.text ?? o.question; });
const copyRows = (n, seed) => {
  const rng = new Rng(seed);
  const rnd = () => rng.next();
  const rows = [];
  for (let i = 0; i < n; i++) {
    const a = texts[Math.floor(rnd() * texts.length)].match(/[A-Za-z]+|[0-9]/g).filter(known);
    for (let j = a.length - 1; j > 0; j--) { const k = Math.floor(rnd() * (j + 1)); [a[j], a[k]] = [a[k], a[j]]; }
    const t = " " + a.join(" ");
    rows.push(JSON.stringify({ messages: [{ role: "user", content: "TEST TEXT:\n" + t + " [/INST]" }, { role: "assistant", content: t + "</s>" }] }));
  }
  return rows;
};
write("copy-A.jsonl", copyRows(4000, 7));
write("copy-B.jsonl", copyRows(8000, 11));
// entity linking with random names (copy practice in the task's own format): a training sentence
// whose every mention is replaced by a random name of the same kind, assembled from the knowledge
// base's name parts (first x last name, organisation head x kind word, city, country), so that
// only copying from the input can predict it. Generation only (no retrieval pair: the name names
// no entity); sentences equal to a dev or test sentence are dropped.
const kb = JSON.parse(readFileSync(`${data}/kb.json`, "utf8"));
const typeOf = new Map(kb.map((e) => [e.id, e.type]));
const uniq = (a) => [...new Set(a)].filter(known).sort();
const parts = (type, i) => uniq(kb.filter((e) => e.type === type && e.name.split(" ").length === 2).map((e) => e.name.split(" ")[i]));
const pools = {
  first: parts("person", 0), last: parts("person", 1), orgHead: parts("organisation", 0), orgKind: parts("organisation", 1),
  city: uniq(kb.filter((e) => e.type === "city").map((e) => e.name)), country: uniq(kb.filter((e) => e.type === "country").map((e) => e.name)),
};
const heldOut = new Set([..."dev test".split(" ").flatMap((s) => lines(`el/gold_${s}.jsonl`))].map((l) => JSON.parse(l).text));
const elTemplate = JSON.parse(lines("el/train.jsonl")[0]).messages[0].content.split("TEST TEXT:\n")[0] + "TEST TEXT:\n";
const elGold = lines("el/gold_train.jsonl").map((l) => JSON.parse(l));
const nameRows = (n, seed) => {
  const rng = new Rng(seed);
  const rnd = () => rng.next();
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const randomName = (type) =>
    type === "person" ? `${pick(pools.first)} ${pick(pools.last)}` :
    type === "organisation" ? (rnd() < 0.1 ? pick(pools.city) : `${pick(pools.orgHead)} ${pick(pools.orgKind)}`) :
    type === "city" ? pick(pools.city) : pick(pools.country);
  const rows = [];
  while (rows.length < n) {
    const g = pick(elGold);
    let text = "", annotated = "", at = 0;
    for (const l of g.labels) {
      const name = randomName(typeOf.get(l.entity_id));
      const gap = g.text.slice(at, l.span[0]);
      text += gap + name;
      annotated += gap + "<MENTION>" + name + "</MENTION>[LK][_CONTINUE_]";
      at = l.span[1];
    }
    text += g.text.slice(at);
    annotated += g.text.slice(at);
    if (heldOut.has(text)) continue;
    rows.push(JSON.stringify({ messages: [{ role: "user", content: elTemplate + text + " [/INST]" }, { role: "assistant", content: annotated + "</s>", positive: g.labels.map(() => null) }] }));
  }
  return rows;
};
write("el-names.jsonl", nameRows(6000, 13));
writeFileSync(`${out}/train-p3.jsonl`, readFileSync(`${out}/train.jsonl`, "utf8") + readFileSync(`${out}/el-names.jsonl`, "utf8"));
writeFileSync(`${out}/copy-A-mix.jsonl`, readFileSync(`${out}/copy-A.jsonl`, "utf8") + readFileSync(`${out}/train-gen.jsonl`, "utf8"));
// Multi-hop QA in random worlds (stage p5): two-hop questions about an invented organisation
// and its invented founder (random names of the knowledge base's name parts, never a real
// entity's name), whose facts point at real cities and organisations. The rows follow the real
// generator's templates (questionsFor / describe / mhTarget of make_data.mjs), so the model sees
// the task's own format but can only answer by copying names from the question and from the
// injected paragraphs. The invented documents go into db-p5.jsonl (uids "rw…", plain multi-hop
// documents) and each hop is a retrieval pair: its positive is the hop's fragment, its hard
// negatives the same fragment of an invented namesake-like distractor (same organisation kind
// word; same first or last name) or, for a city hop, another real city. Questions equal to a dev
// or test question are dropped.
const makeData = await import(pathToFileURL(`${root}/scripts/demo/make_data.mjs`).href);
const knownBare = (w) => { const ids = tk.encode(w, { addSpecialTokens: false }); return ids.length === 1 && ids[0] !== unk; };
const bothForms = (a) => a.filter((w) => known(w) && knownBare(w));
const realNames = new Set(kb.map((e) => e.name));
// the real entities with their description sentences (as make_data.mjs wrote them)
const realById = new Map(kb.map((e) => [e.id, { ...e }]));
for (const e of realById.values()) e.fragments = makeData.describe(e, { byId: realById });
const mhPools = {
  first: bothForms(pools.first), last: pools.last, orgHead: bothForms(pools.orgHead),
  occupations: [...new Set(kb.filter((e) => e.type === "person").map((e) => e.occupation))].sort(),
};
const kindsOfTail = new Map();
for (const e of kb.filter((e) => e.type === "organisation" && e.name.split(" ").length === 2)) {
  const tail = e.name.split(" ")[1];
  if (!kindsOfTail.has(tail)) kindsOfTail.set(tail, new Set());
  kindsOfTail.get(tail).add(e.kind);
}
const orgTails = [...kindsOfTail.keys()].filter((t) => known(t)).sort();
const plainCities = kb.filter((e) => e.type === "city" && kb.filter((c) => c.name === e.name).length === 1);
const realOrgs = kb.filter((e) => e.type === "organisation");
const heldOutQuestions = new Set(["dev", "test"].flatMap((s) => lines(`mhqa/gold_${s}.jsonl`)).map((l) => JSON.parse(l).question));
const mhTemplate = JSON.parse(lines("mhqa/train.jsonl")[0]).messages[0].content.split("Here is a question: ")[0] + "Here is a question: ";
const mhWorldRows = (n, seed, { prefix = "rw", namesakeShare = 0 } = {}) => {
  const rng = new Rng(seed);
  const rnd = () => rng.next();
  const int = (k) => Math.floor(rnd() * k);
  const pick = (a) => a[int(a.length)];
  const rows = [];
  const docs = [];
  const hasUnk = (text) => tk.encode(text, { addSpecialTokens: false }).includes(unk);
  let serial = 0;
  while (rows.length < n) {
    const tag = `${prefix}${String(serial++).padStart(5, "0")}`;
    const byId = new Map(realById);
    const add = (e) => (byId.set(e.id, e), e);
    const freshOrg = (tail, not) => { for (;;) { const name = `${pick(mhPools.orgHead)} ${tail}`; if (!realNames.has(name) && name !== not) return name; } };
    const freshPerson = (not) => { for (;;) { const name = `${pick(mhPools.first)} ${pick(mhPools.last)}`; if (!realNames.has(name) && name !== not) return name; } };
    const person = (id, name, org) => {
      const born = 1900 + int(76);
      const p = add({ id, type: "person", name, occupation: pick(mhPools.occupations), birthplace: pick(plainCities).id, born, employer: rnd() < 0.8 ? pick(realOrgs).id : null, founded: org.id });
      org.founder = id;
      org.year = born + 25 + int(20);
      return p;
    };
    const tail = pick(orgTails);
    const o = add({ id: `${tag}o`, type: "organisation", name: freshOrg(tail), kind: pick([...kindsOfTail.get(tail)].sort()), hq: pick(plainCities).id });
    const f = person(`${tag}p`, freshPerson(), o);
    // distractors: an organisation of the same kind word, a person sharing the first or last name
    const o2 = add({ id: `${tag}q`, type: "organisation", name: freshOrg(tail, o.name), kind: o.kind, hq: pick(plainCities.filter((c) => c.id !== o.hq)).id });
    const [first, last] = f.name.split(" ");
    let f2name;
    if (namesakeShare > 0 && rnd() < namesakeShare) f2name = f.name; // a namesake: only "the founder of …" tells them apart
    else do f2name = rnd() < 0.5 ? `${first} ${pick(mhPools.last)}` : `${pick(mhPools.first)} ${last}`; while (f2name === f.name || realNames.has(f2name));
    const f2 = person(`${tag}r`, f2name, o2);
    for (const e of [o, f, o2, f2]) e.fragments = makeData.describe(e, { byId });
    const qs = makeData.questionsFor(o, { byId });
    const q = pick(qs);
    if (heldOutQuestions.has(q.question)) continue;
    const target = makeData.mhTarget(q, { byId });
    const prompt = mhTemplate + q.question;
    // every name part was checked against the tokenizer above
    if (hasUnk(prompt) || hasUnk(target)) throw new Error(`training_files: <unk> in the random-world row ${tag}: ${prompt} → ${target}`);
    const uidOf = (id) => (id.startsWith(prefix) ? id : "mh:" + id);
    const distractor = (id) => (id === o.id ? o2.id : id === f.id ? f2.id : pick(plainCities.filter((c) => c.id !== id)).id);
    const positive = q.hops.map((h) => `${uidOf(h.doc)}-${h.fragment}`);
    // the distractor's fragment in the hop's place first, then its other fragments
    const negative = q.hops.map((h) => {
      const d = distractor(h.doc);
      const m = byId.get(d).fragments.length;
      const first = Math.min(h.fragment, m - 1);
      return [first, ...Array.from({ length: m }, (_, i) => i).filter((i) => i !== first)].map((i) => `${uidOf(d)}-${i}`);
    });
    rows.push(JSON.stringify({ messages: [{ role: "user", content: prompt }, { role: "assistant", content: target, positive, negative }] }));
    for (const e of [o, f, o2, f2]) docs.push(JSON.stringify({ uid: e.id, messages: [{ role: "user", content: "" }, { role: "assistant", content: makeData.mhDocText(e) }] }));
  }
  return { rows, docs };
};
const outLines = (f) => readFileSync(`${out}/${f}`, "utf8").split("\n").filter((l) => l !== "");
const worlds = mhWorldRows(3000, 17);
write("mh-worlds.jsonl", worlds.rows);
write("db-p5.jsonl", [...outLines("db.jsonl"), ...worlds.docs]);
// p5: the task samples, 2000 of the random-name entity-linking rows (entity linking must not be
// forgotten) and the random-world multi-hop rows
write("train-p5.jsonl", [...outLines("train.jsonl"), ...outLines("el-names.jsonl").slice(0, 2000), ...worlds.rows]);
// p6: the same with another 3000 random worlds (uids "rx…", seed 19) in which half of the
// distractor founders share the founder's full name (as the knowledge base's namesakes do), and the
// next 2000 random-name entity-linking rows
const worldsB = mhWorldRows(3000, 19, { prefix: "rx", namesakeShare: 0.5 });
write("mh-worlds-b.jsonl", worldsB.rows);
write("db-p6.jsonl", [...outLines("db.jsonl"), ...worldsB.docs]);
write("train-p6.jsonl", [...outLines("train.jsonl"), ...outLines("el-names.jsonl").slice(2000, 4000), ...worldsB.rows]);
process.stdout.write(JSON.stringify({ samples: train.length, documents: lines("el/db.jsonl").length + mhDb.length, copy: [4000, 8000], names: 6000, mhWorlds: worlds.rows.length, mhWorldDocs: worlds.docs.length, mhWorldsB: worldsB.rows.length }) + "\n");
