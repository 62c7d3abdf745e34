// Attention over a per-layer KV cache, with per-query key ranges kept in a GPU tensor.
//
//   KV cache of a layer: kCache, vCache [Hkv, S, hd], f32 or f16 (S = capacity in positions).
//   kvAppend: writes k/v rows [T, Hkv, hd] f32 at cache positions positions[t] (u32 GPU tensor).
//   attention: q [T, H, hd] f32; query t attends to cache positions [ranges[t][0], ranges[t][1])
//     with softmax(q·k·scale), scale = 1/sqrt(hd) by default; query head h reads kv head
//     h / (H/Hkv) (GQA). Causal prefill of one sequence from cache position p0 uses
//     causalRanges(T, p0); several sequences packed in one cache use packedCausalRanges. An empty
//     range gives zeros.
//
// Two kernels, one resolver (resolveAttention) that returns the label of what it picked:
//   prefill: kernels/attention.wgsl, one invocation per (row, kv head, block of QB query heads),
//     online softmax over key tiles of KT keys; never materialises a T×T matrix.
//   decode: the same source with SPLIT (split-K / flash-decoding): each row's key range is cut into
//     n_splits pieces of `chunk` keys, each written as a partial (m, l, acc), then
//     kernels/attention_combine.wgsl merges them in the same command buffer. For few rows over a
//     long cache (decode: T·H small), so a 4096-key context is spread over many invocations.
// The host does not know the range lengths (they live on the GPU); the split count comes from
// `maxKeys` (an upper bound of range lengths the caller may give, default the capacity S). It only
// decides parallelism: the last split of a row always runs to the end of its range, so a wrong
// bound costs speed, never correctness.
//
// Measured 2026-11-24, lavapipe (llvmpipe, LLVM 15, 2 shared cores under load from other jobs, so
// ±30%), bench/attention.bench.ts full mode; copy 10.5 GB/s (64 MiB copyBufferToBuffer):
//   decode T=1, f16 cache, KV GB/s (unique K+V bytes) / GFLOP/s:
//     llama7b (32/32 heads, hd 128): ctx 256: 2.14 GB/s (0.20× copy); 1024: 1.59; 4096: 1.27 (0.12×, 53 ms)
//     tinyllama (32/4, hd 64):       ctx 256: 0.29 GB/s; 1024: 0.37; 4096: 0.14 (8 query heads re-read
//       each kv row: 1.1–2.9 GFLOP/s, compute/gather-bound, not bandwidth-bound)
//   decode f32 cache: llama7b 4096: 1.41 GB/s (95 ms) — f16 halves the time at equal GFLOP/s.
//   prefill (causal, from 0): tinyllama T=512 1.8 GFLOP/s; llama7b T=512 1.3 GFLOP/s (1.6 s).
// Alternatives measured: private q/acc arrays + qb GQA heads per invocation sharing K/V loads
// (0.09–0.13 GB/s tinyllama 4096, compile 1–287 s: llvmpipe turns indexed local arrays into
// if-ladders) lost to the current array-free kernel (accumulator in the output row, 4-key vec4
// score tiles). Lavapipe's cost is per-lane gathers (every lane reads a different row); a kernel
// that maps lanes to head-dim slots needs a cross-lane reduction (workgroup memory or subgroups):
// not tried yet.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError, UnsupportedError } from "../errors.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { f16ArrayToF32, f16BitsToF32, f32ToF16Bits } from "../util/f16.js";

/** Invocations per workgroup of the attention kernels (not tuned yet; 32 gives decode ≥ 2 workgroups per core). */
export const ATTN_WG = 32;
/** Decode: the resolver splits keys until this many invocations run (or chunks reach the minimum). */
export const DECODE_TARGET_UNITS = 512;
/** Decode: fewest keys per split. */
export const DECODE_MIN_CHUNK = 64;
/** Invocations per workgroup of kv_append and the combine pass. */
const KV_APPEND_WG = 64;
export const COMBINE_WG = 64;

export type AttentionKind = "prefill" | "decode";
export type CacheDType = "f32" | "f16";

/** Compile-time description of one attention kernel variant (the head dim itself is a uniform). */
export interface AttentionVariantSpec {
  kind: AttentionKind;
  /** Cache store type: "f16p" reads an f16 cache as packed pairs (no shader-f16). */
  cache: StoreType;
  /** hd % 4 == 0: vec4 loads; otherwise the scalar (remainder) path. */
  vec4: boolean;
  wg: number;
}

/**
 * Defines, bindings and features shared by attention.wgsl and attention_step.wgsl (their common
 * bindings: kernels/attention_io.wgsl); SPLIT adds the (m, l) partials binding.
 */
export function attentionIo(cache: StoreType, vec4: boolean, split: boolean, wg: number): Pick<KernelVariant, "defines" | "bindings" | "features"> {
  return {
    defines: {
      F16: cache === "f16",
      PACKED: cache === "f16p",
      SPLIT: split,
      VEC4: vec4,
      WG: wg,
      V: vec4 ? "vec4<f32>" : "f32",
      CV: cache === "f16p" ? (vec4 ? "vec2<u32>" : "u32") : vec4 ? `vec4<${cache}>` : cache,
    },
    bindings: split ? ["read", "read", "read", "read", "read_write", "read_write", "uniform"] : ["read", "read", "read", "read", "read_write", "uniform"],
    features: storeFeatures(cache),
  };
}

/** The WGSL defines and a stable name, e.g. "attention_decode_f16_v4_wg32". */
export function attentionVariant(spec: AttentionVariantSpec): KernelVariant {
  const { kind, cache, vec4, wg } = spec;
  const split = kind === "decode";
  return {
    file: "attention",
    name: `attention_${kind}_${cache}_${vec4 ? "v4" : "s1"}_wg${wg}`,
    ...attentionIo(cache, vec4, split, wg),
  };
}

/** The split-K combine pass; `step`: the decode-step form (T from the step state, src/ops/attention-step.ts). */
export function attentionCombineVariant(vec4: boolean, step = false): KernelVariant {
  return {
    file: "attention_combine",
    name: `attention_combine${step ? "_step" : ""}_${vec4 ? "v4" : "s1"}_wg${COMBINE_WG}`,
    defines: { WG: COMBINE_WG, V: vec4 ? "vec4<f32>" : "f32", STEP: step },
    bindings: step ? ["read", "read", "read", "read_write", "uniform"] : ["read", "read", "read_write", "uniform"],
  };
}

/** The cache write kernel for a store type ("f16p": packed pairs written with atomics on shared words). */
export function kvAppendVariant(cache: StoreType): KernelVariant {
  return {
    file: "kv_append",
    name: `kv_append_${cache}_wg${KV_APPEND_WG}`,
    defines: { F16: cache === "f16", PACKED: cache === "f16p", CT: cache === "f16p" ? "u32" : cache, WG: KV_APPEND_WG },
    bindings: ["read", "read", "read", "read_write", "read_write", "uniform"],
    features: storeFeatures(cache),
  };
}

export interface AttentionDims {
  T: number;
  H: number;
  Hkv: number;
  hd: number;
  /** Cache capacity in positions. */
  S: number;
  cache: CacheDType;
}

export interface AttentionOptions {
  /** Output [T, H, hd] f32 (allocated if absent). */
  out?: Tensor;
  /** Softmax scale; default 1/sqrt(hd). */
  scale?: number;
  /** "auto" (default) lets resolveAttention choose; an explicit kind that cannot run throws. */
  variant?: "auto" | AttentionKind;
  /** Upper bound of every range's length, for choosing the split count (default S). Never affects results. */
  maxKeys?: number;
  /** Decode: keys per split (default chosen by the resolver); needs variant "decode". */
  chunk?: number;
}

export interface AttentionPlan {
  kind: AttentionKind;
  /** What was picked, for logs and benchmarks, e.g. "attention_decode_f16_v4_wg32 splits=16x256 +combine". */
  label: string;
  variant: KernelVariant;
  combine: KernelVariant | null;
  nSplits: number;
  chunk: number;
  /** Invocations of the main kernel: T·H·nSplits. */
  units: number;
}

/** Chooses prefill vs decode (and the split) for these dimensions; explicit kinds that cannot run throw. */
export function resolveAttention(ctx: GpuContext, dims: AttentionDims, opts: Pick<AttentionOptions, "variant" | "maxKeys" | "chunk"> = {}): AttentionPlan {
  const { T, H, Hkv, hd, S, cache } = dims;
  if (Hkv < 1 || H % Hkv !== 0) throw new ShapeError(`attention: ${H} query heads are not a multiple of ${Hkv} kv heads`);
  if (!Number.isInteger(hd) || hd < 1) throw new ShapeError(`attention: head dim ${hd} must be a positive integer`);
  const base = T * H;
  const maxKeys = Math.max(1, Math.min(opts.maxKeys ?? S, S));
  const want = opts.variant ?? "auto";
  let kind: AttentionKind;
  let nSplits = 1;
  let chunk = maxKeys;
  if (opts.chunk !== undefined && (!Number.isInteger(opts.chunk) || opts.chunk < 1)) throw new ShapeError(`attention: chunk ${opts.chunk} must be a positive integer`);
  if (want === "prefill") {
    if (opts.chunk !== undefined) throw new UnsupportedError("attention: 'chunk' applies to the decode variant only, not to an explicit 'prefill'");
    kind = "prefill";
  } else if (want === "decode" || opts.chunk !== undefined) {
    if (want === "auto") throw new UnsupportedError("attention: 'chunk' needs variant 'decode' (auto must stay free to choose)");
    kind = "decode";
  } else {
    // Auto: split only when the rows alone leave the device idle and ranges can be long.
    kind = base < DECODE_TARGET_UNITS && maxKeys >= 2 * DECODE_MIN_CHUNK ? "decode" : "prefill";
  }
  if (kind === "decode") {
    if (opts.chunk !== undefined) {
      chunk = opts.chunk;
      nSplits = Math.ceil(maxKeys / chunk);
    } else {
      nSplits = Math.max(1, Math.min(Math.ceil(DECODE_TARGET_UNITS / base), Math.floor(maxKeys / DECODE_MIN_CHUNK)));
      chunk = Math.ceil(maxKeys / nSplits);
    }
    const partBytes = T * H * nSplits * hd * 4;
    if (partBytes > ctx.limits.maxStorageBufferBindingSize) {
      throw new UnsupportedError(
        `attention decode: partial accumulators of ${partBytes} bytes (T=${T}, H=${H}, ${nSplits} splits, hd=${hd}) exceed the storage binding limit of ${ctx.limits.maxStorageBufferBindingSize} bytes`,
        "use the prefill variant for many rows, or a larger chunk",
      );
    }
  }
  const vec4 = hd % 4 === 0;
  const variant = attentionVariant({ kind, cache: storeType(ctx, cache), vec4, wg: ATTN_WG });
  const combine = kind === "decode" ? attentionCombineVariant(vec4) : null;
  const units = base * nSplits;
  const label = kind === "decode" ? `${variant.name} splits=${nSplits}x${chunk} +combine` : variant.name;
  return { kind, label, variant, combine, nSplits, chunk, units };
}

function checkBinding(ctx: GpuContext, t: Tensor, what: string): void {
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (t.byteLength > limit) {
    throw new UnsupportedError(
      `${what} ('${t.label}') [${t.shape.join(", ")}] ${t.dtype} is ${t.byteLength} bytes, over the storage binding limit of ${limit} bytes`,
      "attention binds each cache whole: use an f16 cache, a smaller capacity S, or split the layer's heads",
    );
  }
}

function cacheDims(op: string, kCache: Tensor, vCache: Tensor): { Hkv: number; S: number; hd: number; cache: CacheDType } {
  expectDType(kCache, ["f32", "f16"], op, "kCache");
  expectDType(vCache, [kCache.dtype], op, "vCache");
  if (kCache.shape.length !== 3) throw new ShapeError(`${op}: kCache ('${kCache.label}') has shape [${kCache.shape.join(", ")}], expected [Hkv, S, hd]`);
  expectShape(vCache, kCache.shape, op, "vCache");
  const [Hkv, S, hd] = kCache.shape as [number, number, number];
  return { Hkv, S, hd, cache: kCache.dtype as CacheDType };
}

/**
 * out[t, h] = softmax_j(scale·q[t,h]·kCache[g,j]) · vCache[g,j] over j in [ranges[t][0], ranges[t][1]),
 * g = h / (H/Hkv). q: [T, H, hd] f32; caches [Hkv, S, hd] f32|f16; ranges: u32 [T, 2]. Returns out.
 */
export async function attention(ctx: GpuContext, q: Tensor, kCache: Tensor, vCache: Tensor, ranges: Tensor, opts: AttentionOptions = {}): Promise<Tensor> {
  const op = "attention";
  const { Hkv, S, hd, cache } = cacheDims(op, kCache, vCache);
  expectDType(q, ["f32"], op, "q");
  if (q.shape.length !== 3 || q.shape[2] !== hd) throw new ShapeError(`${op}: q ('${q.label}') has shape [${q.shape.join(", ")}], expected [T, H, ${hd}] (hd from kCache)`);
  const [T, H] = q.shape as [number, number, number];
  expectDType(ranges, ["u32"], op, "ranges");
  expectShape(ranges, [T, 2], op, "ranges");
  if (opts.out) {
    expectDType(opts.out, ["f32"], op, "out");
    expectShape(opts.out, [T, H, hd], op, "out");
  }
  const plan = resolveAttention(ctx, { T, H, Hkv, hd, S, cache }, opts);
  for (const [t, what] of [[q, "q"], [kCache, "kCache"], [vCache, "vCache"]] as const) checkBinding(ctx, t, `${op}: ${what}`);
  const out = opts.out ?? ctx.empty([T, H, hd], "f32", "attention.out");
  checkBinding(ctx, out, `${op}: out`);
  if (T === 0) return out;
  const scale = opts.scale ?? 1 / Math.sqrt(hd);
  const slots = hd % 4 === 0 ? hd / 4 : hd;
  const params = new Params()
    .u32(T).u32(H).u32(Hkv).u32(S)
    .u32(H / Hkv).u32(plan.nSplits).u32(plan.chunk).u32(plan.units)
    .f32(scale).u32(slots).u32(0).u32(0)
    .bytes();
  const kernel = await ctx.kernels.get(plan.variant);
  const groups = grid(ctx, Math.ceil(plan.units / ATTN_WG));
  if (plan.kind === "prefill") {
    ctx.dispatch(kernel, [q, kCache, vCache, ranges, out], params, groups);
    return out;
  }
  const combine = await ctx.kernels.get(plan.combine!);
  const partAcc = ctx.empty([T, H, plan.nSplits, hd], "f32", "attention.part_acc");
  const partMl = ctx.empty([T, H, plan.nSplits, 2], "f32", "attention.part_ml");
  try {
    ctx.dispatch(kernel, [q, kCache, vCache, ranges, partAcc, partMl], params, groups);
    const cparams = new Params().u32(T * H).u32(plan.nSplits).u32(slots).bytes();
    ctx.dispatch(combine, [partAcc, partMl, out], cparams, grid(ctx, Math.ceil((T * H * slots) / COMBINE_WG)));
  } finally {
    // Back to the pool: later users are ordered after these dispatches on the queue.
    partAcc.dispose();
    partMl.dispose();
  }
  return out;
}

/** Writes k, v [T, Hkv, hd] f32 into kCache, vCache [Hkv, S, hd] (f32|f16) at positions[t] (u32 [T]); positions ≥ S are skipped. */
export async function kvAppend(ctx: GpuContext, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, positions: Tensor): Promise<void> {
  const op = "kvAppend";
  const { Hkv, S, hd, cache } = cacheDims(op, kCache, vCache);
  expectDType(k, ["f32"], op, "k");
  expectDType(v, ["f32"], op, "v");
  if (k.shape.length !== 3 || k.shape[1] !== Hkv || k.shape[2] !== hd) {
    throw new ShapeError(`${op}: k ('${k.label}') has shape [${k.shape.join(", ")}], expected [T, ${Hkv}, ${hd}] (from kCache)`);
  }
  const T = k.shape[0]!;
  expectShape(v, k.shape, op, "v");
  expectDType(positions, ["u32"], op, "positions");
  expectShape(positions, [T], op, "positions");
  for (const [t, what] of [[k, "k"], [v, "v"], [kCache, "kCache"], [vCache, "vCache"]] as const) checkBinding(ctx, t, `${op}: ${what}`);
  const kernel = await ctx.kernels.get(kvAppendVariant(storeType(ctx, cache)));
  const params = new Params().u32(T).u32(Hkv).u32(S).u32(hd).bytes();
  ctx.dispatch(kernel, [k, v, positions, kCache, vCache], params, grid(ctx, Math.ceil((T * Hkv) / KV_APPEND_WG)));
}

/** Causal ranges of T rows of one sequence whose first row sits at position p0 of a sequence stored from cache position `start`: [start, start+p0+t+1]. */
export function causalRanges(T: number, p0: number, start = 0): Uint32Array {
  const r = new Uint32Array(2 * T);
  for (let t = 0; t < T; t++) {
    r[2 * t] = start;
    r[2 * t + 1] = start + p0 + t + 1;
  }
  return r;
}

/** Causal ranges for sequences of the given lengths packed back to back from cache position `start` (no cross-sequence attention). */
export function packedCausalRanges(lengths: readonly number[], start = 0): Uint32Array {
  const T = lengths.reduce((a, b) => a + b, 0);
  const r = new Uint32Array(2 * T);
  let row = 0;
  let off = start;
  for (const n of lengths) {
    r.set(causalRanges(n, 0, off), 2 * row);
    row += n;
    off += n;
  }
  return r;
}

/** Cache contents as numbers: f32 arrays as is, f16 as raw bits. */
type CacheHost = Float32Array | Uint16Array;

export interface AttentionDims64 {
  T: number;
  H: number;
  Hkv: number;
  S: number;
  hd: number;
}

/**
 * CPU reference of attention in float64, naive softmax, without rounding (the spec; the training
 * gradient checks difference it): q [T, H, hd]; k, v [Hkv, S, hd]; ranges [T, 2] (hi clamped to
 * S, lo to hi, as the kernel does). Empty range → zeros.
 */
export function attentionForward64(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, ranges: ArrayLike<number>, dims: AttentionDims64, scale = 1 / Math.sqrt(dims.hd)): Float64Array {
  const { T, H, S, hd } = dims;
  const out = new Float64Array(T * H * hd);
  forEachAttentionRow(ranges, dims, (qo, g, lo, hi) => {
    const p = attentionProbs64(q, k, qo, g, lo, hi, dims, scale);
    for (let d = 0; d < hd; d++) {
      let a = 0;
      for (let j = lo; j < hi; j++) a += p[j - lo]! * v[(g * S + j) * hd + d]!;
      out[qo + d] = a;
    }
  });
  return out;
}

/**
 * Visits every query row (t, h) of the CPU references: its offset qo in q [T, H, hd], its kv head
 * g (GQA) and its key range [lo, hi) from ranges [T, 2] (hi clamped to S, lo to hi, as the kernel).
 */
export function forEachAttentionRow(ranges: ArrayLike<number>, dims: AttentionDims64, fn: (qo: number, g: number, lo: number, hi: number) => void): void {
  const { T, H, Hkv, S, hd } = dims;
  for (let t = 0; t < T; t++) {
    const hi = Math.min(ranges[2 * t + 1]!, S);
    const lo = Math.min(ranges[2 * t]!, hi);
    for (let h = 0; h < H; h++) fn((t * H + h) * hd, Math.floor(h / (H / Hkv)), lo, hi);
  }
}

/**
 * Softmax probabilities (float64) of the query row at q[qo, qo + hd) over keys [lo, hi) of kv
 * head g in k [Hkv, S, hd]: p[j − lo]. Shared by the forward and backward references.
 */
export function attentionProbs64(q: ArrayLike<number>, k: ArrayLike<number>, qo: number, g: number, lo: number, hi: number, dims: Pick<AttentionDims64, "S" | "hd">, scale: number): Float64Array {
  const { S, hd } = dims;
  const p = new Float64Array(hi - lo);
  let mx = -Infinity;
  for (let j = lo; j < hi; j++) {
    let s = 0;
    for (let d = 0; d < hd; d++) s += q[qo + d]! * k[(g * S + j) * hd + d]!;
    p[j - lo] = s * scale;
    mx = Math.max(mx, p[j - lo]!);
  }
  let sum = 0;
  for (let j = 0; j < p.length; j++) sum += p[j] = Math.exp(p[j]! - mx);
  for (let j = 0; j < p.length; j++) p[j] = p[j]! / sum;
  return p;
}

/**
 * CPU reference of the attention kernel: attentionForward64 over the caches' values (f16 given
 * as raw bits), rounded once to f32.
 */
export function attentionReference(
  q: Float32Array,
  kCache: CacheHost,
  vCache: CacheHost,
  ranges: Uint32Array,
  dims: AttentionDims64,
  scale = 1 / Math.sqrt(dims.hd),
): Float32Array {
  const values = (c: CacheHost): Float32Array => (c instanceof Uint16Array ? f16ArrayToF32(c) : c);
  return Float32Array.from(attentionForward64(q, values(kCache), values(vCache), ranges, dims, scale));
}

/** CPU reference of kvAppend (returns updated copies). f16 caches as raw bits, stored round-to-nearest-even. */
export function kvAppendReference<C extends CacheHost>(
  k: Float32Array,
  v: Float32Array,
  kCache: C,
  vCache: C,
  positions: Uint32Array,
  dims: { Hkv: number; S: number; hd: number },
): { kCache: C; vCache: C } {
  const { Hkv, S, hd } = dims;
  const kc = kCache.slice() as C;
  const vc = vCache.slice() as C;
  const store = (c: C, i: number, x: number) => {
    c[i] = c instanceof Uint16Array ? f32ToF16Bits(x) : x;
  };
  for (let t = 0; t < positions.length; t++) {
    const pos = positions[t]!;
    if (pos >= S) continue;
    for (let g = 0; g < Hkv; g++) {
      for (let d = 0; d < hd; d++) {
        store(kc, (g * S + pos) * hd + d, k[(t * Hkv + g) * hd + d]!);
        store(vc, (g * S + pos) * hd + d, v[(t * Hkv + g) * hd + d]!);
      }
    }
  }
  return { kCache: kc, vCache: vc };
}

