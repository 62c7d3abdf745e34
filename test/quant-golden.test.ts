// Quantized models against independent references (scripts/golden/make_quant_golden.py, float64
// PyTorch; test/fixtures/quant/<fixture>.<format>.safetensors):
//   1. our host quantizer's bytes (quants and f16 scales of every projection, as uploaded) equal
//      those of the script's own port of ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref;
//   2. the GPU logits and final-norm hidden states equal the float64 forward on the dequantized
//      weights within relative L2 1e-3 (issue 17's bound; the kernels dequantize exactly, so only
//      f32 summation order differs: measured ~1e-6, see the log), for a prefill (matmul_q) and a
//      token-by-token decode (gemv_q). Weights other than the projections are loaded as f32 and
//      the KV cache is f32, so nothing else rounds.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { fixtureSource, modelFixture } from "./helpers/fixtures.js";
import { relL2 } from "./helpers/golden.js";
import { SafetensorsFile, toF32 } from "../src/io/safetensors.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { HF_LAYER_FIELDS } from "../src/model/decoder.js";
import type { Tensor } from "../src/gpu/tensor.js";

const TOL = 1e-3;
const FIXTURES = ["llama-gqa-f32", "llama3-scaled-bf16-sharded", "qwen2-bias-tied-f16"];
const PROJ = HF_LAYER_FIELDS.filter(([, n]) => n.endsWith("_proj.weight"));

for (const name of FIXTURES) {
  test(`quantized golden: ${name}`, async () => {
    const ctx = await gpu();
    const log: string[] = [];
    for (const format of ["q8_0", "q4_0"] as const) {
      const f = await SafetensorsFile.open(await fixtureSource(`quant/${name}.${format}.safetensors`));
      const m = await loadDecoder(ctx, modelFixture(name), { noTokenizer: true, dtype: "f32", quantize: format });
      try {
        // 1. bytes of every projection against the independent quantizer
        for (let l = 0; l < m.config.numLayers; l++) {
          for (const [field, hf] of PROJ) {
            const prefix = `model.layers.${l}.${hf.replace(/\.weight$/, "")}`;
            const want = new Uint8Array([...(await f.readBytes(`${prefix}.qweight`)), ...(await f.readBytes(`${prefix}.scales`))]);
            const got = (await (m.decoder.weights.layers[l]![field] as Tensor).read()) as Uint8Array;
            assert.is(got.length, want.length, `${prefix} ${format}: bytes`);
            const i = got.findIndex((b, j) => b !== want[j]);
            assert.ok(i < 0, `${prefix} ${format}: first differing byte ${i} (got ${got[i]}, want ${want[i]}) of ${want.length}`);
          }
        }
        // 2. logits and hidden states against the float64 forward on the dequantized weights
        const ids = Array.from((await f.readTensor("ids")).data as Int32Array);
        const gl = await f.readTensor("logits");
        const gh = await f.readTensor("hidden");
        const wantL = toF32(gl.data, gl.info.dtype);
        const wantH = toF32(gh.data, gh.info.dtype);
        const V = gl.info.shape[1]!, D = gh.info.shape[1]!, T = ids.length;
        for (const [sched, chunks] of [["prefill", [T]], ["decode", Array(T).fill(1) as number[]]] as const) {
          const s = new Session(m.decoder, m.decoder.createCache(T, "f32"));
          const L = new Float32Array(T * V);
          const H = new Float32Array(T * D);
          let at = 0;
          for (const n of chunks) {
            const r = await s.append(ids.slice(at, at + n), { logits: "all", keepHidden: true });
            L.set((await (r.logits as Tensor).read()) as Float32Array, at * V);
            H.set((await (r.hidden as Tensor).read()) as Float32Array, at * D);
            r.logits?.dispose();
            r.hidden?.dispose();
            at += n;
          }
          s.dispose();
          const eL = relL2(L, wantL, V);
          const eH = relL2(H, wantH, D);
          log.push(`${format} ${sched}: logits ${eL.toExponential(1)} hidden ${eH.toExponential(1)}`);
          assert.ok(eL <= TOL && eH <= TOL, `${name} ${format} ${sched}: rel L2 logits ${eL}, hidden ${eH} > ${TOL}`);
        }
      } finally {
        m.dispose();
        await f.close();
      }
    }
    console.log(`${name}: ${log.join("; ")}`);
  });
}

test.run();
