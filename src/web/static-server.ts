// A small static file server for the demo page and the browser tests: GET and HEAD, single-range
// `Range: bytes=a-b` requests (206, as src/io/source.ts httpSource needs for model files), ETag and
// Last-Modified so the page's cache can revalidate. Read-only: it never writes anything.
//
// Safety: binds 127.0.0.1 unless told otherwise; serves only files under its mount roots, resolved
// with realpath (a symlink or `..` that leaves a root is 404, as is any dot-file path component);
// methods other than GET/HEAD get 405. Node only (node:http, node:fs), imported by the CLI and the
// test runner, never by the library bundle.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";

interface StaticServerOptions {
  /** URL prefix → directory, e.g. { "/": "dist/web", "/demo/": "demo" }; the longest prefix wins. */
  mounts: Record<string, string>;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Extra response headers (e.g. cross-origin isolation). */
  headers?: Record<string, string>;
}

interface StaticServer {
  /** Base URL, e.g. http://127.0.0.1:41234/ */
  url: string;
  port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".jsonl": "application/jsonl; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wgsl": "text/plain; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

interface Mount {
  prefix: string;
  root: string;
}

/** Parses `bytes=a-b` / `bytes=a-` / `bytes=-n` for a file of `size` bytes; null = unsatisfiable. */
export function parseRange(header: string, size: number): { start: number; end: number } | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start > end || start >= size) return null;
  return { start, end };
}

export async function startStaticServer(opts: StaticServerOptions): Promise<StaticServer> {
  const mounts: Mount[] = [];
  for (const [prefix, dir] of Object.entries(opts.mounts)) {
    if (!prefix.startsWith("/") || !prefix.endsWith("/")) throw new Error(`static server: mount prefix '${prefix}' must start and end with '/'`);
    mounts.push({ prefix, root: await realpath(resolve(dir)) });
  }
  mounts.sort((a, b) => b.prefix.length - a.prefix.length);
  const extra = opts.headers ?? {};

  const fail = (res: ServerResponse, code: number, msg: string, headers: Record<string, string> = {}): void => {
    res.writeHead(code, { "Content-Type": "text/plain; charset=utf-8", ...extra, ...headers });
    res.end(msg + "\n");
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== "GET" && req.method !== "HEAD") return fail(res, 405, "method not allowed", { Allow: "GET, HEAD" });
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    } catch {
      return fail(res, 400, "bad request");
    }
    if (pathname.includes("\0")) return fail(res, 400, "bad request");
    const mount = mounts.find((m) => pathname.startsWith(m.prefix) || pathname + "/" === m.prefix);
    if (!mount) return fail(res, 404, "not found");
    let rel = pathname.slice(mount.prefix.length);
    if (rel === "" || rel.endsWith("/")) rel += "index.html";
    if (rel.split("/").some((p) => p.startsWith(".") || p === "")) return fail(res, 404, "not found");
    let file: string;
    let size: number;
    let mtime: Date;
    try {
      file = await realpath(join(mount.root, rel));
      if (file !== mount.root && !file.startsWith(mount.root + sep)) return fail(res, 404, "not found");
      const st = await stat(file);
      if (!st.isFile()) return fail(res, 404, "not found");
      size = st.size;
      mtime = st.mtime;
    } catch {
      return fail(res, 404, "not found");
    }
    const etag = `"${size.toString(16)}-${Math.floor(mtime.getTime()).toString(16)}"`;
    const headers: Record<string, string> = {
      "Content-Type": TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
      "Accept-Ranges": "bytes",
      ETag: etag,
      "Last-Modified": mtime.toUTCString(),
      "Cache-Control": "no-cache",
      ...extra,
    };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (typeof range === "string" && !(req.headers["if-range"] !== undefined && req.headers["if-range"] !== etag)) {
      const r = parseRange(range, size);
      if (!r) return fail(res, 416, "range not satisfiable", { "Content-Range": `bytes */${size}` });
      ({ start, end } = r);
      status = 206;
      headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    }
    headers["Content-Length"] = String(size === 0 ? 0 : end - start + 1);
    res.writeHead(status, headers);
    if (req.method === "HEAD" || size === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(file, { start, end });
    stream.on("error", () => res.destroy());
    stream.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) fail(res, 500, "internal error");
      else res.destroy();
    });
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((ok, bad) => {
    server.once("error", bad);
    server.listen(opts.port ?? 0, host, () => ok());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections?.();
        server.close(() => ok());
      }),
  };
}
