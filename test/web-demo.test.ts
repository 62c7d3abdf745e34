// End-to-end test of the demo page in a real browser: `onegen web --port 0` serves the page with
// the bundled demo model, indexes and data; headless Chromium (Debian's /usr/bin/chromium, driven
// by puppeteer-core; WebGPU on its SwiftShader adapter, which has no shader-f16) loads them over
// HTTP, reloads from the Cache API without downloading, then links the entities of a fixed
// held-out sentence, answers a fixed two-hop question and generates greedily from a prompt. The
// page's ids, annotated text, entities, retrieved documents, answer and generated ids must EQUAL
// what the library computes in Node (Dawn) for the same inputs, scores within 2e-3. No adapter in the browser is a failure (the page
// shows an error line, reported here). A screenshot of the page is taken into a scratch
// dir removed at exit (ONEGEN_WEB_DEMO_SCREENSHOT=PATH keeps it there; docs/web-demo.png was made that way).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { gpu } from "./helpers/gpu.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { loadDemoData } from "../src/demo/data.js";
import { openDemoIndexes } from "../src/demo/indexes.js";
import { answerQuestion, linkSentence } from "../src/demo/tasks.js";
import type { DemoPageState } from "../web/main.js";
import { scratchDir } from "./helpers/scratch.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(ROOT, "dist", "src", "cli.js");
/** Debian's chromium (CHROMIUM_PATH overrides, as for the browser suites). */
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
/** Fixed inputs: the first held-out sentence and question of demo/data (checked below). */
const SENTENCE = "As a young engineer, Casimir Dalley left Marwick for Kestport.";
const QUESTION = "Where was the founder of Sable Records born?";
const PROMPT = "Marwick is a city in";
const GEN_TOKENS = 24;
const SCORE_TOL = 2e-3;
/** Per page step (load, one task) on SwiftShader with 2 CPU cores. */
const STEP_MS = 120_000;

/** `onegen web --port 0`: resolves with the URL it prints. */
function startWeb(): Promise<{ url: string; proc: ChildProcess; output: () => string }> {
  const proc = spawn(process.execPath, [CLI, "web", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  return new Promise((ok, bad) => {
    const timer = setTimeout(() => bad(new Error(`onegen web printed no URL within 20 s: ${out}`)), 20_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      const m = /serving the demo page at (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ url: m[1]!, proc, output: () => out });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      bad(new Error(`onegen web exited with ${code} before serving: ${out.trim()}`));
    });
  });
}

async function launch(profile: string, webgpu = true): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    // --enable-unsafe-webgpu: no adapter without it (Linux, headless); --no-sandbox only as root,
    // where Chromium refuses to start sandboxed
    args: [...(webgpu ? ["--enable-unsafe-webgpu"] : []), ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    defaultViewport: { width: 1280, height: 900 },
    protocolTimeout: 2 * STEP_MS,
  });
}

const pageState = (page: Page): Promise<DemoPageState> => page.evaluate(() => JSON.parse(JSON.stringify((globalThis as { onegenDemo?: unknown }).onegenDemo)) as DemoPageState);

/** Waits until the page is ready (or fails with its error line). */
async function ready(page: Page, what: string): Promise<DemoPageState> {
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state ?? ""), { timeout: STEP_MS, polling: 200 });
  const s = await pageState(page);
  if (s.state === "error") assert.unreachable(`${what}: the page shows the error: ${s.error}`);
  return s;
}

async function run(page: Page, input: string, value: string, button: string, what: string): Promise<DemoPageState> {
  await page.$eval(input, (e, v) => ((e as HTMLInputElement).value = v), value);
  await page.click(button);
  await page.waitForFunction(() => document.body.dataset.state !== "busy", { timeout: STEP_MS, polling: 200 });
  return ready(page, what);
}

test("demo page in headless Chromium: loads over HTTP, restarts from the cache, and links entities, answers a two-hop question and generates exactly as Node", async () => {
  // Node's answers for the same inputs, through the library.
  const data = await loadDemoData(join(ROOT, "demo", "data"), "test");
  assert.is(data.elTest[0]?.text, SENTENCE, "the fixed sentence is the first held-out one");
  assert.ok(data.mhTest.some((q) => q.question === QUESTION), "the fixed question is a held-out one");
  const ctx = await gpu();
  const model = await loadDecoder(ctx, join(ROOT, "demo", "model"));
  const indexes = await openDemoIndexes(ctx, model, join(ROOT, "demo", "index"), data, { build: false });
  const el = await linkSentence(model, indexes, SENTENCE);
  const mh = await answerQuestion(model, indexes, QUESTION);
  // free generation, greedy, as the page runs it
  const promptIds = model.tokenizer!.encode(PROMPT, { addSpecialTokens: false });
  const session = Session.create(model.decoder, Math.min(model.config.maxPositionEmbeddings, promptIds.length + GEN_TOKENS));
  await session.append(promptIds);
  const genIds: number[] = [];
  for await (const t of session.generate({ maxNewTokens: GEN_TOKENS, temperature: 0, seed: 1, eosIds: model.config.eosTokenIds })) genIds.push(t.id);
  session.dispose();
  indexes.dispose();
  model.dispose();
  assert.ok(el.mentions.length > 0 && mh.retrievals.length > 0, "Node links mentions and retrieves documents");

  const web = await startWeb();
  const profile = scratchDir("web-profile");
  let browser: Browser | null = null;
  try {
    browser = await launch(profile);
    const page = await browser.newPage();
    const console: string[] = [];
    page.on("console", (m) => void console.push(m.text()));
    page.on("pageerror", (e) => void console.push(String(e)));

    // first visit: downloads and caches every file
    await page.goto(web.url, { waitUntil: "domcontentloaded" });
    let s = await ready(page, "first load");
    assert.ok(s.adapter !== null, "the page reports its WebGPU adapter");
    assert.ok(s.cache?.available, "the Cache API is available on 127.0.0.1");
    assert.ok((s.cache?.downloadedFiles ?? 0) >= 10, `the first load downloads the model, indexes and data (${JSON.stringify(s.cache)})`);

    // reload: everything from the cache, and the page says so
    await page.reload({ waitUntil: "domcontentloaded" });
    s = await ready(page, "reload");
    assert.is(s.cache?.downloadedFiles, 0, `a reload downloads nothing (${JSON.stringify(s.cache)})`);
    assert.is(s.cache?.cachedFiles, s.cache ? s.cache.cachedFiles : -1);
    assert.match(await page.$eval("#load-status", (e) => e.textContent ?? ""), /started from the cache/);

    // entity linking: the same ids, annotated text, spans and entities as Node
    s = await run(page, "#el-input", SENTENCE, "#el-run", "entity linking");
    assert.ok(s.el !== null && s.el.text === SENTENCE, "the page linked the sentence");
    assert.equal(s.el.ids, el.ids, "the same ids (prompt and generated)");
    assert.is(s.el.annotated, el.annotated);
    assert.equal(
      s.el.mentions.map((m) => [m.mention, m.span, m.entity]),
      el.mentions.map((m) => [m.mention, m.span, m.entity]),
    );
    s.el.mentions.forEach((m, i) => assert.ok(Math.abs((m.score ?? NaN) - el.mentions[i]!.score!) <= SCORE_TOL, `mention ${i}: score ${m.score} vs Node ${el.mentions[i]!.score}`));
    const table = await page.$eval("#el-table", (e) => e.textContent ?? "");
    for (const m of el.mentions) assert.ok(table.includes(m.entity!), `the page's table shows ${m.entity}`);

    // multi-hop QA: the same retrieved documents per hop and the same answer
    s = await run(page, "#mh-input", QUESTION, "#mh-run", "multi-hop QA");
    assert.ok(s.mh !== null && s.mh.question === QUESTION, "the page answered the question");
    assert.equal(s.mh.ids, mh.ids, "the same ids (prompt, reasoning, injected documents, answer)");
    assert.equal(
      s.mh.retrievals.map((r) => [r.position, r.id]),
      mh.retrievals.map((r) => [r.position, r.hits[0]?.id ?? null]),
    );
    s.mh.retrievals.forEach((r, i) => assert.ok(Math.abs((r.score ?? NaN) - mh.retrievals[i]!.hits[0]!.score) <= SCORE_TOL, `hop ${i}: score ${r.score} vs Node ${mh.retrievals[i]!.hits[0]!.score}`));
    assert.is(s.mh.answer, mh.answer);
    assert.ok(mh.answer !== null && (await page.$eval("#mh-answer", (e) => e.textContent ?? "")).includes(mh.answer), "the page shows the answer");
    assert.ok((await page.$$("#log tbody tr")).length >= el.retrievals.length + mh.retrievals.length, "the retrieval log lists every retrieval");

    // free generation: the same greedy ids, streamed into the page
    await page.$eval("#gen-max", (e, n) => ((e as HTMLInputElement).value = String(n)), GEN_TOKENS);
    s = await run(page, "#gen-input", PROMPT, "#gen-run", "generation");
    assert.ok(s.gen !== null && s.gen.prompt === PROMPT, "the page generated");
    assert.equal(s.gen.ids, genIds, "the same generated ids");
    assert.match(await page.$eval("#gen-stats", (e) => e.textContent ?? ""), /decode [\d.]+ tok\/s/);

    const shot = process.env.ONEGEN_WEB_DEMO_SCREENSHOT ?? join(scratchDir("web-shot"), "web-demo.png");
    await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
    if (process.env.ONEGEN_WEB_DEMO_SCREENSHOT) process.stdout.write(`\n  screenshot: ${shot}\n`);
    assert.ok(!s.error, `no error line (${s.error}); console: ${console.slice(-3).join(" | ")}`);
  } finally {
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    // Ctrl-C / SIGTERM stops the server cleanly
    const exited = new Promise<number | null>((ok) => web.proc.once("close", (code) => ok(code)));
    web.proc.kill("SIGTERM");
    const code = await exited;
    assert.is(code, 0, `onegen web exits 0 on SIGTERM: ${web.output()}`);
    assert.match(web.output(), /stopped\n$/);
  }
});

test("demo page without WebGPU (Chromium lacking --enable-unsafe-webgpu): one error line naming the flag, nothing loaded", async () => {
  const web = await startWeb();
  const profile = scratchDir("web-profile");
  let browser: Browser | null = null;
  try {
    browser = await launch(profile, false);
    const page = await browser.newPage();
    await page.goto(web.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state ?? ""), { timeout: STEP_MS, polling: 200 });
    const s = await pageState(page);
    assert.is(s.state, "error");
    assert.match(s.error ?? "", /^no WebGPU adapter: start Chromium with --enable-unsafe-webgpu/);
    assert.is(await page.$eval("#error", (e) => e.textContent), s.error);
    assert.ok(!(s.error ?? "").includes("\n"), "one line");
    assert.is(await page.$eval("#el-run", (e) => (e as HTMLButtonElement).disabled), true, "no task can run");
    assert.is(await page.$eval("#load-run", (e) => (e as HTMLButtonElement).disabled), false, "Load can be tried again");
  } finally {
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    web.proc.kill("SIGTERM");
  }
});

test.run();
