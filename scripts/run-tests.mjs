// Test runner: runs every compiled uvu suite (dist/test/**/*.test.js) in one process, destroys the
// GPU contexts, then prints the closing line "N passed, N failed" and exits non-zero on failure.
// Then the browser-capable suites run again in headless Chromium (scripts/run-browser-tests.mjs);
// their counts join the closing line. Usage: node scripts/run-tests.mjs [pattern]   (pattern
// filters test file names; "deno" runs only the Deno smoke test, "browser" only the browser run)
import { parse } from "uvu/parse";
import { run } from "uvu/run";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = join(root, "dist", "test");
if (!existsSync(dir)) {
  console.error("dist/test is missing: run `npm run build` first (npm test does it)");
  process.exit(1);
}
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;
const ctx = await parse(dir, /\.test\.js$/, { cwd: root });
const suites = ctx.suites.filter((s) => !filter || filter.test(s.name));
const runDeno = !filter || filter.test("deno");
const runBrowser = !filter || filter.test("browser");
if (suites.length === 0 && !runDeno && !runBrowser) {
  console.error("no test files matched");
  process.exit(1);
}

// uvu prints "Total: N / Passed: N / Skipped: N"; capture them for the closing line.
let captured = "";
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  captured += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
  if (captured.length > 1 << 16) captured = captured.slice(-(1 << 15));
  return write(chunk, ...rest);
};
const started = Date.now();
if (suites.length > 0) await run(suites, { bail: false });
process.stdout.write = write;

const plain = captured.replace(/\x1b\[[0-9;]*m/g, "");
const num = (label) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? NaN);
const total = suites.length > 0 ? num("Total") : 0;
const passed = suites.length > 0 ? num("Passed") : 0;
const skipped = num("Skipped") || 0;
const failed = total - passed - skipped;

// The Deno smoke test runs the compiled library under Deno's own WebGPU (no subgroups there).
// It counts as tests in the same closing line. Skipped only when a pattern excludes it.
let denoPassed = 0;
let denoFailed = 0;
if (runDeno) {
  const { spawnSync } = await import("node:child_process");
  const deno = join(root, "node_modules", ".bin", "deno");
  const r = spawnSync(deno, ["run", "--allow-read", "--allow-env", join(root, "test", "deno", "smoke.ts")], { encoding: "utf8", cwd: root });
  const out = (r.stdout ?? "") + (r.stderr ?? "");
  process.stdout.write("\ndeno smoke test (test/deno/smoke.ts)\n" + out.split("\n").filter((l) => !/artificially reduced/.test(l)).join("\n") + "\n");
  const m = /deno: (\d+) passed, (\d+) failed/.exec(out);
  if (m) {
    denoPassed = Number(m[1]);
    denoFailed = Number(m[2]);
  } else {
    denoFailed = 1;
    console.error(`deno smoke test did not run (exit ${r.status}${r.error ? `, ${r.error.message}` : ""})`);
  }
  if (r.status !== 0 && denoFailed === 0) denoFailed = 1;
}

// The browser-capable suites in headless Chromium (WebGPU on SwiftShader where there is no GPU).
// Skipped only when a pattern excludes it; no Chromium or no adapter is a failure.
let browserPassed = 0;
let browserFailed = 0;
if (runBrowser) {
  process.stdout.write("\nbrowser suites (scripts/run-browser-tests.mjs)\n");
  try {
    const { runBrowserTests } = await import(pathToFileURL(join(root, "scripts", "run-browser-tests.mjs")).href);
    const r = await runBrowserTests();
    browserPassed = r.passed;
    browserFailed = r.failed;
  } catch (e) {
    browserFailed = 1;
    console.error(`browser tests did not run: ${e.message}`);
  }
}

const helper = join(dir, "helpers", "gpu.js");
if (existsSync(helper)) await (await import(pathToFileURL(helper).href)).destroyAllContexts();

console.log(`\n(${suites.length} files, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
if (!Number.isFinite(total) || total + denoPassed + denoFailed + browserPassed + browserFailed === 0) {
  console.log("0 passed, 1 failed");
  console.error("no tests ran");
  process.exit(1);
}
const allPassed = passed + denoPassed + browserPassed;
const allFailed = failed + denoFailed + browserFailed;
console.log(`${allPassed} passed, ${allFailed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(allFailed > 0 || process.exitCode ? 1 : 0);
