// quantizeModelDir / `onegen quantize`: a quantized model directory (PREFIX.qweight U8 + PREFIX.scales
// F16, config.json "quantization") that loads without re-quantizing into exactly the bytes and
// logits of quantizing while loading; sharded output; the output rules (never the input or inside
// it, never a directory we did not write, our own output replaced); refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { FIXTURE_ROOT, readGolden } from "./helpers/golden.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { openCheckpoint } from "../src/model/checkpoint.js";
import { quantizeModelDir } from "../src/model/save-quantized.js";
import { LoadError, UnsupportedError, UsageError } from "../src/errors.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { scratchDir } from "./helpers/scratch.js";

const fixture = (name: string) => join(FIXTURE_ROOT, name);

async function logits(dir: string, quantize: "q8_0" | "q4_0" | undefined, ids: number[]): Promise<{ logits: Float32Array; bytes: Uint8Array[]; dtypes: string[] }> {
  const ctx = await gpu();
  const m = await loadDecoder(ctx, dir, { noTokenizer: true, ...(quantize ? { quantize } : {}) });
  try {
    const L = m.decoder.weights.layers;
    const picks = [L[0]!.q, L[1]!.down, L[0]!.v];
    const bytes = await Promise.all(picks.map(async (t) => new Uint8Array((await t.read()) as ArrayLike<number> as Uint8Array)));
    const s = new Session(m.decoder, m.decoder.createCache(ids.length, "f32"));
    const r = await s.append(ids, { logits: "all" });
    const out = (await (r.logits as Tensor).read()) as Float32Array;
    r.logits?.dispose();
    s.dispose();
    return { logits: out, bytes, dtypes: picks.map((t) => t.dtype) };
  } finally {
    m.dispose();
  }
}

test("quantized directory loads as stored: same bytes and logits as quantizing while loading; layout on disk", async () => {
  const tmp = scratchDir("quant");
  const ids = (await readGolden("llama3-scaled-bf16-sharded")).ids.slice(0, 12);
  for (const format of ["q8_0", "q4_0"] as const) {
    const out = join(tmp, format);
    const s = await quantizeModelDir(fixture("llama3-scaled-bf16-sharded"), out, format, { maxShardBytes: 100_000 });
    assert.is(s.quantized, 14);
    assert.ok(s.shards > 1, "sharded");
    const config = JSON.parse(await readFile(join(out, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(config.quantization, { format, layout: "onegen-split-blocks-v1", block_size: 32, tensors: "projections" });
    const ck = await openCheckpoint(out);
    try {
      const q = ck.get("model.layers.0.mlp.down_proj.qweight").info; // down_proj [96, 224]
      const sc = ck.get("model.layers.0.mlp.down_proj.scales").info;
      assert.is(q.dtype, "U8");
      assert.equal(q.shape, [96, format === "q8_0" ? 224 : 112]);
      assert.is(sc.dtype, "F16");
      assert.equal(sc.shape, [96, 7]);
      assert.ok(!ck.has("model.layers.0.mlp.down_proj.weight"));
      assert.is(ck.get("model.embed_tokens.weight").info.dtype, "BF16", "embeddings copied as stored");
    } finally {
      await ck.close();
    }
    const onLoad = await logits(fixture("llama3-scaled-bf16-sharded"), format, ids);
    const stored = await logits(out, undefined, ids);
    assert.equal(stored.dtypes, [format, format, format]);
    for (let i = 0; i < onLoad.bytes.length; i++) assert.ok(Buffer.from(onLoad.bytes[i]!).equals(Buffer.from(stored.bytes[i]!)), `${format}: tensor ${i} bytes differ`);
    assert.equal([...stored.logits], [...onLoad.logits], `${format}: logits`);
    // loading as stored with the same --quantize is fine; another format is refused
    const ctx = await gpu();
    (await loadDecoder(ctx, out, { noTokenizer: true, quantize: format })).dispose();
    const other = format === "q8_0" ? "q4_0" : "q8_0";
    await assertRejects(() => loadDecoder(ctx, out, { noTokenizer: true, quantize: other }), UnsupportedError, [/stored as/, new RegExp(format), new RegExp(other)], "other format");
    // quantizing a quantized directory is refused
    await assertRejects(() => quantizeModelDir(out, join(tmp, `${format}-again`), format), UnsupportedError, [/already quantized/], "re-quantize");
  }
});

test("output rules: not the input, not inside it, not a foreign directory; our own output is replaced", async () => {
  const tmp = scratchDir("quant");
  const src = fixture("llama-gqa-f32");
  await assertRejects(() => quantizeModelDir(src, src, "q8_0", { flag: "--out", inputFlag: "--model" }), UsageError, [/--out/, /is the --model input/], "out = in");
  await assertRejects(() => quantizeModelDir(src, join(src, "q"), "q8_0", { flag: "--out", inputFlag: "--model" }), UsageError, [/--out/, /inside the --model directory/], "out inside in");
  const foreign = join(tmp, "foreign");
  await mkdir(foreign);
  await writeFile(join(foreign, "notes.txt"), "mine");
  await assertRejects(() => quantizeModelDir(src, foreign, "q8_0", { flag: "--out" }), UsageError, [/--out/, /did not write/], "foreign dir");
  assert.is(await readFile(join(foreign, "notes.txt"), "utf8"), "mine");
  const out = join(tmp, "q");
  await quantizeModelDir(src, out, "q8_0");
  await quantizeModelDir(src, out, "q4_0"); // replaces our own output
  assert.is((JSON.parse(await readFile(join(out, "config.json"), "utf8")) as { quantization: { format: string } }).quantization.format, "q4_0");
  // a K that is not a multiple of 32 is refused before anything is written
  await assertRejects(() => quantizeModelDir(fixture("mistral-headdim-gqa7-f16"), join(tmp, "m"), "q4_0"), UnsupportedError, [/q_proj\.weight/, /\[168, 56\]/, /nothing was written/], "K = 56");
  // a stored pair with a wrong shape is refused by the loader, naming the tensors
  const bad = join(tmp, "bad");
  await quantizeModelDir(src, bad, "q8_0");
  const cfg = JSON.parse(await readFile(join(bad, "config.json"), "utf8")) as { quantization: { format: string } };
  cfg.quantization.format = "q4_0"; // the qweight widths are now those of q8_0
  await writeFile(join(bad, "config.json"), JSON.stringify(cfg));
  const ctx = await gpu();
  await assertRejects(() => loadDecoder(ctx, bad, { noTokenizer: true }), LoadError, [/qweight/, /scales/, /not a q4_0 weight/], "wrong widths");
});

test.run();
