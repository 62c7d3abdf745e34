// The demo page's caching fetch (web/cached-fetch.ts) against a counting fake server and an
// in-memory Cache: a file is downloaded whole once, with progress; HEAD and Range requests are
// then answered from the stored copy (200 / 206 / 416, as the library's HTTP readers expect);
// a second page life with the same cache downloads nothing; absent files (404) are passed
// through and never stored; the library's httpSource reads through it byte-exactly.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cachingFetch, type FileProgress } from "../web/cached-fetch.js";
import { httpSource } from "../src/io/source.js";

const BASE = "http://demo.test/files/";
const body = Uint8Array.from({ length: 3000 }, (_, i) => (i * 31 + 7) & 255);

/** A server with one file (model.bin); counts the requests it answers. */
function fakeServer(): { fetch: typeof fetch; calls: string[] } {
  const calls: string[] = [];
  const f = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const method = init?.method ?? "GET";
    calls.push(`${method} ${url.slice(BASE.length)}${new Headers(init?.headers).has("range") ? " range" : ""}`);
    if (url !== BASE + "model.bin") return new Response("not found", { status: 404 });
    if (method === "HEAD") return new Response(null, { status: 200, headers: { "Content-Length": String(body.length) } });
    // a streamed body in 3 chunks, so progress is reported more than once
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 3; i++) c.enqueue(body.slice(i * 1000, (i + 1) * 1000));
        c.close();
      },
    });
    return new Response(stream, { status: 200, headers: { "Content-Length": String(body.length), "Content-Type": "application/octet-stream" } });
  };
  return { fetch: f as typeof fetch, calls };
}

/** The part of the Cache API the caching fetch uses, in memory. */
function memoryCache(): Cache {
  const store = new Map<string, { bytes: Uint8Array; headers: [string, string][] }>();
  const c = {
    async match(req: RequestInfo | URL): Promise<Response | undefined> {
      const e = store.get(String(req));
      return e ? new Response(e.bytes.slice(), { headers: e.headers }) : undefined;
    },
    async put(req: RequestInfo | URL, res: Response): Promise<void> {
      store.set(String(req), { bytes: new Uint8Array(await res.arrayBuffer()), headers: [...res.headers] });
    },
  };
  return c as unknown as Cache;
}

test("cachingFetch: one whole download with progress, then HEAD/Range from the copy; a second page life downloads nothing", async () => {
  const server = fakeServer();
  const cache = memoryCache();
  const progress: FileProgress[] = [];
  const a = cachingFetch(cache, (p) => void progress.push(p), server.fetch);

  const r = await a.fetch(BASE + "model.bin", { headers: { Range: "bytes=100-1099" } });
  assert.is(r.status, 206);
  assert.is(r.headers.get("content-range"), `bytes 100-1099/${body.length}`);
  assert.equal(new Uint8Array(await r.arrayBuffer()), body.slice(100, 1100));
  assert.equal(server.calls, ["GET model.bin"], "the first Range request downloads the whole file once, without Range");
  assert.ok(progress.length >= 3 && progress.at(-1)!.loaded === body.length && progress.at(-1)!.total === body.length && !progress.at(-1)!.fromCache);

  const head = await a.fetch(BASE + "model.bin", { method: "HEAD" });
  assert.is(head.status, 200);
  assert.is(head.headers.get("content-length"), String(body.length));
  const tail = await a.fetch(BASE + "model.bin", { headers: { Range: "bytes=2990-" } });
  assert.equal(new Uint8Array(await tail.arrayBuffer()), body.slice(2990));
  assert.is((await a.fetch(BASE + "model.bin", { headers: { Range: "bytes=3000-3001" } })).status, 416);
  const whole = await a.fetch(BASE + "model.bin");
  assert.equal(new Uint8Array(await whole.arrayBuffer()), body);
  assert.equal(server.calls, ["GET model.bin"], "HEAD and later ranges never reach the server");
  assert.equal(a.stats, { cachedFiles: 0, cachedBytes: 0, downloadedFiles: 1, downloadedBytes: body.length });

  // the library's Range reader through it
  const src = await httpSource(BASE + "model.bin", { fetch: a.fetch });
  assert.is(src.size, body.length);
  assert.equal(await src.read(1234, 567), body.slice(1234, 1801));

  // a reload: a new fetch over the same cache answers everything without the server
  const calls = server.calls.length;
  const b = cachingFetch(cache, () => {}, server.fetch);
  const src2 = await httpSource(BASE + "model.bin", { fetch: b.fetch });
  assert.equal(await src2.read(0, 3000), body);
  assert.is(server.calls.length, calls, "nothing asked of the server after a reload");
  assert.equal(b.stats, { cachedFiles: 1, cachedBytes: body.length, downloadedFiles: 0, downloadedBytes: 0 });
});

test("cachingFetch: absent files are answered as the server answers and never stored; no cache still downloads once", async () => {
  const server = fakeServer();
  const cache = memoryCache();
  const a = cachingFetch(cache, () => {}, server.fetch);
  assert.is((await a.fetch(BASE + "missing.json")).status, 404);
  assert.is((await a.fetch(BASE + "missing.json", { method: "HEAD" })).status, 404);
  assert.is(await cache.match(BASE + "missing.json"), undefined);
  assert.is((await a.fetch(BASE + "missing.json")).status, 404, "asked again, not remembered as absent");
  assert.is(server.calls.filter((c) => c.includes("missing")).length, 3);

  const n = cachingFetch(null, () => {}, server.fetch);
  await n.fetch(BASE + "model.bin", { headers: { Range: "bytes=0-9" } });
  await n.fetch(BASE + "model.bin", { headers: { Range: "bytes=10-19" } });
  assert.is(server.calls.filter((c) => c === "GET model.bin").length, 1, "without a cache the file is still downloaded once per page life");
  assert.is(n.stats.downloadedFiles, 1);
});

test.run();
