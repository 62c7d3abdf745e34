// Model config parsing (both RoPE layouts), RoPE inverse frequencies against hand-computed values,
// expected tensors and weight checks.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { LoadError, ShapeError, UnsupportedError } from "../src/errors.js";
import {
  checkWeights,
  compareWeights,
  computeInvFreq,
  expectedTensors,
  kvCacheBytes,
  parameterCount,
  parseModelConfig,
  reconcileVocabSize,
  type ModelConfig,
} from "../src/model/config.js";
import { assertClose } from "./helpers/check.js";
import { fixtureJson } from "./helpers/fixtures.js";

const llama = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  vocab_size: 384,
  max_position_embeddings: 512,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  ...extra,
});

function throwsWith(fn: () => unknown, cls: new (...a: never[]) => Error, re: RegExp, what: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${String(e)}`);
    assert.match((e as Error).message, re, what);
    return;
  }
  assert.unreachable(`${what}: nothing thrown`);
}

test("Llama config: dimensions, defaults, derived head_dim, eos ids merged from generation_config", () => {
  const c = parseModelConfig(llama({ eos_token_id: [2, 7] }), { eos_token_id: [9, 2], bos_token_id: 1 });
  assert.is(c.architecture, "LlamaForCausalLM");
  assert.is(c.headDim, 16);
  assert.is(c.numKvHeads, 2);
  assert.is(c.rmsNormEps, 1e-5);
  assert.is(c.ropeTheta, 10000, "default theta");
  assert.equal(c.ropeScaling, { type: "none" });
  assert.equal(c.eosTokenIds, [9, 2, 7], "generation_config first, no duplicates");
  assert.is(c.bosTokenId, 1);
  assert.is(c.attentionBias, false);
  assert.is(c.tieWordEmbeddings, false);
  assert.is(c.slidingWindow, null);
  const noKv = parseModelConfig(llama({ num_key_value_heads: undefined }));
  assert.is(noKv.numKvHeads, 4, "num_key_value_heads defaults to num_attention_heads");
  const biased = parseModelConfig(llama({ attention_bias: true, mlp_bias: true }));
  assert.ok(biased.attentionBias && biased.attentionOutputBias && biased.mlpBias);
});

test("Qwen2 and Mistral specifics: q/k/v bias, sliding windows, explicit head_dim", () => {
  const q = parseModelConfig({ ...llama(), architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", tie_word_embeddings: true, sliding_window: 32768, use_sliding_window: false });
  assert.is(q.attentionBias, true, "Qwen2 has q/k/v biases");
  assert.is(q.attentionOutputBias, false);
  assert.is(q.slidingWindow, null, "use_sliding_window false is honoured");
  assert.is(q.tieWordEmbeddings, true);
  const qs = parseModelConfig({ ...llama(), architectures: ["Qwen2ForCausalLM"], sliding_window: 4096, use_sliding_window: true, max_window_layers: 21 });
  assert.is(qs.slidingWindow, 4096);
  assert.is(qs.maxWindowLayers, 21);
  const m = parseModelConfig({ ...llama(), architectures: ["MistralForCausalLM"], num_attention_heads: 7, num_key_value_heads: 1, hidden_size: 56, head_dim: 24, sliding_window: 4096 });
  assert.is(m.headDim, 24);
  assert.is(m.slidingWindow, 4096);
  assert.is(m.attentionBias, false);
  const mNull = parseModelConfig({ ...llama(), architectures: ["MistralForCausalLM"], sliding_window: null });
  assert.is(mNull.slidingWindow, null);
});

test("RoPE, older layout: rope_theta + rope_scaling with 'type' or 'rope_type'", async () => {
  const lin = parseModelConfig(llama({ rope_theta: 5e5, rope_scaling: { type: "linear", factor: 4.0 } }));
  assert.is(lin.ropeTheta, 5e5);
  assert.equal(lin.ropeScaling, { type: "linear", factor: 4 });
  const l3 = parseModelConfig(await fixtureJson("models/llama3-scaled-bf16-sharded/config.json"));
  assert.equal(l3.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 });
  assert.is(l3.ropeTheta, 500000);
  assert.equal(l3.eosTokenIds, [2, 3, 4]);
  assert.equal(parseModelConfig(llama({ rope_scaling: { rope_type: "default" } })).ropeScaling, { type: "none" });
  assert.equal(parseModelConfig(llama({ rope_scaling: null })).ropeScaling, { type: "none" });
});

test("RoPE, newer rope_parameters layout (transformers 5), including no top-level rope_theta", async () => {
  const fx = (await fixtureJson("models/llama-linear-ropeparams-f16/config.json")) as Record<string, unknown>;
  assert.is(fx.rope_theta, undefined, "fixture has no top-level rope_theta");
  const c = parseModelConfig(fx);
  assert.is(c.ropeTheta, 10000);
  assert.equal(c.ropeScaling, { type: "linear", factor: 2 });
  assert.is(c.torchDtype, "float16", "'dtype' key of transformers 5");
  const l3 = parseModelConfig(
    llama({ rope_parameters: { rope_type: "llama3", rope_theta: 500000.0, factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 } }),
  );
  assert.is(l3.ropeTheta, 500000);
  assert.equal(l3.ropeScaling, { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  const def = parseModelConfig(llama({ rope_parameters: { rope_type: "default", rope_theta: 1e6 } }));
  assert.is(def.ropeTheta, 1e6);
  assert.equal(def.ropeScaling, { type: "none" });
});

test("unsupported architectures, rope types, activations and layouts are refused by name", () => {
  throwsWith(() => parseModelConfig({ ...llama(), architectures: ["GPT2LMHeadModel"] }), UnsupportedError, /'GPT2LMHeadModel'.*LlamaForCausalLM/, "arch");
  throwsWith(() => parseModelConfig(llama({ rope_scaling: { type: "dynamic", factor: 2.0 } })), UnsupportedError, /rope type 'dynamic'/, "dynamic");
  throwsWith(() => parseModelConfig(llama({ rope_scaling: { rope_type: "yarn", factor: 4.0 } })), UnsupportedError, /rope type 'yarn'/, "yarn");
  throwsWith(() => parseModelConfig(llama({ rope_parameters: { rope_type: "longrope", rope_theta: 1e4 } })), UnsupportedError, /rope type 'longrope'/, "longrope");
  throwsWith(
    () => parseModelConfig(llama({ rope_parameters: { full_attention: { rope_type: "default", rope_theta: 1e6 }, sliding_attention: { rope_type: "default", rope_theta: 1e4 } } })),
    UnsupportedError,
    /per-layer-type rope_parameters/,
    "per layer",
  );
  throwsWith(() => parseModelConfig(llama({ hidden_act: "gelu" })), UnsupportedError, /hidden_act 'gelu'/, "gelu");
  throwsWith(() => parseModelConfig(llama({ partial_rotary_factor: 0.5 })), UnsupportedError, /partial_rotary_factor/, "partial rotary");
  throwsWith(() => parseModelConfig(llama({ rope_scaling: { rope_type: "llama3", factor: 8 } })), LoadError, /rope_scaling\.low_freq_factor/, "llama3 missing field");
  throwsWith(() => parseModelConfig(llama({ hidden_size: undefined })), LoadError, /'hidden_size' is missing/, "missing dim");
  throwsWith(() => parseModelConfig(llama({ num_key_value_heads: 3 })), LoadError, /multiple of num_key_value_heads/, "gqa");
  throwsWith(() => parseModelConfig(llama({ vocab_size: 1.5 })), LoadError, /'vocab_size' must be an integer/, "fractional");
});

test("inv_freq: default, linear and llama3 against hand-computed values", () => {
  const tol = { atol: 0, rtol: 1e-7 }; // f32 rounding of float64 values
  // default, hd 16, theta 1e4: 10000^(-2i/16) = 10^(-i/2)
  const def = computeInvFreq({ headDim: 16, ropeTheta: 1e4, ropeScaling: { type: "none" } });
  assertClose(def, [1, 0.31622776601683794, 0.1, 0.03162277660168379, 0.01, 0.003162277660168379, 0.001, 0.00031622776601683794], tol, "default");
  // linear ×2: every frequency halved
  const lin = computeInvFreq({ headDim: 16, ropeTheta: 1e4, ropeScaling: { type: "linear", factor: 2 } });
  assertClose(lin, Array.from(def, (x) => x / 2), tol, "linear");
  // llama3, hd 12, theta 5e5, factor 8, low 1, high 4, original 64 (the llama3 fixture):
  //   f_i = 5e5^(-i/6) = [1, 0.11225, 0.0126, 0.0014142, 1.5874e-4, 1.7818e-5]
  //   wavelen = 2π/f_i = [6.28, 55.98, 498.6, 4443, 39582, 352626]; high band < 64/4 = 16, low band > 64/1 = 64
  //   i=0 kept (1); i=1 smooth s = (64/55.98 - 1)/3 = 0.047777 → f·((1-s)/8 + s) = 0.018723196; i≥2 divided by 8.
  const l3 = computeInvFreq({ headDim: 12, ropeTheta: 5e5, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } });
  assertClose(l3, [1.0, 0.018723196287486383, 0.0015749013123685918, 0.00017677669529663688, 1.9842513149602502e-5, 2.227246795350847e-6], tol, "llama3 fixture");
  const base = computeInvFreq({ headDim: 12, ropeTheta: 5e5, ropeScaling: { type: "none" } });
  assertClose(Array.from(base, (b, i) => b / l3[i]!), [1, 5.995, 8, 8, 8, 8], { atol: 0, rtol: 2e-4 }, "llama3 ratios (README: [1, 5.995, 8, 8, 8, 8])");
  // Llama 3.1 8B's own parameters (hd 128, theta 5e5, factor 8, low 1, high 4, original 8192), every 8th frequency
  const l31 = computeInvFreq({ headDim: 128, ropeTheta: 5e5, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } });
  assert.is(l31.length, 64);
  assertClose(
    l31.filter((_, i) => i % 8 === 0),
    [1.0, 0.19392274474868576, 0.03760603093086393, 0.0072926647372171085, 0.0005248461609929547, 3.428102195952591e-5, 6.647869871181236e-6, 1.2891731721515574e-6],
    tol,
    "llama 3.1",
  );
});

test("expected tensors, vocab size from the embedding, weight checks naming tensor, expected and actual", () => {
  const c = parseModelConfig(llama());
  const ex = expectedTensors(c);
  assert.is(ex.length, 1 + 2 * 9 + 1 + 1);
  assert.equal(ex.find((e) => e.name === "model.layers.1.self_attn.k_proj.weight")!.shape, [32, 64]);
  assert.equal(ex.find((e) => e.name === "model.layers.0.self_attn.o_proj.weight")!.shape, [64, 64]);
  assert.equal(ex.find((e) => e.name === "model.layers.0.mlp.down_proj.weight")!.shape, [64, 160]);
  assert.ok(ex.some((e) => e.name === "lm_head.weight"));
  const q: ModelConfig = { ...c, architecture: "Qwen2ForCausalLM", attentionBias: true, tieWordEmbeddings: true };
  const qex = expectedTensors(q).map((e) => e.name);
  assert.ok(qex.includes("model.layers.0.self_attn.q_proj.bias") && qex.includes("model.layers.1.self_attn.v_proj.bias"));
  assert.ok(!qex.includes("lm_head.weight") && !qex.includes("model.layers.0.self_attn.o_proj.bias"));

  const shapes = new Map(ex.map((e) => [e.name, e.shape as readonly number[]]));
  shapes.set("model.embed_tokens.weight", [390, 64]);
  shapes.set("lm_head.weight", [390, 64]);
  shapes.set("model.layers.0.self_attn.rotary_emb.inv_freq", [8]);
  const { config: rc, changed } = reconcileVocabSize(c, (n) => shapes.get(n));
  assert.ok(changed);
  assert.is(rc.vocabSize, 390, "the embedding's rows win over vocab_size 384");
  const r = checkWeights(rc, shapes);
  assert.equal(r.unused, ["model.layers.0.self_attn.rotary_emb.inv_freq"]);
  assert.is(parameterCount(rc), 390 * 64 * 2 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 160 * 64 * 3 + 64 * 2) + 64);

  const missing = new Map(shapes);
  missing.delete("model.layers.1.mlp.up_proj.weight");
  missing.delete("model.norm.weight");
  throwsWith(() => checkWeights(rc, missing), LoadError, /2 tensor\(s\).*missing: model\.layers\.1\.mlp\.up_proj\.weight, model\.norm\.weight/, "missing listed");
  const wrong = new Map(shapes);
  wrong.set("model.layers.0.self_attn.k_proj.weight", [64, 64]);
  throwsWith(() => checkWeights(rc, wrong), ShapeError, /'model\.layers\.0\.self_attn\.k_proj\.weight' expected \[32, 64\], actual \[64, 64\]/, "shape named");
  assert.is(compareWeights(rc, wrong).wrongShape.length, 1);
  const lmMismatch = new Map(shapes);
  lmMismatch.set("lm_head.weight", [384, 64]);
  throwsWith(() => checkWeights(rc, lmMismatch), ShapeError, /lm_head\.weight' expected \[390, 64\]/, "lm_head rows must match the embedding");
  assert.is(kvCacheBytes(c, 100), 2 * 2 * 100 * 2 * 16 * 2);
});

test.run();
