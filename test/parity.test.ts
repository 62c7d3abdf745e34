// Model parity: our decoder against golden logits and final-norm hidden states from an
// independent float64 PyTorch implementation (scripts/golden/make_golden.py), for every fixture
// (Llama GQA f32; Llama-3 RoPE scaling, BF16, sharded; Qwen2 q/k/v bias + tied embeddings, F16;
// Mistral explicit head_dim with GQA 7, F16; Llama linear RoPE in the rope_parameters layout).
//
// Tolerance (relative L2 per schedule): 5e-3 with f16 weights (products of f16-rounded
// activations and an f16 KV cache, 11-bit mantissas); with f32 weights 1e-3 over an f16 KV cache
// (k and v rounded to 2^-11 relative) and 1e-5 over an f32 cache (f32 arithmetic only; the float32
// PyTorch run differs from the float64 goldens by ~6e-7).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { fixtureNames, readGolden, relL2 } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import type { Tensor } from "../src/gpu/tensor.js";

type Schedule = { name: string; chunks: number[] };
const SCHEDULES: Schedule[] = [
  { name: "prefill-only", chunks: [40] },
  { name: "decode-only", chunks: Array(40).fill(1) },
  { name: "mixed (prefill, decode, injected ids, decode)", chunks: [13, 1, 1, 9, 1, 15] },
];

for (const name of fixtureNames()) {
  test(`parity: ${name}`, async () => {
    const ctx = await gpu();
    const golden = await readGolden(name);
    const model = await loadDecoder(ctx, modelFixture(name), { noTokenizer: true });
    const f32 = model.decoder.weights.layers[0]!.q.dtype === "f32";
    const caches: ("f16" | "f32")[] = f32 ? ["f16", "f32"] : ["f16"];
    const log: string[] = [];
    try {
      const V = golden.vocab, D = golden.hiddenSize, T = golden.ids.length;
      assert.is(model.decoder.vocabSize, V);
      for (const cacheDtype of caches) {
        const tol = !f32 ? 5e-3 : cacheDtype === "f32" ? 1e-5 : 1e-3;
        for (const sched of SCHEDULES) {
          const t0 = performance.now();
          const session = new Session(model.decoder, model.decoder.createCache(T, cacheDtype));
          const logits = new Float32Array(T * V);
          const hidden = new Float32Array(T * D);
          let at = 0;
          for (const n of sched.chunks) {
            const out = await session.append(golden.ids.slice(at, at + n), { logits: "all", keepHidden: true });
            logits.set(await (out.logits as Tensor).read() as Float32Array, at * V);
            hidden.set(await (out.hidden as Tensor).read() as Float32Array, at * D);
            out.logits?.dispose();
            out.hidden?.dispose();
            at += n;
          }
          session.dispose();
          const eL = relL2(logits, golden.logits, V);
          const eH = relL2(hidden, golden.hidden, D);
          log.push(`${sched.name}/${cacheDtype}: logits ${eL.toExponential(1)} hidden ${eH.toExponential(1)} (${(performance.now() - t0).toFixed(0)} ms)`);
          const what = `${name} ${sched.name} (weights ${f32 ? "f32" : "f16"}, cache ${cacheDtype})`;
          assert.ok(eL <= tol, `${what}: logits relative L2 ${eL.toExponential(2)} > ${tol}`);
          assert.ok(eH <= tol, `${what}: hidden relative L2 ${eH.toExponential(2)} > ${tol}`);
        }
      }
      if ((globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.PARITY_VERBOSE) console.log(`\n${name}: ${log.join("; ")}`);
    } finally {
      model.dispose();
    }
  });
}

test.run();
