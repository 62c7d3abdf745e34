// Browser test runner: runs the library's browser-capable uvu suites in real headless Chromium
// (Debian's `chromium`; on a GPU-less machine its WebGPU adapter is SwiftShader, on the CPU).
//   1. Each compiled test file (dist/test/*.test.js) is bundled for the browser with esbuild; a
//      file whose import graph reaches a Node built-in (node:fs, node:child_process, ...) is
//      Node-only and listed with the first such import; so is a file that says why in a line
//      "// node-only: REASON" (a Node API reached without an import, e.g. process.getBuiltinModule).
//   2. The others go into one page (test/browser/harness.ts runs their uvu suites; "uvu" is
//      aliased to test/browser/uvu-recorder.ts, which records each test's outcome), served by
//      src/web/static-server.ts on 127.0.0.1 with test/fixtures mounted at /fixtures/.
//   3. puppeteer-core opens it in headless Chromium; per-test records come back through an
//      exposed function. No WebGPU adapter in the page is a failure, never a skip.
// Usage: node scripts/run-browser-tests.mjs [pattern]   (pattern filters test file names)
// Exit status 1 when any test fails, a file fails to load, or the time limit passes.
import { build } from "esbuild";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const testDir = join(root, "dist", "test");
const outDir = join(root, "dist", "browser-tests");
const recorder = join(testDir, "browser", "uvu-recorder.js");

/** Chromium binary: Debian's package (scripts/setup-browser.sh installs it); CHROMIUM_PATH overrides. */
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
/**
 * --enable-unsafe-webgpu: without it Chromium on Linux gives no adapter. --no-sandbox: only as
 * root (CI), where Chromium refuses to start sandboxed. The rest keep a headless run quiet and
 * offline. Measured 2026-12 with chromium 156: --disable-gpu-sandbox is not needed.
 */
export function chromiumArgs() {
  const args = ["--enable-unsafe-webgpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  return args;
}
/** Whole-run time limit in seconds: a guard against a hung page, not a speed target (the browser part of `npm test` took 270 s with a cold shader cache on CI, 2026-12-02). */
const LIMIT_S = Number(process.env.ONEGEN_BROWSER_TEST_LIMIT_S || 600);

const uvuAlias = {
  name: "uvu-recorder",
  setup(b) {
    b.onResolve({ filter: /^uvu$/ }, (args) => (args.importer === recorder ? undefined : { path: recorder }));
  },
};

/** Splits test files into browser-capable ones and Node-only ones (with the reason). */
export async function classifyTestFiles(filter) {
  const files = readdirSync(testDir).filter((f) => f.endsWith(".test.js") && (!filter || filter.test(f))).sort();
  const browser = [];
  const nodeOnly = [];
  await Promise.all(
    files.map(async (f) => {
      const marker = /^\/\/ node-only: (.+)$/m.exec(readFileSync(join(testDir, f), "utf8"));
      if (marker) {
        nodeOnly.push({ file: f, reason: marker[1] });
        return;
      }
      try {
        await build({ entryPoints: [join(testDir, f)], bundle: true, platform: "browser", format: "esm", write: false, logLevel: "silent", plugins: [uvuAlias] });
        browser.push(f);
      } catch (e) {
        const first = e.errors?.find((x) => /node:|Could not resolve/.test(x.text)) ?? e.errors?.[0];
        const where = first?.location?.file ? ` (${first.location.file.replace(/^.*?dist\//, "dist/")})` : "";
        nodeOnly.push({ file: f, reason: `${first?.text ?? String(e)}${where}` });
      }
    }),
  );
  browser.sort();
  nodeOnly.sort((a, b) => a.file.localeCompare(b.file));
  return { browser, nodeOnly };
}

/** test/fixtures/models/* directory names, sorted (the page cannot list a directory over HTTP). */
function modelFixtures() {
  return readdirSync(join(root, "test", "fixtures", "models"), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

async function bundlePage(files) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const entry = join(outDir, "entry.js");
  const harness = pathToFileURL(join(testDir, "browser", "harness.js")).pathname;
  const lines = files.map((f) => `  [${JSON.stringify(f)}, () => import(${JSON.stringify(pathToFileURL(join(testDir, f)).pathname)})],`);
  const fail = `(e) => globalThis.__onegenReport(JSON.stringify({ kind: "harness-error", error: String(e && e.stack || e) }))`;
  writeFileSync(entry, `import { runInPage } from ${JSON.stringify(harness)};\nawait runInPage([\n${lines.join("\n")}\n]).catch(${fail});\n`);
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    outfile: join(outDir, "tests.js"),
    sourcemap: "linked",
    // uvu's suites must queue (not auto-run) when they load: set before any module evaluates.
    // test/helpers/fixtures.ts reads fixtures over HTTP when ONEGEN_FIXTURES is set.
    banner: { js: `globalThis.UVU_DEFER = 1;\nglobalThis.ONEGEN_FIXTURES = { base: new URL("/fixtures/", location.href).href, models: ${JSON.stringify(modelFixtures())} };` },
    logLevel: "warning",
    plugins: [uvuAlias],
  });
  writeFileSync(join(outDir, "index.html"), `<!doctype html>\n<meta charset="utf-8">\n<title>onegen-webgpu browser tests</title>\n<link rel="icon" href="data:,">\n<script type="module" src="tests.js"></script>\n`);
}

function adapterLine(a) {
  const info = Object.entries(a.info).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
  const keys = ["maxBufferSize", "maxStorageBufferBindingSize", "minStorageBufferOffsetAlignment", "minUniformBufferOffsetAlignment", "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupStorageSize", "maxStorageBuffersPerShaderStage"];
  const limits = keys.filter((k) => k in a.limits).map((k) => `${k}=${a.limits[k]}`).join(" ");
  return `adapter: ${info} isFallbackAdapter=${a.isFallbackAdapter}\n  features: ${a.features.join(" ") || "(none)"}\n  limits: ${limits}`;
}

/**
 * Runs the browser-capable suites whose file names match `filter` (a RegExp or null) and prints
 * one line per failure plus a summary. Returns { passed, failed, adapter, results, nodeOnly }.
 */
export async function runBrowserTests({ filter = null, log = (s) => process.stdout.write(s + "\n") } = {}) {
  if (!existsSync(testDir)) throw new Error("dist/test is missing: run `npm run build` first (npm test does it)");
  const started = Date.now();
  const { browser, nodeOnly } = await classifyTestFiles(filter);
  log(`browser suites (headless Chromium, ${CHROMIUM}): ${browser.length} files; Node-only: ${nodeOnly.length}`);
  for (const n of nodeOnly) log(`  node-only ${n.file}: ${n.reason}`);
  const results = [];
  const problems = []; // failures that are not a test's own: load errors, no adapter, page errors, time limit
  let adapter = null;
  if (browser.length === 0) return { passed: 0, failed: 0, adapter, results, nodeOnly, problems };
  if (!existsSync(CHROMIUM)) {
    problems.push(`${CHROMIUM} is missing: run scripts/setup-browser.sh (Debian package 'chromium'), or set CHROMIUM_PATH`);
    log(`FAIL ${problems[0]}`);
    return { passed: 0, failed: 1, adapter, results, nodeOnly, problems };
  }
  await bundlePage(browser);

  const { startStaticServer } = await import(pathToFileURL(join(root, "dist", "src", "web", "static-server.js")).href);
  const puppeteer = (await import("puppeteer-core")).default;
  const server = await startStaticServer({ mounts: { "/": outDir, "/fixtures/": join(root, "test", "fixtures") } });
  const profile = await mkdtemp(join(tmpdir(), "onegen-chromium-"));
  let browserProc;
  try {
    browserProc = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs(), userDataDir: profile, protocolTimeout: (LIMIT_S + 60) * 1000 });
  } catch (e) {
    await server.close();
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`${CHROMIUM} did not start: ${String(e.message).split("\n")[0]}`);
  }
  let current = null;
  try {
    const page = await browserProc.newPage();
    let finish;
    const finished = new Promise((r) => (finish = r));
    let started = false; // the harness reported the adapter: the bundle loaded and runs
    page.on("pageerror", (e) => {
      problems.push(`uncaught error in the page${current ? ` during ${current}` : ""}: ${e.message}`);
      if (!started) finish("bundle failed"); // the harness never ran: no "done" will come
    });
    page.on("error", (e) => {
      problems.push(`the page crashed${current ? ` during ${current}` : ""}: ${e.message}`);
      finish("crashed");
    });
    page.on("console", (m) => {
      // 404s are the model loader probing optional files (tokenizer.json, generation_config.json).
      if ((m.type() === "error" || m.type() === "warn") && !/status of 404/.test(m.text())) log(`  [page ${m.type()}] ${m.text()}`);
    });
    await page.exposeFunction("__onegenReport", (json) => {
      const ev = JSON.parse(json);
      started = true;
      if (ev.kind === "adapter") {
        adapter = ev;
        log(adapterLine(ev));
      } else if (ev.kind === "no-adapter") {
        problems.push(`no WebGPU adapter: ${ev.error}`);
        log(`FAIL no WebGPU adapter: ${ev.error}`);
      } else if (ev.kind === "load-error") {
        problems.push(`${ev.file} failed to load: ${ev.error.split("\n")[0]}`);
        log(`FAIL ${ev.file} failed to load: ${ev.error}`);
      } else if (ev.kind === "start") {
        current = `${ev.file} › ${ev.suite ? ev.suite + " › " : ""}${ev.name}`;
      } else if (ev.kind === "test") {
        results.push(ev);
        current = null;
        if (!ev.ok) log(`  ✘ ${ev.file} › ${ev.suite ? ev.suite + " › " : ""}${ev.name} (${(ev.ms / 1000).toFixed(1)} s)\n      ${ev.error.split("\n").slice(0, 3).join("\n      ")}`);
      } else if (ev.kind === "skipped") {
        problems.push(`${ev.file}: ${ev.count} test(s) skipped (skips are not allowed)`);
      } else if (ev.kind === "harness-error") {
        problems.push(`the page's test harness failed: ${ev.error.split("\n")[0]}`);
        finish("harness failed");
      } else if (ev.kind === "done") {
        finish("done");
      }
    });
    await page.goto(server.url + "index.html", { waitUntil: "load" });
    let timer;
    const outcome = await Promise.race([finished, new Promise((r) => (timer = setTimeout(() => r("timeout"), LIMIT_S * 1000)))]);
    clearTimeout(timer);
    if (outcome === "timeout") problems.push(`time limit ${LIMIT_S} s passed${current ? ` while running ${current}` : ""} (ONEGEN_BROWSER_TEST_LIMIT_S changes it)`);
  } finally {
    await browserProc.close().catch(() => {});
    await server.close();
    rmSync(profile, { recursive: true, force: true });
  }
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed + problems.length;
  for (const p of problems) log(`FAIL ${p}`);
  const byFile = new Map();
  for (const r of results) {
    const s = byFile.get(r.file) ?? { n: 0, ok: 0, ms: 0 };
    s.n++;
    s.ok += r.ok ? 1 : 0;
    s.ms += r.ms;
    byFile.set(r.file, s);
  }
  for (const [f, s] of byFile) log(`  ${s.ok === s.n ? "ok  " : "FAIL"} ${f}: ${s.ok}/${s.n} (${(s.ms / 1000).toFixed(1)} s)`);
  const slowest = [...results].sort((a, b) => b.ms - a.ms).slice(0, 3);
  if (slowest.length) log(`  slowest: ${slowest.map((r) => `${r.file} › ${r.name.slice(0, 50)} ${(r.ms / 1000).toFixed(1)} s`).join("; ")}`);
  log(`browser: ${passed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return { passed, failed, adapter, results, nodeOnly, problems };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;
  const r = await runBrowserTests({ filter });
  if (r.passed + r.failed === 0) {
    console.error("no browser test files matched");
    process.exit(1);
  }
  process.exit(r.failed > 0 ? 1 : 0);
}
