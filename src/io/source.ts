// Byte sources and model directories: the runtime-neutral way the loaders reach files.
//
//   ByteSource  random-access reads of one file (a checkpoint shard): Node/Deno file handles,
//               browser Blobs/Files, HTTP range requests, or bytes already in memory.
//   ModelDir    a Hugging Face model directory (config.json, tokenizer.json, *.safetensors):
//               a local directory (Node/Deno), a set of File objects (browser <input>), or a
//               base URL (fetch).
//
// Nothing here imports Node built-ins at the top level: node:fs/promises is imported lazily
// inside the Node/Deno implementations (Deno supports node: specifiers), so browsers never load it.

import { LoadError } from "../errors.js";

/** Random-access reads of one file. `size` is in bytes; reads past the end throw LoadError. */
export interface ByteSource {
  /** The file's name as shown in errors (a path for local files). */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` (a fresh, 4-byte aligned Uint8Array). */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

function checkRange(src: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new LoadError(`'${src.name}': read of ${length} bytes at offset ${offset} is outside the file (${src.size} bytes)`);
  }
}

type NodeFs = typeof import("node:fs/promises");
let fsModule: Promise<NodeFs> | null = null;
/** node:fs/promises, imported on first use (Node and Deno only). */
function nodeFs(): Promise<NodeFs> {
  if (!fsModule) {
    const specifier = "node:fs/promises"; // a variable, so browser bundlers leave it alone
    fsModule = import(specifier) as Promise<NodeFs>;
  }
  return fsModule;
}

/** Opens a local file (Node, Deno). */
export async function openFileSource(path: string): Promise<ByteSource> {
  const fs = await nodeFs();
  let fh: Awaited<ReturnType<NodeFs["open"]>>;
  try {
    fh = await fs.open(path, "r");
  } catch (e) {
    throw new LoadError(`cannot open '${path}': ${(e as Error).message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new LoadError(`'${path}' is not a regular file`);
  }
  const size = st.size;
  let closed = false;
  return {
    name: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: path, size }, offset, length);
      if (closed) throw new LoadError(`'${path}': read after close`);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new LoadError(`'${path}': file ended early at byte ${offset + done} (was it truncated while reading?)`);
        done += bytesRead;
      }
      return out;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}

/** A Blob or File (browsers; Node 20+ and Deno have Blob too). */
export function blobSource(blob: Blob, name: string): ByteSource {
  return {
    name,
    size: blob.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name, size: blob.size }, offset, length);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** Bytes already in memory (tests, files just written). Reads return copies. */
export function bytesSource(bytes: Uint8Array, name: string): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name, size: bytes.byteLength }, offset, length);
      return bytes.slice(offset, offset + length);
    },
  };
}

/**
 * A file over HTTP(S), read with Range requests (the server must answer 206 with the range). The
 * size comes from a HEAD request's Content-Length, or is given.
 */
export async function httpSource(url: string, options: { size?: number; fetch?: typeof fetch } = {}): Promise<ByteSource> {
  const f = options.fetch ?? fetch;
  let size = options.size;
  if (size === undefined) {
    const head = await f(url, { method: "HEAD" });
    if (!head.ok) throw new LoadError(`'${url}': HEAD request failed with HTTP ${head.status}`);
    size = Number(head.headers.get("content-length"));
    if (!Number.isSafeInteger(size) || size < 0) throw new LoadError(`'${url}': the server sent no usable Content-Length`);
  }
  const total = size;
  return {
    name: url,
    size: total,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange({ name: url, size: total }, offset, length);
      if (length === 0) return new Uint8Array(0);
      const res = await f(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (res.status !== 206) throw new LoadError(`'${url}': range request answered HTTP ${res.status}, expected 206 (the server must support Range)`);
      const out = new Uint8Array(await res.arrayBuffer());
      if (out.byteLength !== length) throw new LoadError(`'${url}': range request returned ${out.byteLength} bytes, expected ${length}`);
      return out;
    },
  };
}

// ---------------------------------------------------------------- model directories

/** A model directory: files addressed by their name relative to the directory (e.g. "config.json"). */
export interface ModelDir {
  /** Shown in errors: a path, URL or description. */
  readonly name: string;
  exists(file: string): Promise<boolean>;
  /** Reads a text file; a missing file throws LoadError naming it. */
  readText(file: string): Promise<string>;
  open(file: string): Promise<ByteSource>;
  /** File names, where the backing store can list them (a URL directory cannot). */
  list?(): Promise<string[]>;
}

/** File names inside a model directory are plain names: no separators, no "..". */
function checkFileName(dir: string, file: string): void {
  if (file === "" || file.includes("/") || file.includes("\\") || file === "." || file === ".." || file.includes("\0")) {
    throw new LoadError(`model directory '${dir}': '${file}' is not a plain file name (shards must sit in the model directory itself)`);
  }
}

/**
 * The largest config/tokenizer/manifest text read whole (bytes). The largest real tokenizer.json
 * files are tens of MB; V8 strings end near 512 MiB, so past this a file is refused by size
 * before it is read.
 */
export const MAX_TEXT_FILE_BYTES = 256 * 1024 * 1024;

/** Reads and parses a JSON file of a model directory, naming the file on failure. */
export async function readJson(dir: ModelDir, file: string): Promise<unknown> {
  const text = await dir.readText(file);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new LoadError(`'${joinName(dir.name, file)}' is not valid JSON: ${(e as Error).message}`);
  }
}

export function joinName(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** A local directory (Node, Deno). */
export async function openLocalDir(path: string): Promise<ModelDir> {
  const fs = await nodeFs();
  try {
    const st = await fs.stat(path);
    if (!st.isDirectory()) throw new LoadError(`'${path}' is not a directory`);
  } catch (e) {
    if (e instanceof LoadError) throw e;
    throw new LoadError(`model directory '${path}' cannot be read: ${(e as Error).message}`);
  }
  const full = (file: string): string => {
    checkFileName(path, file);
    return joinName(path, file);
  };
  return {
    name: path,
    async exists(file: string): Promise<boolean> {
      try {
        return (await fs.stat(full(file))).isFile();
      } catch (e) {
        if (e instanceof LoadError) throw e;
        return false;
      }
    },
    async readText(file: string): Promise<string> {
      try {
        const size = (await fs.stat(full(file))).size;
        if (size > MAX_TEXT_FILE_BYTES) throw new LoadError(`'${joinName(path, file)}' is ${size} bytes, over the limit of ${MAX_TEXT_FILE_BYTES} for a JSON/text file of a model or index directory`);
        return await fs.readFile(full(file), "utf8");
      } catch (e) {
        if (e instanceof LoadError) throw e;
        throw new LoadError(`cannot read '${joinName(path, file)}': ${(e as Error).message}`);
      }
    },
    open(file: string): Promise<ByteSource> {
      return openFileSource(full(file));
    },
    async list(): Promise<string[]> {
      return (await fs.readdir(path)).sort();
    },
  };
}

/** Files the user picked (browser <input type=file multiple>, drag and drop) or Blobs by name. */
export function filesDir(files: Iterable<File> | ReadonlyMap<string, Blob>, name = "selected files"): ModelDir {
  const map = new Map<string, Blob>();
  if (files instanceof Map) for (const [k, v] of files) map.set(k, v);
  else for (const f of files as Iterable<File>) map.set(f.name, f);
  const get = (file: string): Blob => {
    checkFileName(name, file);
    const b = map.get(file);
    if (!b) throw new LoadError(`'${file}' is missing from ${name} (have: ${[...map.keys()].sort().join(", ") || "nothing"})`);
    return b;
  };
  return {
    name,
    async exists(file: string): Promise<boolean> {
      checkFileName(name, file);
      return map.has(file);
    },
    async readText(file: string): Promise<string> {
      const b = get(file);
      if (b.size > MAX_TEXT_FILE_BYTES) throw new LoadError(`'${joinName(name, file)}' is ${b.size} bytes, over the limit of ${MAX_TEXT_FILE_BYTES} for a JSON/text file of a model or index directory`);
      return b.text();
    },
    async open(file: string): Promise<ByteSource> {
      return blobSource(get(file), joinName(name, file));
    },
    async list(): Promise<string[]> {
      return [...map.keys()].sort();
    },
  };
}

/** A model directory served over HTTP (e.g. https://huggingface.co/ORG/MODEL/resolve/main/). */
export function urlDir(baseUrl: string, options: { fetch?: typeof fetch } = {}): ModelDir {
  const f = options.fetch ?? fetch;
  const base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
  const url = (file: string): string => {
    checkFileName(baseUrl, file);
    return base + encodeURIComponent(file);
  };
  return {
    name: baseUrl,
    async exists(file: string): Promise<boolean> {
      const res = await f(url(file), { method: "HEAD" });
      return res.ok;
    },
    async readText(file: string): Promise<string> {
      const res = await f(url(file));
      if (!res.ok) throw new LoadError(`cannot read '${url(file)}': HTTP ${res.status}`);
      const len = Number(res.headers.get("content-length") ?? "0");
      if (len > MAX_TEXT_FILE_BYTES) throw new LoadError(`'${url(file)}' is ${len} bytes, over the limit of ${MAX_TEXT_FILE_BYTES} for a JSON/text file of a model directory`);
      return res.text();
    },
    open(file: string): Promise<ByteSource> {
      return httpSource(url(file), { fetch: f });
    },
  };
}

/** A ModelDir from a path (Node/Deno) or an existing ModelDir. */
export async function toModelDir(dir: string | ModelDir): Promise<ModelDir> {
  return typeof dir === "string" ? openLocalDir(dir) : dir;
}
