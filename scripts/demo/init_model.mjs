#!/usr/bin/env node
// A randomly initialised small LlamaForCausalLM with the demo tokenizer: the starting point of the
// demo model's from-scratch training (scripts/demo/train_demo.sh, issue 10).
//
//   node scripts/demo/init_model.mjs --out DIR [--data demo/data] [--seed 20261124]
//     [--hidden 128] [--layers 4] [--heads 4] [--kv-heads 2] [--intermediate 352] [--max-positions 1024]
//
// Writes DIR/config.json, DIR/model.safetensors (F32), DIR/tokenizer.json,
// DIR/tokenizer_config.json (src/demo/tokenizer-builder.ts: word-level over the demo data, OneGen's
// tokens included, so the trainer adds none), DIR/generation_config.json and the output tag
// DIR/onegen-output.json, in one atomic swap (DIR absent, empty or written by this project).
// Initialisation (GPT-2 / Hugging Face Llama style): every matrix and the embedding ~ N(0, 0.02²);
// the two projections that write into the residual stream (o_proj, down_proj) ~ N(0, (0.02/√(2L))²);
// RMSNorm weights 1. One seeded stream (src/util/rng.ts) in a fixed tensor order, so the same
// arguments give byte-identical files. Needs the build (`npm run build`): it imports dist/.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dist = (rel) => import(pathToFileURL(join(ROOT, "dist", "src", rel)).href);

const DEFAULTS = { out: null, data: join(ROOT, "demo", "data"), seed: 20261124, hidden: 128, layers: 4, heads: 4, "kv-heads": 2, intermediate: 352, "max-positions": 1024 };
const INIT_STD = 0.02;

function parse(argv) {
  const o = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, "");
    if (!(k in DEFAULTS) || argv[i] === k) throw new Error(`init_model: unknown argument '${argv[i]}' (known: ${Object.keys(DEFAULTS).map((x) => "--" + x).join(" ")})`);
    const v = argv[++i];
    if (v === undefined) throw new Error(`init_model: --${k} needs a value`);
    o[k] = k === "out" || k === "data" ? v : Number(v);
    if (k !== "out" && k !== "data" && !(Number.isInteger(o[k]) && o[k] >= 0)) throw new Error(`init_model: --${k} must be a non-negative integer, got '${v}'`);
  }
  if (!o.out) throw new Error("init_model: --out DIR is required");
  if (o.hidden % o.heads !== 0) throw new Error(`init_model: --hidden ${o.hidden} is not a multiple of --heads ${o.heads}`);
  if (o.heads % o["kv-heads"] !== 0) throw new Error(`init_model: --heads ${o.heads} is not a multiple of --kv-heads ${o["kv-heads"]}`);
  return o;
}

/**
 * Writes the model directory atomically (src/io/output.ts writeDirAtomic): --out must be absent,
 * empty or a model directory this project wrote; its parent must exist.
 */
export async function initModel(opts) {
  const { writeDirAtomic } = await dist("io/output.js");
  let result = null;
  await writeDirAtomic(opts.out, "model", async (w) => {
    result = await initModelInto(opts, w);
  }, { flag: "init_model: --out" });
  return { ...result, out: opts.out };
}

async function initModelInto(opts, w) {
  const { writeDemoTokenizer } = await dist("demo/tokenizer-builder.js");
  const { writeSafetensors } = await dist("io/safetensors-write.js");
  const { Rng } = await dist("util/rng.js");
  const { seed } = opts;
  const out = w.dir; // the temporary directory being filled
  const D = opts.hidden;
  const L = opts.layers;
  const H = opts.heads;
  const Hkv = opts["kv-heads"];
  const F = opts.intermediate;
  const hd = D / H;
  const { vocabSize: V } = await writeDemoTokenizer(opts.data, out);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: D,
    intermediate_size: F,
    num_attention_heads: H,
    num_key_value_heads: Hkv,
    num_hidden_layers: L,
    vocab_size: V,
    max_position_embeddings: opts["max-positions"],
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: "silu",
    initializer_range: INIT_STD,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: "float32",
  };
  const rng = new Rng(seed);
  const tensors = new Map();
  const normal = (name, shape, std) => tensors.set(name, { dtype: "F32", shape, data: rng.fillNormal(shape.reduce((a, b) => a * b, 1), std) });
  const ones = (name, n) => tensors.set(name, { dtype: "F32", shape: [n], data: new Float32Array(n).fill(1) });
  const resid = INIT_STD / Math.sqrt(2 * L);
  normal("model.embed_tokens.weight", [V, D], INIT_STD);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    ones(p + "input_layernorm.weight", D);
    normal(p + "self_attn.q_proj.weight", [H * hd, D], INIT_STD);
    normal(p + "self_attn.k_proj.weight", [Hkv * hd, D], INIT_STD);
    normal(p + "self_attn.v_proj.weight", [Hkv * hd, D], INIT_STD);
    normal(p + "self_attn.o_proj.weight", [D, H * hd], resid);
    ones(p + "post_attention_layernorm.weight", D);
    normal(p + "mlp.gate_proj.weight", [F, D], INIT_STD);
    normal(p + "mlp.up_proj.weight", [F, D], INIT_STD);
    normal(p + "mlp.down_proj.weight", [D, F], resid);
  }
  ones("model.norm.weight", D);
  normal("lm_head.weight", [V, D], INIT_STD);
  await w.writeFile("config.json", JSON.stringify(config, null, 1) + "\n");
  await w.writeFile("generation_config.json", JSON.stringify({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 }, null, 1) + "\n");
  await w.writeFile("model.safetensors", writeSafetensors(tensors, { format: "pt", init: `scripts/demo/init_model.mjs seed ${seed}` }));
  let params = 0;
  for (const t of tensors.values()) params += t.data.length;
  return { out, vocabSize: V, params, config };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const r = await initModel(parse(process.argv.slice(2)));
    process.stdout.write(JSON.stringify({ out: r.out, vocab_size: r.vocabSize, params: r.params, hidden: r.config.hidden_size, layers: r.config.num_hidden_layers }) + "\n");
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}
