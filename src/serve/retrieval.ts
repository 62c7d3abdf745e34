// OneGen in the protocol: a request with `onegen: {index, task, k, inject}` runs the task
// (src/onegen/entity-linking.ts, multihop-qa.ts: in-loop retrieval as in `onegen run`) on its own
// Session, taking turns on the device with the batch's steps (engine.interleave): the session
// holds the device while it encodes (its prefill, its decode-step program, each group of
// `stepsPerRead` steps) and lets the batch and other retrieval requests encode while it waits for
// each readback (TaskRunOptions.turn), so plain streams keep producing tokens during a retrieval
// request and several retrieval requests progress together (at most --max-retrievals at once,
// each with its own KV cache of --context rows, planned against the GPU memory budget:
// retrievalSessionBytes). Its tokens are what the same request gives alone: the session's GPU
// state is its own, and the shared queue only orders the two parties' work. Not rows of the
// batched step (yet: see the analysis in engine.ts's header).
// The task's events become the stream: text deltas of everything after the prompt
// (generated ids and injected documents, special tokens kept: the markup is the output), and a
// `retrieval` object on the chunk of the token that retrieved (position, hits with ids and
// scores, the injected document). The final response carries them all under `onegen`.

import type { DocumentIndex } from "../onegen/index.js";
import type { LoadedDecoder } from "../model/load.js";
import { kvCacheBytes, type ModelConfig } from "../model/config.js";
import type { DeviceTurn } from "../model/session.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../onegen/defaults.js";
import { runEntityLinking } from "../onegen/entity-linking.js";
import { runMultiHopQa } from "../onegen/multihop-qa.js";
import type { TaskEvent, TaskRunOptions } from "../onegen/protocol.js";
import { GpuOutOfMemoryError, OnegenError, UsageError } from "../errors.js";
import { ApiError, badRequest, MAX_ONEGEN_K, type OnegenExtension } from "./protocol.js";

export type TaskName = "entity-linking" | "multihop-qa";

/**
 * GPU bytes one retrieval request's session may hold (a plan, an upper bound): its KV cache of
 * `capacity` rows (f16), its decode state (logits [1, V], context ids), the history of at most
 * `capacity` steps with the retrieval hook's record words (k ≤ MAX_ONEGEN_K), and forward
 * activations (residual, q|k|v, attention output, MLP) for `capacity` rows, which bound both the
 * prompt's prefill and the decode step's injection rows.
 */
export function retrievalSessionBytes(c: ModelConfig, capacity: number): number {
  const cache = kvCacheBytes(c, capacity, 2);
  const state = 4 * c.vocabSize + 4 * capacity + 64;
  const history = 4 * capacity * (2 + 2 * MAX_ONEGEN_K);
  const perRow = c.hiddenSize + (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim + c.intermediateSize;
  return cache + state + history + 4 * capacity * perRow;
}
const TASK_NAMES: readonly TaskName[] = ["entity-linking", "multihop-qa"];

export interface ServedIndex {
  name: string;
  index: DocumentIndex;
}

/** One retrieval as the protocol reports it. */
export interface RetrievalReport {
  /** Cache position of the query token. */
  position: number;
  source: "prompt" | "generated";
  hits: { id: string; fragment: number; score: number }[];
  /** The document injected after it, or refused for lack of room, or null (no injection). */
  injected: { document: string; start: number; tokens: number } | { refused: true } | null;
}

export interface RetrievalOutcome {
  text: string;
  finish: "stop" | "length";
  promptTokens: number;
  completionTokens: number;
  retrievals: RetrievalReport[];
  task: TaskName;
  /** Entity linking: each mention and its entity; multi-hop QA: the answer. */
  mentions?: { mention: string | null; span: [number, number] | null; entity: string | null; score: number | null }[];
  answer?: string | null;
}

/** The task an index serves: the request's, or the one whose document token the index was built at. */
function resolveTask(ext: OnegenExtension, index: DocumentIndex): TaskName {
  if (ext.task !== null) {
    if (!(TASK_NAMES as readonly string[]).includes(ext.task)) throw badRequest(`'onegen.task' must be one of ${TASK_NAMES.join(", ")}, got '${ext.task}'`, "onegen.task");
    return ext.task as TaskName;
  }
  const name = index.docToken?.name;
  if (name === ONEGEN_ENTITY_LINKING.docToken) return "entity-linking";
  if (name === ONEGEN_MULTIHOP_QA.docToken) return "multihop-qa";
  throw badRequest(`'onegen.task' is required: the index '${ext.index}' was built at doc token ${name ?? "(none)"}, which names no task`, "onegen.task");
}

class Cancelled extends Error {}

/**
 * Runs the task on `input` with retrieval from `served`; `onDelta` gets text as it is written,
 * `onRetrieval` each retrieval (after its injection, if any). `gone()` true stops the run at the
 * next token (a client that disconnected). `turn`: the session's readbacks go through it
 * (engine.interleave).
 */
export async function runRetrieval(
  model: LoadedDecoder,
  served: ServedIndex,
  ext: OnegenExtension,
  input: { text: string } | { ids: readonly number[] },
  o: { maxTokens: number; temperature: number; topP: number | undefined; topK: number | undefined; seed: number; capacity: number; turn?: DeviceTurn },
  events: { onDelta: (text: string) => void; onRetrieval: (r: RetrievalReport) => void; gone: () => boolean },
): Promise<RetrievalOutcome | null> {
  const task = resolveTask(ext, served.index);
  const injects = task === "multihop-qa";
  if (ext.inject !== null && ext.inject !== injects) {
    throw badRequest(`'onegen.inject' ${ext.inject} is not what ${task} does (${injects ? "it injects the retrieved document" : "it links, never injects"})`, "onegen.inject", "unsupported_parameter");
  }
  const tk = model.tokenizer!;
  const tail: number[] = [];
  let released = "";
  let pending: RetrievalReport | null = null;
  const flush = (): void => {
    if (pending) events.onRetrieval(pending);
    pending = null;
  };
  const push = (): void => {
    const text = tk.decode(tail);
    let end = text.length;
    while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
    const upTo = text.slice(0, end);
    if (upTo.length > released.length && upTo.startsWith(released)) {
      const d = upTo.slice(released.length);
      released = upTo;
      events.onDelta(d);
    }
  };
  const reports: RetrievalReport[] = [];
  const onEvent = (e: TaskEvent): void => {
    if (events.gone()) throw new Cancelled();
    if (e.type === "token") {
      flush();
      tail.push(e.id);
      push();
    } else if (e.type === "retrieval") {
      flush();
      pending = { position: e.position, source: e.source, hits: e.hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score })), injected: null };
      reports.push(pending);
    } else if (e.type === "injection") {
      const r = reports.find((x) => x.position === e.position);
      const inj = "refused" in e ? { refused: true as const } : { document: e.document, start: e.start, tokens: e.ids.length };
      if (r) r.injected = inj;
      if (!("refused" in e)) {
        tail.push(...e.ids);
        flush();
        push();
      }
    } else flush();
  };
  const opts: TaskRunOptions = {
    maxNewTokens: o.maxTokens,
    temperature: o.temperature,
    ...(o.topP !== undefined ? { topP: o.topP } : {}),
    ...(o.topK !== undefined ? { topK: o.topK } : {}),
    seed: o.seed,
    k: ext.k,
    capacity: o.capacity,
    onEvent,
    ...(o.turn ? { turn: o.turn } : {}),
  };
  try {
    const r = task === "entity-linking" ? await runEntityLinking(model, served.index, input, opts) : await runMultiHopQa(model, served.index, input, opts);
    flush();
    const text = r.output ?? tk.decode(r.ids.slice(r.promptIds.length));
    if (text.length > released.length && text.startsWith(released)) events.onDelta(text.slice(released.length));
    const out: RetrievalOutcome = {
      text,
      finish: r.finish === "eos" || r.finish === "stop-string" ? "stop" : "length",
      promptTokens: r.promptIds.length,
      completionTokens: r.stats.newTokens,
      retrievals: reports,
      task,
    };
    if (r.task === "entity-linking") out.mentions = r.mentions.map((m) => ({ mention: m.mention, span: m.span, entity: m.entity, score: m.score }));
    else out.answer = r.answer;
    return out;
  } catch (e) {
    if (e instanceof Cancelled) return null;
    // the task's own refusals (a prompt that does not fit, an index built at another token) are the request's fault
    if (e instanceof UsageError || (e instanceof OnegenError && e.name === "LoadError")) throw badRequest(e.message, "onegen");
    if (e instanceof GpuOutOfMemoryError) throw new ApiError(503, `not enough GPU memory for this request's session: ${e.message}`, "server_error", null, "insufficient_memory", { "Retry-After": "5" });
    throw e;
  }
}
