// LoRA adapters on the attention and MLP projections (PEFT semantics):
//   y = x·Wᵀ (+ b) + s · (drop(x)·Aᵀ)·Bᵀ,   A [r, K], B [N, r], s = alpha / r
// A starts as PEFT's kaiming_uniform(a = √5) (uniform in ±1/√K, seeded), B at zero, so the
// adapted model starts equal to the base. The base stays frozen: training reads W (f32 or f16)
// but computes no gradient for it. Dropout is inverted dropout with a hashed mask
// (kernels/lora_dropout.wgsl): the same (seed, step, layer, module) gives the same mask, so runs
// are reproducible and the backward re-derives the mask instead of storing it.
// Saving: mergeLoraWeights() folds s·B·A into W on the host (the merged Hugging Face weights);
// loraTensors() gives the adapters alone under PEFT names with adapter_config.json's fields.

import { ShapeError, UsageError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import type { TensorToWrite } from "../io/safetensors-write.js";
import type { LayerWeights } from "../model/decoder.js";
import { expectDType, expectShape, grid, Params } from "../ops/common.js";
import { pcgHash } from "../ops/sample.js";
import { f16ArrayToF32 } from "../util/f16.js";
import { Rng } from "../util/rng.js";
import { expectNoAlias, requireOneBinding } from "./ops/common.js";
import type { TrainParam } from "./optim.js";

export const LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** Which LayerWeights field each module adapts, and its Hugging Face parent. */
export const LORA_MODULE_WEIGHTS: Readonly<Record<LoraModule, { weight: keyof LayerWeights; parent: "self_attn" | "mlp" }>> = {
  q_proj: { weight: "q", parent: "self_attn" },
  k_proj: { weight: "k", parent: "self_attn" },
  v_proj: { weight: "v", parent: "self_attn" },
  o_proj: { weight: "o", parent: "self_attn" },
  gate_proj: { weight: "gate", parent: "mlp" },
  up_proj: { weight: "up", parent: "mlp" },
  down_proj: { weight: "down", parent: "mlp" },
};

export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Drop probability of the adapter input, in [0, 1) (default 0). */
  dropout?: number;
  /** Modules to adapt (default all seven). */
  targets?: readonly LoraModule[];
  /** Seeds A's initialisation and the dropout masks (default 0). */
  seed?: number;
}

export interface LoraAdapter {
  layer: number;
  module: LoraModule;
  /** [r, K] f32 */
  A: Tensor;
  /** [N, r] f32 */
  B: Tensor;
  gradA: Tensor;
  gradB: Tensor;
}

const DROPOUT_WG = 64;

export function loraDropoutKernel(): KernelVariant {
  return { file: "lora_dropout", name: `lora_dropout_f32_wg${DROPOUT_WG}`, defines: { WG: DROPOUT_WG }, bindings: ["read", "read_write", "uniform"] };
}

/** Base name of a module's weight: "model.layers.{l}.self_attn.q_proj". */
export function moduleName(layer: number, module: LoraModule): string {
  return `model.layers.${layer}.${LORA_MODULE_WEIGHTS[module].parent}.${module}`;
}

export class LoraAdapters {
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  readonly dropout: number;
  readonly seed: number;
  readonly targets: readonly LoraModule[];
  private readonly byKey = new Map<string, LoraAdapter>();

  private constructor(readonly ctx: GpuContext, cfg: LoraConfig, readonly list: LoraAdapter[]) {
    this.rank = cfg.rank;
    this.alpha = cfg.alpha;
    this.scale = cfg.alpha / cfg.rank;
    this.dropout = cfg.dropout ?? 0;
    this.seed = (cfg.seed ?? 0) >>> 0;
    this.targets = cfg.targets ?? LORA_MODULES;
    for (const a of list) this.byKey.set(`${a.layer}/${a.module}`, a);
  }

  /** Checks a LoRA configuration against the layers (before anything is sized by it); returns the targets. */
  static validate(layers: readonly LayerWeights[], cfg: LoraConfig): readonly LoraModule[] {
    if (!Number.isInteger(cfg.rank) || cfg.rank < 1) throw new UsageError(`LoRA: rank must be a positive integer, got ${cfg.rank}`);
    if (!(cfg.alpha > 0) || !Number.isFinite(cfg.alpha)) throw new UsageError(`LoRA: alpha must be a finite number > 0, got ${cfg.alpha}`);
    const p = cfg.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new UsageError(`LoRA: dropout must lie in [0, 1), got ${p}`);
    const targets = cfg.targets ?? LORA_MODULES;
    for (const t of targets) if (!LORA_MODULES.includes(t)) throw new UsageError(`LoRA: unknown target module '${t}' (known: ${LORA_MODULES.join(", ")})`);
    if (new Set(targets).size !== targets.length || targets.length === 0) throw new UsageError(`LoRA: target modules must be distinct and non-empty, got [${targets.join(", ")}]`);
    // A rank past the smaller side of a matrix adds nothing and would size [r, K] by the caller.
    let smallest: { module: LoraModule; shape: readonly number[]; side: number } | null = null;
    for (const L of layers.slice(0, 1)) {
      for (const module of targets) {
        const shape = (L[LORA_MODULE_WEIGHTS[module].weight] as Tensor).shape;
        const side = Math.min(shape[0]!, shape[1]!);
        if (!smallest || side < smallest.side) smallest = { module, shape, side };
      }
    }
    if (smallest && cfg.rank > smallest.side) throw new UsageError(`LoRA: rank ${cfg.rank} exceeds ${smallest.side}, the smaller dimension of ${smallest.module} [${smallest.shape.join(", ")}]`);
    return targets;
  }

  /** Adapters for every layer and target module of `layers`; A seeded, B zero, gradients zero. */
  static create(ctx: GpuContext, layers: readonly LayerWeights[], cfg: LoraConfig): LoraAdapters {
    const targets = LoraAdapters.validate(layers, cfg);
    const rng = new Rng((cfg.seed ?? 0) ^ 0x10ba);
    const r = cfg.rank;
    const list: LoraAdapter[] = [];
    layers.forEach((L, layer) => {
      for (const module of LORA_MODULES) {
        if (!targets.includes(module)) continue;
        const w = L[LORA_MODULE_WEIGHTS[module].weight] as Tensor;
        const [N, K] = w.shape as [number, number];
        const name = moduleName(layer, module);
        const bound = 1 / Math.sqrt(K);
        list.push({
          layer,
          module,
          A: ctx.upload(rng.fillUniform(r * K, -bound, bound), [r, K], "f32", `${name}.lora_A`),
          B: ctx.upload(new Float32Array(N * r), [N, r], "f32", `${name}.lora_B`),
          gradA: ctx.upload(new Float32Array(r * K), [r, K], "f32", `${name}.lora_A.grad`),
          gradB: ctx.upload(new Float32Array(N * r), [N, r], "f32", `${name}.lora_B.grad`),
        });
      }
    });
    return new LoraAdapters(ctx, { ...cfg, targets }, list);
  }

  get(layer: number, module: LoraModule): LoraAdapter | null {
    return this.byKey.get(`${layer}/${module}`) ?? null;
  }

  /** Trainable parameters (PEFT names), for the optimizer; `decay` marks them for weight decay (default off). */
  params(decay = false): TrainParam[] {
    const out: TrainParam[] = [];
    for (const a of this.list) {
      const n = `base_model.model.${moduleName(a.layer, a.module)}`;
      out.push({ name: `${n}.lora_A.weight`, weight: a.A, grad: a.gradA, decay });
      out.push({ name: `${n}.lora_B.weight`, weight: a.B, grad: a.gradB, decay });
    }
    return out;
  }

  /** Uploads given adapter values (host f32): for tests and for resuming from saved adapters. */
  set(layer: number, module: LoraModule, A: Float32Array, B: Float32Array): void {
    const a = this.get(layer, module);
    if (!a) throw new UsageError(`LoRA: layer ${layer} has no adapter on ${module}`);
    if (A.length !== a.A.numel || B.length !== a.B.numel) throw new ShapeError(`LoRA ${moduleName(layer, module)}: got A ${A.length}, B ${B.length} values, expected ${a.A.numel}, ${a.B.numel}`);
    this.ctx.write(a.A, A);
    this.ctx.write(a.B, B);
  }

  /** The hash salt of one module's dropout mask at one training step. */
  salt(step: number, layer: number, module: LoraModule): number {
    return loraDropoutSalt(this.seed, step, layer, LORA_MODULES.indexOf(module));
  }

  /** Adapter tensors under PEFT names, and adapter_config.json's fields. */
  async tensors(): Promise<{ tensors: Map<string, TensorToWrite>; config: Record<string, unknown> }> {
    const tensors = new Map<string, TensorToWrite>();
    for (const p of this.params()) tensors.set(p.name, { dtype: "F32", shape: p.weight.shape, data: (await p.weight.read()) as Float32Array });
    const config = {
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: this.rank,
      lora_alpha: this.alpha,
      lora_dropout: this.dropout,
      target_modules: [...this.targets],
      bias: "none",
      fan_in_fan_out: false,
      inference_mode: true,
    };
    return { tensors, config };
  }

  dispose(): void {
    for (const a of this.list) for (const t of [a.A, a.B, a.gradA, a.gradB]) t.dispose();
  }
}

/** Salt of a dropout mask: pcg chains over (seed, step, layer, module index). */
export function loraDropoutSalt(seed: number, step: number, layer: number, moduleIndex: number): number {
  return pcgHash((pcgHash((pcgHash((pcgHash(seed >>> 0) ^ step) >>> 0) ^ layer) >>> 0) ^ moduleIndex) >>> 0);
}

/** Keep decision of element i under a salt: u = (pcg(salt ^ i) >> 8) / 2^24 ≥ p. */
export function loraKeep(salt: number, i: number, p: number): boolean {
  return (pcgHash((salt ^ i) >>> 0) >>> 8) / 16777216 >= p;
}

/** out (+)= x ⊙ keep / (1 − p). x [..] f32; out the same shape (allocated when absent). Returns out. */
export async function loraDropout(ctx: GpuContext, x: Tensor, salt: number, p: number, opts: { out?: Tensor; accumulate?: boolean } = {}): Promise<Tensor> {
  const op = "loraDropout";
  expectDType(x, ["f32"], op, "x");
  if (!(p >= 0 && p < 1)) throw new UsageError(`${op}: p must lie in [0, 1), got ${p}`);
  if (opts.accumulate && !opts.out) throw new ShapeError(`${op}: accumulate needs an existing out tensor`);
  const out = opts.out ?? ctx.empty(x.shape, "f32", "lora.dropout");
  expectDType(out, ["f32"], op, "out");
  expectShape(out, x.shape, op, "out");
  expectNoAlias(op, out, [x]);
  requireOneBinding(ctx, x, op, "x");
  const kernel = await ctx.kernels.get(loraDropoutKernel());
  const n = x.numel;
  if (n === 0) return out;
  const params = new Params().u32(n).u32(salt >>> 0).u32(opts.accumulate ? 1 : 0).u32(0).f32(p).f32(1 / (1 - p)).bytes();
  ctx.dispatch(kernel, [x, out], params, grid(ctx, Math.ceil(n / DROPOUT_WG)));
  return out;
}

/** CPU reference: out + x·keep/(1 − p) (f32 product as the kernel); out = null → zeros. */
export function loraDropoutReference(x: ArrayLike<number>, salt: number, p: number, out: ArrayLike<number> | null = null): Float32Array {
  const y = new Float32Array(x.length);
  const inv = Math.fround(1 / (1 - p));
  for (let i = 0; i < x.length; i++) {
    const d = loraKeep(salt, i, p) ? Math.fround(x[i]! * inv) : 0;
    y[i] = out ? d + out[i]! : d;
  }
  return y;
}

/** CPU reference of a merge: W + s·B·A (float64 sums) for W [N, K], B [N, r], A [r, K]. */
export function mergeLoraReference(w: ArrayLike<number>, A: ArrayLike<number>, B: ArrayLike<number>, N: number, K: number, r: number, scale: number): Float32Array {
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += B[n * r + j]! * A[j * K + k]!;
      out[n * K + k] = w[n * K + k]! + scale * s;
    }
  }
  return out;
}

/**
 * Merged weights of every adapted module, W + s·B·A as f32 on the host, keyed by Hugging Face
 * weight name (".weight"); the caller writes them (with the untouched weights) as a model directory.
 */
export async function mergeLoraWeights(layers: readonly LayerWeights[], lora: LoraAdapters): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const a of lora.list) {
    const w = layers[a.layer]![LORA_MODULE_WEIGHTS[a.module].weight] as Tensor;
    const [N, K] = w.shape as [number, number];
    const host = w.dtype === "f16" ? f16ArrayToF32((await w.read()) as Uint16Array) : ((await w.read()) as Float32Array);
    out.set(`${moduleName(a.layer, a.module)}.weight`, mergeLoraReference(host, (await a.A.read()) as Float32Array, (await a.B.read()) as Float32Array, N, K, lora.rank, lora.scale));
  }
  return out;
}
