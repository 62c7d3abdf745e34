// Test runner: runs every compiled uvu suite (dist/test/**/*.test.js) in one process, destroys the
// GPU contexts, then prints the closing line "N passed, N failed" and exits non-zero on failure.
// Usage: node scripts/run-tests.mjs [pattern]   (pattern filters test file names)
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
if (suites.length === 0) {
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
await run(suites, { bail: false });
process.stdout.write = write;

const plain = captured.replace(/\x1b\[[0-9;]*m/g, "");
const num = (label) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? NaN);
const total = num("Total");
const passed = num("Passed");
const skipped = num("Skipped") || 0;
const failed = total - passed - skipped;

const helper = join(dir, "helpers", "gpu.js");
if (existsSync(helper)) await (await import(pathToFileURL(helper).href)).destroyAllContexts();

console.log(`\n(${suites.length} files, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
if (!Number.isFinite(total) || total === 0) {
  console.log("0 passed, 1 failed");
  console.error("no tests ran");
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || process.exitCode ? 1 : 0);
