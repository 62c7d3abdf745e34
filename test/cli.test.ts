import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "dist", "src", "cli.js");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000 });

test("--help lists the subcommands and exits 0", () => {
  const r = run("--help");
  assert.is(r.status, 0, r.stderr);
  for (const c of ["device", "info", "forward", "generate", "index", "search", "run", "bench"]) assert.match(r.stdout, new RegExp(`\\n  ${c}\\s`));
});

test("an unknown subcommand exits 2 with one line on stderr pointing at --help", () => {
  const r = run("frobnicate");
  assert.is(r.status, 2);
  assert.is(r.stderr, "onegen: unknown command 'frobnicate' (see onegen --help for the commands)\n");
});

test("an unknown option exits 2 naming it", () => {
  const r = run("device", "--bogus");
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown option --bogus/);
});

test("device --json opens the GPU and the process exits by itself", () => {
  const t0 = Date.now();
  const r = run("device", "--json");
  assert.is(r.status, 0, r.stderr);
  assert.ok(Date.now() - t0 < 30_000, "process did not exit promptly");
  const d = JSON.parse(r.stdout) as { adapter: string; features: string[]; limits: Record<string, number> };
  assert.ok(d.adapter.length > 0);
  assert.ok(d.features.includes("shader-f16"));
  assert.ok(d.limits.maxBufferSize! > 256 * 2 ** 20);
});

test.run();
