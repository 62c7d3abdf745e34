// Fused top-k cosine search (the OneGen retrieval core): scores = dot(q̂, index[r]) for each row r
// of an index [N, D] (f16 or f32, rows L2-normalized at insertion), q̂ = q / ‖q‖ normalized in
// the kernel; returns the k best (id, score) pairs per query, best first, ties → lower id.
//
// A short chain in one command buffer (kernels/topk_cosine.wgsl):
//   stage 1, once per binding window of index rows: workgroups scan rowsPerWg rows each and
//            write their k best to a candidates buffer [Q, groups, k];
//   stage 2: one workgroup per query merges all groups into the final k.
// The index may exceed one storage binding (N in the millions): it is bound in row windows.
//
// Defined edge cases: a zero query scores 0 against every row (so the k lowest ids win);
// k > count fills the tail with id 0xFFFFFFFF and score −inf; rows scoring NaN are never returned.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { ShapeError, UnsupportedError, UsageError } from "../errors.js";
import { expectDType, expectShape, Params, storeFeatures, storeType, type StoreType } from "./common.js";

/** Invocations per workgroup: one item (row or candidate) each per batch. */
export const TOPK_WG = 256;
/** Slots in the workgroup candidate list: 1024 × 8 B = 8 KiB of workgroup memory (fits the 16 KiB WebGPU default). */
export const TOPK_SLOTS = 1024;
/** Largest k: the list must hold k kept items plus one batch of WG new ones. */
export const TOPK_MAX_K = TOPK_SLOTS - TOPK_WG;
/**
 * Stage-1 workgroups aimed for per window. Hardware GPUs: 512, enough to fill a large GPU (132
 * SMs on an H100 hold ≥ 4 each; unmeasured there). Software GPUs (lavapipe, 2 cores): 16, because
 * each workgroup barrier costs ~14 µs there and fewer, longer workgroups reach the threshold
 * filter sooner and sort less (measured 2026-11-24: N=100k D=64 f16 k=64 took 175 ms with 98
 * workgroups of 1024 rows; see bench/search.bench.ts for the current figure).
 * Rows per workgroup stay ≥ MIN_ROWS_PER_WG so the per-workgroup sort and candidates stay small.
 */
export const TOPK_TARGET_WGS = { hardware: 512, software: 16 } as const;
export const TOPK_MIN_ROWS_PER_WG = 4 * TOPK_WG;

/** The sentinel id of empty result slots. */
export const NO_ID = 0xffffffff;

export interface CosineTopKVariant {
  stage: "scan" | "merge";
  /** scan only: index store type ("f16p": f16 rows read as packed pairs, no shader-f16). */
  index?: StoreType;
  /** scan only: vec4 loads (D % 4 == 0). */
  vec4?: boolean;
}

export function cosineTopKKernel(v: CosineTopKVariant): KernelVariant {
  const common = { S: TOPK_SLOTS, WG: TOPK_WG };
  if (v.stage === "merge") {
    return {
      file: "topk_cosine",
      name: `topk_merge_s${TOPK_SLOTS}_wg${TOPK_WG}`,
      defines: { ...common, MERGE: true, F16: false, PACKED: false, VEC4: false, QV: "f32", RV: "f32" },
      bindings: ["read", "read_write", "read_write", "uniform"],
    };
  }
  const dt = v.index ?? "f32";
  const vec4 = v.vec4 ?? false;
  return {
    file: "topk_cosine",
    name: `topk_cosine_${dt}${vec4 ? "_vec4" : ""}_s${TOPK_SLOTS}_wg${TOPK_WG}`,
    defines: {
      ...common,
      MERGE: false,
      F16: dt === "f16",
      PACKED: dt === "f16p",
      VEC4: vec4,
      QV: vec4 ? "vec4<f32>" : "f32",
      RV: dt === "f16p" ? (vec4 ? "vec2<u32>" : "u32") : vec4 ? `vec4<${dt}>` : dt,
    },
    bindings: ["read", "read", "read_write", "uniform"],
    features: storeFeatures(dt),
  };
}

export interface CosineTopKOptions {
  /** Output ids u32 [Q, k] (or [k] for a 1-D query). */
  outIds?: Tensor;
  /** Output scores f32 [Q, k] (or [k]). */
  outScores?: Tensor;
  /** Valid rows (≤ N): the index may have spare capacity. Default N. */
  count?: number;
  /** Forces vec4 loads on (throws if D % 4 != 0) or off; default: on when D % 4 == 0. */
  vec4?: boolean;
}

/** Stage-1 rows per workgroup for a window of `rows` rows (a multiple of TOPK_WG). */
export function topkRowsPerWorkgroup(rows: number, software: boolean): number {
  const per = Math.max(TOPK_MIN_ROWS_PER_WG, Math.ceil(rows / TOPK_TARGET_WGS[software ? "software" : "hardware"]));
  return Math.ceil(per / TOPK_WG) * TOPK_WG;
}

/**
 * The k best rows of `index` [N, D] (f16|f32) by cosine similarity with `query` [D] or [Q, D] f32.
 * Returns { ids u32, scores f32 }, shaped [k] for a 1-D query and [Q, k] otherwise, best first.
 */
export async function cosineTopK(ctx: GpuContext, query: Tensor, index: Tensor, k: number, opts: CosineTopKOptions = {}): Promise<{ ids: Tensor; scores: Tensor }> {
  const op = "cosineTopK";
  expectDType(query, ["f32"], op, "query");
  expectDType(index, ["f32", "f16"], op, "index");
  if (index.shape.length !== 2) throw new ShapeError(`${op}: index ('${index.label}') has shape [${index.shape.join(", ")}], expected [N, D]`);
  const [N, D] = index.shape as [number, number];
  if (query.shape.length !== 1 && query.shape.length !== 2) throw new ShapeError(`${op}: query ('${query.label}') has shape [${query.shape.join(", ")}], expected [D] or [Q, D]`);
  const Q = query.shape.length === 1 ? 1 : query.shape[0]!;
  if (query.shape[query.shape.length - 1] !== D) throw new ShapeError(`${op}: query ('${query.label}') has shape [${query.shape.join(", ")}], expected last dimension D = ${D} of index '${index.label}'`);
  if (!Number.isInteger(k) || k < 1 || k > TOPK_MAX_K) throw new UsageError(`${op}: k = ${k}, expected an integer in [1, ${TOPK_MAX_K}]`);
  const count = opts.count ?? N;
  if (!Number.isInteger(count) || count < 0 || count > N) throw new UsageError(`${op}: count = ${count}, expected an integer in [0, ${N}] (rows of '${index.label}')`);
  if (D === 0) throw new ShapeError(`${op}: index '${index.label}' has D = 0`);
  const outShape = query.shape.length === 1 ? [k] : [Q, k];
  if (opts.outIds) {
    expectDType(opts.outIds, ["u32"], op, "outIds");
    expectShape(opts.outIds, outShape, op, "outIds");
  }
  if (opts.outScores) {
    expectDType(opts.outScores, ["f32"], op, "outScores");
    expectShape(opts.outScores, outShape, op, "outScores");
  }
  const dt = index.dtype as "f32" | "f16";
  if (opts.vec4 === true && D % 4 !== 0) throw new UsageError(`${op}: vec4 requested but D = ${D} is not a multiple of 4`);
  const vec4 = opts.vec4 ?? D % 4 === 0;
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (Q > maxWg) throw new UnsupportedError(`${op}: ${Q} queries exceed maxComputeWorkgroupsPerDimension (${maxWg})`, "split the queries into batches");
  const [scan, merge] = await Promise.all([ctx.kernels.get(cosineTopKKernel({ stage: "scan", index: storeType(ctx, dt), vec4 })), ctx.kernels.get(cosineTopKKernel({ stage: "merge" }))]);
  const rowBytes = D * DTYPE_BYTES[dt];
  const windows = count > 0 ? ctx.bindingWindows(count, rowBytes, `${op} index '${index.label}'`) : [];
  const plan = windows.map((w) => {
    let rowsPerWg = topkRowsPerWorkgroup(w.rows, ctx.adapter.isSoftware);
    let groups = Math.ceil(w.rows / rowsPerWg);
    if (groups > maxWg) {
      rowsPerWg = Math.ceil(w.rows / maxWg / TOPK_WG) * TOPK_WG;
      groups = Math.ceil(w.rows / rowsPerWg);
    }
    return { ...w, rowsPerWg, groups };
  });
  const groupsTotal = Math.max(1, plan.reduce((s, p) => s + p.groups, 0));
  const candBytes = Q * groupsTotal * k * 8;
  if (candBytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new UnsupportedError(
      `${op}: the candidates buffer for ${Q} queries × ${groupsTotal} groups × k=${k} needs ${candBytes} bytes, over the storage binding limit of ${ctx.limits.maxStorageBufferBindingSize}`,
      "use fewer queries per call or a smaller k",
    );
  }
  const cand = ctx.empty([Q * groupsTotal * k * 2], "u32", "cosineTopK.candidates");
  const ids = opts.outIds ?? ctx.empty(outShape, "u32", "cosineTopK.ids");
  const scores = opts.outScores ?? ctx.empty(outShape, "f32", "cosineTopK.scores");
  const qUnits = vec4 ? D / 4 : D;
  let groupBase = 0;
  for (const p of plan) {
    const params = new Params().u32(p.rows).u32(qUnits).u32(p.firstRow).u32(p.rowsPerWg).u32(k).u32(groupsTotal).u32(groupBase).f32(-Infinity).bytes();
    ctx.dispatch(scan, [query, { tensor: index, byteOffset: p.byteOffset, byteSize: p.rows * rowBytes }, cand], params, [p.groups, Q]);
    groupBase += p.groups;
  }
  // count 0: nothing was scanned; merging 0 groups outputs sentinels only.
  const mergeGroups = count === 0 ? 0 : groupsTotal;
  ctx.dispatch(merge, [cand, ids, scores], new Params().u32(mergeGroups).u32(0).u32(0).u32(0).u32(k).u32(groupsTotal).u32(0).f32(-Infinity).bytes(), [Q]);
  cand.dispose();
  return { ids, scores };
}

/**
 * CPU reference: query [Q·D] (Q = query.length / D), index [N, D] as f32 values (f16 rows given
 * as their f32 values). Scores in float64: dot(q, row) / ‖q‖ (0 for a zero query). Returns the
 * k best per query (higher score, then lower id), padded with (NO_ID, −inf) past N.
 */
export function cosineTopKReference(query: Float32Array, index: Float32Array, N: number, D: number, k: number): { ids: Uint32Array; scores: Float64Array } {
  const Q = query.length / D;
  const ids = new Uint32Array(Q * k).fill(NO_ID);
  const scores = new Float64Array(Q * k).fill(-Infinity);
  for (let q = 0; q < Q; q++) {
    let n2 = 0;
    for (let i = 0; i < D; i++) n2 += query[q * D + i]! ** 2;
    const inv = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
    // best-first list of at most k entries, kept by insertion (ties: the earlier, lower id stays ahead)
    const bestS: number[] = [];
    const bestI: number[] = [];
    for (let r = 0; r < N; r++) {
      let dot = 0;
      for (let i = 0; i < D; i++) dot += query[q * D + i]! * index[r * D + i]!;
      const s = dot * inv; // equal dot products give equal scores (ties stay ties)
      if (Number.isNaN(s)) continue;
      if (bestS.length === k && !(s > bestS[k - 1]!)) continue;
      let j = bestS.length;
      while (j > 0 && s > bestS[j - 1]!) j--;
      bestS.splice(j, 0, s);
      bestI.splice(j, 0, r);
      if (bestS.length > k) {
        bestS.pop();
        bestI.pop();
      }
    }
    for (let j = 0; j < bestS.length; j++) {
      ids[q * k + j] = bestI[j]!;
      scores[q * k + j] = bestS[j]!;
    }
  }
  return { ids, scores };
}
