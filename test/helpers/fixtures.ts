// Test fixtures (test/fixtures/…), read from disk in Node and over HTTP in the browser test page,
// so suites that only read fixtures run in both. scripts/run-browser-tests.mjs serves
// test/fixtures at /fixtures/ and sets globalThis.ONEGEN_FIXTURES (base URL and the model fixture
// names) before any test module loads. No node: import here: in Node the built-ins come through
// process.getBuiltinModule, so the browser bundle never sees them.
import { openFileSource, httpSource, urlDir, type ByteSource, type ModelDir } from "../../src/io/source.js";

interface BrowserFixtures {
  /** URL of test/fixtures/ with a trailing slash, e.g. http://127.0.0.1:4711/fixtures/ */
  base: string;
  /** Directory names under test/fixtures/models/, sorted. */
  models: string[];
}

type NodeFs = { readdirSync(path: string, o: { withFileTypes: true }): { name: string; isDirectory(): boolean }[] };
type NodeProcess = { getBuiltinModule?: (id: string) => unknown };

const browser = (globalThis as { ONEGEN_FIXTURES?: BrowserFixtures }).ONEGEN_FIXTURES ?? null;

/** Absolute path of test/fixtures/<rel> (Node; the compiled helper sits in dist/test/helpers/). */
export function localFixturePath(rel: string): string {
  return decodeURIComponent(new URL(`../../../test/fixtures/${rel}`, import.meta.url).pathname);
}

function nodeFs(): NodeFs {
  const proc = (globalThis as { process?: NodeProcess }).process;
  const fs = proc?.getBuiltinModule?.("node:fs") as NodeFs | undefined;
  if (!fs) throw new Error("test fixtures: neither the browser test page's ONEGEN_FIXTURES nor node:fs is available");
  return fs;
}

/** Model fixture names (test/fixtures/models/*), sorted. */
export function modelFixtureNames(): string[] {
  if (browser) return [...browser.models];
  return nodeFs().readdirSync(localFixturePath("models"), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

/** A fixture directory (e.g. "llama2-tokenizer"): a path in Node, a URL directory in the browser. */
export function fixtureDir(rel: string): string | ModelDir {
  return browser ? urlDir(browser.base + rel.split("/").map(encodeURIComponent).join("/") + "/") : localFixturePath(rel);
}

/** A model fixture directory for loadDecoder/loadModel (test/fixtures/models/<name>). */
export function modelFixture(name: string): string | ModelDir {
  return fixtureDir(`models/${name}`);
}

/** One fixture file, e.g. fixtureSource("train/adamw.safetensors"). */
export function fixtureSource(rel: string): Promise<ByteSource> {
  return browser ? httpSource(browser.base + rel.split("/").map(encodeURIComponent).join("/")) : openFileSource(localFixturePath(rel));
}

/** A fixture JSON file, parsed, e.g. fixtureJson("models/llama-gqa-f32/config.json"). */
export async function fixtureJson(rel: string): Promise<unknown> {
  const src = await fixtureSource(rel);
  try {
    return JSON.parse(new TextDecoder().decode(await src.read(0, src.size)));
  } finally {
    await src.close?.();
  }
}

/** A fixture file's whole bytes as a Blob (to assemble an in-memory model directory with filesDir). */
export async function fixtureBlob(rel: string): Promise<Blob> {
  const src = await fixtureSource(rel);
  try {
    return new Blob([(await src.read(0, src.size)) as Uint8Array<ArrayBuffer>]); // read() returns fresh ArrayBuffer-backed bytes
  } finally {
    await src.close?.();
  }
}
