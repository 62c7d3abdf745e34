// Linear layers on block-quantized weights (GGUF Q8_0 / Q4_0, src/quant/formats.ts):
// y[M, N] = x[M, K] · deq(W)[N, K]ᵀ (+ bias[N]), reading W's packed bytes directly
// (kernels/gemv_q.wgsl; no dequantized copy of W exists anywhere).
//
// One kernel file, two tilings chosen by resolveLinearQ (linear() calls it for q8_0/q4_0 weights):
//   gemv_q   (M ≤ GEMV_MAX_M: decode): R = 4 rows of W per invocation, MB = 1 or 2 activation rows.
//   matmul_q (M > GEMV_MAX_M: prefill, batches): R = 8, MB = 4: each W word serves 4 rows of x.
// Windows: W along N (its quants and its scales are two bindings of the same buffer, each bound
// at the aligned offset at or below the window's first row), x and y along M, as in linear.ts.

import { ShapeError, UnsupportedError } from "../errors.js";
import type { BufferWindow, GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import { DTYPE_BYTES, isQuantDType, type QuantDType, type Tensor } from "../gpu/tensor.js";
import { dequantizeMatrix, quantBytes, type QuantizedMatrix } from "../quant/formats.js";
import { grid } from "./common.js";
import { bcastXL, GEMV_MAX_M, gemvBcastPreferred, gemvBcastUsable, linearParams, linearReference, type LinearVariantName } from "./linear.js";

/** A quantized linear kernel: everything that changes its WGSL. */
export interface LinearQDesc {
  algo: "gemv_q" | "matmul_q";
  format: QuantDType;
  /** Rows of W per invocation. */
  rows: number;
  /** Activation rows per invocation (M-block). */
  mb: number;
  wg: number;
  /** Experiment: scale once per block (kernels/gemv_q.wgsl BLOCKSUM); an A/B arm of bench/linear-q. */
  blockSum?: boolean;
  /** W in the tiles layout with this many rows per tile (= wg; `rows` = tiles per workgroup); 0/absent: split blocks. */
  tilesT?: number;
  /**
   * Tiles of 8: x through subgroup broadcasts (kernels/x_bcast.wgsl) with this many x vec4s loaded
   * per lane per block (1: subgroups of ≥ 8 lanes; 2: of ≥ 4). Needs the 'subgroups' feature.
   */
  xBcast?: 1 | 2;
}

// Tile sizes: gemv_q copies gemv's R = 4 / WG = 64 (kernels/gemv.wgsl's measurements); matmul_q
// takes matmul's 4 activation rows per invocation with 8 rows of W. Not yet measured on their own
// (bench/ has no quantized arm yet).
const GEMV_Q_R = 4;
const GEMV_Q_WG = 64;
const MATMUL_Q_R = 8;
const MATMUL_Q_MB = 4;
const MATMUL_Q_WG = 64;
// Tiles layout (wg = T): tiles per workgroup. gemv_q takes the decode GEMV's R = 8 (gemv_step's
// STEP_TILES_R on software); matmul_q R = 4 with MB = 4 (16 accumulators, as the rows design's
// 8 × 4 = 32 would spill further). Not measured on their own: prefill only.
const GEMV_QT_R = 8;
const MATMUL_QT_R = 4;

/** Stable name of a quantized kernel, e.g. "gemv_q4_0_r4_mb1_wg64". */
export function linearQLabel(d: LinearQDesc): string {
  return `${d.algo.replace("_q", "")}_${d.format}${d.tilesT ? "_tiles" : ""}${d.blockSum ? "_bs" : ""}${d.xBcast ? `_xb${d.xBcast}` : ""}_r${d.rows}_mb${d.mb}_wg${d.wg}`;
}

function linearQKernelVariant(d: LinearQDesc): KernelVariant {
  if (d.tilesT && d.tilesT !== d.wg) throw new UnsupportedError(`linear: ${linearQLabel(d)}: W in tiles of ${d.tilesT} rows needs a workgroup of ${d.tilesT} invocations`);
  if (d.xBcast && d.tilesT !== 8) throw new UnsupportedError(`linear: ${linearQLabel(d)}: the x broadcast reads W in tiles of 8 rows`);
  return {
    file: "gemv_q",
    name: linearQLabel(d),
    defines: {
      Q8: d.format === "q8_0",
      BLOCKSUM: d.blockSum === true,
      VEC8: false, // gemv_chunk's fmac (unused here; hsum is)
      QT: d.format === "q8_0" || d.tilesT ? "vec4<u32>" : "vec2<u32>",
      TILES: (d.tilesT ?? 0) > 0,
      XBCAST: d.xBcast !== undefined,
      XL2: d.xBcast === 2,
      R: d.rows,
      MB: d.mb,
      WG: d.wg,
      ACC: d.rows * d.mb,
      XS: d.mb * 4,
    },
    bindings: ["read", "read", "read", "read", "read_write", "uniform"],
    ...(d.xBcast ? { features: ["subgroups"] as GPUFeatureName[] } : {}),
  };
}

/**
 * The x broadcast linear() asks of resolveLinearQ for W in tiles of `tilesT` rows on this device: 1
 * or 2 x vec4s per lane where gemv_bcast is preferred (software, ≥ 8-lane subgroups), else 0.
 * Lavapipe, q4_0 tiles of 8, 134M gate (1536×576) and down (576×1536), CPU time per call, 6
 * alternated rounds at load ~1 (2026-12-03, bench/results/2026-12-03-linear-q-xbcast.md): M = 2
 * (gemv_q) ×1.54 / ×1.27 faster with the broadcast, M = 128 (matmul_q, prefill) ×3.03 / ×3.06.
 */
export function linearQXBcast(ctx: GpuContext, tilesT: number): 0 | 1 | 2 {
  return tilesT === 8 && gemvBcastUsable(ctx) && gemvBcastPreferred(ctx) ? bcastXL(ctx) : 0;
}

/**
 * The kernel for y = x·deq(W)ᵀ with M activation rows: gemv_q up to GEMV_MAX_M, matmul_q above.
 * `variant` "gemv" / "matmul" force one tiling; the f16/f32-only variants are refused.
 */
export function resolveLinearQ(M: number, format: QuantDType, variant: LinearVariantName | "auto" = "auto", tilesT = 0, xBcast: 0 | 1 | 2 = 0): { label: string; desc: LinearQDesc } {
  if (xBcast && tilesT !== 8) throw new UnsupportedError(`linear: the x broadcast reads ${format} W in tiles of 8 rows, this W is ${tilesT ? `in tiles of ${tilesT}` : "in split blocks"}`);
  const xb = xBcast ? { xBcast } : {};
  if (variant !== "auto" && variant !== "gemv" && variant !== "matmul" && !(tilesT > 0 && variant === "gemv_tiled")) {
    throw new UnsupportedError(`linear: variant '${variant}' has no ${format} kernel (quantized weights run 'gemv' or 'matmul', i.e. gemv_q / matmul_q${tilesT > 0 ? ", in the tiles layout 'gemv_tiled' = gemv" : ""})`);
  }
  const algo = variant === "gemv" || variant === "gemv_tiled" || (variant === "auto" && M <= GEMV_MAX_M) ? "gemv_q" : "matmul_q";
  if (tilesT > 0) {
    const desc: LinearQDesc = algo === "gemv_q" ? { algo, format, rows: GEMV_QT_R, mb: M <= 1 ? 1 : 2, wg: tilesT, tilesT, ...xb } : { algo, format, rows: MATMUL_QT_R, mb: MATMUL_Q_MB, wg: tilesT, tilesT, ...xb };
    return { label: linearQLabel(desc), desc };
  }
  const desc: LinearQDesc =
    algo === "gemv_q" ? { algo, format, rows: GEMV_Q_R, mb: M <= 1 ? 1 : 2, wg: GEMV_Q_WG } : { algo, format, rows: MATMUL_Q_R, mb: MATMUL_Q_MB, wg: MATMUL_Q_WG };
  return { label: linearQLabel(desc), desc };
}

/**
 * Encodes y = x·deq(W)ᵀ (+ bias) with a given kernel. Arguments are assumed checked by linear():
 * x [M, K] f32, w [N, K] q8_0|q4_0, bias [N] f32|f16 or null, y [M, N] f32.
 */
export async function launchLinearQ(ctx: GpuContext, desc: LinearQDesc, x: Tensor, w: Tensor, bias: Tensor | null, y: Tensor, M: number, N: number, K: number): Promise<void> {
  const op = "linear";
  if (!isQuantDType(w.dtype) || w.dtype !== desc.format) throw new ShapeError(`${op}: kernel ${linearQLabel(desc)} is for ${desc.format} weights, w ('${w.label}') is ${w.dtype}`);
  if (K % 32 !== 0) throw new UnsupportedError(`${op}: w ('${w.label}') [${N}, ${K}] ${w.dtype}: K must be a multiple of 32`);
  if ((desc.tilesT ?? 0) !== (w.layout?.T ?? 0)) {
    throw new UnsupportedError(`${op}: kernel ${linearQLabel(desc)} reads ${desc.tilesT ? `W in tiles of ${desc.tilesT} rows` : "split-blocks W"}; w ('${w.label}') is ${w.layout ? `in tiles of ${w.layout.T} rows` : "in split blocks (row-major)"}`);
  }
  const kernel = await ctx.kernels.get(linearQKernelVariant(desc));
  if (M === 0) return;
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  const nb = K / 32;
  const { qsBytes } = quantBytes(N, K, desc.format);
  const rowQ = qsBytes / N; // quant bytes per row: K (q8_0) or K/2 (q4_0)
  const qUnit = desc.format === "q8_0" ? 16 : 8; // bytes of one half-block (q binding element)
  const eB = bias ? DTYPE_BYTES[bias.dtype] : 1;
  // Rows per W window: its quants, scales and bias slice (each plus alignment slack) fit a binding.
  const perWin = Math.floor((limit - align - 4) / Math.max(rowQ, nb * 2, eB));
  if (perWin < 1) throw new UnsupportedError(`${op}: one row of w ('${w.label}', ${rowQ} bytes of quants) exceeds the storage binding limit of ${limit} bytes`);
  const rowBytes = Math.max(K, N) * 4;
  const mPer = Math.floor((limit - align) / rowBytes);
  if (mPer < 1) throw new UnsupportedError(`${op}: one row of x ('${x.label}', ${K * 4} bytes) or y (${N * 4} bytes) exceeds the storage binding limit of ${limit} bytes`);
  const mStep = Math.min(mPer, desc.mb * ctx.limits.maxComputeWorkgroupsPerDimension);
  // A byte range [start, start + size) of t bound at the aligned offset at or below start.
  const bind = (t: Tensor, start: number, size: number): { res: BufferWindow; skew: number } => {
    const at = start - (start % align);
    return { res: { tensor: t, byteOffset: at, byteSize: Math.ceil((start + size - at) / 4) * 4 }, skew: start - at };
  };
  const lay = w.layout;
  // Tiles layout: windows of whole tiles (each holds its scales), at aligned offsets.
  const tileWins = lay ? ctx.bindingWindows(lay.tiles, lay.kc * lay.T * 16, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype} in tiles of ${lay.T}`, Math.max(1, Math.floor((limit - align - 4) / (eB * lay.T)))) : [];
  for (let m0 = 0; m0 < M; m0 += mStep) {
    const mw = Math.min(mStep, M - m0);
    const xs = bind(x, m0 * K * 4, mw * K * 4);
    const ys = bind(y, m0 * N * 4, mw * N * 4);
    if (lay) {
      const tileBytes = lay.kc * lay.T * 16;
      for (const win of tileWins) {
        const n0 = win.firstRow * lay.T;
        const nw = Math.min(win.rows * lay.T, N - n0);
        const wRes: BufferWindow = { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * tileBytes };
        const bs = bias ? bind(bias, n0 * eB, nw * eB) : null;
        const params = linearParams(K, nw, mw, N, n0, xs.skew / 16, ys.skew / 4, bs ? bs.skew / eB : 0, bias).u32(0).u32(0).bytes();
        const [gx, gy] = grid(ctx, Math.ceil(win.rows / desc.rows));
        ctx.dispatch(kernel, [xs.res, wRes, wRes, bs ? bs.res : wRes, ys.res], params, [gx, gy, Math.ceil(mw / desc.mb)]);
      }
      continue;
    }
    for (let n0 = 0; n0 < N; n0 += perWin) {
      const nw = Math.min(perWin, N - n0);
      const qs = bind(w, n0 * rowQ, nw * rowQ);
      const ss = bind(w, qsBytes + n0 * nb * 2, nw * nb * 2);
      const bs = bias ? bind(bias, n0 * eB, nw * eB) : null;
      const params = linearParams(K, nw, mw, N, n0, xs.skew / 16, ys.skew / 4, bs ? bs.skew / eB : 0, bias)
        .u32(qs.skew / qUnit)
        .u32(ss.skew / 2)
        .bytes();
      const [gx, gy] = grid(ctx, Math.ceil(nw / (desc.rows * desc.wg)));
      ctx.dispatch(kernel, [xs.res, qs.res, ss.res, bs ? bs.res : ss.res, ys.res], params, [gx, gy, Math.ceil(mw / desc.mb)]);
    }
  }
}

/**
 * CPU reference (the spec of gemv_q.wgsl): y = x · deq(W)ᵀ + bias in f64 over the exactly
 * dequantized weights. x [M, K], bias [N] (f16 given as its f32 values) or null; returns y [M, N].
 */
export function linearQReference(x: Float32Array, w: QuantizedMatrix, bias: Float32Array | null, M: number): Float32Array {
  return linearReference(x, dequantizeMatrix(w), bias, M, w.N, w.K);
}
