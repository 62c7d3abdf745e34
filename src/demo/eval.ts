// Evaluation of the demo model (issue 10): runs the OneGen tasks over the held-out split and
// scores them (metrics: src/demo/metrics.ts; the trivial baselines to compare with:
// src/demo/baselines.ts).
//
// Retrieval accuracy@1: the fraction of retrieval tokens whose best hit is the gold document,
//   measured teacher-forced: the prompt followed by the GOLD output (annotated sentence / reasoning
//   chain with gold paragraphs) is prefilled once, and every [LK] / [Question Representation] in
//   it is searched (prompt-side retrieval, src/onegen/stream.ts), so the number does not depend on
//   what the model generates.
import { LoadError } from "../errors.js";
import type { LoadedDecoder } from "../model/load.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../onegen/defaults.js";
import type { EntityLinkingResult, MultiHopResult } from "../onegen/protocol.js";
import { runEntityLinking } from "../onegen/entity-linking.js";
import { runMultiHopQa } from "../onegen/multihop-qa.js";
import type { DemoData, ElGold, MhGold } from "./data.js";
import type { DemoIndexes } from "./indexes.js";
import { accuracyAt1, ambiguousF1, combineRetrieval, entityLinkingF1, mentionDetectionF1, multiHopScores, type ElPrediction, type Scores } from "./metrics.js";
import { surfaceTable } from "./baselines.js";
import { answerQuestion, linkSentence } from "./tasks.js";

interface EvalOptions {
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
