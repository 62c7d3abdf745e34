// HTTP for `onegen serve` on node:http (no framework): routes, bearer-key check, bounded bodies,
// JSON and server-sent-event answers, client disconnects, and closing.
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/completions, /v1/chat/completions, /v1/embeddings
//   GET  /health (no key: 200 while serving, 503 when shutting down or the GPU failed)
// Every error is OpenAI's `{error: {message, type, param, code}}` with its status: 400 malformed,
// 401 missing or wrong key, 404 unknown route or model, 405 wrong method, 413 body too large,
// 429 queue full (Retry-After), 503 shutting down or GPU lost, 500 a bug of ours.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { timingSafeEqual, createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { ApiError } from "./protocol.js";
import type { OpenAiApi, Reply } from "./api.js";

export interface HttpOptions {
  host: string;
  port: number;
  /** Requests must carry `Authorization: Bearer KEY` (null: no check). */
  apiKey: string | null;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** Open connections at most (default 1024); more are refused by the socket layer. */
  maxConnections?: number;
  /** Called with errors that are bugs of ours (500), for the log. */
  onInternalError?: (e: unknown) => void;
}

export interface HttpServer {
  readonly url: string;
  readonly server: Server;
  /** Stops accepting connections; resolves when every open connection has closed. */
  close(): Promise<void>;
  /** Answers every later request with this error (e.g. 503 while shutting down). */
  refuseAll(e: ApiError): void;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new ApiError(413, `the request body has ${declared} bytes, more than this server's limit of ${limit}`, "invalid_request_error", null, "request_too_large"));
      return;
    }
    const parts: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      if (over) return;
      n += c.length;
      if (n > limit) {
        over = true;
        reject(new ApiError(413, `the request body is more than this server's limit of ${limit} bytes`, "invalid_request_error", null, "request_too_large"));
        return;
      }
      parts.push(c);
    });
    req.on("end", () => {
      if (!over) resolve(Buffer.concat(parts));
    });
    req.on("error", reject);
  });
}

class HttpReply implements Reply {
  private streaming = false;
  private ended = false;
  private closeHandlers: (() => void)[] = [];
  private gone = false;

  constructor(private readonly res: ServerResponse) {
    res.on("close", () => {
      if (!this.ended) {
        this.gone = true;
        for (const f of this.closeHandlers.splice(0)) f();
      }
    });
  }

  get closed(): boolean {
    return this.gone || this.ended;
  }
  get started(): boolean {
    return this.streaming || this.res.headersSent;
  }

  onClose(fn: () => void): void {
    if (this.gone) fn();
    else this.closeHandlers.push(fn);
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (this.closed) return;
    const data = JSON.stringify(body);
    this.ended = true;
    this.res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), ...headers });
    this.res.end(data);
  }

  startStream(): void {
    if (this.closed || this.streaming) return;
    this.streaming = true;
    this.res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive", "X-Accel-Buffering": "no" });
    this.res.flushHeaders();
  }

  event(data: unknown): void {
    if (this.closed) return;
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  done(): void {
    if (this.closed) return;
    this.res.write("data: [DONE]\n\n");
    this.end();
  }

  end(): void {
    if (this.closed) return;
    this.ended = true;
    this.res.end();
  }
}

export async function startHttp(api: OpenAiApi, opts: HttpOptions): Promise<HttpServer> {
  const key = opts.apiKey !== null ? digest(opts.apiKey) : null;
  let refusal: ApiError | null = null;

  const handle = async (req: IncomingMessage, reply: HttpReply): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname.replace(/\/+$/, "");
    // for load balancers: no key needed, nothing about the model told
    if (path === "/health") {
      req.resume();
      if (refusal) throw refusal;
      reply.json(200, { status: "ok" });
      return;
    }
    if (key) {
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "");
      if (!m || !timingSafeEqual(digest(m[1]!.trim()), key)) {
        req.resume();
        throw new ApiError(401, m ? "Incorrect API key provided" : "You didn't provide an API key: pass it as 'Authorization: Bearer KEY'", "invalid_request_error", null, "invalid_api_key");
      }
    }
    if (refusal) {
      req.resume();
      throw refusal;
    }
    const method = req.method ?? "GET";
    const post = async (fn: (body: unknown) => Promise<void>): Promise<void> => {
      if (method !== "POST") {
        req.resume();
        throw new ApiError(405, `${method} is not allowed on ${path} (use POST)`, "invalid_request_error", null, "method_not_allowed", { Allow: "POST" });
      }
      const raw = await readBody(req, opts.maxBodyBytes);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch (e) {
        throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, "invalid_request_error", null, "invalid_json");
      }
      await fn(body);
    };
    if (path === "/v1/models" || path.startsWith("/v1/models/")) {
      req.resume();
      if (method !== "GET") throw new ApiError(405, `${method} is not allowed on ${path} (use GET)`, "invalid_request_error", null, "method_not_allowed", { Allow: "GET" });
      reply.json(200, path === "/v1/models" ? api.models() : api.model(decodeURIComponent(path.slice("/v1/models/".length))));
      return;
    }
    if (path === "/v1/completions") return post((b) => api.completions(b, reply));
    if (path === "/v1/chat/completions") return post((b) => api.chat(b, reply));
    if (path === "/v1/embeddings") return post((b) => api.embeddings(b, reply));
    req.resume();
    throw new ApiError(404, `no route ${method} ${path}: this server answers /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings`, "invalid_request_error", null, "unknown_url");
  };

  const server = createServer((req, res) => {
    const reply = new HttpReply(res);
    handle(req, reply).catch((e: unknown) => {
      const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, "server_error");
      if (!(e instanceof ApiError)) opts.onInternalError?.(e);
      if (reply.started) {
        reply.event(err.body);
        reply.end();
      } else {
        // a refused body may still be arriving: answer, then close the connection
        if (err.status === 413) res.setHeader("Connection", "close");
        reply.json(err.status, err.body, err.headers);
      }
    });
  });
  // a request (headers and body) must arrive within a minute; the answer (a long stream) has no limit
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;
  server.maxConnections = opts.maxConnections ?? 1024;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    server,
    refuseAll: (e) => {
      refusal = e;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
