// The demo's metrics (issue 10; each checked against hand-computed examples in test/demo-eval.test.ts):
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
// - Retrieval accuracy@1: the fraction of retrieval tokens whose best hit is the gold document
//   (how the demo measures it: src/demo/eval.ts).
import { UsageError } from "../errors.js";
import { ONEGEN_ENTITY_LINKING } from "../onegen/defaults.js";
import type { ElGold } from "./data.js";

interface Prf {
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

/** The three retrieval fields of Scores from the entity-linking and multi-hop accuracies. */
export function combineRetrieval(el: { correct: number; total: number; accuracy: number }, mh: { correct: number; total: number; accuracy: number }) {
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
