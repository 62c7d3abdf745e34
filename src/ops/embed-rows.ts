// embed_rows: resid[t] = table[rows[t]] (as f32) for the live rows t < T of a decode step, T read
// on the GPU from the step state (kernels/embed_rows.wgsl).
//
// API
//   const plan = await planEmbedRows(ctx, rows, table, step, out, { errors });
//   plan.encode(ctx);     // per token: one fixed-grid dispatch per binding window of the table
//     rows u32 [maxRows] (ids fed this step, written by advanceRows), table [V, D] f32|f16 (f16
//     through packed pairs without shader-f16; a table over one storage binding is bound in row
//     windows, one dispatch each), out f32 [maxRows, D] (rows t < T written), step u32 [8].
//     errors: u32 [1], bit 0 set when an id was ≥ V (that row is written as zeros), as
//     embedding(); the caller clears and reads it when convenient (a scratch word when absent).
//   embedRowsReference(...): embeddingReference over the first T ids.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import { DTYPE_BYTES, type Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { dispatchPlan, type DispatchPlan } from "./dispatch-plan.js";
import { embeddingReference } from "./embedding.js";
import { checkStepBinding, expectStepState } from "./step-checks.js";

const EMBED_ROWS_WG = 64;

function embedRowsVariant(table: StoreType): KernelVariant {
  return {
    file: "embed_rows",
    name: `embed_rows_${table}_wg${EMBED_ROWS_WG}`,
    defines: { F16: table === "f16", PACKED: table === "f16p", E: table === "f16p" ? "u32" : table, WG: EMBED_ROWS_WG },
    bindings: ["read", "read", "read", "read_write", "read_write", "uniform"],
    features: storeFeatures(table),
  };
}

const scratchErrors = new WeakMap<GpuContext, Tensor>();

export async function planEmbedRows(ctx: GpuContext, rows: Tensor, table: Tensor, step: Tensor, out: Tensor, opts: { errors?: Tensor } = {}): Promise<DispatchPlan> {
  const op = "embedRows";
  if (table.shape.length !== 2) throw new ShapeError(`${op}: table ('${table.label}') has shape [${table.shape.join(", ")}], expected [V, D]`);
  const [V, D] = table.shape as [number, number];
  expectDType(table, ["f32", "f16"], op, "table");
  table.refuseTiles(op); // the decode step embeds from a row-major table (loadDecoder keeps a tied embed row-major)
  expectDType(rows, ["u32"], op, "rows");
  if (rows.shape.length !== 1) throw new ShapeError(`${op}: rows ('${rows.label}') has shape [${rows.shape.join(", ")}], expected [maxRows]`);
  const maxRows = rows.shape[0]!;
  expectDType(out, ["f32"], op, "out");
  expectShape(out, [maxRows, D], op, "out");
  expectStepState(op, step);
  let errors = opts.errors;
  if (errors) {
    expectDType(errors, ["u32"], op, "errors");
    expectShape(errors, [1], op, "errors");
  } else {
    errors = scratchErrors.get(ctx);
    if (!errors || errors.isDisposed) scratchErrors.set(ctx, (errors = ctx.empty([1], "u32", "embed_rows.errors-scratch")));
  }
  checkStepBinding(ctx, op, out, "out");
  const dtype = table.dtype as "f32" | "f16";
  const variant = embedRowsVariant(storeType(ctx, dtype));
  const kernel = await ctx.kernels.get(variant);
  const rowBytes = D * DTYPE_BYTES[dtype];
  const windows = D > 0 ? ctx.bindingWindows(V, rowBytes, `${op} table '${table.label}'`) : [];
  const workgroups = grid(ctx, Math.ceil(D / EMBED_ROWS_WG));
  const dispatches = windows.map((w) => ({
    kernel,
    resources: [step, rows, { tensor: table, byteOffset: w.byteOffset, byteSize: w.rows * rowBytes }, out, errors!],
    params: new Params().u32(D).u32(V).u32(w.firstRow).u32(w.rows).u32(maxRows).bytes(),
    workgroups,
  }));
  return dispatchPlan(ctx, `${variant.name}${windows.length > 1 ? ` windows=${windows.length}` : ""}`, dispatches);
}

/** One-shot (tests, benches). */
export async function embedRows(ctx: GpuContext, rows: Tensor, table: Tensor, step: Tensor, out: Tensor, opts: { errors?: Tensor } = {}): Promise<void> {
  (await planEmbedRows(ctx, rows, table, step, out, opts)).encode(ctx);
}

/** CPU reference: out [T, D] = table[rows[t]] for t < T = min(stepRows, rows.length); ids ≥ V give zero rows and outOfRange. */
export function embedRowsReference(rows: ArrayLike<number>, stepRows: number, table: Float32Array, V: number, D: number): { out: Float32Array; outOfRange: boolean } {
  const T = Math.min(stepRows, rows.length);
  return embeddingReference(Array.from({ length: T }, (_, t) => rows[t]!), table, V, D);
}
