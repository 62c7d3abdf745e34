// OneGen in the protocol: a request with `onegen: {index, task, k, inject}` runs the task
// (src/onegen/entity-linking.ts, multihop-qa.ts: in-loop retrieval as in `onegen run`) in one of
// two ways. It decodes as a row of the engine's batched step (startRetrievalRow; the engine's
// header, "Retrieval requests as rows", says how) unless rowsRefusal names a reason (decode rules
// the rows lack; none the server's requests use), or with the server's retrieval
// "turns", run on a Session of their own (runRetrieval), taking turns on the device with the
// batch's steps (engine.interleave): the session holds the device while it encodes (its prefill,
// its decode-step program, each group of `stepsPerRead` steps) and lets the batch and other
// retrieval requests encode while it waits for each readback (TaskRunOptions.turn), so plain
// streams keep producing tokens during a retrieval request and several retrieval requests
// progress together (at most --max-retrievals at once, each with its own KV cache of --context
// rows, planned against the GPU memory budget: retrievalSessionBytes). Either way its tokens are
// what the same request gives alone on a Session.
// The task's events become the stream: text deltas of everything after the prompt
// (generated ids and injected documents, special tokens kept: the markup is the output), and a
// `retrieval` object on the chunk of the token that retrieved (position, hits with ids and
// scores, the injected document). The final response carries them all under `onegen`.

import type { DocumentIndex } from "../onegen/index.js";
import type { LoadedDecoder } from "../model/load.js";
import { kvCacheBytes, type ModelConfig } from "../model/config.js";
import type { DeviceTurn } from "../model/session.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../onegen/defaults.js";
import { prepareEntityLinking, runEntityLinking } from "../onegen/entity-linking.js";
import { prepareMultiHopQa, runMultiHopQa } from "../onegen/multihop-qa.js";
import type { EntityLinkingResult, MultiHopResult, TaskEvent, TaskModel, TaskResult, TaskRunOptions } from "../onegen/protocol.js";
import { TaskCollector, type PreparedTask } from "../onegen/task-runner.js";
import { TOPK_MAX_K } from "../ops/search.js";
import type { Tokenizer } from "../tokenizer.js";
import type { BatchEngine, InterleavedJob } from "./engine.js";
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

/** The task's options from the request (the same for both paths). */
function taskOptions(ext: OnegenExtension, o: { maxTokens: number; temperature: number; topP: number | undefined; topK: number | undefined; seed: number; capacity: number }): TaskRunOptions {
  return {
    maxNewTokens: o.maxTokens,
    temperature: o.temperature,
    ...(o.topP !== undefined ? { topP: o.topP } : {}),
    ...(o.topK !== undefined ? { topK: o.topK } : {}),
    seed: o.seed,
    k: ext.k,
    capacity: o.capacity,
  };
}

/** The request's task, checked against the extension's `inject`. */
function taskOf(ext: OnegenExtension, served: ServedIndex): TaskName {
  const task = resolveTask(ext, served.index);
  const injects = task === "multihop-qa";
  if (ext.inject !== null && ext.inject !== injects) {
    throw badRequest(`'onegen.inject' ${ext.inject} is not what ${task} does (${injects ? "it injects the retrieved document" : "it links, never injects"})`, "onegen.inject", "unsupported_parameter");
  }
  return task;
}

/** The task's own refusals (a prompt that does not fit, an index built at another token) are the request's fault. */
function asRequestError(e: unknown): unknown {
  if (e instanceof UsageError || (e instanceof OnegenError && e.name === "LoadError")) return badRequest(e.message, "onegen");
  if (e instanceof GpuOutOfMemoryError) return new ApiError(503, `not enough GPU memory for this request's session: ${e.message}`, "server_error", null, "insufficient_memory", { "Retry-After": "5" });
  return e;
}

/**
 * A run's events as the protocol streams them: text deltas of everything after the prompt
 * (generated ids and injected documents), and each retrieval (after its injection, if any).
 */
class EventSink {
  readonly reports: RetrievalReport[] = [];
  private readonly tail: number[] = [];
  private released = "";
  private pending: RetrievalReport | null = null;

  constructor(
    private readonly tk: Tokenizer,
    private readonly events: { onDelta: (text: string) => void; onRetrieval: (r: RetrievalReport) => void },
  ) {}

  private flush(): void {
    if (this.pending) this.events.onRetrieval(this.pending);
    this.pending = null;
  }

  private push(): void {
    const text = this.tk.decode(this.tail);
    let end = text.length;
    while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
    const upTo = text.slice(0, end);
    if (upTo.length > this.released.length && upTo.startsWith(this.released)) {
      const d = upTo.slice(this.released.length);
      this.released = upTo;
      this.events.onDelta(d);
    }
  }

  event(e: TaskEvent): void {
    if (e.type === "token") {
      this.flush();
      this.tail.push(e.id);
      this.push();
    } else if (e.type === "retrieval") {
      this.flush();
      this.pending = { position: e.position, source: e.source, hits: e.hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score })), injected: null };
      this.reports.push(this.pending);
    } else if (e.type === "injection") {
      const r = this.reports.find((x) => x.position === e.position);
      const inj = "refused" in e ? { refused: true as const } : { document: e.document, start: e.start, tokens: e.ids.length };
      if (r) r.injected = inj;
      if (!("refused" in e)) {
        this.tail.push(...e.ids);
        this.flush();
        this.push();
      }
    } else this.flush();
  }

  /** The outcome of the finished run (the rest of its text released). */
  outcome(task: TaskName, r: EntityLinkingResult | MultiHopResult): RetrievalOutcome {
    this.flush();
    const text = r.output ?? this.tk.decode(r.ids.slice(r.promptIds.length));
    if (text.length > this.released.length && text.startsWith(this.released)) this.events.onDelta(text.slice(this.released.length));
    const out: RetrievalOutcome = {
      text,
      finish: r.finish === "eos" || r.finish === "stop-string" ? "stop" : "length",
      promptTokens: r.promptIds.length,
      completionTokens: r.stats.newTokens,
      retrievals: this.reports,
      task,
    };
    if (r.task === "entity-linking") out.mentions = r.mentions.map((m) => ({ mention: m.mention, span: m.span, entity: m.entity, score: m.score }));
    else out.answer = r.answer;
    return out;
  }
}

/**
 * Runs the task on `input` with retrieval from `served` on a Session of its own; `onDelta` gets
 * text as it is written, `onRetrieval` each retrieval (after its injection, if any). `gone()`
 * true stops the run at the next token (a client that disconnected). `turn`: the session's
 * readbacks go through it (engine.interleave).
 */
export async function runRetrieval(
  model: LoadedDecoder,
  served: ServedIndex,
  ext: OnegenExtension,
  input: { text: string } | { ids: readonly number[] },
  o: { maxTokens: number; temperature: number; topP: number | undefined; topK: number | undefined; seed: number; capacity: number; turn?: DeviceTurn },
  events: { onDelta: (text: string) => void; onRetrieval: (r: RetrievalReport) => void; gone: () => boolean },
): Promise<RetrievalOutcome | null> {
  const task = taskOf(ext, served);
  const sink = new EventSink(model.tokenizer!, events);
  const opts: TaskRunOptions = {
    ...taskOptions(ext, o),
    onEvent: (e) => {
      if (events.gone()) throw new Cancelled();
      sink.event(e);
    },
    ...(o.turn ? { turn: o.turn } : {}),
  };
  try {
    const r = task === "entity-linking" ? await runEntityLinking(model, served.index, input, opts) : await runMultiHopQa(model, served.index, input, opts);
    return sink.outcome(task, r);
  } catch (e) {
    if (e instanceof Cancelled) return null;
    throw asRequestError(e);
  }
}

/**
 * Why a request cannot run as a row of the batched step (it then runs on its own Session,
 * runRetrieval), or null: the rows apply the Session run's sampling (greedy, or seeded draws
 * at its sampler steps), per-row banned ids and forcing rules, and search/inject at query tokens
 * (generated, or in the prompt as the Session run does); other decode rules (copy-input, stop
 * strings), a capacity other than the slot's, a k past the GPU top-k or an index whose ids the
 * model cannot embed are not rows (the Session run then refuses or runs them as before).
 */
export function rowsRefusal(engine: BatchEngine, t: PreparedTask<EntityLinkingResult | MultiHopResult>): string | null {
  const g = t.gen;
  if (engine.stepMode !== "captured") return "the engine's step is not captured";
  if (g.copyInput || g.stopStrings?.length || g.hooks?.length) return "decode rules the rows lack (copy-input, stop strings, hooks)";
  if (t.capacity !== engine.opts.slotTokens || t.prompt.length >= engine.opts.slotTokens) return "capacity other than the slot";
  const r = g.retrieval && g.retrieval.index.count > 0 ? g.retrieval : null;
  if (r && Math.max(1, r.k ?? 1) > TOPK_MAX_K) return "k above the GPU top-k";
  if (r?.inject && r.index.maxTokenId >= engine.decoder.vocabSize) return "index ids outside the vocabulary";
  return null;
}

/**
 * The task as a row of the engine's batched step (see engine.ts, "Retrieval requests as rows"),
 * or null when rowsRefusal names a reason (the caller then runs it with runRetrieval). Its
 * tokens, retrievals and injections are what the request gives alone on a Session.
 */
export function startRetrievalRow(
  engine: BatchEngine,
  model: LoadedDecoder,
  served: ServedIndex,
  ext: OnegenExtension,
  input: { text: string } | { ids: readonly number[] },
  o: { maxTokens: number; temperature: number; topP: number | undefined; topK: number | undefined; seed: number; capacity: number },
  events: { onDelta: (text: string) => void; onRetrieval: (r: RetrievalReport) => void },
): InterleavedJob<RetrievalOutcome | null> | null {
  const task = taskOf(ext, served);
  let t: PreparedTask<EntityLinkingResult | MultiHopResult>;
  try {
    const opts = taskOptions(ext, o);
    t = task === "entity-linking" ? prepareEntityLinking(model, served.index, input, opts) : prepareMultiHopQa(model, served.index, input, opts);
  } catch (e) {
    throw asRequestError(e);
  }
  if (rowsRefusal(engine, t) !== null) return null;
  const sink = new EventSink(model.tokenizer!, events);
  const job = submitTaskRow(engine, model, t, (e) => sink.event(e));
  return { done: job.done.then((r) => (r ? sink.outcome(task, r) : null)), cancel: job.cancel };
}

/**
 * Submits a prepared task as a row of the batched step: `onEvent` gets its events as they
 * happen; `done` resolves with the task's result as its Session run would return it (null after
 * cancel()), or rejects with the row's error (503 when the engine fails).
 */
export function submitTaskRow<R extends TaskResult>(engine: BatchEngine, model: TaskModel, t: PreparedTask<R>, onEvent?: (e: TaskEvent) => void): InterleavedJob<R | null> {
  const g = t.gen;
  const r = g.retrieval && g.retrieval.index.count > 0 ? g.retrieval : null;
  const collector = new TaskCollector(t.prompt);
  const t0 = performance.now();
  let resolve!: (v: R | null) => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<R | null>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let cancelled = false;
  const handles = engine.submit(
    [
      {
        prompt: t.prompt,
        temperature: g.temperature ?? 0,
        ...(g.topK !== undefined ? { topK: g.topK } : {}),
        ...(g.topP !== undefined ? { topP: g.topP } : {}),
        seed: g.seed ?? 0,
        maxTokens: g.maxNewTokens,
        stop: [],
        task: {
          bannedIds: g.bannedIds ?? [],
          forceAfter: g.forceAfter ?? [],
          retrieval: r ? { index: r.index, queryTokenId: r.queryTokenId, k: Math.max(1, r.k ?? 1), maxRetrievals: r.maxRetrievals ?? Infinity, inject: r.inject ?? null } : null,
          onEvent: (e) => {
            if (cancelled) return;
            try {
              onEvent?.(e);
              collector.push(e);
              if (e.type === "done") resolve(t.finish(collector.finish(model, e.finish, "one-pass", { readbacks: 0, ms: performance.now() - t0, newTokens: collector.newTokens })));
            } catch (err) {
              reject(err);
              handles[0]!.cancel();
            }
          },
        },
      },
    ],
    [{ onEnd: () => {}, onError: (e) => reject(e) }],
  );
  return {
    done,
    cancel: () => {
      cancelled = true;
      handles[0]!.cancel();
      resolve(null);
    },
  };
}
