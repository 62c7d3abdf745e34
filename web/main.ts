// The demo page (web/index.html): loads a model directory, the demo's two indexes and its data
// folder from URLs (default: demo/model/, demo/index/, demo/data/ beside the page, as
// `onegen web` serves them; ?model=URL&index=URL&data=URL override), keeps the files in the Cache
// API (web/cached-fetch.ts), and runs the same task code as `onegen demo` (src/demo/tasks.ts:
// linkSentence, answerQuestion; src/demo/eval.ts: evaluateModel) plus free generation with
// streamed tokens.
// Bundled by scripts/build-web.mjs into dist/web/demo.js.
//
// For the browser test (test/web-demo.test.ts) the page publishes its state and last results on
// `window.onegenDemo` (plain JSON values) and `document.body.dataset.state`.

import { describeContext, loadDecoder, openDevice, Session, urlDir, type GpuContext, type LoadedDecoder, type TaskEvent } from "../src/index.js";
import { loadDemoData, urlDemoFiles, type DemoData } from "../src/demo/data.js";
import { trivialScores } from "../src/demo/baselines.js";
import { openDemoIndexes, urlDemoIndexDirs, type DemoIndexes } from "../src/demo/indexes.js";
import { answerQuestion, linkSentence } from "../src/demo/tasks.js";
import { evaluateModel } from "../src/demo/eval.js";
import { cachingFetch, openFileCache, type CacheStats, type FileProgress } from "./cached-fetch.js";

const CACHE_NAME = "onegen-demo-files-v1";

/** What the page publishes for tests and the console. */
export interface DemoPageState {
  state: "starting" | "loading" | "ready" | "busy" | "error";
  error: string | null;
  adapter: { description: string; fallback: boolean | null; features: string[] } | null;
  cache: (CacheStats & { available: boolean }) | null;
  el: { text: string; copyInput: boolean; ids: number[]; annotated: string | null; mentions: { mention: string | null; span: [number, number] | null; entity: string | null; score: number | null }[] } | null;
  mh: { question: string; ids: number[]; retrievals: { position: number; id: string | null; score: number | null }[]; answer: string | null } | null;
  gen: { prompt: string; ids: number[]; text: string } | null;
}

const pageState: DemoPageState = { state: "starting", error: null, adapter: null, cache: null, el: null, mh: null, gen: null };
(globalThis as { onegenDemo?: DemoPageState }).onegenDemo = pageState;

// ---------------------------------------------------------------- DOM helpers

function $<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`demo page: element #${id} is missing`);
  return e as T;
}

type Child = Node | string | null;
function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null) e.append(c);
  return e;
}

function setState(s: DemoPageState["state"]): void {
  pageState.state = s;
  document.body.dataset.state = s;
}

/** One line in the page (and the state "error"); the full error goes to the console. */
function showError(e: unknown): void {
  const msg = e instanceof Error ? `${e.name === "Error" ? "" : e.name + ": "}${e.message}` : String(e);
  const line = msg.split("\n")[0]!;
  console.error(e);
  pageState.error = line;
  const box = $("error");
  box.textContent = line;
  box.title = line;
  box.hidden = false;
  setState("error");
}

function clearError(): void {
  pageState.error = null;
  $("error").hidden = true;
}

const mb = (b: number): string => `${(b / 1e6).toFixed(b < 1e7 ? 2 : 1)} MB`;

// ---------------------------------------------------------------- loading

interface Loaded {
  ctx: GpuContext;
  model: LoadedDecoder;
  indexes: DemoIndexes;
  data: DemoData;
}
let loaded: Loaded | null = null;

const params = new URLSearchParams(location.search);
const urlOf = (v: string): string => new URL(v, location.href).href;

/** WebGPU present and an adapter: else a one-line error saying what the browser needs. */
async function checkWebGpu(): Promise<GPUAdapter> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) {
    throw new Error(
      window.isSecureContext
        ? "WebGPU is unavailable in this browser: use Chrome/Chromium 113+ or Edge (on Linux and headless, start Chromium with --enable-unsafe-webgpu)"
        : "WebGPU needs a secure context: open the page over https or from http://127.0.0.1 / localhost",
    );
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter: start Chromium with --enable-unsafe-webgpu (needed on Linux and in headless mode), or enable WebGPU in chrome://flags");
  return adapter;
}

async function load(): Promise<void> {
  clearError();
  setState("loading");
  setButtons(false);
  if (loaded) {
    loaded.indexes.dispose();
    loaded.model.dispose();
    loaded.ctx.destroy();
    loaded = null;
  }
  const modelUrl = urlOf($<HTMLInputElement>("model-url").value);
  const indexUrl = urlOf($<HTMLInputElement>("index-url").value);
  const dataUrl = urlOf($<HTMLInputElement>("data-url").value);
  const bar = $<HTMLProgressElement>("load-progress");
  const status = $("load-status");

  const adapter = await checkWebGpu();
  const cache = await openFileCache(CACHE_NAME);
  const files = new Map<string, { loaded: number; total: number | null }>();
  const onProgress = (p: FileProgress): void => {
    files.set(p.url, { loaded: p.loaded, total: p.total });
    let done = 0;
    let total = 0;
    for (const f of files.values()) {
      done += f.loaded;
      total += f.total ?? f.loaded;
    }
    bar.max = Math.max(total, 1);
    bar.value = done;
    const name = p.url.slice(p.url.lastIndexOf("/") + 1);
    status.textContent = `${p.fromCache ? "from cache" : "downloading"} ${name}: ${mb(done)} of ${mb(total)} (${files.size} files)`;
  };
  const cf = cachingFetch(cache, onProgress);
  const t0 = performance.now();

  const ctx = await openDevice();
  try {
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const fallback = typeof info.isFallbackAdapter === "boolean" ? info.isFallbackAdapter : ((adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? null);
    const d = describeContext(ctx);
    pageState.adapter = { description: ctx.adapter.description, fallback, features: d.features as string[] };
    const lim = ctx.limits;
    $("adapter").textContent =
      `adapter: ${ctx.adapter.description || "(unnamed)"}${fallback ? " (fallback adapter: software)" : fallback === false ? " (hardware)" : ""}; ` +
      `features: ${pageState.adapter.features.join(", ") || "none"}${ctx.hasF16 ? "" : " (no shader-f16)"}; ` +
      `max storage binding ${mb(lim.maxStorageBufferBindingSize)}`;

    const data = await loadDemoData(urlDemoFiles(dataUrl, { fetch: cf.fetch }), "test");
    const model = await loadDecoder(ctx, urlDir(modelUrl, { fetch: cf.fetch }), {
      onProgress: (p) => {
        bar.max = Math.max(p.bytesTotal, 1);
        bar.value = p.bytesDone;
        status.textContent = `uploading weights to the GPU: ${p.tensorsDone}/${p.tensorsTotal} tensors`;
      },
    });
    let indexes: DemoIndexes;
    try {
      status.textContent = "loading the indexes…";
      indexes = await openDemoIndexes(ctx, model, urlDemoIndexDirs(indexUrl, { fetch: cf.fetch }), data);
    } catch (e) {
      model.dispose();
      throw e;
    }
    loaded = { ctx, model, indexes, data };
    pageState.cache = { ...cf.stats, available: cache !== null };
    const s = cf.stats;
    const where =
      cache === null
        ? `downloaded ${s.downloadedFiles} files (${mb(s.downloadedBytes)}); the Cache API is unavailable here (not a secure context), so nothing is cached`
        : s.downloadedFiles === 0
          ? `started from the cache: ${s.cachedFiles} files (${mb(s.cachedBytes)}), nothing downloaded`
          : `downloaded ${s.downloadedFiles} files (${mb(s.downloadedBytes)}) and cached them${s.cachedFiles ? `; ${s.cachedFiles} from the cache` : ""}: a reload starts from the cache`;
    bar.max = 1;
    bar.value = 1;
    status.textContent =
      `ready in ${Math.round(performance.now() - t0)} ms: ${model.config.architecture}, ${model.config.numLayers} layers, D ${model.config.hiddenSize}; ` +
      `entities ${indexes.el.documentCount}, fragments ${indexes.mh.count}; ${where}`;
    if (!$<HTMLTextAreaElement>("el-input").value) nextExample("el");
    if (!$<HTMLInputElement>("mh-input").value) nextExample("mh");
    setState("ready");
    setButtons(true);
  } catch (e) {
    ctx.destroy();
    throw e;
  }
}

const example = { el: 0, mh: 0 };
function nextExample(task: "el" | "mh"): void {
  if (!loaded) return;
  if (task === "el") {
    const s = loaded.data.elTest[example.el++ % loaded.data.elTest.length];
    if (s) $<HTMLTextAreaElement>("el-input").value = s.text;
  } else {
    const q = loaded.data.mhTest[example.mh++ % loaded.data.mhTest.length];
    if (q) $<HTMLInputElement>("mh-input").value = q.question;
  }
}

// ---------------------------------------------------------------- running

const RUN_BUTTONS = ["el-run", "el-next", "mh-run", "mh-next", "gen-run", "eval-run"];
function setButtons(on: boolean): void {
  for (const id of RUN_BUTTONS) $<HTMLButtonElement>(id).disabled = !on;
  $<HTMLButtonElement>("load-run").disabled = !on && pageState.state !== "error";
}

/** One GPU job at a time: buttons off, state "busy", errors shown in one line. */
async function exclusive(job: (l: Loaded) => Promise<void>): Promise<void> {
  if (!loaded || pageState.state === "busy") return;
  const l = loaded;
  clearError();
  setState("busy");
  setButtons(false);
  try {
    await job(l);
    setState("ready");
  } catch (e) {
    showError(e);
  } finally {
    setButtons(true);
    $<HTMLButtonElement>("load-run").disabled = false;
  }
}

function describe(l: Loaded, id: string | null): { name: string; description: string } {
  const e = id === null ? undefined : l.data.kb.find((x) => x.id === id);
  return { name: e?.name ?? "", description: e?.description ?? (id === null ? "(nothing retrieved)" : "") };
}

const tokPerSec = (n: number, ms: number): string => (ms > 0 ? `${((n / ms) * 1000).toFixed(1)} tok/s` : "—");

/** Rows of the retrieval log, with the time since the run began. */
let runNumber = 0;
function retrievalLogger(l: Loaded, task: string): { onEvent: (e: TaskEvent) => void } {
  const run = ++runNumber;
  const t0 = performance.now();
  let generated = 0;
  let lastRow: HTMLElement | null = null;
  const body = $("log").querySelector("tbody")!;
  return {
    onEvent: (e: TaskEvent) => {
      if (e.type === "token") generated++;
      else if (e.type === "retrieval") {
        const best = e.hits[0];
        lastRow = h(
          "tr",
          {},
          h("td", {}, `#${run} ${task}`),
          h("td", { class: "num" }, `${Math.round(performance.now() - t0)} ms`),
          h("td", { class: "num" }, e.source === "prompt" ? "prompt" : `${generated}`),
          h("td", { class: "num" }, `@${e.position}`),
          h("td", { class: "id" }, best ? `${best.id} ${describe(l, best.id).name}` : "(nothing)"),
          h("td", { class: "num" }, best ? best.score.toFixed(3) : ""),
          h("td", {}, ""),
        );
        body.prepend(lastRow);
      } else if (e.type === "injection" && lastRow) {
        lastRow.lastElementChild!.textContent = "refused" in e ? "injection refused" : `+${e.ids.length} tokens injected`;
      }
    },
  };
}

async function runLinking(l: Loaded): Promise<void> {
  const text = $<HTMLTextAreaElement>("el-input").value.trim();
  if (text === "") throw new Error("entity linking: the sentence is empty");
  const copyInput = $<HTMLSelectElement>("el-decoding").value === "copy-input";
  const out = $("el-annotated");
  const table = $("el-table");
  out.replaceChildren(h("span", { class: "status" }, "linking…"));
  $("el-output").textContent = "";
  table.replaceChildren();
  $("el-stats").textContent = "";
  const r = await linkSentence(l.model, l.indexes, text, { copyInput, ...retrievalLogger(l, "EL") });
  pageState.el = {
    text,
    copyInput,
    ids: r.ids,
    annotated: r.annotated,
    mentions: r.mentions.map((m) => ({ mention: m.mention, span: m.span, entity: m.entity, score: m.score })),
  };
  // the input with each linked mention marked, numbered and labelled with its entity id
  const chars = Array.from(text); // spans are in code points
  const spans = r.mentions.map((m, i) => ({ m, i })).filter((x) => x.m.span !== null).sort((a, b) => a.m.span![0] - b.m.span![0]);
  const parts: Child[] = [];
  let at = 0;
  for (const { m, i } of spans) {
    const [a, b] = m.span!;
    if (a < at) continue; // overlapping spans: the first wins
    parts.push(chars.slice(at, a).join(""));
    parts.push(h("mark", { class: "mention", title: `${m.entity ?? "nothing"} ${m.score?.toFixed(3) ?? ""}` }, chars.slice(a, b).join(""), h("sup", {}, String(i + 1))));
    parts.push(h("span", { class: "chip" }, m.entity ?? "?"));
    at = b;
  }
  parts.push(chars.slice(at).join(""));
  out.replaceChildren(...parts.filter((p): p is Node | string => p !== null));
  $("el-output").textContent = `model output: ${r.annotated ?? "(no tokenizer)"}`;
  table.replaceChildren(
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "mention"), h("th", {}, "entity"), h("th", {}, "score"), h("th", {}, "description"))),
    h(
      "tbody",
      {},
      ...(r.mentions.length === 0
        ? [h("tr", {}, h("td", { colspan: "5" }, "no mention linked"))]
        : r.mentions.map((m, i) =>
            h("tr", {}, h("td", {}, String(i + 1)), h("td", {}, m.mention ?? ""), h("td", { class: "id" }, m.entity ?? "—"), h("td", { class: "num" }, m.score?.toFixed(3) ?? ""), h("td", {}, describe(l, m.entity).description)),
          )),
    ),
  );
  $("el-stats").textContent =
    `${r.stats.newTokens} tokens, ${r.retrievals.length} retrieval(s) in the decode loop, ${Math.round(r.stats.ms)} ms, ${tokPerSec(r.stats.newTokens, r.stats.ms)}, ${r.mode}, ${copyInput ? "copy-input" : "free"} decoding`;
}

async function runQuestion(l: Loaded): Promise<void> {
  const question = $<HTMLInputElement>("mh-input").value.trim();
  if (question === "") throw new Error("multi-hop QA: the question is empty");
  const hops = $("mh-hops");
  hops.replaceChildren(h("li", { class: "status" }, "reasoning…"));
  $("mh-answer").textContent = "";
  $("mh-stats").textContent = "";
  const r = await answerQuestion(l.model, l.indexes, question, retrievalLogger(l, "QA"));
  pageState.mh = {
    question,
    ids: r.ids,
    retrievals: r.retrievals.map((x) => ({ position: x.position, id: x.hits[0]?.id ?? null, score: x.hits[0]?.score ?? null })),
    answer: r.answer,
  };
  hops.replaceChildren(
    ...r.retrievals.map((x, i) => {
      const best = x.hits[0];
      const d = describe(l, best?.id ?? null);
      return h(
        "li",
        {},
        h("b", {}, `hop ${i + 1}: `),
        best ? h("span", { class: "chip" }, best.id) : null,
        ` ${d.name}`,
        best ? h("span", { class: "status" }, ` score ${best.score.toFixed(3)}`) : null,
        h("div", { class: "doc" }, d.description),
      );
    }),
  );
  if (r.retrievals.length === 0) hops.replaceChildren(h("li", { class: "status" }, "no retrieval"));
  $("mh-answer").replaceChildren("answer: ", r.answer === null ? h("span", { class: "status" }, "(none)") : h("b", {}, r.answer));
  $("mh-stats").textContent = `${r.stats.newTokens} tokens, ${r.injections.length} injection(s), ${Math.round(r.stats.ms)} ms, ${tokPerSec(r.stats.newTokens, r.stats.ms)}, ${r.mode}`;
}

async function runGeneration(l: Loaded): Promise<void> {
  const prompt = $<HTMLTextAreaElement>("gen-input").value;
  const tk = l.model.tokenizer;
  if (!tk) throw new Error("generation: the model directory has no tokenizer.json");
  const maxNew = Number($<HTMLInputElement>("gen-max").value);
  const temperature = Number($<HTMLInputElement>("gen-temp").value);
  if (!Number.isInteger(maxNew) || maxNew < 1 || maxNew > 512) throw new Error(`generation: new tokens must be an integer from 1 to 512, got '${$<HTMLInputElement>("gen-max").value}'`);
  if (!Number.isFinite(temperature) || temperature < 0) throw new Error(`generation: temperature must be a number ≥ 0, got '${$<HTMLInputElement>("gen-temp").value}'`);
  const ids = tk.encode(prompt, { addSpecialTokens: false });
  if (ids.length === 0) throw new Error("generation: the prompt is empty");
  const out = $("gen-output");
  const stats = $("gen-stats");
  out.textContent = "";
  const session = Session.create(l.model.decoder, Math.min(l.model.config.maxPositionEmbeddings, ids.length + maxNew));
  try {
    const t0 = performance.now();
    await session.append(ids);
    const gen: number[] = [];
    let text = "";
    const it = session.generate({
      maxNewTokens: maxNew,
      temperature,
      seed: 1,
      eosIds: l.model.config.eosTokenIds,
      decode: (x: number[]) => tk.decode(x, { skipSpecialTokens: false }),
    });
    let finish = "max-tokens";
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      gen.push(r.value.id);
      text = r.value.text ?? text;
      out.textContent = prompt + text;
      const ms = performance.now() - t0;
      stats.textContent = `${gen.length} tokens, ${tokPerSec(gen.length, ms)} so far`;
    }
    const t = session.timings;
    pageState.gen = { prompt, ids: gen, text };
    stats.textContent = `${gen.length} tokens (${finish}); prefill ${tokPerSec(t.prefillTokens, t.prefillMs)}, decode ${tokPerSec(t.decodeTokens, t.decodeMs)}`;
  } finally {
    session.dispose();
  }
}

async function runEvaluation(l: Loaded): Promise<void> {
  const n = Number($<HTMLInputElement>("eval-n").value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`evaluation: N must be a positive integer, got '${$<HTMLInputElement>("eval-n").value}'`);
  const status = $("eval-status");
  let done = 0;
  const total = Math.min(n, l.data.elTest.length) + Math.min(n, l.data.mhTest.length);
  const s = await evaluateModel(l.model, l.indexes, l.data, { limitEl: n, limitMh: n, onExample: () => void (status.textContent = `${++done}/${total} examples…`) });
  const t = trivialScores(l.data, { el: n, mh: n });
  const f = (x: number): string => x.toFixed(3);
  const row = (what: string, a: number, b: number, base: string): HTMLElement => h("tr", {}, h("td", {}, what), h("td", { class: "num" }, f(a)), h("td", { class: "num" }, f(b)), h("td", {}, base));
  $("eval-table").replaceChildren(
    h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", {}, "model (one pass)"), h("th", {}, "trivial"), h("th", {}, "trivial baseline"))),
    h(
      "tbody",
      {},
      row("entity linking micro-F1", s.el_micro_f1, t.el_micro_f1, "most-frequent entity"),
      row("mention detection F1", s.md_f1, t.md_f1, "dictionary match"),
      row("retrieval accuracy@1", s.retrieval_acc_at1, t.retrieval_acc_at1, "lexical overlap"),
      row("multi-hop exact match", s.multihop_em, t.multihop_em, "majority answer"),
      row("multi-hop F1", s.multihop_f1, t.multihop_f1, "majority answer"),
    ),
  );
  status.textContent = `${s.examples.el} sentences, ${s.examples.mh} questions; ${s.timing.el_ms_per_sentence} ms per sentence, ${s.timing.mh_ms_per_question} ms per question`;
}

// ---------------------------------------------------------------- wiring

/** Loads, or shows why not in one line and leaves the Load button on for another try. */
function loadOrReport(): void {
  load().catch((e: unknown) => {
    showError(e);
    $("load-status").textContent = "not loaded";
    $<HTMLButtonElement>("load-run").disabled = false;
  });
}

function on(id: string, ev: string, fn: (e: Event) => void): void {
  $(id).addEventListener(ev, fn);
}

function start(): void {
  $<HTMLInputElement>("model-url").value = params.get("model") ?? "demo/model/";
  $<HTMLInputElement>("index-url").value = params.get("index") ?? "demo/index/";
  $<HTMLInputElement>("data-url").value = params.get("data") ?? "demo/data/";
  $<HTMLTextAreaElement>("gen-input").value = "Marwick is a city in";
  on("load-form", "submit", (e) => {
    e.preventDefault();
    loadOrReport();
  });
  on("cache-clear", "click", () => {
    const c = (globalThis as { caches?: CacheStorage }).caches;
    if (!c) return showError(new Error("the Cache API is unavailable here (not a secure context): nothing is cached"));
    c.delete(CACHE_NAME).then(() => ($("load-status").textContent = "cache cleared: the next load downloads the files again"), showError);
  });
  on("el-form", "submit", (e) => {
    e.preventDefault();
    void exclusive(runLinking);
  });
  on("mh-form", "submit", (e) => {
    e.preventDefault();
    void exclusive(runQuestion);
  });
  on("gen-form", "submit", (e) => {
    e.preventDefault();
    void exclusive(runGeneration);
  });
  on("eval-form", "submit", (e) => {
    e.preventDefault();
    void exclusive(runEvaluation);
  });
  on("el-next", "click", () => nextExample("el"));
  on("mh-next", "click", () => nextExample("mh"));
  window.addEventListener("unhandledrejection", (e) => showError(e.reason));
  if (params.get("autoload") !== "0") loadOrReport();
  else setState("ready");
}

start();
