// Token embedding gather: out[t] = table[ids[t]] as f32, ids read on the GPU. The table may be
// larger than one storage binding (128256 × 4096 f16 = 1 GB): it is bound in row windows, one
// dispatch per window, each copying the tokens whose id falls in it.
//
// Out-of-range ids (≥ V): ids given from the host are validated (UsageError). Ids already on the
// GPU cannot be checked on the host; for them the kernel writes a zero row and sets bit 0 of
// opts.errors[0] (a u32 [1] tensor the caller clears and reads with its next readback), never
// reading outside the table. The rule: GPU-resident ids are checked before they reach the GPU, or
// the caller passes `errors` and reads it. The library's own GPU ids are checked before, so its
// calls pass no `errors` (the flag lands in a scratch word): the decode loop feeds sampled ids
// (< V by construction; the NaN marker NONFINITE_ID is caught from the session's history readback
// as a NonFiniteError) and injected document tokens (checked against the vocabulary by
// encodeDocuments, by loadIndex given the model, and by streamRun before a run that injects:
// test/injection-ids.test.ts); training uploads batch ids that src/train/data.ts checked against
// the vocabulary, and row numbers it computed (so does its backward, kernels/embedding_backward.wgsl).
// A hand-built DocumentIndex injected through generateOnePass directly has no such check: keep
// its tokens < V (DocumentIndex.maxTokenId).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES, isQuantDType, type QuantDType } from "../gpu/tensor.js";
import { quantBytes } from "../quant/formats.js";
import { ShapeError, UsageError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";

/** Invocations per workgroup (one workgroup per token); a row is D ≤ 8192 elements. */
export const EMBEDDING_WG = 64;

/** The gather kernel for a table store type ("f16p": f16 read as packed pairs, no shader-f16). */
export function embeddingKernel(table: StoreType, tilesT = 0): KernelVariant {
  return {
    file: "embedding",
    name: `embedding_${table}${tilesT ? `_tiles${tilesT}` : ""}_wg${EMBEDDING_WG}`,
    defines: { F16: table === "f16", PACKED: table === "f16p", E: table === "f16p" ? "u32" : table, WG: EMBEDDING_WG, TILES: tilesT > 0, TT: tilesT, CE: table === "f32" ? 4 : 8 },
    bindings: ["read", "read", "read_write", "read_write", "uniform"],
    features: storeFeatures(table),
  };
}

/** The gather kernel for a block-quantized table (kernels/embedding_q.wgsl). */
export function embeddingQKernel(format: QuantDType, tilesT = 0): KernelVariant {
  return {
    file: "embedding_q",
    name: `embedding_${format}${tilesT ? `_tiles${tilesT}` : ""}_wg${EMBEDDING_WG}`,
    defines: { Q8: format === "q8_0", WG: EMBEDDING_WG, TILES: tilesT > 0, TT: tilesT },
    bindings: ["read", "read", "read", "read_write", "read_write", "uniform"],
  };
}

export interface EmbeddingOptions {
  /** Output [T, D] f32 (allocated if absent). */
  out?: Tensor;
  /** u32 [1]: bit 0 is set when a GPU-resident id was ≥ V (that row is written as zeros). */
  errors?: Tensor;
}

const scratchErrors = new WeakMap<GpuContext, Tensor>();

/**
 * Token ids as a u32 [T] GPU tensor: a given tensor is checked for dtype and rank (its values live
 * on the GPU and cannot be checked here); host ids are checked against the table's V rows and
 * uploaded (`uploaded`: the caller disposes the tensor).
 */
export function idsTensor(ctx: GpuContext, ids: Tensor | ArrayLike<number>, V: number, table: string, op: string): { ids: Tensor; uploaded: boolean } {
  if (ids instanceof Tensor) {
    expectDType(ids, ["u32"], op, "ids");
    if (ids.shape.length !== 1) throw new ShapeError(`${op}: ids ('${ids.label}') has shape [${ids.shape.join(", ")}], expected [T]`);
    return { ids, uploaded: false };
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError(`${op}: token id ${id} at position ${i} is outside the table '${table}' of ${V} rows`);
  }
  return { ids: ctx.upload(Uint32Array.from(ids), [ids.length], "u32", `${op}.ids`), uploaded: true };
}

/**
 * out[t, :] = table[ids[t], :] for ids u32 [T] (a GPU tensor, or host ids that are validated and
 * uploaded) and table [V, D] f32, f16, or q8_0 / q4_0 (rows dequantized exactly: a quantized
 * projection's rows, e.g. for the model fingerprint). Returns out [T, D] f32.
 */
export async function embedding(ctx: GpuContext, ids: Tensor | ArrayLike<number>, table: Tensor, opts: EmbeddingOptions = {}): Promise<Tensor> {
  const op = "embedding";
  if (table.shape.length !== 2) throw new ShapeError(`${op}: table ('${table.label}') has shape [${table.shape.join(", ")}], expected [V, D]`);
  const [V, D] = table.shape as [number, number];
  expectDType(table, ["f32", "f16", "q8_0", "q4_0"], op, "table");
  const { ids: idsT, uploaded } = idsTensor(ctx, ids, V, table.label, op);
  const T = idsT.shape[0]!;
  const { out, errors } = opts;
  if (out) {
    expectDType(out, ["f32"], op, "out");
    expectShape(out, [T, D], op, "out");
  }
  if (errors) {
    expectDType(errors, ["u32"], op, "errors");
    expectShape(errors, [1], op, "errors");
  }
  const dtype = table.dtype;
  const lay = table.layout;
  const kernel = await ctx.kernels.get(isQuantDType(dtype) ? embeddingQKernel(dtype, lay?.T ?? 0) : embeddingKernel(storeType(ctx, dtype as "f32" | "f16"), lay?.T ?? 0));
  const result = out ?? ctx.empty([T, D], "f32", "embedding.out");
  let err = errors;
  if (!err) {
    err = scratchErrors.get(ctx);
    if (!err || err.isDisposed) scratchErrors.set(ctx, (err = ctx.empty([1], "u32", "embedding.errors-scratch")));
  }
  if (T > 0 && D > 0 && isQuantDType(dtype) && lay) {
    // Tiles layout: windows of whole tiles (each holds its scales), at aligned offsets.
    const tileBytes = lay.kc * lay.T * 16;
    for (const w of ctx.bindingWindows(lay.tiles, tileBytes, `${op} table '${table.label}' in tiles of ${lay.T}`)) {
      const first = w.firstRow * lay.T;
      const win = { tensor: table, byteOffset: w.byteOffset, byteSize: w.rows * tileBytes };
      const params = new Params().u32(T).u32(D).u32(V).u32(first).u32(Math.min(w.rows * lay.T, V - first)).u32(0).u32(0).u32(lay.kc).bytes();
      ctx.dispatch(kernel, [idsT, win, win, result, err], params, grid(ctx, T));
    }
  } else if (T > 0 && D > 0 && isQuantDType(dtype)) {
    // Windows of whole rows; quants and scales bound at the aligned offset at or below their start.
    const limit = ctx.limits.maxStorageBufferBindingSize;
    const align = ctx.limits.minStorageBufferOffsetAlignment;
    const { qsBytes } = quantBytes(V, D, dtype);
    const rowQ = qsBytes / V;
    const per = Math.floor((limit - align - 4) / rowQ);
    if (per < 1) throw new ShapeError(`${op}: one row of table '${table.label}' (${rowQ} bytes of quants) exceeds the storage binding limit of ${limit} bytes`);
    const bind = (start: number, size: number) => {
      const at = start - (start % align);
      return { res: { tensor: table, byteOffset: at, byteSize: Math.ceil((start + size - at) / 4) * 4 }, skew: start - at };
    };
    for (let r0 = 0; r0 < V; r0 += per) {
      const rows = Math.min(per, V - r0);
      const qb = bind(r0 * rowQ, rows * rowQ);
      const sb = bind(qsBytes + (r0 * D * 2) / 32, (rows * D * 2) / 32);
      const params = new Params().u32(T).u32(D).u32(V).u32(r0).u32(rows).u32(qb.skew / 4).u32(sb.skew / 2).u32(0).bytes();
      ctx.dispatch(kernel, [idsT, qb.res, sb.res, result, err], params, grid(ctx, T));
    }
  } else if (T > 0 && D > 0 && lay) {
    // Tiles layout: windows of whole tiles.
    const tileBytes = lay.kc * lay.T * 16;
    for (const w of ctx.bindingWindows(lay.tiles, tileBytes, `${op} table '${table.label}' in tiles of ${lay.T}`)) {
      const first = w.firstRow * lay.T;
      const params = new Params().u32(T).u32(D).u32(V).u32(first).u32(Math.min(w.rows * lay.T, V - first)).u32(lay.kc).bytes();
      ctx.dispatch(kernel, [idsT, { tensor: table, byteOffset: w.byteOffset, byteSize: w.rows * tileBytes }, result, err], params, grid(ctx, T));
    }
  } else if (T > 0 && D > 0) {
    const rowBytes = D * DTYPE_BYTES[dtype];
    for (const w of ctx.bindingWindows(V, rowBytes, `${op} table '${table.label}'`)) {
      const params = new Params().u32(T).u32(D).u32(V).u32(w.firstRow).u32(w.rows).bytes();
      ctx.dispatch(kernel, [idsT, { tensor: table, byteOffset: w.byteOffset, byteSize: w.rows * rowBytes }, result, err], params, grid(ctx, T));
    }
  }
  if (uploaded) idsT.dispose();
  return result;
}

/**
 * CPU reference: out [T, D] with out[t] = table[ids[t]] (table given as f32 values, [V, D]);
 * rows of ids ≥ V are zeros, and `outOfRange` reports whether any occurred.
 */
export function embeddingReference(ids: ArrayLike<number>, table: Float32Array, V: number, D: number): { out: Float32Array; outOfRange: boolean } {
  const out = new Float32Array(ids.length * D);
  let outOfRange = false;
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id >= V) {
      outOfRange = true;
      continue;
    }
    for (let i = 0; i < D; i++) out[t * D + i] = table[id * D + i]!;
  }
  return { out, outOfRange };
}
