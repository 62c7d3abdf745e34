// gemv_step: the fused decode GEMV of the step program (kernels/gemv_step.wgsl).
//   y = epilogue(prologue(x) · Wᵀ + b) for the live rows of x.
// x: f32 activations [rows, K]; W: one to three f32|f16 [N_i, K] matrices, row-major (as in the
// checkpoint, bound separately, no copy) or all in the tiles layout (src/gpu/tensor.ts TilesLayout,
// made at load time: neighbouring invocations read neighbouring chunks; T = the workgroup, `rows`
// = tiles per workgroup, STEP_TILES_R), or q8_0|q4_0 ones (GGUF blocks in the split-blocks layout
// of src/quant/formats.ts, or in the tiles layout with their scales, src/quant/tiles.ts; read in
// their packed bytes; K a multiple of 32); y: f32 [rows, N_out].
// f32 accumulation.
//   prologue  norm: { weight [K] f32|f16, eps }: Llama RMSNorm of each x row; absent: x as is.
//             Three paths (GemvStepNormPath; resolveGemvStep picks by size and device class):
//             "loop" (in the GEMV's K loop, 1 dispatch), "shared" (x̂ in workgroup memory behind
//             barriers, 1 dispatch), "prepass" (a norm_rows dispatch into a plan-owned scratch,
//             then the GEMV: 2 dispatches; for large GEMVs on lavapipe, where the loop path's g
//             loads cost more than a dispatch).
//   matrices  one W (windows along N above the storage binding limit, one dispatch each: lm_head);
//             or 2–3 matrices whose output rows are concatenated (q, k, v → y [rows, N0+N1+N2]),
//             each of which must fit one binding; or SWIGLU: [gate, up] [I, K] each → y [rows, I].
//   bias      optional: one concatenated f32|f16 tensor [ΣN_i] (SWIGLU: [2I], gate then up), or
//             one entry per matrix (null = zeros), concatenated once when the plan is built
//             (concatBiases; a caller that builds plans often should concatenate once itself).
//   epilogue  "store": y = acc + b; "residual": y += acc + b (y is the residual stream, updated in
//             place; it must not be an input of the same dispatch); "swiglu": y = silu(g)·u.
//   rows      step: the u32[STEP_WORDS] step state (src/ops/step-state.ts): T = step[STEP_ROWS]
//             read on the GPU (clamped to x's rows), rows 0..T−1; no step: host `rows` (default
//             all of x). lastRow: only row T−1, written to y row 0 (the lm_head path; y [1, N]).
//
// API, for a captured step program (build once, replay every token):
//   const plan = await planGemvStep(ctx, { x, w: [wq, wk, wv], y: qkv, norm: { weight, eps },
//                                          bias: [bq, bk, bv], step });
//   plan.encode(ctx);   // per token: just the dispatch(es): bindings, params, grid prepared
//   plan.dispose();     // frees what the plan owns (a concatenated bias, the prepass scratch)
// plan.label names the kernel variant(s), plan.dispatches the dispatch count (1; more with W
// windows; one more with the prepass norm path).
// gemvStep(ctx, spec) = plan + encode + dispose, for one-off calls and tests.
// The tensors bound must stay alive (and in place) while the plan is used.
// resolveGemvStep is the one place that chooses the kernel variant; `force` overrides it (an
// impossible forced choice throws UnsupportedError, never a silent substitute).

import { ShapeError, UnsupportedError, UsageError } from "../errors.js";
import type { BindingResource, BufferWindow, GpuContext } from "../gpu/context.js";
import type { Kernel, KernelVariant } from "../gpu/kernels.js";
import { DTYPE_BYTES, isQuantDType, type QuantDType, type Tensor } from "../gpu/tensor.js";
import { dequantizeMatrix, quantBytes, QK, type QuantizedMatrix } from "../quant/formats.js";
import { expectDType, grid, Params } from "./common.js";
import { bcastXL, gemvBcastPreferred, gemvBcastUsable } from "./linear.js";
import { siluReference } from "./swiglu.js";
import { STEP_WORDS } from "./step-state.js";

export type GemvStepEpilogue = "store" | "residual" | "swiglu";
type FDType = "f32" | "f16";
/** Weight dtypes gemv_step reads: float, or GGUF Q8_0 / Q4_0 blocks (split-blocks layout). */
export type GemvStepWDType = FDType | QuantDType;

/**
 * Tuning constants (lavapipe measurements in bench/gemv-step.bench.ts, recorded below and in
 * kernels/gemv_step.wgsl): rows of W per invocation and invocations per workgroup, as gemv's
 * rows design (GEMV_R / GEMV_WG in src/ops/linear.ts).
 */
const STEP_R = 4;
const STEP_WG = 64;

/** A fully specified gemv_step kernel: everything that changes its WGSL. */
export interface GemvStepDesc {
  wDtype: GemvStepWDType;
  /** Elements per K chunk: 8 (f16) / 4 (f32) when K is a multiple, else 1; 4 (x chunks) for q8_0/q4_0. */
  vec: 1 | 4 | 8;
  /** Matrices bound (SWIGLU: 2 = gate, up). */
  mats: 1 | 2 | 3;
  epilogue: GemvStepEpilogue;
  /** RMSNorm prologue with a weight of this dtype, or null. */
  norm: FDType | null;
  /** NORM: x̂ staged in workgroup memory behind barriers (true) or in-loop (false: Σx² and x·g inside the K loop). */
  xShared: boolean;
  /** xShared: K (the workgroup array's length follows it). 0 otherwise. */
  k: number;
  /** T from the step state (true) or host rows in params (false). */
  fromStep: boolean;
  /** Only the last live row, written to y row 0. */
  lastRow: boolean;
  /** Rows of W per invocation. */
  rows: number;
  wg: number;
  /** swiglu: gate and up in one K loop (2·rows accumulators) instead of two loops; an A/B arm. */
  joint?: boolean;
  /** q8_0/q4_0: each block's Σ q·x summed unscaled, times its scale once per block (gemv_q's BLOCKSUM). */
  blockSum?: boolean;
  /**
   * W in the tiles layout (src/gpu/tensor.ts TilesLayout) with T = wg rows per tile; vec is then the
   * chunk width CE (8 f16, 4 f32; 4, the x chunk, for q8_0/q4_0, which need blockSum) and `rows`
   * the tiles per workgroup.
   */
  tiles?: boolean;
  /** tiles: x read as scalars (K % 4 ≠ 0). */
  xScalar?: boolean;
  /** tiles: K is not a multiple of the chunk (8 halves / 4 f32): the last chunk is read guarded. */
  kTail?: boolean;
  /**
   * tiles (f32, f16, q8_0 or q4_0), K a multiple of 32, no xShared/kTail/xScalar: x̂ broadcast through the
   * subgroup (kernels/gemv_step.wgsl XBCAST) with this many x vec4s loaded per lane per 32 elements
   * (1: subgroups of ≥ 8 lanes; 2: of ≥ 4). Needs the 'subgroups' feature.
   */
  xBcast?: 1 | 2;
  /**
   * T > 1 live rows in blocks of this many x rows per W load (kernels/gemv_step.wgsl BLOCKED);
   * absent: every row walks W alone. f32/f16 W without xShared, joint or lastRow.
   */
  rowBlock?: number;
}

/** Stable name, e.g. "gemv_step_f16_vec8_m3_store_norm16s576_step_r4_wg64". */
function gemvStepLabel(d: GemvStepDesc): string {
  const norm = d.norm ? `_norm${d.norm === "f16" ? 16 : 32}${d.xShared ? `s${d.k}` : "i"}` : "";
  return `gemv_step_${d.wDtype}${d.tiles ? "_tiles" : ""}${d.xScalar ? "_x1" : ""}${d.kTail ? "_kt" : ""}_vec${d.vec}_m${d.mats}_${d.epilogue}${d.joint ? "j" : ""}${norm}_${d.fromStep ? "step" : "host"}${d.lastRow ? "_last" : ""}${d.blockSum ? "_bs" : ""}${d.xBcast ? `_xb${d.xBcast}` : ""}${d.rowBlock ? `_mb${d.rowBlock}` : ""}_r${d.rows}_wg${d.wg}`;
}

/** Workgroup memory bytes of a variant (x̂ row + reduction scratch). */
function sharedBytes(d: Pick<GemvStepDesc, "norm" | "xShared" | "k" | "wg">): number {
  return d.norm ? d.wg * 4 + (d.xShared ? d.k * 4 : 0) : 0;
}

function gemvStepKernelVariant(d: GemvStepDesc): KernelVariant {
  const name = gemvStepLabel(d);
  const f16 = d.wDtype === "f16";
  const quant = isQuantDType(d.wDtype);
  if (quant && d.vec !== 4) throw new UnsupportedError(`gemv_step: ${d.wDtype} walks x in vec4 chunks (vec 4), got vec${d.vec} (${name})`);
  if (d.blockSum && !quant) throw new UnsupportedError(`gemv_step: blockSum applies to q8_0/q4_0 weights only (${name})`);
  if (quant && d.joint) throw new UnsupportedError(`gemv_step: the joint swiglu loop has no ${d.wDtype} form (${name})`);
  if (d.vec === 8 && !f16) throw new UnsupportedError(`gemv_step: vec8 is the f16 chunk width (${name})`);
  if (d.vec === 4 && f16) throw new UnsupportedError(`gemv_step: f16 reads 8 halves per chunk or 1, not 4 (${name})`);
  if (d.joint && d.epilogue !== "swiglu") throw new UnsupportedError(`gemv_step: joint applies to the swiglu epilogue only (${name})`);
  if (d.epilogue === "swiglu" && d.mats !== 2) throw new UnsupportedError(`gemv_step: swiglu needs exactly two matrices (gate, up) (${name})`);
  if (d.xShared && (!d.norm || d.k <= 0)) throw new UnsupportedError(`gemv_step: xShared needs the norm prologue and K (${name})`);
  if (d.norm && (d.wg & (d.wg - 1)) !== 0) throw new UnsupportedError(`gemv_step: the norm prologue reduces over a power-of-two workgroup (${name})`);
  if (d.tiles && quant && !d.blockSum) throw new UnsupportedError(`gemv_step: ${d.wDtype} in the tiles layout is read with one scale per block only (blockSum) (${name})`);
  if (d.tiles && d.vec !== (f16 ? 8 : 4)) throw new UnsupportedError(`gemv_step: tiles read 16-byte chunks (vec ${f16 ? 8 : 4} for ${d.wDtype}), got vec${d.vec} (${name})`);
  if (d.xScalar && !d.tiles) throw new UnsupportedError(`gemv_step: xScalar applies to the tiles layout only (${name})`);
  if (d.kTail && !d.tiles) throw new UnsupportedError(`gemv_step: kTail applies to the tiles layout only (${name})`);
  if (d.xBcast && (!d.tiles || d.xShared || d.kTail || d.xScalar || d.joint || d.wg !== 8)) throw new UnsupportedError(`gemv_step: the x broadcast (xBcast) reads tiles of 8 rows with K a multiple of 32, without xShared, kTail, xScalar or joint (${name})`);
  if (d.rowBlock !== undefined && (!Number.isInteger(d.rowBlock) || d.rowBlock < 2 || d.rowBlock > 8 || quant || d.xShared || d.joint || d.lastRow)) {
    throw new UnsupportedError(`gemv_step: row blocks (rowBlock) of 2..8 rows apply to f32/f16 W without xShared, joint or lastRow (${name})`);
  }
  const xvec = d.tiles ? !d.xScalar : d.vec !== 1;
  return {
    file: "gemv_step",
    name,
    defines: {
      WF16: f16,
      VEC8: d.vec === 8,
      VEC4: d.vec === 4,
      VECN: d.vec,
      XVEC: xvec,
      XT: xvec ? "vec4<f32>" : "f32",
      XW: xvec ? 4 : 1,
      WT: quant ? "vec4<u32>" : f16 ? (d.vec === 8 ? "vec4<u32>" : "u32") : d.vec === 4 ? "vec4<f32>" : "f32",
      QUANT: quant,
      Q8: d.wDtype === "q8_0",
      QWIN: quant && d.mats === 1 && d.tiles !== true,
      QDIV: d.wDtype === "q4_0" ? 4 : 2,
      BLOCKSUM: d.blockSum === true,
      R: d.rows,
      WG: d.wg,
      MULTI: d.mats > 1 && d.epilogue !== "swiglu",
      SWIGLU: d.epilogue === "swiglu",
      SWIGLU_JOINT: d.epilogue === "swiglu" && d.joint === true,
      RESIDUAL: d.epilogue === "residual",
      NORM: d.norm !== null,
      GF16: d.norm === "f16",
      XSHARED: d.xShared,
      XCAP: d.xShared ? (xvec ? d.k / 4 : d.k) : 1,
      FROM_STEP: d.fromStep,
      LAST_ROW: d.lastRow,
      TILES: d.tiles === true,
      KTAIL: d.kTail === true,
      XBCAST: d.xBcast !== undefined,
      XL2: d.xBcast === 2,
      V: "f32",
      BLOCKED: d.rowBlock !== undefined,
      MB: d.rowBlock ?? 1,
    },
    bindings: ["read", "read", "read", "read", "read", "read", "read", "read_write", "uniform"],
    ...(d.xBcast ? { features: ["subgroups"] as GPUFeatureName[] } : {}),
  };
}

/** What the resolver needs to know about a call. */
export interface GemvStepShape {
  K: number;
  wDtype: GemvStepWDType;
  mats: 1 | 2 | 3;
  epilogue: GemvStepEpilogue;
  norm: FDType | null;
  fromStep: boolean;
  lastRow: boolean;
  /** W's tiles layout rows per tile (TilesLayout.T), or 0: row-major W. */
  tilesT?: number;
}

/**
 * How the RMSNorm prologue runs: "loop": inside the K loop (Σx² from the x chunks it loads
 * anyway, x·g per chunk, inv at the end; no barrier); "shared": the workgroup reduces Σx² and
 * stages x̂ in workgroup memory behind barriers; "prepass": a norm_rows dispatch writes x̂ of the
 * live rows into a scratch the plan owns, then the GEMV runs without norm (2 dispatches).
 */
export type GemvStepNormPath = "loop" | "shared" | "prepass";
const GEMV_STEP_NORM_PATHS: readonly GemvStepNormPath[] = ["loop", "shared", "prepass"];

/** Overrides of the resolver's choices (benchmarks, tests). */
export interface GemvStepForce {
  normPath?: GemvStepNormPath;
  /** swiglu: one K loop over gate and up (the losing design, kept as an A/B arm). */
  swigluJoint?: boolean;
  rows?: number;
  wg?: number;
  /** q8_0/q4_0: scale once per block (true) or dequantize every weight chunk (false). */
  blockSum?: boolean;
  /**
   * tiles: x̂ through subgroup broadcasts (true; needs subgroups of ≥ 4 lanes, K % 32 = 0) or
   * per-lane loads (false); 1 or 2: true with that many x vec4s per lane (2, the 4-lane-subgroup
   * path, also runs on wider subgroups).
   */
  xBcast?: boolean | 1 | 2;
  /** Rows per block for T > 1 (2..8), or 0: no blocks (the per-row loop only). */
  rowBlock?: number;
}

/** What resolveGemvStep picked: the GEMV kernel and, for the prepass norm path, the norm kernel. */
export interface GemvStepChoice {
  main: GemvStepDesc;
  /** normPath "prepass": the norm_rows kernel's description (its norm field set). */
  prenorm: GemvStepDesc | null;
  normPath: GemvStepNormPath | null;
}

/**
 * The one place that chooses the gemv_step kernels. `rowsTotal` = Σ N_i (all matrices, gate and
 * up both counted): the norm path follows the GEMV's size (NORM_PREPASS_MIN) and device class.
 */
export function resolveGemvStep(ctx: GpuContext, s: GemvStepShape, force: GemvStepForce = {}, rowsTotal = 0): GemvStepChoice {
  if (isQuantDType(s.wDtype) && s.K % QK !== 0) throw new UnsupportedError(`gemv_step: ${s.wDtype} weights need K a multiple of ${QK}, got ${s.K}`);
  const tilesT = s.tilesT ?? 0;
  if (tilesT > 0 && isQuantDType(s.wDtype) && force.blockSum === false) throw new UnsupportedError(`gemv_step: ${s.wDtype} in the tiles layout is read with one scale per block only; blockSum false applies to the rows layout`);
  if (tilesT > 0 && force.wg !== undefined && force.wg !== tilesT) throw new UnsupportedError(`gemv_step: W lies in tiles of ${tilesT} rows, so the workgroup is ${tilesT} invocations; forced wg ${force.wg}`);
  const rowsVec: 1 | 4 | 8 = isQuantDType(s.wDtype) ? 4 : s.wDtype === "f16" ? (s.K % 8 === 0 ? 8 : 1) : s.K % 4 === 0 ? 4 : 1;
  const vec: 1 | 4 | 8 = tilesT > 0 ? (s.wDtype === "f16" ? 8 : 4) : rowsVec;
  const wg = tilesT > 0 ? tilesT : force.wg ?? STEP_WG;
  const rows = force.rows ?? (tilesT > 0 ? STEP_TILES_R[ctx.adapter.isSoftware ? "software" : "hardware"] : STEP_R);
  if (!Number.isInteger(rows) || rows < 1 || rows > 16) throw new UsageError(`gemv_step: rows per invocation must be an integer in 1..16, got ${rows}`);
  if (!Number.isInteger(wg) || wg < 1 || wg > ctx.limits.maxComputeInvocationsPerWorkgroup) throw new UsageError(`gemv_step: workgroup size must be an integer in 1..${ctx.limits.maxComputeInvocationsPerWorkgroup}, got ${wg}`);
  if (force.normPath !== undefined && !GEMV_STEP_NORM_PATHS.includes(force.normPath)) throw new UsageError(`gemv_step: unknown norm path '${String(force.normPath)}' (${GEMV_STEP_NORM_PATHS.join(", ")})`);
  if (force.swigluJoint && s.epilogue !== "swiglu") throw new UnsupportedError("gemv_step: swigluJoint applies to the swiglu epilogue only");
  if (force.blockSum && !isQuantDType(s.wDtype)) throw new UnsupportedError(`gemv_step: blockSum applies to q8_0/q4_0 weights, not ${s.wDtype}`);
  const blockSum = isQuantDType(s.wDtype) && (force.blockSum ?? QUANT_BLOCKSUM);
  const tiled = tilesT > 0 ? { tiles: true, ...(s.K % 4 !== 0 ? { xScalar: true } : {}), ...(s.K % (s.wDtype === "f16" ? 8 : 4) !== 0 ? { kTail: true } : {}) } : {};
  const xbOk = tilesT === 8 && s.K % 32 === 0 && gemvBcastUsable(ctx) && !force.swigluJoint && force.normPath !== "shared";
  if (force.xBcast && !xbOk) throw new UnsupportedError(`gemv_step: the x broadcast needs tiles of 8 rows, K a multiple of 32 (got ${s.K}), subgroups of ≥ 4 lanes, and no joint swiglu or shared norm`);
  if (force.xBcast === 1 && bcastXL(ctx) !== 1) throw new UnsupportedError("gemv_step: the x broadcast with 1 vec4 per lane needs subgroups of ≥ 8 lanes");
  const xBcast = force.xBcast ?? (xbOk && s.wDtype !== "f32" && gemvBcastPreferred(ctx) && STEP_XBCAST);
  const blockable = !isQuantDType(s.wDtype) && !s.lastRow && !force.swigluJoint && force.normPath !== "shared";
  if (force.rowBlock !== undefined && force.rowBlock !== 0 && (!blockable || !Number.isInteger(force.rowBlock) || force.rowBlock < 2 || force.rowBlock > 8)) {
    throw new UnsupportedError(`gemv_step: rowBlock ${force.rowBlock}: blocks of 2..8 rows apply to f32/f16 W without lastRow, joint swiglu or the shared norm`);
  }
  const rowBlock = force.rowBlock ?? STEP_ROW_BLOCK;
  const base: GemvStepDesc = { wDtype: s.wDtype, vec, mats: s.mats, epilogue: s.epilogue, norm: null, xShared: false, k: 0, fromStep: s.fromStep, lastRow: s.lastRow, rows, wg, ...(force.swigluJoint ? { joint: true } : {}), ...(blockSum ? { blockSum: true } : {}), ...tiled, ...(xBcast ? { xBcast: xBcast === true ? bcastXL(ctx) : xBcast } : {}), ...(rowBlock ? { rowBlock } : {}) };
  if (!s.norm) {
    if (force.normPath !== undefined) throw new UnsupportedError(`gemv_step: normPath '${force.normPath}' applies to the norm prologue only`);
    return { main: base, prenorm: null, normPath: null };
  }
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  const need = sharedBytes({ norm: s.norm, xShared: true, k: s.K, wg });
  const cls = ctx.adapter.isSoftware ? "software" : "hardware";
  const path: GemvStepNormPath = force.normPath ?? (rowsTotal * s.K >= NORM_PREPASS_MIN[cls] ? "prepass" : "loop");
  if ((path === "shared" || path === "prepass") && (wg & (wg - 1)) !== 0) throw new UnsupportedError(`gemv_step: norm path '${path}' reduces over a power-of-two workgroup; wg = ${wg}`);
  if (path === "shared" && need > limit) {
    throw new UnsupportedError(`gemv_step: norm path 'shared' needs ${need} bytes of workgroup memory for K = ${s.K}; the device allows ${limit}`, "use normPath 'loop' or 'prepass' (no such limit)");
  }
  if (path === "prepass") {
    // The norm_rows kernel reads no W: the rows-layout shape of the same call (its own workgroup).
    const pre: GemvStepDesc = tilesT > 0 ? { wDtype: s.wDtype, vec: rowsVec, mats: s.mats, epilogue: s.epilogue, norm: s.norm, xShared: false, k: 0, fromStep: s.fromStep, lastRow: s.lastRow, rows: STEP_R, wg: STEP_WG } : { ...base, norm: s.norm };
    return { main: base, prenorm: pre, normPath: path };
  }
  return { main: { ...base, norm: s.norm, xShared: path === "shared", k: path === "shared" ? s.K : 0 }, prenorm: null, normPath: path };
}
/**
 * The x broadcast (xBcast) by default where gemv_bcast is preferred (software, subgroups of ≥ 8
 * lanes) and the tiles allow it. Lavapipe, 134M shape, T = 1, one layer's fused GEMVs (sums of
 * the group medians, arms alternated; bench/gemv-layout.bench.ts, 2026-12-03 at load 4, --quick,
 * bench/results/2026-12-03-xbcast-gemv-layout-q.md):
 * f16 rows 12.0 ms, f16 tiles 15.0, f16 tiles + broadcast 9.1 (×1.32 of rows); q4_0 tiles 7.7,
 * q4_0 tiles + broadcast 5.1 (×2.37 of f16 rows). On tiles the per-lane x (and g) loads were 20–33%
 * (f16) and over half (q4_0) of the words each lane loads.
 */
const STEP_XBCAST = true;
/**
 * x rows per W load for T > 1 live rows (kernels/gemv_step.wgsl BLOCKED): off by default, a forced
 * arm. Without it every live row walks all of W, so an injection of L rows in the decode step costs
 * L GEMVs. Lavapipe, 2026-12-03 (load 1.2–1.9; swiglu with norm, T = 26 rows from the step state,
 * tiles of 8, R = 8, medians of 5 × 10 calls, arms alternated, two runs):
 *   134M shape, f16 + x broadcast (K 576, I 1536): per row 57.1 / 34.1 ms → MB 4 25.6 / 23.6, MB 2
 *   32.3 / 19.6;
 *   demo shape, f32 (no broadcast: K 128, I 352): per row 5.2 / 5.0 → MB 4 7.0 / 6.5 (slower: each
 *   pass over one W row reloads every x row's chunks, which the per-row loop loads once for R rows).
 *   bench/gemv-step.bench.ts benchInjectionRows (quick, bench/results/2026-12-03-gemv-step-injection-rows.json):
 *   134M f16 tiles + broadcast: gate/up 43.4 → 32.0 ms (MB 4), down 19.8 → 17.9 (prefill ops 23.9,
 *   21.5); row-major f16 (no broadcast) slower: gate/up 54.1 → 89.9, down 27.4 → 35.8.
 * At T = 1 the blocked variant runs the per-row path, yet was slower (134M f16 tiles + broadcast
 * gate/up: 2.05 / 2.12 ms → 2.40 / 2.81 with MB 4, two runs): the block code costs the decode steps.
 * Compile time (MESA_SHADER_CACHE_DISABLE): 2.5–4.3 s per variant → 6.8–10.7 s. An earlier form that
 * kept all R rows' sums per x row (R·MB accumulators, loops unrolled) was ×1.3–1.9 on both shapes
 * (rows layout too: gate/up 59.4 → 31.6 ms, prefill ops 25.1) but compiled 13–30 s per variant.
 * Not the default until one form wins without the broadcast and compiles in about the per-row time.
 */
const STEP_ROW_BLOCK = 0;
/**
 * Norm path per device class by the GEMV's size (Σ N_i · K weights): "prepass" from this size on,
 * "loop" below it. "shared" is never chosen: on lavapipe any barrier made the GEMV ~1.3× slower
 * (llvmpipe runs shaders with barriers as coroutines); kept as a forced arm.
 * software (lavapipe, 2026-12-02, bench/results/2026-12-02-5ef4eca-gemv-step-ab.json, speed vs
 * the unfused ops, wall / driver CPU): the loop norm's g loads (+1/6 words) cost more than one
 * more small dispatch on large GEMVs: lm_head 49152×576 loop 0.88 / 0.64, prepass 1.30 / 0.82;
 * TinyLlama gate/up 2×5632×2048 loop 0.98 / 0.73, prepass 1.22 / 1.10; 134M gate/up 2×1536×576
 * loop 0.77 / 0.67, prepass 1.48 / 0.86; TinyLlama qkv 2560×2048 loop 1.04 / 1.00, prepass 1.33 /
 * 1.18; 134M qkv 960×576 (0.55 M) loop 0.97 / 1.30, prepass 1.05 / 1.30 (a tie) → 1 M.
 * hardware: not measured; loop (one dispatch).
 */
const NORM_PREPASS_MIN = { software: 1_000_000, hardware: Infinity } as const;
/**
 * q8_0/q4_0: BLOCKSUM by default. Lavapipe, 134M shape, T = 1, one layer's four fused GEMVs, wall
 * speed vs the same with f16 W, two alternated runs at load 4–5 (2026-12-02, bench/gemv-step.bench.ts
 * benchQuant, bench/results/2026-12-02-qstep-gemv-step-quant.json): q8_0 ×0.76 / ×0.72 per weight
 * chunk, ×0.82 / ×0.82 BLOCKSUM; q4_0 ×0.95 / ×1.05, ×1.11 / ×1.10 BLOCKSUM (single shapes swing ±20%).
 */
const QUANT_BLOCKSUM = true;
/**
 * Tiles per workgroup (rows per invocation) with W in the tiles layout, per device class; T (the
 * workgroup) is the layout's. Software: T = 8, R = 8 as gemv_tiled (gemvTiledShape in
 * src/ops/linear.ts, measured there); hardware: R = 4 (not measured).
 */
const STEP_TILES_R = { software: 8, hardware: 4 } as const;

/** The prenorm (norm_rows) kernel variant of a description with norm set. */
function gemvStepPrenormVariant(d: GemvStepDesc): KernelVariant {
  if (!d.norm || d.xShared) throw new UnsupportedError(`gemv_step: the prenorm kernel needs a norm description without xShared (${gemvStepLabel(d)})`);
  const v = gemvStepKernelVariant(d);
  return { ...v, name: `${v.name}_prenorm`, entryPoint: "norm_rows" };
}

/** The arguments of one fused GEMV (see the file header). */
export interface GemvStepSpec {
  /** Activations [rows, K] f32 (all rows are the capacity; the live ones come from step/rows). */
  x: Tensor;
  /** W [N, K], or 1–3 matrices concatenated along outputs, or [gate, up] with "swiglu". f32|f16|q8_0|q4_0 (one dtype). */
  w: Tensor | readonly Tensor[];
  /** Output [rows (1 with lastRow), N_out] f32; read too with "residual". */
  y: Tensor;
  epilogue?: GemvStepEpilogue;
  norm?: { weight: Tensor; eps: number } | null;
  bias?: Tensor | readonly (Tensor | null | undefined)[] | null;
  /** Step state u32[STEP_WORDS]: T read on the GPU. */
  step?: Tensor | null;
  /** Host row count when no step (default: x's rows). */
  rows?: number;
  lastRow?: boolean;
  force?: GemvStepForce;
}

interface Call {
  kernel: Kernel;
  res: BindingResource[];
  params: Uint8Array;
  groups: [number, number, number];
}

/** A prepared gemv_step: kernel, bindings, params and grids; encode() only dispatches. */
export class GemvStepPlan {
  constructor(
    private readonly ctx: GpuContext,
    /** The kernels' names, "prenorm+main" with the prepass norm path. */
    readonly label: string,
    readonly choice: GemvStepChoice,
    private readonly calls: readonly Call[],
    private readonly owned: readonly Tensor[],
  ) {}

  /** Dispatches per encode(): 1, or one per W window, plus one with the prepass norm path. */
  get dispatches(): number {
    return this.calls.length;
  }

  encode(ctx: GpuContext = this.ctx): void {
    if (ctx !== this.ctx) throw new UsageError(`gemv_step plan '${this.label}' was built for another GPU context`);
    for (const c of this.calls) ctx.dispatch(c.kernel, c.res, c.params, c.groups);
  }

  dispose(): void {
    for (const t of this.owned) t.dispose();
  }
}

/**
 * Concatenates per-matrix biases (f32 or f16, one dtype; null entries are zeros) into one tensor
 * [ΣN_i] with buffer copies (encoded into the current batch). Returns null when all are null.
 */
function concatBiases(ctx: GpuContext, biases: readonly (Tensor | null | undefined)[], Ns: readonly number[], label: string): Tensor | null {
  const op = "gemv_step";
  if (biases.length !== Ns.length) throw new ShapeError(`${op}: ${biases.length} biases for ${Ns.length} matrices`);
  const present = biases.filter((b): b is Tensor => !!b);
  if (present.length === 0) return null;
  const dtype = present[0]!.dtype;
  biases.forEach((b, i) => {
    if (!b) return;
    expectDType(b, ["f32", "f16"], op, `bias[${i}]`);
    if (b.dtype !== dtype) throw new UnsupportedError(`${op}: bias[${i}] ('${b.label}') is ${b.dtype}, bias[0..] are ${dtype}; concatenated biases share one dtype`);
    if (b.shape.length !== 1 || b.shape[0] !== Ns[i]) throw new ShapeError(`${op}: bias[${i}] ('${b.label}') has shape [${b.shape.join(", ")}], expected [${Ns[i]}]`);
  });
  const e = DTYPE_BYTES[dtype];
  const total = Ns.reduce((a, b) => a + b, 0);
  const out = ctx.empty([total], dtype, label);
  if (present.length < biases.length) ctx.clear(out);
  let off = 0;
  biases.forEach((b, i) => {
    const bytes = Ns[i]! * e;
    if (b) {
      if (off % 4 !== 0) throw new UnsupportedError(`${op}: bias[${i}] ('${b.label}') would start at byte ${off} of the concatenated f16 bias, not a multiple of 4`, "pass f32 biases, or one concatenated bias tensor");
      ctx.copy(b.buffer, 0, out.buffer, off, Math.ceil(bytes / 4) * 4);
    }
    off += bytes;
  });
  return out;
}

/** Builds a plan (kernel compiled, bindings and params prepared). Checks every argument. */
export async function planGemvStep(ctx: GpuContext, spec: GemvStepSpec): Promise<GemvStepPlan> {
  const op = "gemv_step";
  const { x, y } = spec;
  const epilogue = spec.epilogue ?? "store";
  const ws: readonly Tensor[] = Array.isArray(spec.w) ? spec.w : [spec.w as Tensor];
  expectDType(x, ["f32"], op, "x");
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [rows, K]`);
  const [cap, K] = x.shape as [number, number];
  if (K === 0 || cap === 0) throw new ShapeError(`${op}: x ('${x.label}') has shape [${cap}, ${K}]; rows and K must be ≥ 1`);
  if (ws.length < 1 || ws.length > 3) throw new ShapeError(`${op}: ${ws.length} weight matrices; 1 to 3 are allowed`);
  if (epilogue === "swiglu" && ws.length !== 2) throw new ShapeError(`${op}: epilogue swiglu takes [gate, up], got ${ws.length} matrices`);
  const wDtype = ws[0]!.dtype as GemvStepWDType;
  const quant = isQuantDType(wDtype);
  ws.forEach((w, i) => {
    expectDType(w, ["f32", "f16", "q8_0", "q4_0"], op, `w[${i}]`);
    if (w.dtype !== wDtype) throw new UnsupportedError(`${op}: w[${i}] ('${w.label}') is ${w.dtype}, w[0] is ${wDtype}; fused matrices share one dtype`);
    if (w.shape.length !== 2 || w.shape[1] !== K || w.shape[0] === 0) throw new ShapeError(`${op}: w[${i}] ('${w.label}') has shape [${w.shape.join(", ")}], expected [N ≥ 1, ${K}] (K of x '${x.label}')`);
    if (quant && K % QK !== 0) throw new UnsupportedError(`${op}: w[${i}] ('${w.label}') [${w.shape.join(", ")}] ${w.dtype}: K must be a multiple of ${QK}`);
  });
  const layout = ws[0]!.layout;
  ws.forEach((w, i) => {
    if ((w.layout?.T ?? 0) !== (layout?.T ?? 0)) {
      throw new UnsupportedError(`${op}: w[${i}] ('${w.label}') is ${w.layout ? `in tiles of ${w.layout.T} rows` : "row-major"}, w[0] ('${ws[0]!.label}') ${layout ? `in tiles of ${layout.T} rows` : "row-major"}; fused matrices share one layout`);
    }
  });
  const Ns = ws.map((w) => w.shape[0]!);
  if (epilogue === "swiglu" && Ns[0] !== Ns[1]) throw new ShapeError(`${op}: gate ('${ws[0]!.label}') has ${Ns[0]} rows and up ('${ws[1]!.label}') ${Ns[1]}; they must match`);
  const Nout = epilogue === "swiglu" ? Ns[0]! : Ns.reduce((a, b) => a + b, 0);
  const lastRow = spec.lastRow ?? false;
  expectDType(y, ["f32"], op, "y");
  const yRows = lastRow ? 1 : cap;
  if (y.shape.length !== 2 || y.shape[0] !== yRows || y.shape[1] !== Nout) throw new ShapeError(`${op}: y ('${y.label}') has shape [${y.shape.join(", ")}], expected [${yRows}, ${Nout}]`);
  const norm = spec.norm ?? null;
  if (norm) {
    expectDType(norm.weight, ["f32", "f16"], op, "norm.weight");
    if (norm.weight.shape.length !== 1 || norm.weight.shape[0] !== K) throw new ShapeError(`${op}: norm.weight ('${norm.weight.label}') has shape [${norm.weight.shape.join(", ")}], expected [${K}]`);
    if (!(norm.eps >= 0) || !Number.isFinite(norm.eps)) throw new UsageError(`${op}: norm eps must be a finite number ≥ 0, got ${norm.eps}`);
  }
  const step = spec.step ?? null;
  if (step) {
    expectDType(step, ["u32"], op, "step");
    if (step.numel < STEP_WORDS) throw new ShapeError(`${op}: step ('${step.label}') has ${step.numel} words, expected ${STEP_WORDS}`);
    if (spec.rows !== undefined) throw new UsageError(`${op}: give either step (rows read on the GPU) or rows, not both`);
  }
  const M = step ? cap : spec.rows ?? cap;
  if (!Number.isInteger(M) || M < 0 || M > cap) throw new UsageError(`${op}: rows must be an integer in 0..${cap} (x '${x.label}' rows), got ${M}`);
  // Bias: one concatenated tensor, or per matrix (concatenated here, owned by the plan).
  const biasLen = epilogue === "swiglu" ? 2 * Ns[0]! : Nout;
  const owned: Tensor[] = [];
  let bias: Tensor | null = null;
  if (spec.bias && !Array.isArray(spec.bias)) {
    bias = spec.bias as Tensor;
    expectDType(bias, ["f32", "f16"], op, "bias");
    if (bias.shape.length !== 1 || bias.shape[0] !== biasLen) throw new ShapeError(`${op}: bias ('${bias.label}') has shape [${bias.shape.join(", ")}], expected [${biasLen}] (the matrices' outputs concatenated)`);
  } else if (spec.bias) {
    bias = concatBiases(ctx, spec.bias as readonly (Tensor | null)[], Ns, `${op}.bias`);
    if (bias) owned.push(bias);
  }
  const inputs: (Tensor | null)[] = [x, ...ws, bias, norm?.weight ?? null, step];
  for (const t of inputs) if (t && t.buffer === y.buffer) throw new ShapeError(`${op}: y ('${y.label}') shares its buffer with input '${t.label}'`);
  const limit = ctx.limits.maxStorageBufferBindingSize;
  for (const t of [x, y]) {
    if (t.byteLength > limit) throw new UnsupportedError(`${op}: '${t.label}' (${t.byteLength} bytes) exceeds the storage binding limit of ${limit} bytes; gemv_step binds activations whole`, "process fewer rows per step");
  }
  const multi = ws.length > 1;
  // A quantized W bound whole (multi-matrix mode) is read as vec4<u32>s: its binding is rounded up
  // to 16 bytes, which the pool's buffers (size classes, multiples of 256) always hold.
  const wholeBytes = (w: Tensor) => (quant ? Math.ceil(w.byteLength / 16) * 16 : w.byteLength);
  const wholeRes = (w: Tensor): BindingResource => {
    if (!quant) return w;
    if (w.buffer.size < wholeBytes(w)) throw new UnsupportedError(`${op}: w ('${w.label}', ${w.dtype}) lies in a buffer of ${w.buffer.size} bytes; its vec4 reads need ${wholeBytes(w)} (a multiple of 16)`, "allocate it through the context (ctx.upload / ctx.empty)");
    return { tensor: w, byteOffset: 0, byteSize: wholeBytes(w) };
  };
  if (multi) {
    ws.forEach((w, i) => {
      if (wholeBytes(w) > limit) throw new UnsupportedError(`${op}: w[${i}] ('${w.label}', ${wholeBytes(w)} bytes) exceeds the storage binding limit of ${limit} bytes; fused multi-matrix mode binds each matrix whole`, "use one single-matrix gemv_step (or linear) per matrix");
    });
    if (bias && bias.byteLength > limit) throw new UnsupportedError(`${op}: bias ('${bias.label}') exceeds the storage binding limit of ${limit} bytes`);
  }

  const choice = resolveGemvStep(ctx, { K, wDtype, mats: ws.length as 1 | 2 | 3, epilogue, norm: norm ? (norm.weight.dtype as FDType) : null, fromStep: step !== null, lastRow, tilesT: layout?.T ?? 0 }, spec.force, Ns.reduce((a, b) => a + b, 0));
  const desc = choice.main;
  const kernel = await ctx.kernels.get(gemvStepKernelVariant(desc));
  const calls: Call[] = [];
  let label = gemvStepLabel(desc);
  // The prepass norm path: x̂ of the live rows into a scratch [rows, K] (owned by the plan), read
  // by the GEMV in place of x.
  let xIn: Tensor = x;
  if (choice.prenorm && norm) {
    const pre = gemvStepPrenormVariant(choice.prenorm);
    const preKernel = await ctx.kernels.get(pre);
    const scratch = ctx.empty([cap, K], "f32", `${op}.xhat`);
    owned.push(scratch);
    const p = new Params().u32(K).u32(K).u32(M).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).f32(norm.eps).f32(K).bytes();
    const [gx, gy] = grid(ctx, lastRow ? 1 : M);
    calls.push({ kernel: preKernel, res: [x, norm.weight, x, x, x, x, step ?? x, scratch], params: p, groups: [gx, gy, 1] });
    label = `${pre.name}+${label}`;
    xIn = scratch;
  }
  const mainNorm = desc.norm ? norm : null;
  const perGroup = desc.rows * desc.wg;
  const eps = mainNorm ? mainNorm.eps : 0;
  const biasKind = bias ? (bias.dtype === "f32" ? 1 : 2) : 0;
  const params = (p: { nw: number; n1: number; n2: number; n0: number; g1: number; g2: number; groups: number; bBase: number; qBase?: number; sBase?: number }) =>
    new Params().u32(K).u32(Nout).u32(M).u32(p.nw).u32(p.n1).u32(p.n2).u32(p.n0).u32(p.g1).u32(p.g2).u32(p.groups).u32(p.bBase).u32(biasKind).f32(eps).f32(K).u32(p.qBase ?? 0).u32(p.sBase ?? 0).bytes();
  const common = (w0: BindingResource, w1: BindingResource, w2: BindingResource, b: BindingResource | null): BindingResource[] => [
    xIn,
    mainNorm ? mainNorm.weight : w0,
    w0,
    w1,
    w2,
    b ?? w0,
    step ?? w0,
    y,
  ];
  const groups3 = (n: number): [number, number, number] => {
    const [gx, gy] = grid(ctx, n);
    return [gx, gy, 1];
  };
  if (multi) {
    const G = Ns.map((n) => Math.ceil(n / perGroup));
    const total = G.reduce((a, b) => a + b, 0);
    const swiglu = epilogue === "swiglu";
    const g1 = swiglu ? total : G[0]!;
    const g2 = swiglu || ws.length < 3 ? total : G[0]! + G[1]!;
    const groups = swiglu ? G[0]! : total;
    const p = params({ nw: Ns[0]!, n1: swiglu ? 0 : Ns[1]!, n2: swiglu ? 0 : Ns[2] ?? 0, n0: 0, g1, g2, groups, bBase: 0 });
    calls.push({ kernel, res: common(wholeRes(ws[0]!), wholeRes(ws[1]!), wholeRes(ws[2] ?? ws[0]!), bias), params: p, groups: groups3(groups) });
  } else if (quant && !layout) {
    // Windows along N: w0 = the window's quants, w1 = its scales (two bindings of one buffer, each
    // at the aligned offset at or below its first byte, sizes rounded up to 16), as linear_q.ts.
    const w = ws[0]!;
    const N = Ns[0]!;
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const nb = K / QK;
    const { qsBytes } = quantBytes(N, K, w.dtype as QuantDType);
    const rowQ = qsBytes / N;
    const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
    const perWin = Math.floor((limit - align - 16) / Math.max(rowQ, nb * 2, eB));
    if (perWin < 1) throw new UnsupportedError(`${op}: one row of w ('${w.label}', ${rowQ} bytes of quants) exceeds the storage binding limit of ${limit} bytes`);
    const bind = (t: Tensor, start: number, size: number, unit: number): { res: BufferWindow; skew: number } => {
      const at = start - (start % align);
      const byteSize = Math.ceil((start + size - at) / unit) * unit;
      if (at + byteSize > t.buffer.size) throw new UnsupportedError(`${op}: '${t.label}' (${t.dtype}) lies in a buffer of ${t.buffer.size} bytes; its window reads need ${at + byteSize}`, "allocate it through the context (ctx.upload / ctx.empty)");
      return { res: { tensor: t, byteOffset: at, byteSize }, skew: start - at };
    };
    for (let n0 = 0; n0 < N; n0 += perWin) {
      const nw = Math.min(perWin, N - n0);
      const qs = bind(w, n0 * rowQ, nw * rowQ, 16);
      const ss = bind(w, qsBytes + n0 * nb * 2, nw * nb * 2, 16);
      let bRes: BufferWindow | null = null;
      let bBase = 0;
      if (bias) {
        const b = bind(bias, n0 * eB, nw * eB, 4);
        bRes = b.res;
        bBase = b.skew / eB;
      }
      const groups = Math.ceil(nw / perGroup);
      calls.push({
        kernel,
        res: common(qs.res, ss.res, qs.res, bRes),
        params: params({ nw, n1: 0, n2: 0, n0, g1: groups, g2: groups, groups, bBase, qBase: qs.skew / 16, sBase: ss.skew / 2 }),
        groups: groups3(groups),
      });
    }
  } else if (layout) {
    // Windows of whole tiles (plus a bias slice that fits one binding); a quantized W's tiles hold
    // their scales (src/gpu/tensor.ts TilesLayout), so the same windows serve f32/f16/q8_0/q4_0.
    const w = ws[0]!;
    const N = Ns[0]!;
    const T = layout.T;
    const tileBytes = layout.kc * T * 16;
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
    const windows = ctx.bindingWindows(layout.tiles, tileBytes, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype} in tiles of ${T}`, Math.max(1, Math.floor((limit - align) / (eB * T))));
    for (const win of windows) {
      const n0 = win.firstRow * T;
      const nw = Math.min(win.rows * T, N - n0);
      const wRes: BufferWindow = { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * tileBytes };
      let bRes: BufferWindow | null = null;
      let bBase = 0;
      if (bias) {
        const start = n0 * eB;
        const at = start - (start % align);
        bRes = { tensor: bias, byteOffset: at, byteSize: Math.ceil((start + nw * eB - at) / 4) * 4 };
        bBase = (start - at) / eB;
      }
      const groups = Math.ceil(nw / perGroup);
      calls.push({ kernel, res: common(wRes, wRes, wRes, bRes), params: params({ nw, n1: 0, n2: 0, n0, g1: groups, g2: groups, groups, bBase }), groups: groups3(groups) });
    }
  } else {
    const w = ws[0]!;
    const N = Ns[0]!;
    const eW = DTYPE_BYTES[w.dtype];
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
    const windows = ctx.bindingWindows(N, K * eW, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype}`, Math.max(1, Math.floor((limit - align) / eB)));
    for (const win of windows) {
      const wRes: BufferWindow = { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * K * eW };
      let bRes: BufferWindow | null = null;
      let bBase = 0;
      if (bias) {
        const start = win.firstRow * eB;
        const at = start - (start % align);
        bRes = { tensor: bias, byteOffset: at, byteSize: Math.ceil((start + win.rows * eB - at) / 4) * 4 };
        bBase = (start - at) / eB;
      }
      const groups = Math.ceil(win.rows / perGroup);
      calls.push({ kernel, res: common(wRes, wRes, wRes, bRes), params: params({ nw: win.rows, n1: 0, n2: 0, n0: win.firstRow, g1: groups, g2: groups, groups, bBase }), groups: groups3(groups) });
    }
  }
  return new GemvStepPlan(ctx, label, choice, calls, owned);
}

/** One fused GEMV now: plan, encode, dispose (the plan's own bias copy is released after use). */
export async function gemvStep(ctx: GpuContext, spec: GemvStepSpec): Promise<string> {
  const plan = await planGemvStep(ctx, spec);
  plan.encode(ctx);
  plan.dispose();
  return plan.label;
}

/** Arguments of the CPU reference (host arrays; f16 values given as their f32 values). */
export interface GemvStepReferenceArgs {
  /** x [rows, K]. */
  x: Float32Array;
  K: number;
  /** W_i [N_i, K] (SWIGLU: [gate, up]); a quantized matrix is dequantized exactly (q · d) first. */
  w: readonly (Float32Array | QuantizedMatrix)[];
  N: readonly number[];
  epilogue: GemvStepEpilogue;
  norm?: { weight: Float32Array; eps: number } | null;
  /** Concatenated bias [ΣN_i] (SWIGLU [2I]) or null. */
  bias?: Float32Array | null;
  /** y before the call [yRows, N_out]: RESIDUAL adds to it; rows not computed keep it. */
  y: Float32Array;
  /** Live rows T (rows 0..T−1 of x). */
  T: number;
  lastRow?: boolean;
}

/**
 * CPU reference (the spec), float64: for each computed row m (0..T−1, or only T−1 → y row 0):
 * x̂ = x[m] (or RMSNorm: x[m] / sqrt(mean x[m]² + eps) · g), a_n = Σ_k x̂_k·W[n, k] + bias[n] over
 * the concatenated rows; y = a (store), y + a (residual) or silu(a_gate)·a_up (swiglu).
 * Returns the new y [yRows, N_out] (rounded to f32).
 */
export function gemvStepReference(a: GemvStepReferenceArgs): Float32Array {
  const { x, K, N, epilogue, T } = a;
  const w = a.w.map((m) => (m instanceof Float32Array ? m : dequantizeMatrix(m)));
  const y = Float32Array.from(a.y);
  const Nout = epilogue === "swiglu" ? N[0]! : N.reduce((p, q) => p + q, 0);
  const first = a.lastRow ? T - 1 : 0;
  const xh = new Float64Array(K);
  for (let m = Math.max(first, 0); m < T; m++) {
    let inv = 1;
    if (a.norm) {
      let ss = 0;
      for (let k = 0; k < K; k++) ss += x[m * K + k]! * x[m * K + k]!;
      inv = 1 / Math.sqrt(ss / K + a.norm.eps);
    }
    for (let k = 0; k < K; k++) xh[k] = a.norm ? x[m * K + k]! * inv * a.norm.weight[k]! : x[m * K + k]!;
    const dot = (mat: number, n: number) => {
      let s = 0;
      const wm = w[mat]!;
      for (let k = 0; k < K; k++) s += xh[k]! * wm[n * K + k]!;
      return s;
    };
    const yr = (m - first) * Nout;
    if (epilogue === "swiglu") {
      const I = N[0]!;
      for (let i = 0; i < I; i++) {
        const gv = dot(0, i) + (a.bias ? a.bias[i]! : 0);
        const uv = dot(1, i) + (a.bias ? a.bias[I + i]! : 0);
        y[yr + i] = siluReference(gv) * uv;
      }
      continue;
    }
    let col = 0;
    for (let mat = 0; mat < w.length; mat++) {
      for (let n = 0; n < N[mat]!; n++, col++) {
        const v = dot(mat, n) + (a.bias ? a.bias[col]! : 0);
        y[yr + col] = epilogue === "residual" ? y[yr + col]! + v : v;
      }
    }
  }
  return y;
}
