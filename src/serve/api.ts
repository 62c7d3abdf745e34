// The OpenAI routes of `onegen serve` on top of the batching engine: requests validated
// (protocol.ts), prompts tokenized (chat through the model's template, @huggingface/jinja via
// Tokenizer.applyChatTemplate), sequences submitted to the engine, and answers written in the
// shapes the official clients parse: one JSON object, or server-sent events (`data: {chunk}`
// lines, `data: [DONE]` last). No node:http here: a handler writes through a Reply.

import type { Tokenizer } from "../tokenizer.js";
import type { Decoder } from "../model/decoder.js";
import type { LoadedDecoder } from "../model/load.js";
import { runRetrieval, startRetrievalRow, type RetrievalOutcome, type RetrievalReport, type ServedIndex } from "./retrieval.js";
import type { DeviceTurn } from "../model/session.js";
import { DEFAULT_DOCUMENT_TEMPLATE } from "../onegen/encode.js";
import { LoadError } from "../errors.js";
import type { BatchEngine, InterleavedJob, SequenceEvents, SequenceHandle, SequenceParams } from "./engine.js";
import {
  ApiError,
  badRequest,
  base64Floats,
  parseChatRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  usage,
  type ChatRequest,
  type CompletionRequest,
  type PromptInput,
  type RequestLimits,
} from "./protocol.js";

/** Where a handler writes its answer (http.ts implements it over a ServerResponse). */
export interface Reply {
  json(status: number, body: unknown, headers?: Record<string, string>): void;
  /** Starts an event stream (200, text/event-stream). */
  startStream(): void;
  /** One `data: …` event. */
  event(data: unknown): void;
  /** `data: [DONE]` and the end of the response. */
  done(): void;
  /** Ends a started stream without [DONE] (after an error event). */
  end(): void;
  /** Called once if the client goes away before the answer ended. */
  onClose(fn: () => void): void;
  readonly closed: boolean;
}

export interface ApiOptions {
  /** The model's id in /v1/models and the `model` field requests must give. */
  modelId: string;
  engine: BatchEngine;
  decoder: Decoder;
  tokenizer: Tokenizer;
  limits: RequestLimits;
  /** The document-side token (embeddings): id and text. */
  docToken: { id: number; name: string } | null;
  /** Seconds since the epoch, for `created`. */
  created?: number;
  /** Indexes requests may name in `onegen.index`, and the model the tasks run on. */
  indexes?: ReadonlyMap<string, ServedIndex>;
  model?: LoadedDecoder;
  /**
   * How retrieval requests run: "rows" (default): as rows of the batched step when they can
   * (retrieval.ts rowsRefusal), else on a Session of their own taking turns with the batch;
   * "turns": always on their own Session.
   */
  retrieval?: "rows" | "turns";
}

let counter = 0;
function newId(prefix: string): string {
  counter = (counter + 1) % 1e9;
  return `${prefix}-${Date.now().toString(36)}${counter.toString(36).padStart(4, "0")}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export class OpenAiApi {
  readonly created: number;
  constructor(readonly o: ApiOptions) {
    this.created = o.created ?? Math.floor(Date.now() / 1000);
  }

  models(): unknown {
    return { object: "list", data: [this.modelObject()] };
  }

  model(id: string): unknown {
    if (id !== this.o.modelId) throw new ApiError(404, `The model '${id}' does not exist`, "invalid_request_error", "model", "model_not_found");
    return this.modelObject();
  }

  private modelObject(): unknown {
    return { id: this.o.modelId, object: "model", created: this.created, owned_by: "onegen" };
  }

  private checkModel(model: string): void {
    if (model !== this.o.modelId) throw new ApiError(404, `The model '${model}' does not exist (this server serves '${this.o.modelId}')`, "invalid_request_error", "model", "model_not_found");
  }

  private servedIndex(req: CompletionRequest | ChatRequest): ServedIndex | null {
    if (!req.onegen) return null;
    const s = this.o.indexes?.get(req.onegen.index);
    if (!s || !this.o.model) {
      const names = [...(this.o.indexes?.keys() ?? [])];
      throw badRequest(`'onegen.index': no index named '${req.onegen.index}' is loaded on this server (${names.length ? `loaded: ${names.join(", ")}` : "none loaded: start it with --index NAME=DIR"})`, "onegen.index", "unknown_index");
    }
    if (req.n !== 1) throw badRequest("'n' must be 1 with 'onegen' (a retrieval request runs one sequence)", "n");
    if (req.sampling.stop.length) throw badRequest("'stop' is not supported with 'onegen' (the task decides where it ends)", "stop", "unsupported_parameter");
    if (req.sampling.ignoreEos) throw badRequest("'ignore_eos' is not supported with 'onegen'", "ignore_eos", "unsupported_parameter");
    return s;
  }

  private encodePrompt(p: PromptInput): number[] {
    return "ids" in p ? p.ids : this.o.tokenizer.encode(p.text);
  }

  async completions(body: unknown, reply: Reply): Promise<void> {
    const req = parseCompletionRequest(body, this.o.limits, this.o.decoder.vocabSize);
    this.checkModel(req.model);
    const served = this.servedIndex(req);
    if (served) {
      if (req.prompts.length !== 1) throw badRequest("'prompt' must be a single prompt with 'onegen'", "prompt");
      const p = req.prompts[0]!;
      return this.retrieve(req, served, "ids" in p ? { ids: p.ids } : { text: p.text }, reply, "completion");
    }
    const prompts = req.prompts.map((p) => this.encodePrompt(p));
    await this.generate(req, prompts, reply, "completion");
  }

  async chat(body: unknown, reply: Reply): Promise<void> {
    const req = parseChatRequest(body, this.o.limits);
    this.checkModel(req.model);
    const served = this.servedIndex(req);
    if (served) {
      // the task renders its own prompt around the input: the last user message
      const last = [...req.messages].reverse().find((m) => m.role === "user");
      if (!last) throw badRequest("with 'onegen', 'messages' must hold a user message (the task's input)", "messages");
      return this.retrieve(req, served, { text: last.content }, reply, "chat");
    }
    const tok = this.o.tokenizer;
    if (tok.chatTemplate === null) throw badRequest(`the model '${this.o.modelId}' has no chat template (start the server with --chat-template FILE, or use /v1/completions)`, "messages", "no_chat_template");
    let text: string;
    try {
      text = tok.applyChatTemplate(req.messages, { addGenerationPrompt: true });
    } catch (e) {
      if (e instanceof LoadError) throw badRequest(`the chat template failed on these messages: ${e.message}`, "messages");
      throw badRequest(`the chat template failed on these messages: ${(e as Error).message}`, "messages");
    }
    await this.generate(req, [tok.encode(text, { addSpecialTokens: false })], reply, "chat");
  }

  private async generate(req: CompletionRequest | ChatRequest, prompts: number[][], reply: Reply, kind: "completion" | "chat"): Promise<void> {
    const slot = this.o.limits.contextTokens;
    const s = req.sampling;
    const params: SequenceParams[] = [];
    prompts.forEach((ids) => {
      const param = kind === "chat" ? "messages" : "prompt";
      if (ids.length === 0) throw badRequest(`the ${param} encodes to no tokens`, param);
      if (ids.length >= slot) throw badRequest(`the ${param} has ${ids.length} tokens; this server's context holds ${slot} per sequence (prompt and completion)`, param, "context_length_exceeded");
      if (s.maxTokens !== undefined && ids.length + s.maxTokens > slot) {
        throw badRequest(`the ${param} has ${ids.length} tokens and max_tokens is ${s.maxTokens}: ${ids.length + s.maxTokens} tokens, more than this server's context of ${slot} per sequence`, "max_tokens", "context_length_exceeded");
      }
      for (let i = 0; i < req.n; i++) {
        params.push({ prompt: ids, temperature: s.temperature, topP: s.topP, topK: s.topK, seed: (s.seed + i) >>> 0, maxTokens: s.maxTokens ?? slot - ids.length, stop: s.stop, ignoreEos: s.ignoreEos });
      }
    });
    const id = newId(kind === "chat" ? "chatcmpl" : "cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = this.o.modelId;
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const promptTokens = prompts.reduce((n, p) => n + p.length, 0); // each prompt once, whatever n (as OpenAI counts)
    const results: { text: string; finish: string; tokens: number }[] = [];
    let pending = params.length;
    let failed = false;
    let handles: SequenceHandle[] = [];
    const includeUsage = req.includeUsage;
    const chunk = (choices: unknown[]): unknown => ({ id, object, created, model, system_fingerprint: null, choices, ...(includeUsage ? { usage: null } : {}) });
    const choiceDelta = (index: number, text: string | null, finish: string | null, role = false): unknown =>
      kind === "chat"
        ? { index, delta: finish !== null && text === null ? {} : { ...(role ? { role: "assistant" } : {}), content: text ?? "" }, logprobs: null, finish_reason: finish }
        : { text: text ?? "", index, logprobs: null, finish_reason: finish };

    let resolve!: () => void;
    const finished = new Promise<void>((r) => (resolve = r));
    {
      const events: SequenceEvents[] = params.map((_, index) => ({
        onToken: (_id, delta) => {
          if (req.stream && delta !== "" && !failed && !reply.closed) reply.event(chunk([choiceDelta(index, delta, null)]));
        },
        onEnd: (r) => {
          results[index] = { text: r.text, finish: r.finish, tokens: r.completionTokens };
          if (req.stream && !failed && !reply.closed) reply.event(chunk([choiceDelta(index, null, r.finish)]));
          if (--pending === 0) resolve();
        },
        onError: (e) => {
          if (!failed) {
            failed = true;
            for (const h of handles) h.cancel();
            if (req.stream) {
              if (!reply.closed) {
                reply.event(e.body);
                reply.end();
              }
            } else if (!reply.closed) reply.json(e.status, e.body, e.headers);
          }
          resolve();
        },
      }));
      handles = this.o.engine.submit(params, events); // throws 429/503 before anything is written
    }
    reply.onClose(() => {
      for (const h of handles) h.cancel();
    });
    if (req.stream) {
      reply.startStream();
      // the role comes first, as OpenAI's first chunk of every choice
      if (kind === "chat") for (let i = 0; i < params.length; i++) reply.event(chunk([choiceDelta(i, "", null, true)]));
    }
    await finished;
    if (failed || reply.closed) return;
    const completionTokens = results.reduce((n, r) => n + r.tokens, 0);
    const u = usage(promptTokens, completionTokens);
    if (req.stream) {
      if (includeUsage) reply.event({ id, object, created, model, system_fingerprint: null, choices: [], usage: u });
      reply.done();
      return;
    }
    const choices = results.map((r, index) =>
      kind === "chat"
        ? { index, message: { role: "assistant", content: r.text, refusal: null }, logprobs: null, finish_reason: r.finish }
        : { text: r.text, index, logprobs: null, finish_reason: r.finish },
    );
    reply.json(200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model, system_fingerprint: null, choices, usage: u });
  }

  /**
   * A OneGen request: the task with in-loop retrieval as a row of the batched step
   * (startRetrievalRow), or, when it cannot be one or with retrieval "turns", on its own session
   * taking turns with the batch (engine.interleave).
   */
  private async retrieve(req: CompletionRequest | ChatRequest, served: ServedIndex, input: { text: string } | { ids: number[] }, reply: Reply, kind: "completion" | "chat"): Promise<void> {
    const slot = this.o.limits.contextTokens;
    const s = req.sampling;
    const id = newId(kind === "chat" ? "chatcmpl" : "cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = this.o.modelId;
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const includeUsage = req.includeUsage;
    let gone = false;
    let job: InterleavedJob<RetrievalOutcome | null> | null = null;
    reply.onClose(() => {
      gone = true;
      job?.cancel(); // the session is freed at once (its turn, or its readback, rejects)
    });
    let first = true;
    const piece = (text: string | null, finish: string | null): unknown => {
      if (kind === "completion") return { text: text ?? "", index: 0, logprobs: null, finish_reason: finish };
      const delta = finish !== null && text === null ? {} : { ...(first ? { role: "assistant" } : {}), content: text ?? "" };
      first = false;
      return { index: 0, delta, logprobs: null, finish_reason: finish };
    };
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}): unknown => ({ id, object, created, model, system_fingerprint: null, choices, ...(includeUsage ? { usage: null } : {}), ...extra });
    let started = false;
    const start = (): void => {
      if (!req.stream || started) return;
      started = true;
      reply.startStream();
      if (kind === "chat") reply.event(chunk([piece("", null)]));
    };
    const rowOpts = { maxTokens: s.maxTokens ?? slot, temperature: s.temperature, topP: s.topP, topK: s.topK, seed: s.seed, capacity: slot };
    const rowEvents = {
      onDelta: (d: string) => {
        if (!req.stream || gone) return;
        start();
        reply.event(chunk([piece(d, null)]));
      },
      onRetrieval: (r: RetrievalReport) => {
        if (!req.stream || gone) return;
        start();
        reply.event(chunk([], { retrieval: r }));
      },
    };
    // --retrieval turns (or a request rows refuse): the task on its own session, taking turns
    const run = (turn: DeviceTurn) => runRetrieval(this.o.model!, served, req.onegen!, input, { ...rowOpts, turn }, { ...rowEvents, gone: () => gone });
    // both throw 429/503 (and 400 for the task's refusals) before anything is written
    job = (this.o.retrieval ?? "rows") === "rows" ? startRetrievalRow(this.o.engine, this.o.model!, served, req.onegen!, input, rowOpts, rowEvents) : null;
    job ??= this.o.engine.interleave(run);
    if (gone) job.cancel();
    let out: RetrievalOutcome | null;
    try {
      out = await job.done;
    } catch (e) {
      if (gone) return; // cancelled: nobody to answer
      throw e;
    }
    if (!out || gone) return;
    const u = usage(out.promptTokens, out.completionTokens);
    const onegen = { index: served.name, task: out.task, retrievals: out.retrievals, ...(out.mentions ? { mentions: out.mentions } : {}), ...(out.answer !== undefined ? { answer: out.answer } : {}) };
    if (req.stream) {
      start();
      reply.event(chunk([piece(null, out.finish)], { onegen }));
      if (includeUsage) reply.event({ id, object, created, model, system_fingerprint: null, choices: [], usage: u });
      reply.done();
      return;
    }
    const choice =
      kind === "chat"
        ? { index: 0, message: { role: "assistant", content: out.text, refusal: null }, logprobs: null, finish_reason: out.finish }
        : { text: out.text, index: 0, logprobs: null, finish_reason: out.finish };
    reply.json(200, { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model, system_fingerprint: null, choices: [choice], usage: u, onegen });
  }

  async embeddings(body: unknown, reply: Reply): Promise<void> {
    const req = parseEmbeddingRequest(body, this.o.limits, this.o.decoder.vocabSize);
    this.checkModel(req.model);
    const doc = this.o.docToken;
    if (!doc) throw badRequest("this server has no document token (start it with --doc-token TOKEN)", null, "no_doc_token");
    const inputs = req.inputs.map((p, i) => {
      const ids = "ids" in p ? (p.ids.includes(doc.id) ? p.ids : [...p.ids, doc.id]) : this.o.tokenizer.encode(DEFAULT_DOCUMENT_TEMPLATE(p.text, doc.name));
      const row = ids.lastIndexOf(doc.id);
      if (row < 0) throw badRequest(`input[${i}]: the document token ${doc.name} does not encode to its own token`, "input");
      if (ids.length > this.o.limits.contextTokens) throw badRequest(`input[${i}] has ${ids.length} tokens, more than this server's context of ${this.o.limits.contextTokens}`, "input", "context_length_exceeded");
      return { ids, row };
    });
    let closed = false;
    reply.onClose(() => (closed = true));
    const data: unknown[] = [];
    let tokens = 0;
    for (const [index, x] of inputs.entries()) {
      if (closed) return;
      const v = await this.o.engine.embed(x.ids, x.row);
      tokens += x.ids.length;
      data.push({ object: "embedding", index, embedding: req.encoding === "base64" ? base64Floats(v) : Array.from(v) });
    }
    reply.json(200, { object: "list", data, model: this.o.modelId, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }
}
