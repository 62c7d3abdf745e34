// The OpenAI wire protocol of `onegen serve`: request validation and response shapes, no I/O.
// Bodies are validated field by field against what this server does; anything else is an
// ApiError (HTTP status + OpenAI's error object `{error: {message, type, param, code}}`), the
// shape every official client parses. Unknown fields are refused (as OpenAI does), so a client
// never believes an option took effect that did not.

/** An error answered in OpenAI's shape. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After on 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, code);
}

/** Server-side bounds on what one request may ask for. */
export interface RequestLimits {
  /** Rows of one sequence's KV cache slot: prompt + generated tokens must fit. */
  contextTokens: number;
  /** Largest max_tokens. */
  maxTokens: number;
  /** Largest n (choices per prompt). */
  maxN: number;
  /** Most prompts in one completions request (and inputs in one embeddings request). */
  maxPrompts: number;
  /** Most sequences one request may start (prompts × n). */
  maxSequences: number;
  /** Most stop strings and their longest length. */
  maxStop: number;
  maxStopChars: number;
}

export const DEFAULT_LIMITS: Omit<RequestLimits, "contextTokens" | "maxTokens"> = {
  maxN: 4,
  maxPrompts: 16,
  maxSequences: 16,
  maxStop: 4,
  maxStopChars: 256,
};

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  topP: number | undefined;
  topK: number | undefined;
  seed: number;
  /** Explicit max_tokens, or undefined: the room left in the slot. */
  maxTokens: number | undefined;
  stop: string[];
  /** vLLM's extension: generate past the model's end-of-sequence ids (benchmarks, fixed lengths). */
  ignoreEos: boolean;
}

/** A prompt: text, or token ids. */
export type PromptInput = { text: string } | { ids: number[] };

/** The OneGen extension: retrieval inside the decode loop. */
/** Largest `onegen.k` (hits reported per retrieval) a request may give. */
export const MAX_ONEGEN_K = 64;

export interface OnegenExtension {
  index: string;
  task: string | null;
  k: number;
  /** null: what the task does (multi-hop QA injects, entity linking does not). */
  inject: boolean | null;
}

export interface CompletionRequest {
  kind: "completion";
  model: string;
  prompts: PromptInput[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  sampling: SamplingParams;
  onegen: OnegenExtension | null;
}

export interface ChatMessageIn {
  role: string;
  content: string;
}

export interface ChatRequest {
  kind: "chat";
  model: string;
  messages: ChatMessageIn[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  sampling: SamplingParams;
  onegen: OnegenExtension | null;
}

export interface EmbeddingRequest {
  kind: "embedding";
  model: string;
  inputs: PromptInput[];
  encoding: "float" | "base64";
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function requireObject(body: unknown): Obj {
  if (!isObj(body)) throw badRequest("the request body must be a JSON object");
  return body;
}

function refuseUnknown(body: Obj, known: ReadonlySet<string>): void {
  for (const k of Object.keys(body)) if (!known.has(k)) throw badRequest(`Unrecognized request argument supplied: ${k}`, k, "unknown_parameter");
}

function str(body: Obj, key: string, required: boolean): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) {
    if (required) throw badRequest(`'${key}' is required`, key, "missing_required_parameter");
    return undefined;
  }
  if (typeof v !== "string") throw badRequest(`'${key}' must be a string, got ${typeof v}`, key);
  return v;
}

function num(body: Obj, key: string, opts: { integer?: boolean; min?: number; max?: number; exclusiveMin?: boolean }): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(`'${key}' must be a finite number, got ${JSON.stringify(v)}`, key);
  if (opts.integer && !Number.isSafeInteger(v)) throw badRequest(`'${key}' must be an integer, got ${v}`, key);
  if (opts.min !== undefined && (opts.exclusiveMin ? v <= opts.min : v < opts.min)) throw badRequest(`'${key}' must be ${opts.exclusiveMin ? ">" : "≥"} ${opts.min}, got ${v}`, key);
  if (opts.max !== undefined && v > opts.max) throw badRequest(`'${key}' must be ≤ ${opts.max}, got ${v}`, key);
  return v;
}

function bool(body: Obj, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(`'${key}' must be a boolean`, key);
  return v;
}

function isIdList(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "number");
}

function checkIds(ids: number[], param: string, vocabSize: number): number[] {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw badRequest(`'${param}' holds token id ${id}, outside the vocabulary (0..${vocabSize - 1})`, param);
  }
  return ids;
}

/** prompt / input: a string, an array of strings, an array of ids, or an array of id arrays. */
function prompts(v: unknown, param: string, vocabSize: number, maxPrompts: number): PromptInput[] {
  let out: PromptInput[];
  if (typeof v === "string") out = [{ text: v }];
  else if (isIdList(v)) out = [{ ids: checkIds(v, param, vocabSize) }];
  else if (Array.isArray(v) && v.length > 0) {
    out = v.map((x, i) => {
      if (typeof x === "string") return { text: x };
      if (isIdList(x)) return { ids: checkIds(x, `${param}[${i}]`, vocabSize) };
      throw badRequest(`'${param}[${i}]' must be a string or a non-empty array of token ids`, param);
    });
  } else if (v === undefined || v === null) throw badRequest(`'${param}' is required`, param, "missing_required_parameter");
  else throw badRequest(`'${param}' must be a string, an array of strings, or (arrays of) token ids`, param);
  if (out.length > maxPrompts) throw badRequest(`'${param}' holds ${out.length} prompts, more than this server's limit of ${maxPrompts}`, param);
  return out;
}

function sampling(body: Obj, limits: RequestLimits): SamplingParams {
  const maxTokens = num(body, "max_tokens", { integer: true, min: 1 }) ?? num(body, "max_completion_tokens", { integer: true, min: 1 });
  if (maxTokens !== undefined && maxTokens > limits.maxTokens) {
    throw badRequest(`max_tokens is ${maxTokens}, more than this server's limit of ${limits.maxTokens}`, body.max_tokens !== undefined ? "max_tokens" : "max_completion_tokens");
  }
  const temperature = num(body, "temperature", { min: 0, max: 2 }) ?? 1;
  const topP = num(body, "top_p", { min: 0, max: 1, exclusiveMin: true });
  const topK = num(body, "top_k", { integer: true, min: 0, max: 0xffffffff });
  const seed = num(body, "seed", { integer: true, min: 0, max: 0xffffffff });
  for (const k of ["presence_penalty", "frequency_penalty"]) {
    const v = num(body, k, { min: -2, max: 2 });
    if (v !== undefined && v !== 0) throw badRequest(`'${k}' is not supported by this server (only 0)`, k, "unsupported_parameter");
  }
  const lp = body.logprobs;
  if (lp !== undefined && lp !== null && lp !== false && lp !== 0) {
    if (lp === true || typeof lp === "number") throw badRequest("'logprobs' is not supported by this server", "logprobs", "unsupported_parameter");
    throw badRequest("'logprobs' must be a boolean (chat) or an integer (completions)", "logprobs");
  }
  if (body.logit_bias !== undefined && body.logit_bias !== null && !(isObj(body.logit_bias) && Object.keys(body.logit_bias).length === 0)) {
    throw badRequest("'logit_bias' is not supported by this server", "logit_bias", "unsupported_parameter");
  }
  let stop: string[] = [];
  const s = body.stop;
  if (typeof s === "string") stop = [s];
  else if (Array.isArray(s)) {
    if (!s.every((x) => typeof x === "string")) throw badRequest("'stop' must be a string or an array of strings", "stop");
    stop = s as string[];
  } else if (s !== undefined && s !== null) throw badRequest("'stop' must be a string or an array of strings", "stop");
  if (stop.length > limits.maxStop) throw badRequest(`'stop' holds ${stop.length} strings, at most ${limits.maxStop}`, "stop");
  for (const x of stop) {
    if (x === "") throw badRequest("'stop' strings must not be empty", "stop");
    if (x.length > limits.maxStopChars) throw badRequest(`a 'stop' string has ${x.length} characters, at most ${limits.maxStopChars}`, "stop");
  }
  const ignoreEos = bool(body, "ignore_eos") ?? false;
  return { temperature, topP: topP === 1 ? undefined : topP, topK: topK === 0 ? undefined : topK, seed: seed ?? randomSeed(), maxTokens, stop, ignoreEos };
}

function randomSeed(): number {
  return Math.floor(Math.random() * 0x100000000) >>> 0;
}

function streamOptions(body: Obj, stream: boolean): boolean {
  const so = body.stream_options;
  if (so === undefined || so === null) return false;
  if (!isObj(so)) throw badRequest("'stream_options' must be an object", "stream_options");
  if (!stream) throw badRequest("'stream_options' is only allowed when 'stream' is true", "stream_options");
  refuseUnknown(so, new Set(["include_usage"]));
  const v = so.include_usage;
  if (v !== undefined && typeof v !== "boolean") throw badRequest("'stream_options.include_usage' must be a boolean", "stream_options.include_usage");
  return v === true;
}

function onegen(body: Obj): OnegenExtension | null {
  const v = body.onegen;
  if (v === undefined || v === null) return null;
  if (!isObj(v)) throw badRequest("'onegen' must be an object {index, task, k, inject}", "onegen");
  refuseUnknown(v, new Set(["index", "task", "k", "inject"]));
  const index = v.index;
  if (typeof index !== "string" || index === "") throw badRequest("'onegen.index' must name an index this server loaded (--index NAME=DIR)", "onegen.index");
  const task = v.task;
  if (task !== undefined && task !== null && typeof task !== "string") throw badRequest("'onegen.task' must be a string", "onegen.task");
  const k = v.k ?? 1;
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > MAX_ONEGEN_K) throw badRequest(`'onegen.k' must be an integer in [1, ${MAX_ONEGEN_K}]`, "onegen.k");
  const inject = v.inject ?? null;
  if (inject !== null && typeof inject !== "boolean") throw badRequest("'onegen.inject' must be a boolean", "onegen.inject");
  return { index, task: (task as string | undefined) ?? null, k, inject };
}

const COMMON = ["model", "n", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "presence_penalty", "frequency_penalty", "logprobs", "logit_bias", "user", "onegen", "ignore_eos"];
const COMPLETION_FIELDS = new Set([...COMMON, "prompt", "echo", "best_of", "suffix"]);
const CHAT_FIELDS = new Set([...COMMON, "messages", "top_logprobs", "parallel_tool_calls"]);

function nAndSequences(body: Obj, prompts: number, limits: RequestLimits): number {
  const n = num(body, "n", { integer: true, min: 1 }) ?? 1;
  if (n > limits.maxN) throw badRequest(`'n' is ${n}, more than this server's limit of ${limits.maxN}`, "n");
  if (n * prompts > limits.maxSequences) throw badRequest(`${prompts} prompt(s) × n ${n} = ${n * prompts} sequences, more than this server's limit of ${limits.maxSequences} per request`, "n");
  return n;
}

export function parseCompletionRequest(raw: unknown, limits: RequestLimits, vocabSize: number): CompletionRequest {
  const body = requireObject(raw);
  refuseUnknown(body, COMPLETION_FIELDS);
  const model = str(body, "model", true)!;
  const ps = prompts(body.prompt, "prompt", vocabSize, limits.maxPrompts);
  if (bool(body, "echo")) throw badRequest("'echo' is not supported by this server", "echo", "unsupported_parameter");
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== 1) throw badRequest("'best_of' is not supported by this server (only 1)", "best_of", "unsupported_parameter");
  if (body.suffix !== undefined && body.suffix !== null) throw badRequest("'suffix' is not supported by this server", "suffix", "unsupported_parameter");
  const stream = bool(body, "stream") ?? false;
  str(body, "user", false);
  return {
    kind: "completion",
    model,
    prompts: ps,
    n: nAndSequences(body, ps.length, limits),
    stream,
    includeUsage: streamOptions(body, stream),
    sampling: sampling(body, limits),
    onegen: onegen(body),
  };
}

/** Message content: a string, or an array of text parts ({type: "text", text}). */
function messageContent(v: unknown, i: number): string {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) {
    return v
      .map((p, j) => {
        if (isObj(p) && p.type === "text" && typeof p.text === "string") return p.text;
        throw badRequest(`messages[${i}].content[${j}]: only text parts ({"type": "text", "text": …}) are supported`, `messages[${i}].content`);
      })
      .join("");
  }
  throw badRequest(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`);
}

export function parseChatRequest(raw: unknown, limits: RequestLimits): ChatRequest {
  const body = requireObject(raw);
  refuseUnknown(body, CHAT_FIELDS);
  const model = str(body, "model", true)!;
  const ms = body.messages;
  if (ms === undefined || ms === null) throw badRequest("'messages' is required", "messages", "missing_required_parameter");
  if (!Array.isArray(ms) || ms.length === 0) throw badRequest("'messages' must be a non-empty array", "messages");
  if (ms.length > 1024) throw badRequest(`'messages' holds ${ms.length} messages, at most 1024`, "messages");
  const messages = ms.map((m, i): ChatMessageIn => {
    if (!isObj(m)) throw badRequest(`messages[${i}] must be an object`, `messages[${i}]`);
    const role = m.role;
    if (typeof role !== "string" || !["system", "developer", "user", "assistant"].includes(role)) {
      throw badRequest(`messages[${i}].role must be one of system, developer, user, assistant`, `messages[${i}].role`);
    }
    for (const k of Object.keys(m)) if (!["role", "content", "name"].includes(k)) throw badRequest(`messages[${i}].${k} is not supported by this server`, `messages[${i}].${k}`, "unsupported_parameter");
    return { role: role === "developer" ? "system" : role, content: messageContent(m.content, i) };
  });
  if (body.top_logprobs !== undefined && body.top_logprobs !== null) throw badRequest("'top_logprobs' is not supported by this server", "top_logprobs", "unsupported_parameter");
  const stream = bool(body, "stream") ?? false;
  str(body, "user", false);
  return {
    kind: "chat",
    model,
    messages,
    n: nAndSequences(body, 1, limits),
    stream,
    includeUsage: streamOptions(body, stream),
    sampling: sampling(body, limits),
    onegen: onegen(body),
  };
}

export function parseEmbeddingRequest(raw: unknown, limits: RequestLimits, vocabSize: number): EmbeddingRequest {
  const body = requireObject(raw);
  refuseUnknown(body, new Set(["model", "input", "encoding_format", "user", "dimensions"]));
  const model = str(body, "model", true)!;
  const inputs = prompts(body.input, "input", vocabSize, limits.maxPrompts);
  const encoding = str(body, "encoding_format", false) ?? "float";
  if (encoding !== "float" && encoding !== "base64") throw badRequest(`'encoding_format' must be "float" or "base64", got '${encoding}'`, "encoding_format");
  if (body.dimensions !== undefined && body.dimensions !== null) throw badRequest("'dimensions' is not supported by this server (the embedding has the model's hidden size)", "dimensions", "unsupported_parameter");
  str(body, "user", false);
  return { kind: "embedding", model, inputs, encoding };
}

// ------------------------------------------------------------------ responses

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A f32 vector as OpenAI's base64 encoding (little-endian float32 bytes). */
export function base64Floats(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  v.forEach((x, i) => view.setFloat32(4 * i, x, true));
  return Buffer.from(bytes).toString("base64");
}
