// Trivial baselines of the demo (no model), scored on the evaluated split like the model
// (src/demo/eval.ts):
// - most-frequent entity: mentions found by dictionary match of every knowledge-base name (longest
//   first, whole words, left to right), each linked to the entity that name most often denotes in
//   the training split (ties and unseen names: the smallest id);
// - lexical match: retrieval by token overlap (lowercased words, stopwords removed; the mention
//   counted twice, then its sentence, for entity linking; the gold sub-question for multi-hop);
//   multi-hop answers: the most frequent training answer of the question's type.
import { ONEGEN_ENTITY_LINKING } from "../onegen/defaults.js";
import type { DemoData, DemoDocument, ElGold, KbEntity } from "./data.js";
import { accuracyAt1, ambiguousF1, combineRetrieval, entityLinkingF1, mentionDetectionF1, multiHopScores, type ElPrediction, type Scores } from "./metrics.js";

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
function contentWords(text: string): string[] {
  return (text.toLowerCase().match(/[a-z0-9]+/g) ?? []).filter((w) => !STOPWORDS.has(w));
}

/** Token-overlap score: occurrences of query words that appear in the document. */
function lexicalScore(query: readonly string[], doc: ReadonlySet<string>): number {
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
