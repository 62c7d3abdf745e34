// Training throughput and GPU memory: one optimizer step = trainStep (src/train/model.ts: forward
// keeping activations, OneGen joint loss, backward) + AdamW.step (src/train/optim.ts) + waiting
// for the GPU, on a synthetic decoder (bench/synthetic.ts, f16 weights), for full fine-tuning
// (gradients of every weight; AdamW keeps f32 masters of the f16 weights, m and v) and LoRA
// (rank 8, α 16, all seven projections; base frozen). Figures are reported, never asserted.
//
// Batch: `sequences` packed sequences of `seqLen` random tokens (seeded), every next-token label
// kept, and a contrastive term (InfoNCE, in-batch negatives): each sequence's last token is a
// document row and its middle token an anchor whose positive is that document, so each step has
// the joint loss's host sync. tokens/s = batch tokens / median step time; one untimed warm-up
// step compiles the pipelines.
// GPU memory (ctx.pool.stats, live + pooled bytes over the baseline before the model was built):
//   weights; train state = gradients + optimizer (masters, moments) [+ adapters]; held after the
//   steps = everything the pool holds (freed activations stay pooled, so this is the high-water
//   mark of the step).
// GFLOP/s is an estimate: forward FLOPs (matrices incl. lm_head on every row, causal attention
// within each sequence) × 3 for full fine-tuning (forward, dX, dW), × 2 for LoRA (no base dW;
// the adapters' own FLOPs are left out).
import type { GpuContext } from "../src/gpu/context.js";
import type { ModelConfig } from "../src/model/config.js";
import { TrainModel, trainStep, type TrainBatch, type TrainMode } from "../src/train/model.js";
import { nextTokenLabels } from "../src/train/losses.js";
import { AdamW } from "../src/train/optim.js";
import { Rng } from "../src/util/rng.js";
import { buildSynthetic, type SyntheticModel, type SyntheticShapeName } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";

interface Case {
  shape: SyntheticShapeName;
  sequences: number;
  seqLen: number;
  samples: number;
}

const LORA: TrainMode = { mode: "lora", lora: { rank: 8, alpha: 16 } };

function cases(quick: boolean): { list: Case[]; skipped: string[] } {
  if (quick) return { list: [{ shape: "tiny", sequences: 2, seqLen: 32, samples: 2 }], skipped: [] };
  return {
    list: [
      { shape: "tiny", sequences: 8, seqLen: 64, samples: 3 },
      // ≈ 0.1 TFLOP per full step at T = 128: ≈ 10–15 s here, so one timed step per mode.
      { shape: "llama-134m", sequences: 2, seqLen: 64, samples: 1 },
    ],
    skipped: ["TinyLlama-1.1B and larger skipped: full fine-tuning state alone (f32 grads, masters, m, v: 16 bytes/param) is ≈ 18 GB, and a step would take minutes here"],
  };
}

function stats(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)]!, minMs: s[0]!, maxMs: s[s.length - 1]!, samples: s.length };
}

function held(ctx: GpuContext): number {
  return ctx.pool.stats.liveBytes + ctx.pool.stats.pooledBytes;
}

function fmtBytes(b: number): string {
  return b >= 1 << 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

/** Forward FLOPs of a packed batch: matrices and lm_head on every row, causal attention per sequence. */
function forwardFlops(c: ModelConfig, sequences: number, n: number): number {
  const D = c.hiddenSize, I = c.intermediateSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const T = sequences * n;
  const matrix = c.numLayers * 2 * (D * q + 2 * D * kv + q * D + 3 * D * I) * T + 2 * c.vocabSize * D * T;
  const attention = c.numLayers * 4 * c.numHeads * c.headDim * sequences * ((n * (n + 1)) / 2);
  return matrix + attention;
}

function makeBatch(rng: Rng, c: Case, V: number): TrainBatch {
  const T = c.sequences * c.seqLen;
  const ids = Array.from({ length: T }, () => rng.int(V));
  const lengths = new Array<number>(c.sequences).fill(c.seqLen);
  const labels = nextTokenLabels(ids, lengths, new Array<number>(T).fill(1));
  const docs = lengths.map((_, i) => (i + 1) * c.seqLen - 1);
  const pairs = lengths.map((_, i) => ({ anchor: i * c.seqLen + (c.seqLen >> 1), positive: i }));
  return { ids, lengths, labels, retrieval: { docs, pairs } };
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const { list, skipped } = cases(env.quick);
  for (const s of skipped) env.log(`train: ${s}`);
  const rows: BenchRow[] = [];
  for (const c of list) {
    await ctx.sync();
    ctx.pool.trim();
    const base = held(ctx);
    const m = await buildSynthetic(ctx, c.shape);
    try {
      for (const [label, mode] of [["full", { mode: "full" }], ["lora r=8", LORA]] as [string, TrainMode][]) {
        rows.push(await benchMode(ctx, env, m, c, label, mode, base));
      }
    } finally {
      m.dispose();
      await ctx.sync();
      ctx.pool.trim();
    }
  }
  return rows;
}

async function benchMode(ctx: GpuContext, env: BenchEnv, m: SyntheticModel, c: Case, label: string, mode: TrainMode, base: number): Promise<BenchRow> {
  await ctx.sync();
  ctx.pool.trim();
  const weights = held(ctx) - base;
  const model = TrainModel.create(m.decoder, mode);
  let opt: AdamW | null = null;
  try {
    opt = await AdamW.create(ctx, model.params, { lr: 1e-5, maxGradNorm: 1 });
    await ctx.sync();
    const state = held(ctx) - base - weights;
    const trainable = model.params.reduce((s, p) => s + p.weight.numel, 0);
    const rng = new Rng(3);
    const batch = makeBatch(rng, c, m.config.vocabSize);
    const T = batch.ids.length;
    const step = async (): Promise<number> => {
      const r = await trainStep(model, batch, { lambdaGen: 1, lambdaRet: 1 });
      await opt!.step();
      opt!.zeroGrad();
      await ctx.sync();
      if (!Number.isFinite(r.loss)) throw new Error(`train ${m.name} ${label}: loss is ${r.loss}`);
      return r.loss;
    };
    await step(); // warm-up: pipeline compilation
    const times: number[] = [];
    let loss = NaN;
    for (let s = 0; s < c.samples; s++) {
      const t0 = performance.now();
      loss = await step();
      times.push(performance.now() - t0);
    }
    const t = stats(times);
    const total = held(ctx) - base;
    const flops = forwardFlops(m.config, c.sequences, c.seqLen) * (mode.mode === "full" ? 3 : 2);
    const tokPerS = T / (t.medianMs / 1e3);
    const r = row(env, { bench: "train", variant: label, shape: `${m.name} T=${T} (${c.sequences}×${c.seqLen})`, flops }, t);
    r.extra = {
      model: m.name,
      mode: mode.mode,
      tokens: T,
      tokPerS,
      trainableParams: trainable,
      params: m.params,
      weightBytes: weights,
      trainStateBytes: state,
      gpuBytes: total,
      loss,
    };
    env.log(
      `train ${m.name} ${label} T=${T}: ${tokPerS.toFixed(1)} tok/s (${(t.medianMs / 1e3).toFixed(2)} s/step, ${t.samples} sample(s), ≈ ${r.gflops!.toFixed(2)} GFLOP/s), ` +
        `${(trainable / 1e6).toFixed(2)}M trainable params; GPU memory ${fmtBytes(total)} (weights ${fmtBytes(weights)}, grads + optimizer ${fmtBytes(state)}), loss ${loss.toFixed(3)}`,
    );
    return r;
  } finally {
    opt?.dispose();
    model.dispose();
  }
}
