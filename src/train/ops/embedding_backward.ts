// Backward of the embedding gather out[t] = table[ids[t]] (src/ops/embedding.ts):
// dTable[id] += Σ_{t: ids[t] = id} dOut[t], for repeated ids, without float atomics
// (kernels/embedding_backward.wgsl): a LINK pass chains the occurrences of each id (O(T²) u32
// compares), then a SCATTER pass lets the first occurrence of each id sum its chain and write
// the table row: one writer per element, deterministic (token order), only rows that appear
// are touched. dTable (f32, e.g. 32000 × 4096 = 512 MiB) is bound in row windows.

import { ShapeError } from "../../errors.js";
import type { GpuContext } from "../../gpu/context.js";
import type { KernelVariant } from "../../gpu/kernels.js";
import { Tensor } from "../../gpu/tensor.js";
import { expectDType, expectShape, grid, Params } from "../../ops/common.js";
import { expectNoAlias, requireOneBinding } from "./common.js";
import { idsTensor } from "../../ops/embedding.js";

const LINK_WG = 64;
const SCATTER_WG = 64;

export function embeddingBackwardKernel(stage: "link" | "scatter"): KernelVariant {
  const link = stage === "link";
  return {
    file: "embedding_backward",
    name: `embedding_backward_${stage}_wg${link ? LINK_WG : SCATTER_WG}`,
    defines: { LINK: link, WG: link ? LINK_WG : SCATTER_WG },
    bindings: link ? ["read", "read_write", "read_write", "uniform"] : ["read", "read", "read", "read_write", "uniform"],
  };
}

export interface EmbeddingBackwardOptions {
  /** Add to dTable's contents (default true: gradient accumulation). false: dTable is cleared first. */
  accumulate?: boolean;
  /** u32 [1]: bit 0 is set when a GPU-resident id was ≥ V (its row is skipped). */
  errors?: Tensor;
}

/**
 * dTable [V, D] f32 (+)= scatter of dOut [T, D] f32 by ids (u32 [T] GPU tensor, or host ids that
 * are validated). Returns dTable.
 */
export async function embeddingBackward(ctx: GpuContext, ids: Tensor | ArrayLike<number>, dOut: Tensor, dTable: Tensor, opts: EmbeddingBackwardOptions = {}): Promise<Tensor> {
  const op = "embeddingBackward";
  if (dTable.shape.length !== 2) throw new ShapeError(`${op}: dTable ('${dTable.label}') has shape [${dTable.shape.join(", ")}], expected [V, D]`);
  const [V, D] = dTable.shape as [number, number];
  expectDType(dTable, ["f32"], op, "dTable");
  const { ids: idsT, uploaded } = idsTensor(ctx, ids, V, dTable.label, op);
  const T = idsT.shape[0]!;
  expectDType(dOut, ["f32"], op, "dOut");
  expectShape(dOut, [T, D], op, "dOut");
  expectNoAlias(op, dTable, [dOut]);
  requireOneBinding(ctx, dOut, op, "dOut");
  if (opts.errors) {
    expectDType(opts.errors, ["u32"], op, "errors");
    expectShape(opts.errors, [1], op, "errors");
  }
  const kLink = await ctx.kernels.get(embeddingBackwardKernel("link"));
  const kScatter = await ctx.kernels.get(embeddingBackwardKernel("scatter"));
  const accumulate = opts.accumulate ?? true;
  if (!accumulate) ctx.clear(dTable);
  if (T > 0 && D > 0) {
    const link = ctx.empty([T, 2], "u32", "embedding_backward.link");
    const err = opts.errors ?? ctx.empty([1], "u32", "embedding_backward.errors-scratch");
    try {
      ctx.dispatch(kLink, [idsT, link, err], new Params().u32(T).u32(D).u32(V).u32(0).u32(0).u32(0).bytes(), grid(ctx, Math.ceil(T / LINK_WG)));
      const units = T * Math.ceil(D / 4);
      for (const w of ctx.bindingWindows(V, D * 4, `${op} dTable '${dTable.label}'`)) {
        const p = new Params().u32(T).u32(D).u32(V).u32(w.firstRow).u32(w.rows).u32(1).bytes();
        ctx.dispatch(kScatter, [idsT, link, dOut, { tensor: dTable, byteOffset: w.byteOffset, byteSize: w.rows * D * 4 }], p, grid(ctx, Math.ceil(units / SCATTER_WG)));
      }
    } finally {
      link.dispose();
      if (!opts.errors) err.dispose();
    }
  }
  if (uploaded) idsT.dispose();
  return dTable;
}

/** CPU reference (float64): dTable [V, D] + Σ of dOut rows by id; ids ≥ V skipped. Returns a new array. */
export function embeddingBackwardReference(ids: ArrayLike<number>, dOut: ArrayLike<number>, dTable: ArrayLike<number>, V: number, D: number): Float64Array {
  const out = Float64Array.from(dTable as ArrayLike<number>);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id >= V) continue;
    for (let i = 0; i < D; i++) out[id * D + i]! += dOut[t * D + i]!;
  }
  return out;
}
