// OneGen tasks on one session: entity linking, multi-hop QA and rerank, plus the event stream they
// are built on. Everything here drives Session (src/model/session.ts): the one-pass work (search
// and injection inside the decode loop) happens there; this file renders prompts, resolves token
// names, turns RetrievalToken objects into events and a trace, and reads results out of the text.
//
// Defaults are OneGen's own (github.com/zjunlp/OneGen, config/eval_config/entity_linking/
// llama2_wo_pkl.json, config/eval_config/multi_hop_qa/llama2_onegen.json, src/onegen/evaluator/
// evaluator.py, src/onegen/util/constant.py; templates quoted as data):
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
//
// Query tokens already in the PROMPT (e.g. OneGen's entity disambiguation, whose prompt holds the
// annotated sentence): their hidden states come from the prompt's own prefill (keepHidden) and
// are searched on the GPU (two-pass mode: each re-encoded and searched on the CPU); they are
// reported as retrievals with source "prompt" and count toward maxRetrievals, in order. Nothing is
// injected for them, except when the prompt ENDS with the query token and the task injects: then
// the best document is prefilled by the host (Session.append) before decoding starts, exactly
// as the loop would have done had the model generated that token. Injecting in the middle of a
// prompt would rewrite the user's input, so it is never done.
//
// With a tokenizer, ids past its vocabulary (padded embedding rows) are banned from sampling, since
// their text does not exist.
//
// Defined outcomes (both modes): an empty index → no retrieval at all (query tokens are ordinary
// tokens; mentions get entity null); k larger than the index → every entry, best first; an
// injection that does not fit the session (query position + injected length + 1 > capacity) →
// an injection event with refused: true and finish "context-full" (nothing is injected).

import type { Decoder } from "../model/decoder.js";
import type { DType, Tensor } from "../gpu/tensor.js";
import type { Tokenizer } from "../tokenizer.js";
import { resolveTokenId } from "../tokenizer.js";
import { LoadError, UsageError } from "../errors.js";
import { Session, type FinishReason, type SamplingOptions } from "../model/session.js";
import { generateOnePass, type RetrievalGenerateOptions, type RetrievalHit, type RetrievalToken } from "./loop.js";
import { embedding } from "../ops/embedding.js";
import { NO_ID, TOPK_MAX_K } from "../ops/search.js";
import { COPY_NONE, type CopyInputRule } from "../ops/decode_state.js";
import type { DocumentIndex } from "./index.js";
import { encodeDocuments } from "./encode.js";
import { injectionFits, injectionIds, indexVectorsOnHost, reencodeLastHidden, searchOnHost, twoPassGenerate } from "./baseline.js";
import { TraceBuilder, type Trace } from "./trace.js";

// ==================================================================== OneGen defaults (data)

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

// ==================================================================== token names

/** One token: a name known to the tokenizer ("[LK]"), "#ID" ("#32002"), or an id. */
export type TokenRef = string | number;
/** A marker (several tokens): text ("</MENTION>", tokenized), "#ID,#ID,…", or ids. */
export type MarkerRef = string | readonly number[];

export function tokenIdOf(ref: TokenRef, tokenizer: Tokenizer | null, vocabSize: number, what: string): number {
  const id = typeof ref === "number" ? ref : resolveTokenId(ref, tokenizer);
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new UsageError(`${what}: token ${JSON.stringify(ref)} is id ${id}, outside the vocabulary (0..${vocabSize - 1})`);
  return id;
}

const ID_LIST = /^\s*#\d+(\s*,\s*#\d+)*\s*$/;

/**
 * Ids of a marker. Text is tokenized without BOS/EOS: `standalone` as on its own (how it follows
 * an added token such as [LK]), `after-text` as it follows a word ("David</MENTION>": Llama-2
 * gives "</" there but "▁</" on its own); found as the tokens after those of "a".
 */
export function markerIdsOf(ref: MarkerRef, tokenizer: Tokenizer | null, vocabSize: number, what: string, where: "standalone" | "after-text" = "standalone"): number[] {
  let ids: number[];
  if (typeof ref !== "string") ids = [...ref];
  else if (ID_LIST.test(ref)) ids = ref.split(",").map((s) => Number(s.trim().slice(1)));
  else {
    if (!tokenizer) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} given as text, but the model has no tokenizer files: give its ids as '#ID,#ID,…'`);
    if (where === "standalone") ids = tokenizer.encode(ref, { addSpecialTokens: false });
    else {
      const head = tokenizer.encode("a", { addSpecialTokens: false });
      const all = tokenizer.encode("a" + ref, { addSpecialTokens: false });
      if (!head.every((t, i) => all[i] === t)) throw new UsageError(`${what}: cannot tokenize marker ${JSON.stringify(ref)} after text (it merges with the preceding word); give its ids as '#ID,#ID,…'`);
      ids = all.slice(head.length);
    }
  }
  if (ids.length === 0) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} has no tokens`);
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} holds id ${id}, outside the vocabulary (0..${vocabSize - 1})`);
  return ids;
}

// ==================================================================== events

export type TokenKind = "generated" | "forced";

/** What a run streams, in session order (a thin layer over Session.generate's RetrievalToken). */
export type TaskEvent =
  | { type: "token"; id: number; position: number; kind: TokenKind; text?: string }
  | { type: "retrieval"; position: number; source: "prompt" | "generated"; hits: RetrievalHit[] }
  | { type: "injection"; position: number; start: number; ids: number[]; document: string }
  | { type: "injection"; position: number; refused: true }
  | { type: "done"; finish: FinishReason; length: number };

export interface StreamOptions extends RetrievalGenerateOptions {
  /** Run retrieval as the two-pass baseline (src/onegen/baseline.ts) instead of in the loop. */
  twoPass?: boolean;
}

/** Whether a forceAfter rule produced `id` at `position` (its pattern ends just before it). */
export function isForced(ids: readonly number[], position: number, id: number, rules: RetrievalGenerateOptions["forceAfter"]): boolean {
  for (const r of rules ?? []) {
    const n = r.pattern.length;
    if (r.token !== id || n === 0 || position < n) continue;
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = ids[position - n + i] === r.pattern[i];
    if (ok) return true;
  }
  return false;
}

/**
 * Appends `prompt` to the session and generates, streaming events: retrievals for query tokens in
 * the prompt (see the file header), then one "token" event per generated id, followed by its
 * "retrieval" and "injection" events, then "done". Returns the finish reason.
 */
export async function* streamRun(session: Session, prompt: readonly number[], opts: StreamOptions): AsyncGenerator<TaskEvent, FinishReason> {
  if (prompt.length === 0) throw new UsageError("streamRun: the prompt is empty");
  const spec = opts.retrieval && opts.retrieval.index.count > 0 ? opts.retrieval : null;
  const k = Math.max(1, spec?.k ?? 1);
  if (spec && k > TOPK_MAX_K) throw new UsageError(`k = ${k} exceeds the largest supported k (${TOPK_MAX_K})`);
  const maxRetrievals = spec?.maxRetrievals ?? Infinity;
  const base = session.length;
  const promptQueries: number[] = [];
  if (spec) {
    prompt.forEach((t, i) => {
      if (t === spec.queryTokenId && promptQueries.length < maxRetrievals) promptQueries.push(i);
    });
  }
  const oneShot = promptQueries.length > 0 && !opts.twoPass;
  const out = await session.append(prompt, { keepHidden: oneShot });
  let used = 0;
  let last: { position: number; hits: RetrievalHit[] } | null = null;
  if (spec && promptQueries.length > 0) {
    const found: RetrievalHit[][] = [];
    if (oneShot) {
      const hidden = out.hidden!;
      const first = hidden.shape[0]! - prompt.length; // rows before the prompt: a pending sampled id
      const rows = await embedding(session.ctx, promptQueries.map((i) => first + i), hidden); // [Q, D]
      hidden.dispose();
      found.push(...(await searchRows(spec.index, rows, promptQueries.length, k)));
      rows.dispose();
    } else {
      for (const i of promptQueries) {
        const q = await reencodeLastHidden(session.decoder, session.ids.slice(0, base + i + 1), session.cache.dtype);
        found.push(await searchOnHost(spec.index, q, k));
      }
    }
    for (const [j, i] of promptQueries.entries()) {
      used++;
      last = { position: base + i, hits: found[j]! };
      yield { type: "retrieval", position: base + i, source: "prompt", hits: found[j]! };
    }
  } else out.hidden?.dispose();
  // A prompt that ends with a searched query token: inject as the loop would have.
  if (spec?.inject && last && last.position === session.length - 1 && last.hits.length > 0) {
    const ids = injectionIds(spec.index, last.hits[0]!.id, spec.inject);
    if (!injectionFits(last.position, ids.length, session.capacity)) {
      yield { type: "injection", position: last.position, refused: true };
      yield { type: "done", finish: "context-full", length: session.length };
      return "context-full";
    }
    await session.append(ids);
    yield { type: "injection", position: last.position, start: last.position + 1, ids, document: last.hits[0]!.id };
  }
  const left = maxRetrievals - used; // Infinity when unlimited
  const gen: RetrievalGenerateOptions = { ...opts, retrieval: spec ? { ...spec, ...(Number.isFinite(left) ? { maxRetrievals: left } : {}) } : undefined };
  const it = opts.twoPass ? twoPassGenerate(session, gen) : generateOnePass(session, gen);
  let finish: FinishReason;
  for (;;) {
    const r = await it.next();
    if (r.done) {
      finish = r.value;
      break;
    }
    yield* tokenEvents(session, r.value, opts.forceAfter);
  }
  yield { type: "done", finish, length: session.length };
  return finish;
}

function* tokenEvents(session: Session, tok: RetrievalToken, rules: RetrievalGenerateOptions["forceAfter"]): Generator<TaskEvent> {
  const kind: TokenKind = isForced(session.ids, tok.position, tok.id, rules) ? "forced" : "generated";
  yield { type: "token", id: tok.id, position: tok.position, kind, ...(tok.text !== undefined ? { text: tok.text } : {}) };
  if (tok.retrieval) yield { type: "retrieval", position: tok.retrieval.position, source: "generated", hits: tok.retrieval.hits };
  const inj = tok.injected;
  if (inj && "refused" in inj) yield { type: "injection", position: tok.position, refused: true };
  else if (inj) yield { type: "injection", position: tok.position, start: inj.start, ids: inj.ids, document: inj.document };
}

/** GPU search of Q query rows [Q, D]: one readback of ids and scores. */
async function searchRows(index: DocumentIndex, rows: Tensor, Q: number, k: number): Promise<RetrievalHit[][]> {
  const kk = Math.min(k, index.count);
  const { ids, scores } = await index.searchGpu(rows, kk);
  const idv = (await ids.read()) as Uint32Array;
  const sv = (await scores.read()) as Float32Array;
  ids.dispose();
  scores.dispose();
  const all: RetrievalHit[][] = [];
  for (let q = 0; q < Q; q++) {
    const hits: RetrievalHit[] = [];
    for (let j = 0; j < kk; j++) {
      const e = idv[q * kk + j]!;
      if (e === NO_ID) break;
      const { id, fragment } = index.entry(e);
      hits.push({ id, fragment, score: sv[q * kk + j]!, entry: e });
    }
    all.push(hits);
  }
  return all;
}

// ==================================================================== mentions and answers

/** Text as Unicode code points (spans are code-point offsets, as Python's str indices). */
const codePoints = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0)!);
const fromCodePoints = (a: readonly number[]): string => String.fromCodePoint(...a);
const isSpaceCp = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 0x0b || c === 0x0c || c === 0xa0 || (c >= 0x2000 && c <= 0x200a) || c === 0x3000;

function indexOfSeq(hay: readonly number[], needle: readonly number[], from: number, to = hay.length): number {
  for (let i = Math.max(0, from); i + needle.length <= to; i++) {
    let j = 0;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}
function lastIndexOfSeq(hay: readonly number[], needle: readonly number[], from: number, to: number): number {
  for (let i = to - needle.length; i >= Math.max(0, from); i--) {
    let j = 0;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * Mentions annotated before query tokens. `units` is the output (code points of the annotated
 * text, or token ids), `queries` the unit offsets where each query token ([LK]) starts and its
 * length in units. For each query token, the stretch since the previous query token's end must
 * end with `close` (spaces allowed in between when `space` is given); the mention is what lies
 * between the last `open` before it and `close`, trimmed of spaces. Returns [start, end) in
 * `units` per query token, or null when it is not preceded by an annotated mention.
 */
export function extractMentionRanges(
  units: readonly number[],
  queries: readonly { start: number; length: number }[],
  open: readonly number[],
  close: readonly number[],
  space: ((u: number) => boolean) | null = null,
): ([number, number] | null)[] {
  let prevEnd = 0;
  return queries.map(({ start, length }) => {
    const from = prevEnd;
    prevEnd = start + length;
    let e = start;
    while (space && e > from && space(units[e - 1]!)) e--;
    const cs = e - close.length;
    if (cs < from || indexOfSeq(units, close, cs, e) !== cs) return null;
    const os = lastIndexOfSeq(units, open, from, cs);
    if (os < 0) return null;
    let a = os + open.length;
    let b = cs;
    while (space && a < b && space(units[a]!)) a++;
    while (space && b > a && space(units[b - 1]!)) b--;
    return [a, b];
  });
}

/**
 * Character spans [start, end) (code points) of mentions in the input text, searching forward
 * from the end of the previous mapped mention: first the exact text, then the text with every
 * run of whitespace matching any run of whitespace (tokenizers add or drop spaces). A mention
 * not found (or null/empty) maps to null and does not move the search position.
 */
export function mapMentionsToInput(input: string, mentions: readonly (string | null)[]): ([number, number] | null)[] {
  return mapUnits(codePoints(input), mentions.map((m) => (m === null ? null : codePoints(m))), isSpaceCp);
}

/** The same for token ids: spans are token offsets in `input`, exact matches only. */
export function mapMentionIdsToInput(input: readonly number[], mentions: readonly (readonly number[] | null)[]): ([number, number] | null)[] {
  return mapUnits(input, mentions, null);
}

function mapUnits(input: readonly number[], mentions: readonly (readonly number[] | null)[], space: ((u: number) => boolean) | null): ([number, number] | null)[] {
  // whitespace-collapsed view of the input: norm[i] ← input[at[i]]
  let norm: number[] = [];
  let at: number[] = [];
  if (space) {
    for (let i = 0; i < input.length; i++) {
      if (space(input[i]!)) {
        if (norm.length && norm[norm.length - 1] === 32) continue;
        norm.push(32);
      } else norm.push(input[i]!);
      at.push(i);
    }
  } else {
    norm = [...input];
    at = input.map((_, i) => i);
  }
  let cursor = 0;
  return mentions.map((m) => {
    if (!m || m.length === 0) return null;
    const i = indexOfSeq(input, m, cursor);
    if (i >= 0) {
      cursor = i + m.length;
      return [i, i + m.length];
    }
    if (!space) return null;
    const nm: number[] = [];
    for (const u of m) {
      if (space(u)) {
        if (nm.length && nm[nm.length - 1] !== 32) nm.push(32);
      } else nm.push(u);
    }
    while (nm.length && nm[nm.length - 1] === 32) nm.pop();
    if (nm.length === 0) return null;
    let from = 0;
    while (from < at.length && at[from]! < cursor) from++;
    const j = indexOfSeq(norm, nm, from);
    if (j < 0) return null;
    const span: [number, number] = [at[j]!, at[j + nm.length - 1]! + 1];
    cursor = span[1];
    return span;
  });
}

/**
 * Decodes ids and returns the text with the code-point offset where each token's text begins
 * (from the decodes of every prefix; offsets are clamped to be non-decreasing, for decoders whose
 * prefixes are not prefixes of the whole, e.g. split multi-byte characters).
 */
export function decodeWithOffsets(ids: readonly number[], decode: (ids: number[]) => string): { text: string; starts: number[] } {
  const text = decode([...ids]);
  const total = codePoints(text).length;
  const starts: number[] = [];
  let prev = 0;
  for (let i = 0; i < ids.length; i++) {
    const s = Math.min(total, Math.max(prev, codePoints(decode(ids.slice(0, i))).length));
    starts.push(s);
    prev = s;
  }
  return { text, starts };
}

export interface AnnotatedMention {
  /** Index in `ids` of the query token ([LK]). */
  index: number;
  /** The mention text (text mode) or null. */
  mention: string | null;
  /** The mention's ids (ids mode) or null. */
  mentionIds: number[] | null;
}

/**
 * Mentions of an entity-linking output given as ids: one per query token in `ids`. With `decode`,
 * the ids are decoded (special tokens kept) and the markers are text; without it, markers are
 * id sequences matched on the ids.
 */
export function annotatedMentions(
  ids: readonly number[],
  queryTokenId: number,
  markers: { open: string | readonly number[]; close: string | readonly number[] },
  decode: ((ids: number[]) => string) | null,
): AnnotatedMention[] {
  const qIdx: number[] = [];
  ids.forEach((t, i) => {
    if (t === queryTokenId) qIdx.push(i);
  });
  if (decode) {
    if (typeof markers.open !== "string" || typeof markers.close !== "string") throw new UsageError("annotatedMentions: with a decoder the markers must be text");
    const { text, starts } = decodeWithOffsets(ids, decode);
    const units = codePoints(text);
    const qLen = (i: number): number => (i + 1 < ids.length ? starts[i + 1]! : units.length) - starts[i]!;
    const ranges = extractMentionRanges(units, qIdx.map((i) => ({ start: starts[i]!, length: qLen(i) })), codePoints(markers.open), codePoints(markers.close), isSpaceCp);
    return qIdx.map((index, j) => ({ index, mention: ranges[j] ? fromCodePoints(units.slice(ranges[j]![0], ranges[j]![1])) : null, mentionIds: null }));
  }
  if (typeof markers.open === "string" || typeof markers.close === "string") throw new UsageError("annotatedMentions: without a decoder the markers must be ids");
  const ranges = extractMentionRanges(ids, qIdx.map((i) => ({ start: i, length: 1 })), markers.open, markers.close, null);
  return qIdx.map((index, j) => ({ index, mention: null, mentionIds: ranges[j] ? ids.slice(ranges[j]![0], ranges[j]![1]) : null }));
}

/** The text between the first complete `open`…`close` pair, or null (OneGen: <FINAL-ANSWER>(.*?)</FINAL-ANSWER>). */
export function extractAnswer(text: string, open: string, close: string): string | null {
  const a = text.indexOf(open);
  if (a < 0) return null;
  const b = text.indexOf(close, a + open.length);
  return b < 0 ? null : text.slice(a + open.length, b);
}

/** The same on ids: the ids between the first complete open…close id sequences, or null. */
export function extractAnswerIds(ids: readonly number[], open: readonly number[], close: readonly number[]): number[] | null {
  const a = indexOfSeq(ids, open, 0);
  if (a < 0) return null;
  const b = indexOfSeq(ids, close, a + open.length);
  return b < 0 ? null : ids.slice(a + open.length, b);
}

// ==================================================================== runners

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

interface Prepared {
  prompt: number[];
  /** The input as units for span mapping. */
  input: { text: string } | { ids: number[] };
}

function preparePrompt(model: TaskModel, input: TaskInput, defaultTemplate: string, o: TaskRunOptions, what: string): Prepared {
  const V = model.decoder.vocabSize;
  if ("text" in input) {
    if (typeof input.text !== "string") throw new UsageError(`${what}: input text must be a string`);
    if (o.idsTemplate) throw new UsageError(`${what}: an ids template applies to ids input, the input is text`, "use a text template with {input}");
    if (!model.tokenizer) throw new UsageError(`${what}: text input needs a tokenizer, but the model has none`, "give token ids instead");
    const template = o.template === undefined ? defaultTemplate : o.template;
    if (template !== null && !template.includes("{input}")) throw new UsageError(`${what}: the template has no {input} placeholder`);
    const rendered = template === null ? input.text : template.split("{input}").join(input.text);
    const prompt = model.tokenizer.encode(rendered, { addSpecialTokens: o.addSpecialTokens ?? false });
    if (prompt.length === 0) throw new UsageError(`${what}: the prompt encodes to no tokens`);
    return { prompt, input: { text: input.text } };
  }
  if (o.template !== undefined) throw new UsageError(`${what}: a text template applies to text input, the input is ids`, "use an ids template (before/after ids), or give text");
  if (o.addSpecialTokens) throw new UsageError(`${what}: addSpecialTokens applies to text input; with ids input the ids are the prompt as given`);
  const ids = [...input.ids];
  for (const t of ids) if (!Number.isInteger(t) || t < 0 || t >= V) throw new UsageError(`${what}: input id ${t} is outside the vocabulary (0..${V - 1})`);
  const prompt = [...(o.idsTemplate?.before ?? []), ...ids, ...(o.idsTemplate?.after ?? [])];
  if (prompt.length === 0) throw new UsageError(`${what}: the prompt is empty`);
  return { prompt, input: { ids } };
}

function capacityFor(model: TaskModel, promptLength: number, maxNew: number, perInjection: number, injections: number, o: TaskRunOptions, what: string): number {
  const maxPos = model.decoder.config.maxPositionEmbeddings;
  if (promptLength > maxPos) throw new UsageError(`${what}: the prompt has ${promptLength} tokens, more than the model's context of ${maxPos}`);
  if (o.capacity !== undefined) {
    if (!Number.isInteger(o.capacity) || o.capacity < promptLength) throw new UsageError(`${what}: capacity ${o.capacity} cannot hold the prompt of ${promptLength} tokens`);
    if (o.capacity > maxPos) throw new UsageError(`${what}: capacity ${o.capacity} exceeds the model's context of ${maxPos} positions (max_position_embeddings)`);
    return o.capacity;
  }
  const want = promptLength + maxNew + perInjection * (Number.isFinite(injections) ? injections : 0);
  return Math.max(promptLength, Math.min(maxPos, want));
}

interface Execution {
  result: TaskResult;
  /** Model-written ids (generated and forced) per run between injections, in order. */
  writtenRuns: number[][];
}

async function execute(model: TaskModel, prompt: number[], gen: RetrievalGenerateOptions, capacity: number, o: TaskRunOptions): Promise<Execution> {
  const decoder = model.decoder;
  const ctx = decoder.ctx;
  const session = new Session(decoder, decoder.createCache(capacity, o.cacheDtype));
  const trace = new TraceBuilder();
  trace.push("prompt", prompt);
  const retrievals: TaskRetrieval[] = [];
  const injections: TaskResult["injections"] = [];
  const writtenRuns: number[][] = [[]];
  let newTokens = 0;
  const r0 = ctx.stats.readbacks;
  const t0 = performance.now();
  try {
    const it = streamRun(session, prompt, { ...gen, twoPass: o.twoPass ?? false });
    let finish: FinishReason;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      const e = r.value;
      o.onEvent?.(e);
      if (e.type === "token") {
        trace.push(e.kind, [e.id]);
        writtenRuns[writtenRuns.length - 1]!.push(e.id);
        newTokens++;
      } else if (e.type === "retrieval") {
        trace.retrieval(e.position, e.hits);
        retrievals.push({ position: e.position, source: e.source, hits: e.hits });
      } else if (e.type === "injection") {
        if ("refused" in e) injections.push({ position: e.position, refused: true });
        else {
          trace.push("injected", e.ids);
          injections.push({ position: e.position, start: e.start, ids: e.ids, document: e.document });
          writtenRuns.push([]);
        }
      }
    }
    const t = trace.toJSON();
    if (t.ids.length !== session.ids.length || t.ids.some((x, i) => x !== session.ids[i])) {
      throw new Error(`task run: the trace (${t.ids.length} ids) disagrees with the session (${session.ids.length} ids)`);
    }
    const tail = session.ids.slice(prompt.length);
    const result: TaskResult = {
      mode: o.twoPass ? "two-pass" : "one-pass",
      promptIds: prompt,
      ids: [...session.ids],
      finish,
      retrievals,
      injections,
      trace: t,
      output: model.tokenizer ? model.tokenizer.decode(tail) : null,
      stats: { readbacks: ctx.stats.readbacks - r0, ms: performance.now() - t0, newTokens },
    };
    return { result, writtenRuns };
  } finally {
    session.dispose();
  }
}

function samplingOf(o: TaskRunOptions): SamplingOptions {
  return {
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    ...(o.topK !== undefined ? { topK: o.topK } : {}),
    ...(o.topP !== undefined ? { topP: o.topP } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
  };
}

/**
 * Ids the model can produce but the tokenizer cannot decode (embedding rows padded past the
 * tokenizer's vocabulary, e.g. Qwen2's): banned from sampling when text is decoded.
 */
function undecodableIds(model: TaskModel): number[] {
  const tv = model.tokenizer?.vocabSize;
  const V = model.decoder.vocabSize;
  if (tv === undefined || tv >= V) return [];
  return Array.from({ length: V - tv }, (_, i) => tv + i);
}

function checkIndex(model: TaskModel, index: DocumentIndex, what: string, o: TaskRunOptions & { queryToken?: TokenRef } = {}, task?: "entity-linking" | "multihop-qa"): void {
  if (index.dim !== model.decoder.hiddenSize) throw new UsageError(`${what}: the index holds ${index.dim}-dimensional vectors, the model's hidden size is ${model.decoder.hiddenSize}`);
  // A run with its own query token is a custom setup: only an explicit docToken is checked then.
  if (task !== undefined && (o.docToken !== undefined || o.queryToken === undefined)) checkDocToken(model, index, what, o.docToken, task);
}

/**
 * The index's document token against the task's (see TaskRunOptions.docToken): an entity-linking
 * run on an index of multi-hop fragments (or the reverse) retrieves from vectors taken at another
 * token, and would return confident nonsense.
 */
export function checkDocToken(model: TaskModel, index: DocumentIndex, what: string, wanted: TokenRef | undefined, task: "entity-linking" | "multihop-qa"): void {
  const dt = index.docToken;
  if (!dt) return;
  const tk = model.tokenizer;
  const shown = dt.name !== null ? `'${dt.name}' (#${dt.id})` : `#${dt.id}`;
  const matches = (ref: TokenRef): boolean => {
    if (typeof ref === "number") return ref === dt.id;
    if (/^#\d+$/.test(ref)) return Number(ref.slice(1)) === dt.id;
    const id = tk?.tokenToId(ref);
    return id !== undefined ? id === dt.id : dt.name === ref;
  };
  if (wanted !== undefined) {
    if (!matches(wanted)) throw new LoadError(`${what}: the index was built at doc token ${shown}, not the requested ${JSON.stringify(wanted)}`, "rebuild the index with that --doc-token, or name the index's");
    return;
  }
  const own = task === "entity-linking" ? ONEGEN_ENTITY_LINKING.docToken : ONEGEN_MULTIHOP_QA.docToken;
  const other = task === "entity-linking" ? ONEGEN_MULTIHOP_QA.docToken : ONEGEN_ENTITY_LINKING.docToken;
  const otherTask = task === "entity-linking" ? "multi-hop QA" : "entity linking";
  if (matches(other) && !matches(own)) {
    throw new LoadError(
      `${what}: the index was built at doc token ${shown}, ${otherTask}'s document token; ${what} retrieves documents embedded at '${own}'`,
      `rebuild the index with --doc-token '${own}', or pass the index's token as the doc token (--doc-token) if this is intended`,
    );
  }
}

/** The resolved token ids of an entity-linking run. */
export interface EntityLinkingTokens {
  query: number;
  cont: number;
  open: number[];
  close: number[];
  /** Forcing patterns (close marker as after text, and as standalone when different) + query. */
  patterns: number[][];
}

export function entityLinkingTokens(model: TaskModel, o: EntityLinkingOptions = {}): EntityLinkingTokens {
  const V = model.decoder.vocabSize;
  const d = ONEGEN_ENTITY_LINKING;
  const tk = model.tokenizer;
  const query = tokenIdOf(o.queryToken ?? d.queryToken, tk, V, "entity linking (query token)");
  const cont = tokenIdOf(o.continueToken ?? d.continueToken, tk, V, "entity linking (continue token)");
  const openRef = o.mentionOpen ?? d.mentionOpen;
  const closeRef = o.mentionClose ?? d.mentionClose;
  const open = markerIdsOf(openRef, tk, V, "entity linking (mention open)");
  const close = markerIdsOf(closeRef, tk, V, "entity linking (mention close)", "after-text");
  const patterns = [[...close, query]];
  const alone = markerIdsOf(closeRef, tk, V, "entity linking (mention close)", "standalone");
  if (alone.join() !== close.join()) patterns.push([...alone, query]);
  return { query, cont, open, close, patterns };
}

/** Leading-space markers of tokenizers: a plain space, SentencePiece's ▁, byte-level BPE's Ġ. */
const SPACE_MARKS = [" ", "\u2581", "\u0120"];

/**
 * The copy-input rule of an entity-linking run: the source ids (the input text tokenized alone, or
 * the given ids), each id's space-less twin (the token after a space mark, when the vocabulary has
 * it: how a word reads right after a mention opener), the lone-space id and the markup ids.
 */
export function copyInputRule(model: TaskModel, ids: readonly number[] | null, text: string | null, toks: EntityLinkingTokens, endIds: readonly number[]): CopyInputRule {
  const tk = model.tokenizer;
  if (toks.open.length !== 1 || toks.close.length !== 1) {
    throw new UsageError(`entity linking: copyInput needs single-token mention markers, got ${toks.open.length} and ${toks.close.length} ids`, "add the markers as tokens (onegen train --add-token)");
  }
  if (text !== null && !tk) throw new UsageError("entity linking: copyInput on text needs the model's tokenizer");
  const source = text !== null ? tk!.encode(text, { addSpecialTokens: false }) : [...ids!];
  if (source.length === 0) throw new UsageError("entity linking: copyInput: the input is empty");
  const twins = source.map((id) => {
    const piece = tk?.idToToken(id);
    const mark = piece !== undefined && piece.length > 1 ? SPACE_MARKS.find((m) => piece.startsWith(m)) : undefined;
    return mark === undefined ? COPY_NONE : tk!.tokenToId(piece!.slice(mark.length)) ?? COPY_NONE;
  });
  const space = tk ? SPACE_MARKS.map((m) => tk.tokenToId(m)).find((x) => x !== undefined) ?? COPY_NONE : COPY_NONE;
  return { source, twins, space, open: toks.open[0]!, close: toks.close[0]!, query: toks.query, cont: toks.cont, endIds: [...endIds] };
}

/**
 * OneGen entity linking: the model annotates mentions; `[_CONTINUE_]` is forced after
 * `</MENTION>[LK]`; each [LK] links its mention to the best index entry (no injection).
 */
export async function runEntityLinking(model: TaskModel, index: DocumentIndex, input: TaskInput, o: EntityLinkingOptions = {}): Promise<EntityLinkingResult> {
  const what = "entity linking";
  checkIndex(model, index, what, o, "entity-linking");
  const toks = entityLinkingTokens(model, o);
  const { prompt, input: inp } = preparePrompt(model, input, ONEGEN_ENTITY_LINKING.inputTemplate, o, what);
  const maxNew = o.maxNewTokens ?? ONEGEN_ENTITY_LINKING.maxNewTokens;
  const tk = model.tokenizer;
  const decode = tk ? (ids: number[]) => tk.decode(ids) : undefined;
  const gen: RetrievalGenerateOptions = {
    ...samplingOf(o),
    maxNewTokens: maxNew,
    eosIds: o.eosIds ?? model.decoder.config.eosTokenIds,
    forceAfter: [...toks.patterns.map((pattern) => ({ pattern, token: toks.cont })), ...(o.forceAfter ?? [])],
    retrieval: { index, queryTokenId: toks.query, k: o.k ?? 1, ...(o.maxRetrievals !== undefined ? { maxRetrievals: o.maxRetrievals } : {}), inject: null },
    bannedIds: undecodableIds(model),
    ...(o.stepsPerRead !== undefined ? { stepsPerRead: o.stepsPerRead } : {}),
    ...(decode ? { decode } : {}),
    ...(o.copyInput ? { copyInput: copyInputRule(model, "text" in inp ? null : inp.ids, "text" in inp ? inp.text : null, toks, o.eosIds ?? model.decoder.config.eosTokenIds) } : {}),
  };
  const capacity = capacityFor(model, prompt.length, maxNew, 0, 0, o, what);
  const { result } = await execute(model, prompt, gen, capacity, o);
  // Mentions of the generated part: one per generated query token.
  const gen0 = prompt.length;
  const written = result.ids.slice(gen0);
  const found = "text" in inp && tk
    ? annotatedMentions(written, toks.query, { open: textMarker(o.mentionOpen ?? ONEGEN_ENTITY_LINKING.mentionOpen, tk, model, "entity linking (mention open)"), close: textMarker(o.mentionClose ?? ONEGEN_ENTITY_LINKING.mentionClose, tk, model, "entity linking (mention close)") }, decode!)
    : annotatedMentions(written, toks.query, { open: toks.open, close: toks.close }, null);
  const spans = "text" in inp ? mapMentionsToInput(inp.text, found.map((m) => m.mention)) : mapMentionIdsToInput(inp.ids, found.map((m) => m.mentionIds));
  const byPos = new Map(result.retrievals.map((r) => [r.position, r]));
  const mentions: LinkedMention[] = found.map((m, j) => {
    const r = byPos.get(gen0 + m.index);
    const best = r?.hits[0];
    return { mention: m.mention, mentionIds: m.mentionIds, span: spans[j] ?? null, position: gen0 + m.index, entity: best?.id ?? null, fragment: best?.fragment ?? null, score: best?.score ?? null };
  });
  return {
    ...result,
    task: "entity-linking",
    annotated: tk ? tk.decode(written) : null,
    spanUnit: "text" in inp ? "char" : "token",
    mentions,
  };
}

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
  const what = "multi-hop QA";
  checkIndex(model, index, what, o, "multihop-qa");
  const toks = multiHopTokens(model, o);
  const { prompt } = preparePrompt(model, input, ONEGEN_MULTIHOP_QA.inputTemplate, o, what);
  const maxNew = o.maxNewTokens ?? ONEGEN_MULTIHOP_QA.maxNewTokens;
  const maxRetrievals = o.maxRetrievals ?? ONEGEN_MULTIHOP_QA.maxRetrievals;
  if (!Number.isInteger(maxRetrievals) || maxRetrievals < 0) throw new UsageError(`${what}: maxRetrievals must be a non-negative integer, got ${maxRetrievals}`);
  const tk = model.tokenizer;
  const decode = tk ? (ids: number[]) => tk.decode(ids) : undefined;
  const answerOpenText = tk ? textMarker(o.answerOpen ?? ONEGEN_MULTIHOP_QA.answerOpen, tk, model, "multi-hop QA (answer open)") : null;
  const answerCloseText = tk ? textMarker(o.answerClose ?? ONEGEN_MULTIHOP_QA.answerClose, tk, model, "multi-hop QA (answer close)") : null;
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
  const { result, writtenRuns } = await execute(model, prompt, gen, capacity, o);
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

/** A marker as text, for parsing decoded output: text as given; ids are decoded. */
function textMarker(ref: MarkerRef, tk: Tokenizer, model: TaskModel, what: string): string {
  if (typeof ref === "string" && !ID_LIST.test(ref)) return ref;
  return tk.decode(markerIdsOf(ref, tk, model.decoder.vocabSize, what));
}

// ==================================================================== rerank

/** A candidate: a document of the index (id only), or text / ids encoded on the fly. */
export interface RerankCandidate {
  id: string;
  text?: string;
  ids?: readonly number[];
}

export interface RerankOptions {
  /** Retrieval token appended to the query unless it already ends with it (default: none, the query is used as given). */
  queryToken?: TokenRef;
  /** Document-side token of on-the-fly candidates (default: the index's doc token). */
  docToken?: TokenRef;
  /** Occurrences of the doc token skipped in on-the-fly candidates (default: the index's skipFirst, else 0). */
  skipFirst?: number;
  /** Text query: add BOS/EOS (default false). */
  addSpecialTokens?: boolean;
  cacheDtype?: DType;
}

export interface RerankScore {
  id: string;
  /** Best fragment of the candidate. */
  fragment: number;
  /** Cosine of the query state with the candidate's best fragment. */
  score: number;
  /** Where its vector came from. */
  source: "index" | "encoded";
}

/**
 * Scores candidates against a query's retrieval-token state: one forward of the query (with the
 * query token appended when `queryToken` is given and the query does not end with it), the
 * final-norm hidden state at its last position, cosine with every fragment of each candidate
 * (vectors from the index, or candidates encoded on the fly like index documents), the best
 * fragment per candidate; sorted best first (ties: input order).
 */
export async function rerank(model: TaskModel, index: DocumentIndex | null, query: TaskInput, candidates: readonly RerankCandidate[], o: RerankOptions = {}): Promise<RerankScore[]> {
  const what = "rerank";
  const V = model.decoder.vocabSize;
  const D = model.decoder.hiddenSize;
  if (index) checkIndex(model, index, what);
  let q: number[];
  if ("text" in query) {
    if (!model.tokenizer) throw new UsageError(`${what}: a text query needs a tokenizer`);
    q = model.tokenizer.encode(query.text, { addSpecialTokens: o.addSpecialTokens ?? false });
  } else q = [...query.ids];
  if (o.queryToken !== undefined) {
    const qt = tokenIdOf(o.queryToken, model.tokenizer, V, `${what} (query token)`);
    if (q[q.length - 1] !== qt) q.push(qt);
  }
  if (q.length === 0) throw new UsageError(`${what}: the query is empty`);
  for (const t of q) if (!Number.isInteger(t) || t < 0 || t >= V) throw new UsageError(`${what}: query id ${t} is outside the vocabulary (0..${V - 1})`);
  const qv = await reencodeLastHidden(model.decoder, q, o.cacheDtype);
  let qn = 0;
  for (let i = 0; i < D; i++) qn += qv[i]! ** 2;
  const inv = qn > 0 ? 1 / Math.sqrt(qn) : 0;
  const cosine = (rows: Float32Array, r: number): number => {
    let dot = 0;
    for (let i = 0; i < D; i++) dot += qv[i]! * rows[r * D + i]!;
    return dot * inv;
  };
  // candidates to encode
  const fresh = candidates.filter((c) => c.text !== undefined || c.ids !== undefined);
  let temp: DocumentIndex | null = null;
  let tempRows: Float32Array | null = null;
  try {
    if (fresh.length > 0) {
      const docRef = o.docToken ?? (index?.docToken ? `#${index.docToken.id}` : undefined);
      if (docRef === undefined) throw new UsageError(`${what}: candidates given as text or ids need a document-side token (docToken), and there is no index to take it from`);
      const docTokenId = tokenIdOf(docRef, model.tokenizer, V, `${what} (doc token)`);
      temp = await encodeDocuments(model.decoder, fresh.map((c) => (c.ids !== undefined ? { id: c.id, ids: c.ids } : { id: c.id, text: c.text! })), {
        docTokenId,
        skipFirst: o.skipFirst ?? index?.skipFirst ?? 0,
        tokenizer: model.tokenizer,
        dtype: "f32",
        ...(o.cacheDtype ? { cacheDtype: o.cacheDtype } : {}),
      });
      tempRows = await temp.readVectors();
    }
    const indexRows = index && candidates.some((c) => c.text === undefined && c.ids === undefined) ? await indexVectorsOnHost(index) : null;
    const scored = candidates.map((c, order) => {
      let rows: Float32Array;
      let first: number;
      let n: number;
      let source: RerankScore["source"];
      if (c.text !== undefined || c.ids !== undefined) {
        const d = temp!.documents[temp!.documentNumber(c.id)!]!;
        rows = tempRows!;
        first = d.firstEntry;
        n = d.fragments;
        source = "encoded";
      } else {
        const num = index?.documentNumber(c.id);
        if (!index || num === undefined) throw new UsageError(`${what}: candidate '${c.id}' is not in the index; give its text or ids`);
        const d = index.documents[num]!;
        if (d.fragments === 0) throw new UsageError(`${what}: document '${c.id}' has no entries in the index`);
        rows = indexRows!;
        first = d.firstEntry;
        n = d.fragments;
        source = "index";
      }
      let best = -Infinity;
      let fragment = 0;
      for (let f = 0; f < n; f++) {
        const s = cosine(rows, first + f);
        if (s > best) {
          best = s;
          fragment = f;
        }
      }
      return { id: c.id, fragment, score: best, source, order };
    });
    scored.sort((a, b) => b.score - a.score || a.order - b.order);
    return scored.map(({ id, fragment, score, source }) => ({ id, fragment, score, source }));
  } finally {
    temp?.dispose();
  }
}
