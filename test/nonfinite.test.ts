// Non-finite checks: the GPU count of NaN/±inf (kernels/nonfinite.wgsl) against its CPU reference
// over awkward sizes, both dtypes, bit patterns at the edge of finiteness, binding windows and the
// padding half of odd f16 tensors; the loader refusing a checkpoint with one NaN/inf (API and CLI).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { FIXTURE_ROOT } from "./helpers/golden.js";
import { countNonFinite, countNonFiniteReference, NonFiniteScan } from "../src/ops/nonfinite.js";
import { loadModel } from "../src/model/checkpoint.js";
import { LoadError, NonFiniteError } from "../src/errors.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { Tensor } from "../src/gpu/tensor.js";
import type { GpuContext } from "../src/gpu/context.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { scratchDir } from "./helpers/scratch.js";

const rng = new Rng(15);
const F32_BAD = [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff, 0x7f800000, 0xff800000]; // NaNs, +inf, −inf
const F32_EDGE = [0x7f7fffff, 0xff7fffff, 0x00000001, 0x80000001, 0x00800000, 0x80000000]; // max finite, subnormals, min normal, −0
const F16_BAD = [0x7e00, 0xfe00, 0x7c01, 0xffff, 0x7c00, 0xfc00];
const F16_EDGE = [0x7bff, 0xfbff, 0x0001, 0x03ff, 0x8001, 0x0400, 0x8000]; // ±65504, subnormals, min normal, −0

/** Random finite data of n elements (f32 bits or f16 bits) with `bad` patterns at `at` and edge values sprinkled. */
function makeData(dtype: "f32" | "f16", n: number, at: readonly number[]): Float32Array | Uint16Array {
  const vals = rng.fillNormal(n);
  const data: Float32Array | Uint16Array = dtype === "f32" ? vals : f32ArrayToF16(vals);
  const bits = dtype === "f32" ? new Uint32Array(data.buffer) : (data as Uint16Array);
  const edge = dtype === "f32" ? F32_EDGE : F16_EDGE;
  const bad = dtype === "f32" ? F32_BAD : F16_BAD;
  for (let i = 0; i < n; i += 1 + rng.int(5)) bits[i] = edge[rng.int(edge.length)]!;
  at.forEach((i, j) => {
    if (i >= 0 && i < n) bits[i] = bad[j % bad.length]!;
  });
  return data;
}

async function gpuCount(ctx: GpuContext, t: Tensor, slots = 3, slot = 1): Promise<Uint32Array> {
  const counts = ctx.upload(Uint32Array.from({ length: slots }, (_, i) => 1000 + i), [slots], "u32", "counts");
  await countNonFinite(ctx, t, counts, slot);
  const got = await counts.read();
  counts.dispose();
  return got;
}

test("nonfinite: GPU count = CPU reference over awkward sizes, NaN/+inf/−inf at the first and last element; edge values not counted", async () => {
  const ctx = await gpu();
  for (const dtype of ["f32", "f16"] as const) {
    for (const n of [1, 2, 7, 1023, 4097, 65537]) {
      for (const at of [[], [0], [n - 1], [0, n - 1], [0, n >> 1, n - 1, 1, 2, 3, 4, 5, 6, 7, 8]]) {
        const data = makeData(dtype, n, at);
        const want = countNonFiniteReference(data);
        assert.is(want, new Set(at.filter((i) => i < n)).size, `reference ${dtype} n=${n} at=${at}`);
        const t = ctx.upload(data, [n], dtype, `x_${dtype}_${n}`);
        const got = await gpuCount(ctx, t);
        t.dispose();
        assert.equal([...got], [1000, 1001 + want, 1002], `${dtype} n=${n} bad at [${at.join(", ")}]: got ${got[1]! - 1001}, want ${want} (neighbour slots untouched)`);
      }
    }
  }
});

test("nonfinite: every bit pattern of f16 (65,536 values) and the f32 edge patterns", async () => {
  const ctx = await gpu();
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const t = ctx.upload(all, [65536], "f16", "all-f16");
  assert.is(countNonFiniteReference(all), 2 * 1024, "reference: 2·1024 patterns with exponent 0x1f");
  assert.is((await gpuCount(ctx, t))[1]! - 1001, 2048);
  t.dispose();
  const f = new Float32Array(new Uint32Array([...F32_EDGE, ...F32_BAD]).buffer);
  const tf = ctx.upload(f, [f.length], "f32", "edge-f32");
  assert.is((await gpuCount(ctx, tf))[1]! - 1001, F32_BAD.length);
  tf.dispose();
});

test("nonfinite: f16 tensors are scanned on a device without shader-f16 (browsers' SwiftShader lacks it)", async () => {
  const ctx = await gpu({ disableFeatures: ["shader-f16"] });
  assert.not.ok(ctx.hasF16);
  for (const n of [1, 7, 4097]) {
    const data = makeData("f16", n, [0, n >> 1, n - 1]);
    const t = ctx.upload(data, [n], "f16", "no-f16");
    assert.is((await gpuCount(ctx, t))[1]! - 1001, countNonFiniteReference(data), `n=${n}`);
    t.dispose();
  }
});

test("nonfinite: the padding half of an odd f16 tensor is not counted", async () => {
  const ctx = await gpu();
  for (const n of [1, 7, 1023]) {
    const data = makeData("f16", n + 1, [n]); // element n (the padding half of a view of n elements) is NaN
    const big = ctx.upload(data, [n + 1], "f16", "padded");
    const odd = new Tensor(ctx, [n], "f16", big.buffer, "odd", false);
    assert.is((await gpuCount(ctx, odd))[1]! - 1001, 0, `n=${n}: padding NaN counted`);
    assert.is((await gpuCount(ctx, big))[1]! - 1001, 1, `n=${n + 1}: NaN missed`);
    big.dispose();
  }
});

test("nonfinite: tensors above the binding limit (forced 64 KiB) are scanned in windows, boundary elements included", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    for (const [dtype, n] of [["f32", 40001], ["f16", 70001], ["f16", 65536 * 2]] as const) {
      const perWindow = dtype === "f32" ? 16384 : 32768; // elements per 64 KiB window
      const at = [0, perWindow - 1, perWindow, 2 * perWindow - 1, 2 * perWindow, n - 1];
      const data = makeData(dtype, n, at);
      const t = ctx.upload(data, [n], dtype, `big_${dtype}`);
      const before = ctx.stats.dispatches;
      const got = await gpuCount(ctx, t);
      assert.ok(ctx.stats.dispatches - before >= 3, `${dtype} n=${n}: expected ≥ 3 window dispatches`);
      assert.is(got[1]! - 1001, countNonFiniteReference(data), `${dtype} n=${n} windowed`);
      assert.is(got[1]! - 1001, at.length);
      t.dispose();
    }
  });
});

test("nonfinite: NonFiniteScan checks many tensors with one readback and names the bad ones", async () => {
  const ctx = await gpu();
  const scan = NonFiniteScan.create(ctx, 20);
  const tensors: Tensor[] = [];
  const want: { name: string; count: number }[] = [];
  for (let i = 0; i < 20; i++) {
    const dtype = i % 2 ? "f16" : "f32";
    const n = 1 + rng.int(3000);
    const at = i % 7 === 3 ? [rng.int(n), n - 1] : [];
    const data = makeData(dtype, n, at);
    const t = ctx.upload(data, [n], dtype, `t${i}`);
    tensors.push(t);
    await scan.add(t);
    const c = countNonFiniteReference(data);
    if (c > 0) want.push({ name: `t${i}`, count: c });
  }
  assert.ok(want.length >= 2);
  const before = ctx.stats.readbacks;
  assert.equal(await scan.read(), want);
  assert.is(ctx.stats.readbacks - before, 1, "one readback for all tensors");
  await assertRejects(() => scan.add(tensors[0]!), Error, [/more than 20 tensors/], "capacity");
  scan.dispose();
  for (const t of tensors) t.dispose();
});

// ------------------------------------------------------------------ the loader refuses non-finite weights

/** Copies a fixture model and overwrites element `index` (or every element) of `tensor` with raw bits (in whichever shard holds it). */
function poisonedCopy(fixture: string, tensor: string, index: number | "all", bits: number): string {
  const dir = join(scratchDir("nonfinite"), fixture);
  cpSync(join(FIXTURE_ROOT, fixture), dir, { recursive: true });
  return poison(dir, tensor, index, bits);
}

function poison(dir: string, tensor: string, index: number | "all", bits: number): string {
  for (const f of readdirSync(dir).filter((n) => n.startsWith("model") && n.endsWith(".safetensors"))) {
    const path = join(dir, f);
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; data_offsets: [number, number] }>;
    const info = header[tensor];
    if (!info) continue;
    const size = info.dtype === "F32" ? 4 : 2;
    const [begin, end] = info.data_offsets;
    for (let at = 8 + n + begin + (index === "all" ? 0 : index * size); at < 8 + n + (index === "all" ? end : begin + (index + 1) * size); at += size) {
      if (size === 4) bytes.writeUInt32LE(bits >>> 0, at);
      else bytes.writeUInt16LE(bits, at);
    }
    writeFileSync(path, bytes);
    return dir;
  }
  throw new Error(`${dir} has no tensor ${tensor}`);
}

test("loading: one NaN/inf in any float dtype is refused with a one-line LoadError naming the file, tensor and count", async () => {
  const ctx = await gpu();
  const cases: [string, string, number, number, RegExp][] = [
    ["llama-gqa-f32", "model.layers.1.mlp.down_proj.weight", 0, 0x7fc00000, /model\.safetensors', tensor 'model\.layers\.1\.mlp\.down_proj\.weight': 1 NaN/],
    ["qwen2-bias-tied-f16", "model.layers.0.self_attn.q_proj.bias", 3, 0x7c00, /tensor 'model\.layers\.0\.self_attn\.q_proj\.bias': 1 NaN/],
    ["llama3-scaled-bf16-sharded", "model.norm.weight", 95, 0xff80, /model-0000\d-of-00002\.safetensors', tensor 'model\.norm\.weight'/],
  ];
  for (const [fixture, tensor, index, bits, pattern] of cases) {
    const dir = poisonedCopy(fixture, tensor, index, bits);
    for (const dtype of ["auto", "f32"] as const) {
      const e = await assertRejects(() => loadModel(ctx, dir, { dtype }), LoadError, [pattern, /non-finite weights/], `${fixture} ${dtype}`);
      assert.not.match(e.message, /\n/, "one line");
    }
  }
  // several bad tensors: the first named with its count, the others listed, still one line
  const many = poisonedCopy("llama-gqa-f32", "model.layers.0.mlp.up_proj.weight", "all", 0x7f800000);
  for (const t of ["model.norm.weight", "lm_head.weight", "model.layers.1.input_layernorm.weight", "model.embed_tokens.weight"]) poison(many, t, 5, 0x7fc00001);
  const e = await assertRejects(() => loadModel(ctx, many), LoadError, [/tensor '[^']+': \d+ NaN\/infinite value\(s\) \(and 4 more tensor\(s\): '[^']+', '[^']+', '[^']+', …\)/], "five bad tensors");
  assert.not.match(e.message, /\n/);
  // f16 weights kept as f16 storage on a device without shader-f16: still scanned
  const noF16 = await gpu({ disableFeatures: ["shader-f16"] });
  await assertRejects(() => loadModel(noF16, poisonedCopy("qwen2-bias-tied-f16", "model.embed_tokens.weight", 0, 0xfc00), { dtype: "f16" }), LoadError, [/tensor 'model\.embed_tokens\.weight': 1 NaN/], "no shader-f16");
  // the unpoisoned fixture loads, and one readback covers the whole check
  const before = ctx.stats.readbacks;
  const m = await loadModel(ctx, join(FIXTURE_ROOT, "qwen2-bias-tied-f16"));
  assert.is(ctx.stats.readbacks - before, 1);
  for (const t of m.weights.values()) t.dispose();
});

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli.js");
/** Runs the CLI; returns the exit code, stdout and the stderr lines that are not Dawn's warnings. */
function onegen(...args: string[]): { status: number | null; stdout: string; lines: string[]; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines: r.stderr.split("\n").filter((l) => l !== "" && !/artificially reduced|XDG_RUNTIME_DIR/.test(l)) };
}

test("loading: `onegen generate` on a model with one NaN exits 1 with one line naming the tensor", () => {
  const dir = poisonedCopy("llama-gqa-f32", "model.layers.0.self_attn.k_proj.weight", 17, 0xffc00000);
  const r = onegen("generate", "--model", dir, "--ids", "1,2,3", "--max-new-tokens", "8", "--quiet");
  assert.is(r.status, 1, r.stderr);
  assert.is(r.stdout, "");
  assert.is(r.lines.length, 1, r.stderr);
  assert.match(r.lines[0]!, /^onegen generate: '.*model\.safetensors', tensor 'model\.layers\.0\.self_attn\.k_proj\.weight': 1 NaN\/infinite value/);
});

// ------------------------------------------------------------------ non-finite logits during generation

test("generation: a NaN embedding row reached mid-run stops with NonFiniteError naming the position; the session stays usable", async () => {
  const ctx = await gpu();
  const m = await loadDecoder(ctx, join(FIXTURE_ROOT, "llama-gqa-f32"), { noTokenizer: true });
  const PROMPT = [5, 17, 99, 3, 250, 42, 7];
  const opts = { temperature: 0.7, topP: 0.9, seed: 3, stepsPerRead: 4 };
  const run = async (s: Session, n: number, into: number[] = []): Promise<number[]> => {
    for await (const t of s.generate({ maxNewTokens: n, ...opts })) into.push(t.id);
    return into;
  };
  const clean = new Session(m.decoder, m.decoder.createCache(64, "f32"));
  await clean.append(PROMPT);
  const g = await run(clean, 8);
  clean.dispose();
  // the first generated token j ≥ 1 that is new: feeding it is the first use of its embedding row
  const j = g.findIndex((id, i) => i >= 1 && !PROMPT.includes(id) && !g.slice(0, i).includes(id));
  assert.ok(j >= 1, `no fresh token in ${g}`);
  const embed = m.decoder.weights.embed;
  const D = m.config.hiddenSize;
  const row = (await embed.read()).slice(g[j]! * D, (g[j]! + 1) * D) as Float32Array;
  ctx.write(embed, new Float32Array(D).fill(NaN), g[j]! * D);
  const s = new Session(m.decoder, m.decoder.createCache(64, "f32"));
  await s.append(PROMPT);
  const got: number[] = [];
  const e = await assertRejects(() => run(s, 8, got), NonFiniteError, [new RegExp(`logits for position ${PROMPT.length + j + 1} hold NaN or infinity`), new RegExp(`stopped after ${j + 1} generated`)], "NaN row");
  assert.not.match(e.message, /\n/);
  assert.equal(got, g.slice(0, j + 1), "the tokens before the bad step are streamed");
  assert.equal(s.ids, [...PROMPT, ...got]);
  // with the row restored, the same session continues from its last good token
  ctx.write(embed, row, g[j]! * D);
  const next = async (x: Session) => {
    const ids: number[] = [];
    for await (const t of x.generate({ maxNewTokens: 1, temperature: 0 })) ids.push(t.id);
    return { id: ids[0] };
  };
  const again = await next(s);
  const ref = new Session(m.decoder, m.decoder.createCache(64, "f32"));
  await ref.append([...PROMPT, ...got]);
  assert.is(again.id, (await next(ref)).id, "continuation equals a clean session's");
  ref.dispose();
  s.dispose();
  m.dispose();
});

test("overflow: finite weights that overflow the activations pass loading; `onegen forward` and `generate` exit 1 naming the position, nothing written", () => {
  // every final-norm weight = f32 max: the normed hidden state (|x̂_i| > 1 somewhere) overflows to ±inf
  const dir = poisonedCopy("llama-gqa-f32", "model.norm.weight", "all", 0x7f7fffff);
  const out = join(scratchDir("nonfinite-out"), "fwd.safetensors");
  const f = onegen("forward", "--model", dir, "--ids", "1,2,3", "--out", out, "--quiet");
  assert.is(f.status, 1, f.stderr);
  assert.is(f.lines.length, 1, f.stderr);
  assert.match(f.lines[0]!, /^onegen forward: the logits at position 0 hold NaN or infinity .*nothing was written to '.*fwd\.safetensors'$/);
  assert.not.ok(existsSync(out), "no output file");
  assert.not.ok(existsSync(out + ".tmp"), "no temporary file");
  const g = onegen("generate", "--model", dir, "--ids", "1,2,3", "--max-new-tokens", "4", "--quiet");
  assert.is(g.status, 1, g.stderr);
  assert.is(g.lines.length, 1, g.stderr);
  assert.match(g.lines[0]!, /^onegen generate: the logits for position 3 hold NaN or infinity .*stopped after 0 generated token\(s\)$/);
});

test.run();
