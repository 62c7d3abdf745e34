// Linear layers (Hugging Face nn.Linear): y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]).
// x: f32 activations [..., K] (leading dims flattened to M rows); W: f32 or f16 [N, K] row-major,
// exactly as stored in checkpoints; bias: optional f32 or f16 [N]; y: f32 [..., N]. f32
// accumulation throughout.
//
// Two kernel families, one resolver (resolveLinear) choosing between them and labelling the pick:
//   gemv   (kernels/gemv.wgsl, gemv_splitk.wgsl): small M — decode and a few parallel sequences;
//          reads W once per call (memory-bound on GPUs; instruction-bound on lavapipe, see
//          kernels/gemv.wgsl).
//   gemv_tiled (kernels/gemv_tiled.wgsl): the same on W in lane-interleaved tiles
//          (kernels/gemv_repack.wgsl) so neighbouring invocations read neighbouring memory: either
//          W itself when it lies in the tiles layout (src/gpu/tensor.ts TilesLayout: loadDecoder's
//          gemvLayout 'tiles' transforms the projections at load time, replacing the row-major
//          weights; toTilesLayout), or an opt-in copy beside a row-major W (packGemvWeight /
//          gemvPackOf; benchmarks and tests), made only by an owner that promises W will not change.
//   gemv_bcast (kernels/gemv_bcast.wgsl): M ≤ 16 (serve's batched step, and decode-sized
//          linears) where 8-lane subgroups exist: each lane loads one x element per row and step,
//          subgroupBroadcast hands the step's 8 to every lane, and each W chunk is loaded once for
//          MB = 1/2/4/8 rows; W row-major or in tiles of 8 rows.
//   matmul (kernels/matmul.wgsl): register-tiled, for prefill and batches; its TILES path reads W
//          in the tiles layout (the same kernel with a tile/lane address per W chunk).
// A W in the tiles layout is read only by gemv_tiled and matmul (TILES); forcing a row-major
// kernel on it is refused in one line.
// Tensors above the storage binding limit are processed in windows: W along N (rows of
// K·elemBytes, ctx.bindingWindows), x and y along M (whole rows), each window one dispatch.
// Window starts that are not 256-byte aligned (x, y, bias) are bound from the aligned address
// below and the kernel is told the element offset (params *_base).

import { ShapeError, UnsupportedError } from "../errors.js";
import type { BufferWindow, GpuContext } from "../gpu/context.js";
import type { Kernel, KernelVariant } from "../gpu/kernels.js";
import { DTYPE_BYTES, isQuantDType, tilesBytes, tilesLayout, type Tensor } from "../gpu/tensor.js";
import { expectDType, grid, Params } from "./common.js";
import { launchLinearQ, linearQXBcast, resolveLinearQ } from "./linear_q.js";
import { encodeTiledCopy, tiledCopyShape } from "./tiled-copy.js";

export type WDType = "f32" | "f16";
/** Algorithms a caller may force. "auto" (default) lets resolveLinear choose. */
export type LinearVariantName = "gemv" | "gemv_splitk" | "gemv_subgroup" | "gemv_tiled" | "gemv_bcast" | "matmul";
export const LINEAR_VARIANT_NAMES: readonly LinearVariantName[] = ["gemv", "gemv_splitk", "gemv_subgroup", "gemv_tiled", "gemv_bcast", "matmul"];

// Tuning constants. Measured on lavapipe (llvmpipe 8-wide, AMD EPYC, 2 cores shared with other
// jobs, Node + Dawn, 2026-11-24) with interleaved A/B arms in one process; absolute figures vary
// ±30% with the machine's load, the rankings held across rounds.
/** gemv (rows design): rows of W per invocation (f16 4096×4096, M=1: R=1 12.4 ms, R=2 9.5,
 * R=4 7.7, R=8 8.8) and invocations per workgroup (16/64/128 within noise; 64 kept). */
const GEMV_R = 4;
const GEMV_WG = 64;
/**
 * gemv_tiled: rows per tile = invocations per workgroup (T), and tiles per workgroup (R: each
 * invocation owns one row of each), per device class (gemvTiledShape). Measured on lavapipe
 * (llvmpipe 8-wide, 2 cores shared with other jobs at load average 8–13, Node + Dawn, 2026-12-02;
 * f16, M=1, 7 alternated rounds; speed vs gemv rows r4 wg64, copy bandwidth beside it 2–20 GB/s):
 *   N×K           T64R4  T8R4  T8R8
 *   576×576       0.91   0.97  1.44
 *   1536×576      1.22   1.38  1.41
 *   576×1536      0.81   1.04  1.10
 *   49152×576     2.84   2.04  1.73
 *   5632×2048     0.59   0.66  0.63   (other runs: 1.39 / 2.24 / 1.24; the load swamps single shapes)
 *   32000×2048    1.38   1.53  1.50
 *   4096×4096     0.96   1.14  1.18
 *   geomean       1.10   1.18  1.23   → T=8 (one llvmpipe SIMD group per workgroup), R=8.
 * Other T/R on 2048×2048, 5632×2048, 2048×5632 (same day): T64R1 0.59–0.98, T64R2 0.76–1.12,
 * T32R4 0.65–1.54, T16R4 0.77–1.57, T32R8 0.68–1.26, T8R16 0.74–0.93, T8R2 0.83–1.49.
 * Hardware GPUs: not measured; T=64 R=4 (64 lanes read 1 KiB contiguous, as coalescing wants).
 */
export function gemvTiledShape(ctx: GpuContext): { T: number; R: number } {
  return ctx.adapter.isSoftware ? { T: 8, R: 8 } : { T: 64, R: 4 };
}
/** gemv_splitk / gemv_subgroup: rows of W per workgroup, invocations splitting K. */
const SPLITK_R = 2;
const SPLITK_WG = 64;
/**
 * Largest M the resolver sends to gemv / gemv_tiled where gemv_bcast does not run (no subgroups,
 * subgroups under 8 lanes, hardware GPUs, tiles of T ≠ 8). f16 4096×4096: M=1 gemv 8.2 ms vs
 * matmul t1x8 10.3; M=2 gemv 12.7 vs matmul t2x8 12.1 (a tie); M=4 gemv 23.3 vs matmul t4x8 19.2;
 * M=8 54.6 vs 36.0. GEMV's win is M=1; M=2 stays on it (tie) so two parallel sequences read W once.
 */
export const GEMV_MAX_M = 2;
/**
 * Largest M the resolver sends to gemv_bcast with f32 W (where gemvBcastPreferred); matmul above.
 * M = 16 still costs ×0.40–0.61 of matmul t4x8 on every 134M projection
 * (bench/results/2026-12-02-gemv-bcast.md). f16 W: every M (bcastMaxM): at M = 128 (prefill-sized)
 * gemv_bcast (MB 8) cost ×0.34–0.51 of matmul t4x8's CPU time on the 134M projections, rows and
 * tiles, wall ×1.4–2.5 faster (lavapipe at load ~4 with a 7B bench beside, 2026-12-03,
 * BATCH_GEMV_MS=1,128 bench/batch-gemv.bench.ts, bench/results/2026-12-03-batch-gemv-m128.md);
 * f32 W at large M not measured.
 */
export const BCAST_MAX_M = 16;
/** Largest M the resolver sends to gemv_bcast for this weight dtype (see BCAST_MAX_M). */
export function bcastMaxM(wDtype: WDType): number {
  return wDtype === "f16" ? Infinity : BCAST_MAX_M;
}
/**
 * Whether gemv_bcast beats gemv / gemv_tiled / matmul for M ≤ BCAST_MAX_M on this device class, by
 * measurement (bench/batch-gemv.bench.ts, arms alternated in one process, process CPU time per call).
 *   software Vulkan (lavapipe/llvmpipe 8-wide, subgroups of 8, Node + Dawn, 2 cores shared with
 *   other jobs at load average 10–14; 2026-12-02, bench/results/2026-12-02-9a5fb6e-batch-gemv.json),
 *   the 134M Llama shape's projections (f16; q/k/v/o 768×768, gate/up 2048×768, down 768×2048,
 *   lm_head 32000×768), CPU time of one step's projections (12 layers + lm_head) as a multiple of
 *   M = 1 gemv rows r4 (413 CPU-ms):
 *     M    before (gemv ≤ 2, matmul t4x8 above)   gemv_bcast rows   gemv_bcast tiles (T=8)
 *     1    1.00 (tiles: gemv_tiled 0.83)            0.69              0.61
 *     2    1.43 (tiles 1.24)                        0.80              0.67
 *     4    1.62 (tiles 1.84)                        1.02              0.91
 *     8    3.00 (tiles 3.21)                        1.53              1.41
 *     16   5.73 (tiles 5.99)                        2.99              2.76
 *   i.e. ×0.44–0.73 of the kernel it replaces at every M, in both layouts, and every single shape
 *   ×0.32–0.78 of matmul. Why: on llvmpipe every storage load is a per-lane gather (GPU-NOTES);
 *   matmul t4x8 loads one x word per 8 MACs and one W word per 8, gemv (r4) one x word per 4 and
 *   one W word per 2 (f16), gemv_bcast one x word per 32 (one element per lane, broadcast) and
 *   one W word per 2·MB. Earlier tries without the broadcast (gemv rows and tiles with MB = 4/8,
 *   scalar or vec4 accumulators, loops or unrolled by hand) cost ×1.0–5 of matmul.
 *   hardware GPUs: not measured (no GPU lent) → false; the kernel reads tiles of 8 rows only
 *   (hardware loads use T = 64).
 *   software with 4-lane subgroups (SwiftShader in Chromium; the xl 2 path): not measured → false.
 */
export function gemvBcastPreferred(ctx: GpuContext): boolean {
  return ctx.adapter.isSoftware && bcastXL(ctx) === 1;
}
/**
 * matmul: outputs per invocation (TM activation rows × TN rows of W) and workgroup shape.
 * f32 512×1024×1024: t4x8 4.6 GFLOP/s; t4x4 3.7; t8x8 3.0; t4x16 2.9; t2x8 3.4; vec4
 * accumulators with fma instead of dot() 3.3 (t4x8); invocations along M instead of N (x loads
 * per-lane, W loads uniform) 4.4. f16 64×2048×2048, t4x8: workgroups 8×1, 32×1, 8×4, 64×1 all
 * 4.8–5.1 GFLOP/s; 64×1 kept (a whole number of subgroups on any device).
 */
const MATMUL_TM = 4;
const MATMUL_TN = 8;
const MATMUL_WGX = 64;
const MATMUL_WGY = 1;

/** gemv_bcast: invocations per workgroup = K elements per step = rows per tile it reads (one subgroup). */
export const BCAST_T = 8;
/**
 * gemv_bcast: rows of W per invocation. Lavapipe 2026-12-02 (load 10, f16, M = 8, MB = 8, CPU time
 * per call): R = 4 vs R = 2 vs R = 8 on 768×768 1.00 / 1.12 / 1.41, 2048×768 1.00 / 0.89 / 1.37,
 * 768×2048 1.00 / 1.02 / 1.57; R = 8 took 11 s to compile (R = 4 < 1.5 s).
 */
const BCAST_R = 4;

/**
 * Whether gemv_bcast can run here: subgroups of at least 4 invocations (known: an adapter that does
 * not report subgroupMinSize is refused). Subgroups of ≥ 8 hold the whole 8-invocation workgroup and
 * each lane loads one x element per step (xl 1); subgroups of 4 (SwiftShader, 4-wide llvmpipe) each
 * broadcast the step's 8 elements from 4 lanes loading 2 (xl 2).
 */
export function gemvBcastUsable(ctx: GpuContext): boolean {
  return ctx.hasSubgroups && (ctx.adapter.subgroupMinSize ?? 0) >= BCAST_MIN_SUBGROUP;
}
const BCAST_MIN_SUBGROUP = 4;
/** gemv_bcast's x elements per lane per step on this device: 1 where every subgroup holds ≥ 8 lanes, else 2. */
export function bcastXL(ctx: GpuContext): 1 | 2 {
  return (ctx.adapter.subgroupMinSize ?? 0) >= BCAST_T ? 1 : 2;
}

/**
 * gemv_bcast's activation rows per M-block for M rows: 1, 2, 4 or 8 (M > 8 runs blocks of 8, the
 * last guarded). MB = 16 measured slower than two blocks of 8 (×1.2–2.2 the CPU time, lavapipe
 * 2026-12-02, 134M projections at M = 16) and compiles slower (5.6 s vs < 1.5 s at load 10).
 */
export function bcastMB(M: number): number {
  return M <= 2 ? Math.max(M, 1) : M <= 4 ? 4 : 8;
}

/** A fully specified linear kernel: everything that changes the WGSL. */
export interface LinearKernelDesc {
  algo: LinearVariantName;
  wDtype: WDType;
  /** Elements per K chunk: gemv 8 (f16) / 4 (f32) / 1; matmul 4 / 1. 1 when K is not a multiple. */
  vec: 1 | 4 | 8;
  /** gemv*: rows of W per invocation (gemv) or per workgroup (splitk/subgroup); matmul: TN. */
  rows: number;
  /** gemv*: activation rows per M-block; matmul: TM. */
  mb: number;
  /** Workgroup shape [x, y]. */
  wg: readonly [number, number];
  /** gemv f16 vec8 only: load W as vec4<f16> (needs shader-f16) instead of unpack2x16float. */
  nativeF16?: boolean;
  /** gemv_bcast only: x elements each lane loads per step (2: subgroups may hold only 4 lanes; see bcastXL). */
  xl?: 2;
  /** gemv_tiled only: x read as scalars (K % 4 ≠ 0: rows of x are not vec4-aligned). */
  xScalar?: boolean;
  /** matmul and gemv_bcast only: W lies in the tiles layout with this many rows per tile (src/gpu/tensor.ts TilesLayout). */
  tilesT?: number;
}

/** What resolveLinear picked: the kernel and its label. */
export interface LinearPlan {
  label: string;
  desc: LinearKernelDesc;
}

/**
 * Activation rows per GEMV M-block: 1 or 2. Larger blocks lost to matmul anyway (see GEMV_MAX_M)
 * and cost compile time on lavapipe (gemv_splitk with MB=8: 21 s to compile on a loaded 2-core
 * machine, MB=2: < 1 s); a forced GEMV with larger M loops over 2-row blocks.
 */
function gemvMB(M: number): number {
  return M <= 1 ? 1 : 2;
}

/**
 * Stable name of a kernel description, e.g. "gemv_f16_vec8_r4_mb1_wg64". The bias (none, f32,
 * f16) is a uniform, not part of the kernel: one pipeline serves all three.
 */
export function linearLabel(d: LinearKernelDesc): string {
  const shape = d.algo === "matmul" ? `t${d.mb}x${d.rows}_wg${d.wg[0]}x${d.wg[1]}` : `r${d.rows}_mb${d.mb}_wg${d.wg[0]}`;
  const nat = (d.nativeF16 ? "_h" : "") + (d.xScalar ? "_x1" : "") + (d.xl === 2 ? "_xl2" : "");
  return `${d.algo}_${d.wDtype}${d.tilesT ? `_tiles${d.tilesT}` : ""}_vec${d.vec}${nat}_${shape}`;
}

/** The registry variant (WGSL file, defines, bindings, features) of a kernel description. */
export function linearKernelVariant(d: LinearKernelDesc): KernelVariant {
  const f16 = d.wDtype === "f16";
  if (d.algo === "gemv_bcast") {
    const ce = f16 ? 8 : 4;
    if (d.vec !== ce && d.vec !== 1) throw new UnsupportedError(`linear: gemv_bcast reads ${d.wDtype} W in chunks of ${ce} elements or 1, not vec${d.vec} (${linearLabel(d)})`);
    if (d.tilesT !== undefined && (d.tilesT !== BCAST_T || d.vec !== ce)) throw new UnsupportedError(`linear: gemv_bcast reads tiles of ${BCAST_T} rows in ${ce}-element chunks (${linearLabel(d)})`);
    if (d.wg[0] !== BCAST_T || d.wg[1] !== 1) throw new UnsupportedError(`linear: gemv_bcast runs workgroups of ${BCAST_T} invocations (${linearLabel(d)})`);
    if (d.nativeF16) throw new UnsupportedError(`linear: nativeF16 exists only for gemv f16 vec8 (${linearLabel(d)})`);
    if (d.xl !== undefined && d.xl !== 2) throw new UnsupportedError(`linear: gemv_bcast loads 1 or 2 x elements per lane, not ${String(d.xl)} (${linearLabel(d)})`);
    const tiled = d.tilesT !== undefined;
    const wt = d.vec === 1 ? (f16 ? "u32" : "f32") : f16 ? "vec4<u32>" : "vec4<f32>";
    return {
      file: "gemv_bcast",
      name: linearLabel(d),
      defines: { WF16: f16, VEC8: f16, VEC1: d.vec === 1, TILED: tiled, XT: "f32", WT: wt, R: d.rows, MB: d.mb, ACC: d.rows * d.mb, XL: d.xl ?? 1, XL2: d.xl === 2 },
      bindings: ["read", "read", "read", "read_write", "uniform"],
      features: ["subgroups"],
    };
  }
  if (d.algo === "matmul" && d.vec === 8) throw new UnsupportedError(`linear: matmul has no vec8 path (${linearLabel(d)})`);
  if (d.algo !== "matmul" && d.algo !== "gemv_tiled" && d.vec === 4 && f16) throw new UnsupportedError(`linear: gemv f16 reads 8 halves per chunk or 1, not 4 (${linearLabel(d)})`);
  if (d.vec === 8 && !f16 && d.algo !== "gemv_tiled") throw new UnsupportedError(`linear: vec8 is the f16 chunk width (${linearLabel(d)})`);
  if (d.nativeF16 && !(d.algo === "gemv" && f16 && d.vec === 8)) throw new UnsupportedError(`linear: nativeF16 exists only for gemv f16 vec8 (${linearLabel(d)})`);
  if (d.algo !== "gemv" && d.algo !== "matmul" && (d.wg[0] & (d.wg[0] - 1)) !== 0) throw new UnsupportedError(`linear: ${linearLabel(d)} reduces over a power-of-two workgroup`);
  if (d.algo === "gemv_tiled") {
    const ce = f16 ? 8 : 4;
    if (d.vec !== ce) throw new UnsupportedError(`linear: gemv_tiled reads 16-byte chunks (${ce} ${d.wDtype} elements), not vec${d.vec} (${linearLabel(d)})`);
    if (d.nativeF16) throw new UnsupportedError(`linear: nativeF16 exists only for gemv f16 vec8 (${linearLabel(d)})`);
    return {
      file: "gemv_tiled",
      name: linearLabel(d),
      defines: { WF16: f16, VEC8: f16, TILED: true, XVEC: !d.xScalar, XT: d.xScalar ? "f32" : "vec4<f32>", WT: f16 ? "vec4<u32>" : "vec4<f32>", CE: ce, R: d.rows, MB: d.mb, WG: d.wg[0], ACC: d.rows * d.mb },
      bindings: ["read", "read", "read", "read_write", "uniform"],
    };
  }
  if (d.xScalar) throw new UnsupportedError(`linear: xScalar exists only for gemv_tiled (${linearLabel(d)})`);
  if (d.xl !== undefined) throw new UnsupportedError(`linear: xl exists only for gemv_bcast (${linearLabel(d)})`);
  if (d.tilesT && d.algo !== "matmul") throw new UnsupportedError(`linear: tilesT exists only for matmul and gemv_bcast (gemv_tiled reads tiles anyway) (${linearLabel(d)})`);
  const xt = d.vec === 1 ? "f32" : "vec4<f32>";
  const wt = f16 ? (d.vec === 1 ? "u32" : d.algo === "matmul" ? "vec2<u32>" : "vec4<u32>") : d.vec === 1 ? "f32" : "vec4<f32>";
  const acc = d.rows * d.mb;
  const common = {
    WF16: f16,
    VEC8: d.vec === 8,
    VEC4: d.vec === 4,
    VECN: d.vec,
    TILED: false,
    XT: xt,
    WT: wt,
    ACC: acc,
  };
  const bindings = ["read", "read", "read", "read_write", "uniform"] as const;
  const name = linearLabel(d);
  if (d.algo === "matmul") {
    const tiles = d.tilesT ? { TILES: true, TILED: true, TT: d.tilesT, CE: f16 ? 8 : 4 } : { TILES: false, TT: 0, CE: 0 };
    return { file: "matmul", name, defines: { ...common, NATIVE_F16: false, TM: d.mb, TN: d.rows, WGX: d.wg[0], WGY: d.wg[1], ...tiles }, bindings };
  }
  if (d.algo === "gemv") {
    const native = f16 && d.vec === 8 && d.nativeF16 === true;
    return { file: "gemv", name, defines: { ...common, NATIVE_F16: native, WT: native ? "vec4<f16>" : wt, R: d.rows, MB: d.mb, WG: d.wg[0] }, bindings, features: native ? ["shader-f16"] : [] };
  }
  if (acc > d.wg[0]) throw new UnsupportedError(`linear: ${name} reduces ${acc} sums with ${d.wg[0]} invocations; needs rows·mb ≤ wg`);
  const subgroup = d.algo === "gemv_subgroup";
  return {
    file: "gemv_splitk",
    name,
    defines: { ...common, R: d.rows, MB: d.mb, WG: d.wg[0], SUBGROUP: subgroup, NATIVE_F16: false },
    bindings,
    features: subgroup ? ["subgroups"] : [],
  };
}

/**
 * The projections' layout loadDecoder's gemvLayout "auto" picks (the inference commands load with
 * it), per device class, by measurement (bench/gemv-layout.bench.ts: gemv_step v1 rows vs v2 tiles
 * on the decode step's GEMVs, and the whole decode, arms alternated round by round).
 *   software Vulkan (lavapipe/llvmpipe 8-wide, Node + Dawn, 2 cores shared with ~5 other jobs at
 *   load average 9–21, copy 1.4–3.3 GB/s beside; 2026-12-02, three runs,
 *   bench/results/2026-12-02-tiled-gemv-layout.md): decode of the synthetic Llama 134M shape
 *   (D=768, 12 layers, f16) ×1.32, ×2.04, ×1.10 (tiles faster in 10 of 15 alternated pairs); one
 *   layer's fused GEMVs, SmolLM-134M shapes ×1.21 / ×1.16 / ×1.16, TinyLlama shapes ×0.83 / ×0.98 /
 *   ×1.17 (single GEMVs ×0.69–1.98, swinging ±30% with the load); TinyLlama's decode not A/B-measured
 *   (the bench holds both layouts). → tiles.
 *   q8_0/q4_0 projections follow the same choice (their tiles: src/quant/tiles.ts). Lavapipe, 134M
 *   shape, one run at load 3–9 shared with other benches (bench/quant-layout.bench.ts,
 *   bench/results/2026-12-02-qtiles-quant-layout.md): per-round geomean q4_0 tiles ×1.27 of q4_0
 *   rows and ×1.18 of f16 tiles (medians ×1.05 / ×0.88: 2–4× spread within an arm) → tiles.
 *   On a quiet machine (2026-12-03, load 0.2, bench/results/2026-12-03-a6730ca-quiet-layouts.md) f16
 *   rows beat tiles (×0.81 for tiles); since the tiles read x̂ through subgroup broadcasts
 *   (gemv_step XBCAST, 2026-12-03 at load 3–5, bench/results/2026-12-03-xbcast-quant-layout.md):
 *   134M decode f16 tiles ×1.19 of f16 rows, q4_0 tiles ×1.46 of q4_0 rows and ×1.21 of f16 tiles.
 *   hardware GPUs (subgroups or not): not measured (no GPU lent) → rows, the layout every reader
 *   had before; T = 64 tiles are implemented and tested for them (gemvTiledShape).
 */
export function decodeWeightLayout(ctx: GpuContext): "rows" | "tiles" {
  return ctx.adapter.isSoftware ? DECODE_LAYOUT.software : DECODE_LAYOUT.hardware;
}
const DECODE_LAYOUT = { software: "tiles", hardware: "rows" } as const satisfies Record<string, "rows" | "tiles">;

/**
 * Whether gemv_tiled beats gemv on this device class, by measurement (bench/linear.bench.ts "A/B"
 * rows, alternated arms in one process), for linear()'s M ≤ 2 path on a row-major W with an opt-in
 * tiled copy (the decode step reads the load-time layout instead: decodeWeightLayout). Device classes
 * never measured keep gemv.
 *   software Vulkan (lavapipe/llvmpipe 8-wide, 2 cores shared with other jobs at load 4–13, Node +
 *   Dawn, subgroups present), 2026-12-02, gemv_tiled T=8 R=8 vs gemv, f16 M=1 unless noted
 *   (bench/results/2026-12-02-gemv-tiled-ab.json, a --quick run, copy 13.8 GB/s beside):
 *     768×2048 0.78, 2048×2048 0.81, 5632×2048 1.11, 2048×5632 1.17, 32000×2048 2.41,
 *     4096×4096 0.83, M=2 2048×2048 1.87, f32 2048×2048 0.82 (single shapes swing ±40% between
 *     runs on this machine; see gemvTiledShape); lm_head-sized N (32000, 49152) won in every run
 *     (1.4–2.8×). Whole decode, which is what the choice is for: Llama 134M ×1.43
 *     (3.41 → 4.88 tok/s), the quick "tiny" model ×1.32, TinyLlama 1.1B ×1.02 (0.65 → 0.66 tok/s,
 *     2 rounds at load 8). Never slower end to end → TILED_SOFTWARE = true.
 *   discrete/integrated GPUs (subgroups or not): not measured yet → gemv.
 */
export function gemvTiledPreferred(ctx: GpuContext): boolean {
  return ctx.adapter.isSoftware && TILED_SOFTWARE;
}
const TILED_SOFTWARE = true;

/**
 * The one place that chooses a linear kernel for a shape. `variant` forces an algorithm; one that
 * cannot run on this device throws UnsupportedError (never a silent substitute). "auto": gemv_bcast
 * for M ≤ bcastMaxM (f16 W: any M) where it runs and measured faster (gemvBcastUsable, gemvBcastPreferred; W
 * row-major or in tiles of 8 rows); else for M ≤ GEMV_MAX_M gemv, or gemv_tiled when W lies in the
 * tiles layout or has a tiled copy (`packed`, gemvPackOf) on device classes where that measured
 * faster (gemvTiledPreferred); else matmul.
 */
export function resolveLinear(ctx: GpuContext, M: number, N: number, K: number, wDtype: WDType, variant: LinearVariantName | "auto" = "auto", packed = false, tilesT = 0): LinearPlan {
  if (variant !== "auto" && !LINEAR_VARIANT_NAMES.includes(variant)) {
    throw new UnsupportedError(`linear: unknown variant '${String(variant)}'`, `use one of ${LINEAR_VARIANT_NAMES.join(", ")} or "auto"`);
  }
  const small = M <= GEMV_MAX_M;
  const bcastOk = gemvBcastUsable(ctx) && (tilesT === 0 || tilesT === BCAST_T);
  // W in the tiles layout (tilesT > 0): gemv_tiled reads it for small M, matmul's TILES path otherwise.
  const algo: LinearVariantName =
    variant !== "auto" ? variant : M <= bcastMaxM(wDtype) && bcastOk && gemvBcastPreferred(ctx) ? "gemv_bcast" : small ? (tilesT > 0 || (packed && gemvTiledPreferred(ctx)) ? "gemv_tiled" : "gemv") : "matmul";
  if (algo === "gemv_bcast" && !bcastOk) {
    throw new UnsupportedError(
      `linear: variant 'gemv_bcast' needs the 'subgroups' feature with subgroups of at least ${BCAST_MIN_SUBGROUP} invocations${tilesT > 0 ? ` and W row-major or in tiles of ${BCAST_T} rows (this W: tiles of ${tilesT})` : ""}; this device has ${ctx.hasSubgroups ? `subgroups of ${ctx.adapter.subgroupMinSize ?? "unknown"}+` : "no subgroups"}`,
      "use 'matmul' or 'auto'",
    );
  }
  if (tilesT > 0 && algo !== "gemv_tiled" && algo !== "matmul" && algo !== "gemv_bcast") {
    throw new UnsupportedError(`linear: variant '${algo}' reads row-major W; this W lies in the tiles layout (T=${tilesT})`, "use 'gemv_tiled', 'gemv_bcast', 'matmul' or 'auto'");
  }
  if (algo === "gemv_subgroup" && !ctx.hasSubgroups) {
    throw new UnsupportedError(`linear: variant 'gemv_subgroup' needs the device feature 'subgroups', which this device lacks`, "use 'gemv' or 'auto'");
  }
  void N; // no choice depends on N on the devices measured so far; kept for the decoder's calls
  let desc: LinearKernelDesc;
  if (algo === "matmul") {
    desc = { algo, wDtype, vec: K % 4 === 0 ? 4 : 1, rows: MATMUL_TN, mb: MATMUL_TM, wg: [MATMUL_WGX, MATMUL_WGY], ...(tilesT > 0 ? { tilesT } : {}) };
  } else if (algo === "gemv_bcast") {
    const ce = wDtype === "f16" ? 8 : 4;
    desc = { algo, wDtype, vec: tilesT > 0 || K % ce === 0 ? ce : 1, rows: BCAST_R, mb: bcastMB(M), wg: [BCAST_T, 1], ...(tilesT > 0 ? { tilesT } : {}), ...(bcastXL(ctx) === 2 ? { xl: 2 as const } : {}) };
  } else if (algo === "gemv_tiled") {
    const shape = gemvTiledShape(ctx);
    const T = tilesT > 0 ? tilesT : shape.T;
    const R = shape.R;
    desc = { algo, wDtype, vec: wDtype === "f16" ? 8 : 4, rows: R, mb: gemvMB(M), wg: [T, 1], ...(K % 4 !== 0 ? { xScalar: true } : {}) };
  } else {
    const vec = wDtype === "f16" ? (K % 8 === 0 ? 8 : 1) : K % 4 === 0 ? 4 : 1;
    const mb = gemvMB(M);
    desc = algo === "gemv" ? { algo, wDtype, vec, rows: GEMV_R, mb, wg: [GEMV_WG, 1] } : { algo, wDtype, vec, rows: SPLITK_R, mb, wg: [SPLITK_WG, 1] };
  }
  return { label: linearLabel(desc), desc };
}

// ------------------------------------------------------------------ tiled copies of W

/** A tiled copy of W [N, K] for gemv_tiled: u32 words [tiles, kc, T, 4] (see kernels/gemv_tiled.wgsl). */
export interface GemvPack {
  tensor: Tensor;
  N: number;
  K: number;
  wDtype: WDType;
  /** Rows per tile. */
  T: number;
  /** 16-byte chunks per packed row, ceil(K / CE). */
  kc: number;
  tiles: number;
}

const packs = new WeakMap<Tensor, GemvPack>();

/** Bytes of W [N, K]'s tiled copy (src/ops/tiled-copy.ts): ceil(N/T)·T rows of ceil(K/CE) 16-byte chunks. */
export function gemvPackBytes(N: number, K: number, wDtype: WDType, T: number): number {
  return tilesBytes(tilesLayout(N, K, wDtype, T));
}

/** The tiled copy of w, if one was made (packGemvWeight). */
export function gemvPackOf(w: Tensor): GemvPack | undefined {
  const p = packs.get(w);
  return p && !p.tensor.isDisposed ? p : undefined;
}

/** Frees w's tiled copy (call it before changing W in place, or to reclaim the bytes). */
export function releaseGemvPack(w: Tensor | null): void {
  if (!w) return;
  const p = packs.get(w);
  if (p) {
    p.tensor.dispose();
    packs.delete(w);
  }
}

/**
 * Makes (once) and caches the tiled copy of W [N, K] f32|f16 on the GPU (src/ops/tiled-copy.ts),
 * for gemv_tiled. The caller promises W does not change while the copy lives (releaseGemvPack).
 */
export async function packGemvWeight(ctx: GpuContext, w: Tensor, T = gemvTiledShape(ctx).T): Promise<GemvPack> {
  const have = gemvPackOf(w);
  if (have && have.T === T) return have;
  if (have) releaseGemvPack(w); // another tile height (benchmarks of T)
  const { N, K, wDtype } = repackArgs(w, "gemv_repack");
  const { kc, tiles } = tiledCopyShape(N, K, wDtype, T);
  const out = ctx.empty([tiles, kc, T, 4], "u32", `${w.label}.gemv_tiled`);
  await repackInto(ctx, w, out, T);
  const pack: GemvPack = { tensor: out, N, K, wDtype, T, kc, tiles };
  packs.set(w, pack);
  return pack;
}

/**
 * The load-time layout transform: a new tensor [N, K] holding W f32|f16 (row-major) in the tiles
 * layout with T rows per tile (src/gpu/tensor.ts TilesLayout; kernels/gemv_repack.wgsl). The caller
 * disposes the row-major W afterwards (loadDecoder does: the tiles replace it, no second copy).
 */
export async function toTilesLayout(ctx: GpuContext, w: Tensor, T: number): Promise<Tensor> {
  const { N, K, wDtype } = repackArgs(w, "toTilesLayout");
  const out = ctx.emptyTiles([N, K], wDtype, T, w.label);
  try {
    await repackInto(ctx, w, out, T);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

function repackArgs(w: Tensor, op: string): { N: number; K: number; wDtype: WDType } {
  expectDType(w, ["f32", "f16"], op, "w");
  w.refuseTiles(op);
  if (w.shape.length !== 2) throw new ShapeError(`${op}: w ('${w.label}') has shape [${w.shape.join(", ")}], expected [N, K]`);
  return { N: w.shape[0]!, K: w.shape[1]!, wDtype: w.dtype as WDType };
}

/** Encodes gemv_repack.wgsl (encodeTiledCopy): row-major w [N, K] → `out`'s buffer in tiles of T rows. */
function repackInto(ctx: GpuContext, w: Tensor, out: Tensor, T: number): Promise<void> {
  const [N, K] = w.shape as [number, number];
  return encodeTiledCopy(ctx, w, out, { count: N, T, what: `gemv_repack: packed copy of '${w.label}' [${N}, ${K}] ${w.dtype}` });
}

export interface LinearOptions {
  bias?: Tensor;
  /** Output [..., N] f32, written in place (allocated when absent). */
  out?: Tensor;
  variant?: LinearVariantName | "auto";
}

/**
 * y = x·Wᵀ (+ bias). x [..., K] f32, w [N, K] f32|f16|q8_0|q4_0, bias [N] f32|f16; returns y [..., N]
 * f32. Block-quantized W runs src/ops/linear_q.ts's kernels (resolveLinearQ), reading its packed bytes.
 */
export async function linear(ctx: GpuContext, x: Tensor, w: Tensor, opts: LinearOptions = {}): Promise<Tensor> {
  const op = "linear";
  expectDType(x, ["f32"], op, "x");
  expectDType(w, ["f32", "f16", "q8_0", "q4_0"], op, "w");
  if (w.shape.length !== 2) throw new ShapeError(`${op}: w ('${w.label}') has shape [${w.shape.join(", ")}], expected [N, K]`);
  const N = w.shape[0]!;
  const K = w.shape[1]!;
  if (N === 0 || K === 0) throw new ShapeError(`${op}: w ('${w.label}') has shape [${w.shape.join(", ")}]; N and K must be ≥ 1`);
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== K) {
    throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [..., ${K}] (K of w '${w.label}' [${N}, ${K}])`);
  }
  const lead = x.shape.slice(0, -1);
  const M = x.numel / K;
  const outShape = [...lead, N];
  const { bias, out } = opts;
  if (bias) {
    expectDType(bias, ["f32", "f16"], op, "bias");
    if (bias.shape.length !== 1 || bias.shape[0] !== N) throw new ShapeError(`${op}: bias ('${bias.label}') has shape [${bias.shape.join(", ")}], expected [${N}]`);
  }
  if (out) {
    expectDType(out, ["f32"], op, "out");
    if (out.shape.length !== outShape.length || out.shape.some((d, i) => d !== outShape[i])) {
      throw new ShapeError(`${op}: out ('${out.label}') has shape [${out.shape.join(", ")}], expected [${outShape.join(", ")}]`);
    }
    if (out.buffer === x.buffer || out.buffer === w.buffer || (bias && out.buffer === bias.buffer)) {
      throw new ShapeError(`${op}: out ('${out.label}') shares its buffer with an input`);
    }
  }
  if (isQuantDType(w.dtype)) {
    const qplan = resolveLinearQ(M, w.dtype, opts.variant ?? "auto", w.layout?.T ?? 0, linearQXBcast(ctx, w.layout?.T ?? 0));
    const y = out ?? ctx.empty(outShape, "f32", "linear.out");
    await launchLinearQ(ctx, qplan.desc, x, w, bias ?? null, y, M, N, K);
    return y;
  }
  const plan = resolveLinear(ctx, M, N, K, w.dtype as WDType, opts.variant ?? "auto", gemvPackOf(w) !== undefined, w.layout?.T ?? 0);
  // An explicit request for gemv_tiled packs a row-major W on first use (the request is the promise
  // that W stays unchanged while the copy lives; releaseGemvPack before changing it).
  if (plan.desc.algo === "gemv_tiled" && !w.layout) await packGemvWeight(ctx, w);
  const y = out ?? ctx.empty(outShape, "f32", "linear.out");
  await launchLinear(ctx, plan.desc, x, w, bias ?? null, y, M, N, K);
  return y;
}

/**
 * Encodes one linear with a given kernel description (no resolver): linear() after its checks,
 * and benchmarks comparing tunings. Arguments are assumed checked: x [M, K], w [N, K], y [M, N].
 */
export async function launchLinear(
  ctx: GpuContext,
  desc: LinearKernelDesc,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  y: Tensor,
  M: number,
  N: number,
  K: number,
): Promise<void> {
  const op = "linear";
  if (desc.wDtype !== w.dtype) throw new ShapeError(`${op}: kernel ${linearLabel(desc)} is for ${desc.wDtype} weights, w ('${w.label}') is ${w.dtype}`);
  if (desc.algo !== "gemv_tiled" && (desc.tilesT ?? 0) !== (w.layout?.T ?? 0)) {
    throw new UnsupportedError(`${op}: kernel ${linearLabel(desc)} reads ${desc.tilesT ? `W in tiles of ${desc.tilesT} rows` : "row-major W"}; w ('${w.label}') is ${w.layout ? `in tiles of ${w.layout.T} rows` : "row-major"}`);
  }
  if (desc.algo !== "gemv_tiled" && !(desc.algo === "gemv_bcast" && desc.tilesT) && desc.vec !== 1 && K % desc.vec !== 0) throw new UnsupportedError(`${op}: kernel ${linearLabel(desc)} reads K in chunks of ${desc.vec}; K = ${K} is not a multiple`);
  const kernel = await ctx.kernels.get(linearKernelVariant(desc));
  if (M === 0) return;
  if (desc.algo === "gemv_tiled") {
    launchGemvTiled(ctx, kernel, desc, x, w, bias, y, M, N, K);
    return;
  }

  const limit = ctx.limits.maxStorageBufferBindingSize;
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const eW = DTYPE_BYTES[w.dtype];
  const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
  // W windows along N; a window's bias slice (plus alignment slack) must fit one binding too.
  // Tiles layout: windows of whole tiles.
  let wWindows: { firstRow: number; rows: number; res: BufferWindow; tiles: number }[];
  const lay = w.layout;
  if (lay) {
    const tileBytes = lay.kc * lay.T * 16;
    wWindows = ctx.bindingWindows(lay.tiles, tileBytes, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype} in tiles of ${lay.T}`, Math.max(1, Math.floor((limit - align) / (eB * lay.T)))).map((win) => ({
      firstRow: win.firstRow * lay.T,
      rows: Math.min(win.rows * lay.T, N - win.firstRow * lay.T),
      res: { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * tileBytes },
      tiles: win.rows,
    }));
  } else {
    wWindows = ctx.bindingWindows(N, K * eW, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype}`, Math.max(1, Math.floor((limit - align) / eB))).map((win) => ({
      firstRow: win.firstRow,
      rows: win.rows,
      res: { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * K * eW },
      tiles: 0,
    }));
  }
  // M windows: whole rows of x (K f32) and y (N f32), with alignment slack.
  const rowBytes = Math.max(K, N) * 4;
  const mPer = Math.floor((limit - align) / rowBytes);
  if (mPer < 1) {
    throw new UnsupportedError(`${op}: one row of x ('${x.label}', ${K * 4} bytes) or y (${N * 4} bytes) exceeds the storage binding limit of ${limit} bytes`);
  }
  const rowsPerZ = desc.algo === "matmul" ? desc.mb * desc.wg[1] : desc.mb;
  const bcast = desc.algo === "gemv_bcast";
  const mStep = Math.min(mPer, rowsPerZ * ctx.limits.maxComputeWorkgroupsPerDimension);
  const xUnit = desc.vec === 1 || bcast ? 1 : 4; // x's binding element: f32 or vec4<f32>
  const span = (t: Tensor, first: number, count: number): { res: BufferWindow; base: number } => {
    const e = DTYPE_BYTES[t.dtype];
    const start = first * e;
    const at = start - (start % align);
    return { res: { tensor: t, byteOffset: at, byteSize: start + count * e - at }, base: (start - at) / e };
  };
  for (let m0 = 0; m0 < M; m0 += mStep) {
    const mw = Math.min(mStep, M - m0);
    const xs = span(x, m0 * K, mw * K);
    const ys = span(y, m0 * N, mw * N);
    for (const win of wWindows) {
      const wRes = win.res;
      const bs = bias ? span(bias, win.firstRow, win.rows) : null;
      const pp = linearParams(K, win.rows, mw, N, win.firstRow, xs.base / xUnit, ys.base, bs ? bs.base : 0, bias);
      const params = (lay ? pp.u32(lay.kc).u32(win.tiles) : pp).bytes();
      let groups: [number, number, number];
      if (desc.algo === "matmul") {
        groups = [Math.ceil(win.rows / (desc.rows * desc.wg[0])), Math.ceil(mw / (desc.mb * desc.wg[1])), 1];
      } else {
        const perGroup = desc.algo === "gemv" || bcast ? desc.rows * desc.wg[0] : desc.rows;
        const [gx, gy] = grid(ctx, Math.ceil(win.rows / perGroup));
        groups = [gx, gy, Math.ceil(mw / desc.mb)];
      }
      ctx.dispatch(kernel, [xs.res, wRes, bs ? bs.res : wRes, ys.res], params, groups);
    }
  }
}

/** gemv_tiled's dispatches: windows of whole tiles of W's packed copy, M-windows as in launchLinear. */
function launchGemvTiled(ctx: GpuContext, kernel: Kernel, desc: LinearKernelDesc, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor, M: number, N: number, K: number): void {
  const op = "linear";
  // W itself in the tiles layout, or its tiled copy (packGemvWeight).
  const lay = w.layout;
  const pack: GemvPack | undefined = lay ? { tensor: w, N, K, wDtype: w.dtype as WDType, T: lay.T, kc: lay.kc, tiles: lay.tiles } : gemvPackOf(w);
  if (!pack) throw new UnsupportedError(`${op}: kernel ${linearLabel(desc)} needs the tiled copy of w ('${w.label}')`, "call packGemvWeight(ctx, w) first, or linear() with variant 'gemv_tiled'");
  if (pack.N !== N || pack.K !== K || pack.T !== desc.wg[0]) { // a copy made for another device class or tuning
    throw new ShapeError(`${op}: the tiled copy of w ('${w.label}') is [${pack.N}, ${pack.K}] with T=${pack.T}; kernel ${linearLabel(desc)} needs [${N}, ${K}] with T=${desc.wg[0]}`);
  }
  if (!desc.xScalar && K % 4 !== 0) throw new UnsupportedError(`${op}: kernel ${linearLabel(desc)} reads x as vec4; K = ${K} is not a multiple of 4`);
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const T = pack.T;
  const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
  const tileBytes = pack.kc * T * 16;
  const wWindows = ctx.bindingWindows(pack.tiles, tileBytes, `${op}: tiled copy of w '${w.label}' [${N}, ${K}] ${w.dtype}`, Math.max(1, Math.floor((limit - align) / (eB * T))));
  const rowBytes = Math.max(K, N) * 4;
  const mPer = Math.floor((limit - align) / rowBytes);
  if (mPer < 1) {
    throw new UnsupportedError(`${op}: one row of x ('${x.label}', ${K * 4} bytes) or y (${N * 4} bytes) exceeds the storage binding limit of ${limit} bytes`);
  }
  const mStep = Math.min(mPer, desc.mb * ctx.limits.maxComputeWorkgroupsPerDimension);
  const xUnit = desc.xScalar ? 1 : 4;
  const span = (t: Tensor, first: number, count: number): { res: BufferWindow; base: number } => {
    const e = DTYPE_BYTES[t.dtype];
    const start = first * e;
    const at = start - (start % align);
    return { res: { tensor: t, byteOffset: at, byteSize: Math.ceil((start + count * e - at) / 4) * 4 }, base: (start - at) / e };
  };
  for (let m0 = 0; m0 < M; m0 += mStep) {
    const mw = Math.min(mStep, M - m0);
    const xs = span(x, m0 * K, mw * K);
    const ys = span(y, m0 * N, mw * N);
    for (const win of wWindows) {
      const n0 = win.firstRow * T;
      const nw = Math.min(win.rows * T, N - n0);
      const wRes: BufferWindow = { tensor: pack.tensor, byteOffset: win.byteOffset, byteSize: win.rows * tileBytes };
      const bs = bias ? span(bias, n0, nw) : null;
      const params = linearParams(K, nw, mw, N, n0, xs.base / xUnit, ys.base, bs ? bs.base : 0, bias)
        .u32(pack.kc)
        .u32(win.rows)
        .bytes();
      const [gx, gy] = grid(ctx, Math.ceil(win.rows / desc.rows));
      ctx.dispatch(kernel, [xs.res, wRes, bs ? bs.res : wRes, ys.res], params, [gx, gy, Math.ceil(mw / desc.mb)]);
    }
  }
}

/**
 * The fields every linear kernel's Params starts with (kernels/linear_io.wgsl; gemv_q.wgsl adds its
 * own after them): K, nw, M, N, n0, x_base, y_base, b_base, bias_kind (0 none, 1 f32, 2 f16).
 */
export function linearParams(K: number, nw: number, M: number, N: number, n0: number, xBase: number, yBase: number, bBase: number, bias: Tensor | null | undefined): Params {
  return new Params().u32(K).u32(nw).u32(M).u32(N).u32(n0).u32(xBase).u32(yBase).u32(bBase).u32(bias ? (bias.dtype === "f32" ? 1 : 2) : 0);
}

/**
 * CPU reference (the spec): y[m, n] = Σ_k x[m, k]·w[n, k] + bias[n], naive loops in f64.
 * x [M, K], w [N, K] (f16 weights passed as their f32 values), bias [N] or null; returns y [M, N].
 */
export function linearReference(x: Float32Array, w: Float32Array, bias: Float32Array | null, M: number, N: number, K: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s + (bias ? bias[n]! : 0);
    }
  }
  return y;
}
