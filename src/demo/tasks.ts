// The demo's two tasks on one input: entity linking of a sentence and the multi-hop answer to a
// question, with the demo's decoding settings (the CLI, the evaluation and the page run exactly
// these).
import { LoadError } from "../errors.js";
import { ONEGEN_ENTITY_LINKING } from "../onegen/defaults.js";
import type { EntityLinkingResult, MultiHopResult, TaskEvent, TaskModel } from "../onegen/protocol.js";
import { runEntityLinking } from "../onegen/entity-linking.js";
import { runMultiHopQa } from "../onegen/multihop-qa.js";
import type { DemoIndexes } from "./indexes.js";

/**
 * Entity-linking decoding of the demo and the evaluation: "free" is OneGen's (the model writes the
 * annotated sentence itself, the default); "copy-input" constrains every non-markup id to the
 * input's (EntityLinkingOptions.copyInput), so the model decides only where mentions open and
 * close and what each [LK] retrieves (demo/MODEL_CARD.md has both scores).
 */
export const EL_DECODINGS = ["copy-input", "free"] as const;
export type ElDecoding = (typeof EL_DECODINGS)[number];
export const DEFAULT_EL_DECODING: ElDecoding = "free";

/** Generated-token cap for one sentence: the annotated sentence is the input plus 3 tokens per mention. */
function elMaxNewTokens(model: TaskModel, text: string): number {
  if (!model.tokenizer) throw new LoadError("the model directory has no tokenizer.json: the demo works on text");
  return Math.min(ONEGEN_ENTITY_LINKING.maxNewTokens, 3 * model.tokenizer.encode(text, { addSpecialTokens: false }).length + 16);
}

/** Generated-token cap per question (reasoning chain with two injected paragraphs and the answer). */
const MH_MAX_NEW_TOKENS = 256;

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
