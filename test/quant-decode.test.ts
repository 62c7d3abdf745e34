// Decoding with quantized projections (issue 17, item 4): Session.generate runs the captured decode
// step, whose fused projections (gemv_step: q|k|v with the norm prologue, o + residual, gate|up +
// SwiGLU with the norm prologue, down + residual) read the q8_0 / q4_0 blocks directly. The
// independent check: greedy ids equal the argmax of a full prefill forward (Session.append with
// logits "all", i.e. Decoder.forward with linear → gemv_q / matmul_q) of the same quantized model
// over the generated sequence, at every generated position (test/decode-hook.test.ts's pattern).
// Fixtures: llama-gqa-f32 (GQA, f32 float tensors) and qwen2-bias-tied-f16 (q/k/v biases, f16,
// tied embeddings); both have K a multiple of 32 for every projection.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { argmaxRow } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session, type GeneratedToken } from "../src/model/session.js";
import type { Tensor } from "../src/gpu/tensor.js";

const PROMPT = [5, 17, 99, 3, 250, 42, 7];
const N = 8;

async function greedyRows(m: LoadedDecoder, seq: number[]): Promise<Float32Array> {
  const f = new Session(m.decoder, m.decoder.createCache(seq.length, "f32"));
  const out = await f.append(seq, { logits: "all" });
  const logits = (await (out.logits as Tensor).read()) as Float32Array;
  (out.logits as Tensor).dispose();
  f.dispose();
  return logits;
}

for (const fixture of ["llama-gqa-f32", "qwen2-bias-tied-f16"]) {
  for (const format of ["q8_0", "q4_0"] as const) {
    test(`${fixture} ${format}: greedy decode through the captured step equals a full forward's argmax`, async () => {
      const ctx = await gpu();
      const m = await loadDecoder(ctx, modelFixture(fixture), { noTokenizer: true, quantize: format });
      try {
        const L0 = m.decoder.weights.layers[0]!;
        for (const w of [L0.q, L0.k, L0.v, L0.o, L0.gate, L0.up, L0.down]) assert.is(w.dtype, format, `${w.label} is ${format}`);
        const V = m.decoder.vocabSize;
        const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N, "f32"));
        await s.append(PROMPT);
        const toks: GeneratedToken[] = [];
        for await (const t of s.generate({ maxNewTokens: N, stepsPerRead: 3 })) toks.push(t);
        assert.is(toks.length, N);
        assert.ok(s.stepDispatches <= 7 * m.decoder.config.numLayers + 4, `${s.stepDispatches} dispatches per step`);
        s.dispose();
        const ids = toks.map((t) => t.id);
        const logits = await greedyRows(m, [...PROMPT, ...ids]);
        for (let j = 0; j < N; j++) assert.is(ids[j], argmaxRow(logits, PROMPT.length - 1 + j, V), `token ${j} of ${ids.join(",")}`);
      } finally {
        m.dispose();
      }
    });
  }
}

test.run();
