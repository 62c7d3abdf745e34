// The demo's task data (issue 10), as scripts/demo/make_data.mjs writes it: the knowledge base,
// gold entity-linking sentences and multi-hop questions per split, the two document sets, and the
// index conventions of manifest.json.
//
// No Node built-ins at load time: the demo page (web/main.ts) runs this file in a browser, with
// the data folder read over HTTP (DemoFiles); node:fs is imported lazily, only for local folders.
import { parseJsonlObjects } from "../util/jsonl.js";
import { LoadError } from "../errors.js";

interface ElLabel {
  span: [number, number];
  entity_id: string;
  name?: string;
  ambiguous?: boolean;
}
export interface ElGold {
  id: string;
  text: string;
  /** The gold output: the sentence with <MENTION>…</MENTION>[LK][_CONTINUE_] annotations. */
  annotated?: string;
  labels: ElLabel[];
}
interface MhHop {
  sub_question: string;
  doc: string;
  fragment: number;
}
export interface MhGold {
  _id: string;
  type: string;
  question: string;
  answer: string;
  hops: MhHop[];
  /** The gold output: reasoning chain with gold paragraphs, ending with </s>. */
  target: string;
}
export interface KbEntity {
  id: string;
  type: string;
  name: string;
  description: string;
}
export interface DemoDocument {
  id: string;
  text: string;
}

export interface DemoData {
  dir: string;
  kb: KbEntity[];
  elTrain: ElGold[];
  elTest: ElGold[];
  mhTrain: MhGold[];
  mhTest: MhGold[];
  elDocs: DemoDocument[];
  mhDocs: DemoDocument[];
  /** Index conventions from manifest.json. */
  el: { docToken: string; skipFirst: number };
  mh: { docToken: string; skipFirst: number };
}

export const SPLITS = ["train", "dev", "test"] as const;
export type Split = (typeof SPLITS)[number];

/**
 * A folder of text files addressed by relative paths with '/' (e.g. "el/docs.jsonl"): the demo
 * data folder, on disk (Node, Deno) or served over HTTP (a page).
 */
interface DemoFiles {
  /** Shown in errors: a path or URL. */
  readonly name: string;
  /** Reads a text file; failure throws an Error whose message says why (the caller names the file). */
  readText(rel: string): Promise<string>;
}

/** `dir/rel` without a doubled separator (paths and URLs alike). */
export function joinPath(dir: string, rel: string): string {
  return dir.endsWith("/") ? dir + rel : `${dir}/${rel}`;
}

/** A local folder (Node, Deno): node:fs/promises is imported on first read. */
function localDemoFiles(dir: string): DemoFiles {
  return {
    name: dir,
    async readText(rel: string): Promise<string> {
      const specifier = "node:fs/promises"; // a variable, so browser bundlers leave it alone
      const fs = (await import(specifier)) as typeof import("node:fs/promises");
      return fs.readFile(joinPath(dir, rel), "utf8");
    },
  };
}

/** A folder served over HTTP (`fetch` defaults to the global one): non-2xx answers are errors. */
export function urlDemoFiles(baseUrl: string, options: { fetch?: typeof fetch } = {}): DemoFiles {
  const f = options.fetch ?? fetch;
  return {
    name: baseUrl,
    async readText(rel: string): Promise<string> {
      const res = await f(joinPath(baseUrl, rel.split("/").map(encodeURIComponent).join("/")));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return res.text();
    },
  };
}

const toDemoFiles = (dir: string | DemoFiles): DemoFiles => (typeof dir === "string" ? localDemoFiles(dir) : dir);

async function readText(files: DemoFiles, rel: string, hint: string): Promise<string> {
  try {
    return await files.readText(rel);
  } catch (e) {
    throw new LoadError(`cannot read '${joinPath(files.name, rel)}': ${(e as Error).message}`, hint);
  }
}

/** Reads a JSON file that must hold an object or an array; anything else is a LoadError naming the file. */
async function readJsonFile(files: DemoFiles, rel: string, hint: string, expect: "object" | "array"): Promise<unknown> {
  const file = joinPath(files.name, rel);
  let v: unknown;
  try {
    v = JSON.parse(await readText(files, rel, hint));
  } catch (e) {
    if (e instanceof LoadError) throw e;
    throw new LoadError(`'${file}' is not valid JSON: ${(e as Error).message}`, hint);
  }
  const is = Array.isArray(v) ? "array" : typeof v === "object" && v !== null ? "object" : null;
  if (is !== expect) throw new LoadError(`'${file}' must hold a JSON ${expect}, got ${v === null ? "null" : is ?? typeof v}`, hint);
  return v;
}

function parseJsonl<T>(text: string, file: string): T[] {
  return parseJsonlObjects(text, file).map((r) => r.value as T);
}

/**
 * Reads the demo data folder written by scripts/demo/make_data.mjs (a path, or DemoFiles such as
 * urlDemoFiles for a page); `split` is the evaluated one.
 */
export async function loadDemoData(dirOrFiles: string | DemoFiles, split: Split = "test"): Promise<DemoData> {
  const files = toDemoFiles(dirOrFiles);
  const dir = files.name;
  const hint = "generate it with `node scripts/demo/make_data.mjs` (or give --data DIR)";
  const jsonl = async <T>(rel: string): Promise<T[]> => parseJsonl<T>(await readText(files, rel, hint), joinPath(dir, rel));
  const manifest = (await readJsonFile(files, "manifest.json", hint, "object")) as {
    entity_linking?: { doc_token?: string; skip_first?: number };
    multi_hop_qa?: { doc_token?: string; skip_first?: number };
  };
  const conv = (m: { doc_token?: string; skip_first?: number } | undefined, what: string) => {
    if (!m || typeof m.doc_token !== "string" || typeof m.skip_first !== "number") throw new LoadError(`${joinPath(dir, "manifest.json")}: ${what} needs doc_token and skip_first`);
    return { docToken: m.doc_token, skipFirst: m.skip_first };
  };
  return {
    dir,
    kb: (await readJsonFile(files, "kb.json", hint, "array")) as KbEntity[],
    elTrain: await jsonl<ElGold>("el/gold_train.jsonl"),
    elTest: await jsonl<ElGold>(`el/gold_${split}.jsonl`),
    mhTrain: await jsonl<MhGold>("mhqa/gold_train.jsonl"),
    mhTest: await jsonl<MhGold>(`mhqa/gold_${split}.jsonl`),
    elDocs: await jsonl<DemoDocument>("el/docs.jsonl"),
    mhDocs: await jsonl<DemoDocument>("mhqa/docs.jsonl"),
    el: conv(manifest.entity_linking, "entity_linking"),
    mh: conv(manifest.multi_hop_qa, "multi_hop_qa"),
  };
}
