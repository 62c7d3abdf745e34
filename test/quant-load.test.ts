// loadDecoder({ quantize }): the projection weights become q8_0 / q4_0 while streaming (embeddings,
// norms and lm_head keep their float dtype), the memory plan counts the packed bytes, Decoder.forward
// runs unchanged on them (prefill through matmul_q, decode through gemv_q), and the logits stay close
// to the unquantized model's; shapes the blocks cannot hold are refused before anything is uploaded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { argmaxRow, readGolden, relL2 } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { UnsupportedError } from "../src/errors.js";
import { quantBytes } from "../src/quant/formats.js";

/** Logits [T, V] of one forward over ids: a prefill of `prefill` ids, then one id at a time. */
async function logitsOf(model: LoadedDecoder, ids: number[], prefill: number): Promise<Float32Array> {
  const V = model.decoder.vocabSize;
  const session = new Session(model.decoder, model.decoder.createCache(ids.length, "f32"));
  const out = new Float32Array(ids.length * V);
  try {
    let at = 0;
    for (const n of [prefill, ...Array(ids.length - prefill).fill(1)]) {
      const r = await session.append(ids.slice(at, at + n), { logits: "all" });
      out.set((await (r.logits as Tensor).read()) as Float32Array, at * V);
      r.logits?.dispose();
      at += n;
    }
  } finally {
    session.dispose();
  }
  return out;
}

function top1Agreement(a: Float32Array, b: Float32Array, V: number): number {
  const T = a.length / V;
  let same = 0;
  for (let t = 0; t < T; t++) if (argmaxRow(a, t, V) === argmaxRow(b, t, V)) same++;
  return same / T;
}

test("quantize while loading: dtypes, packed sizes in the plan, logits near the unquantized model (prefill + decode)", async () => {
  const ctx = await gpu();
  const lines: string[] = [];
  for (const name of ["llama-gqa-f32", "llama3-scaled-bf16-sharded"]) {
    const golden = await readGolden(name);
    const base = await loadDecoder(ctx, modelFixture(name), { noTokenizer: true });
    const want = await logitsOf(base, golden.ids, 24);
    const V = base.decoder.vocabSize;
    const baseBytes = base.weightBytes;
    const floatDtype = base.decoder.weights.layers[0]!.q.dtype;
    base.dispose();
    for (const format of ["q8_0", "q4_0"] as const) {
      const live = ctx.pool.stats.liveBytes;
      const m = await loadDecoder(ctx, modelFixture(name), { noTokenizer: true, quantize: format });
      try {
        const w = m.decoder.weights;
        for (const t of [w.layers[0]!.q, w.layers[1]!.down, w.layers[1]!.gate]) assert.is(t.dtype, format, t.label);
        for (const t of [w.embed, w.lmHead, w.norm, w.layers[0]!.inputNorm]) assert.is(t.dtype, floatDtype, t.label);
        assert.is(m.quantization, `${format} (quantized while loading)`);
        // the plan's bytes are the packed sizes: float bytes less the projections' difference
        const c = m.config;
        const proj = c.numLayers * (2 * c.numHeads * c.headDim * c.hiddenSize + 2 * c.numKvHeads * c.headDim * c.hiddenSize + 3 * c.intermediateSize * c.hiddenSize);
        const fBytes = floatDtype === "f32" ? 4 : 2;
        assert.is(m.weightBytes, baseBytes - proj * fBytes + quantBytes(proj / 32, 32, format).total, "plan bytes");
        assert.ok(ctx.pool.stats.liveBytes - live >= m.weightBytes, "tensors as planned");
        const got = await logitsOf(m, golden.ids, 24);
        const e = relL2(got, want, V);
        const agree = top1Agreement(got, want, V);
        lines.push(`${name} ${format}: logits rel L2 vs unquantized ${e.toExponential(2)}, top-1 agreement ${(agree * 100).toFixed(1)}% over ${golden.ids.length} positions`);
        // Bounds well above the figures measured (see the log) and far below a broken model (rel L2 ~1, ~1/V agreement).
        assert.ok(e < (format === "q8_0" ? 0.03 : 0.3), `${name} ${format}: rel L2 ${e}`);
        assert.ok(agree >= (format === "q8_0" ? 0.9 : 0.4), `${name} ${format}: top-1 agreement ${agree}`);
      } finally {
        m.dispose();
      }
    }
  }
  console.log(lines.join("\n"));
});

test("refused before upload: a projection whose K is not a multiple of 32 (Mistral head_dim 24: o_proj K = 168), named", async () => {
  const ctx = await gpu();
  const live = ctx.pool.stats.liveBytes;
  await assertRejects(() => loadDecoder(ctx, modelFixture("mistral-headdim-gqa7-f16"), { noTokenizer: true, quantize: "q4_0" }), UnsupportedError, [/model\.layers\.0\.self_attn\.q_proj\.weight/, /\[168, 56\]/, /multiple of 32/, /nothing was uploaded/], "K = 56");
  assert.is(ctx.pool.stats.liveBytes, live, "nothing allocated");
});

test.run();
