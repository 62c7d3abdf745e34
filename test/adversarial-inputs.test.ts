// Adversarial inputs (issue 15, points 2 and 4): sizes read from files, CLI numbers and the
// memory budget, for every command and through the library API. Each case crafts its input in a
// temp dir from the tiny fixtures and asserts the exit code (1 bad input, 2 usage), that the
// error names the file/field/flag and the rule, that it ends in bounded time and without a big
// allocation (the child's max RSS, measured by process.resourceUsage() at exit), and that the
// user's files are byte-identical afterwards (SHA-256 of every file).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, readFile, readdir, rm, stat, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gpu } from "./helpers/gpu.js";
import { openDevice } from "../src/gpu/device.js";
import { cgroupAvailable, defaultMemoryBudget, DEFAULT_GPU_BUDGET_BYTES, parseByteSize } from "../src/gpu/budget.js";
import { GpuOutOfMemoryError, LoadError, UnsupportedError } from "../src/errors.js";
import { checkWeights, CONFIG_LIMITS, parseModelConfig, type ModelConfig } from "../src/model/config.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { TrainModel, trainingStateBytes } from "../src/train/model.js";
import { parseManifest } from "../src/onegen/index-format.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import { SafetensorsFile, type SafetensorsDtype } from "../src/io/safetensors.js";
import { layoutSafetensors, writeSafetensors } from "../src/io/safetensors-write.js";
import { openFileSource } from "../src/io/source.js";
import { uploadTensor } from "../src/model/checkpoint.js";
import { toyTask, writeToyModelDir } from "./fixtures/train-data/toy.js";
import { scratchDir } from "./helpers/scratch.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = join(root, "dist", "src", "cli.js");
const FIXTURE = join(root, "test", "fixtures", "models", "llama-gqa-f32"); // D 64, L 2, V 384, 128 positions, no tokenizer
const DEMO_MODEL = join(root, "demo", "model"); // 1024 positions, tokenizer
const DEMO_INDEX = join(root, "demo", "index");

/** Reports the child's peak RSS on stderr as its last line (portable: no /usr/bin/time needed). */
const RSS_HOOK = "data:text/javascript," + encodeURIComponent("process.on('exit', () => process.stderr.write('\\nmaxrss_kb=' + process.resourceUsage().maxRSS + '\\n'));");
/** A CLI process here (Dawn, lavapipe, the demo model) peaks near 300 MB; flag-sized buffers were GBs. */
const RSS_LIMIT_KB = 1024 * 1024;

interface CliResult {
  status: number | null;
  stdout: string;
  /** stderr without Dawn's warnings, progress bars and the RSS line. */
  errors: string[];
  rssKb: number;
  ms: number;
}

function onegen(args: string[], timeoutMs = 30_000): CliResult {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["--import", RSS_HOOK, cli, ...args], { encoding: "utf8", timeout: timeoutMs, env: { ...process.env, XDG_RUNTIME_DIR: "/tmp" } });
  const ms = Date.now() - t0;
  const lines = (r.stderr ?? "").split(/[\n\r]/);
  const rss = lines.map((l) => /^maxrss_kb=(\d+)$/.exec(l)).find((m) => m !== null);
  const errors = lines.filter((l) => l.trim() !== "" && !/^Warning: /.test(l) && !/^maxrss_kb=/.test(l) && !/^\[[#-]+\] /.test(l) && !/^\s+- While /.test(l));
  return { status: r.status, stdout: r.stdout ?? "", errors, rssKb: rss ? Number(rss[1]) : Number.NaN, ms };
}

/** Exit code, a first error line matching every pattern, bounded time and memory. */
function expectRefused(r: CliResult, code: number, patterns: RegExp[], what: string): void {
  assert.is(r.status, code, `${what}: exit ${r.status}, stderr: ${r.errors.join(" | ")}`);
  const first = r.errors[0] ?? "";
  for (const p of patterns) assert.match(first, p, `${what}: '${first}' should match ${p}`);
  assert.not.match(r.errors.join("\n"), /\n\s+at /, `${what}: no stack trace`);
  bounded(r, what);
}

function bounded(r: CliResult, what: string): void {
  assert.ok(r.ms < 25_000, `${what}: took ${r.ms} ms`);
  assert.ok(Number.isFinite(r.rssKb) && r.rssKb < RSS_LIMIT_KB, `${what}: max RSS ${r.rssKb} kB`);
}

async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      if ((await stat(p)).isDirectory()) await walk(p);
      else out.set(p, createHash("sha256").update(await readFile(p)).digest("hex"));
    }
  };
  await walk(dir);
  return out;
}

async function assertUnchanged(before: Map<string, string>, dir: string, what: string): Promise<void> {
  const after = await hashTree(dir);
  assert.equal([...after.keys()], [...before.keys()], `${what}: the set of files changed`);
  for (const [p, h] of before) assert.is(after.get(p), h, `${what}: '${p}' changed`);
}

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const d = scratchDir("adversarial");
  temps.push(d);
  return d;
}
test.after(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

/** A copy of the fixture model with config.json edited. */
async function craftedModel(edit: (c: Record<string, unknown>) => void, from = FIXTURE): Promise<string> {
  const dir = join(await tempDir(), "model");
  await cp(from, dir, { recursive: true });
  const c = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  edit(c);
  await writeFile(join(dir, "config.json"), JSON.stringify(c));
  return dir;
}

// Every case also proves the bundled demo model and indexes (inputs of several cases) untouched.
const demoBefore = Promise.all([hashTree(DEMO_MODEL), hashTree(DEMO_INDEX)]);

// ==================================================================== config.json sizes and values

test("config: num_hidden_layers 1e9 is refused at once by info, generate and forward (it hung the loader)", async () => {
  const dir = await craftedModel((c) => (c.num_hidden_layers = 1_000_000_000));
  const before = await hashTree(dir);
  expectRefused(onegen(["info", "--model", dir]), 1, [/config\.json/, /'num_hidden_layers' is 1000000000/, /limit of 1024/], "info");
  expectRefused(onegen(["generate", "--model", dir, "--ids", "1,2", "--max-new-tokens", "2", "--quiet"]), 1, [/num_hidden_layers/], "generate");
  expectRefused(onegen(["forward", "--model", dir, "--ids", "1,2", "--out", join(dir, "..", "f.safetensors"), "--quiet"]), 1, [/num_hidden_layers/], "forward");
  await assertUnchanged(before, dir, "num_hidden_layers");
});

test("config: more layers than the checkpoint holds, or dims that disagree with its shapes, are refused naming both", async () => {
  const more = await craftedModel((c) => (c.num_hidden_layers = 7));
  expectRefused(onegen(["info", "--model", more]), 1, [/num_hidden_layers 7/, /holds 2 layer\(s\)/], "layers");
  const wide = await craftedModel((c) => (c.intermediate_size = 320));
  expectRefused(onegen(["generate", "--model", wide, "--ids", "1", "--quiet"]), 1, [/do not match config\.json/, /mlp\.gate_proj\.weight' expected \[320, 64\], actual \[160, 64\]/], "intermediate_size");
  const heads = await craftedModel((c) => (c.num_key_value_heads = 8));
  expectRefused(onegen(["info", "--model", heads]), 1, [/num_key_value_heads \(8\) must not exceed num_attention_heads \(4\)/], "kv heads");
});

test("config: values that overflow or underflow f32 are refused naming the field", async () => {
  const cases: [string, (c: Record<string, unknown>) => void, RegExp][] = [
    ["rms_norm_eps", (c) => (c.rms_norm_eps = 1e-60), /'rms_norm_eps' is 1e-60, which underflows f32/],
    ["rope_theta", (c) => (c.rope_theta = 1e39), /'rope_theta' is 1e\+39, which overflows f32/],
    ["rope_scaling.factor", (c) => (c.rope_scaling = { type: "linear", factor: 1e300 }), /'rope_scaling\.factor' is 1e\+300, which overflows f32/],
    ["rope_parameters.rope_theta", (c) => (c.rope_parameters = { rope_type: "default", rope_theta: 5e38 }), /'rope_parameters\.rope_theta' is 5e\+38, which overflows f32/],
  ];
  for (const [what, edit, re] of cases) {
    const dir = await craftedModel(edit);
    expectRefused(onegen(["info", "--model", dir]), 1, [/config\.json/, re], what);
  }
});

test("library: parseModelConfig bounds every size before anything is sized by it", () => {
  const base = { architectures: ["LlamaForCausalLM"], hidden_size: 64, intermediate_size: 160, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 384 };
  for (const [field, limit] of Object.entries(CONFIG_LIMITS)) {
    if (field === "sliding_window" || field === "max_window_layers" || field === "head_dim" || field === "num_key_value_heads") continue;
    const t0 = performance.now();
    assert.throws(() => parseModelConfig({ ...base, [field]: limit + 1 }), (e: Error) => e instanceof LoadError && e.message.includes(`'${field}' is ${limit + 1}, over this runtime's limit of ${limit}`), field);
    assert.ok(performance.now() - t0 < 100, field);
  }
  assert.throws(() => parseModelConfig({ ...base, head_dim: 4096 }), /'head_dim' is 4096, over this runtime's limit of 1024/);
  assert.throws(() => parseModelConfig({ ...base, architectures: ["MistralForCausalLM"], sliding_window: 2 ** 30 }), /'sliding_window' is 1073741824/);
  assert.throws(() => parseModelConfig({ ...base, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 0, high_freq_factor: 4, original_max_position_embeddings: 8192 } }), /rope_scaling\.low_freq_factor must be positive/);
  // A config claiming 1000 layers over a 2-layer checkpoint: refused before 9000 names are listed.
  const c: ModelConfig = { ...parseModelConfig(base), numLayers: 1000 };
  const shapes = new Map<string, number[]>([["model.layers.0.input_layernorm.weight", [64]], ["model.layers.1.input_layernorm.weight", [64]]]);
  assert.throws(() => checkWeights(c, shapes, "checkpoint 'x'"), /checkpoint 'x': config\.json says num_hidden_layers 1000, but the checkpoint holds 2 layer\(s\)/);
});

// ==================================================================== checkpoint: extra tensors, hostile headers

async function rewriteCheckpoint(dir: string, extra: Record<string, { dtype: SafetensorsDtype; shape: number[]; data: ArrayBufferView }>): Promise<void> {
  const f = await SafetensorsFile.open(await openFileSource(join(dir, "model.safetensors")));
  const tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; data: ArrayBufferView }> = {};
  for (const t of f.tensors) tensors[t.name] = { dtype: t.dtype, shape: [...t.shape], data: await f.readBytes(t.name) };
  await f.close();
  await writeFile(join(dir, "model.safetensors"), writeSafetensors({ ...tensors, ...extra }));
}

test("checkpoint: tensors the model does not use are reported (CLI warning line, API list), not silently ignored", async () => {
  const dir = await craftedModel(() => undefined);
  await rewriteCheckpoint(dir, {
    "score.weight": { dtype: "F32", shape: [2, 64], data: new Float32Array(128) },
    "model.layers.0.self_attn.rotary_emb.inv_freq": { dtype: "F32", shape: [8], data: new Float32Array(8) },
  });
  const before = await hashTree(dir);
  const r = onegen(["generate", "--model", dir, "--ids", "1,2", "--max-new-tokens", "1", "--quiet"]);
  assert.is(r.status, 0, r.errors.join("\n"));
  assert.ok(
    r.errors.some((l) => /warning: '.*model' holds 2 tensor\(s\) the model does not use, not loaded: .*rotary_emb\.inv_freq.*score\.weight|score\.weight.*rotary_emb/.test(l)),
    r.errors.join("\n"),
  );
  bounded(r, "unused tensors");
  const ctx = await gpu();
  const m = await loadDecoder(ctx, dir, { noTokenizer: true });
  assert.equal([...m.unusedTensors].sort(), ["model.layers.0.self_attn.rotary_emb.inv_freq", "score.weight"]);
  m.dispose();
  await assertUnchanged(before, dir, "unused tensors");
});

test("safetensors: a hostile header length or shape is refused before anything is allocated", async () => {
  const dir = await craftedModel(() => undefined);
  const file = join(dir, "model.safetensors");
  const good = await readFile(file);
  // 1. a header length of 2^40 bytes
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(2n ** 40n, 0);
  await writeFile(file, huge);
  expectRefused(onegen(["info", "--model", dir]), 1, [/model\.safetensors/, /header-too-large/], "header length");
  // 2. a header length past the end of the file
  const past = Buffer.from(good);
  past.writeBigUInt64LE(BigInt(good.length), 0);
  await writeFile(file, past);
  expectRefused(onegen(["info", "--model", dir]), 1, [/header-past-eof/], "header past eof");
  // 3. a shape whose element count overflows (2^40 × 2^40), same byte span
  const n = Number(good.readBigUInt64LE(0));
  const header = good.subarray(8, 8 + n).toString("utf8");
  const crafted = header.replace(/"model\.norm\.weight":\{"dtype":"F32","shape":\[64\]/, '"model.norm.weight":{"dtype":"F32","shape":[1099511627776,1099511627776]');
  assert.ok(crafted !== header, "the fixture's header layout changed");
  const padded = crafted.padEnd(Math.ceil(crafted.length / 8) * 8, " ");
  const out = Buffer.alloc(8 + padded.length + (good.length - 8 - n));
  out.writeBigUInt64LE(BigInt(padded.length), 0);
  out.write(padded, 8, "utf8");
  good.copy(out, 8 + padded.length, 8 + n);
  await writeFile(file, out);
  expectRefused(onegen(["info", "--model", dir]), 1, [/tensor 'model\.norm\.weight'/, /byte-length-mismatch/], "shape overflow");
});

// ==================================================================== index manifests

async function craftedIndex(edit: (m: Record<string, unknown>) => void, which = "mhqa"): Promise<string> {
  const dir = join(await tempDir(), which);
  await cp(join(DEMO_INDEX, which), dir, { recursive: true });
  const m = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as Record<string, unknown>;
  edit(m);
  await writeFile(join(dir, "manifest.json"), JSON.stringify(m));
  return dir;
}

test("index: a manifest with a huge count is refused against vectors.safetensors' shape, without a count-sized allocation", async () => {
  const big = 1e15;
  const dir = await craftedIndex((m) => {
    // count 1e15, the documents' fragments adding up to it and tiling [0, count) as the rules demand
    const docs = m.documents as { fragments: number; firstEntry: number }[];
    const rest = docs.slice(1).reduce((a, d) => a + d.fragments, 0);
    m.count = big;
    docs[0]!.firstEntry = 0;
    docs[0]!.fragments = big - rest;
    let next = big - rest;
    for (const d of docs.slice(1)) {
      d.firstEntry = next;
      next += d.fragments;
    }
  });
  const before = await hashTree(dir);
  expectRefused(onegen(["search", "--model", DEMO_MODEL, "--index", dir, "--text", "Marwick", "--quiet"]), 1, [/vectors\.safetensors/, /tensor 'vectors' is F16 \[\d+, 128\], the manifest says F16 \[1000000000000000, 128\]/], "search");
  expectRefused(onegen(["run", "--model", DEMO_MODEL, "--index", dir, "--task", "multihop-qa", "--text", "Where?", "--quiet"]), 1, [/the manifest says F16/], "run");
  await assertUnchanged(before, dir, "huge count");
  // The library: parseManifest itself allocates nothing sized by count.
  const m = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as unknown;
  const h0 = process.memoryUsage().arrayBuffers;
  parseManifest(m, "manifest.json");
  assert.ok(process.memoryUsage().arrayBuffers - h0 < 64 << 20, "parseManifest allocated a count-sized array");
});

test("index: overlapping documents are refused by the manifest check", async () => {
  const dir = await craftedIndex((m) => {
    const docs = m.documents as { firstEntry: number }[];
    docs[1]!.firstEntry = docs[0]!.firstEntry;
  });
  const m = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as unknown;
  assert.throws(() => parseManifest(m, "manifest.json"), /entry 0 belongs to two documents/);
});

test("memory: search and run plan model + index together, refused before either is loaded", async () => {
  for (const cmd of [["search", "--text", "Marwick"], ["run", "--task", "multihop-qa", "--text", "Where?"]]) {
    const r = onegen([cmd[0]!, "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "mhqa"), ...cmd.slice(1), "--gpu-memory", "3500K", "--quiet"]);
    expectRefused(r, 1, [/the model needs [\d.]+ MiB of GPU memory \(weights 3\.38 MiB \+ index '.*mhqa' [\d.]+ KiB( \+ one row-major weight while it is transformed into tiles \(transient\) [\d.]+ [KMG]iB)?\), over the budget of 3\.42 MiB \(given\); nothing was uploaded/], `${cmd[0]} model + index`);
  }
});

test("index: building one that cannot fit the budget left is refused before any forward, naming the index and the batch's KV cache", async () => {
  const root = await tempDir();
  const docs = join(root, "docs.jsonl");
  await writeFile(docs, Array.from({ length: 300 }, (_, i) => JSON.stringify({ id: `D${i}`, text: `Marwick is a city number ${i}.` })).join("\n") + "\n");
  const before = await hashTree(root);
  const out = join(root, "ix");
  // 3800K: the model fits (3.38 MiB of weights, plus one row-major weight held while the load
  // transforms it into tiles on a software adapter), the index and its batch's KV cache do not
  const r = onegen(["index", "--model", DEMO_MODEL, "--docs", docs, "--out", out, "--gpu-memory", "3800K", "--quiet"]);
  expectRefused(r, 1, [/the index of 300 entries needs \d+ bytes and the KV cache of the largest batch \(\d+ tokens, batchTokens 2048\) \d+ bytes, more than the \d+ bytes left of the GPU memory budget \(given\); nothing was encoded/], "index over budget");
  await assertUnchanged(before, root, "index over budget");
});

test("index: one larger than the memory budget left is refused naming the parts", async () => {
  const ctx = await openDevice({ memoryBudgetBytes: 3584 << 10 });
  try {
    const m = await loadDecoder(ctx, DEMO_MODEL); // 3.38 MiB of weights in a 3.5 MiB budget
    await assertRejectsWith(() => loadIndex(ctx, join(DEMO_INDEX, "mhqa"), m.decoder), LoadError, [/index '.*mhqa' needs \d+ bytes of GPU memory \(vectors \d+, tables \d+\)/, /bytes are in use \(the model and caches\) of the budget of 3670016 \(given\)/]);
    m.dispose();
  } finally {
    ctx.destroy();
  }
});

async function assertRejectsWith(fn: () => Promise<unknown>, cls: new (...a: never[]) => Error, patterns: RegExp[]): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`);
    for (const p of patterns) assert.match((e as Error).message, p);
    return;
  }
  assert.unreachable(`expected ${cls.name}`);
}

// ==================================================================== the index's document token

test("run: an index built at the other task's doc token is refused (CLI and API); --doc-token accepts it", async () => {
  expectRefused(onegen(["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "mhqa"), "--task", "entity-linking", "--text", "Marwick is a city.", "--quiet"]), 1, [
    /entity linking: the index was built at doc token '\[Document Fragment Representation\]' \(#\d+\), multi-hop QA's document token/,
  ], "el on mh index");
  expectRefused(onegen(["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "el"), "--task", "multihop-qa", "--text", "Where?", "--quiet"]), 1, [/multi-hop QA: the index was built at doc token '\[SE\]'/], "mh on el index");
  const ok = onegen(["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "mhqa"), "--task", "entity-linking", "--text", "Marwick is a city.", "--doc-token", "[Document Fragment Representation]", "--max-new-tokens", "2", "--quiet"]);
  assert.is(ok.status, 0, ok.errors.join("\n"));
  const ctx = await gpu();
  const m = await loadDecoder(ctx, DEMO_MODEL);
  const mh = await loadIndex(ctx, join(DEMO_INDEX, "mhqa"), m.decoder);
  const el = await loadIndex(ctx, join(DEMO_INDEX, "el"), m.decoder);
  try {
    await assertRejectsWith(() => runEntityLinking(m, mh, { text: "Marwick is a city." }, { maxNewTokens: 1 }), LoadError, [/multi-hop QA's document token/]);
    await assertRejectsWith(() => runMultiHopQa(m, el, { text: "Where?" }, { maxNewTokens: 1 }), LoadError, [/entity linking's document token/]);
    await assertRejectsWith(() => runEntityLinking(m, el, { text: "Marwick is a city." }, { maxNewTokens: 1, docToken: "[Document Fragment Representation]" }), LoadError, [/not the requested "\[Document Fragment Representation\]"/]);
    const r = await runEntityLinking(m, el, { text: "Marwick is a city." }, { maxNewTokens: 1 });
    assert.is(r.task, "entity-linking");
  } finally {
    mh.dispose();
    el.dispose();
    m.dispose();
  }
});

// ==================================================================== CLI numbers

test("demo and eval: a crafted model config, an out-of-range flag and a model over the budget are refused", async () => {
  const dir = await craftedModel((c) => (c.num_hidden_layers = 5000), DEMO_MODEL);
  const before = await hashTree(dir);
  expectRefused(onegen(["eval", "--model", dir, "--quiet", "--limit", "1"]), 1, [/'num_hidden_layers' is 5000, over this runtime's limit of 1024/], "eval config");
  expectRefused(onegen(["demo", "--model", dir, "--quiet", "--limit", "1", "--examples", "1"]), 1, [/'num_hidden_layers' is 5000/], "demo config");
  expectRefused(onegen(["eval", "--max-new-tokens", "1e300", "--quiet"]), 2, [/--max-new-tokens must be an integer, got '1e300'/], "eval flag");
  expectRefused(onegen(["demo", "--gpu-memory", "1M", "--quiet", "--limit", "1", "--examples", "1"]), 1, [/weights 3\.38 MiB( \+ one row-major weight while it is transformed into tiles \(transient\) [\d.]+ [KMG]iB)?\), over the budget of 1\.00 MiB \(given\)/], "demo budget");
  await assertUnchanged(before, dir, "demo/eval config");
});

test("CLI numbers: --max-new-tokens 1e9 allocates by the context, not the flag (run, generate)", async () => {
  const r = onegen(["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "mhqa"), "--task", "multihop-qa", "--text", "Where was the founder of Sable Records born?", "--max-new-tokens", "1000000000", "--quiet"]);
  assert.is(r.status, 0, r.errors.join("\n"));
  bounded(r, "run --max-new-tokens 1e9"); // 8 GB of history and hit-ring buffers before
  const g = onegen(["generate", "--model", FIXTURE, "--ids", "1,2,3", "--max-new-tokens", "1000000000", "--json", "--quiet"]);
  assert.is(g.status, 0, g.errors.join("\n"));
  const out = JSON.parse(g.stdout) as { ids: number[]; stats: { finish_reason: string } };
  assert.ok(out.ids.length <= 128 - 3, `${out.ids.length} ids past the context`);
  bounded(g, "generate --max-new-tokens 1e9");
});

test("CLI numbers: flags past what they control are refused naming the flag and the bound", async () => {
  const out = join(await tempDir(), "out.safetensors");
  const cases: [string[], RegExp[]][] = [
    [["generate", "--model", DEMO_MODEL, "--prompt", "Marwick", "--context", "99999999"], [/--context 99999999 exceeds the model's context of 1024 positions/, /max_position_embeddings/]],
    [["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "el"), "--task", "entity-linking", "--text", "x", "--context", "5000"], [/--context 5000 exceeds the model's context of 1024/]],
    [["info", "--model", DEMO_MODEL, "--context", "4096"], [/--context 4096 exceeds the model's context of 1024/]],
    [["search", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "el"), "--text", "x", "--k", "100000"], [/--k must be ≤ \d+, got 100000/]],
    [["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "el"), "--task", "entity-linking", "--text", "x", "--k", "1000000"], [/--k must be ≤ \d+/]],
    [["generate", "--model", DEMO_MODEL, "--prompt", "x", "--max-new-tokens", "1e300"], [/--max-new-tokens must be an integer, got '1e300'/]],
    [["forward", "--model", FIXTURE, "--ids", Array.from({ length: 200 }, () => "5").join(","), "--out", out], [/forward: --ids gives 200 tokens, more than the model's context of 128 positions/]],
    [["generate", "--model", DEMO_MODEL, "--prompt", "x", "--gpu-memory", "lots"], [/--gpu-memory must be a size such as 8G/]],
    [["generate", "--model", DEMO_MODEL, "--prompt", "x", "--temperature", "1e39"], [/--temperature is 1e\+39, which overflows f32/]],
    [["run", "--model", DEMO_MODEL, "--index", join(DEMO_INDEX, "el"), "--task", "entity-linking", "--text", "x", "--top-p", "1e-50"], [/--top-p is 1e-50, which is 0 in f32/]],
    [["generate", "--model", DEMO_MODEL, "--prompt", "x", "--top-k", "99999999999"], [/--top-k must be ≤ 4294967295, got 99999999999/]],
  ];
  for (const [args, patterns] of cases) expectRefused(onegen(args[0] === "info" ? args : [...args, "--quiet"]), 2, patterns, `${args[0]} ${args.filter((a) => a.startsWith("--")).pop()}`);
  let exists = true;
  await stat(out).catch(() => (exists = false));
  assert.not.ok(exists, "forward wrote an output for refused input");
});

test("train: --lora, --batch-size, --grad-accum and --max-length are bounded by the model and the data", async () => {
  const rootDir = await tempDir();
  const model = join(rootDir, "model");
  await writeToyModelDir(model, { D: 32, L: 2, H: 2, Hkv: 1, F: 64 }, 11);
  const task = toyTask(6, 2, 12);
  await writeFile(join(rootDir, "train.jsonl"), task.train);
  await writeFile(join(rootDir, "db.jsonl"), task.db);
  const before = await hashTree(rootDir);
  const base = ["train", "--model", model, "--train", join(rootDir, "train.jsonl"), "--db", join(rootDir, "db.jsonl"), "--out", join(rootDir, "out"), "--quiet"];
  expectRefused(onegen([...base, "--lora", "1000000"]), 2, [/--lora 1000000 exceeds 16, the smaller dimension of k_proj \[16, 32\]/], "--lora");
  expectRefused(onegen([...base, "--batch-size", "1000000000"]), 2, [/--batch-size must be ≤ \d+, got 1000000000/], "--batch-size");
  expectRefused(onegen([...base, "--grad-accum", "1000000000"]), 2, [/--grad-accum must be ≤ \d+/], "--grad-accum");
  const maxPos = (JSON.parse(await readFile(join(model, "config.json"), "utf8")) as { max_position_embeddings: number }).max_position_embeddings;
  expectRefused(onegen([...base, "--max-length", String(maxPos + 1)]), 2, [new RegExp(`--max-length ${maxPos + 1} exceeds the model's context of ${maxPos}`)], "--max-length");
  await assertUnchanged(before, rootDir, "train");
});

test("train: a tokenizer whose added token has id 1e8 does not grow the embedding to 1e8 rows; a crafted trainer_state.json is refused by field", async () => {
  const rootDir = await tempDir();
  const model = join(rootDir, "model");
  await writeToyModelDir(model, { D: 32, L: 2, H: 2, Hkv: 1, F: 64 }, 11);
  const task = toyTask(6, 2, 12);
  await writeFile(join(rootDir, "train.jsonl"), task.train);
  await writeFile(join(rootDir, "db.jsonl"), task.db);
  const tj = JSON.parse(await readFile(join(model, "tokenizer.json"), "utf8")) as { added_tokens: unknown[] };
  tj.added_tokens.push({ id: 100_000_000, content: "[FAR]", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  await writeFile(join(model, "tokenizer.json"), JSON.stringify(tj));
  const base = ["train", "--model", model, "--train", join(rootDir, "train.jsonl"), "--db", join(rootDir, "db.jsonl"), "--quiet"];
  const before = await hashTree(rootDir);
  expectRefused(onegen([...base, "--out", join(rootDir, "out")]), 1, [/vocabulary size 10000000\d \(the tokenizer's largest id \+ 1\) is over this runtime's limit of 16777216/], "far token id");
  await assertUnchanged(before, rootDir, "far token id");
  // A checkpoint whose counters are not what a run writes.
  const ckpt = join(rootDir, "ckpt");
  await cp(model, join(rootDir, "model2"), { recursive: true });
  await writeFile(join(rootDir, "model2", "tokenizer.json"), JSON.stringify({ ...tj, added_tokens: tj.added_tokens.slice(0, -1) }));
  const { mkdir } = await import("node:fs/promises");
  await mkdir(ckpt);
  await writeFile(join(ckpt, "optimizer.safetensors"), writeSafetensors({}));
  for (const [state, re] of [
    [{ format: "onegen-train-checkpoint", version: 1, step: -3, microSteps: 0, optimizerSteps: 0, samples: 6, documents: 12, options: {}, params: [], history: [] }, /field 'step' must be a non-negative integer, got -3/],
    [{ format: "onegen-train-checkpoint", version: 1, step: 2, microSteps: 0, optimizerSteps: 0, samples: 6, documents: 12, options: {}, params: [], history: new Array(5).fill({}) }, /field 'history' must be a list of at most one record per step \(2\), got 5 records/],
    [{ format: "onegen-train-checkpoint", version: 1, step: 0, microSteps: 0, optimizerSteps: 0, samples: 6, documents: 12, options: {}, params: 7, history: [] }, /field 'params' must be a list/],
  ] as const) {
    await writeFile(join(ckpt, "trainer_state.json"), JSON.stringify(state));
    const args = ["train", "--model", join(rootDir, "model2"), "--train", join(rootDir, "train.jsonl"), "--db", join(rootDir, "db.jsonl"), "--quiet", "--out", join(rootDir, "out2"), "--resume", ckpt];
    expectRefused(onegen(args), 1, [/trainer_state\.json/, re], `resume ${JSON.stringify(state).slice(0, 60)}`);
  }
});

// ==================================================================== memory budget

test("memory: training state (gradients, AdamW moments, masters) is planned against the budget before TrainModel allocates", async () => {
  const dir = join(await tempDir(), "toy");
  await writeToyModelDir(dir, { D: 32, L: 2, H: 2, Hkv: 1, F: 64 }, 11);
  const ctx = await openDevice({ memoryBudgetBytes: 64 << 20 });
  try {
    // rows layout: full fine-tuning would free tiled GEMV copies first, making room this budget does not count
    const m = await loadDecoder(ctx, dir, { noTokenizer: true, gemvLayout: "rows" });
    const plan = trainingStateBytes(m.decoder, { mode: "full" });
    assert.is(plan.gradients, m.decoder.weights.embed.dtype === "f32" ? m.weightBytes : 2 * m.weightBytes); // one f32 gradient per weight
    ctx.memoryBudget = { bytes: ctx.pool.stats.liveBytes + plan.total - 1, source: "test" };
    const created = ctx.stats.buffersCreated;
    assert.throws(
      () => TrainModel.create(m.decoder, { mode: "full" }),
      (e: Error) => e instanceof GpuOutOfMemoryError && /training state needs [\d.]+ MiB \(gradients [\d.]+ MiB, AdamW moments and f32 masters [\d.]+ MiB\), more than the [\d.]+ MiB left of the GPU memory budget .* \(test\)/.test(e.message),
    );
    assert.is(ctx.stats.buffersCreated, created, "nothing allocated");
    assert.throws(() => TrainModel.create(m.decoder, { mode: "lora", lora: { rank: 1_000_000, alpha: 1 } }), /LoRA: rank 1000000 exceeds 16, the smaller dimension of k_proj \[16, 32\]/);
    m.dispose();
  } finally {
    ctx.destroy();
  }
});

test("memory: a model over the budget is refused naming weights and KV cache; info reports the budget", async () => {
  const r = onegen(["generate", "--model", DEMO_MODEL, "--prompt", "Marwick", "--context", "1024", "--gpu-memory", "3500K", "--quiet"]);
  expectRefused(r, 1, [/the model needs [\d.]+ MiB of GPU memory \(weights 3\.38 MiB \+ KV cache 1\.00 MiB( \+ one row-major weight while it is transformed into tiles \(transient\) [\d.]+ [KMG]iB)?\), over the budget of 3\.42 MiB \(given\); nothing was uploaded/], "generate over budget");
  const small = onegen(["generate", "--model", DEMO_MODEL, "--prompt", "Marwick", "--gpu-memory", "1M", "--quiet"]);
  expectRefused(small, 1, [/weights 3\.38 MiB/, /over the budget of 1\.00 MiB/], "weights over budget");
  const info = onegen(["info", "--model", DEMO_MODEL, "--json", "--gpu-memory", "1M"]);
  assert.is(info.status, 0, info.errors.join("\n"));
  const j = JSON.parse(info.stdout) as { gpu: { fits: boolean; fitError: string; memoryBudget: { bytes: number; source: string } } };
  assert.equal(j.gpu.memoryBudget, { bytes: 1 << 20, source: "given" });
  assert.is(j.gpu.fits, false);
  assert.match(j.gpu.fitError, /over the budget of 1\.00 MiB/);
  const dflt = onegen(["info", "--model", DEMO_MODEL, "--json"]);
  const d = JSON.parse(dflt.stdout) as { gpu: { fits: boolean; memoryBudget: { bytes: number; source: string } } };
  assert.match(d.gpu.memoryBudget.source, BUDGET_SOURCE);
  assert.ok(d.gpu.fits);
});

/**
 * A Llama-7B-shaped model directory (D 4096, I 11008, V 32000) of L layers whose model.safetensors
 * has a real header and sparse data (holes read as zeros): no disk or memory is used for it.
 */
async function sparseLlama(L: number, dtype: "F32" | "F16"): Promise<{ dir: string; dataBytes: number }> {
  const D = 4096, I = 11008, V = 32000;
  const dir = join(await tempDir(), "big");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(dir);
  await writeFile(join(dir, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], hidden_size: D, intermediate_size: I, num_attention_heads: 32, num_hidden_layers: L, vocab_size: V, max_position_embeddings: 4096 }));
  const tensors: Record<string, { dtype: SafetensorsDtype; shape: number[] }> = { "model.embed_tokens.weight": { dtype, shape: [V, D] }, "model.norm.weight": { dtype, shape: [D] }, "lm_head.weight": { dtype, shape: [V, D] } };
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "o_proj"]) tensors[`${p}.self_attn.${n}.weight`] = { dtype, shape: [D, D] };
    tensors[`${p}.mlp.gate_proj.weight`] = { dtype, shape: [I, D] };
    tensors[`${p}.mlp.up_proj.weight`] = { dtype, shape: [I, D] };
    tensors[`${p}.mlp.down_proj.weight`] = { dtype, shape: [D, I] };
    tensors[`${p}.input_layernorm.weight`] = { dtype, shape: [D] };
    tensors[`${p}.post_attention_layernorm.weight`] = { dtype, shape: [D] };
  }
  const layout = layoutSafetensors(tensors);
  await writeFile(join(dir, "model.safetensors"), layout.headerBytes);
  await truncate(join(dir, "model.safetensors"), layout.headerBytes.byteLength + layout.dataBytes);
  return { dir, dataBytes: layout.dataBytes };
}

/** How the default budget is described: a software adapter's host bound, or the hardware default. */
const BUDGET_SOURCE = /^(software adapter: (host MemAvailable|cgroup memory limit|address-space limit \(ulimit -v\)) [\d.]+ GiB less a [\d.]+ GiB margin|default for a hardware adapter \(WebGPU reports no memory size\); set it with --gpu-memory)$/;

test("memory: a checkpoint larger than the default budget (host memory on a software adapter) is refused before any upload", async () => {
  const info = onegen(["info", "--model", FIXTURE, "--json"]);
  const budget = (JSON.parse(info.stdout) as { gpu: { memoryBudget: { bytes: number } } }).gpu.memoryBudget.bytes;
  // Llama-7B-shaped layers in f32 (809 MB each), as many as exceed the budget by two; the file is
  // sparse (its header is real, its data holes), so the test needs no disk or memory for it.
  const D = 4096, I = 11008, V = 32000;
  const perLayer = 4 * (4 * D * D + 3 * D * I + 2 * D);
  const L = Math.ceil(budget / perLayer) + 2;
  assert.ok(L <= CONFIG_LIMITS.num_hidden_layers, `the budget ${budget} needs more than ${CONFIG_LIMITS.num_hidden_layers} layers to exceed`);
  const { dir, dataBytes } = await sparseLlama(L, "F32");
  const r = onegen(["generate", "--model", dir, "--ids", "1,2", "--quiet"]);
  expectRefused(r, 1, [/the model needs [\d.]+ GiB of GPU memory \(weights [\d.]+ GiB( \+ one row-major weight while it is transformed into tiles \(transient\) [\d.]+ [KMG]iB)?\), over the budget of [\d.]+ GiB \((.*)\); nothing was uploaded/], "model over the budget");
  assert.match(/\(([^()]*(\([^()]*\)[^()]*)*)\); nothing was uploaded/.exec(r.errors[0] ?? "")?.[1] ?? "", BUDGET_SOURCE);
  assert.ok(dataBytes > budget);
});

test("memory: under an address-space limit (ulimit -v) the budget follows it: refused, not a segfault in the driver", async () => {
  // lavapipe crashed (SIGSEGV) writing a 4th GiB buffer under ulimit -v 6000000 when nothing bounded the budget.
  const device = JSON.parse(onegen(["device", "--json"]).stdout) as { software: boolean; memoryBudget: { source: string } };
  if (!device.software) {
    // A hardware adapter's memory is not the host's: its budget is the documented default, which
    // host limits do not change (asserted here instead of the software adapter's case below).
    assert.match(device.memoryBudget.source, /^default for a hardware adapter/);
    return;
  }
  const { dir, dataBytes } = await sparseLlama(18, "F16"); // 7.8 GB of f16 weights
  const t0 = Date.now();
  const r = spawnSync("bash", ["-c", `ulimit -v 6000000 && exec "$0" --import "$1" "$2" generate --model "$3" --ids 1 --max-new-tokens 1 --quiet`, process.execPath, RSS_HOOK, cli, dir], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, XDG_RUNTIME_DIR: "/tmp" },
  });
  const errors = (r.stderr ?? "").split("\n").filter((l) => l.trim() !== "" && !/^Warning: |^maxrss_kb=/.test(l));
  assert.is(r.status, 1, `exit ${r.status} signal ${r.signal}: ${errors.join(" | ")}`);
  assert.match(errors[0] ?? "", new RegExp(`the model needs [\\d.]+ GiB of GPU memory \\(weights ${(dataBytes / 1024 ** 3).toFixed(2)} GiB.* over the budget of [\\d.]+ GiB \\(software adapter: address-space limit \\(ulimit -v\\) [\\d.]+ GiB less a [\\d.]+ GiB margin\\)`));
  assert.ok(Date.now() - t0 < 25_000);
});

test("budget: cgroup limits (v1 and v2) bound the host memory; 'max' and the v1 'unlimited' value do not", async () => {
  const fake = (files: Record<string, string>) => async (p: string) => files[p] ?? null;
  assert.is(await cgroupAvailable(fake({ "/proc/self/cgroup": "0::/user.slice/x\n", "/sys/fs/cgroup/user.slice/x/memory.max": "4294967296\n", "/sys/fs/cgroup/user.slice/x/memory.current": "1073741824\n" })), 3 * 1024 ** 3);
  assert.is(await cgroupAvailable(fake({ "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup//memory.max": "max\n" })), null);
  assert.is(await cgroupAvailable(fake({ "/proc/self/cgroup": "4:memory:/docker/abc\n0::/\n", "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648", "/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": "536870912" })), 1.5 * 1024 ** 3);
  assert.is(await cgroupAvailable(fake({ "/proc/self/cgroup": "4:memory:/\n", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712" })), null);
  assert.is(await cgroupAvailable(fake({})), null);
});

test("memory: the pool refuses a tensor past the budget with what holds the memory; nothing is created", async () => {
  const ctx = await openDevice({ memoryBudgetBytes: 1 << 20 });
  try {
    const a = ctx.empty([128 * 1024], "f32", "model.a"); // 512 KiB
    const created = ctx.stats.buffersCreated;
    assert.throws(() => ctx.empty([192 * 1024], "f32", "kv.big"), (e: Error) => e instanceof GpuOutOfMemoryError && /tensor 'kv\.big' needs 768\.0 KiB of GPU memory, over the budget of 1\.0 MiB \(given\): 512\.0 KiB in use \(model 512\.0 KiB\)/.test(e.message));
    assert.is(ctx.stats.buffersCreated, created);
    a.dispose();
    const b = ctx.empty([192 * 1024], "f32", "kv.big"); // fits once the first is freed (its pooled buffer is trimmed)
    b.dispose();
    await assertRejectsWith(() => loadDecoder(ctx, DEMO_MODEL), UnsupportedError, [/the model needs 3\.38 MiB of GPU memory \(weights 3\.38 MiB\), over the budget of 1\.00 MiB \(given\); nothing was uploaded/]);
  } finally {
    ctx.destroy();
  }
  await assertRejectsWith(() => openDevice({ memoryBudgetBytes: -1 }), UnsupportedError, [/memoryBudgetBytes must be a positive number/]);
});

test("memory: Session.generate sizes its buffers by the free context rows, not by maxNewTokens", async () => {
  const ctx = await gpu();
  const m = await loadDecoder(ctx, FIXTURE, { noTokenizer: true });
  const s = Session.create(m.decoder, 8);
  try {
    await s.append([1, 2, 3]);
    const live0 = ctx.pool.stats.liveBytes + ctx.pool.stats.pooledBytes;
    const ids: number[] = [];
    const it = s.generate({ maxNewTokens: 1e9, eosIds: [] });
    let finish = "";
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      ids.push(r.value.id);
    }
    assert.is(finish, "context-full");
    assert.is(ids.length, 5);
    assert.ok(ctx.pool.stats.liveBytes + ctx.pool.stats.pooledBytes - live0 < 1 << 20, "generate allocated more than 1 MiB");
  } finally {
    s.dispose();
    m.dispose();
  }
});

test("memory: a KV cache over the budget left is refused whole, before any layer is allocated", async () => {
  const ctx = await openDevice({ memoryBudgetBytes: 1 << 20 });
  try {
    const m = await loadDecoder(ctx, FIXTURE, { noTokenizer: true }); // 0.53 MiB of f32 weights
    const live = ctx.pool.stats.liveBytes;
    const created = ctx.stats.buffersCreated;
    assert.throws(
      () => m.decoder.createCache(4096, "f16"), // 2 × 2 layers × 2 heads × 4096 × 16 × 2 bytes = 1 MiB
      (e: Error) => e instanceof GpuOutOfMemoryError && /a KV cache of 4096 rows needs 1048576 bytes .* more than the \d+ bytes left of the GPU memory budget of 1048576 \(given\)/.test(e.message),
    );
    assert.is(ctx.pool.stats.liveBytes, live);
    assert.is(ctx.stats.buffersCreated, created);
    m.dispose();
  } finally {
    ctx.destroy();
  }
});

test("memory: a KV cache whose layer exceeds the storage binding limit is refused before allocation (attention binds it whole)", async () => {
  const ctx = await gpu();
  const m = await loadDecoder(ctx, FIXTURE, { noTokenizer: true });
  try {
    const rows = Math.floor(ctx.limits.maxStorageBufferBindingSize / (2 * 16 * 4)) + 1; // Hkv 2 × hd 16 × f32
    const created = ctx.stats.buffersCreated;
    assert.throws(() => m.decoder.createCache(rows, "f32"), (e: Error) => e instanceof UnsupportedError && new RegExp(`a KV cache of ${rows} rows takes ${rows * 128} bytes per layer .* storage binding limit of ${ctx.limits.maxStorageBufferBindingSize}`).test(e.message));
    assert.is(ctx.stats.buffersCreated, created);
  } finally {
    m.dispose();
  }
});

test("memory: host memory running out while reading a tensor is a LoadError naming it, and the GPU tensor is freed", async () => {
  const ctx = await gpu();
  const f = await SafetensorsFile.open(await openFileSource(join(FIXTURE, "model.safetensors")));
  try {
    const info = f.info("model.norm.weight");
    const failing = { name: "model.safetensors", readBytes: async () => { throw new RangeError("Array buffer allocation failed"); } } as unknown as SafetensorsFile;
    const live = ctx.pool.stats.liveBytes;
    await assertRejectsWith(() => uploadTensor(ctx, { file: failing, info }, "f32"), LoadError, [/'model\.safetensors', tensor 'model\.norm\.weight': host memory ran out while reading it \(Array buffer allocation failed\)/]);
    assert.is(ctx.pool.stats.liveBytes, live);
  } finally {
    await f.close();
  }
});

test("files: a config.json larger than any real one is refused by its size before it is read", async () => {
  const dir = await craftedModel(() => undefined);
  await truncate(join(dir, "config.json"), 300 * 1024 * 1024); // sparse: no disk used
  expectRefused(onegen(["info", "--model", dir]), 1, [/config\.json' is 314572800 bytes, over the limit of 268435456/], "huge config.json");
});

test("budget: sizes parse, defaults are documented figures", async () => {
  assert.is(parseByteSize("8G"), 8 * 1024 ** 3);
  assert.is(parseByteSize("512MiB"), 512 * 1024 ** 2);
  assert.is(parseByteSize("1.5g"), 1.5 * 1024 ** 3);
  assert.is(parseByteSize("4096"), 4096);
  for (const bad of ["", "-1G", "8X", "0", "1e9", "G"]) assert.is(parseByteSize(bad), null, bad);
  assert.equal(await defaultMemoryBudget(false), { bytes: DEFAULT_GPU_BUDGET_BYTES, source: "default for a hardware adapter (WebGPU reports no memory size); set it with --gpu-memory" });
  const soft = await defaultMemoryBudget(true);
  assert.ok(soft.bytes > 0 && soft.bytes < 2 ** 50, String(soft.bytes));
});

test("the demo model and indexes used as inputs above are byte-identical", async () => {
  const [m, i] = await demoBefore;
  await assertUnchanged(m, DEMO_MODEL, "demo/model");
  await assertUnchanged(i, DEMO_INDEX, "demo/index");
});

test.run();
