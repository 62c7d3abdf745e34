// OneGen's own task defaults, quoted as data (github.com/zjunlp/OneGen, config/eval_config/
// entity_linking/llama2_wo_pkl.json, config/eval_config/multi_hop_qa/llama2_onegen.json,
// src/onegen/evaluator/evaluator.py, src/onegen/util/constant.py):
//   entity linking: the mention-detection prompt; the model writes `<MENTION>m</MENTION>[LK]`,
//     the rule "</MENTION>[LK]" → `[_CONTINUE_]` is forced; each [LK]'s hidden state links the
//     mention to the nearest [SE] entry (no injection); no BOS (add_bos_token false); greedy;
//     512 new tokens.
//   multi-hop QA: the multi-step reasoning prompt; `[Question Representation]` is the query token,
//     the best fragment's document is injected as `<paragraph>…</paragraph>`; at most 5
//     retrievals (MAX_RETRIEVAL_CNT); the answer is read from `<FINAL-ANSWER>…</FINAL-ANSWER>`.
//     Difference: OneGen re-tokenizes history + "<paragraph>" + raw document text; here the
//     injected tokens are the document's ids as stored in the index (as encoded, with its
//     document-side token) between the marker ids tokenized on their own.
// The tasks that use them: src/onegen/entity-linking.ts, src/onegen/multihop-qa.ts.

/** OneGen's entity-linking setup (config/eval_config/entity_linking/llama2_wo_pkl.json). */
export const ONEGEN_ENTITY_LINKING = {
  inputTemplate:
    "[INST] You are good at mention detection. Identify and extract mentions of entities from the text. Please output the original text with annotations. " +
    "Here, the annotation for each mention should be formatted as `<MENTION>{{mention in text}}</MENTION>` when displayed. \n\nTEST TEXT:\n{input} [/INST]",
  mentionOpen: "<MENTION>",
  mentionClose: "</MENTION>",
  queryToken: "[LK]",
  continueToken: "[_CONTINUE_]",
  /** Document side (used by `onegen index` when building the entity index). */
  docToken: "[SE]",
  /** The instruction of each entity document holds one [SE] that is not indexed. */
  skipFirst: 1,
  addSpecialTokens: false,
  maxNewTokens: 512,
} as const;

/** OneGen's multi-hop QA setup (config/eval_config/multi_hop_qa/llama2_onegen.json). */
export const ONEGEN_MULTIHOP_QA = {
  inputTemplate:
    "You are good at multi-step reasoning in QA. For complex questions, break down the process. Generate and answer sub-questions step-by-step, " +
    "using retrieved documents at each stage. Output the final answer wrapped by <FINAL-ANSWER></FINAL-ANSWER>. Here is a question: {input}",
  /** Document side: how OneGen renders a fragment for embedding (index building). */
  embedTemplate: "Represent the following document fragment and output it after the '[Document Fragment Representation]' token. \nHere are document fragment:\n{input}",
  queryToken: "[Question Representation]",
  docToken: "[Document Fragment Representation]",
  skipFirst: 1,
  paragraphOpen: "<paragraph>",
  paragraphClose: "</paragraph>",
  answerOpen: "<FINAL-ANSWER>",
  answerClose: "</FINAL-ANSWER>",
  maxRetrievals: 5,
  addSpecialTokens: false,
  maxNewTokens: 2048,
} as const;
