// Evaluation of the demo model (issue 10): metrics, trivial baselines, and the runner that
// drives the OneGen tasks over the held-out split.
//
// Metrics (each checked against hand-computed examples in test/demo-eval.test.ts):
// - Entity linking micro-F1, as OneGen computes it (zjunlp/OneGen
//   scripts/entity_linking/eval_entity_linking.py): gold units are (document, surface.strip(),
//   entity id) for every label whose entity is not "Unknown"; predicted units are (document,
//   mention.strip(), predicted id) for every mention the model linked (one per [LK]); a predicted
//   mention equal to an "Unknown" gold surface is dropped (once). Units are multisets: the k-th
//   occurrence of the same unit is its own key, so duplicates count as often as they occur
//   (OneGen's my_f1). Micro P/R/F1 over all documents; F1 = 0 when there is no true positive.
//   Difference: OneGen pairs the i-th `<MENTION>m</MENTION>[LK][_CONTINUE_]` match with the i-th
//   [LK] hit; here each [LK] carries its own mention (src/onegen/entity-linking.ts), which is the same
//   for well-formed output and does not shift the pairs when one annotation is malformed.
// - Mention detection F1: surfaces between <MENTION> and </MENTION> in the output against the gold
//   surfaces, multiset keys as above, keyed by document (a mention counts only in its own
//   sentence). OneGen's eval_mention_detection.py pools all surfaces of the file without the
//   document; `pooled: true` reproduces it.
// - Multi-hop exact match / F1: SQuAD/HotpotQA answer normalization (lowercase, punctuation and
//   articles a/an/the removed, whitespace collapsed; OneGen's scripts/multi_hop_qa/
//   eval_hotpotqa.py), token-level F1 with HotpotQA's yes/no/noanswer rule; a missing answer is
//   scored as the string "None" (OneGen: str(None)). Means over questions.
// - Retrieval accuracy@1: the fraction of retrieval tokens whose best hit is the gold document,
//   measured teacher-forced: the prompt followed by the GOLD output (annotated sentence / reasoning
//   chain with gold paragraphs) is prefilled once, and every [LK] / [Question Representation] in
//   it is searched (prompt-side retrieval, src/onegen/stream.ts), so the number does not depend on
//   what the model generates.
// Trivial baselines (no model):
// - most-frequent entity: mentions found by dictionary match of every knowledge-base name (longest
//   first, whole words, left to right), each linked to the entity that name most often denotes in
//   the training split (ties and unseen names: the smallest id);
// - lexical match: retrieval by token overlap (lowercased words, stopwords removed; the mention
//   counted twice, then its sentence, for entity linking; the gold sub-question for multi-hop);
//   multi-hop answers: the most frequent training answer of the question's type.
//
// No Node built-ins at load time: the demo page (web/main.ts) runs this file in a browser, with
// the data folder read over HTTP (DemoFiles) and the indexes through ModelDirs (src/io/source.ts);
// node:fs is imported lazily, only for local folders.
import { parseJsonlObjects } from "../util/jsonl.js";
import { LoadError, UsageError } from "../errors.js";
import { urlDir, type ModelDir } from "../io/source.js";
import type { GpuContext } from "../gpu/context.js";
import type { LoadedDecoder } from "../model/load.js";
import { encodeDocuments, type EncodeProgress } from "../onegen/encode.js";
import type { DocumentIndex } from "../onegen/index.js";
import { loadIndex, saveIndex } from "../onegen/index-files.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../onegen/defaults.js";
import type { EntityLinkingResult, MultiHopResult, TaskEvent, TaskModel } from "../onegen/protocol.js";
import { runEntityLinking } from "../onegen/entity-linking.js";
import { runMultiHopQa } from "../onegen/multihop-qa.js";

// ==================================================================== data

export interface ElLabel {
  span: [number, number];
  entity_id: string;
  name?: string;
  ambiguous?: boolean;
}
export interface ElGold {
  id: string;
  text: string;
  /** The gold output: the sentence with <MENTION>…</MENTION>[LK][_CONTINUE_] annotations. */
  annotated?: string;
  labels: ElLabel[];
}
export interface MhHop {
  sub_question: string;
  doc: string;
  fragment: number;
}
export interface MhGold {
  _id: string;
  type: string;
  question: string;
  answer: string;
  hops: MhHop[];
  /** The gold output: reasoning chain with gold paragraphs, ending with </s>. */
  target: string;
}
export interface KbEntity {
  id: string;
  type: string;
  name: string;
  description: string;
}
export interface DemoDocument {
  id: string;
  text: string;
}

export interface DemoData {
  dir: string;
  kb: KbEntity[];
  elTrain: ElGold[];
  elTest: ElGold[];
  mhTrain: MhGold[];
  mhTest: MhGold[];
  elDocs: DemoDocument[];
  mhDocs: DemoDocument[];
  /** Index conventions from manifest.json. */
  el: { docToken: string; skipFirst: number };
  mh: { docToken: string; skipFirst: number };
}

export const SPLITS = ["train", "dev", "test"] as const;
export type Split = (typeof SPLITS)[number];

/**
 * A folder of text files addressed by relative paths with '/' (e.g. "el/docs.jsonl"): the demo
 * data folder, on disk (Node, Deno) or served over HTTP (a page).
 */
export interface DemoFiles {
  /** Shown in errors: a path or URL. */
  readonly name: string;
  /** Reads a text file; failure throws an Error whose message says why (the caller names the file). */
  readText(rel: string): Promise<string>;
}

/** `dir/rel` without a doubled separator (paths and URLs alike). */
export function joinPath(dir: string, rel: string): string {
  return dir.endsWith("/") ? dir + rel : `${dir}/${rel}`;
}

/** A local folder (Node, Deno): node:fs/promises is imported on first read. */
export function localDemoFiles(dir: string): DemoFiles {
  return {
    name: dir,
    async readText(rel: string): Promise<string> {
      const specifier = "node:fs/promises"; // a variable, so browser bundlers leave it alone
      const fs = (await import(specifier)) as typeof import("node:fs/promises");
      return fs.readFile(joinPath(dir, rel), "utf8");
    },
  };
}

/** A folder served over HTTP (`fetch` defaults to the global one): non-2xx answers are errors. */
export function urlDemoFiles(baseUrl: string, options: { fetch?: typeof fetch } = {}): DemoFiles {
  const f = options.fetch ?? fetch;
  return {
    name: baseUrl,
    async readText(rel: string): Promise<string> {
      const res = await f(joinPath(baseUrl, rel.split("/").map(encodeURIComponent).join("/")));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return res.text();
    },
  };
}

const toDemoFiles = (dir: string | DemoFiles): DemoFiles => (typeof dir === "string" ? localDemoFiles(dir) : dir);

async function readText(files: DemoFiles, rel: string, hint: string): Promise<string> {
  try {
    return await files.readText(rel);
  } catch (e) {
    throw new LoadError(`cannot read '${joinPath(files.name, rel)}': ${(e as Error).message}`, hint);
  }
}

/** Reads a JSON file that must hold an object or an array; anything else is a LoadError naming the file. */
async function readJsonFile(files: DemoFiles, rel: string, hint: string, expect: "object" | "array"): Promise<unknown> {
  const file = joinPath(files.name, rel);
  let v: unknown;
  try {
    v = JSON.parse(await readText(files, rel, hint));
  } catch (e) {
    if (e instanceof LoadError) throw e;
    throw new LoadError(`'${file}' is not valid JSON: ${(e as Error).message}`, hint);
  }
  const is = Array.isArray(v) ? "array" : typeof v === "object" && v !== null ? "object" : null;
  if (is !== expect) throw new LoadError(`'${file}' must hold a JSON ${expect}, got ${v === null ? "null" : is ?? typeof v}`, hint);
  return v;
}

function parseJsonl<T>(text: string, file: string): T[] {
  return parseJsonlObjects(text, file).map((r) => r.value as T);
}

/**
 * Reads the demo data folder written by scripts/demo/make_data.mjs (a path, or DemoFiles such as
 * urlDemoFiles for a page); `split` is the evaluated one.
 */
export async function loadDemoData(dirOrFiles: string | DemoFiles, split: Split = "test"): Promise<DemoData> {
  const files = toDemoFiles(dirOrFiles);
  const dir = files.name;
  const hint = "generate it with `node scripts/demo/make_data.mjs` (or give --data DIR)";
  const jsonl = async <T>(rel: string): Promise<T[]> => parseJsonl<T>(await readText(files, rel, hint), joinPath(dir, rel));
  const manifest = (await readJsonFile(files, "manifest.json", hint, "object")) as {
    entity_linking?: { doc_token?: string; skip_first?: number };
    multi_hop_qa?: { doc_token?: string; skip_first?: number };
  };
  const conv = (m: { doc_token?: string; skip_first?: number } | undefined, what: string) => {
    if (!m || typeof m.doc_token !== "string" || typeof m.skip_first !== "number") throw new LoadError(`${joinPath(dir, "manifest.json")}: ${what} needs doc_token and skip_first`);
    return { docToken: m.doc_token, skipFirst: m.skip_first };
  };
  return {
    dir,
    kb: (await readJsonFile(files, "kb.json", hint, "array")) as KbEntity[],
    elTrain: await jsonl<ElGold>("el/gold_train.jsonl"),
    elTest: await jsonl<ElGold>(`el/gold_${split}.jsonl`),
    mhTrain: await jsonl<MhGold>("mhqa/gold_train.jsonl"),
    mhTest: await jsonl<MhGold>(`mhqa/gold_${split}.jsonl`),
    elDocs: await jsonl<DemoDocument>("el/docs.jsonl"),
    mhDocs: await jsonl<DemoDocument>("mhqa/docs.jsonl"),
    el: conv(manifest.entity_linking, "entity_linking"),
    mh: conv(manifest.multi_hop_qa, "multi_hop_qa"),
  };
}

// ==================================================================== metrics

export interface Prf {
  precision: number;
  recall: number;
  f1: number;
  tp: number;
  fp: number;
  fn: number;
}

/** OneGen's my_f1: multiset keys (k-th occurrence of a unit → "k-unit"), micro P/R/F1. */
export function multisetPrf(gold: readonly string[], pred: readonly string[]): Prf {
  const keys = (units: readonly string[]): Set<string> => {
    const seen = new Map<string, number>();
    const out = new Set<string>();
    for (const u of units) {
      const k = seen.get(u) ?? 0;
      seen.set(u, k + 1);
      out.add(`${k}\u0000${u}`);
    }
    return out;
  };
  const g = keys(gold);
  const p = keys(pred);
  let tp = 0;
  for (const k of p) if (g.has(k)) tp++;
  const fp = p.size - tp;
  const fn = g.size - tp;
  if (tp === 0) return { precision: 0, recall: 0, f1: 0, tp, fp, fn };
  const precision = tp / (tp + fp);
  const recall = tp / (tp + fn);
  return { precision, recall, f1: (2 * precision * recall) / (precision + recall), tp, fp, fn };
}

/** One sentence's prediction: the model's annotated output and its linked mentions (one per [LK]). */
export interface ElPrediction {
  /** Annotated output (null: nothing decoded). */
  output: string | null;
  mentions: { mention: string | null; entity: string | null }[];
}

const unit = (doc: number, surface: string, entity?: string | null): string => (entity === undefined ? `${doc}\u0001${surface}` : `${doc}\u0001${surface}\u0001${entity ?? ""}`);

/** Entity-linking micro-F1 as OneGen computes it (see the file header). */
export function entityLinkingF1(gold: readonly ElGold[], preds: readonly ElPrediction[]): Prf {
  if (gold.length !== preds.length) throw new UsageError(`entityLinkingF1: ${gold.length} gold sentences, ${preds.length} predictions`);
  const g: string[] = [];
  const p: string[] = [];
  gold.forEach((item, doc) => {
    const unknown: string[] = [];
    for (const l of item.labels) {
      const surface = item.text.slice(l.span[0], l.span[1]).trim();
      if (l.entity_id === "Unknown") unknown.push(surface);
      else g.push(unit(doc, surface, l.entity_id));
    }
    for (const m of preds[doc]!.mentions) {
      if (m.mention === null) continue; // an [LK] not preceded by an annotated mention
      const surface = m.mention.trim();
      const u = unknown.indexOf(surface);
      if (u >= 0) unknown.splice(u, 1);
      else p.push(unit(doc, surface, m.entity));
    }
  });
  return multisetPrf(g, p);
}

/** Surfaces between <MENTION> and </MENTION> (OneGen's regex, non-greedy, across lines). */
export function extractMentions(output: string, open = ONEGEN_ENTITY_LINKING.mentionOpen, close = ONEGEN_ENTITY_LINKING.mentionClose): string[] {
  const out: string[] = [];
  let at = 0;
  for (;;) {
    const a = output.indexOf(open, at);
    if (a < 0) break;
    const b = output.indexOf(close, a + open.length);
    if (b < 0) break;
    out.push(output.slice(a + open.length, b));
    at = b + close.length;
  }
  return out;
}

/** Mention-detection F1 (see the file header); `pooled` drops the document from the key, as OneGen's script. */
export function mentionDetectionF1(gold: readonly ElGold[], preds: readonly ElPrediction[], opts: { pooled?: boolean } = {}): Prf {
  if (gold.length !== preds.length) throw new UsageError(`mentionDetectionF1: ${gold.length} gold sentences, ${preds.length} predictions`);
  const doc = (d: number) => (opts.pooled ? 0 : d);
  const g = gold.flatMap((item, d) => item.labels.map((l) => unit(doc(d), item.text.slice(l.span[0], l.span[1]))));
  const p = preds.flatMap((pr, d) => (pr.output === null ? [] : extractMentions(pr.output).map((m) => unit(doc(d), m))));
  return multisetPrf(g, p);
}

/** SQuAD / HotpotQA answer normalization. */
export function normalizeAnswer(s: string): string {
  const lower = s.toLowerCase();
  const noPunc = Array.from(lower).filter((c) => !PUNCTUATION.has(c)).join("");
  const noArticles = noPunc.replace(/\b(a|an|the)\b/g, " ");
  return noArticles.split(/\s+/).filter((w) => w !== "").join(" ");
}
/** Python's string.punctuation. */
const PUNCTUATION = new Set(Array.from("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));

export function exactMatch(prediction: string | null, gold: string): number {
  return normalizeAnswer(prediction ?? "None") === normalizeAnswer(gold) ? 1 : 0;
}

/** HotpotQA's token F1 (yes/no/noanswer must match exactly). */
export function answerF1(prediction: string | null, gold: string): number {
  const p = normalizeAnswer(prediction ?? "None");
  const g = normalizeAnswer(gold);
  const special = ["yes", "no", "noanswer"];
  if ((special.includes(p) || special.includes(g)) && p !== g) return 0;
  const pt = p === "" ? [] : p.split(" ");
  const gt = g === "" ? [] : g.split(" ");
  const counts = new Map<string, number>();
  for (const t of gt) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of pt) {
    const n = counts.get(t) ?? 0;
    if (n > 0) {
      same++;
      counts.set(t, n - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / pt.length;
  const recall = same / gt.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Mean EM and F1 over questions (0 for an empty list). */
export function multiHopScores(preds: readonly (string | null)[], gold: readonly string[]): { em: number; f1: number } {
  if (preds.length !== gold.length) throw new UsageError(`multiHopScores: ${gold.length} gold answers, ${preds.length} predictions`);
  if (gold.length === 0) return { em: 0, f1: 0 };
  let em = 0;
  let f1 = 0;
  gold.forEach((g, i) => {
    em += exactMatch(preds[i]!, g);
    f1 += answerF1(preds[i]!, g);
  });
  return { em: em / gold.length, f1: f1 / gold.length };
}

/** Fraction of queries whose best hit is the gold id (null: nothing retrieved, wrong). */
export function accuracyAt1(gold: readonly string[], top: readonly (string | null)[]): { correct: number; total: number; accuracy: number } {
  if (gold.length !== top.length) throw new UsageError(`accuracyAt1: ${gold.length} gold ids, ${top.length} results`);
  let correct = 0;
  gold.forEach((g, i) => {
    if (top[i] === g) correct++;
  });
  return { correct, total: gold.length, accuracy: gold.length ? correct / gold.length : 0 };
}

// ==================================================================== trivial baselines

/** surface → entity id → count in the training split (every KB name present, count 0 if unseen). */
export function surfaceTable(kb: readonly KbEntity[], train: readonly ElGold[]): Map<string, Map<string, number>> {
  const t = new Map<string, Map<string, number>>();
  for (const e of kb) {
    if (!t.has(e.name)) t.set(e.name, new Map());
    const m = t.get(e.name)!;
    if (!m.has(e.id)) m.set(e.id, 0);
  }
  for (const s of train) {
    for (const l of s.labels) {
      const surface = s.text.slice(l.span[0], l.span[1]);
      if (!t.has(surface)) t.set(surface, new Map());
      const m = t.get(surface)!;
      m.set(l.entity_id, (m.get(l.entity_id) ?? 0) + 1);
    }
  }
  return t;
}

/** The entity a surface most often denotes (ties: smallest id), or null for an unknown surface. */
export function mostFrequentEntity(table: ReadonlyMap<string, ReadonlyMap<string, number>>, surface: string): string | null {
  const m = table.get(surface);
  if (!m || m.size === 0) return null;
  let best: string | null = null;
  let n = -1;
  for (const [id, c] of [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    if (c > n) {
      best = id;
      n = c;
    }
  }
  return best;
}

const isWordChar = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9]/.test(c);

/** Dictionary mention detection: longest surfaces first, whole words, non-overlapping, left to right. */
export function dictionaryMentions(text: string, surfaces: Iterable<string>): [number, number][] {
  const list = [...new Set(surfaces)].filter((s) => s !== "").sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  const spans: [number, number][] = [];
  let i = 0;
  while (i < text.length) {
    let hit: string | null = null;
    if (!isWordChar(text[i - 1])) {
      for (const s of list) {
        if (text.startsWith(s, i) && !isWordChar(text[i + s.length])) {
          hit = s;
          break;
        }
      }
    }
    if (hit) {
      spans.push([i, i + hit.length]);
      i += hit.length;
    } else i++;
  }
  return spans;
}

/** The most-frequent-entity baseline on one sentence: an annotated output and linked mentions. */
export function mostFrequentEntityLinking(text: string, table: ReadonlyMap<string, ReadonlyMap<string, number>>): ElPrediction {
  const spans = dictionaryMentions(text, table.keys());
  const d = ONEGEN_ENTITY_LINKING;
  let output = "";
  let at = 0;
  const mentions: ElPrediction["mentions"] = [];
  for (const [a, b] of spans) {
    const m = text.slice(a, b);
    output += text.slice(at, a) + d.mentionOpen + m + d.mentionClose + d.queryToken + d.continueToken;
    at = b;
    mentions.push({ mention: m, entity: mostFrequentEntity(table, m) });
  }
  return { output: output + text.slice(at), mentions };
}

const STOPWORDS = new Set(["a", "an", "the", "of", "in", "is", "was", "at", "by", "for", "to", "and", "its", "it", "as", "from", "on", "who", "where", "what", "which", "does", "did", "how"]);

/** Lowercased content words (letters/digits runs minus stopwords), with repeats. */
export function contentWords(text: string): string[] {
  return (text.toLowerCase().match(/[a-z0-9]+/g) ?? []).filter((w) => !STOPWORDS.has(w));
}

/** Token-overlap score: occurrences of query words that appear in the document. */
export function lexicalScore(query: readonly string[], doc: ReadonlySet<string>): number {
  let s = 0;
  for (const w of query) if (doc.has(w)) s++;
  return s;
}

/** Best document by lexical score (ties: the first), or null for no documents. */
export function lexicalRetrieve(query: string, docs: readonly { id: string; words: ReadonlySet<string> }[]): { id: string; score: number } | null {
  const q = contentWords(query);
  let best: { id: string; score: number } | null = null;
  for (const d of docs) {
    const s = lexicalScore(q, d.words);
    if (!best || s > best.score) best = { id: d.id, score: s };
  }
  return best;
}

export function lexicalDocs(docs: readonly DemoDocument[]): { id: string; words: Set<string> }[] {
  return docs.map((d) => ({ id: d.id, words: new Set(contentWords(stripTokens(d.text))) }));
}

/** Removes OneGen's bracketed/angled special tokens and the EL document instruction from text. */
function stripTokens(text: string): string {
  return text.replace(/\[[A-Za-z_ ]+\]|<\/?[A-Za-z-]+>/g, " ").replace(/^Represent the following[\s\S]*?description:\n/, "");
}

export interface Scores {
  el_micro_f1: number;
  md_f1: number;
  retrieval_acc_at1: number;
  multihop_em: number;
  multihop_f1: number;
  /** Breakdown of retrieval_acc_at1. */
  retrieval_acc_at1_el: number;
  retrieval_acc_at1_multihop: number;
  /** EL micro-F1 over ambiguous-name mentions only (gold and predicted units whose surface is ambiguous). */
  el_micro_f1_ambiguous: number;
}

/** Scores of the trivial baselines on the evaluated split (no model involved). */
export function trivialScores(data: DemoData, limits: { el?: number; mh?: number } = {}): Scores & { method: string } {
  const el = data.elTest.slice(0, limits.el ?? data.elTest.length);
  const mh = data.mhTest.slice(0, limits.mh ?? data.mhTest.length);
  const table = surfaceTable(data.kb, data.elTrain);
  const preds = el.map((s) => mostFrequentEntityLinking(s.text, table));
  const elDocs = lexicalDocs(data.elDocs);
  const mhDocs = lexicalDocs(data.mhDocs);
  const elGold: string[] = [];
  const elTop: (string | null)[] = [];
  for (const s of el) {
    for (const l of s.labels) {
      const m = s.text.slice(l.span[0], l.span[1]);
      elGold.push(l.entity_id);
      elTop.push(lexicalRetrieve(`${m} ${m} ${s.text}`, elDocs)?.id ?? null);
    }
  }
  const mhGold: string[] = [];
  const mhTop: (string | null)[] = [];
  for (const q of mh) {
    for (const h of q.hops) {
      mhGold.push(h.doc);
      mhTop.push(lexicalRetrieve(h.sub_question, mhDocs)?.id ?? null);
    }
  }
  // majority answer per question type
  const byType = new Map<string, Map<string, number>>();
  for (const q of data.mhTrain) {
    if (!byType.has(q.type)) byType.set(q.type, new Map());
    const m = byType.get(q.type)!;
    m.set(q.answer, (m.get(q.answer) ?? 0) + 1);
  }
  const answers = mh.map((q) => {
    const m = byType.get(q.type);
    if (!m) return null;
    return [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0];
  });
  const r = combineRetrieval(accuracyAt1(elGold, elTop), accuracyAt1(mhGold, mhTop));
  const mhs = multiHopScores(answers, mh.map((q) => q.answer));
  return {
    method: "most-frequent entity (dictionary mentions) / lexical-overlap retrieval / majority answer per question type",
    el_micro_f1: entityLinkingF1(el, preds).f1,
    md_f1: mentionDetectionF1(el, preds).f1,
    ...r,
    multihop_em: mhs.em,
    multihop_f1: mhs.f1,
    el_micro_f1_ambiguous: ambiguousF1(el, preds, table),
  };
}

function combineRetrieval(el: { correct: number; total: number; accuracy: number }, mh: { correct: number; total: number; accuracy: number }) {
  const total = el.total + mh.total;
  return { retrieval_acc_at1: total ? (el.correct + mh.correct) / total : 0, retrieval_acc_at1_el: el.accuracy, retrieval_acc_at1_multihop: mh.accuracy };
}

/** EL micro-F1 restricted to surfaces that name several entities. */
export function ambiguousF1(gold: readonly ElGold[], preds: readonly ElPrediction[], table: ReadonlyMap<string, ReadonlyMap<string, number>>): number {
  const amb = (s: string | null) => s !== null && (table.get(s.trim())?.size ?? 0) > 1;
  const g = gold.map((s) => ({ ...s, labels: s.labels.filter((l) => amb(s.text.slice(l.span[0], l.span[1]))) }));
  const p = preds.map((x) => ({ ...x, mentions: x.mentions.filter((m) => amb(m.mention)) }));
  return entityLinkingF1(g, p).f1;
}

// ==================================================================== indexes

export interface DemoIndexes {
  el: DocumentIndex;
  mh: DocumentIndex;
  /** "loaded" or "built" per index. */
  how: { el: "loaded" | "built"; mh: "loaded" | "built" };
  dispose(): void;
}

async function isDir(path: string): Promise<boolean> {
  const specifier = "node:fs/promises"; // a variable, so browser bundlers leave it alone
  const { stat } = (await import(specifier)) as typeof import("node:fs/promises");
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The demo's two indexes somewhere other than a local folder (e.g. served beside a page). */
export interface DemoIndexDirs {
  /** Shown in messages: a URL or description. */
  readonly name: string;
  dir(sub: "el" | "mhqa"): ModelDir;
}

/** INDEX_URL/el/ and INDEX_URL/mhqa/ over HTTP (read with Range requests by loadIndex). */
export function urlDemoIndexDirs(baseUrl: string, options: { fetch?: typeof fetch } = {}): DemoIndexDirs {
  return { name: baseUrl, dir: (sub) => urlDir(joinPath(baseUrl, sub), options) };
}

/**
 * The entity index (INDEX_DIR/el, [SE]) and the fragment index (INDEX_DIR/mhqa,
 * [Document Fragment Representation]) of the demo. Loaded when present (a mismatched model or a
 * corrupt index is refused by loadIndex); when absent and `build` is given, encoded from the data
 * folder's docs.jsonl files with the model and saved there; otherwise a LoadError. Given
 * DemoIndexDirs (no file system), the indexes are loaded only: `build`/`rebuild` are refused.
 */
export async function openDemoIndexes(
  ctx: GpuContext,
  model: LoadedDecoder,
  indexDir: string | DemoIndexDirs,
  data: DemoData,
  opts: { build?: boolean; rebuild?: boolean; onProgress?: (what: string, p: EncodeProgress) => void } = {},
): Promise<DemoIndexes> {
  const one = async (sub: "el" | "mhqa", docs: DemoDocument[], conv: { docToken: string; skipFirst: number }): Promise<[DocumentIndex, "loaded" | "built"]> => {
    if (typeof indexDir !== "string") {
      if (opts.rebuild) throw new UsageError(`openDemoIndexes: cannot rebuild the indexes at '${indexDir.name}': saving needs a local folder`);
      return [await loadIndex(ctx, indexDir.dir(sub), model.decoder), "loaded"];
    }
    const dir = joinPath(indexDir, sub);
    if (!opts.rebuild && (await isDir(dir))) return [await loadIndex(ctx, dir, model.decoder), "loaded"];
    if (!opts.build && !opts.rebuild) {
      throw new LoadError(`index '${dir}' does not exist`, "run `onegen demo` once (it builds and saves the demo indexes), or give --index DIR");
    }
    if (!model.tokenizer) throw new LoadError("the demo model directory has no tokenizer.json, so the documents cannot be encoded");
    const docTokenId = model.tokenizer.requireTokenId(conv.docToken);
    const index = await encodeDocuments(model.decoder, docs, {
      docTokenId,
      docTokenName: conv.docToken,
      skipFirst: conv.skipFirst,
      tokenizer: model.tokenizer,
      dtype: "f16",
      ...(opts.onProgress ? { onProgress: (p: EncodeProgress) => opts.onProgress!(sub, p) } : {}),
    });
    // The demo owns INDEX_DIR's layout: create it (saveIndex itself wants an existing parent).
    const specifier = "node:fs/promises";
    const { mkdir } = (await import(specifier)) as typeof import("node:fs/promises");
    await mkdir(indexDir, { recursive: true });
    await saveIndex(index, dir, { flag: "--index" });
    return [index, "built"];
  };
  const [el, elHow] = await one("el", data.elDocs, data.el);
  let mh: DocumentIndex;
  let mhHow: "loaded" | "built";
  try {
    [mh, mhHow] = await one("mhqa", data.mhDocs, data.mh);
  } catch (e) {
    el.dispose();
    throw e;
  }
  return {
    el,
    mh,
    how: { el: elHow, mh: mhHow },
    dispose: () => {
      el.dispose();
      mh.dispose();
    },
  };
}

// ==================================================================== the model's scores

/**
 * Entity-linking decoding of the demo and the evaluation: "free" is OneGen's (the model writes the
 * annotated sentence itself, the default); "copy-input" constrains every non-markup id to the
 * input's (EntityLinkingOptions.copyInput), so the model decides only where mentions open and
 * close and what each [LK] retrieves (demo/MODEL_CARD.md has both scores).
 */
export const EL_DECODINGS = ["copy-input", "free"] as const;
export type ElDecoding = (typeof EL_DECODINGS)[number];
export const DEFAULT_EL_DECODING: ElDecoding = "free";

export interface EvalOptions {
  twoPass?: boolean;
  /** Entity linking with copy-input constrained decoding (see EntityLinkingOptions.copyInput). */
  copyInput?: boolean;
  /** Measure teacher-forced retrieval accuracy@1 (default true; false leaves it 0 and saves the prefills). */
  retrievalProbe?: boolean;
  /** Evaluate only the first N sentences / questions. */
  limitEl?: number;
  limitMh?: number;
  /** Cap on generated tokens per sentence (default: 3·input tokens + 16, at most OneGen's 512). */
  maxNewTokensEl?: number;
  /** Cap per question (default 256). */
  maxNewTokensMh?: number;
  /** Called after each example. */
  onExample?: (e: { task: "entity-linking"; gold: ElGold; result: EntityLinkingResult } | { task: "multihop-qa"; gold: MhGold; result: MultiHopResult }) => void;
}

export interface ModelScores extends Scores {
  mode: "one-pass" | "two-pass";
  /** Entity-linking decoding: free (as OneGen) or constrained to copy the input. */
  el_decoding: "free" | "copy-input";
  examples: { el: number; mh: number };
  /** Wall time of the generation runs (ms) and per example. */
  timing: { el_ms: number; mh_ms: number; el_ms_per_sentence: number; mh_ms_per_question: number; retrieval_probe_ms: number };
}

/** Generated-token cap for one sentence: the annotated sentence is the input plus 3 tokens per mention. */
export function elMaxNewTokens(model: TaskModel, text: string): number {
  if (!model.tokenizer) throw new LoadError("the model directory has no tokenizer.json: the demo works on text");
  return Math.min(ONEGEN_ENTITY_LINKING.maxNewTokens, 3 * model.tokenizer.encode(text, { addSpecialTokens: false }).length + 16);
}

/** Generated-token cap per question (reasoning chain with two injected paragraphs and the answer). */
export const MH_MAX_NEW_TOKENS = 256;

/** The demo's entity linking of one sentence (the CLI, the evaluation and the page run exactly this). */
export function linkSentence(
  model: TaskModel,
  indexes: Pick<DemoIndexes, "el">,
  text: string,
  opts: { copyInput?: boolean; twoPass?: boolean; maxNewTokens?: number; onEvent?: (e: TaskEvent) => void } = {},
): Promise<EntityLinkingResult> {
  return runEntityLinking(model, indexes.el, { text }, {
    twoPass: opts.twoPass ?? false,
    maxNewTokens: opts.maxNewTokens ?? elMaxNewTokens(model, text),
    copyInput: opts.copyInput ?? false,
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
  });
}

/** The demo's multi-hop answer to one question (the CLI, the evaluation and the page run exactly this). */
export function answerQuestion(
  model: TaskModel,
  indexes: Pick<DemoIndexes, "mh">,
  question: string,
  opts: { twoPass?: boolean; maxNewTokens?: number; onEvent?: (e: TaskEvent) => void } = {},
): Promise<MultiHopResult> {
  return runMultiHopQa(model, indexes.mh, { text: question }, {
    twoPass: opts.twoPass ?? false,
    maxNewTokens: opts.maxNewTokens ?? MH_MAX_NEW_TOKENS,
    stopAfterAnswer: true,
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
  });
}

/** Strips a trailing EOS from a gold target (the prefill must not end the sequence). */
function withoutEos(s: string, eos: string | null): string {
  return eos !== null && s.endsWith(eos) ? s.slice(0, -eos.length) : s;
}

/** Runs the model over the evaluated split and scores it (see the file header). */
export async function evaluateModel(model: LoadedDecoder, indexes: DemoIndexes, data: DemoData, opts: EvalOptions = {}): Promise<ModelScores> {
  const tk = model.tokenizer;
  if (!tk) throw new LoadError("the model directory has no tokenizer.json: the demo evaluation works on text");
  const twoPass = opts.twoPass ?? false;
  const el = data.elTest.slice(0, opts.limitEl ?? data.elTest.length);
  const mh = data.mhTest.slice(0, opts.limitMh ?? data.mhTest.length);
  const table = surfaceTable(data.kb, data.elTrain);
  const eos = tk.eosToken;

  // entity linking, generated
  const preds: ElPrediction[] = [];
  let t0 = performance.now();
  for (const s of el) {
    const r = await linkSentence(model, indexes, s.text, { twoPass, copyInput: opts.copyInput ?? false, ...(opts.maxNewTokensEl !== undefined ? { maxNewTokens: opts.maxNewTokensEl } : {}) });
    preds.push({ output: r.annotated, mentions: r.mentions.map((m) => ({ mention: m.mention, entity: m.entity })) });
    opts.onExample?.({ task: "entity-linking", gold: s, result: r });
  }
  const elMs = performance.now() - t0;

  // multi-hop QA, generated
  const answers: (string | null)[] = [];
  t0 = performance.now();
  for (const q of mh) {
    const r = await answerQuestion(model, indexes, q.question, { twoPass, ...(opts.maxNewTokensMh !== undefined ? { maxNewTokens: opts.maxNewTokensMh } : {}) });
    answers.push(r.answer);
    opts.onExample?.({ task: "multihop-qa", gold: q, result: r });
  }
  const mhMs = performance.now() - t0;

  // retrieval accuracy@1, teacher-forced (one prefill of prompt + gold output per example)
  t0 = performance.now();
  const elGold: string[] = [];
  const elTop: (string | null)[] = [];
  const probe = opts.retrievalProbe ?? true;
  for (const s of probe ? el : []) {
    if (s.annotated === undefined) throw new LoadError(`gold sentence '${s.id}' has no "annotated" output`);
    const prompt = ONEGEN_ENTITY_LINKING.inputTemplate.split("{input}").join(s.text) + withoutEos(s.annotated, eos);
    const r = await runEntityLinking(model, indexes.el, { text: prompt }, { template: null, maxNewTokens: 0, twoPass });
    const hits = r.retrievals.filter((x) => x.source === "prompt");
    if (hits.length !== s.labels.length) throw new LoadError(`gold sentence '${s.id}': ${s.labels.length} labels but ${hits.length} [LK] tokens in its annotated output`);
    s.labels.forEach((l, i) => {
      elGold.push(l.entity_id);
      elTop.push(hits[i]!.hits[0]?.id ?? null);
    });
  }
  const mhGold: string[] = [];
  const mhTop: (string | null)[] = [];
  for (const q of probe ? mh : []) {
    const prompt = ONEGEN_MULTIHOP_QA.inputTemplate.split("{input}").join(q.question) + withoutEos(q.target, eos);
    const r = await runMultiHopQa(model, indexes.mh, { text: prompt }, { template: null, maxNewTokens: 0, twoPass, maxRetrievals: q.hops.length });
    const hits = r.retrievals.filter((x) => x.source === "prompt");
    if (hits.length !== q.hops.length) throw new LoadError(`gold question '${q._id}': ${q.hops.length} hops but ${hits.length} query tokens in its target`);
    q.hops.forEach((h, i) => {
      mhGold.push(h.doc);
      mhTop.push(hits[i]!.hits[0]?.id ?? null);
    });
  }
  const probeMs = performance.now() - t0;

  const mhs = multiHopScores(answers, mh.map((q) => q.answer));
  return {
    mode: twoPass ? "two-pass" : "one-pass",
    el_decoding: opts.copyInput ? "copy-input" : "free",
    el_micro_f1: entityLinkingF1(el, preds).f1,
    md_f1: mentionDetectionF1(el, preds).f1,
    ...combineRetrieval(accuracyAt1(elGold, elTop), accuracyAt1(mhGold, mhTop)),
    multihop_em: mhs.em,
    multihop_f1: mhs.f1,
    el_micro_f1_ambiguous: ambiguousF1(el, preds, table),
    examples: { el: el.length, mh: mh.length },
    timing: {
      el_ms: Math.round(elMs),
      mh_ms: Math.round(mhMs),
      el_ms_per_sentence: el.length ? Math.round(elMs / el.length) : 0,
      mh_ms_per_question: mh.length ? Math.round(mhMs / mh.length) : 0,
      retrieval_probe_ms: Math.round(probeMs),
    },
  };
}
