// Logits check of the GGUF converter (not part of `npm test`: it needs node-llama-cpp):
//
//   ONEGEN_PEER_NODE_LLAMA_CPP=/path/to/node-llama-cpp node dist/bench/peer/logits.js [--fixtures a,b] [--types F32,F16,Q8_0]
//
// For each fixture of test/fixtures/models that maps onto llama.cpp's `llama` architecture, and each
// GGUF type: convert it (bench/peer/convert.ts) into a temporary directory, evaluate the fixture's
// golden ids with llama.cpp on the CPU (logits of every position, controlledEvaluate, F32 KV cache,
// no flash attention), the same ids with our runtime (Session.append, logits "all"), and print the
// relative L2 (‖a − b‖ / ‖b‖ over [T, V]) of llama.cpp against the float64 golden, ours against the
// golden, and llama.cpp against ours, for the first token and for all positions, plus top-1 agreement.
// For Q8_0 / Q4_0 our runtime also runs the dequantized weights (quantizeQ8_0 → dequantizeQ8_0 of
// every matrix, written as an F32 model directory: blocks lie within rows, so the q/k row
// permutation commutes with them), which is what llama.cpp computes with, up to its own Q8_0
// rounding of the activations: "llamaVsOursDequant". A wrong RoPE permutation or block layout
// shows as an error near 1 (the untouched first position is the exception: RoPE at position 0 is
// the identity, hence the all-positions column).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "../../src/cli/args.js";
import { openDevice } from "../../src/gpu/device.js";
import { openFileSource } from "../../src/io/source.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { writeSafetensors, type TensorToWrite } from "../../src/io/safetensors-write.js";
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from "../../src/io/ggml-quants.js";
import type { GpuContext } from "../../src/gpu/context.js";
import { loadDecoder } from "../../src/model/load.js";
import { Session } from "../../src/model/session.js";
import { convertToGguf, type GgufOutType } from "./convert.js";
import { findNodeLlamaCpp, loadLlama } from "./llama.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function relL2(a: Float32Array, b: Float32Array, n = a.length): number {
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function top1Agreement(a: Float32Array, b: Float32Array, T: number, V: number): number {
  let same = 0;
  const argmax = (x: Float32Array, t: number) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (x[t * V + v]! > x[t * V + best]!) best = v;
    return best;
  };
  for (let t = 0; t < T; t++) if (argmax(a, t) === argmax(b, t)) same++;
  return same / T;
}

/** Our logits [T, V] for `ids` on the model in `dir` (f32 weights, one prefill). */
async function ourLogits(ctx: GpuContext, dir: string, ids: number[]): Promise<Float32Array> {
  const m = await loadDecoder(ctx, dir, { dtype: "f32", noTokenizer: true });
  const session = Session.create(m.decoder, ids.length + 1);
  const out = await session.append(ids, { logits: "all" });
  const logits = await ctx.readF32(out.logits!);
  out.logits!.dispose();
  session.dispose();
  m.dispose();
  return logits;
}

/** An F32 copy of model directory `dir` whose matrices went through `type`'s blocks and back. */
async function dequantizedCopy(dir: string, to: string, type: "Q8_0" | "Q4_0"): Promise<string> {
  mkdirSync(to, { recursive: true });
  copyFileSync(join(dir, "config.json"), join(to, "config.json"));
  const st = await SafetensorsFile.open(await openFileSource(join(dir, "model.safetensors")));
  const tensors = new Map<string, TensorToWrite>();
  for (const name of st.names()) {
    const info = st.info(name);
    let x = await st.readF32(name);
    if (info.shape.length === 2) x = type === "Q8_0" ? dequantizeQ8_0(quantizeQ8_0(x)) : dequantizeQ4_0(quantizeQ4_0(x));
    tensors.set(name, { dtype: "F32", shape: info.shape, data: x });
  }
  await st.close();
  writeFileSync(join(to, "model.safetensors"), writeSafetensors(tensors));
  return to;
}

async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ["fixtures", "types"], booleans: [] }, "peer logits");
  const fixtures = (args.flags.get("fixtures") ?? "llama-gqa-f32,mistral-headdim-gqa7-f16").split(",");
  const types = (args.flags.get("types") ?? "F32,F16,Q8_0,Q4_0").split(",") as GgufOutType[];
  const pkg = findNodeLlamaCpp(repoRoot);
  if ("missing" in pkg) {
    console.error(`peer logits: ${pkg.missing}`);
    process.exitCode = 1;
    return;
  }
  const tmp = mkdtempSync(join(tmpdir(), "onegen-peer-logits-"));
  const { llama, info } = await loadLlama(pkg.found, "cpu", 2);
  const ctx = await openDevice();
  console.log(`llama.cpp ${info.llamaCpp} (node-llama-cpp ${info.nodeLlamaCpp}, ${info.backend}); ours on ${ctx.adapter.description}`);
  try {
    for (const fx of fixtures) {
      const dir = join(repoRoot, "test", "fixtures", "models", fx);
      const golden = await SafetensorsFile.open(await openFileSource(join(dir, "golden.safetensors")));
      const ids = Array.from((await golden.readTensor("ids")).data as Int32Array);
      const want = await golden.readF32("logits");
      await golden.close();
      const T = ids.length, V = want.length / T;
      const ours = await ourLogits(ctx, dir, ids);
      for (const type of types) {
        const gguf = join(tmp, `${fx}-${type}.gguf`);
        let conv;
        try {
          conv = await convertToGguf(dir, gguf, { type });
        } catch (e) {
          console.log(`${fx} ${type}: not converted: ${(e as Error).message}`);
          continue;
        }
        const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
        const context = await model.createContext({ contextSize: Math.max(64, T + 8), batchSize: Math.max(64, T + 8), sequences: 1, threads: 2, flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" });
        const res = await context.getSequence().controlledEvaluate(ids.map((t) => [t, { generateNext: { logits: true } }] as [number, Record<string, unknown>]));
        const theirs = new Float32Array(T * V).fill(NaN);
        res.forEach((r, t) => {
          for (const [tok, v] of r?.next?.logits ?? new Map<number, number>()) theirs[t * V + tok] = v;
        });
        await context.dispose();
        await model.dispose();
        if (theirs.some(Number.isNaN)) throw new Error(`${fx} ${type}: llama.cpp returned incomplete logits`);
        const dq = type === "Q8_0" || type === "Q4_0" ? await ourLogits(ctx, await dequantizedCopy(dir, join(tmp, `${fx}-${type}-dequant`), type), ids) : null;
        const row = {
          fixture: fx,
          type,
          T,
          V,
          ggufBytes: conv.bytes,
          first: { llamaVsGolden: relL2(theirs, want, V), oursVsGolden: relL2(ours, want, V), llamaVsOurs: relL2(theirs, ours, V) },
          all: { llamaVsGolden: relL2(theirs, want), oursVsGolden: relL2(ours, want), llamaVsOurs: relL2(theirs, ours) },
          ...(dq ? { llamaVsOursDequant: { first: relL2(theirs, dq, V), all: relL2(theirs, dq) }, oursDequantVsGolden: relL2(dq, want) } : {}),
          top1: { llamaVsGolden: top1Agreement(theirs, want, T, V), oursVsGolden: top1Agreement(ours, want, T, V) },
        };
        console.log(JSON.stringify(row));
      }
    }
  } finally {
    ctx.destroy();
    await llama.dispose();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exitCode = 1;
});
