// Checkpoints into GPU tensors: single-file and sharded loads with values checked bit for bit,
// BF16/F16/F32 conversions and chunked uploads, missing files and tensors listed, the memory plan
// refusing before any upload, progress reports, the Python-written golden fixtures, and
// `onegen info` on a crafted model directory.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LoadError, ShapeError, UnsupportedError } from "../src/errors.js";
import { Checkpoint, INDEX_FILE, loadModel, loadModelConfig, loadTensors, openCheckpoint, type LoadProgress } from "../src/model/checkpoint.js";
import { checkMemoryPlan, planMemory } from "../src/model/memory-plan.js";
import { SafetensorsFile, type SafetensorsDtype } from "../src/io/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../src/io/safetensors-write.js";
import { bytesSource, filesDir, openFileSource } from "../src/io/source.js";
import { expectedTensors, parseModelConfig } from "../src/model/config.js";
import { infoCommand } from "../src/cli/info.js";
import { createProgressBar } from "../src/cli/progress.js";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { scratchDir } from "./helpers/scratch.js";

const root = scratchDir("ckpt");
let dirCount = 0;
const newDir = (): string => {
  const d = join(root, `m${dirCount++}`);
  mkdirSync(d);
  return d;
};

// Llama, D 16, I 24, L 2, H 4, Hkv 2 (hd 4), V 40: 21 tensors, ~5.5k parameters.
const CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  vocab_size: 40,
  max_position_embeddings: 128,
  rope_theta: 10000.0,
  rope_scaling: null,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
};

interface Weight extends TensorToWrite {
  /** The stored values as f32 (exact for every source dtype used here). */
  values: Float32Array;
}

function makeWeights(seed: number, dtype: SafetensorsDtype, config: Record<string, unknown> = CONFIG): Map<string, Weight> {
  const rng = new Rng(seed);
  const out = new Map<string, Weight>();
  for (const e of expectedTensors(parseModelConfig(config))) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const x = rng.fillNormal(n, 0.5);
    if (dtype === "F32") out.set(e.name, { dtype, shape: e.shape, data: x, values: x });
    else if (dtype === "F16") {
      const bits = Uint16Array.from(x, f32ToF16Bits);
      out.set(e.name, { dtype, shape: e.shape, data: bits, values: Float32Array.from(bits, f16BitsToF32) });
    } else {
      const bits = Uint16Array.from(x, f32ToBf16Bits);
      out.set(e.name, { dtype, shape: e.shape, data: bits, values: Float32Array.from(bits, bf16BitsToF32) });
    }
  }
  return out;
}

/** Writes config.json and the weights, as one model.safetensors or as `shards` files + index. */
function writeModel(dir: string, weights: Map<string, Weight>, shards = 1, config: Record<string, unknown> = CONFIG): void {
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  if (shards === 1) {
    writeFileSync(join(dir, "model.safetensors"), writeSafetensors(weights, { format: "pt" }));
    return;
  }
  const names = [...weights.keys()];
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part = new Map(names.slice(s * per, (s + 1) * per).map((n) => [n, weights.get(n)!]));
    for (const [n, w] of part) {
      weightMap[n] = file;
      total += w.data.byteLength;
    }
    writeFileSync(join(dir, file), writeSafetensors(part, { format: "pt" }));
  }
  writeFileSync(join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

const f16Of = (values: Float32Array): Uint16Array => Uint16Array.from(values, f32ToF16Bits);

test("single-file BF16 model: loads as f16 (default) and as f32, every value exact", async () => {
  const ctx = await gpu();
  const dir = newDir();
  const weights = makeWeights(1, "BF16");
  writeModel(dir, weights);
  const m = await loadModel(ctx, dir);
  assert.is(m.config.architecture, "LlamaForCausalLM");
  assert.is(m.weights.size, 21);
  for (const [name, w] of weights) {
    const t = m.weights.get(name)!;
    assert.is(t.dtype, "f16", name);
    assert.equal([...t.shape], [...w.shape], name);
    assertEqualArrays(await t.read(), f16Of(w.values), `${name} bf16→f16`);
  }
  for (const t of m.weights.values()) t.dispose();
  const m32 = await loadModel(ctx, dir, { dtype: "f32" });
  for (const [name, w] of weights) assertEqualArrays(await m32.weights.get(name)!.read(), w.values, `${name} bf16→f32`);
  for (const t of m32.weights.values()) t.dispose();
});

test("sharded model (index + 3 shards) loads the same tensors as the single file", async () => {
  const ctx = await gpu();
  const weights = makeWeights(2, "F16");
  const single = newDir();
  const sharded = newDir();
  writeModel(single, weights, 1);
  writeModel(sharded, weights, 3);
  const ck = await openCheckpoint(sharded);
  assert.is(ck.files.length, 3);
  assert.ok(ck.sharded);
  assert.is(ck.tensors.size, 21);
  await ck.close();
  const a = await loadModel(ctx, single);
  const b = await loadModel(ctx, sharded);
  for (const [name, w] of weights) {
    assertEqualArrays(await b.weights.get(name)!.read(), w.data as Uint16Array, `${name} sharded f16 bits`);
    assertEqualArrays(await a.weights.get(name)!.read(), w.data as Uint16Array, `${name} single f16 bits`);
  }
  for (const t of [...a.weights.values(), ...b.weights.values()]) t.dispose();
});

test("F32/F16/BF16 round trips writer → reader → GPU → readback, every conversion, chunked uploads of odd lengths", async () => {
  const ctx = await gpu();
  const rng = new Rng(3);
  const n = 1001; // odd: the last f16 chunk ends on a half word
  const x = rng.fillNormal(n, 3);
  x[0] = 0;
  x[1] = -0;
  x[2] = 1e-6; // f16 subnormal
  x[3] = 60000; // near the top of f16's range
  const src = {
    F32: { dtype: "F32" as const, shape: [7, 143], data: x },
    F16: { dtype: "F16" as const, shape: [7, 143], data: Uint16Array.from(x, f32ToF16Bits) },
    BF16: { dtype: "BF16" as const, shape: [7, 143], data: Uint16Array.from(x, f32ToBf16Bits) },
  };
  const file = await SafetensorsFile.open(bytesSource(writeSafetensors(src), "roundtrip.safetensors"));
  const ck = openCheckpointFromFile(file);
  const exact = {
    F32: x,
    F16: Float32Array.from(src.F16.data, f16BitsToF32),
    BF16: Float32Array.from(src.BF16.data, bf16BitsToF32),
  };
  for (const chunkBytes of [undefined, 100, 6]) {
    for (const target of ["auto", "f16", "f32"] as const) {
      const loaded = await loadTensors(ctx, ck, { dtype: target, chunkBytes });
      for (const name of ["F32", "F16", "BF16"] as const) {
        const t = loaded.get(name)!;
        const want = target === "auto" ? (name === "F32" ? "f32" : "f16") : target;
        assert.is(t.dtype, want, `${name} → ${target}`);
        const what = `${name} → ${want} (chunk ${chunkBytes ?? "default"})`;
        if (want === "f32") assertEqualArrays(await t.read(), exact[name], what);
        else assertEqualArrays(await t.read(), f16Of(exact[name]), what);
      }
      for (const t of loaded.values()) t.dispose();
    }
  }
  // per-tensor override: norms in f32, the rest f16
  const mixed = await loadTensors(ctx, ck, { dtypeFor: (name) => (name === "BF16" ? "f32" : undefined), dtype: "f16" });
  assert.is(mixed.get("BF16")!.dtype, "f32");
  assert.is(mixed.get("F32")!.dtype, "f16");
  for (const t of mixed.values()) t.dispose();
});

function openCheckpointFromFile(file: SafetensorsFile): Checkpoint {
  return new Checkpoint(file.name, [file], new Map(file.tensors.map((info) => [info.name, { file, info }])), null);
}

test("missing shard files, tensors absent from their shard, and tensors the model needs are listed", async () => {
  const ctx = await gpu();
  const weights = makeWeights(4, "F16");
  // a shard file is gone
  const d1 = newDir();
  writeModel(d1, weights, 3);
  const { rmSync, readFileSync } = await import("node:fs");
  rmSync(join(d1, "model-00002-of-00003.safetensors"));
  await assertRejects(() => openCheckpoint(d1), LoadError, [/model\.safetensors\.index\.json/, /1 shard file\(s\) missing/, /model-00002-of-00003\.safetensors \(7 tensors\)/], "missing shard");
  // the index names a tensor its shard does not hold
  const d2 = newDir();
  writeModel(d2, weights, 2);
  const index = JSON.parse(readFileSync(join(d2, INDEX_FILE), "utf8")) as { weight_map: Record<string, string> };
  index.weight_map["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
  writeFileSync(join(d2, INDEX_FILE), JSON.stringify(index));
  await assertRejects(() => openCheckpoint(d2), LoadError, [/model\.layers\.9\.mlp\.up_proj\.weight \(in model-00001-of-00002\.safetensors\)/], "tensor not in shard");
  // a shard name that escapes the directory
  index.weight_map["x"] = "../evil.safetensors";
  writeFileSync(join(d2, INDEX_FILE), JSON.stringify(index));
  await assertRejects(() => openCheckpoint(d2), LoadError, [/not a plain file name/], "path escape");
  // the model needs tensors the checkpoint lacks
  const d3 = newDir();
  const partial = new Map(weights);
  partial.delete("model.layers.1.self_attn.o_proj.weight");
  partial.delete("lm_head.weight");
  writeModel(d3, partial);
  const before = ctx.stats.uploads;
  await assertRejects(() => loadModel(ctx, d3), LoadError, [/2 tensor\(s\) that LlamaForCausalLM needs are missing: model\.layers\.1\.self_attn\.o_proj\.weight, lm_head\.weight/, /tie_word_embeddings/], "missing tensors");
  assert.is(ctx.stats.uploads, before, "nothing uploaded");
  // a wrong shape names tensor, expected and actual
  const d4 = newDir();
  const wrong = new Map(weights);
  wrong.set("model.layers.0.mlp.gate_proj.weight", { ...weights.get("model.layers.0.mlp.up_proj.weight")!, shape: [16, 24] });
  writeModel(d4, wrong);
  await assertRejects(() => loadModel(ctx, d4), ShapeError, [/'model\.layers\.0\.mlp\.gate_proj\.weight' expected \[24, 16\], actual \[16, 24\]/], "wrong shape");
  // no checkpoint at all; a pickle checkpoint
  const d5 = newDir();
  await assertRejects(() => openCheckpoint(d5), LoadError, [/neither 'model\.safetensors' nor 'model\.safetensors\.index\.json'/], "empty dir");
  writeFileSync(join(d5, "pytorch_model.bin"), "x");
  await assertRejects(() => openCheckpoint(d5), UnsupportedError, [/pytorch_model\.bin/, /safe_serialization/], "pickle");
  await assertRejects(() => loadModelConfig(d5), LoadError, [/has no config\.json/], "no config");
});

test("memory plan: over an explicit budget is refused before any upload; maxBufferSize; KV cache counted", async () => {
  const ctx = await gpu();
  const dir = newDir();
  writeModel(dir, makeWeights(5, "F32"));
  const ck = await openCheckpoint(dir);
  const config = await loadModelConfig(dir);
  const plan32 = planMemory(ck);
  const plan16 = planMemory(ck, { dtype: "f16" });
  assert.is(plan32.weightBytes, 2 * plan16.weightBytes);
  assert.is(plan32.fileBytes, plan32.weightBytes);
  assert.is(plan32.largest!.name.endsWith("embed_tokens.weight") || plan32.largest!.name === "lm_head.weight", true);
  const withKv = planMemory(ck, { kvCache: { config, contextLength: 64 } });
  assert.is(withKv.kvCacheBytes, 2 * 2 * 64 * 2 * 4 * 2);
  assert.is(withKv.totalBytes, plan32.weightBytes + withKv.kvCacheBytes);

  const uploads = ctx.stats.uploads;
  const created = ctx.stats.buffersCreated;
  const progress: LoadProgress[] = [];
  await assertRejects(
    () => loadTensors(ctx, ck, { budgetBytes: plan32.weightBytes - 1, onProgress: (p) => progress.push(p) }),
    UnsupportedError,
    [/over the budget of/, /nothing was uploaded/, /hint: store the weights as f16/],
    "budget",
  );
  await assertRejects(() => loadTensors(ctx, ck, { budgetBytes: withKv.totalBytes - 1, kvCache: { config, contextLength: 64 } }), UnsupportedError, [/KV cache/], "budget with KV");
  assert.is(ctx.stats.uploads, uploads, "no upload happened");
  assert.is(ctx.stats.buffersCreated, created, "no buffer was created");
  assert.is(progress.length, 0);
  // f16 halves the plan and fits the same budget
  const ok = await loadTensors(ctx, ck, { budgetBytes: plan32.weightBytes - 1, dtype: "f16" });
  assert.is(ok.size, 21);
  for (const t of ok.values()) t.dispose();
  // a tensor over maxBufferSize is named
  assert.throws(
    () => checkMemoryPlan(plan32, { maxBufferSize: 1000 }),
    (e: Error) => e instanceof UnsupportedError && /maxBufferSize/.test(e.message) && /model\.embed_tokens\.weight/.test(e.message),
  );
  await ck.close();
});

test("progress callback: bytes and tensors rise monotonically to the totals; the progress bar prints", async () => {
  const ctx = await gpu();
  const dir = newDir();
  writeModel(dir, makeWeights(6, "BF16"), 2);
  const ck = await openCheckpoint(dir);
  const seen: LoadProgress[] = [];
  const lines: string[] = [];
  const bar = createProgressBar("loading", { write: (s) => void lines.push(s), isTTY: false });
  const loaded = await loadTensors(ctx, ck, {
    chunkBytes: 256,
    onProgress: (p) => {
      seen.push(p);
      bar.update(p);
    },
  });
  bar.done();
  const total = [...ck.tensors.values()].reduce((s, t) => s + t.info.byteLength, 0);
  assert.ok(seen.length > 21, "several reports per large tensor");
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone && seen[i]!.tensorsDone >= seen[i - 1]!.tensorsDone, `monotonic at ${i}`);
  }
  const last = seen[seen.length - 1]!;
  assert.equal([last.bytesDone, last.bytesTotal, last.tensorsDone, last.tensorsTotal], [total, total, 21, 21]);
  assert.ok(lines.length >= 2 && lines.length <= 11, `${lines.length} non-TTY lines`);
  assert.match(lines[lines.length - 1]!, /100% .* 21\/21 tensors/);
  const tty: string[] = [];
  const ttyBar = createProgressBar("x", { write: (s) => void tty.push(s), isTTY: true, columns: 80 });
  ttyBar.update(last);
  ttyBar.done();
  assert.match(tty[0]!, /^\r\[#+\] x 100%/);
  assert.is(tty[1], "\n");
  for (const t of loaded.values()) t.dispose();
  await ck.close();
});

test("BF16 values beyond f16's range are refused for f16 (naming file and tensor) and load as f32", async () => {
  const ctx = await gpu();
  const data = Uint16Array.from([1, -2, 70000, 3], f32ToBf16Bits);
  const file = await SafetensorsFile.open(bytesSource(writeSafetensors({ big: { dtype: "BF16", shape: [4], data } }), "big.safetensors"));
  const ck = openCheckpointFromFile(file);
  await assertRejects(() => loadTensors(ctx, ck), LoadError, [/'big\.safetensors', tensor 'big'/, /1 BF16 value\(s\) exceed f16's range/, /hint: load this tensor as f32/], "overflow");
  const ok = await loadTensors(ctx, ck, { dtype: "f32" });
  assertEqualArrays(await ok.get("big")!.read(), Float32Array.from(data, bf16BitsToF32), "f32");
  ok.get("big")!.dispose();
});

test("golden fixtures written by Python load into GPU tensors equal to the host reader's values", async () => {
  const ctx = await gpu();
  // sharded BF16 Llama 3 (cut inside layer 1)
  const dir = "test/fixtures/models/llama3-scaled-bf16-sharded";
  const m = await loadModel(ctx, dir, { dtype: "f32" });
  assert.equal(m.config.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 });
  assert.is(m.weights.size, 21);
  const ck = await openCheckpoint(dir);
  assert.is(ck.files.length, 2);
  for (const name of ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"]) {
    const { file } = ck.get(name);
    assertEqualArrays(await m.weights.get(name)!.read(), await file.readF32(name), name);
  }
  await ck.close();
  for (const t of m.weights.values()) t.dispose();
  // tied Qwen2 with biases: no lm_head tensor, biases loaded
  const q = await loadModel(ctx, "test/fixtures/models/qwen2-bias-tied-f16");
  assert.ok(!q.weights.has("lm_head.weight"));
  assert.equal([...q.weights.get("model.layers.0.self_attn.k_proj.bias")!.shape], [64]);
  const qf = await SafetensorsFile.open(await openFileSource("test/fixtures/models/qwen2-bias-tied-f16/model.safetensors"));
  assertEqualArrays(await q.weights.get("model.layers.0.self_attn.q_proj.bias")!.read(), (await qf.readTensor("model.layers.0.self_attn.q_proj.bias")).data as Uint16Array, "qwen2 q bias bits");
  await qf.close();
  for (const t of q.weights.values()) t.dispose();
  // golden outputs are readable too
  const g = await SafetensorsFile.open(await openFileSource(`${dir}/golden.safetensors`));
  assert.equal([...g.info("logits").shape], [40, 500]);
  assert.is(g.info("ids").dtype, "I32");
  await g.close();
});

test("the same model loads from browser-style File objects", async () => {
  const ctx = await gpu();
  const dir = newDir();
  const weights = makeWeights(8, "F32");
  writeModel(dir, weights, 2);
  const { readdirSync, readFileSync } = await import("node:fs");
  const files = readdirSync(dir).map((n) => new File([readFileSync(join(dir, n))], n));
  const m = await loadModel(ctx, filesDir(files, "dropped"));
  assertEqualArrays(await m.weights.get("model.norm.weight")!.read(), weights.get("model.norm.weight")!.values, "norm via File");
  for (const t of m.weights.values()) t.dispose();
});

test("onegen info: text and JSON on a crafted model dir, exit codes 0 / 1 / 2", async () => {
  const ctx = await gpu();
  const dir = newDir();
  const cfg = { ...CONFIG, vocab_size: 38 }; // the embedding's 40 rows win
  writeModel(dir, makeWeights(7, "BF16"), 1, cfg);
  writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [2, 5] }));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join("test/fixtures/llama2-tokenizer", f), join(dir, f));
  const run = async (argv: string[]) => {
    let out = "";
    let err = "";
    const code = await infoCommand(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s), openDevice: () => gpu() });
    return { code, out, err };
  };
  const text = await run(["--model", dir]);
  assert.is(text.code, 0, text.err);
  assert.match(text.out, /architecture:\s+LlamaForCausalLM \(llama\)/);
  assert.match(text.out, /V=40 \(config\.json says 38; the embedding's rows win\)/);
  const params = 40 * 16 * 2 + 2 * (16 * 16 * 2 + 8 * 16 * 2 + 24 * 16 * 3 + 16 * 2) + 16;
  assert.match(text.out, new RegExp(`parameters:\\s+${params.toLocaleString("en-US")}`));
  assert.match(text.out, /dtypes:\s+BF16/);
  assert.match(text.out, new RegExp(`gpu bytes:\\s+${((params * 2) / 1024).toFixed(1)} KiB weights`));
  assert.match(text.out, new RegExp(`adapter:\\s+${ctx.adapter.description.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  assert.match(text.out, /memory budget:\s+\S+ \S+ \(.+\); fits \(/);
  assert.match(text.out, /bos\/eos ids:\s+1 \/ 2, 5/);
  assert.match(text.out, /special tokens: <unk>=0 <s>=1 <\/s>=2/);

  const js = await run(["--model", dir, "--json", "--dtype", "f32", "--context", "64"]);
  assert.is(js.code, 0, js.err);
  const info = JSON.parse(js.out) as { parameters: number; dtypes: Record<string, number>; gpu: { weightBytes: number; kvCacheBytes: number; totalBytes: number; fits: boolean }; config: { vocabSize: number }; tokenizer: { bos: { id: number } } };
  assert.is(info.parameters, params);
  assert.equal(info.dtypes, { BF16: params });
  assert.is(info.gpu.weightBytes, params * 4);
  assert.is(info.gpu.kvCacheBytes, 2 * 2 * 64 * 2 * 4 * 2);
  assert.is(info.gpu.totalBytes, params * 4 + info.gpu.kvCacheBytes);
  assert.is(info.gpu.fits, true);
  assert.is(info.config.vocabSize, 40);
  assert.is(info.tokenizer.bos.id, 1);

  // no tokenizer files: still works, says so
  const bare = newDir();
  writeModel(bare, makeWeights(7, "F16"));
  const b = await run(["--model", bare]);
  assert.is(b.code, 0, b.err);
  assert.match(b.out, /tokenizer:\s+none \(no tokenizer\.json/);

  // bad input: exit 1 with one line on stderr naming the problem
  const missing = newDir();
  writeFileSync(join(missing, "config.json"), JSON.stringify({ ...CONFIG, architectures: ["FalconForCausalLM"] }));
  const bad = await run(["--model", missing]);
  assert.is(bad.code, 1);
  assert.is(bad.out, "");
  assert.is(bad.err.trimEnd().split("\n").length, 1, bad.err);
  assert.match(bad.err, /^onegen info: .*'FalconForCausalLM' is not supported/);
  const nodir = await run(["--model", join(root, "does-not-exist")]);
  assert.is(nodir.code, 1);
  assert.is(nodir.err.trimEnd().split("\n").length, 1, nodir.err);
  // usage errors: exit 2
  assert.is((await run([])).code, 2);
  assert.is((await run(["--model", dir, "--frobnicate"])).code, 2);
  assert.is((await run(["--model", dir, "--dtype", "f8"])).code, 2);
  assert.is((await run(["--model", dir, "--context", "0"])).code, 2);
  assert.is((await run(["--help"])).code, 0);
});

test.run();
