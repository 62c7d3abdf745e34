// A CPU forward of a Llama checkpoint composed of the ops' CPU references (src/ops/*: sums in
// float64, outputs rounded to f32 as the kernels store them), for checks that must not depend on
// the GPU's summation order. Slow (naive loops): small models and short sequences only.
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { openFileSource } from "../../src/io/source.js";
import { computeInvFreq, type ModelConfig } from "../../src/model/config.js";
import { embeddingReference } from "../../src/ops/embedding.js";
import { linearReference } from "../../src/ops/linear.js";
import { rmsnormReference } from "../../src/ops/rmsnorm.js";
import { ropeReference } from "../../src/ops/rope.js";
import { attentionReference } from "../../src/ops/attention.js";
import { swigluReference } from "../../src/ops/swiglu.js";
import { f32ArrayToF16 } from "../../src/util/f16.js";

export interface ReferenceModel {
  config: ModelConfig;
  /** Hugging Face tensor name → f32 values (biases absent when the checkpoint has none). */
  weights: Map<string, Float32Array>;
  invFreq: Float32Array;
}

/** Reads every tensor of a single-file checkpoint as f32. */
export async function loadReferenceModel(safetensorsPath: string, config: ModelConfig): Promise<ReferenceModel> {
  const file = await SafetensorsFile.open(await openFileSource(safetensorsPath));
  try {
    const weights = new Map<string, Float32Array>();
    for (const t of file.tensors) weights.set(t.name, await file.readF32(t.name));
    return { config, weights, invFreq: computeInvFreq(config) };
  } finally {
    await file.close();
  }
}

/**
 * Hidden states (final norm) [T, D] and logits [T, V] of `ids` from position 0, full causal
 * attention; K and V rounded to f16 first when `cache` is "f16" (as a session's KV cache stores
 * them).
 */
export function referenceForward(m: ReferenceModel, ids: readonly number[], cache: "f32" | "f16" = "f32"): { hidden: Float32Array; logits: Float32Array } {
  const c = m.config;
  const T = ids.length;
  const D = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim, I = c.intermediateSize, V = c.vocabSize;
  const w = (name: string): Float32Array => {
    const x = m.weights.get(name);
    if (!x) throw new Error(`referenceForward: no tensor '${name}'`);
    return x;
  };
  const b = (name: string): Float32Array | null => m.weights.get(name) ?? null;
  const positions = Uint32Array.from({ length: T }, (_, t) => t);
  const ranges = Uint32Array.from({ length: 2 * T }, (_, i) => (i % 2 === 0 ? 0 : (i - 1) / 2 + 1));
  /** [T, Hkv, hd] → cache layout [Hkv, T, hd]. */
  const toCache = (x: Float32Array): Float32Array | Uint16Array => {
    const out = new Float32Array(x.length);
    for (let t = 0; t < T; t++) for (let g = 0; g < Hkv; g++) for (let d = 0; d < hd; d++) out[(g * T + t) * hd + d] = x[(t * Hkv + g) * hd + d]!;
    return cache === "f16" ? f32ArrayToF16(out) : out;
  };
  const add = (a: Float32Array, y: Float32Array): Float32Array => a.map((v, i) => v + y[i]!);
  let x = embeddingReference(ids, w("model.embed_tokens.weight"), V, D).out;
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const n1 = rmsnormReference(x, w(`${p}.input_layernorm.weight`), T, D, c.rmsNormEps).out;
    const q = ropeReference(linearReference(n1, w(`${p}.self_attn.q_proj.weight`), b(`${p}.self_attn.q_proj.bias`), T, H * hd, D), positions, m.invFreq, H, hd);
    const k = ropeReference(linearReference(n1, w(`${p}.self_attn.k_proj.weight`), b(`${p}.self_attn.k_proj.bias`), T, Hkv * hd, D), positions, m.invFreq, Hkv, hd);
    const v = linearReference(n1, w(`${p}.self_attn.v_proj.weight`), b(`${p}.self_attn.v_proj.bias`), T, Hkv * hd, D);
    const att = attentionReference(q, toCache(k), toCache(v), ranges, { T, H, Hkv, S: T, hd });
    x = add(x, linearReference(att, w(`${p}.self_attn.o_proj.weight`), b(`${p}.self_attn.o_proj.bias`), T, D, H * hd));
    const n2 = rmsnormReference(x, w(`${p}.post_attention_layernorm.weight`), T, D, c.rmsNormEps).out;
    const g = linearReference(n2, w(`${p}.mlp.gate_proj.weight`), b(`${p}.mlp.gate_proj.bias`), T, I, D);
    const u = linearReference(n2, w(`${p}.mlp.up_proj.weight`), b(`${p}.mlp.up_proj.bias`), T, I, D);
    x = add(x, linearReference(swigluReference(g, u), w(`${p}.mlp.down_proj.weight`), b(`${p}.mlp.down_proj.bias`), T, D, I));
  }
  const hidden = rmsnormReference(x, w("model.norm.weight"), T, D, c.rmsNormEps).out;
  const head = m.weights.get("lm_head.weight") ?? w("model.embed_tokens.weight");
  return { hidden, logits: linearReference(hidden, head, null, T, V, D) };
}
