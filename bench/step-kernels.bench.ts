// The decode-step kernels against the unfused ops they replace, on decode shapes (T = 1) of the
// 134M model (H 9, Hkv 3, hd 64, D 576, V 49152) and TinyLlama (H 32, Hkv 4, hd 64, D 2048,
// V 32000) at contexts 256 and 2048 in a cache of capacity 2112 (f16 where the device has it):
//   rope:  rope(q) + rope(k) + kvAppend (3 dispatches, today's decoder) vs rope_kv (1 dispatch)
//   attention: attention() with host ranges, maxKeys = capacity (as the decoder calls it: fixed
//          chunk) and maxKeys = context (best case, the host knowing the length), vs
//          attention_step (T and ranges from the step state) with the chunk chosen per row on the
//          GPU (default; GQA heads inner, and the splits-inner order), with the decoder's fixed
//          chunk, and the lanes kernel (attention_step_lanes.wgsl, a losing arm on lavapipe)
//   embed: embedding(ids tensor) vs embed_rows
// Step arms encode a plan made once (plan.encode: what a captured step replays); unfused arms call
// the async ops as the decoder does. Time per call = wall time of `reps` encodes + one submit and
// wait, so it includes each arm's host encode cost; the arms of one group are timed interleaved
// (timeArms) so that load from other processes does not favour one arm; `extra.dispatches` says
// how many dispatches one call is. Figures only; nothing is asserted.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { storeType } from "../src/ops/common.js";
import { rope } from "../src/ops/rope.js";
import { attention, kvAppend, resolveAttention } from "../src/ops/attention.js";
import { embedding } from "../src/ops/embedding.js";
import { planRopeKv, stepPositions } from "../src/ops/rope-kv.js";
import { attentionStepSplits, planAttentionStep, stepRanges } from "../src/ops/attention-step.js";
import { planEmbedRows } from "../src/ops/embed-rows.js";
import { STEP_LAST, STEP_ROWS, STEP_WORDS } from "../src/ops/step-state.js";
import { Rng } from "../src/util/rng.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";

interface Shape {
  name: string;
  H: number;
  Hkv: number;
  hd: number;
  D: number;
  V: number;
}
const M134: Shape = { name: "134M", H: 9, Hkv: 3, hd: 64, D: 576, V: 49152 };
const TINYLLAMA: Shape = { name: "tinyllama", H: 32, Hkv: 4, hd: 64, D: 2048, V: 32000 };
const CAPACITY = 2112;

function stepState(ctx: GpuContext, last: number): Tensor {
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_LAST] = last;
  s[STEP_ROWS] = 1;
  return ctx.upload(s, [STEP_WORDS], "u32", "step");
}

interface Arm {
  variant: string;
  shape: string;
  bytes: number;
  dispatches: number;
  encode: () => Promise<unknown> | void;
}

/**
 * Times arms interleaved (sample s of every arm before sample s + 1 of any), so that load from
 * other processes on a shared machine spreads over all arms instead of favouring one; per sample:
 * `reps` encodes, one submit, wait (as timeGpu).
 */
async function timeArms(ctx: GpuContext, arms: readonly Arm[], opts: { warmup: number; samples: number; reps: number }): Promise<Timing[]> {
  const times: number[][] = arms.map(() => []);
  for (let s = 0; s < opts.warmup + opts.samples; s++) {
    for (const [i, arm] of arms.entries()) {
      await ctx.sync();
      const t0 = performance.now();
      for (let r = 0; r < opts.reps; r++) await arm.encode();
      await ctx.sync();
      if (s >= opts.warmup) times[i]!.push((performance.now() - t0) / opts.reps);
    }
  }
  return times.map((t) => {
    t.sort((a, b) => a - b);
    return { medianMs: t[Math.floor(t.length / 2)]!, minMs: t[0]!, maxMs: t[t.length - 1]!, samples: t.length };
  });
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(7);
  const cache = ctx.hasF16 ? "f16" : "f32";
  const timing = { warmup: 2, samples: env.quick ? 3 : 9, reps: env.quick ? 4 : 8 };
  const run = async (arms: Arm[]) => {
    const ts = await timeArms(ctx, arms, timing);
    arms.forEach((a, i) => rows.push(row(env, { bench: "step-kernels", variant: a.variant, shape: a.shape, bytes: a.bytes, extra: { dispatches: a.dispatches } }, ts[i]!)));
  };
  const disposeLater: { dispose(): void }[] = [];
  for (const s of [M134, TINYLLAMA]) {
    const { H, Hkv, hd } = s;
    const W = (H + 2 * Hkv) * hd;
    const kc = ctx.upload(rng.fillUniform(Hkv * CAPACITY * hd), [Hkv, CAPACITY, hd], cache, "kCache");
    const vc = ctx.upload(rng.fillUniform(Hkv * CAPACITY * hd), [Hkv, CAPACITY, hd], cache, "vCache");
    const qkv = ctx.upload(rng.fillUniform(W), [1, W], "f32", "qkv");
    const q = ctx.upload(rng.fillUniform(H * hd), [1, H, hd], "f32", "q");
    const k = ctx.upload(rng.fillUniform(Hkv * hd), [1, Hkv, hd], "f32", "k");
    const v = ctx.upload(rng.fillUniform(Hkv * hd), [1, Hkv, hd], "f32", "v");
    const inv = ctx.upload(Float32Array.from({ length: hd / 2 }, (_, i) => 10000 ** (-(2 * i) / hd)), [hd / 2], "f32", "inv_freq");
    const att = ctx.empty([1, H * hd], "f32", "att");
    const out3 = att.view([1, H, hd]);
    for (const ctxLen of env.quick ? [2048] : [256, 2048]) {
      const last = ctxLen - 1;
      const step = stepState(ctx, last);
      const pos = ctx.upload(stepPositions(last, 1), [1], "u32", "positions");
      const ranges = ctx.upload(stepRanges(last, 1), [1, 2], "u32", "ranges");
      const shape = `${s.name} ctx=${ctxLen} ${cache}`;
      // rope + KV append (the same bytes either way: q, k read and written, k and v to the cache)
      const ropeBytes = 2 * H * hd * 4 + Hkv * hd * (4 + 4) + 2 * Hkv * hd * (cache === "f16" ? 2 : 4);
      const rk = await planRopeKv(ctx, qkv, inv, kc, vc, step);
      await run([
        {
          variant: "rope q + rope k + kv_append (unfused)", shape, bytes: ropeBytes, dispatches: 3,
          encode: async () => {
            await rope(ctx, q, pos, inv);
            await rope(ctx, k, pos, inv);
            await kvAppend(ctx, k, v, kc, vc, pos);
          },
        },
        { variant: rk.label, shape, bytes: ropeBytes, dispatches: rk.dispatches.length, encode: () => rk.encode(ctx) },
      ]);
      // attention over ctxLen keys
      const kvBytes = 2 * Hkv * ctxLen * hd * (cache === "f16" ? 2 : 4);
      const arms: Arm[] = [];
      for (const maxKeys of [CAPACITY, ctxLen]) {
        const plan = resolveAttention(ctx, { T: 1, H, Hkv, hd, S: CAPACITY, cache }, { maxKeys });
        arms.push({ variant: `attention host ranges maxKeys=${maxKeys}: ${plan.label}`, shape, bytes: kvBytes, dispatches: 2, encode: () => attention(ctx, q, kc, vc, ranges, { out: out3, maxKeys }) });
      }
      const fixedChunk = Math.ceil(CAPACITY / attentionStepSplits(H, CAPACITY));
      for (const [chunk, headsInner, kernel] of [[0, true, "split"], [0, false, "split"], [fixedChunk, true, "split"], [0, true, "lanes"]] as const) {
        if (kernel === "lanes" && env.quick) continue;
        const as = await planAttentionStep(ctx, qkv, kc, vc, step, { out: att, headsInner, kernel, ...(chunk ? { chunk } : {}) });
        disposeLater.push(as);
        arms.push({ variant: as.label, shape, bytes: kvBytes, dispatches: as.dispatches.length, encode: () => as.encode(ctx) });
      }
      await run(arms);
      for (const x of [step, pos, ranges]) x.dispose();
    }
    // embedding of one row (context-independent)
    const table = ctx.upload(rng.fillUniform(s.V * s.D), [s.V, s.D], cache, "embed");
    const ids = ctx.upload([s.V - 5], [1], "u32", "ids");
    const resid = ctx.empty([1, s.D], "f32", "resid");
    const step = stepState(ctx, 10);
    const embBytes = s.D * ((cache === "f16" ? 2 : 4) + 4);
    const eshape = `${s.name} D=${s.D} V=${s.V} ${cache}`;
    const er = await planEmbedRows(ctx, ids, table, step, resid);
    await run([
      { variant: "embedding (ids tensor)", shape: eshape, bytes: embBytes, dispatches: 1, encode: () => embedding(ctx, ids, table, { out: resid }) },
      { variant: er.label, shape: eshape, bytes: embBytes, dispatches: er.dispatches.length, encode: () => er.encode(ctx) },
    ]);
    for (const p of disposeLater.splice(0)) p.dispose();
    for (const x of [kc, vc, qkv, q, k, v, inv, att, table, ids, resid, step]) x.dispose();
  }
  env.log(`step-kernels: cache store ${storeType(ctx, cache)}; arms of a group timed interleaved, ${timing.samples} samples × ${timing.reps} reps`);
  return rows;
}
