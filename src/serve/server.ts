// `onegen serve` as a library: a loaded model → the batching engine (engine.ts) → the OpenAI
// routes (api.ts) → HTTP (http.ts). The server keeps no state apart from its caches, so several
// instances can stand behind any load balancer.
//
// Closing: shutdown(graceMs) stops accepting, answers later requests 503, fails queued
// sequences (503), lets running ones finish for graceMs, then cancels them (their streams get a
// 503 error event) and closes the connections. A GPU failure (device lost) fails every in-flight
// request with 503, refuses all later ones, and resolves `failed` so that the caller exits
// non-zero; the server never returns what a failed device computed.

import type { LoadedDecoder } from "../model/load.js";
import { resolveTokenId } from "../tokenizer.js";
import { UsageError } from "../errors.js";
import { BatchEngine, checkEngineFits } from "./engine.js";
import { OpenAiApi } from "./api.js";
import { startHttp, type HttpServer } from "./http.js";
import { ApiError, DEFAULT_LIMITS, type RequestLimits } from "./protocol.js";
import { retrievalSessionBytes, type ServedIndex } from "./retrieval.js";

export interface ServeOptions {
  host?: string;
  port?: number;
  apiKey?: string | null;
  /** Model id clients name (default: "onegen"). */
  modelId?: string;
  /** Sequences decoded together. Default 8. */
  maxBatch?: number;
  /** Sequences waiting for a slot before 429. Default 64. */
  maxQueue?: number;
  /** Tokens per sequence (prompt + completion). Default min(max_position_embeddings, 2048). */
  contextTokens?: number;
  /** Largest max_tokens. Default: contextTokens. */
  maxTokens?: number;
  /** Largest n. Default 4. */
  maxN?: number;
  /** Largest request body in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Document-side token for /v1/embeddings (name or '#id'). Default "[SE]" when the tokenizer has it. */
  docToken?: string | null;
  /** Indexes requests may name in `onegen.index` (loaded for this model). */
  indexes?: ReadonlyMap<string, ServedIndex>;
  /**
   * Retrieval requests (onegen extension) that are not rows of the batched step (see `retrieval`)
   * running at once, each on its own session of contextTokens rows taking turns with the batch;
   * more wait (maxQueue), then 429. Default 2.
   * Their sessions are planned against the GPU memory budget at start (retrievalSessionBytes).
   */
  maxRetrievals?: number;
  /**
   * How retrieval requests run: "rows" (default): as rows of the batched step where they can
   * (all the requests' tasks can be: src/serve/retrieval.ts rowsRefusal), the others on
   * their own session taking turns with the batch; "turns": all on their own session.
   */
  retrieval?: "rows" | "turns";
  onInternalError?: (e: unknown) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly engine: BatchEngine;
  readonly http: HttpServer;
  readonly limits: RequestLimits;
  /** Resolves with the error when the GPU failed (the server then refuses everything). */
  readonly failed: Promise<Error>;
  /** Drains (see the file header) and closes; the model stays loaded (the caller owns it). */
  shutdown(graceMs?: number): Promise<void>;
}

export const DEFAULT_DOC_TOKEN = "[SE]";

export async function startServer(model: LoadedDecoder, opts: ServeOptions = {}): Promise<RunningServer> {
  const tokenizer = model.tokenizer;
  if (!tokenizer) throw new UsageError("serve: the model directory has no tokenizer.json; the server needs one to read prompts and write text");
  const ctx = model.decoder.ctx;
  const maxPos = model.config.maxPositionEmbeddings;
  const contextTokens = opts.contextTokens ?? Math.min(maxPos, 2048);
  if (contextTokens > maxPos) throw new UsageError(`serve: --context ${contextTokens} exceeds the model's context of ${maxPos} positions`);
  if (contextTokens < 2) throw new UsageError(`serve: --context must be ≥ 2, got ${contextTokens}`);
  const maxBatch = opts.maxBatch ?? 8;
  const maxRetrievals = opts.maxRetrievals ?? 2;
  if (!Number.isInteger(maxRetrievals) || maxRetrievals < 1) throw new UsageError(`serve: --max-retrievals must be a positive integer, got ${maxRetrievals}`);
  const retrieving = (opts.indexes?.size ?? 0) > 0;
  if (opts.retrieval !== undefined && opts.retrieval !== "rows" && opts.retrieval !== "turns") throw new UsageError(`serve: retrieval must be "rows" or "turns", got '${String(opts.retrieval)}'`);
  checkEngineFits(ctx, model.decoder, maxBatch, contextTokens, retrieving ? { count: maxRetrievals, bytesEach: retrievalSessionBytes(model.config, contextTokens) } : undefined);
  const limits: RequestLimits = {
    ...DEFAULT_LIMITS,
    contextTokens,
    maxTokens: Math.min(opts.maxTokens ?? contextTokens, contextTokens),
    maxN: opts.maxN ?? DEFAULT_LIMITS.maxN,
  };
  let docToken: { id: number; name: string } | null = null;
  const dt = opts.docToken === undefined ? (tokenizer.tokenToId(DEFAULT_DOC_TOKEN) !== undefined ? DEFAULT_DOC_TOKEN : null) : opts.docToken;
  if (dt !== null) {
    const id = resolveTokenId(dt, tokenizer);
    docToken = { id, name: dt.startsWith("#") ? (tokenizer.idToToken(id) ?? dt) : dt };
  }
  let onFail!: (e: Error) => void;
  const failed = new Promise<Error>((r) => (onFail = r));
  let http: HttpServer | null = null;
  const engine = new BatchEngine(model.decoder, {
    maxBatch,
    slotTokens: contextTokens,
    maxQueue: opts.maxQueue ?? 64,
    maxInterleaved: maxRetrievals,
    eosIds: model.config.eosTokenIds,
    decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }),
    onFatal: (e) => {
      http?.refuseAll(new ApiError(503, `the server's GPU failed: ${e.message}`, "server_error", null, "device_lost"));
      onFail(e);
    },
  });
  const api = new OpenAiApi({ modelId: opts.modelId ?? "onegen", engine, decoder: model.decoder, tokenizer, limits, docToken, model, retrieval: opts.retrieval ?? "rows", ...(opts.indexes ? { indexes: opts.indexes } : {}) });
  try {
    http = await startHttp(api, {
      host: opts.host ?? "127.0.0.1",
      port: opts.port ?? 0,
      apiKey: opts.apiKey ?? null,
      maxBodyBytes: opts.maxBodyBytes ?? 1 << 20,
      ...(opts.onInternalError ? { onInternalError: opts.onInternalError } : {}),
    });
  } catch (e) {
    await engine.drain(0);
    engine.dispose();
    throw e;
  }
  const h = http;
  let closing: Promise<void> | null = null;
  return {
    url: h.url,
    engine,
    http: h,
    limits,
    failed,
    shutdown: (graceMs = 10_000) =>
      (closing ??= (async () => {
        h.refuseAll(new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down"));
        const closed = h.close();
        await engine.drain(graceMs);
        engine.dispose();
        // streams ended by the drain close their connections; idle keep-alive ones are closed here
        h.server.closeIdleConnections();
        const t = setTimeout(() => h.server.closeAllConnections(), 2000);
        await closed;
        clearTimeout(t);
      })()),
  };
}
