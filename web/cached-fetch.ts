// A fetch for the demo page that keeps whole files in the Cache API, so that a reload starts from
// the cache without downloading anything. The library's HTTP readers (urlDir / httpSource in
// src/io/source.ts) issue HEAD and Range requests; here the first GET or Range request of a file
// downloads the WHOLE file once (with progress), stores it, and answers every later request for it
// (HEAD: 200 with its Content-Length; Range: 206 with the slice) from the stored copy. Files that
// are absent on the server (404) are not stored and answered as the server answered.
//
// The Cache API exists only in secure contexts (https, or http://127.0.0.1 / localhost); elsewhere
// `openFileCache` returns null and the page says that nothing is cached.

/** Download progress of one file: bytes received so far and its size (null if the server sent none). */
export interface FileProgress {
  url: string;
  loaded: number;
  total: number | null;
  /** The file came from the cache (loaded === total at once). */
  fromCache: boolean;
}

export interface CacheStats {
  /** Files answered from the cache without a download. */
  cachedFiles: number;
  cachedBytes: number;
  /** Files downloaded (and stored, when a cache is open). */
  downloadedFiles: number;
  downloadedBytes: number;
}

/** The Cache API store of the page, or null where the Cache API is unavailable (not a secure context). */
export async function openFileCache(name: string): Promise<Cache | null> {
  const c = (globalThis as { caches?: CacheStorage }).caches;
  if (!c) return null;
  return c.open(name);
}

/** Parses a single `bytes=a-b` range for a file of `size` bytes; null when unsatisfiable. */
function parseRange(header: string, size: number): { start: number; end: number } | null {
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start <= end && start < size ? { start, end } : null;
}

function headerOf(init: RequestInit | undefined, name: string): string | null {
  const h = init?.headers;
  if (!h) return null;
  return new Headers(h).get(name);
}

type Whole = { ok: true; blob: Blob; type: string } | { ok: false; response: Response };

/**
 * A fetch-compatible function over `base` (the real fetch) and `cache` (null: no storage, files
 * are still downloaded whole once per page life). `onProgress` is called as bytes arrive.
 */
export function cachingFetch(
  cache: Cache | null,
  onProgress: (p: FileProgress) => void,
  base: typeof fetch = fetch.bind(globalThis),
): { fetch: typeof fetch; stats: CacheStats } {
  const stats: CacheStats = { cachedFiles: 0, cachedBytes: 0, downloadedFiles: 0, downloadedBytes: 0 };
  const files = new Map<string, Promise<Whole>>();

  const download = async (url: string): Promise<Whole> => {
    const hit = cache ? await cache.match(url) : undefined;
    if (hit) {
      const blob = await hit.blob();
      stats.cachedFiles++;
      stats.cachedBytes += blob.size;
      onProgress({ url, loaded: blob.size, total: blob.size, fromCache: true });
      return { ok: true, blob, type: hit.headers.get("content-type") ?? "application/octet-stream" };
    }
    const res = await base(url);
    if (!res.ok || !res.body) return { ok: false, response: res };
    const lengthHeader = res.headers.get("content-length");
    const total = lengthHeader === null ? null : Number(lengthHeader);
    const type = res.headers.get("content-type") ?? "application/octet-stream";
    const chunks: Uint8Array[] = [];
    let loaded = 0;
    const reader = res.body.getReader();
    onProgress({ url, loaded, total, fromCache: false });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      onProgress({ url, loaded, total, fromCache: false });
    }
    if (total !== null && loaded !== total) throw new Error(`'${url}': received ${loaded} bytes, the server announced ${total}`);
    const blob = new Blob(chunks as BlobPart[], { type });
    stats.downloadedFiles++;
    stats.downloadedBytes += blob.size;
    if (cache) await cache.put(url, new Response(blob, { headers: { "Content-Type": type, "Content-Length": String(blob.size) } }));
    return { ok: true, blob, type };
  };

  const whole = (url: string): Promise<Whole> => {
    let p = files.get(url);
    if (!p) {
      p = download(url);
      files.set(url, p);
      // a failed or absent file is asked again next time (it may appear on the server)
      p.then((w) => (w.ok ? undefined : files.delete(url)), () => files.delete(url));
    }
    return p;
  };

  const f = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const raw = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const page = (globalThis as { location?: { href: string } }).location?.href; // absent outside a page: URLs must be absolute
    const url = new URL(raw, page).href;
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (method === "HEAD") {
      // a stored or already downloading file answers from here; otherwise ask the server
      const known = files.has(url) || (cache !== null && (await cache.match(url)) !== undefined);
      if (!known) return base(url, { method: "HEAD" });
      const w = await whole(url);
      if (!w.ok) return new Response(null, { status: w.response.status });
      return new Response(null, { status: 200, headers: { "Content-Length": String(w.blob.size), "Content-Type": w.type, "Accept-Ranges": "bytes" } });
    }
    if (method !== "GET") return base(input, init);
    const w = await whole(url);
    if (!w.ok) return w.response;
    const range = headerOf(init, "range");
    if (range === null) return new Response(w.blob, { status: 200, headers: { "Content-Length": String(w.blob.size), "Content-Type": w.type } });
    const r = parseRange(range, w.blob.size);
    if (!r) return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${w.blob.size}` } });
    return new Response(w.blob.slice(r.start, r.end + 1), {
      status: 206,
      headers: { "Content-Range": `bytes ${r.start}-${r.end}/${w.blob.size}`, "Content-Length": String(r.end - r.start + 1), "Content-Type": w.type },
    });
  };
  return { fetch: f as typeof fetch, stats };
}
