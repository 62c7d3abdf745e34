// Backward of the linear layer y[M, N] = x[M, K] · W[N, K]ᵀ (+ b[N]) (src/ops/linear.ts):
//   dX[M, K] = dY · W          kernels/linear_dx_backward.wgsl   (W f32 or f16, windowed along N)
//   dW[N, K] = dYᵀ · x         kernels/linear_dw_backward.wgsl   (f32; dW windowed along N)
//   db[N]    = Σ_m dY[m, :]    kernels/linear_db_backward.wgsl
// Every output has an `accumulate` option (out += grad) for gradient accumulation over
// micro-batches and for summing the dX contributions of several projections that read the same
// input (q/k/v, gate/up) into one buffer. dY, x and dX are bound whole (T rows of activations);
// W and dW may exceed the storage binding limit and are processed in windows of whole rows.

import { ShapeError, UnsupportedError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import { DTYPE_BYTES, type Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { expectNoAlias, requireOneBinding } from "./common.js";

/**
 * Tile shapes: TM (dX) / TN (dW) rows × 8 columns per invocation, the forward matmul's 32
 * outputs per invocation (t4x8, measured best there; not re-measured for the backward yet).
 */
const DX_TM = 4;
const DW_TN = 4;
const TILE_WG = 64;
const DB_WG = 64;

export interface LinearBackwardVariant {
  kind: "dx" | "dw" | "db";
  /** dX: the weight's dtype; dW, db: "f32". */
  wDtype: "f32" | "f16";
  /** 4-wide loads along K (K % 4 == 0). */
  vec4: boolean;
}

/** Stable name and WGSL defines, e.g. "linear_dx_backward_f16_vec4_t4x8_wg64". */
export function linearBackwardKernel(v: LinearBackwardVariant): KernelVariant {
  if (v.kind !== "dx" && v.wDtype !== "f32") throw new UnsupportedError(`linear backward: ${v.kind} is computed in f32 only (got ${v.wDtype})`);
  if (v.kind === "db") {
    return { file: "linear_db_backward", name: `linear_db_backward_f32_wg${DB_WG}`, defines: { WG: DB_WG }, bindings: ["read", "read_write", "uniform"] };
  }
  const vec = v.vec4 ? "vec4" : "s1";
  if (v.kind === "dx") {
    const f16 = v.wDtype === "f16";
    const WT = f16 ? (v.vec4 ? "vec2<u32>" : "u32") : v.vec4 ? "vec4<f32>" : "f32";
    return {
      file: "linear_dx_backward",
      name: `linear_dx_backward_${v.wDtype}_${vec}_t${DX_TM}x8_wg${TILE_WG}`,
      defines: { WF16: f16, VEC4: v.vec4, WT, TM: DX_TM, ACC: 2 * DX_TM, WG: TILE_WG },
      bindings: ["read", "read", "read_write", "uniform"],
    };
  }
  return {
    file: "linear_dw_backward",
    name: `linear_dw_backward_f32_${vec}_t${DW_TN}x8_wg${TILE_WG}`,
    defines: { VEC4: v.vec4, XT: v.vec4 ? "vec4<f32>" : "f32", TN: DW_TN, ACC: 2 * DW_TN, WG: TILE_WG },
    bindings: ["read", "read", "read_write", "uniform"],
  };
}

function dims2(op: string, t: Tensor, name: string): [number, number] {
  if (t.shape.length < 1) throw new ShapeError(`${op}: ${name} ('${t.label}') must have at least one dimension`);
  const last = t.shape[t.shape.length - 1]!;
  return [last === 0 ? 0 : t.numel / last, last];
}

export interface AccumulateOption {
  /** Add the gradient to the output's contents instead of overwriting them. */
  accumulate?: boolean;
}

/** dX = dY · W. dy [..., N] f32, w [N, K] f32|f16; dx [..., K] f32 (allocated when absent). Returns dx. */
export async function linearBackwardInput(ctx: GpuContext, dy: Tensor, w: Tensor, opts: AccumulateOption & { dx?: Tensor } = {}): Promise<Tensor> {
  const op = "linearBackwardInput";
  expectDType(dy, ["f32"], op, "dy");
  expectDType(w, ["f32", "f16"], op, "w");
  w.refuseTiles(op);
  if (w.shape.length !== 2) throw new ShapeError(`${op}: w ('${w.label}') has shape [${w.shape.join(", ")}], expected [N, K]`);
  const [N, K] = w.shape as [number, number];
  const [M, dN] = dims2(op, dy, "dy");
  if (dN !== N) throw new ShapeError(`${op}: dy ('${dy.label}') has shape [${dy.shape.join(", ")}], expected [..., ${N}] (N of w '${w.label}')`);
  const shape = [...dy.shape.slice(0, -1), K];
  if (opts.accumulate && !opts.dx) throw new ShapeError(`${op}: accumulate needs an existing dx tensor`);
  const dx = opts.dx ?? ctx.empty(shape, "f32", "linear.dx");
  expectDType(dx, ["f32"], op, "dx");
  expectShape(dx, shape, op, "dx");
  expectNoAlias(op, dx, [dy, w]);
  requireOneBinding(ctx, dy, op, "dy");
  requireOneBinding(ctx, dx, op, "dx");
  const vec4 = K % 4 === 0;
  const kernel = await ctx.kernels.get(linearBackwardKernel({ kind: "dx", wDtype: w.dtype as "f32" | "f16", vec4 }));
  if (M === 0 || K === 0) return dx;
  const eW = DTYPE_BYTES[w.dtype];
  const wins = ctx.bindingWindows(N, K * eW, `${op}: w '${w.label}' [${N}, ${K}] ${w.dtype}`);
  const gx = Math.ceil(K / 8);
  const gy = Math.ceil(M / DX_TM);
  if (gx > ctx.limits.maxComputeWorkgroupsPerDimension * TILE_WG || gy > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new UnsupportedError(`${op}: M=${M}, K=${K} exceed one dispatch grid`);
  }
  wins.forEach((win, i) => {
    const params = new Params().u32(M).u32(N).u32(K).u32(win.rows).u32(win.firstRow).u32(i > 0 || opts.accumulate ? 1 : 0).bytes();
    ctx.dispatch(kernel, [dy, { tensor: w, byteOffset: win.byteOffset, byteSize: win.rows * K * eW }, dx], params, [Math.ceil(gx / TILE_WG), gy, 1]);
  });
  return dx;
}

/** dW (+)= dYᵀ · x. dy [..., N] f32, x [..., K] f32 (same leading dims); dw [N, K] f32 (allocated when absent). Returns dw. */
export async function linearBackwardWeight(ctx: GpuContext, dy: Tensor, x: Tensor, opts: AccumulateOption & { dw?: Tensor } = {}): Promise<Tensor> {
  const op = "linearBackwardWeight";
  expectDType(dy, ["f32"], op, "dy");
  expectDType(x, ["f32"], op, "x");
  const [M, N] = dims2(op, dy, "dy");
  const [Mx, K] = dims2(op, x, "x");
  if (Mx !== M || x.shape.length !== dy.shape.length || x.shape.slice(0, -1).some((d, i) => d !== dy.shape[i])) {
    throw new ShapeError(`${op}: x ('${x.label}') [${x.shape.join(", ")}] and dy ('${dy.label}') [${dy.shape.join(", ")}] must share their leading dimensions`);
  }
  if (opts.accumulate && !opts.dw) throw new ShapeError(`${op}: accumulate needs an existing dw tensor`);
  const dw = opts.dw ?? ctx.empty([N, K], "f32", "linear.dw");
  expectDType(dw, ["f32"], op, "dw");
  expectShape(dw, [N, K], op, "dw");
  expectNoAlias(op, dw, [dy, x]);
  requireOneBinding(ctx, dy, op, "dy");
  requireOneBinding(ctx, x, op, "x");
  const vec4 = K % 4 === 0;
  const kernel = await ctx.kernels.get(linearBackwardKernel({ kind: "dw", wDtype: "f32", vec4 }));
  if (N === 0 || K === 0) return dw;
  if (M === 0) {
    if (!opts.accumulate) ctx.clear(dw);
    return dw;
  }
  const wins = ctx.bindingWindows(N, K * 4, `${op}: dw '${dw.label}' [${N}, ${K}]`);
  const gx = Math.ceil(Math.ceil(K / 8) / TILE_WG);
  for (const win of wins) {
    const gy = Math.ceil(win.rows / DW_TN);
    if (gy > ctx.limits.maxComputeWorkgroupsPerDimension) throw new UnsupportedError(`${op}: ${win.rows} rows of dW exceed one dispatch grid`);
    const params = new Params().u32(M).u32(N).u32(K).u32(win.rows).u32(win.firstRow).u32(opts.accumulate ? 1 : 0).bytes();
    ctx.dispatch(kernel, [dy, x, { tensor: dw, byteOffset: win.byteOffset, byteSize: win.rows * K * 4 }], params, [gx, gy, 1]);
  }
  return dw;
}

/** db (+)= Σ_rows dY. dy [..., N] f32; db [N] f32 (allocated when absent). Returns db. */
export async function linearBackwardBias(ctx: GpuContext, dy: Tensor, opts: AccumulateOption & { db?: Tensor } = {}): Promise<Tensor> {
  const op = "linearBackwardBias";
  expectDType(dy, ["f32"], op, "dy");
  const [M, N] = dims2(op, dy, "dy");
  if (opts.accumulate && !opts.db) throw new ShapeError(`${op}: accumulate needs an existing db tensor`);
  const db = opts.db ?? ctx.empty([N], "f32", "linear.db");
  expectDType(db, ["f32"], op, "db");
  expectShape(db, [N], op, "db");
  expectNoAlias(op, db, [dy]);
  requireOneBinding(ctx, dy, op, "dy");
  const kernel = await ctx.kernels.get(linearBackwardKernel({ kind: "db", wDtype: "f32", vec4: false }));
  if (N === 0) return db;
  ctx.dispatch(kernel, [dy, db], new Params().u32(M).u32(N).u32(opts.accumulate ? 1 : 0).bytes(), grid(ctx, Math.ceil(N / DB_WG)));
  return db;
}

/**
 * CPU reference (float64, naive loops): dy [M, N], x [M, K], w [N, K] (f16 weights as their
 * values). Returns dx [M, K] = dy·w, dw [N, K] = dyᵀ·x, db [N] = Σ_m dy[m].
 */
export function linearBackwardReference(dy: ArrayLike<number>, x: ArrayLike<number>, w: ArrayLike<number>, M: number, N: number, K: number): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(M * K);
  const dw = new Float64Array(N * K);
  const db = new Float64Array(N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const g = dy[m * N + n]!;
      db[n]! += g;
      for (let k = 0; k < K; k++) {
        dx[m * K + k]! += g * w[n * K + k]!;
        dw[n * K + k]! += g * x[m * K + k]!;
      }
    }
  }
  return { dx, dw, db };
}

/** Forward in float64 (for finite differences): y [M, N] = x·wᵀ + b. */
export function linearForward64(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  }
  return y;
}
