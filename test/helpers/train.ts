// Shared helpers of the training tests: the PyTorch step golden (scripts/golden/train_step.py)
// and a tiny in-memory model with a toy OneGen batch.
import * as assert from "uvu/assert";
import { assertClose } from "./check.js";
import { relL2 } from "./golden.js";
import { fixtureSource } from "./fixtures.js";
import { SafetensorsFile, toF32 } from "../../src/io/safetensors.js";
import type { TrainBatch } from "../../src/train/model.js";
import { IGNORE_LABEL, nextTokenLabels, type ContrastiveSpec } from "../../src/train/losses.js";
import { Decoder, type DecoderWeights } from "../../src/model/decoder.js";
import { computeInvFreq, parseModelConfig } from "../../src/model/config.js";
import type { GpuContext } from "../../src/gpu/context.js";
import type { Tensor } from "../../src/gpu/tensor.js";
import { Rng } from "../../src/util/rng.js";

export interface StepGolden {
  file: SafetensorsFile;
  batch: TrainBatch;
  target: Int32Array;
  rq: number;
  lambdaGen: number;
  lambdaRet: number;
  loraRank: number;
  loraAlpha: number;
  f32(name: string): Promise<Float32Array>;
  f64(name: string): Promise<Float64Array>;
}

export async function readStepGolden(): Promise<StepGolden> {
  const file = await SafetensorsFile.open(await fixtureSource("train/step.safetensors"));
  const i32 = async (n: string) => (await file.readTensor(n)).data as Int32Array;
  const spec = JSON.parse(file.metadata!["spec"]!) as { rq: number; docs: number[]; pairs: [number, number, number[]][]; tau: number; lambda_gen: number; lambda_ret: number; lora_r: number; lora_alpha: number };
  const ids = await i32("ids");
  const labels = await i32("labels");
  const retrieval: ContrastiveSpec = {
    docs: spec.docs,
    pairs: spec.pairs.map(([anchor, positive, negatives]) => ({ anchor, positive, negatives })),
    kind: "infonce",
    temperature: spec.tau,
    inBatch: true,
  };
  return {
    file,
    batch: {
      ids: Array.from(ids),
      lengths: Array.from(await i32("lengths")),
      labels: Uint32Array.from(labels, (l) => (l < 0 ? IGNORE_LABEL : l)),
      retrieval,
    },
    target: await i32("target"),
    rq: spec.rq,
    lambdaGen: spec.lambda_gen,
    lambdaRet: spec.lambda_ret,
    loraRank: spec.lora_r,
    loraAlpha: spec.lora_alpha,
    f32: async (n) => {
      const t = await file.readTensor(n);
      return toF32(t.data, t.info.dtype);
    },
    f64: async (n) => (await file.readTensor(n)).data as Float64Array,
  };
}

/** Relative L2 and element-wise comparison of one gradient; returns the relative L2. */
export function compareGrad(got: Float32Array, want: Float32Array, what: string): number {
  const e = relL2(got, want, 1);
  let mx = 0;
  for (const v of want) mx = Math.max(mx, Math.abs(v));
  assert.ok(e <= 1e-4, `${what}: relative L2 ${e} > 1e-4`);
  assertClose(got, want, { atol: 1e-4 * mx, rtol: 1e-3 }, what);
  return e;
}


/** A random tiny Llama (f32) built in memory. */
export function toyDecoder(ctx: GpuContext, seed: number, dims = { D: 32, L: 2, H: 2, Hkv: 1, F: 64, V: 48 }): { decoder: Decoder; dispose(): void } {
  const { D, L, H, Hkv, F, V } = dims;
  const hd = D / H;
  const config = parseModelConfig({
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: D, intermediate_size: F, num_hidden_layers: L,
    num_attention_heads: H, num_key_value_heads: Hkv, rms_norm_eps: 1e-5, vocab_size: V, max_position_embeddings: 64,
    rope_theta: 10000, tie_word_embeddings: false,
  });
  const rng = new Rng(seed);
  const all: Tensor[] = [];
  const t = (shape: number[], std: number, label: string, ones = false) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = ctx.upload(ones ? new Float32Array(n).fill(1) : rng.fillNormal(n, std), shape, "f32", label);
    all.push(x);
    return x;
  };
  const s = 1 / Math.sqrt(D);
  const weights: DecoderWeights = {
    embed: t([V, D], 1, "embed"),
    layers: Array.from({ length: L }, (_, l) => ({
      inputNorm: t([D], 0, `ln1.${l}`, true), q: t([H * hd, D], s, `q.${l}`), k: t([Hkv * hd, D], s, `k.${l}`), v: t([Hkv * hd, D], s, `v.${l}`),
      qBias: null, kBias: null, vBias: null, o: t([D, H * hd], s, `o.${l}`), oBias: null, postNorm: t([D], 0, `ln2.${l}`, true),
      gate: t([F, D], s, `gate.${l}`), gateBias: null, up: t([F, D], s, `up.${l}`), upBias: null, down: t([D, F], 1 / Math.sqrt(F), `down.${l}`), downBias: null,
    })),
    norm: t([D], 0, "norm", true),
    lmHead: t([V, D], s, "lm_head"),
    invFreq: ctx.upload(computeInvFreq(config), [hd / 2], "f32", "inv_freq"),
  };
  all.push(weights.invFreq);
  return { decoder: new Decoder(ctx, config, weights), dispose: () => all.forEach((x) => x.dispose()) };
}

/**
 * A toy OneGen batch: 4 documents "DOC key_i w w w" and 4 queries "Q key_i RQ a b c" where the
 * answer tokens a b c depend on the key; anchors are the RQ rows, documents their last rows.
 */
export function toyBatch(V: number): TrainBatch {
  const DOC = 1, Q = 2, RQ = 3;
  const ids: number[] = [];
  const lengths: number[] = [];
  const target: number[] = [];
  const docs: number[] = [];
  const anchors: number[] = [];
  for (let i = 0; i < 4; i++) {
    const key = 4 + i;
    const seq = [DOC, key, 10 + i, 14 + i, 18 + i];
    ids.push(...seq);
    target.push(0, 0, 0, 0, 0);
    lengths.push(seq.length);
    docs.push(ids.length - 1);
  }
  for (let i = 0; i < 4; i++) {
    const key = 4 + i;
    const seq = [Q, key, RQ, 22 + i, 30 + ((i * 3) % 8), Math.min(V - 1, 38 + 2 * i)];
    anchors.push(ids.length + 2);
    ids.push(...seq);
    target.push(0, 0, 1, 1, 1, 1);
    lengths.push(seq.length);
  }
  return {
    ids,
    lengths,
    labels: nextTokenLabels(ids, lengths, target, [RQ]),
    retrieval: { docs, pairs: anchors.map((anchor, i) => ({ anchor, positive: i, negatives: [(i + 1) % 4] })), temperature: 0.1, inBatch: true },
  };
}

