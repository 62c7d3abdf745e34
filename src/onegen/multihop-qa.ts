// OneGen multi-hop QA (defaults: src/onegen/defaults.ts): each `[Question Representation]`
// retrieves, the best fragment's document is injected between paragraph markers, and the answer
// is read from the model's `<FINAL-ANSWER>…</FINAL-ANSWER>`.

import { UsageError } from "../errors.js";
import type { RetrievalGenerateOptions } from "./loop.js";
import type { DocumentIndex } from "./index.js";
import { ONEGEN_MULTIHOP_QA } from "./defaults.js";
import { markerIdsOf, textMarker, tokenIdOf } from "./token-names.js";
import { extractAnswer, extractAnswerIds } from "./parse-output.js";
import { capacityFor, checkIndex, execute, preparePrompt, samplingOf, undecodableIds, type Execution, type PreparedTask } from "./task-runner.js";
import type { MultiHopOptions, MultiHopResult, TaskInput, TaskModel } from "./protocol.js";

/** The resolved token ids of a multi-hop QA run. */
export interface MultiHopTokens {
  query: number;
  prefix: number[];
  suffix: number[];
  answerOpen: number[];
  answerClose: number[];
}

export function multiHopTokens(model: TaskModel, o: MultiHopOptions = {}): MultiHopTokens {
  const V = model.decoder.vocabSize;
  const d = ONEGEN_MULTIHOP_QA;
  const tk = model.tokenizer;
  return {
    query: tokenIdOf(o.queryToken ?? d.queryToken, tk, V, "multi-hop QA (query token)"),
    prefix: markerIdsOf(o.paragraphOpen ?? d.paragraphOpen, tk, V, "multi-hop QA (paragraph open)"),
    suffix: markerIdsOf(o.paragraphClose ?? d.paragraphClose, tk, V, "multi-hop QA (paragraph close)"),
    answerOpen: markerIdsOf(o.answerOpen ?? d.answerOpen, tk, V, "multi-hop QA (answer open)"),
    answerClose: markerIdsOf(o.answerClose ?? d.answerClose, tk, V, "multi-hop QA (answer close)", "after-text"),
  };
}

/**
 * OneGen multi-hop QA: each `[Question Representation]` retrieves, the best fragment's document is
 * injected as `<paragraph>…</paragraph>` (at most maxRetrievals times), and the answer is read
 * from the first `<FINAL-ANSWER>…</FINAL-ANSWER>` the model writes after the last injection (as
 * OneGen reads it from the last increment).
 */
export async function runMultiHopQa(model: TaskModel, index: DocumentIndex, input: TaskInput, o: MultiHopOptions = {}): Promise<MultiHopResult> {
  const t = prepareMultiHopQa(model, index, input, o);
  return t.finish(await execute(model, t.prompt, t.gen, t.capacity, o));
}

/** runMultiHopQa before it runs (see PreparedTask): checked, its prompt and rules resolved. */
export function prepareMultiHopQa(model: TaskModel, index: DocumentIndex, input: TaskInput, o: MultiHopOptions = {}): PreparedTask<MultiHopResult> {
  const what = "multi-hop QA";
  checkIndex(model, index, what, o, "multihop-qa");
  const toks = multiHopTokens(model, o);
  const { prompt } = preparePrompt(model, input, ONEGEN_MULTIHOP_QA.inputTemplate, o, what);
  const maxNew = o.maxNewTokens ?? ONEGEN_MULTIHOP_QA.maxNewTokens;
  const maxRetrievals = o.maxRetrievals ?? ONEGEN_MULTIHOP_QA.maxRetrievals;
  if (!Number.isInteger(maxRetrievals) || maxRetrievals < 0) throw new UsageError(`${what}: maxRetrievals must be a non-negative integer, got ${maxRetrievals}`);
  const tk = model.tokenizer;
  const decode = tk ? (ids: number[]) => tk.decode(ids) : undefined;
  const answerOpenText = tk ? textMarker(o.answerOpen ?? ONEGEN_MULTIHOP_QA.answerOpen, tk, model.decoder.vocabSize, "multi-hop QA (answer open)") : null;
  const answerCloseText = tk ? textMarker(o.answerClose ?? ONEGEN_MULTIHOP_QA.answerClose, tk, model.decoder.vocabSize, "multi-hop QA (answer close)") : null;
  if (o.stopAfterAnswer && !tk) throw new UsageError(`${what}: stopAfterAnswer needs a tokenizer`);
  const inject = { prefix: toks.prefix, suffix: toks.suffix, ...(o.maxDocTokens !== undefined ? { maxDocTokens: o.maxDocTokens } : {}) };
  const gen: RetrievalGenerateOptions = {
    ...samplingOf(o),
    maxNewTokens: maxNew,
    eosIds: o.eosIds ?? model.decoder.config.eosTokenIds,
    ...(o.forceAfter ? { forceAfter: o.forceAfter } : {}),
    retrieval: { index, queryTokenId: toks.query, k: o.k ?? 1, maxRetrievals, inject },
    bannedIds: undecodableIds(model),
    ...(o.stepsPerRead !== undefined ? { stepsPerRead: o.stepsPerRead } : {}),
    ...(decode ? { decode } : {}),
    ...(o.stopAfterAnswer && answerCloseText ? { stopStrings: [answerCloseText] } : {}),
  };
  let longest = 0;
  for (const d of index.documents) longest = Math.max(longest, d.tokenCount);
  if (o.maxDocTokens !== undefined) longest = Math.min(longest, o.maxDocTokens);
  const capacity = capacityFor(model, prompt.length, maxNew, toks.prefix.length + longest + toks.suffix.length, index.count > 0 ? maxRetrievals : 0, o, what);
  return { prompt, gen, capacity, finish: (x) => answerResult(model, toks, x, answerOpenText, answerCloseText) };
}

function answerResult(model: TaskModel, toks: MultiHopTokens, { result, writtenRuns }: Execution, answerOpenText: string | null, answerCloseText: string | null): MultiHopResult {
  const tk = model.tokenizer;
  const lastRun = writtenRuns[writtenRuns.length - 1]!;
  let answer: string | null = null;
  let answerIds: number[] | null = null;
  if (tk) {
    answer = extractAnswer(tk.decode(lastRun), answerOpenText!, answerCloseText!);
    if (answer !== null) answerIds = tk.encode(answer, { addSpecialTokens: false });
  } else {
    answerIds = extractAnswerIds(lastRun, toks.answerOpen, toks.answerClose);
  }
  return { ...result, task: "multihop-qa", answer, answerIds };
}
