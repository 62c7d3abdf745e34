// The task protocol: what a caller gives a OneGen task run (model, input, options) and what comes
// back (the event stream, the result objects). Types only; the engine that produces them is
// src/onegen/stream.ts (events over one Session) and src/onegen/task-runner.ts (one run), the
// tasks src/onegen/entity-linking.ts and src/onegen/multihop-qa.ts.

import type { Decoder } from "../model/decoder.js";
import type { DType } from "../gpu/tensor.js";
import type { Tokenizer } from "../tokenizer.js";
import type { DeviceTurn, FinishReason, SamplingOptions } from "../model/session.js";
import type { RetrievalHit } from "./loop.js";
import type { Trace } from "./trace.js";
import type { MarkerRef, TokenRef } from "./token-names.js";

// ==================================================================== events

export type TokenKind = "generated" | "forced";

/** What a run streams, in session order (a thin layer over Session.generate's RetrievalToken). */
export type TaskEvent =
  | { type: "token"; id: number; position: number; kind: TokenKind; text?: string }
  | { type: "retrieval"; position: number; source: "prompt" | "generated"; hits: RetrievalHit[] }
  | { type: "injection"; position: number; start: number; ids: number[]; document: string }
  | { type: "injection"; position: number; refused: true }
  | { type: "done"; finish: FinishReason; length: number };

// ==================================================================== runs

/** The model a task runs on (a LoadedDecoder fits). */
export interface TaskModel {
  decoder: Decoder;
  tokenizer: Tokenizer | null;
}

/** Text (rendered with the template and tokenized) or ids (wrapped by idsTemplate). */
export type TaskInput = { text: string } | { ids: readonly number[] };

export interface TaskRunOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Hits kept per retrieval (default 1: OneGen takes the argmax). */
  k?: number;
  /** Two-pass baseline instead of the one-pass loop. */
  twoPass?: boolean;
  /** Text template with `{input}` (default: OneGen's for the task; null: the text as is). */
  template?: string | null;
  /** For ids input: ids put before and after the input ids (default none: the ids are the whole prompt). */
  idsTemplate?: { before: readonly number[]; after: readonly number[] };
  /** Add the tokenizer's BOS/EOS to a text prompt (default false, as OneGen's configs). */
  addSpecialTokens?: boolean;
  /** Stop ids (default: the model config's EOS ids). */
  eosIds?: readonly number[];
  /** Extra forcing rules, applied after the task's own. */
  forceAfter?: readonly { pattern: readonly number[]; token: number }[];
  /** KV cache rows (default: enough for the prompt, the new tokens and every injection, at most the model's context). */
  capacity?: number;
  /**
   * The document token the index must have been built at (default: the task's, "[SE]" for entity
   * linking, "[Document Fragment Representation]" for multi-hop QA). Given: the index's doc token
   * must be this one. Default: an index built at the other task's doc token is refused, unless the
   * run names its own queryToken (a custom setup); an index at some other token or without one
   * (synthetic vectors) is accepted.
   */
  docToken?: TokenRef;
  cacheDtype?: DType;
  stepsPerRead?: number;
  /** Called with every event as it happens. */
  onEvent?: (e: TaskEvent) => void;
  /**
   * The decode loop's readbacks go through it (GenerateOptions.turn, src/model/session.ts): a
   * caller sharing the device (onegen serve) lets its other work encode while this run waits.
   * One-pass runs only.
   */
  turn?: DeviceTurn;
}

export interface TaskRetrieval {
  position: number;
  source: "prompt" | "generated";
  hits: RetrievalHit[];
}

export interface TaskResult {
  mode: "one-pass" | "two-pass";
  promptIds: number[];
  /** Every id of the session: prompt, generated/forced ids and injected documents. */
  ids: number[];
  finish: FinishReason;
  retrievals: TaskRetrieval[];
  /** Injections in order (refused ones have refused: true). */
  injections: ({ position: number; start: number; ids: number[]; document: string } | { position: number; refused: true })[];
  trace: Trace;
  /** Everything after the prompt, decoded with special tokens (null without a tokenizer). */
  output: string | null;
  stats: { readbacks: number; ms: number; newTokens: number };
}

export interface LinkedMention {
  /** Mention text as written by the model (text mode) or null. */
  mention: string | null;
  /** Its ids (ids mode) or null. */
  mentionIds: number[] | null;
  /** [start, end) in the input: code points (text input) or token offsets (ids input); null if not found. */
  span: [number, number] | null;
  /** Position of the query token ([LK]) in `ids`. */
  position: number;
  /** Best entry's document id (null when nothing was retrieved, e.g. an empty index). */
  entity: string | null;
  fragment: number | null;
  score: number | null;
}

export interface EntityLinkingResult extends TaskResult {
  task: "entity-linking";
  /** The model's annotated output (generated ids decoded, special tokens kept), null without a tokenizer. */
  annotated: string | null;
  spanUnit: "char" | "token";
  mentions: LinkedMention[];
}

export interface MultiHopResult extends TaskResult {
  task: "multihop-qa";
  answer: string | null;
  answerIds: number[] | null;
}

export interface EntityLinkingOptions extends TaskRunOptions {
  queryToken?: TokenRef;
  continueToken?: TokenRef;
  mentionOpen?: MarkerRef;
  mentionClose?: MarkerRef;
  /** At most this many [LK] retrievals (default unlimited, as OneGen). */
  maxRetrievals?: number;
  /**
   * Constrained decoding (GENRE-style): the output must be the input with mention markup, so the
   * model only chooses where mentions open and close (and what [LK] retrieves); every other id is
   * the input's. Default false: the model writes freely, as in OneGen.
   */
  copyInput?: boolean;
}

export interface MultiHopOptions extends TaskRunOptions {
  queryToken?: TokenRef;
  paragraphOpen?: MarkerRef;
  paragraphClose?: MarkerRef;
  answerOpen?: MarkerRef;
  answerClose?: MarkerRef;
  /** Default 5 (OneGen's MAX_RETRIEVAL_CNT). */
  maxRetrievals?: number;
  /** Cap on injected document tokens. */
  maxDocTokens?: number;
  /** Stop once the answer's closing marker is written (needs a tokenizer; default false, as OneGen). */
  stopAfterAnswer?: boolean;
}
