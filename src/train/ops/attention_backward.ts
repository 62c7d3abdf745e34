// Backward of attention over a KV cache with per-row key ranges and GQA (src/ops/attention.ts):
// given q [T, H, hd], the caches K, V [Hkv, S, hd] (f32: training activations), ranges [T, 2],
// the forward output out and its gradient dout [T, H, hd]:
//   kernels/attention_dq_backward.wgsl   per (t, h): recomputes logsumexp (no training-forward
//       variant needed), Dsum = dout·out, and dq; saves (lse, Dsum) [T, H, 2];
//   kernels/attention_dkv_backward.wgsl  per (g, j): dk, dv [Hkv, S, hd], summed over the
//       group's query heads and all rows whose range covers j — one writer per element.
// Memory O(T·H·hd + Hkv·S·hd); nothing T×T. Compute ≈ 5·T·keys·H·hd FMAs (QK twice, dO·V twice,
// and the accumulations); dkv invocations scan every query row, fine for training lengths
// (T ≤ a few thousand), not meant for long-context training.
// kvAppendBackward gathers the cache gradients back to the k, v rows [T, Hkv, hd] that
// kvAppend wrote (then RoPE backward and the k/v projections' backward follow).

import { ShapeError, UnsupportedError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import type { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { requireOneBinding } from "./common.js";
import { attentionProbs64, forEachAttentionRow, type AttentionDims64 } from "../../ops/attention.js";

const ATTN_BWD_WG = 32;
const KV_BWD_WG = 64;

/** Private-array capacity bucket for a head dim (one pipeline serves several; hd itself is a uniform). */
function hdBucket(hd: number): number {
  for (const b of [32, 64, 128, 256]) if (hd <= b) return b;
  throw new UnsupportedError(`attention backward: head dim ${hd} exceeds the largest supported (256)`);
}

export function attentionBackwardKernel(stage: "dq" | "dkv", hd: number): KernelVariant {
  const HDMAX = hdBucket(hd);
  return {
    file: stage === "dq" ? "attention_dq_backward" : "attention_dkv_backward",
    name: `attention_${stage}_backward_f32_hdmax${HDMAX}_wg${ATTN_BWD_WG}`,
    defines: { HDMAX, WG: ATTN_BWD_WG },
    bindings: ["read", "read", "read", "read", "read", "read", "read_write", "read_write", "uniform"],
  };
}

export function kvAppendBackwardKernel(): KernelVariant {
  return { file: "kv_append_backward", name: `kv_append_backward_f32_wg${KV_BWD_WG}`, defines: { WG: KV_BWD_WG }, bindings: ["read", "read", "read", "read_write", "read_write", "uniform"] };
}

export interface AttentionBackwardResult {
  dq: Tensor;
  /** [Hkv, S, hd] f32 */
  dk: Tensor;
  /** [Hkv, S, hd] f32 */
  dv: Tensor;
  /** [T, H, 2] f32: (logsumexp of the scaled scores, Σ dout·out) per row and head. */
  stats: Tensor;
}

/**
 * Gradients of out = attention(q, k, v, ranges) (same semantics as attention()). q, out, dout
 * [T, H, hd] f32; k, v [Hkv, S, hd] f32; ranges u32 [T, 2]. scale defaults to 1/sqrt(hd).
 */
export async function attentionBackward(
  ctx: GpuContext,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  ranges: Tensor,
  out: Tensor,
  dout: Tensor,
  opts: { scale?: number; dq?: Tensor; dk?: Tensor; dv?: Tensor } = {},
): Promise<AttentionBackwardResult> {
  const op = "attentionBackward";
  expectDType(k, ["f32"], op, "k");
  expectDType(v, ["f32"], op, "v");
  if (k.shape.length !== 3) throw new ShapeError(`${op}: k ('${k.label}') has shape [${k.shape.join(", ")}], expected [Hkv, S, hd]`);
  expectShape(v, k.shape, op, "v");
  const [Hkv, S, hd] = k.shape as [number, number, number];
  expectDType(q, ["f32"], op, "q");
  if (q.shape.length !== 3 || q.shape[2] !== hd) throw new ShapeError(`${op}: q ('${q.label}') has shape [${q.shape.join(", ")}], expected [T, H, ${hd}] (hd from k)`);
  const [T, H] = q.shape as [number, number, number];
  if (Hkv < 1 || H % Hkv !== 0) throw new ShapeError(`${op}: ${H} query heads are not a multiple of ${Hkv} kv heads`);
  expectDType(ranges, ["u32"], op, "ranges");
  expectShape(ranges, [T, 2], op, "ranges");
  for (const [t, n] of [[out, "out"], [dout, "dout"]] as const) {
    expectDType(t, ["f32"], op, n);
    expectShape(t, q.shape, op, n);
  }
  const dq = opts.dq ?? ctx.empty(q.shape, "f32", "attention.dq");
  const dk = opts.dk ?? ctx.empty(k.shape, "f32", "attention.dk");
  const dv = opts.dv ?? ctx.empty(k.shape, "f32", "attention.dv");
  expectShape(dq, q.shape, op, "dq");
  expectShape(dk, k.shape, op, "dk");
  expectShape(dv, k.shape, op, "dv");
  for (const [t, n] of [[dq, "dq"], [dk, "dk"], [dv, "dv"]] as const) expectDType(t, ["f32"], op, n);
  const stats = ctx.empty([T, H, 2], "f32", "attention.stats");
  for (const [t, n] of [[q, "q"], [k, "k"], [v, "v"], [out, "out"], [dout, "dout"], [dq, "dq"], [dk, "dk"], [dv, "dv"], [stats, "stats"]] as const) {
    requireOneBinding(ctx, t, op, n, "attention backward binds each tensor whole: fewer rows per step");
  }
  const kq = await ctx.kernels.get(attentionBackwardKernel("dq", hd));
  const kkv = await ctx.kernels.get(attentionBackwardKernel("dkv", hd));
  const scale = opts.scale ?? 1 / Math.sqrt(hd);
  const params = new Params().u32(T).u32(H).u32(Hkv).u32(S).u32(H / Hkv).u32(hd).f32(scale).u32(0).bytes();
  if (T > 0 && hd > 0) ctx.dispatch(kq, [q, k, v, ranges, out, dout, dq, stats], params, grid(ctx, Math.ceil((T * H) / ATTN_BWD_WG)));
  if (S > 0 && hd > 0) ctx.dispatch(kkv, [q, k, v, ranges, dout, stats, dk, dv], params, grid(ctx, Math.ceil((Hkv * S) / ATTN_BWD_WG)));
  return { dq, dk, dv, stats };
}

/** dk, dv [T, Hkv, hd] = rows positions[t] of the cache gradients [Hkv, S, hd] (0 for positions ≥ S). */
export async function kvAppendBackward(ctx: GpuContext, dkCache: Tensor, dvCache: Tensor, positions: Tensor): Promise<{ dk: Tensor; dv: Tensor }> {
  const op = "kvAppendBackward";
  expectDType(dkCache, ["f32"], op, "dkCache");
  expectDType(dvCache, ["f32"], op, "dvCache");
  if (dkCache.shape.length !== 3) throw new ShapeError(`${op}: dkCache ('${dkCache.label}') has shape [${dkCache.shape.join(", ")}], expected [Hkv, S, hd]`);
  expectShape(dvCache, dkCache.shape, op, "dvCache");
  const [Hkv, S, hd] = dkCache.shape as [number, number, number];
  expectDType(positions, ["u32"], op, "positions");
  if (positions.shape.length !== 1) throw new ShapeError(`${op}: positions ('${positions.label}') has shape [${positions.shape.join(", ")}], expected [T]`);
  const T = positions.shape[0]!;
  const dk = ctx.empty([T, Hkv, hd], "f32", "kv_append.dk");
  const dv = ctx.empty([T, Hkv, hd], "f32", "kv_append.dv");
  const kernel = await ctx.kernels.get(kvAppendBackwardKernel());
  const n = T * Hkv * hd;
  if (n > 0) ctx.dispatch(kernel, [dkCache, dvCache, positions, dk, dv], new Params().u32(T).u32(Hkv).u32(S).u32(hd).bytes(), grid(ctx, Math.ceil(n / KV_BWD_WG)));
  return { dk, dv };
}

/**
 * CPU reference (float64, materialises each row's probabilities): dq [T, H, hd], dk, dv
 * [Hkv, S, hd] of out = attention(q, k, v, ranges) for upstream gradient dout.
 */
export function attentionBackwardReference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  ranges: ArrayLike<number>,
  dout: ArrayLike<number>,
  dims: AttentionDims64,
  scale = 1 / Math.sqrt(dims.hd),
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { T, H, Hkv, S, hd } = dims;
  const dq = new Float64Array(T * H * hd);
  const dk = new Float64Array(Hkv * S * hd);
  const dv = new Float64Array(Hkv * S * hd);
  forEachAttentionRow(ranges, dims, (qo, g, lo, hi) => {
    const n = hi - lo;
    const p = attentionProbs64(q, k, qo, g, lo, hi, dims, scale);
    // dp_j = dout·v_j; ds_j = p_j (dp_j − Σ_i p_i dp_i)
    const dp = new Float64Array(n);
    let dsum = 0;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let d = 0; d < hd; d++) s += dout[qo + d]! * v[(g * S + lo + j) * hd + d]!;
      dp[j] = s;
      dsum += p[j]! * s;
    }
    for (let j = 0; j < n; j++) {
      const row = (g * S + lo + j) * hd;
      const ds = p[j]! * (dp[j]! - dsum);
      for (let d = 0; d < hd; d++) {
        dq[qo + d]! += scale * ds * k[row + d]!;
        dk[row + d]! += scale * ds * q[qo + d]!;
        dv[row + d]! += p[j]! * dout[qo + d]!;
      }
    }
  });
  return { dq, dk, dv };
}

/** CPU reference of kvAppendBackward: dk, dv [T, Hkv, hd] gathered from [Hkv, S, hd]. */
export function kvAppendBackwardReference(dkCache: ArrayLike<number>, dvCache: ArrayLike<number>, positions: ArrayLike<number>, Hkv: number, S: number, hd: number): { dk: Float64Array; dv: Float64Array } {
  const T = positions.length;
  const dk = new Float64Array(T * Hkv * hd);
  const dv = new Float64Array(T * Hkv * hd);
  for (let t = 0; t < T; t++) {
    const pos = positions[t]!;
    if (pos >= S) continue;
    for (let g = 0; g < Hkv; g++) {
      for (let d = 0; d < hd; d++) {
        dk[(t * Hkv + g) * hd + d] = dkCache[(g * S + pos) * hd + d]!;
        dv[(t * Hkv + g) * hd + d] = dvCache[(g * S + pos) * hd + d]!;
      }
    }
  }
  return { dk, dv };
}
