// Backward kernels (src/train/ops): linear dX / dW (GFLOP/s, TinyLlama-like shapes), attention
// backward (FLOP/s of the 5·T·keys·H·hd FMAs), fused cross-entropy (GB/s over the logits: read
// twice, written once, plus the in-place copy when it is not in place).
import type { GpuContext } from "../src/gpu/context.js";
import { linearBackwardInput, linearBackwardWeight } from "../src/train/ops/linear_backward.js";
import { attentionBackward } from "../src/train/ops/attention_backward.js";
import { crossEntropy } from "../src/train/ops/cross_entropy.js";
import { causalRanges } from "../src/ops/attention.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const samples = env.quick ? 3 : 5;
  const lin: [number, number, number][] = env.quick ? [[64, 256, 256]] : [[128, 2048, 2048], [128, 5632, 2048]];
  for (const [M, N, K] of lin) {
    const dy = ctx.empty([M, N], "f32", "dy");
    const x = ctx.empty([M, K], "f32", "x");
    const w = ctx.empty([N, K], "f32", "w");
    const dx = ctx.empty([M, K], "f32", "dx");
    const dw = ctx.empty([N, K], "f32", "dw");
    for (const t of [dy, x, w]) ctx.clear(t);
    const flops = 2 * M * N * K;
    const tx = await timeGpu(ctx, () => linearBackwardInput(ctx, dy, w, { dx }).then(() => undefined), { samples, reps: 1 });
    rows.push(row(env, { bench: "backward", variant: "linear_dx_backward_f32_vec4_t4x8", shape: `M=${M} N=${N} K=${K}`, flops }, tx));
    const tw = await timeGpu(ctx, () => linearBackwardWeight(ctx, dy, x, { dw }).then(() => undefined), { samples, reps: 1 });
    rows.push(row(env, { bench: "backward", variant: "linear_dw_backward_f32_vec4_t4x8", shape: `M=${M} N=${N} K=${K}`, flops }, tw));
    for (const t of [dy, x, w, dx, dw]) t.dispose();
  }
  {
    const [T, H, Hkv, hd] = env.quick ? [64, 4, 2, 64] : [256, 32, 4, 64];
    const q = ctx.empty([T, H, hd], "f32", "q");
    const k = ctx.empty([Hkv, T, hd], "f32", "k");
    const v = ctx.empty([Hkv, T, hd], "f32", "v");
    const out = ctx.empty([T, H, hd], "f32", "out");
    const dout = ctx.empty([T, H, hd], "f32", "dout");
    for (const t of [q, k, v, out, dout]) ctx.clear(t);
    const ranges = ctx.upload(causalRanges(T, 0), [T, 2], "u32", "ranges");
    const t = await timeGpu(ctx, async () => {
      const r = await attentionBackward(ctx, q, k, v, ranges, out, dout);
      for (const x of [r.dq, r.dk, r.dv, r.stats]) x.dispose();
    }, { samples, reps: 1 });
    const pairs = (T * (T + 1)) / 2;
    rows.push(row(env, { bench: "backward", variant: "attention_dq+dkv_backward_f32", shape: `T=${T} H=${H} Hkv=${Hkv} hd=${hd} causal`, flops: 2 * 5 * pairs * H * hd }, t));
  }
  {
    const [T, V] = env.quick ? [16, 32000] : [128, 32000];
    const logits = ctx.empty([T, V], "f32", "logits");
    ctx.clear(logits);
    const labels = ctx.upload(new Uint32Array(T), [T], "u32", "labels");
    const t = await timeGpu(ctx, async () => {
      const r = await crossEntropy(ctx, logits, labels);
      r.loss.dispose();
      r.rowStats.dispose();
    }, { samples, reps: 1 });
    rows.push(row(env, { bench: "backward", variant: "cross_entropy_inplace", shape: `T=${T} V=${V}`, bytes: 3 * T * V * 4 }, t));
  }
  return rows;
}
