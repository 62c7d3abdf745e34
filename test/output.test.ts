// src/io/output.ts on its own (no GPU): the up-front check (realpath through symlinks and `..`,
// inputs equal to / inside / holding the output, format tags against look-alike names, empty and
// foreign directories, file vs directory, missing or non-directory parents), atomic file and
// directory writes (no leftovers, hard-linked carry-over, failures leave the old output), and
// recovery of what a crashed swap leaves (old copy restored, dead temporaries removed, untagged
// look-alikes named and left alone).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../src/errors.js";
import { assertRejects } from "./helpers/check.js";
import { checkOutput, checkOutputs, fileIsOurs, outputTag, recoverIn, recoverOutput, resolveReal, writeDirAtomic, writeFileAtomic, OUTPUT_TAG_FILE } from "../src/io/output.js";
import { writeSafetensors } from "../src/io/safetensors-write.js";
import { scratchDir } from "./helpers/scratch.js";

async function tmp(): Promise<string> {
  return scratchDir("output");
}

/** A dead PID: a child that has exited. */
async function deadPid(): Promise<number> {
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

test("resolveReal: symlinks resolved before `..`, missing tails appended to the nearest existing ancestor", async () => {
  const root = await tmp();
  await mkdir(join(root, "a", "b", "c"), { recursive: true });
  await symlink(join(root, "a", "b", "c"), join(root, "ln"));
  // ln/.. is a/b (the real parent), not root (the lexical one); path.join would fold it, so plain text
  assert.equal(await resolveReal(`${root}/ln/../x`), { real: join(root, "a", "b", "x"), exists: false });
  assert.equal(await resolveReal(join(root, "ln")), { real: join(root, "a", "b", "c"), exists: true });
  assert.equal(await resolveReal(`${root}/no/such/../y`), { real: join(root, "no", "y"), exists: false });
  await symlink(join(root, "gone"), join(root, "dangling"));
  await assertRejects(() => resolveReal(join(root, "dangling")), UsageError, [/symlink to a missing path/], "dangling symlink");
  await rm(root, { recursive: true, force: true });
});

test("checkOutput: inputs (same path through a symlink or `..`, inside an input dir, holding an input), hard links", async () => {
  const root = await tmp();
  const model = join(root, "model");
  await mkdir(model);
  await writeFile(join(model, "config.json"), "{}");
  await writeFile(join(root, "docs.jsonl"), "{}\n");
  await symlink(model, join(root, "link"));
  const inputs = [{ flag: "--model", path: model }, { flag: "--docs", path: join(root, "docs.jsonl") }];
  const bad = async (path: string, kind: "index" | "trace", re: RegExp) => assertRejects(() => checkOutput({ flag: "--out", path, kind }, inputs), UsageError, [/^--out '/, re], path);
  await bad(join(root, "link"), "index", /is the --model input/);
  await bad(`${root}/link/../model`, "index", /is the --model input/); // link/.. is root (model's parent)
  await bad(join(root, "link", "sub"), "index", /lies inside the --model directory/);
  await bad(root, "index", /holds the --model input/);
  await bad(join(root, "docs.jsonl"), "trace", /is the --docs input/);
  const { link } = await import("node:fs/promises");
  await link(join(root, "docs.jsonl"), join(root, "hard.jsonl"));
  await bad(join(root, "hard.jsonl"), "trace", /is the --docs input/);
  // a fresh sibling is fine, and comes back canonical (through the symlinked parent)
  assert.is(await checkOutput({ flag: "--out", path: join(root, "fresh"), kind: "index" }, inputs), join(root, "fresh"));
  // two outputs of one command may not share a path
  await assertRejects(
    () => checkOutputs([{ flag: "--out", path: join(root, "o.jsonl"), kind: "run-results" }, { flag: "--trace", path: join(root, ".", "o.jsonl"), kind: "trace" }], []),
    UsageError,
    [/is the same path as/],
    "two outputs",
  );
  await rm(root, { recursive: true, force: true });
});

test("checkOutput: the target is absent, empty or tagged as ours; a look-alike name is not a tag", async () => {
  const root = await tmp();
  const chk = (path: string, kind: Parameters<typeof checkOutput>[0]["kind"]) => checkOutput({ flag: "--out", path, kind });
  // empty directory, absent path: fine
  await mkdir(join(root, "empty"));
  await chk(join(root, "empty"), "index");
  await chk(join(root, "absent"), "model");
  // a web app's manifest.json is not an index
  await mkdir(join(root, "webapp"));
  await writeFile(join(root, "webapp", "manifest.json"), JSON.stringify({ name: "my app", icons: [] }));
  await writeFile(join(root, "webapp", "index.html"), "<html></html>");
  await assertRejects(() => chk(join(root, "webapp"), "index"), UsageError, [/--out '.*webapp' is a non-empty directory that onegen did not write \(no manifest\.json with "format": "onegen-index"\)/], "look-alike manifest");
  // a real index manifest (format parsed) is ours
  await mkdir(join(root, "ix"));
  await writeFile(join(root, "ix", "manifest.json"), JSON.stringify({ format: "onegen-index", version: 1 }));
  await chk(join(root, "ix"), "index");
  // the tag file marks a model directory; an index is not a model directory
  await mkdir(join(root, "m"));
  await writeFile(join(root, "m", OUTPUT_TAG_FILE), outputTag("model"));
  await writeFile(join(root, "m", "config.json"), "{}");
  await chk(join(root, "m"), "model");
  await assertRejects(() => chk(join(root, "ix"), "model"), UsageError, [/is an onegen index directory, not a model directory/], "kind mismatch");
  // a model directory somebody else wrote (config.json, no tag)
  await mkdir(join(root, "hf"));
  await writeFile(join(root, "hf", "config.json"), "{}");
  await assertRejects(() => chk(join(root, "hf"), "model"), UsageError, [/did not write/], "foreign model dir");
  // file vs directory
  await writeFile(join(root, "f.txt"), "user data");
  await assertRejects(() => chk(join(root, "f.txt"), "model"), UsageError, [/is a file.*: a directory is needed/], "file where a dir is needed");
  await assertRejects(() => chk(join(root, "webapp"), "trace"), UsageError, [/is a directory.*: a file is needed/], "dir where a file is needed");
  // existing files: empty is fine, ours by tag, foreign refused
  await writeFile(join(root, "empty.json"), "");
  await chk(join(root, "empty.json"), "trace");
  await assertRejects(() => chk(join(root, "f.txt"), "trace"), UsageError, [/exists and is not an onegen trace file/], "foreign file");
  await writeFile(join(root, "t.json"), JSON.stringify({ format: "onegen-trace", version: 1, ids: [] }));
  await chk(join(root, "t.json"), "trace");
  await writeFile(join(root, "t2.json"), JSON.stringify({ ids: [], format: "onegen-trace" }));
  assert.is(await fileIsOurs(join(root, "t2.json"), "trace"), false, "the tag is the first key");
  await writeFile(join(root, "r.jsonl"), `{"format":"onegen-run","task":"x"}\n{"format":"onegen-run","task":"y"}\n`);
  await chk(join(root, "r.jsonl"), "run-results");
  await writeFile(join(root, "r2.jsonl"), `{"format":"onegen-run"}\n{"task":"y"}\n`);
  await assertRejects(() => chk(join(root, "r2.jsonl"), "run-results"), UsageError, [/lines lack "format": "onegen-run"/], "one foreign line");
  await writeFile(join(root, "log.jsonl"), `{"format":"onegen-train-log","step":1}\n{"format":"onegen-tr`); // cut by a crash mid-append
  await chk(join(root, "log.jsonl"), "train-log");
  await writeFile(join(root, "fw.safetensors"), writeSafetensors({ x: { dtype: "F32", shape: [1], data: new Float32Array(1) } }, { format: "onegen-forward" }));
  await chk(join(root, "fw.safetensors"), "forward");
  await writeFile(join(root, "pt.safetensors"), writeSafetensors({ x: { dtype: "F32", shape: [1], data: new Float32Array(1) } }, { format: "pt" }));
  await assertRejects(() => chk(join(root, "pt.safetensors"), "forward"), UsageError, [/not an onegen forward file/], "foreign safetensors");
  // the parent: missing, a file
  await assertRejects(() => chk(join(root, "nope", "x.json"), "trace"), UsageError, [/cannot be written: its directory '.*nope' does not exist/], "missing parent");
  await assertRejects(() => chk(join(root, "f.txt", "x.json"), "trace"), UsageError, [/cannot be written: '.*f\.txt' is not a directory/], "parent is a file");
  // every message is one line
  try {
    await chk(join(root, "webapp"), "index");
  } catch (e) {
    assert.not.ok((e as Error).message.includes("\n"));
  }
  await rm(root, { recursive: true, force: true });
});

test("checkOutput: an unwritable directory is refused (skipped as root, who may write anywhere)", async () => {
  if (process.getuid?.() === 0) return; // root passes access(W_OK) everywhere; the parent-is-a-file case above covers the path
  const root = await tmp();
  const { chmod } = await import("node:fs/promises");
  await mkdir(join(root, "ro"));
  await chmod(join(root, "ro"), 0o555);
  await assertRejects(() => checkOutput({ flag: "--trace", path: join(root, "ro", "t.json"), kind: "trace" }), UsageError, [/--trace '.*' cannot be written: no permission/], "read-only dir");
  await chmod(join(root, "ro"), 0o755);
  await rm(root, { recursive: true, force: true });
});

test("writeFileAtomic / writeDirAtomic: no leftovers, the tag written, a failure leaves the old output, kept entries hard-linked", async () => {
  const root = await tmp();
  const f = join(root, "r.jsonl");
  await writeFileAtomic(f, "run-results", `{"format":"onegen-run","n":1}\n`, { flag: "--out" });
  await writeFileAtomic(f, "run-results", `{"format":"onegen-run","n":2}\n`, { flag: "--out" });
  assert.is(await readFile(f, "utf8"), `{"format":"onegen-run","n":2}\n`);
  await assertRejects(() => writeFileAtomic(f, "run-results", async () => { throw new Error("injected"); }, { flag: "--out" }), Error, [/injected/], "failing writer");
  assert.is(await readFile(f, "utf8"), `{"format":"onegen-run","n":2}\n`, "old file intact");
  assert.equal((await readdir(root)).sort(), ["r.jsonl"], "no temporary left");

  const d = join(root, "m");
  await writeDirAtomic(d, "model", async (w) => {
    await w.writeFile("config.json", "{}");
    await w.mkdir("checkpoints");
    await w.writeFile("checkpoints/keep.bin", "ckpt");
  });
  assert.equal(JSON.parse(await readFile(join(d, OUTPUT_TAG_FILE), "utf8")).kind, "model");
  await writeFile(join(d, "notes.txt"), "the user's notes");
  const before = await stat(join(d, "checkpoints", "keep.bin"));
  await writeDirAtomic(d, "model", async (w) => w.writeFile("config.json", `{"v":2}`), { keep: (n) => n !== "config.json" });
  assert.equal((await readdir(d)).sort(), ["checkpoints", "config.json", "notes.txt", OUTPUT_TAG_FILE].sort());
  assert.is(await readFile(join(d, "notes.txt"), "utf8"), "the user's notes");
  assert.is((await stat(join(d, "checkpoints", "keep.bin"))).ino, before.ino, "carried over by a hard link");
  await assertRejects(() => writeDirAtomic(d, "model", async () => { throw new Error("injected"); }), Error, [/injected/], "failing fill");
  assert.is(await readFile(join(d, "config.json"), "utf8"), `{"v":2}`);
  assert.equal((await readdir(root)).sort(), ["m", "r.jsonl"], "no temporary left");
  await assertRejects(() => writeDirAtomic(d, "model", async (w) => w.writeFile("../escape", "x")), UsageError, [/bad file name/], "names stay inside");
  // an empty directory is replaced by the rename itself
  await mkdir(join(root, "e"));
  await writeDirAtomic(join(root, "e"), "adapter", async (w) => w.writeFile("adapter_config.json", "{}"));
  assert.equal((await readdir(join(root, "e"))).sort(), ["adapter_config.json", OUTPUT_TAG_FILE]);
  await rm(join(root, "e"), { recursive: true });
  await rm(root, { recursive: true, force: true });
});

test("recovery: an old copy is restored when the target is missing; dead temporaries removed; untagged look-alikes named and kept", async () => {
  const root = await tmp();
  const dead = await deadPid();
  // a crash between the two renames of a swap: only .ix.old-… is left
  const old = join(root, `.ix.old-${dead}-abc`);
  await mkdir(old);
  await writeFile(join(old, "manifest.json"), JSON.stringify({ format: "onegen-index", version: 1 }));
  await mkdir(join(root, `.ix.tmp-${dead}-abd`));
  await writeFile(join(root, `.ix.tmp-${dead}-abd`, OUTPUT_TAG_FILE), outputTag("index"));
  const notes: string[] = [];
  await recoverOutput(join(root, "ix"), { onNote: (n) => notes.push(n) });
  assert.equal((await readdir(root)).sort(), ["ix"]);
  assert.ok(notes.some((n) => /restored '.*ix'/.test(n)), notes.join("; "));
  // a crash after the new one was renamed in: the old copy is removed
  await mkdir(join(root, `.ix.old-${dead}-abe`));
  await writeFile(join(root, `.ix.old-${dead}-abe`, OUTPUT_TAG_FILE), outputTag("index"));
  await writeFile(join(root, `.t.json.tmp-${dead}-abf`), "partial");
  await recoverIn(root, undefined, { onNote: () => undefined });
  assert.equal((await readdir(root)).sort(), ["ix"]);
  // a look-alike without our tag is named, never removed
  await mkdir(join(root, `.data.old-${dead}-abg`));
  await writeFile(join(root, `.data.old-${dead}-abg`, "precious.txt"), "mine");
  await mkdir(join(root, `.data.tmp-${dead}-abh`));
  await writeFile(join(root, `.data.tmp-${dead}-abh`, "precious.txt"), "mine");
  const left: string[] = [];
  await recoverIn(root, undefined, { onNote: (n) => left.push(n) });
  assert.is(left.length, 2, left.join("; "));
  assert.ok(left.every((n) => /left '.*' in place/.test(n)));
  assert.is(await readFile(join(root, `.data.old-${dead}-abg`, "precious.txt"), "utf8"), "mine");
  // a temporary of a live process (this one) is left alone
  await writeFile(join(root, `.u.json.tmp-${process.pid}-abi`), "in progress");
  await recoverIn(root, undefined, { onNote: () => undefined });
  assert.ok((await readdir(root)).includes(`.u.json.tmp-${process.pid}-abi`));
  await rm(root, { recursive: true, force: true });
});

test.run();
