// Fused top-k cosine search (the OneGen retrieval core): scores = dot(q̂, index[r]) for each row r
// of an index [N, D] (f16 or f32, rows L2-normalized at insertion), q̂ = q / ‖q‖ normalized in
// the kernel; returns the k best (id, score) pairs per query, best first, ties → lower id.
//
// A short chain in one command buffer (kernels/topk_cosine.wgsl):
//   stage 1, once per binding window of index rows: workgroups scan rowsPerWg rows each and
//            write their k best to a candidates buffer [Q, groups, k];
//   stage 2: one workgroup per query merges all groups into the final k (skipped when one
//            workgroup scans the whole index: it writes the result itself, 1 dispatch in all).
// The index may exceed one storage binding (N in the millions): it is bound in row windows.
//
// Two layouts of the index for stage 1 (CosineTopKOptions.layout; both stay runnable, A/B arms in
// bench/search.bench.ts):
//   rows:  the index as stored; invocation i of a batch owns row b + i and walks its D elements,
//          so neighbouring invocations read addresses D elements apart (lavapipe gathers every
//          load; a real GPU cannot coalesce them), and every lane reloads the query per row.
//   tiled: a lane-interleaved copy made once per (index, count) by cosineIndexPack (the
//          kernels/gemv_repack.wgsl layout, T rows per tile): neighbouring invocations read
//          neighbouring 16-byte chunks, and each invocation scores R rows per query-chunk load.
//          Costs a copy as large as the index's capacity, made and extended by cosineIndexPack
//          (DocumentIndex keeps its copy current after every append and at load; "auto" scans
//          the tiled layout only where such a copy exists, so a search never copies implicitly).
// Choice per device class (cosineTopKPreferredLayout, cosineTopKTiledShape), measured on lavapipe
// (llvmpipe 8-wide, 2 cores shared with ~8 other jobs at load average 15–24, Node + Dawn,
// 2026-12-02; f16 index, one query, arms alternated round by round in one process; copy bandwidth
// beside 0.6–2 GB/s instead of ~14 on a quiet machine, so single figures swing ±50%):
//   N × D (k)            rows ms   tiled T8 R4        other tiled shapes (× vs rows)
//   721 × 128 (5)  demo   1.9      1.8  (×1.09)       T64R4 ×1.03; quick runs ×0.74–1.61 (noise: fixed cost)
//   721 × 576 (5)         32       26   (×1.25)       T64R4 ×1.16; quick runs ×1.08, ×1.45
//   10k × 2048 (10)       473      289  (×1.64)       T64R4 ×1.59; quick runs ×1.69, ×1.92; T8R1 ×0.75,
//                                                     T8R8 ×1.07, T256R1 ×0.88 (R shares query loads:
//                                                     f16 rows need 2 query words per index word)
//   100k × 2048 (10)      4882     3186 (×1.53)       T64R4 ×1.50
//   f32 721 × 128 / 576   quick runs ×1.08–1.14 / ×0.69 (noise-dominated, like the f16 demo shape)
// The demo's index (721 entries, D = 128) costs ~2 ms per search in either layout: the fixed cost
// (dispatch and submit, a 256-invocation workgroup's barriers and its sort) dominates there.
// → software: tiled T=8 (one llvmpipe SIMD group per tile, so a group's walk is contiguous) R=4.
// The copy itself: 721 × 128 2–20 ms, 10k × 2048 1.8–2 s, 100k × 2048 30–40 s at that load.
// Hardware GPUs: not measured (no GPU lent to this session) → rows, as before; tiled T=64 R=4
// (64 lanes read 1 KiB contiguous, as coalescing wants) is the first candidate to measure.
//
// Gate (CosineTopKOptions.gate, u32 [1]): every dispatch of the search reads gate[0] first and
// returns at once when it is 0 (fixed grids, no indirect dispatch), leaving the outputs untouched:
// what a decode token that is not a query token pays. Measured (same machine and load, 16 calls
// per submit, wall time per call with host encode, median of 9 rounds, min in brackets): the
// demo's index (one workgroup: 1 dispatch per call, whatever the gate): gate 0 0.17–0.27 ms
// (0.11–0.15), gate 1 1.6–2.9 ms (1.1–1.3), ungated the same as gate 1; 10k × 2048 (2 dispatches:
// scan + merge): gate 0 0.6–1.7 ms (0.23–0.25; the medians are the machine's load), gate 1
// 150–260 ms. Before the one-workgroup case skipped the merge, the demo shape paid 2 dispatches,
// 0.20–0.30 ms with gate 0.
// normWeight: the query is a raw (pre-final-norm) hidden row h scored as h ∘ g (the norm's
// 1/rms factor is a positive scale, which cosine cancels), so a hook needs no final-norm dispatch;
// it costs an extra load of g per query element in the scan (gate 1 at the demo shape: 1.6–4.7
// ms vs 1.6–2.9 without, within the noise of those runs).
//
// Defined edge cases: a zero query scores 0 against every row (so the k lowest ids win);
// k > count fills the tail with id 0xFFFFFFFF and score −inf; rows scoring NaN are never returned.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { ShapeError, UnsupportedError, UsageError } from "../errors.js";
import { expectDType, expectShape, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { encodeTiledCopy, tiledCopyShape } from "./tiled-copy.js";

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

/** Layouts of the index the scan reads (see kernels/topk_cosine.wgsl). */
export type CosineTopKLayout = "rows" | "tiled";
export const COSINE_TOPK_LAYOUTS: readonly CosineTopKLayout[] = ["rows", "tiled"];

export interface CosineTopKVariant {
  stage: "scan" | "merge";
  /** scan only: "rows" reads the index as stored; "tiled" its lane-interleaved copy (cosineIndexPack). Default rows. */
  layout?: CosineTopKLayout;
  /** scan, rows layout: index store type ("f16p": f16 rows read as packed pairs, no shader-f16). Tiled: f32 or f16 (read as packed pairs always). */
  index?: StoreType;
  /** scan, rows layout only: vec4 loads (D % 4 == 0). */
  vec4?: boolean;
  /** Every workgroup returns at once when gate[0] == 0 (an extra read-only binding). */
  gate?: boolean;
  /** scan only: the query is a raw hidden row h, scored as h ∘ g with g the norm weight in this dtype. */
  qnorm?: "f32" | "f16";
  /** tiled only: rows per tile (a divisor of TOPK_WG) and rows per invocation per batch. Default cosineTopKTiledShape's. */
  tile?: TopkTileShape;
  /** scan only: write the final ids/scores instead of candidates (the index is one workgroup's rows; no merge). */
  direct?: boolean;
}

/** Tile height T of the tiled copy and rows per invocation R of the tiled scan. */
export interface TopkTileShape {
  T: number;
  R: number;
}

export function cosineTopKKernel(v: CosineTopKVariant): KernelVariant {
  const gate = v.gate ?? false;
  const gateTag = gate ? "_gate" : "";
  const common = { S: TOPK_SLOTS, WG: TOPK_WG, GATE: gate, TILED: false, WF16: false, CE: 4, T: 1, RB: 1, QNORM: false, GF16: false, DIRECT: false };
  if (v.stage === "merge") {
    if (v.layout !== undefined || v.index !== undefined || v.vec4 !== undefined || v.qnorm !== undefined || v.direct !== undefined) throw new UsageError("cosineTopKKernel: the merge stage takes only 'gate'");
    return {
      file: "topk_cosine",
      name: `topk_merge${gateTag}_s${TOPK_SLOTS}_wg${TOPK_WG}`,
      defines: { ...common, MERGE: true, F16: false, PACKED: false, NEEDP: false, VEC4: false, QV: "f32", RV: "f32", B_GATE: 3, B_NORM: 0, B_PARAMS: gate ? 4 : 3 },
      bindings: ["read", "read_write", "read_write", ...(gate ? (["read"] as const) : []), "uniform"],
    };
  }
  const layout = v.layout ?? "rows";
  const qnorm = v.qnorm;
  const direct = v.direct ?? false;
  const bindings = ["read", "read", "read_write", ...(direct ? (["read_write"] as const) : []), ...(gate ? (["read"] as const) : []), ...(qnorm ? (["read"] as const) : []), "uniform"] as const;
  const b0 = direct ? 4 : 3;
  const slots = { B_GATE: b0, B_NORM: b0 + (gate ? 1 : 0), B_PARAMS: b0 + (gate ? 1 : 0) + (qnorm ? 1 : 0), DIRECT: direct };
  const qTag = (qnorm ? `_qnorm${qnorm}` : "") + (direct ? "_direct" : "");
  if (layout === "tiled") {
    const dt = v.index ?? "f32";
    if (dt === "f16p") throw new UsageError("cosineTopKKernel: the tiled layout reads f16 as packed pairs always; give index 'f16'");
    if (v.vec4) throw new UsageError("cosineTopKKernel: vec4 is a rows-layout option (the tiled layout reads 16-byte chunks)");
    const wf16 = dt === "f16";
    const { T, R } = v.tile ?? TOPK_TILE.software;
    if (!Number.isInteger(T) || T < 1 || TOPK_WG % T !== 0) throw new UsageError(`cosineTopKKernel: tile T = ${T}, expected a divisor of ${TOPK_WG}`);
    if (!Number.isInteger(R) || R < 1 || R > 16) throw new UsageError(`cosineTopKKernel: tile R = ${R}, expected an integer in [1, 16]`);
    return {
      file: "topk_cosine",
      name: `topk_cosine_tiled_${dt}_t${T}_r${R}${qTag}${gateTag}_s${TOPK_SLOTS}_wg${TOPK_WG}`,
      defines: { ...common, ...slots, MERGE: false, TILED: true, WF16: wf16, CE: wf16 ? 8 : 4, T, RB: R, QNORM: !!qnorm, GF16: qnorm === "f16", F16: false, PACKED: false, NEEDP: qnorm === "f16", VEC4: false, QV: "f32", RV: wf16 ? "vec4<u32>" : "vec4<f32>" },
      bindings,
    };
  }
  const dt = v.index ?? "f32";
  const vec4 = v.vec4 ?? false;
  return {
    file: "topk_cosine",
    name: `topk_cosine_${dt}${vec4 ? "_vec4" : ""}${qTag}${gateTag}_s${TOPK_SLOTS}_wg${TOPK_WG}`,
    defines: {
      ...common,
      ...slots,
      MERGE: false,
      QNORM: !!qnorm,
      GF16: qnorm === "f16",
      F16: dt === "f16",
      PACKED: dt === "f16p",
      NEEDP: dt === "f16p" || qnorm === "f16",
      VEC4: vec4,
      QV: vec4 ? "vec4<f32>" : "f32",
      RV: dt === "f16p" ? (vec4 ? "vec2<u32>" : "u32") : vec4 ? `vec4<${dt}>` : dt,
    },
    bindings,
    features: storeFeatures(dt),
  };
}

// ------------------------------------------------------------------ the tiled copy of an index

/** A lane-interleaved copy of rows [0, count) of an index [N, D]: u32 words [tiles, kc, T, 4], tiles = ceil(N / T). */
export interface CosineIndexPack {
  tensor: Tensor;
  /** Rows copied: [0, count). */
  count: number;
  D: number;
  dtype: "f32" | "f16";
  /** 16-byte chunks per packed row, ceil(D / CE), CE = 8 halves or 4 f32. */
  kc: number;
  /** Rows per tile. */
  T: number;
  tiles: number;
}

/** Tiled copies per index tensor, one per tile height T (benchmarks compare several). */
const indexPacks = new WeakMap<Tensor, Map<number, CosineIndexPack>>();

/** The tiled copy of `index` with tile height T, if one exists (whatever count it was made for). */
export function cosineIndexPackOf(index: Tensor, T: number): CosineIndexPack | undefined {
  const p = indexPacks.get(index)?.get(T);
  return p && !p.tensor.isDisposed ? p : undefined;
}

/** Frees the tiled copies of `index` (call it before changing rows of the index in place). */
export function releaseCosineIndexPack(index: Tensor): void {
  for (const p of indexPacks.get(index)?.values() ?? []) p.tensor.dispose();
  indexPacks.delete(index);
}

/**
 * Makes or extends the tiled copy of rows [0, count) of `index` [N, D] f32|f16 on the GPU
 * (src/ops/tiled-copy.ts, one dispatch per binding window; no submit), cached beside the tensor
 * (one copy per T, sized for all N rows). A copy that already holds ≥ count rows is returned as
 * is; one holding fewer rows is extended: only the tiles from the one holding its old last row on
 * are copied (an append-only index pays O(new rows) per append). The caller promises rows that
 * were copied do not change in place while the copy lives (an append-only index such as
 * DocumentIndex, whose growth reallocates the tensor, keeps it; otherwise releaseCosineIndexPack).
 * Encode it outside captures: a replayed copy would leave the cache believing in rows it does
 * not hold. DocumentIndex keeps its copy current after every change, so its searches never copy.
 */
export async function cosineIndexPack(ctx: GpuContext, index: Tensor, count = index.shape[0]!, T = cosineTopKTiledShape(ctx).T): Promise<CosineIndexPack> {
  const op = "cosineIndexPack";
  expectDType(index, ["f32", "f16"], op, "index");
  if (index.shape.length !== 2) throw new ShapeError(`${op}: index ('${index.label}') has shape [${index.shape.join(", ")}], expected [N, D]`);
  const [N, D] = index.shape as [number, number];
  if (!Number.isInteger(count) || count < 1 || count > N) throw new UsageError(`${op}: count = ${count}, expected an integer in [1, ${N}] (rows of '${index.label}')`);
  if (!Number.isInteger(T) || T < 1 || TOPK_WG % T !== 0) throw new UsageError(`${op}: T = ${T}, expected a divisor of ${TOPK_WG}`);
  const have = cosineIndexPackOf(index, T);
  if (have && have.count >= count) return have;
  const dtype = index.dtype as "f32" | "f16";
  const { kc, tiles, tileBytes } = tiledCopyShape(N, D, dtype, T);
  const out = have ? have.tensor : ctx.empty([tiles, kc, T, 4], "u32", `${index.label}.topk_tiled`);
  // From the tile holding the old copy's last row, rounded down so that its byte offset in the
  // copy is aligned.
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const tileAlign = align / gcd(tileBytes, align);
  const fromTile = have ? Math.floor(Math.floor(have.count / T) / tileAlign) * tileAlign : 0;
  await encodeTiledCopy(ctx, index, out, { count, T, fromTile, what: `${op}: tiled copy of '${index.label}' [${count}, ${D}] ${dtype}` });
  const pack: CosineIndexPack = { tensor: out, count, D, dtype, kc, T, tiles };
  const m = indexPacks.get(index) ?? new Map<number, CosineIndexPack>();
  m.set(T, pack);
  indexPacks.set(index, m);
  return pack;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

// ------------------------------------------------------------------ the search

/**
 * Which layout "auto" scans on this device class, by measurement (bench/search.bench.ts, "A/B"
 * rows; figures in the file header): software Vulkan → tiled; hardware (not measured) → rows.
 */
export function cosineTopKPreferredLayout(ctx: GpuContext): CosineTopKLayout {
  return ctx.adapter.isSoftware ? TOPK_LAYOUT.software : TOPK_LAYOUT.hardware;
}
const TOPK_LAYOUT: { software: CosineTopKLayout; hardware: CosineTopKLayout } = { software: "tiled", hardware: "rows" };

/** The tiled scan's tile shape per device class (figures in the file header). */
export function cosineTopKTiledShape(ctx: GpuContext): TopkTileShape {
  return ctx.adapter.isSoftware ? TOPK_TILE.software : TOPK_TILE.hardware;
}
const TOPK_TILE: { software: TopkTileShape; hardware: TopkTileShape } = { software: { T: 8, R: 4 }, hardware: { T: 64, R: 4 } };

export interface CosineTopKOptions {
  /** Output ids u32 [Q, k] (or [k] for a 1-D query). */
  outIds?: Tensor;
  /** Output scores f32 [Q, k] (or [k]). */
  outScores?: Tensor;
  /** Valid rows (≤ N): the index may have spare capacity. Default N. */
  count?: number;
  /** Tiled layout only: tile shape (benchmarks); default cosineTopKTiledShape(ctx). */
  tile?: TopkTileShape;
  /** Rows layout only: forces vec4 loads on (throws if D % 4 != 0) or off; default: on when D % 4 == 0. */
  vec4?: boolean;
  /**
   * The index layout the scan reads. "auto" (default): "tiled" where this device class prefers it
   * (cosineTopKPreferredLayout) and a tiled copy holding rows [0, count) exists (cosineIndexPack;
   * DocumentIndex keeps one), else "rows": auto never makes a copy. "tiled" uses the copy, making or
   * extending it first when needed (extra dispatches, cached: then encode the search outside
   * captures; the caller promises the copied rows do not change in place).
   */
  layout?: CosineTopKLayout | "auto";
  /**
   * u32 [1]: every dispatch of the search reads gate[0] first and returns at once when it is 0,
   * leaving outIds/outScores untouched (give them, or the fresh outputs hold garbage). Fixed
   * grids: the dispatch count does not depend on the gate. The copy of a tiled index is never gated.
   */
  gate?: Tensor;
  /**
   * The final RMSNorm weight g [D] (f32|f16): the query is then a raw (pre-norm) hidden row h and
   * is scored as h ∘ g (the norm's 1/rms factor cancels in a cosine). Saves the final-norm dispatch.
   */
  normWeight?: Tensor;
}

/** Stage-1 rows per workgroup for a window of `rows` rows (a multiple of TOPK_WG). */
export function topkRowsPerWorkgroup(rows: number, software: boolean): number {
  const per = Math.max(TOPK_MIN_ROWS_PER_WG, Math.ceil(rows / TOPK_TARGET_WGS[software ? "software" : "hardware"]));
  return Math.ceil(per / TOPK_WG) * TOPK_WG;
}

/**
 * The k best rows of `index` [N, D] (f16|f32) by cosine similarity with `query` [D] or [Q, D] f32.
 * Returns { ids u32, scores f32 }, shaped [k] for a 1-D query and [Q, k] otherwise, best first.
 * Encodes 1 + (binding windows of the index) dispatches, or 1 when one workgroup scans the whole
 * index (≤ TOPK_MIN_ROWS_PER_WG rows, one window) (+ the tiled copy's when an explicit "tiled" makes it).
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
  if (opts.gate) {
    expectDType(opts.gate, ["u32"], op, "gate");
    if (opts.gate.numel < 1) throw new ShapeError(`${op}: gate ('${opts.gate.label}') has shape [${opts.gate.shape.join(", ")}], expected [1]`);
  }
  if (opts.normWeight) {
    expectDType(opts.normWeight, ["f32", "f16"], op, "normWeight");
    expectShape(opts.normWeight, [D], op, "normWeight");
  }
  const layoutOpt = opts.layout ?? "auto";
  if (layoutOpt !== "auto" && !COSINE_TOPK_LAYOUTS.includes(layoutOpt)) throw new UsageError(`${op}: layout '${String(layoutOpt)}', expected one of ${COSINE_TOPK_LAYOUTS.join(", ")} or "auto"`);
  const tileT = (opts.tile ?? cosineTopKTiledShape(ctx)).T;
  const copied = count === 0 || (cosineIndexPackOf(index, tileT)?.count ?? 0) >= count;
  const layout = layoutOpt === "auto" ? (cosineTopKPreferredLayout(ctx) === "tiled" && copied ? "tiled" : "rows") : layoutOpt;
  const dt = index.dtype as "f32" | "f16";
  if (opts.vec4 !== undefined && layout === "tiled") throw new UsageError(`${op}: vec4 is an option of the rows layout; this search scans the tiled layout`);
  if (opts.vec4 === true && D % 4 !== 0) throw new UsageError(`${op}: vec4 requested but D = ${D} is not a multiple of 4`);
  const vec4 = layout === "rows" && (opts.vec4 ?? D % 4 === 0);
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (Q > maxWg) throw new UnsupportedError(`${op}: ${Q} queries exceed maxComputeWorkgroupsPerDimension (${maxWg})`, "split the queries into batches");
  const gate = !!opts.gate;
  if (opts.tile && layout !== "tiled") throw new UsageError(`${op}: tile is an option of the tiled layout; this search scans the rows layout`);
  const tile = opts.tile ?? cosineTopKTiledShape(ctx);
  const qnorm = opts.normWeight ? (opts.normWeight.dtype as "f32" | "f16") : undefined;
  const scanVariant: CosineTopKVariant =
    layout === "tiled"
      ? { stage: "scan", layout, index: dt, gate, tile, ...(qnorm ? { qnorm } : {}) }
      : { stage: "scan", layout, index: storeType(ctx, dt), vec4, gate, ...(qnorm ? { qnorm } : {}) };
  const [scanK, merge] = await Promise.all([ctx.kernels.get(cosineTopKKernel(scanVariant)), ctx.kernels.get(cosineTopKKernel({ stage: "merge", gate }))]);
  const pack = layout === "tiled" && count > 0 ? await cosineIndexPack(ctx, index, count, tile.T) : null;
  // Windows of the index (rows layout) or of whole tiles of its copy (tiled), in rows of the index.
  let windows: { firstRow: number; rows: number; byteOffset: number; byteSize: number }[];
  if (count === 0) windows = [];
  else if (pack) {
    // windows of whole groups of TOPK_WG / T tiles, so that every window starts at a multiple of
    // TOPK_WG rows (the scan's batches are tile-aligned)
    const tileBytes = pack.kc * pack.T * 16;
    const per = TOPK_WG / pack.T;
    const used = Math.ceil(count / pack.T); // tiles holding rows [0, count)
    windows = ctx.bindingWindows(Math.ceil(used / per), tileBytes * per, `${op} tiled copy of index '${index.label}'`).map((w) => ({
      firstRow: w.firstRow * TOPK_WG,
      rows: Math.min(w.rows * TOPK_WG, count - w.firstRow * TOPK_WG),
      byteOffset: w.byteOffset,
      byteSize: Math.min(w.rows * per, used - w.firstRow * per) * tileBytes,
    }));
  } else {
    const rowBytes = D * DTYPE_BYTES[dt];
    windows = ctx.bindingWindows(count, rowBytes, `${op} index '${index.label}'`).map((w) => ({ ...w, byteSize: w.rows * rowBytes }));
  }
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
  // One window scanned by one workgroup (the demo's indexes): its k best are the result, written
  // directly; the merge dispatch is skipped (1 dispatch per search instead of 2).
  const direct = plan.length === 1 && plan[0]!.groups === 1;
  const scan = direct ? await ctx.kernels.get(cosineTopKKernel({ ...scanVariant, direct: true })) : scanK;
  const candBytes = Q * groupsTotal * k * 8;
  if (candBytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new UnsupportedError(
      `${op}: the candidates buffer for ${Q} queries × ${groupsTotal} groups × k=${k} needs ${candBytes} bytes, over the storage binding limit of ${ctx.limits.maxStorageBufferBindingSize}`,
      "use fewer queries per call or a smaller k",
    );
  }
  const ids = opts.outIds ?? ctx.empty(outShape, "u32", "cosineTopK.ids");
  const scores = opts.outScores ?? ctx.empty(outShape, "f32", "cosineTopK.scores");
  const extra = [...(opts.gate ? [opts.gate] : []), ...(opts.normWeight ? [opts.normWeight] : [])];
  const qUnits = vec4 ? D / 4 : D;
  const kc = pack ? pack.kc : 0;
  if (direct) {
    const p = plan[0]!;
    const params = new Params().u32(p.rows).u32(qUnits).u32(p.firstRow).u32(p.rowsPerWg).u32(k).u32(1).u32(0).f32(-Infinity).u32(kc).bytes();
    ctx.dispatch(scan, [query, { tensor: pack ? pack.tensor : index, byteOffset: p.byteOffset, byteSize: p.byteSize }, ids, scores, ...extra], params, [1, Q]);
    return { ids, scores };
  }
  const cand = ctx.empty([Q * groupsTotal * k * 2], "u32", "cosineTopK.candidates");
  let groupBase = 0;
  for (const p of plan) {
    const params = new Params().u32(p.rows).u32(qUnits).u32(p.firstRow).u32(p.rowsPerWg).u32(k).u32(groupsTotal).u32(groupBase).f32(-Infinity).u32(kc).bytes();
    const src = pack ? pack.tensor : index;
    ctx.dispatch(scan, [query, { tensor: src, byteOffset: p.byteOffset, byteSize: p.byteSize }, cand, ...extra], params, [p.groups, Q]);
    groupBase += p.groups;
  }
  // count 0: nothing was scanned; merging 0 groups outputs sentinels only.
  const mergeGroups = count === 0 ? 0 : groupsTotal;
  ctx.dispatch(merge, [cand, ids, scores, ...(opts.gate ? [opts.gate] : [])], new Params().u32(mergeGroups).u32(0).u32(0).u32(0).u32(k).u32(groupsTotal).u32(0).f32(-Infinity).u32(0).bytes(), [Q]);
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
