// Fused softmax cross-entropy over the vocabulary (kernels/cross_entropy.wgsl):
//   loss[t]  = logsumexp(logits[t]) − logits[t, labels[t]]   (0 for masked rows, label 0xFFFFFFFF)
//   loss     = scale · Σ_t loss[t] / norm,  norm = opts.normalizer ?? #unmasked rows
//   dlogits  = scale · (softmax(logits[t]) − onehot(labels[t])) / norm, masked rows 0
// Three dispatches in one batch, no host sync: ROWS (per-row lse and loss, one pass over the
// row with an online max/sum), REDUCE (count and sum, one workgroup), GRAD (one more pass, in
// place over the logits or over a copy). `normalizer` lets gradient accumulation divide by the
// token count of the whole accumulated batch; `scale` carries a loss weight (λ_gen).
// Logits [T, V] above one storage binding (T = 512, V = 128256: 262 MB) come in row windows.

import { ShapeError, UsageError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { requireOneBinding } from "./common.js";

/** The label of a masked row (no loss, zero gradient). */
export const IGNORE_LABEL = 0xffffffff;

/**
 * Invocations per workgroup of the row stages (one workgroup per row): 64 on software GPUs (the
 * rmsnorm measurement: per-invocation cost dominates on lavapipe), 256 on hardware (unmeasured).
 */
export const CE_WG = { hardware: 256, software: 64 } as const;

export function crossEntropyKernel(stage: "rows" | "reduce" | "grad", wg: number): KernelVariant {
  if (wg & (wg - 1)) throw new UsageError(`crossEntropy: workgroup size ${wg} must be a power of two (tree reduction)`);
  return {
    file: "cross_entropy",
    name: `cross_entropy_${stage}_wg${wg}`,
    defines: { ROWS: stage === "rows", REDUCE: stage === "reduce", GRAD: stage === "grad", WG: wg },
    bindings: stage === "grad" ? ["read", "read", "read", "read_write", "uniform"] : ["read", "read", "read_write", "uniform"],
  };
}

export interface CrossEntropyOptions {
  /** Where dlogits go: "inplace" (default) overwrites the logits; a tensor [T, V] f32 receives them; "none" skips the gradient. */
  grad?: "inplace" | "none" | Tensor;
  /** Divisor of the summed loss and of the gradient; default the number of unmasked rows. */
  normalizer?: number;
  /** Multiplier of the loss and the gradient (default 1). */
  scale?: number;
  /** Workgroup size of the row stages (power of two); default CE_WG for the device kind. */
  wg?: number;
}

export interface CrossEntropyResult {
  /** f32 [4]: [scale·Σloss/norm, unmasked count, Σloss, scale/norm (the gradient factor)]. */
  loss: Tensor;
  /** f32 [T, 2]: per row (logsumexp, loss). */
  rowStats: Tensor;
  /** dlogits [T, V] f32 (the logits tensor itself when in place), or null with grad "none". */
  dlogits: Tensor | null;
}

/** logits [T, V] f32, labels u32 [T] (GPU tensor, or host labels that are validated). */
export async function crossEntropy(ctx: GpuContext, logits: Tensor, labels: Tensor | ArrayLike<number>, opts: CrossEntropyOptions = {}): Promise<CrossEntropyResult> {
  const op = "crossEntropy";
  expectDType(logits, ["f32"], op, "logits");
  if (logits.shape.length !== 2) throw new ShapeError(`${op}: logits ('${logits.label}') has shape [${logits.shape.join(", ")}], expected [T, V]`);
  const [T, V] = logits.shape as [number, number];
  if (V === 0) throw new ShapeError(`${op}: logits ('${logits.label}') has V = 0`);
  let lab: Tensor;
  let uploaded = false;
  if (labels instanceof Tensor) {
    lab = labels;
    expectDType(lab, ["u32"], op, "labels");
    expectShape(lab, [T], op, "labels");
  } else {
    if (labels.length !== T) throw new ShapeError(`${op}: ${labels.length} labels for ${T} rows of logits '${logits.label}'`);
    for (let i = 0; i < T; i++) {
      const l = labels[i]!;
      if (l !== IGNORE_LABEL && (!Number.isInteger(l) || l < 0 || l >= V)) throw new UsageError(`${op}: label ${l} at row ${i} is outside the vocabulary of ${V} (mask rows with 0xFFFFFFFF)`);
    }
    lab = ctx.upload(Uint32Array.from(labels), [Math.max(T, 1)], "u32", "cross_entropy.labels");
    uploaded = true;
  }
  const norm = opts.normalizer ?? 0;
  if (opts.normalizer !== undefined && !(opts.normalizer > 0 && Number.isFinite(opts.normalizer))) throw new UsageError(`${op}: normalizer must be a finite number > 0, got ${opts.normalizer}`);
  const scale = opts.scale ?? 1;
  if (!Number.isFinite(scale)) throw new UsageError(`${op}: scale must be finite, got ${scale}`);
  const grad = opts.grad ?? "inplace";
  let g: Tensor | null = null;
  if (grad instanceof Tensor) {
    expectDType(grad, ["f32"], op, "grad");
    expectShape(grad, [T, V], op, "grad");
    if (grad.buffer === logits.buffer) throw new ShapeError(`${op}: grad ('${grad.label}') is the logits buffer: use grad "inplace"`);
    g = grad;
  } else if (grad === "inplace") {
    g = logits;
  }
  const wg = opts.wg ?? CE_WG[ctx.adapter.isSoftware ? "software" : "hardware"];
  const [kRows, kReduce, kGrad] = await Promise.all([crossEntropyKernel("rows", wg), crossEntropyKernel("reduce", wg), crossEntropyKernel("grad", wg)].map((v) => ctx.kernels.get(v)));
  const rowStats = ctx.empty([T, 2], "f32", "cross_entropy.row_stats");
  const loss = ctx.empty([4], "f32", "cross_entropy.loss");
  requireOneBinding(ctx, rowStats, op, "row statistics");
  const wins = T > 0 ? ctx.bindingWindows(T, V * 4, `${op}: logits '${logits.label}'`) : [];
  const p = (rows: number, row0: number) => new Params().u32(rows).u32(V).u32(row0).u32(0).f32(norm).f32(scale).bytes();
  for (const w of wins) {
    ctx.dispatch(kRows!, [{ tensor: logits, byteOffset: w.byteOffset, byteSize: w.rows * V * 4 }, lab, rowStats], p(w.rows, w.firstRow), grid(ctx, w.rows));
  }
  ctx.dispatch(kReduce!, [lab, rowStats, loss], p(T, 0), [1]);
  if (g && T > 0) {
    if (g !== logits) ctx.copy(logits.buffer, 0, g.buffer, 0, logits.byteLength);
    for (const w of wins) {
      ctx.dispatch(kGrad!, [lab, rowStats, loss, { tensor: g, byteOffset: w.byteOffset, byteSize: w.rows * V * 4 }], p(w.rows, w.firstRow), grid(ctx, w.rows));
    }
  }
  if (uploaded) lab.dispose();
  return { loss, rowStats, dlogits: g };
}

/**
 * CPU reference (float64): logits [T, V], labels [T] (0xFFFFFFFF masked). Returns per-row loss,
 * loss = scale·Σ/norm, count, and dlogits [T, V].
 */
export function crossEntropyReference(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  T: number,
  V: number,
  opts: { normalizer?: number; scale?: number } = {},
): { rowLoss: Float64Array; lse: Float64Array; loss: number; count: number; dlogits: Float64Array } {
  const rowLoss = new Float64Array(T);
  const lse = new Float64Array(T);
  const dlogits = new Float64Array(T * V);
  let count = 0;
  let sum = 0;
  for (let t = 0; t < T; t++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[t * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[t * V + v]! - mx);
    lse[t] = mx + Math.log(s);
    const l = labels[t]!;
    if (l === IGNORE_LABEL) continue;
    rowLoss[t] = l < V ? lse[t]! - logits[t * V + l]! : NaN;
    sum += rowLoss[t]!;
    count++;
  }
  const norm = opts.normalizer ?? count;
  const scale = opts.scale ?? 1;
  const factor = norm > 0 ? scale / norm : 0;
  for (let t = 0; t < T; t++) {
    const l = labels[t]!;
    if (l === IGNORE_LABEL) continue;
    for (let v = 0; v < V; v++) dlogits[t * V + v] = (Math.exp(logits[t * V + v]! - lse[t]!) - (v === l ? 1 : 0)) * factor;
  }
  return { rowLoss, lse, loss: sum * factor, count, dlogits };
}
