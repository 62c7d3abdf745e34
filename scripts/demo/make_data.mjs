#!/usr/bin/env node
// Synthetic knowledge base and task data for the trained demo model (issue 10).
//
//   node scripts/demo/make_data.mjs [--out demo/data] [--seed 20261124]
//
// Deterministic: the same seed gives byte-identical files (one seeded mulberry32 stream, no
// Date/Math.random, insertion-ordered maps). Self-contained plain JS so it runs without a build;
// test/demo-data.test.ts imports generateDemoData() and checks the committed demo/data against it.
//
// World: countries, cities, organisations and people with facts (birthplace, birth year,
// occupation, employer, founder, headquarters). AMBIGUOUS names (one surface form, several
// entities) come in three kinds, each resolved only by the sentence's context:
//   - two people with the same full name (different occupation, birthplace, employer),
//   - two cities with the same name in different countries (different landmark),
//   - a city and a company with the same one-word name (local context: "born in" vs "hired").
// Ambiguous cities are never a birthplace or a headquarters, so a description never refers to
// an ambiguous name without its own disambiguating context.
//
// Output (OneGen's data layout, zjunlp/OneGen data/train_data/{entity_linking,multi_hop_qa}):
//   el/db.jsonl      {"uid", "messages": [{"role":"user", "content": EL_DOC_INSTRUCTION},
//                                          {"role":"assistant", "content": "<description>[SE]"}]}
//   el/train.jsonl   {"messages": [{"role":"user", "content": <EL prompt with the sentence>},
//                                   {"role":"assistant", "content": "<annotated sentence></s>",
//                                    "positive": [uid per [LK]], "negative": [[uid, …] per [LK]]}]}
//   mhqa/db.jsonl    {"uid", "messages": [{"role":"user","content":""},
//                                          {"role":"assistant","content":"<frag>[DFR]<frag>[DFR]…"}]}
//   mhqa/train.jsonl {"messages": [{"role":"user", "content": <multi-hop prompt>},
//                                   {"role":"assistant", "content": "<sub-q>[QR]<paragraph>…</paragraph>…
//                                    <FINAL-ANSWER>a</FINAL-ANSWER></s>", "positive": ["uid-frag", …],
//                                    "negative": [["uid-frag", …], …]}]}
//   ([DFR] = [Document Fragment Representation], [QR] = [Question Representation].)
//   Contents are concatenated as they are (OneGen's DocumentTemplator); the assistant content
//   ends with the EOS token </s> (no other EOS is to be added). Positive/negative uids are
//   OneGen's "doc-fragment" strings; a uid without "-" means fragment 0. Ids hold no "-".
//   el/docs.jsonl, mhqa/docs.jsonl: {"id", "text"} for `onegen index` (text = user + assistant
//     content; EL: --doc-token [SE] --skip-first 1, multi-hop: --doc-token [DFR] --skip-first 0).
//   el/gold_{train,dev,test}.jsonl: {"id", "text", "annotated", "labels": [{"span": [s, e]
//     (code points), "entity_id", "name", "ambiguous"}]} (OneGen's kore50 layout plus annotated).
//   mhqa/gold_{train,dev,test}.jsonl: {"_id", "type", "question", "answer", "answer_id",
//     "supporting_facts": [[uid, fragment], …], "hops": [{"sub_question", "doc", "fragment"}],
//     "target": <gold assistant content>}.
//   kb.json: every entity with its type, name, facts and description; manifest.json: seed,
//     counts, token conventions and templates.
// Multi-hop documents carry no instruction, so a document injected by the runtime (its stored
// ids between <paragraph> and </paragraph>) is exactly the paragraph of the training targets.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const DEMO_SEED = 20261124;

// Templates, as in src/onegen/defaults.ts (ONEGEN_ENTITY_LINKING / ONEGEN_MULTIHOP_QA); the test
// checks they are equal.
export const EL_INPUT_TEMPLATE =
  "[INST] You are good at mention detection. Identify and extract mentions of entities from the text. Please output the original text with annotations. " +
  "Here, the annotation for each mention should be formatted as `<MENTION>{{mention in text}}</MENTION>` when displayed. \n\nTEST TEXT:\n{input} [/INST]";
export const MH_INPUT_TEMPLATE =
  "You are good at multi-step reasoning in QA. For complex questions, break down the process. Generate and answer sub-questions step-by-step, " +
  "using retrieved documents at each stage. Output the final answer wrapped by <FINAL-ANSWER></FINAL-ANSWER>. Here is a question: {input}";
/** The user part of every entity document: holds one [SE] that is not indexed (skip-first 1). */
export const EL_DOC_INSTRUCTION = "Represent the following entity description and output it after the '[SE]' token. \nHere is the entity description:\n";

export const TOKENS = {
  lk: "[LK]",
  se: "[SE]",
  cont: "[_CONTINUE_]",
  qr: "[Question Representation]",
  dfr: "[Document Fragment Representation]",
  mentionOpen: "<MENTION>",
  mentionClose: "</MENTION>",
  paragraphOpen: "<paragraph>",
  paragraphClose: "</paragraph>",
  answerOpen: "<FINAL-ANSWER>",
  answerClose: "</FINAL-ANSWER>",
  eos: "</s>",
};

const SIZES = { countries: 6, cities: 54, ambiguousCityPairs: 8, sharedCityOrg: 10, orgs: 64, people: 150, ambiguousPeoplePairs: 45, ambiguousPeopleTriples: 15, elSentences: 1800, negatives: 4 };
/** Share of sentences built around an entity with an ambiguous name. */
const AMBIGUOUS_SHARE = 0.7;
const SPLIT = { train: 0.8, dev: 0.1 }; // test: the rest

class Rng {
  constructor(seed) {
    this.s = seed >>> 0;
  }
  next() {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n) {
    return Math.floor(this.next() * n);
  }
  pick(a) {
    return a[this.int(a.length)];
  }
  shuffle(a) {
    const b = [...a];
    for (let i = b.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [b[i], b[j]] = [b[j], b[i]];
    }
    return b;
  }
}

const COUNTRIES = ["Varenia", "Ostrel", "Kalmora", "Doravia", "Senland", "Tirova"];
const CITY_HEADS = ["Lind", "Ask", "Brae", "Kest", "Orm", "Thal", "Vend", "Mar", "Rook", "Selv", "Tor", "Wend", "Elm", "Gray", "Hart", "Fal", "Nor", "Quill"];
const CITY_TAILS = ["haven", "mouth", "port", "vale", "gate", "moor", "stad", "crest", "ford", "wick"];
const FIRST = ["Mara", "Tobin", "Elise", "Joren", "Ilsa", "Dorian", "Kaia", "Fenna", "Lisbet", "Oren", "Selma", "Radek", "Anouk", "Corin", "Talia", "Bram", "Nadia", "Pieter", "Runa", "Caspar", "Odile", "Henrik", "Yara", "Lukas", "Mirela", "Aldo", "Freya", "Quentin", "Sanne", "Viggo", "Greta", "Emil", "Ines", "Teodor", "Hanne", "Matthis", "Livia", "Arvid", "Zora", "Casimir"];
const LAST_HEADS = ["Vos", "Hal", "Mer", "Dun", "Kel", "Bran", "Ost", "Wil", "Fen", "Gar", "Lun", "Ter", "Rav", "Sol", "Tam", "Bel", "Cor", "Dal"];
const LAST_TAILS = ["sen", "mark", "berg", "ley", "dorf", "holt", "ring", "dahl", "ton", "rik"];
const ORG_HEADS = ["Orvex", "Corven", "Halden", "Brightwater", "Nordel", "Lumen", "Argent", "Solace", "Vireo", "Tessel", "Cobalt", "Meridian", "Juniper", "Palisade", "Quorra", "Redfern", "Sable", "Tamber", "Umbra", "Verity", "Willow", "Zenith", "Aster", "Beacon", "Cinder", "Drummond", "Ember", "Falcon", "Garnet", "Harbor", "Ivory", "Jasper"];
const ORG_KINDS = [
  { kind: "company", tails: ["Labs", "Motors", "Works", "Systems"] },
  { kind: "bank", tails: ["Bank"] },
  { kind: "publisher", tails: ["Press", "Books"] },
  { kind: "university", tails: ["Academy", "University"] },
  { kind: "label", tails: ["Records"] },
  { kind: "institute", tails: ["Institute"] },
];
const OCCUPATIONS = ["painter", "chemist", "architect", "violinist", "engineer", "novelist", "botanist", "sculptor", "historian", "surgeon", "pilot", "photographer"];
const LANDMARKS = ["harbour", "cathedral", "old bridge", "markets", "vineyards", "copper mines", "lighthouse", "botanical garden", "castle", "observatory"];

function article(word) {
  return /^[aeiou]/i.test(word) && !/^uni/i.test(word) ? "an" : "a";
}
const cap = (s) => s[0].toUpperCase() + s.slice(1);

/** A sentence under construction: text pieces and mention slots with their gold entity. */
class Builder {
  constructor() {
    this.text = "";
    this.labels = [];
  }
  t(s) {
    this.text += s;
    return this;
  }
  m(entity, kb) {
    const start = this.text.length;
    this.text += entity.name;
    this.labels.push({ span: [start, this.text.length], entity_id: entity.id, name: entity.name, ambiguous: kb.byName.get(entity.name).length > 1 });
    return this;
  }
}

function buildWorld(rng) {
  const entities = [];
  const byId = new Map();
  const add = (e) => {
    entities.push(e);
    byId.set(e.id, e);
    return e;
  };
  // Names: unique pools, drawn without replacement.
  const cityNames = rng.shuffle(CITY_HEADS.flatMap((h) => CITY_TAILS.map((t) => h + t)));
  const lastNames = rng.shuffle(LAST_HEADS.flatMap((h) => LAST_TAILS.map((t) => h + t)));
  const orgNames = rng.shuffle(ORG_HEADS.flatMap((h) => ORG_KINDS.flatMap((k) => k.tails.map((t) => ({ name: `${h} ${t}`, kind: k.kind })))));
  const countries = COUNTRIES.slice(0, SIZES.countries).map((name, i) => add({ id: `K${pad(i)}`, type: "country", name }));
  const cities = [];
  let ci = 0;
  for (let i = 0; i < SIZES.cities; i++) {
    cities.push(add({ id: `C${pad(i)}`, type: "city", name: cityNames[ci++], country: countries[i % countries.length].id, landmark: rng.pick(LANDMARKS), ambiguous: false }));
  }
  // Same-name city pairs: the twin shares the name, lies in another country, has another landmark.
  for (let i = 0; i < SIZES.ambiguousCityPairs; i++) {
    const a = cities[i];
    a.ambiguous = true;
    const otherCountry = countries[(countries.findIndex((k) => k.id === a.country) + 1 + rng.int(countries.length - 1)) % countries.length];
    const landmark = rng.pick(LANDMARKS.filter((l) => l !== a.landmark));
    cities.push(add({ id: `C${pad(cities.length)}`, type: "city", name: a.name, country: otherCountry.id, landmark, ambiguous: true }));
  }
  const plainCities = cities.filter((c) => !c.ambiguous);
  // Capitals: the first plain city of each country.
  for (const k of countries) k.capital = plainCities.find((c) => c.country === k.id).id;
  // People (before orgs: founders/employers are assigned afterwards).
  const people = [];
  const usedNames = new Set();
  const personName = () => {
    for (;;) {
      const n = `${rng.pick(FIRST)} ${rng.pick(lastNames)}`;
      if (!usedNames.has(n)) {
        usedNames.add(n);
        return n;
      }
    }
  };
  for (let i = 0; i < SIZES.people; i++) {
    people.push(add({ id: `P${pad(i)}`, type: "person", name: personName(), occupation: rng.pick(OCCUPATIONS), birthplace: rng.pick(plainCities).id, born: 1900 + rng.int(76), employer: null, founded: null }));
  }
  // Namesakes: pairs (and some triples) sharing a full name, each with another occupation and
  // birthplace than the others of its name.
  for (let i = 0; i < SIZES.ambiguousPeoplePairs + SIZES.ambiguousPeopleTriples; i++) {
    const a = people[i];
    const twins = i < SIZES.ambiguousPeopleTriples ? 2 : 1;
    for (let j = 0; j < twins; j++) {
      const same = people.filter((p) => p.name === a.name);
      const occupation = rng.pick(OCCUPATIONS.filter((o) => !same.some((p) => p.occupation === o)));
      const birthplace = rng.pick(plainCities.filter((c) => !same.some((p) => p.birthplace === c.id))).id;
      people.push(add({ id: `P${pad(people.length)}`, type: "person", name: a.name, occupation, birthplace, born: 1900 + rng.int(76), employer: null, founded: null }));
    }
  }
  // Organisations: founders are distinct people; some share a one-word name with a city.
  const orgs = [];
  const founders = rng.shuffle(people);
  for (let i = 0; i < SIZES.orgs; i++) {
    const shared = i < SIZES.sharedCityOrg;
    const o = shared ? { name: plainCities[plainCities.length - 1 - i].name, kind: "company" } : orgNames[i];
    const founder = founders[i];
    const hq = rng.pick(plainCities.filter((c) => c.name !== o.name));
    const org = add({ id: `O${pad(i)}`, type: "organisation", name: o.name, kind: o.kind, hq: hq.id, founder: founder.id, year: founder.born + 25 + rng.int(20) });
    founder.founded = org.id;
    orgs.push(org);
  }
  // Employers: most people work somewhere (never at the organisation they founded).
  for (const p of people) {
    if (rng.next() < 0.8) {
      let o = rng.pick(orgs);
      if (o.id === p.founded) o = orgs[(orgs.indexOf(o) + 1) % orgs.length];
      p.employer = o.id;
    }
  }
  const byName = new Map();
  for (const e of entities) {
    if (!byName.has(e.name)) byName.set(e.name, []);
    byName.get(e.name).push(e);
  }
  const kb = { entities, byId, byName, countries, cities, plainCities, people, orgs };
  for (const e of entities) e.fragments = describe(e, kb);
  return kb;
}

function pad(i) {
  return String(i).padStart(3, "0");
}

/** Description sentences (fragments) of an entity; every fact a question can ask is stated. */
export function describe(e, kb) {
  const n = (id) => kb.byId.get(id).name;
  switch (e.type) {
    case "country":
      return [`${e.name} is a country. Its capital is ${n(e.capital)}.`];
    case "city":
      return [`${e.name} is a city in ${n(e.country)}.`, `${e.name} is known for its ${e.landmark}.`];
    case "organisation":
      return [`${e.name} is ${article(e.kind)} ${e.kind} based in ${n(e.hq)}.`, `${e.name} was founded by ${n(e.founder)} in ${e.year}.`];
    case "person": {
      const f = [`${e.name} is ${article(e.occupation)} ${e.occupation} born in ${n(e.birthplace)} in ${e.born}.`];
      if (e.employer) f.push(`${e.name} works at ${n(e.employer)}.`);
      if (e.founded) f.push(`${e.name} founded ${n(e.founded)}.`);
      return f;
    }
  }
  throw new Error(`unknown entity type ${e.type}`);
}

// ------------------------------------------------------------------ entity-linking sentences

/** Sentence makers by the entity they are about; each states a fact that identifies it. */
function personSentence(p, kb, rng) {
  const E = (id) => kb.byId.get(id);
  const b = new Builder();
  const birth = E(p.birthplace);
  const options = [
    () => b.t(`The ${p.occupation} `).m(p, kb).t(" was born in ").m(birth, kb).t("."),
    () => b.m(p, kb).t(`, ${article(p.occupation)} ${p.occupation} from `).m(birth, kb).t(`, was born in ${p.born}.`),
    () => b.t(`Born in ${p.born}, the ${p.occupation} `).m(p, kb).t(" grew up in ").m(birth, kb).t("."),
    () => b.t(`As a young ${p.occupation}, `).m(p, kb).t(` left `).m(birth, kb).t(` for `).m(E(rng.pick(kb.plainCities.filter((c) => c.id !== birth.id)).id), kb).t("."),
  ];
  if (p.employer) {
    const o = E(p.employer);
    options.push(
      () => b.m(o, kb).t(` hired the ${p.occupation} `).m(p, kb).t("."),
      () => b.t(`The ${p.occupation} `).m(p, kb).t(" joined ").m(o, kb).t(` after leaving `).m(birth, kb).t("."),
      () => b.m(p, kb).t(" works at ").m(o, kb).t(` as ${article(p.occupation)} ${p.occupation}.`),
    );
  }
  if (p.founded) {
    const o = E(p.founded);
    options.push(
      () => b.t(`In ${o.year}, `).m(p, kb).t(" founded ").m(o, kb).t("."),
      () => b.m(o, kb).t(` was started by the ${p.occupation} `).m(p, kb).t(` in ${o.year}.`),
    );
  }
  rng.pick(options)();
  return b;
}

function citySentence(c, kb, rng) {
  const b = new Builder();
  const k = kb.byId.get(c.country);
  const options = [
    () => b.m(c, kb).t(" is a city in ").m(k, kb).t("."),
    () => b.t("Visitors to ").m(c, kb).t(" in ").m(k, kb).t(` admire its ${c.landmark}.`),
    () => b.t(`The ${c.landmark} of `).m(c, kb).t(" draws many visitors."),
    () => b.m(c, kb).t(`, a city in `).m(k, kb).t(`, is famous for its ${c.landmark}.`),
  ];
  if (!c.ambiguous) {
    const hosted = kb.orgs.filter((o) => o.hq === c.id);
    if (hosted.length) {
      const o = rng.pick(hosted);
      options.push(() => b.m(o, kb).t(" is based in ").m(c, kb).t(", ").m(k, kb).t("."));
    }
    options.push(() => b.t("Many people moved to ").m(c, kb).t(" last year."));
  }
  rng.pick(options)();
  return b;
}

function orgSentence(o, kb, rng) {
  const b = new Builder();
  const E = (id) => kb.byId.get(id);
  const hq = E(o.hq);
  const options = [
    () => b.m(o, kb).t(" opened a new office in ").m(hq, kb).t("."),
    () => b.t(`The ${o.kind} `).m(o, kb).t(` was founded in ${o.year}.`),
    () => b.m(o, kb).t(` announced new plans in ${o.year + 1 + rng.int(30)}.`),
    () => b.m(o, kb).t(", founded by ").m(E(o.founder), kb).t(`, is based in `).m(hq, kb).t("."),
  ];
  rng.pick(options)();
  return b;
}

function countrySentence(k, kb, rng) {
  const b = new Builder();
  const capital = kb.byId.get(k.capital);
  rng.pick([
    () => b.t("The capital of ").m(k, kb).t(" is ").m(capital, kb).t("."),
    () => b.m(capital, kb).t(" is the largest city of ").m(k, kb).t("."),
  ])();
  return b;
}

function elSentence(kb, rng, ambiguousFirst) {
  const pool = ambiguousFirst ? kb.entities.filter((e) => kb.byName.get(e.name).length > 1) : kb.entities;
  const e = rng.pick(pool);
  if (e.type === "person") return personSentence(e, kb, rng);
  if (e.type === "city") return citySentence(e, kb, rng);
  if (e.type === "organisation") return orgSentence(e, kb, rng);
  return countrySentence(e, kb, rng);
}

function annotate(text, labels) {
  let out = "";
  let at = 0;
  for (const l of labels) {
    out += text.slice(at, l.span[0]) + TOKENS.mentionOpen + text.slice(l.span[0], l.span[1]) + TOKENS.mentionClose + TOKENS.lk + TOKENS.cont;
    at = l.span[1];
  }
  return out + text.slice(at);
}

/** Hard negatives: same-name entities first, then entities of the same type, then any. */
function negativesFor(e, kb, rng, n, uidOf) {
  const out = [];
  for (const x of kb.byName.get(e.name)) if (x.id !== e.id && out.length < n) out.push(uidOf(x));
  const same = rng.shuffle(kb.entities.filter((x) => x.type === e.type && x.id !== e.id));
  for (const x of same) {
    if (out.length >= n) break;
    const u = uidOf(x);
    if (!out.includes(u)) out.push(u);
  }
  return out;
}

// ------------------------------------------------------------------ multi-hop questions

export function questionsFor(o, kb) {
  const E = (id) => kb.byId.get(id);
  const f = E(o.founder);
  const hq = E(o.hq);
  const who = { sub: `Who founded ${o.name}?`, doc: o.id, fragment: 1, says: `${o.name} was founded by ${f.name}.` };
  const aboutFounder = `${f.name}, the founder of ${o.name}`;
  const qs = [
    {
      type: "founder_birthplace",
      question: `Where was the founder of ${o.name} born?`,
      hops: [who, { sub: `Where was ${aboutFounder}, born?`, doc: f.id, fragment: 0, says: `${f.name} was born in ${E(f.birthplace).name}.` }],
      answer: E(f.birthplace),
    },
    {
      type: "founder_occupation",
      question: `What is the occupation of the founder of ${o.name}?`,
      hops: [who, { sub: `What is the occupation of ${aboutFounder}?`, doc: f.id, fragment: 0, says: `${f.name} is ${article(f.occupation)} ${f.occupation}.` }],
      answer: { name: f.occupation, id: null },
    },
    {
      type: "founder_birth_year",
      question: `In which year was the founder of ${o.name} born?`,
      hops: [who, { sub: `In which year was ${aboutFounder}, born?`, doc: f.id, fragment: 0, says: `${f.name} was born in ${f.born}.` }],
      answer: { name: String(f.born), id: null },
    },
    {
      type: "hq_country",
      question: `In which country is the headquarters of ${o.name}?`,
      hops: [
        { sub: `Where is ${o.name} based?`, doc: o.id, fragment: 0, says: `${o.name} is based in ${hq.name}.` },
        { sub: `In which country is ${hq.name}?`, doc: hq.id, fragment: 0, says: `${hq.name} is in ${E(hq.country).name}.` },
      ],
      answer: E(hq.country),
    },
  ];
  if (f.employer) {
    qs.push({
      type: "founder_employer",
      question: `Where does the founder of ${o.name} work?`,
      hops: [who, { sub: `Where does ${aboutFounder}, work?`, doc: f.id, fragment: 1, says: `${f.name} works at ${E(f.employer).name}.` }],
      answer: E(f.employer),
    });
  }
  return qs;
}

/** A multi-hop document: its fragments, each followed by [DFR] (the text stored and injected). */
export function mhDocText(e) {
  return e.fragments.map((s, i) => (i ? " " : "") + s + TOKENS.dfr).join("");
}

function paragraph(e) {
  return TOKENS.paragraphOpen + mhDocText(e) + TOKENS.paragraphClose;
}

export function mhTarget(q, kb) {
  let out = "";
  for (const h of q.hops) out += `${h.sub}${TOKENS.qr}${paragraph(kb.byId.get(h.doc))}${h.says} `;
  return `${out}${TOKENS.answerOpen}${q.answer.name}${TOKENS.answerClose}${TOKENS.eos}`;
}

// ------------------------------------------------------------------ splits and files

function split(items, rng) {
  const s = rng.shuffle(items);
  const nTrain = Math.round(s.length * SPLIT.train);
  const nDev = Math.round(s.length * SPLIT.dev);
  return { train: s.slice(0, nTrain), dev: s.slice(nTrain, nTrain + nDev), test: s.slice(nTrain + nDev) };
}

const jsonl = (rows) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

/** Generates every file (path relative to the output folder → contents) and the statistics. */
export function generateDemoData(seed = DEMO_SEED) {
  const rng = new Rng(seed);
  const kb = buildWorld(rng);
  const files = new Map();

  // entity linking
  const seen = new Set();
  const sentences = [];
  let guard = 0;
  while (sentences.length < SIZES.elSentences) {
    if (++guard > SIZES.elSentences * 50) throw new Error("make_data: cannot draw enough distinct sentences");
    const b = elSentence(kb, rng, rng.next() < AMBIGUOUS_SHARE);
    if (seen.has(b.text)) continue;
    seen.add(b.text);
    sentences.push(b);
  }
  const el = split(sentences, rng);
  const elUid = (e) => e.id;
  const elTrain = el.train.map((b) => {
    const positive = b.labels.map((l) => l.entity_id);
    const negative = b.labels.map((l) => negativesFor(kb.byId.get(l.entity_id), kb, rng, SIZES.negatives, elUid));
    return {
      messages: [
        { role: "user", content: EL_INPUT_TEMPLATE.split("{input}").join(b.text) },
        { role: "assistant", content: annotate(b.text, b.labels) + TOKENS.eos, positive, negative },
      ],
    };
  });
  files.set("el/train.jsonl", jsonl(elTrain));
  files.set("el/db.jsonl", jsonl(kb.entities.map((e) => ({ uid: e.id, messages: [{ role: "user", content: EL_DOC_INSTRUCTION }, { role: "assistant", content: e.fragments.join(" ") + TOKENS.se }] }))));
  files.set("el/docs.jsonl", jsonl(kb.entities.map((e) => ({ id: e.id, text: EL_DOC_INSTRUCTION + e.fragments.join(" ") + TOKENS.se }))));
  for (const name of ["train", "dev", "test"]) {
    files.set(`el/gold_${name}.jsonl`, jsonl(el[name].map((b, i) => ({ id: `el-${name}-${pad(i)}`, text: b.text, annotated: annotate(b.text, b.labels), labels: b.labels }))));
  }

  // multi-hop QA
  const questions = kb.orgs.flatMap((o) => questionsFor(o, kb));
  const mh = split(questions, rng);
  const mhUid = (doc, fragment) => `${doc}-${fragment}`;
  const fragUids = kb.entities.flatMap((e) => e.fragments.map((_, i) => ({ e, u: mhUid(e.id, i) })));
  const mhTrain = mh.train.map((q) => {
    const positive = q.hops.map((h) => mhUid(h.doc, h.fragment));
    const negative = q.hops.map((h) => {
      const target = kb.byId.get(h.doc);
      const pool = rng.shuffle(fragUids.filter((x) => x.e.id !== h.doc && (x.e.type === target.type || x.e.name === target.name)));
      const same = pool.filter((x) => x.e.name === target.name).map((x) => x.u);
      return [...same, ...pool.filter((x) => x.e.name !== target.name).map((x) => x.u)].slice(0, SIZES.negatives);
    });
    return {
      messages: [
        { role: "user", content: MH_INPUT_TEMPLATE.split("{input}").join(q.question) },
        { role: "assistant", content: mhTarget(q, kb), positive, negative },
      ],
    };
  });
  files.set("mhqa/train.jsonl", jsonl(mhTrain));
  files.set("mhqa/db.jsonl", jsonl(kb.entities.map((e) => ({ uid: e.id, messages: [{ role: "user", content: "" }, { role: "assistant", content: mhDocText(e) }] }))));
  files.set("mhqa/docs.jsonl", jsonl(kb.entities.map((e) => ({ id: e.id, text: mhDocText(e) }))));
  for (const name of ["train", "dev", "test"]) {
    files.set(
      `mhqa/gold_${name}.jsonl`,
      jsonl(
        mh[name].map((q, i) => ({
          _id: `mh-${name}-${pad(i)}`,
          type: q.type,
          question: q.question,
          answer: q.answer.name,
          answer_id: q.answer.id,
          supporting_facts: q.hops.map((h) => [h.doc, h.fragment]),
          hops: q.hops.map((h) => ({ sub_question: h.sub, doc: h.doc, fragment: h.fragment })),
          target: mhTarget(q, kb),
        })),
      ),
    );
  }

  // knowledge base and manifest
  const kbJson = kb.entities.map((e) => {
    const { fragments, ...facts } = e;
    return { ...facts, description: fragments.join(" ") };
  });
  files.set("kb.json", JSON.stringify(kbJson, null, 1) + "\n");
  const ambiguousNames = [...kb.byName.entries()].filter(([, v]) => v.length > 1);
  const countLabels = (rows) => rows.reduce((n, b) => n + b.labels.length, 0);
  const countAmb = (rows) => rows.reduce((n, b) => n + b.labels.filter((l) => l.ambiguous).length, 0);
  const stats = {
    entities: kb.entities.length,
    by_type: Object.fromEntries(["person", "city", "organisation", "country"].map((t) => [t, kb.entities.filter((e) => e.type === t).length])),
    ambiguous_names: ambiguousNames.length,
    ambiguous_entities: ambiguousNames.reduce((n, [, v]) => n + v.length, 0),
    el_sentences: { train: el.train.length, dev: el.dev.length, test: el.test.length },
    el_mentions: { train: countLabels(el.train), dev: countLabels(el.dev), test: countLabels(el.test) },
    el_ambiguous_mentions: { train: countAmb(el.train), dev: countAmb(el.dev), test: countAmb(el.test) },
    mh_questions: { train: mh.train.length, dev: mh.dev.length, test: mh.test.length },
    mh_fragments: fragUids.length,
  };
  const manifest = {
    generator: "scripts/demo/make_data.mjs",
    seed,
    stats,
    tokens: TOKENS,
    entity_linking: { db: "el/db.jsonl", train: "el/train.jsonl", docs: "el/docs.jsonl", doc_token: TOKENS.se, skip_first: 1, query_token: TOKENS.lk, input_template: EL_INPUT_TEMPLATE, doc_instruction: EL_DOC_INSTRUCTION },
    multi_hop_qa: { db: "mhqa/db.jsonl", train: "mhqa/train.jsonl", docs: "mhqa/docs.jsonl", doc_token: TOKENS.dfr, skip_first: 0, query_token: TOKENS.qr, input_template: MH_INPUT_TEMPLATE, mask_from_to: [TOKENS.paragraphOpen, TOKENS.paragraphClose] },
    format: "OneGen (zjunlp/OneGen data/train_data): contents concatenated as they are (DocumentTemplator); assistant content ends with </s>; uids 'doc-fragment'",
  };
  files.set("manifest.json", JSON.stringify(manifest, null, 1) + "\n");
  return { files, stats };
}

function main(argv) {
  const here = dirname(fileURLToPath(import.meta.url));
  let out = join(here, "..", "..", "demo", "data");
  let seed = DEMO_SEED;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") out = argv[++i];
    else if (argv[i] === "--seed") seed = Number(argv[++i]);
    else {
      process.stderr.write("usage: node scripts/demo/make_data.mjs [--out DIR] [--seed N]\n");
      process.exit(2);
    }
  }
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${seed}`);
  const { files, stats } = generateDemoData(seed);
  let bytes = 0;
  for (const [rel, text] of files) {
    mkdirSync(dirname(join(out, rel)), { recursive: true });
    writeFileSync(join(out, rel), text);
    bytes += Buffer.byteLength(text);
  }
  process.stdout.write(`wrote ${files.size} files (${(bytes / 1024).toFixed(0)} KiB) to ${out}\n${JSON.stringify(stats, null, 1)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
