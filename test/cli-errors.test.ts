// Every user error of every command is one line on stderr naming the flag, file or word and the
// rule, with exit 2 for usage (stray words included: an unquoted `--prompt Marwick is a city`) and
// 1 for bad input; never a stack trace unless --debug asks for one; errors that escape into
// callbacks or promises print one line too.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "./helpers/scratch.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "dist", "src", "cli.js");
const MODEL = join(root, "test", "fixtures", "models", "llama-gqa-f32");
const tmp = scratchDir("cli-errors");
const missing = join(tmp, "missing");

function run(args: readonly string[], nodeArgs: readonly string[] = []): { status: number | null; stdout: string; stderr: string; lines: string[] } {
  const r = spawnSync(process.execPath, [...nodeArgs, cli, ...args], { encoding: "utf8", timeout: 120_000, cwd: root, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" } });
  // Dawn's "artificially reduced" limit warnings are Dawn's, not ours.
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !/artificially reduced|Warning: .*maxDynamic/.test(l));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines };
}

function assertOneLine(r: ReturnType<typeof run>, status: number, patterns: readonly RegExp[], what: string): void {
  assert.is(r.status, status, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.is(r.lines.length, 1, `${what}: want one line on stderr, got:\n${r.stderr}`);
  assert.not.match(r.stderr, /\n\s+at /, `${what}: no stack trace`);
  for (const p of patterns) assert.match(r.lines[0]!, p, what);
}

const COMMANDS = ["device", "info", "forward", "generate", "index", "search", "run", "train", "eval", "demo", "web", "serve", "bench"];

test("every command refuses a stray word: exit 2, one line naming it", () => {
  for (const c of COMMANDS) {
    const r = run([c, "stray"]);
    assertOneLine(r, 2, [new RegExp(`^onegen ${c}: stray word 'stray': ${c} takes no positional arguments`), new RegExp(`see onegen ${c} --help`)], c);
  }
  // also after other options, and in --name=value form
  assertOneLine(run(["info", "--json", "extra"]), 2, [/stray word 'extra'/], "info after a boolean");
  assertOneLine(run(["bench", "--only=copy", "x"]), 2, [/stray word 'x' after --only copy/], "bench --only=copy x");
});

test("an unquoted value with spaces is refused with the quoted form to use (not silently cut to its first word)", () => {
  const r = run(["generate", "--model", MODEL, "--prompt", "Marwick", "is", "a", "city", "--quiet"]);
  assertOneLine(r, 2, [/^onegen generate: stray word 'is' after --prompt Marwick/, /--prompt "Marwick is a city"/], "generate --prompt");
  assert.is(r.stdout, "", "nothing was generated");
  assertOneLine(run(["run", "--text", "Who", "founded", "it?", "--model", MODEL]), 2, [/stray word 'founded' after --text Who/, /--text "Who founded it\?"/], "run --text");
});

test("unknown options, single-dash options and missing values: exit 2, one line", () => {
  for (const c of COMMANDS) assertOneLine(run([c, "--frobnicate"]), 2, [new RegExp(`^onegen ${c}: unknown option --frobnicate`)], `${c} --frobnicate`);
  assertOneLine(run(["generate", "-n", "5"]), 2, [/unknown option -n \(options are spelled --name\)/], "-n");
  assertOneLine(run(["search", "--k"]), 2, [/--k needs a value/], "--k without value");
  assertOneLine(run(["forward", "--model", MODEL]), 2, [/--out FILE\.safetensors is required/], "forward without --out");
  assertOneLine(run(["train"]), 2, [/--model is required/], "train without flags");
  assertOneLine(run(["bench", "--only", "nope"]), 2, [/--only names no suite .nope. \(suites: .*attention/], "bench --only nope");
  assertOneLine(run(["serve"]), 2, [/^onegen serve: --model DIR is required/], "serve without --model");
  assertOneLine(run(["serve", "--model", MODEL, "--index", "nodir"]), 2, [/--index takes NAME=DIR/], "serve --index without a name");
  assertOneLine(run(["serve", "--model", MODEL, "--port", "70000"]), 2, [/--port must be ≤ 65535/], "serve --port");
  assertOneLine(run(["serve", "--model", MODEL, "--context", "999999"]), 2, [/--context 999999 exceeds the model's context/], "serve --context");
  assertOneLine(run(["serve", "--model", MODEL, "--api-key", " "]), 2, [/--api-key must not be empty/], "serve --api-key");
});

test("a missing input file or directory: exit 1, one line naming the path, no stack", () => {
  const cases: [string, string[]][] = [
    ["info", ["info", "--model", missing]],
    ["forward", ["forward", "--model", missing, "--ids", "1", "--out", join(tmp, "f.safetensors"), "--quiet"]],
    ["generate", ["generate", "--model", missing, "--ids", "1", "--quiet"]],
    ["index", ["index", "--model", MODEL, "--docs", missing, "--out", join(tmp, "ix"), "--quiet"]],
    ["search", ["search", "--model", MODEL, "--index", missing, "--ids", "1", "--quiet"]],
    ["run", ["run", "--model", MODEL, "--index", join(tmp, "ix"), "--task", "entity-linking", "--input", missing, "--quiet"]],
    ["train", ["train", "--model", MODEL, "--train", missing, "--db", missing, "--out", join(tmp, "out"), "--retrieval-token", "#5", "--doc-token", "#6", "--quiet"]],
    ["eval", ["eval", "--model", missing, "--quiet"]],
    ["demo", ["demo", "--model", missing, "--quiet"]],
    ["serve", ["serve", "--model", missing, "--quiet"]],
  ];
  for (const [what, args] of cases) assertOneLine(run(args), 1, [new RegExp(`^onegen ${what}: `), new RegExp(missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))], what);
  // the reason, not Node's raw errno text
  assertOneLine(run(["index", "--model", MODEL, "--docs", missing, "--out", join(tmp, "ix")]), 1, [/cannot read --docs '.*missing': no such file or directory \(ENOENT\)$/], "index --docs");
  assertOneLine(run(["run", "--model", MODEL, "--index", tmp, "--task", "entity-linking", "--input", tmp]), 1, [/cannot read --input '.*': it is a directory \(EISDIR\)$/], "run --input DIR");
  // a malformed JSON file: named, with the parser's complaint, on one line
  const bad = join(tmp, "bad-data");
  mkdirSync(bad);
  writeFileSync(join(bad, "manifest.json"), "{bad");
  assertOneLine(run(["demo", "--data", bad, "--quiet"]), 1, [/^onegen demo: '.*bad-data\/manifest\.json' is not valid JSON: .*; hint: generate it with/], "demo: malformed manifest.json");
  writeFileSync(join(bad, "manifest.json"), "null");
  assertOneLine(run(["eval", "--data", bad, "--quiet"]), 1, [/manifest\.json' must hold a JSON object, got null/], "eval: manifest.json holds null");
});

test("--debug (before the command or among its options) adds the stack trace", () => {
  for (const args of [["--debug", "info", "--model", missing], ["info", "--model", missing, "--debug"]]) {
    const r = run(args);
    assert.is(r.status, 1, r.stderr);
    assert.match(r.lines[0]!, /^onegen info: /);
    assert.match(r.stderr, /\n\s+at /, `${args.join(" ")}: stack shown`);
  }
  for (const args of [["--debug", "generate", "stray"], ["generate", "stray", "--debug"]]) {
    const u = run(args);
    assert.is(u.status, 2);
    assert.match(u.stderr, /UsageError: generate: stray word 'stray'[^\n]*\n\s+at /, args.join(" "));
  }
  // "--debug" as a flag's value is that value, not the option
  assertOneLine(run(["generate", "--prompt", "--debug", "stray"]), 2, [/stray word 'stray' after --prompt --debug/], "--prompt --debug");
});

test("an error thrown in a callback or an unhandled rejection: one line, exit 1; with --debug its stack", () => {
  // --import runs before the CLI is loaded; its timer fires once the CLI has installed its handlers.
  const boom = (code: string) => ["--import", `data:text/javascript,${encodeURIComponent(code)}`];
  const reject = run(["info", "--help"], boom("setTimeout(() => Promise.reject(new TypeError('boom in a promise')), 500); setTimeout(() => {}, 2000);"));
  assertOneLine(reject, 1, [/^onegen info: internal error: TypeError: boom in a promise \(run with --debug for the stack trace\)$/], "unhandled rejection");
  const thrown = run(["info", "--help"], boom("setTimeout(() => { throw new RangeError('boom in a callback'); }, 500); setTimeout(() => {}, 2000);"));
  assertOneLine(thrown, 1, [/^onegen info: internal error: RangeError: boom in a callback/], "uncaught exception");
  const debug = run(["--debug", "info", "--help"], boom("setTimeout(() => { throw new RangeError('boom'); }, 500); setTimeout(() => {}, 2000);"));
  assert.is(debug.status, 1);
  assert.match(debug.stderr, /^onegen info: internal error: RangeError: boom\nRangeError: boom\n\s+at /);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
