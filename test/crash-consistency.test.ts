// Crash consistency of every save (issue 15): `onegen index`, the final model save of
// `onegen train` and its checkpoint saves run in a child process that kills itself with SIGKILL
// at a named point of the save (ONEGEN_TEST_CRASH_AT=POINT@KIND[#N], src/io/output.ts crashPoint):
//   tmp-partial  the temporary directory holds only its tag
//   tmp-written  the temporary is complete, nothing renamed yet
//   old-aside    the previous output renamed aside, the new one not yet in place (NAME missing)
//   new-in       the new output in place, the previous one not yet removed
// Afterwards the old output (before new-in) or the new one (at new-in) must load through the
// ordinary loaders (loadIndex, loadDecoder, readCheckpoint, `onegen train --resume`), which
// recover an interrupted swap, and no temporary of the crashed run may be left behind.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { cp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURE_ROOT } from "./helpers/golden.js";
import { gpu } from "./helpers/gpu.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { loadDecoder } from "../src/model/load.js";
import { readCheckpoint } from "../src/train/trainer.js";
import { toyTask, writeToyModelDir } from "./fixtures/train-data/toy.js";
import { scratchDir } from "./helpers/scratch.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(repo, "dist", "src", "cli.js");
function run(args: string[], crashAt?: string) {
  const env: Record<string, string | undefined> = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" };
  delete env.ONEGEN_TEST_CRASH_AT;
  if (crashAt) env.ONEGEN_TEST_CRASH_AT = crashAt;
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000, env });
}
function crashed(r: ReturnType<typeof run>, what: string): void {
  assert.is(r.signal, "SIGKILL", `${what}: the child should have been killed at the crash point (status ${r.status}, stderr ${r.stderr.slice(-500)})`);
}
function ok(r: ReturnType<typeof run>, what: string): void {
  assert.is(r.status, 0, `${what}: status ${r.status} signal ${r.signal}; stderr ${r.stderr.slice(-800)}`);
}
/** Entries of `dir` left by saves of `name` (temporaries and old copies). */
async function leftovers(dir: string, name: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith(`.${name}.`));
}
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

const MODEL = join(FIXTURE_ROOT, "llama-gqa-f32");
const DOC = 7;
const docs = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ id: `${prefix}${i}`, ids: [20 + i, 30 + i, 40, DOC] })).join("\n") + "\n";

test("onegen index killed at every point of the save: the old or the new index loads, no temporary is left", async () => {
  const root = scratchDir("crash-index");
  await writeFile(join(root, "a.jsonl"), docs("a", 3));
  await writeFile(join(root, "b.jsonl"), docs("b", 5));
  const args = (d: string, out: string) => ["index", "--model", MODEL, "--docs", join(root, d), "--out", out, "--doc-token", `#${DOC}`, "--quiet"];
  ok(run(args("a.jsonl", join(root, "base"))), "first index");
  const ctx = await gpu();
  const m = await loadDecoder(ctx, MODEL);
  const ids = async (dir: string) => {
    const ix = await loadIndex(ctx, dir, m.decoder);
    const r = ix.documents.map((d) => d.id);
    ix.dispose();
    return r;
  };
  const A = ["a0", "a1", "a2"];
  const B = ["b0", "b1", "b2", "b3", "b4"];
  for (const [point, want] of [["tmp-partial", A], ["tmp-written", A], ["old-aside", A], ["new-in", B]] as const) {
    const out = join(root, `ix-${point}`);
    await cp(join(root, "base"), out, { recursive: true });
    crashed(run(args("b.jsonl", out), `${point}@index`), point);
    const left = await leftovers(root, `ix-${point}`);
    assert.ok(left.length > 0, `${point}: the crash left its temporaries (the point was reached)`);
    if (point === "old-aside") assert.equal((await readdir(root)).includes(`ix-${point}`), false, "old-aside: the index is missing until recovered");
    assert.equal(await ids(out), [...want], `${point}: the ${want === A ? "old" : "new"} index loads`);
    assert.equal(await leftovers(root, `ix-${point}`), [], `${point}: nothing left behind after recovery`);
  }
  // a crash during a first save leaves no index (there was none) and nothing that blocks the next save
  crashed(run(args("a.jsonl", join(root, "fresh")), "tmp-written@index"), "first save");
  ok(run(args("b.jsonl", join(root, "fresh"))), "save after the crash");
  assert.equal(await ids(join(root, "fresh")), B);
  assert.equal(await leftovers(root, "fresh"), []);
  m.dispose();
  await rm(root, { recursive: true, force: true });
});

test("onegen train killed during the final save and during a checkpoint save: old or new model loads, checkpoints survive, resume finishes the run", async () => {
  const root = scratchDir("crash-train");
  const model = join(root, "model");
  await writeToyModelDir(model, { D: 16, L: 1, H: 2, Hkv: 1, F: 32 }, 5);
  const task = toyTask(4, 1, 3);
  await writeFile(join(root, "train.jsonl"), task.train);
  await writeFile(join(root, "db.jsonl"), task.db);
  const args = (out: string, seed: number, extra: string[] = []) => [
    "train", "--model", model, "--train", join(root, "train.jsonl"), "--db", join(root, "db.jsonl"), "--out", out,
    "--lora", "2", "--steps", "2", "--save-every", "1", "--lr", "5e-3", "--seed", String(seed), "--max-length", "32", "--quiet", ...extra,
  ];
  const base = join(root, "out-base");
  ok(run(args(base, 1)), "run A");
  const weightsA = await readFile(join(base, "model.safetensors"));
  const adapterA = await readFile(join(base, "adapter", "adapter_model.safetensors"));
  const ctx = await gpu();

  // Final save of run B (seed 2) over A's output.
  for (const point of ["tmp-written", "old-aside", "new-in"] as const) {
    const out = join(root, `out-${point}`);
    await cp(base, out, { recursive: true });
    crashed(run(args(out, 2), `${point}@model`), `final save ${point}`);
    assert.ok((await leftovers(root, `out-${point}`)).length > 0, `${point}: the point was reached`);
    const loaded = await loadDecoder(ctx, out); // recovers first
    loaded.dispose();
    const w = await readFile(join(out, "model.safetensors"));
    const ad = await readFile(join(out, "adapter", "adapter_model.safetensors"));
    if (point === "new-in") {
      assert.not.ok(same(w, weightsA), "new-in: the new model is in place");
      assert.not.ok(same(ad, adapterA), "new-in: with its new adapters");
    } else {
      assert.ok(same(w, weightsA), `${point}: the old model is intact`);
      assert.ok(same(ad, adapterA), `${point}: the old adapters are intact`);
    }
    // B's checkpoints (written before the final save) are there in every case: the run is not lost
    const ck = await readCheckpoint(join(out, "checkpoints", "step-2"));
    assert.is(ck.state.step, 2);
    assert.is(ck.state.options.seed, 2, `${point}: the checkpoints of the crashed run survive`);
    assert.equal(await leftovers(root, `out-${point}`), [], `${point}: nothing left behind`);
  }

  // A first run killed in its final save: the checkpoints remain and --resume completes it exactly.
  const first = join(root, "out-first");
  // (#2: the first "model" save creates OUT with its tag before the first checkpoint)
  crashed(run(args(first, 1), "tmp-written@model#2"), "first run, final save");
  assert.equal((await readdir(first)).sort(), ["checkpoints", "onegen-output.json"]);
  ok(run(args(first, 1, ["--resume", first])), "resume after the crash");
  assert.ok(same(await readFile(join(first, "model.safetensors")), weightsA), "the resumed run saves A's model, bit for bit");
  assert.equal(await leftovers(root, "out-first"), []);

  // Checkpoint save: run A again over its own output, killed while replacing checkpoints/step-1.
  for (const point of ["tmp-written", "old-aside", "new-in"] as const) {
    const out = join(root, `ck-${point}`);
    await cp(base, out, { recursive: true });
    crashed(run(args(out, 1), `${point}@checkpoint`), `checkpoint ${point}`);
    const cdir = join(out, "checkpoints");
    assert.ok((await leftovers(cdir, "step-1")).length > 0, `${point}: the point was reached`);
    const ck = await readCheckpoint(join(cdir, "step-1")); // recovers first
    assert.is(ck.state.step, 1, `${point}: step-1 loads`);
    assert.equal(await leftovers(cdir, "step-1"), [], `${point}: nothing left behind`);
    assert.ok(same(await readFile(join(out, "model.safetensors")), weightsA), `${point}: the previous model is untouched`);
    if (point === "old-aside") {
      // the restored checkpoint resumes to the same model
      await rm(join(cdir, "step-2"), { recursive: true });
      ok(run(args(out, 1, ["--resume", out])), "resume from the recovered checkpoint");
      assert.ok(same(await readFile(join(out, "model.safetensors")), weightsA), "resumed from step 1: A's model, bit for bit");
    }
  }
  await rm(root, { recursive: true, force: true });
});

test.run();
