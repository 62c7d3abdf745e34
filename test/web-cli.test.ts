// `onegen web`: one-line errors for bad flags (exit 2) and bad directories or a busy port (exit 1);
// serving the page and the model, index and data files with HEAD and Range; SIGINT and SIGTERM
// stop it with exit 0; it writes nothing into what it serves.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { scratchDir } from "./helpers/scratch.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(ROOT, "dist", "src", "cli.js");
const tmp = scratchDir("web-cli");

function runSync(args: readonly string[]): { status: number | null; stdout: string; lines: string[] } {
  const r = spawnSync(process.execPath, [CLI, "web", ...args], { encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, lines: r.stderr.split("\n").filter((l) => l !== "") };
}

function oneLine(args: readonly string[], status: number, pattern: RegExp): void {
  const r = runSync(args);
  assert.is(r.status, status, `web ${args.join(" ")}: exit ${r.status}: ${r.lines.join(" / ")}`);
  assert.is(r.lines.length, 1, `one line on stderr: ${r.lines.join(" / ")}`);
  assert.match(r.lines[0]!, pattern);
  assert.is(r.stdout, "", "nothing served");
}

/** Every file under a directory with its size and mtime, to show nothing was written. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((d) => join(d.parentPath, d.name))
    .map((p) => `${p} ${statSync(p).size} ${statSync(p).mtimeMs}`)
    .sort();
}

function serve(args: readonly string[]): Promise<{ url: string; proc: ChildProcess; out: () => string }> {
  const proc = spawn(process.execPath, [CLI, "web", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  return new Promise((ok, bad) => {
    const onData = (b: Buffer): void => {
      out += b.toString();
      const m = /serving the demo page at (http:\/\/\S+)/.exec(out);
      if (m) ok({ url: m[1]!, proc, out: () => out });
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.on("close", (code) => bad(new Error(`onegen web exited ${code}: ${out}`)));
  });
}

function stop(proc: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  return new Promise((ok) => {
    proc.once("close", (code) => ok(code));
    proc.kill(signal);
  });
}

test("onegen web: bad flags and directories are one line (usage 2, input 1)", () => {
  oneLine(["--port", "x"], 2, /^onegen web: --port must be an integer, got 'x'/);
  oneLine(["--port", "70000"], 2, /^onegen web: --port must be ≤ 65535, got 70000/);
  oneLine(["--host", ""], 2, /^onegen web: --host must be a host name or IP address/);
  oneLine(["8080"], 2, /^onegen web: stray word '8080': web takes no positional arguments/);
  oneLine(["--port", "0", "extra"], 2, /stray word 'extra' after --port 0/);
  oneLine(["--model", join(tmp, "missing")], 1, /^onegen web: --model '.*missing' does not exist \(a model directory\)/);
  oneLine(["--index", CLI], 1, /^onegen web: --index '.*cli\.js' is not a directory/);
  oneLine(["--host", "203.0.113.9", "--port", "0"], 1, /^onegen web: cannot listen on --host '203\.0\.113\.9': EADDRNOTAVAIL/);
  const help = runSync(["--help"]);
  assert.is(help.status, 0);
  assert.match(help.stdout, /^usage: onegen web \[--port N/);
});

test("onegen web: a busy port is one line naming it", async () => {
  const blocker = createServer();
  await new Promise<void>((ok) => blocker.listen(0, "127.0.0.1", () => ok()));
  const port = (blocker.address() as { port: number }).port;
  try {
    oneLine(["--port", String(port)], 1, new RegExp(`^onegen web: port ${port} on 127\\.0\\.0\\.1 is in use; hint: give another --port`));
  } finally {
    blocker.close();
  }
});

test("onegen web: serves the page and the demo files with HEAD and Range, stops on SIGINT and SIGTERM, writes nothing", async () => {
  const before = snapshot(join(ROOT, "demo"));
  const s = await serve([]);
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/, "binds 127.0.0.1 by default");
    const page = await fetch(s.url);
    assert.is(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="demo\.js"><\/script>/);
    assert.is((await fetch(s.url + "demo.js", { method: "HEAD" })).status, 200);
    const size = statSync(join(ROOT, "demo", "model", "model.safetensors")).size;
    const head = await fetch(s.url + "demo/model/model.safetensors", { method: "HEAD" });
    assert.is(head.headers.get("content-length"), String(size));
    const r = await fetch(s.url + "demo/index/el/vectors.safetensors", { headers: { Range: "bytes=0-7" } });
    assert.is(r.status, 206);
    assert.is((await r.arrayBuffer()).byteLength, 8);
    assert.is((await fetch(s.url + "demo/data/kb.json")).status, 200);
    assert.is((await fetch(s.url + "demo/model/../../package.json")).status, 404, "nothing outside the mounts");
    assert.is((await fetch(s.url + "demo/model/x", { method: "PUT" })).status, 405);
  } finally {
    assert.is(await stop(s.proc, "SIGINT"), 0, `exit 0 on SIGINT: ${s.out()}`);
  }
  assert.match(s.out(), /stopped\n$/);
  const t = await serve(["--model", join(ROOT, "demo", "model")]);
  assert.is(await stop(t.proc, "SIGTERM"), 0, `exit 0 on SIGTERM: ${t.out()}`);
  assert.equal(snapshot(join(ROOT, "demo")), before, "nothing written into the served directories");
});

test.run();
