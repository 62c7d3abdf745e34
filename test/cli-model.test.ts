// The model commands end to end through the CLI binary: forward, generate (and their errors).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURE_ROOT, readGolden, relL2 } from "./helpers/golden.js";
import { openFileSource } from "../src/io/source.js";
import { SafetensorsFile, toF32 } from "../src/io/safetensors.js";
import { scratchDir } from "./helpers/scratch.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "dist", "src", "cli.js");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
const MODEL = join(FIXTURE_ROOT, "qwen2-bias-tied-f16");
const tmp = scratchDir("cli");

test("forward writes logits and hidden states that match the golden reference", async () => {
  const golden = await readGolden("qwen2-bias-tied-f16");
  const out = join(tmp, "fwd.safetensors");
  const r = run("forward", "--model", MODEL, "--ids", golden.ids.join(","), "--out", out, "--quiet");
  assert.is(r.status, 0, r.stderr);
  const f = await SafetensorsFile.open(await openFileSource(out));
  const logits = await f.readTensor("logits");
  const hidden = await f.readTensor("hidden");
  assert.equal(logits.info.shape, [golden.ids.length, golden.vocab]);
  assert.equal(hidden.info.shape, [golden.ids.length, golden.hiddenSize]);
  assert.is(logits.info.dtype, "F32");
  assert.ok(relL2(toF32(logits.data, "F32"), golden.logits, golden.vocab) < 5e-3);
  assert.ok(relL2(toF32(hidden.data, "F32"), golden.hidden, golden.hiddenSize) < 5e-3);
  await f.close();
});

test("generate --json prints ids, text and stats; same seed, same output", () => {
  const args = ["generate", "--model", MODEL, "--ids", "1,2,3,4", "--max-new-tokens", "9", "--json", "--quiet"];
  const a = run(...args, "--temperature", "0.8", "--seed", "5");
  assert.is(a.status, 0, a.stderr);
  const ja = JSON.parse(a.stdout) as { ids: number[]; text: string | null; stats: Record<string, unknown> };
  assert.is(ja.ids.length, 9);
  assert.is(ja.text, null, "no tokenizer in the fixture: no text");
  assert.ok(typeof ja.stats.decode_tokens_per_s === "number" && (ja.stats.decode_tokens_per_s as number) > 0);
  assert.ok(typeof ja.stats.prefill_tokens_per_s === "number");
  const b = JSON.parse(run(...args, "--temperature", "0.8", "--seed", "5").stdout) as { ids: number[] };
  assert.equal(b.ids, ja.ids);
  const greedy = JSON.parse(run(...args).stdout) as { ids: number[] };
  assert.is(greedy.ids.length, 9);
});

test("errors: --prompt without a tokenizer, ids out of the vocabulary, prompt over the context", () => {
  const noTok = run("generate", "--model", MODEL, "--prompt", "hello", "--quiet");
  assert.is(noTok.status, 2);
  assert.match(noTok.stderr, /needs a tokenizer.*no tokenizer\.json/);
  const oov = run("generate", "--model", MODEL, "--ids", "1,2,99999", "--quiet");
  assert.is(oov.status, 2);
  assert.match(oov.stderr, /99999 is out of the vocabulary/);
  const long = run("generate", "--model", MODEL, "--ids", "1,2,3,4,5,6", "--context", "4", "--quiet");
  assert.is(long.status, 2);
  assert.match(long.stderr, /exceed the context of 4/);
  const noModel = run("forward", "--ids", "1", "--out", join(tmp, "x"));
  assert.is(noModel.status, 2);
  assert.match(noModel.stderr, /--model/);
  const missingDir = run("forward", "--model", join(tmp, "nope"), "--ids", "1", "--out", join(tmp, "x"), "--quiet");
  assert.is(missingDir.status, 1);
  assert.match(missingDir.stderr, /nope/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
