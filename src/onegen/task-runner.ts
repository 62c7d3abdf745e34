// One task run on a fresh Session: the prompt rendered from the input (template or ids template),
// the cache capacity, the index checked against the model and the task, the event stream
// (src/onegen/stream.ts) collected into a TaskResult with its trace. The tasks
// (src/onegen/entity-linking.ts, src/onegen/multihop-qa.ts, src/onegen/rerank.ts) build on it.
//
// With a tokenizer, ids past its vocabulary (padded embedding rows) are banned from sampling, since
// their text does not exist.

import { LoadError, UsageError } from "../errors.js";
import { Session, type FinishReason, type SamplingOptions } from "../model/session.js";
import type { RetrievalGenerateOptions } from "./loop.js";
import type { DocumentIndex } from "./index.js";
import { TraceBuilder } from "./trace.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "./defaults.js";
import type { TokenRef } from "./token-names.js";
import { streamRun } from "./stream.js";
import type { TaskEvent, TaskInput, TaskModel, TaskResult, TaskRetrieval, TaskRunOptions } from "./protocol.js";

interface Prepared {
  prompt: number[];
  /** The input as units for span mapping. */
  input: { text: string } | { ids: number[] };
}

/** The prompt ids of a run: text rendered with the template and tokenized, or ids wrapped by idsTemplate; checked. */
export function preparePrompt(model: TaskModel, input: TaskInput, defaultTemplate: string, o: TaskRunOptions, what: string): Prepared {
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

/** KV cache rows of a run: the given capacity (checked), else prompt + new tokens + every injection, at most the model's context. */
export function capacityFor(model: TaskModel, promptLength: number, maxNew: number, perInjection: number, injections: number, o: TaskRunOptions, what: string): number {
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

/**
 * A task run before it runs: its prompt, its decode options (rules and retrieval), its cache rows,
 * and how its result is read from the collected execution. runEntityLinking / runMultiHopQa run
 * it on a Session (execute); onegen serve runs it as a row of the batched step.
 */
export interface PreparedTask<R extends TaskResult> {
  prompt: number[];
  gen: RetrievalGenerateOptions;
  capacity: number;
  finish(x: Execution): R;
}

export interface Execution {
  result: TaskResult;
  /** Model-written ids (generated and forced) per run between injections, in order. */
  writtenRuns: number[][];
}

/**
 * Collects a run's events (src/onegen/protocol.ts TaskEvent) into its result, its trace and the
 * model-written runs: the one definition for a run on a Session (execute) and a run as a row of
 * the server's batched step (src/serve/engine.ts).
 */
export class TaskCollector {
  readonly trace = new TraceBuilder();
  readonly retrievals: TaskRetrieval[] = [];
  readonly injections: TaskResult["injections"] = [];
  readonly writtenRuns: number[][] = [[]];
  newTokens = 0;

  constructor(readonly prompt: readonly number[]) {
    this.trace.push("prompt", prompt);
  }

  push(e: TaskEvent): void {
    if (e.type === "token") {
      this.trace.push(e.kind, [e.id]);
      this.writtenRuns[this.writtenRuns.length - 1]!.push(e.id);
      this.newTokens++;
    } else if (e.type === "retrieval") {
      this.trace.retrieval(e.position, e.hits);
      this.retrievals.push({ position: e.position, source: e.source, hits: e.hits });
    } else if (e.type === "injection") {
      if ("refused" in e) this.injections.push({ position: e.position, refused: true });
      else {
        this.trace.push("injected", e.ids);
        this.injections.push({ position: e.position, start: e.start, ids: e.ids, document: e.document });
        this.writtenRuns.push([]);
      }
    }
  }

  /** The result; `ids`, when given (the session's), must equal the trace's. */
  finish(model: TaskModel, finish: FinishReason, mode: TaskResult["mode"], stats: TaskResult["stats"], ids?: readonly number[]): Execution {
    const t = this.trace.toJSON();
    if (ids && (t.ids.length !== ids.length || t.ids.some((x, i) => x !== ids[i]))) {
      throw new Error(`task run: the trace (${t.ids.length} ids) disagrees with the session (${ids.length} ids)`);
    }
    const tail = t.ids.slice(this.prompt.length);
    const result: TaskResult = {
      mode,
      promptIds: [...this.prompt],
      ids: [...t.ids],
      finish,
      retrievals: this.retrievals,
      injections: this.injections,
      trace: t,
      output: model.tokenizer ? model.tokenizer.decode(tail) : null,
      stats,
    };
    return { result, writtenRuns: this.writtenRuns };
  }
}

/** Runs the event stream on a fresh session and collects the result, the trace and the model-written runs. */
export async function execute(model: TaskModel, prompt: number[], gen: RetrievalGenerateOptions, capacity: number, o: TaskRunOptions): Promise<Execution> {
  const decoder = model.decoder;
  const ctx = decoder.ctx;
  const session = new Session(decoder, decoder.createCache(capacity, o.cacheDtype));
  const collector = new TaskCollector(prompt);
  const r0 = ctx.stats.readbacks;
  const t0 = performance.now();
  try {
    if (o.turn && o.twoPass) throw new UsageError("task run: a device turn (turn) applies to the one-pass loop, not to twoPass");
    const it = streamRun(session, prompt, { ...gen, twoPass: o.twoPass ?? false, ...(o.turn ? { turn: o.turn } : {}) });
    let finish: FinishReason;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      const e = r.value;
      o.onEvent?.(e);
      collector.push(e);
    }
    return collector.finish(model, finish, o.twoPass ? "two-pass" : "one-pass", { readbacks: ctx.stats.readbacks - r0, ms: performance.now() - t0, newTokens: collector.newTokens }, session.ids);
  } finally {
    session.dispose();
  }
}

/** The sampling options given (absent ones stay absent: greedy by default). */
export function samplingOf(o: TaskRunOptions): SamplingOptions {
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
export function undecodableIds(model: TaskModel): number[] {
  const tv = model.tokenizer?.vocabSize;
  const V = model.decoder.vocabSize;
  if (tv === undefined || tv >= V) return [];
  return Array.from({ length: V - tv }, (_, i) => tv + i);
}

/** The index against the model (vector size) and, for a task, its document token (checkDocToken). */
export function checkIndex(model: TaskModel, index: DocumentIndex, what: string, o: TaskRunOptions & { queryToken?: TokenRef } = {}, task?: "entity-linking" | "multihop-qa"): void {
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
