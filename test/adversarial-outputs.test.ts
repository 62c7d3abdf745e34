// Bad outputs for every writing command, through the CLI binary as a careless or hostile user
// would give them (issue 15): an output that is an input (directly, through a symlink or `..`),
// inside the model, holding the inputs, a directory holding a look-alike manifest.json, a file
// where a directory is needed and the reverse, a foreign existing file, a missing or non-directory
// parent. Each must: exit 2, print ONE line on stderr naming the flag, leave every user file
// byte-identical (sha256 of every file and link in the user's folder, before and after), and fail
// fast: the model given is deliberately unloadable (its config.json is not JSON), so a refusal
// that came after loading would be a load error instead. Then the library API (saveIndex,
// saveModelDir, saveAdapters) refuses the same targets.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURE_ROOT } from "./helpers/golden.js";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { UsageError } from "../src/errors.js";
import { DocumentIndex } from "../src/onegen/index.js";
import { saveIndex } from "../src/onegen/index-files.js";
import { loadDecoder } from "../src/model/load.js";
import { saveModelDir } from "../src/train/save.js";
import { scratchDir } from "./helpers/scratch.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(repo, "dist", "src", "cli.js");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" } });

/** sha256 of every file (and the target of every link) under `dir`, by relative path. */
async function snapshot(dir: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const n of (await readdir(join(dir, rel))).sort()) {
    const r = join(rel, n);
    const st = await lstat(join(dir, r));
    if (st.isSymbolicLink()) out.set(r, `link:${await readlink(join(dir, r))}`);
    else if (st.isDirectory()) {
      out.set(r, "dir");
      for (const [k, v] of await snapshot(dir, r)) out.set(k, v);
    } else out.set(r, createHash("sha256").update(await readFile(join(dir, r))).digest("hex"));
  }
  return out;
}

let built: Promise<string> | null = null;
/** The user's folder: a broken model, a good one, data files, a web app folder, links. */
function userDir(): Promise<string> {
  return (built ??= (async () => {
    const u = scratchDir("adversarial");
    await cp(join(FIXTURE_ROOT, "llama-gqa-f32"), join(u, "model"), { recursive: true });
    await writeFile(join(u, "model", "config.json"), "{ this is not json"); // unloadable: proves the check runs first
    await writeFile(join(u, "docs.jsonl"), JSON.stringify({ id: "d0", ids: [20, 21, 7] }) + "\n");
    await writeFile(join(u, "input.jsonl"), JSON.stringify({ ids: [20, 21, 9] }) + "\n");
    await writeFile(join(u, "train.jsonl"), "{}\n");
    await writeFile(join(u, "db.jsonl"), "{}\n");
    await mkdir(join(u, "webapp"));
    await writeFile(join(u, "webapp", "manifest.json"), JSON.stringify({ name: "my app", start_url: "/" }));
    await writeFile(join(u, "webapp", "index.html"), "<!doctype html><title>mine</title>");
    await mkdir(join(u, "hfmodel"));
    await writeFile(join(u, "hfmodel", "config.json"), "{}");
    await writeFile(join(u, "hfmodel", "model-00001-of-00002.safetensors"), "not ours");
    await writeFile(join(u, "notes.txt"), "precious notes");
    await writeFile(join(u, "results.jsonl"), `{"mine": true}\n`);
    await mkdir(join(u, "ix"));
    await symlink(join(u, "model"), join(u, "link-to-model"));
    await symlink(join(u, "input.jsonl"), join(u, "link-to-input"));
    return u;
  })());
}

/** Runs one refused command and checks exit 2, one stderr line naming `flag` and matching `rule`, files intact. */
async function refused(what: string, args: string[], flag: string, rule: RegExp): Promise<void> {
  const u = await userDir();
  const before = await snapshot(u);
  const t0 = performance.now();
  const r = run(...args);
  const ms = performance.now() - t0;
  const err = r.stderr.trim();
  assert.is(r.status, 2, `${what}: exit ${r.status}; stderr: ${err}`);
  assert.is(err.split("\n").length, 1, `${what}: one line on stderr, got:\n${err}`);
  assert.ok(err.includes(`${flag} '`), `${what}: names ${flag}: ${err}`);
  assert.match(err, rule, `${what}: ${err}`);
  assert.not.match(err, /\bat .*\.js:\d+/, `${what}: no stack trace`);
  assert.ok(ms < 30_000, `${what}: refused in ${ms.toFixed(0)} ms`);
  assert.equal(await snapshot(u), before, `${what}: the user's files are byte-identical`);
}

test("onegen index --out: look-alike manifest.json, inputs (symlink, `..`, inside, holding), file, missing or file parent", async () => {
  const u = await userDir();
  const base = ["index", "--model", join(u, "model"), "--docs", join(u, "docs.jsonl"), "--doc-token", "#7", "--quiet"];
  await refused("web app folder", [...base, "--out", join(u, "webapp")], "--out", /non-empty directory that onegen did not write \(no manifest\.json with "format": "onegen-index"\)/);
  await refused("symlink to the model", [...base, "--out", join(u, "link-to-model")], "--out", /is the --model input/);
  await refused("`..` to the model", [...base, "--out", `${u}/link-to-model/../model`], "--out", /is the --model input/);
  await refused("inside the model", [...base, "--out", join(u, "model", "index")], "--out", /lies inside the --model directory/);
  await refused("holding the inputs", [...base, "--out", u], "--out", /holds the --model input/);
  await refused("the docs file", [...base, "--out", join(u, "docs.jsonl")], "--out", /is the --docs input/);
  await refused("a file", [...base, "--out", join(u, "notes.txt")], "--out", /is a file.*a directory is needed/);
  await refused("missing parent", [...base, "--out", join(u, "no", "such", "ix")], "--out", /its directory '.*no[/\\]such' does not exist/);
  await refused("parent is a file", [...base, "--out", join(u, "notes.txt", "ix")], "--out", /'.*notes\.txt' is not a directory/);
});

test("onegen train --out/--log: a symlink to --model, inside it, a foreign model dir, a file, the data files, missing dirs", async () => {
  const u = await userDir();
  const base = ["train", "--model", join(u, "model"), "--train", join(u, "train.jsonl"), "--db", join(u, "db.jsonl"), "--steps", "1", "--quiet"];
  await refused("out = symlink to model", [...base, "--out", join(u, "link-to-model")], "--out", /is the --model input/);
  await refused("out inside model", [...base, "--out", join(u, "model", "trained")], "--out", /lies inside the --model directory/);
  await refused("out = a foreign HF dir", [...base, "--out", join(u, "hfmodel")], "--out", /did not write \(no onegen-output\.json of kind "model"\)/);
  await refused("out = web app dir", [...base, "--out", join(u, "webapp")], "--out", /did not write/);
  await refused("out = a file", [...base, "--out", join(u, "notes.txt")], "--out", /is a file.*a directory is needed/);
  await refused("out holds the data", [...base, "--out", u], "--out", /holds the --model input/);
  await refused("out in a missing dir", [...base, "--out", join(u, "no", "out")], "--out", /does not exist/);
  await refused("log = train data", [...base, "--out", join(u, "new-out"), "--log", join(u, "train.jsonl")], "--log", /is the --train input/);
  await refused("log = a foreign file", [...base, "--out", join(u, "new-out"), "--log", join(u, "notes.txt")], "--log", /not an onegen train-log file/);
  await refused("log in a missing dir", [...base, "--out", join(u, "new-out"), "--log", join(u, "no", "log.jsonl")], "--log", /does not exist/);
  await refused("log = a dir", [...base, "--out", join(u, "new-out"), "--log", join(u, "webapp")], "--log", /is a directory.*a file is needed/);
  await refused("out inside a checkpoint given to --resume", [...base, "--out", join(u, "ix", "out"), "--resume", join(u, "ix")], "--out", /lies inside the --resume directory/);
});

test("onegen run --out/--trace: the input (through a symlink), a foreign results file, missing dirs, a directory, the same path twice", async () => {
  const u = await userDir();
  const base = ["run", "--model", join(u, "model"), "--index", join(u, "ix"), "--task", "entity-linking", "--input", join(u, "link-to-input"), "--quiet"];
  await refused("out = input (via the link)", [...base, "--out", join(u, "input.jsonl")], "--out", /is the --input input/);
  await refused("trace = input", [...base, "--trace", join(u, "link-to-input")], "--trace", /is the --input input/);
  await refused("out = a foreign JSONL", [...base, "--out", join(u, "results.jsonl")], "--out", /not an onegen run-results file/);
  await refused("out in a missing dir", [...base, "--out", join(u, "no", "r.jsonl")], "--out", /does not exist/);
  await refused("trace in a missing dir", [...base, "--trace", join(u, "no", "t.json")], "--trace", /does not exist/);
  await refused("trace = a dir", [...base, "--trace", join(u, "webapp")], "--trace", /is a directory/);
  await refused("trace inside the index", [...base, "--trace", join(u, "ix", "t.json")], "--trace", /lies inside the --index directory/);
  await refused("out = trace", [...base, "--out", join(u, "o.json"), "--trace", join(u, "o.json")], "--out", /same path as --trace/);
});

test("onegen forward --out and onegen bench --out: an input weight file, a foreign safetensors or results file, a file as the folder", async () => {
  const u = await userDir();
  const base = ["forward", "--model", join(u, "model"), "--ids", "1,2", "--quiet"];
  await refused("out = the model's weights", [...base, "--out", join(u, "model", "model.safetensors")], "--out", /is the --model input|lies inside the --model/);
  await refused("out = a foreign safetensors", [...base, "--out", join(u, "hfmodel", "model-00001-of-00002.safetensors")], "--out", /not an onegen forward file/);
  await refused("out = a dir", [...base, "--out", join(u, "webapp")], "--out", /is a directory/);
  await refused("out in a missing dir", [...base, "--out", join(u, "no", "f.safetensors")], "--out", /does not exist/);
  await refused("bench out = a file", ["bench", "--quick", "--out", join(u, "notes.txt")], "--out", /is a file: a directory is needed/);
  await writeFile(join(u, "webapp", "latest-quick.json"), JSON.stringify({ mine: 1 }));
  await refused("bench: a foreign latest-quick.json", ["bench", "--quick", "--out", join(u, "webapp")], "--out", /not an onegen bench-results file/);
  await rm(join(u, "webapp", "latest-quick.json"));
});

test("library API: saveIndex and saveModelDir refuse a look-alike or foreign directory and the source model", async () => {
  const u = await userDir();
  const ctx = await gpu();
  const before = await snapshot(u);
  const ix = DocumentIndex.create(ctx, 64, { model: null });
  await assertRejects(() => saveIndex(ix, join(u, "webapp")), UsageError, [/saveIndex: dir '.*webapp' is a non-empty directory that onegen did not write/], "saveIndex into a web app");
  await assertRejects(() => saveIndex(ix, join(u, "link-to-model")), UsageError, [/did not write/], "saveIndex over a model");
  ix.dispose();
  const good = join(u, "good-model");
  await cp(join(FIXTURE_ROOT, "llama-gqa-f32"), good, { recursive: true });
  const m = await loadDecoder(ctx, good, { noTokenizer: true });
  const snap = await snapshot(u);
  await assertRejects(() => saveModelDir(m.decoder, null, join(u, "hfmodel"), { sourceDir: good }), UsageError, [/saveModelDir: outDir '.*hfmodel' is a non-empty directory that onegen did not write/], "foreign HF dir");
  await assertRejects(() => saveModelDir(m.decoder, null, good, { sourceDir: good }), UsageError, [/is the sourceDir input/], "over its source");
  await assertRejects(() => saveModelDir(m.decoder, null, join(good, "out"), { sourceDir: good }), UsageError, [/lies inside the sourceDir directory/], "inside its source");
  assert.equal(await snapshot(u), snap, "files intact");
  m.dispose();
  await rm(good, { recursive: true, force: true });
  assert.equal(await snapshot(u), before);
  await rm(u, { recursive: true, force: true }); // the last test: the user's folder is no longer needed
});

test.run();
