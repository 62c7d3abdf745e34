// RMSNorm (Llama/Qwen/Mistral): y = x / sqrt(mean(x²) + eps) · weight, statistics in f32, with an
// optional fused residual add: h = x + residual is written back into `residual` (the residual
// stream, in place) and y = rmsnorm(h) · weight goes to `out`.
// Activations [T, D] f32 larger than one storage binding are processed in windows of whole rows.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError, UsageError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";

/**
 * Invocations per workgroup (one workgroup per row). Hardware GPUs: 256 (D = 4096 in 4 vec4 steps
 * per invocation; unmeasured). Software GPUs: 64, measured 2026-11-24 on lavapipe (2 cores),
 * D = 2048 f16 weight, T = 64: 0.85 ms (wg64) vs 2.45 ms (wg256); T = 1: equal (0.07 ms).
 * bench/norm.bench.ts runs both arms.
 */
export const RMSNORM_WG = { hardware: 256, software: 64 } as const;

export interface RmsnormVariant {
  /** Weight store type: "f16p" reads f16 weights as packed pairs (no shader-f16). */
  weight: StoreType;
  /** Fused residual add (h = x + residual written back into residual). */
  residual: boolean;
  /** vec4 loads/stores; needs D % 4 == 0. */
  vec4: boolean;
  wg: number;
  /** Decode step: only the last live row (row step[STEP_ROWS] − 1), into out row 0. */
  lastRow?: boolean;
}

export function rmsnormKernel(v: RmsnormVariant): KernelVariant {
  if (v.wg & (v.wg - 1)) throw new UsageError(`rmsnorm: workgroup size ${v.wg} must be a power of two (tree reduction)`);
  const V = v.vec4 ? "vec4<f32>" : "f32";
  const W = v.weight === "f16p" ? (v.vec4 ? "vec2<u32>" : "u32") : v.vec4 ? `vec4<${v.weight}>` : v.weight;
  return {
    file: "rmsnorm",
    name: `rmsnorm_${v.weight}${v.residual ? "_residual" : ""}${v.lastRow ? "_lastrow" : ""}${v.vec4 ? "_vec4" : ""}_wg${v.wg}`,
    defines: { F16: v.weight === "f16", PACKED: v.weight === "f16p", RESIDUAL: v.residual, LAST_ROW: !!v.lastRow, VEC4: v.vec4, V, W, WG: v.wg },
    bindings: v.lastRow ? ["read", "read", "read", "read_write", "uniform"] : v.residual ? ["read", "read", "read_write", "read_write", "uniform"] : ["read", "read", "read_write", "uniform"],
    features: storeFeatures(v.weight),
  };
}

export interface RmsnormOptions {
  /** Residual stream [T, D] f32: receives x + residual (in place) before the norm. */
  residual?: Tensor;
  /** Output [T, D] f32 (allocated if absent). Must not be x or residual. */
  out?: Tensor;
  /** Forces vec4 on (throws if D % 4 != 0) or off; default: vec4 whenever D % 4 == 0. */
  vec4?: boolean;
  /** Workgroup size (power of two ≤ the device limit); default RMSNORM_WG for the device kind. */
  wg?: number;
}

/** The variant rmsnorm() would run for these arguments (the op's resolver, for logs and benchmarks). */
export function resolveRmsnorm(D: number, weight: StoreType, opts: Pick<RmsnormOptions, "residual" | "vec4" | "wg"> = {}, software = false): RmsnormVariant {
  if (opts.vec4 === true && D % 4 !== 0) throw new UsageError(`rmsnorm: vec4 requested but D = ${D} is not a multiple of 4`);
  return { weight, residual: opts.residual !== undefined, vec4: opts.vec4 ?? D % 4 === 0, wg: opts.wg ?? RMSNORM_WG[software ? "software" : "hardware"] };
}

/**
 * y = x / sqrt(mean(x²) + eps) · weight per row of x [T, D] f32; weight [D] f32 or f16.
 * With opts.residual: residual ← x + residual, then y = rmsnorm(residual) · weight.
 * Returns the output tensor [T, D] f32.
 */
export async function rmsnorm(ctx: GpuContext, x: Tensor, weight: Tensor, eps: number, opts: RmsnormOptions = {}): Promise<Tensor> {
  const op = "rmsnorm";
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [T, D]`);
  const [T, D] = x.shape as [number, number];
  expectDType(x, ["f32"], op, "x");
  expectDType(weight, ["f32", "f16"], op, "weight");
  expectShape(weight, [D], op, "weight");
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new UsageError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  const { residual, out } = opts;
  if (residual) {
    expectDType(residual, ["f32"], op, "residual");
    expectShape(residual, [T, D], op, "residual");
    if (residual.buffer === x.buffer) throw new ShapeError(`${op}: residual ('${residual.label}') and x ('${x.label}') must be different buffers`);
  }
  if (out) {
    expectDType(out, ["f32"], op, "out");
    expectShape(out, [T, D], op, "out");
    if (out.buffer === x.buffer || out.buffer === residual?.buffer) throw new ShapeError(`${op}: out ('${out.label}') must not alias x or residual`);
  }
  const wdt = weight.dtype as "f32" | "f16";
  const v = resolveRmsnorm(D, storeType(ctx, wdt), opts, ctx.adapter.isSoftware);
  const kernel = await ctx.kernels.get(rmsnormKernel(v));
  const result = out ?? ctx.empty([T, D], "f32", "rmsnorm.out");
  if (T === 0 || D === 0) return result;
  const params = (rows: number) => new Params().u32(rows).u32(v.vec4 ? D / 4 : D).f32(D).f32(eps).bytes();
  for (const w of ctx.bindingWindows(T, D * 4, `${op} '${x.label}'`)) {
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize: w.rows * D * 4 });
    const res = residual ? [win(x), weight, win(residual), win(result)] : [win(x), weight, win(result)];
    ctx.dispatch(kernel, res, params(w.rows), grid(ctx, w.rows));
  }
  return result;
}

/**
 * The decode step's hidden state: out[0] = rmsnorm(x[T − 1]) · weight where T = step[STEP_ROWS]
 * is read on the GPU (x [maxRows, D] f32 holds the step's live rows; out [1, D] f32). One
 * dispatch; the reference is rmsnormReference on that row.
 */
export async function rmsnormLastRow(ctx: GpuContext, x: Tensor, weight: Tensor, eps: number, step: Tensor, out: Tensor): Promise<void> {
  const op = "rmsnormLastRow";
  if (x.shape.length !== 2) throw new ShapeError(`${op}: x ('${x.label}') has shape [${x.shape.join(", ")}], expected [rows, D]`);
  const D = x.shape[1]!;
  expectDType(x, ["f32"], op, "x");
  expectDType(weight, ["f32", "f16"], op, "weight");
  expectShape(weight, [D], op, "weight");
  expectDType(step, ["u32"], op, "step");
  expectDType(out, ["f32"], op, "out");
  expectShape(out, [1, D], op, "out");
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new UsageError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  const v = { ...resolveRmsnorm(D, storeType(ctx, weight.dtype as "f32" | "f16"), {}, ctx.adapter.isSoftware), lastRow: true };
  const kernel = await ctx.kernels.get(rmsnormKernel(v));
  ctx.dispatch(kernel, [x, weight, step, out], new Params().u32(1).u32(v.vec4 ? D / 4 : D).f32(D).f32(eps).bytes(), [1]);
}

/**
 * CPU reference (float64 arithmetic on f32 inputs). x [T, D], weight [D] (f16 weights given as
 * their f32 values), residual [T, D] or null. Returns { out [T, D], residual: x + residual
 * rounded to f32 (what the kernel writes back), or null }.
 */
export function rmsnormReference(
  x: Float32Array,
  weight: Float32Array,
  T: number,
  D: number,
  eps: number,
  residual: Float32Array | null = null,
): { out: Float32Array; residual: Float32Array | null } {
  const out = new Float32Array(T * D);
  const hs = residual ? new Float32Array(T * D) : null;
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) {
      const h = residual ? Math.fround(x[t * D + i]! + residual[t * D + i]!) : x[t * D + i]!;
      if (hs) hs[t * D + i] = h;
      ss += h * h;
    }
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) {
      const h = hs ? hs[t * D + i]! : x[t * D + i]!;
      out[t * D + i] = h * inv * weight[i]!;
    }
  }
  return { out, residual: hs };
}
