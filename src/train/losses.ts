// OneGen's joint loss: L = λ_gen·L_gen + λ_ret·L_ret.
//
// L_gen: next-token cross-entropy on generation tokens only (the fused GPU op in
// src/train/ops/cross_entropy.ts; labels from nextTokenLabels below): row t predicts ids[t+1]
// when t+1 is in the same sequence and is a generation token (prompt and injected <paragraph>
// spans are not), and never from a retrieval token's row (the token after [RQ] is not predicted
// from it: OneGen masks it). Mean over the unmasked rows (or a caller's normalizer).
//
// L_ret: contrastive loss on final-norm hidden states (the OneGen embeddings) of retrieval-token
// rows (anchors) against document-token rows, over cosine similarity s(a, d) = a·d/(|a||d|):
//   InfoNCE  ℓ_i = −log( exp(s_ip/τ) / Σ_{j ∈ C_i} exp(s_ij/τ) )
//   BPR      ℓ_i = mean_{n ∈ C_i∖p} −log σ((s_ip − s_in)/τ)
// C_i = the pair's positive, its hard negatives and (inBatch) every other document row of the
// batch except positives of other pairs with the same anchor row (an anchor with several
// positives is several pairs that must not push each other's positives away). L_ret = Σ ℓ_i / n,
// n = #pairs (or a caller's normalizer).
// The anchor and document rows are few (tens), so L_ret and its gradient are computed here on
// the host in float64 from the gathered rows; the trainer scatters the row gradients back into
// the hidden-state gradient on the GPU. These functions are the implementation and the spec.

import { ShapeError, UsageError } from "../errors.js";
import { IGNORE_LABEL } from "./ops/cross_entropy.js";

export { IGNORE_LABEL };

// ------------------------------------------------------------------ generation labels

/**
 * Next-token labels [T] for packed sequences (lengths sum to T): labels[t] = ids[t+1] when t+1
 * is in t's sequence, target[t+1] ≠ 0 (a generation token) and ids[t] is not a retrieval token;
 * otherwise IGNORE_LABEL.
 */
export function nextTokenLabels(ids: ArrayLike<number>, lengths: readonly number[], target: ArrayLike<number | boolean>, retrievalTokenIds: readonly number[] = []): Uint32Array {
  const T = ids.length;
  if (target.length !== T) throw new ShapeError(`nextTokenLabels: ${target.length} target flags for ${T} tokens`);
  const sum = lengths.reduce((a, b) => a + b, 0);
  if (sum !== T || lengths.some((n) => !Number.isInteger(n) || n < 1)) throw new ShapeError(`nextTokenLabels: sequence lengths [${lengths.join(", ")}] must be positive and sum to ${T} tokens`);
  const rq = new Set(retrievalTokenIds);
  const labels = new Uint32Array(T).fill(IGNORE_LABEL);
  let start = 0;
  for (const n of lengths) {
    for (let t = start; t + 1 < start + n; t++) {
      if (target[t + 1] && !rq.has(ids[t]!)) labels[t] = ids[t + 1]!;
    }
    start += n;
  }
  return labels;
}

// ------------------------------------------------------------------ contrastive

export interface ContrastivePair {
  /** Hidden-state row of the retrieval token. */
  anchor: number;
  /** Index into spec.docs of the positive document row. */
  positive: number;
  /** Indices into spec.docs of hard negatives. */
  negatives?: readonly number[];
}

export interface ContrastiveSpec {
  /** Hidden-state rows of the document tokens (each document's embedding row). */
  docs: readonly number[];
  pairs: readonly ContrastivePair[];
  /** "infonce" (default) or "bpr". */
  kind?: "infonce" | "bpr";
  /** τ (default 0.05). */
  temperature?: number;
  /** Use the batch's other documents as negatives (default true). */
  inBatch?: boolean;
}

/** Checks a spec against T rows; throws UsageError naming the bad entry. */
export function validateContrastive(spec: ContrastiveSpec, T: number): void {
  const tau = spec.temperature ?? 0.05;
  if (!(tau > 0) || !Number.isFinite(tau)) throw new UsageError(`contrastive: temperature must be a finite number > 0, got ${tau}`);
  if (spec.kind !== undefined && spec.kind !== "infonce" && spec.kind !== "bpr") throw new UsageError(`contrastive: kind must be 'infonce' or 'bpr', got '${String(spec.kind)}'`);
  spec.docs.forEach((r, j) => {
    if (!Number.isInteger(r) || r < 0 || r >= T) throw new UsageError(`contrastive: docs[${j}] = ${r} is not a row of the batch's ${T} tokens`);
  });
  if (new Set(spec.docs).size !== spec.docs.length) throw new UsageError(`contrastive: document rows must be distinct, got [${spec.docs.join(", ")}]`);
  spec.pairs.forEach((p, i) => {
    if (!Number.isInteger(p.anchor) || p.anchor < 0 || p.anchor >= T) throw new UsageError(`contrastive: pairs[${i}].anchor = ${p.anchor} is not a row of the batch's ${T} tokens`);
    for (const d of [p.positive, ...(p.negatives ?? [])]) {
      if (!Number.isInteger(d) || d < 0 || d >= spec.docs.length) throw new UsageError(`contrastive: pairs[${i}] names document ${d}, but the batch has ${spec.docs.length} documents`);
    }
    if ((p.negatives ?? []).includes(p.positive)) throw new UsageError(`contrastive: pairs[${i}] lists its positive ${p.positive} as a negative`);
  });
}

/** Candidate documents of pair i (indices into docs), the positive first. */
export function contrastiveCandidates(spec: ContrastiveSpec, i: number): number[] {
  const p = spec.pairs[i]!;
  const c = [p.positive];
  for (const n of p.negatives ?? []) if (!c.includes(n)) c.push(n);
  if (spec.inBatch ?? true) {
    const excluded = new Set(spec.pairs.filter((q) => q.anchor === p.anchor).map((q) => q.positive));
    for (let j = 0; j < spec.docs.length; j++) if (!c.includes(j) && !excluded.has(j)) c.push(j);
  }
  return c;
}

/** Hidden-state rows the loss reads: anchors and documents, distinct, ascending. */
export function contrastiveRows(spec: ContrastiveSpec): number[] {
  return [...new Set([...spec.pairs.map((p) => p.anchor), ...spec.docs])].sort((a, b) => a - b);
}

export interface ContrastiveResult {
  /** Σ ℓ_i / normalizer. */
  loss: number;
  /** Σ ℓ_i. */
  sum: number;
  pairs: number;
  /** Pairs whose positive scores above every candidate negative. */
  correct: number;
  /** ∂loss/∂E [R, D] (float64), rows as given. */
  dE: Float64Array;
}

/**
 * L_ret and its gradient. E [R, D]: hidden states of `rows` (row r of the batch at E[rows.indexOf(r)]),
 * e.g. the gather of contrastiveRows(spec). float64 throughout.
 */
export function contrastiveLoss(E: ArrayLike<number>, rows: readonly number[], D: number, spec: ContrastiveSpec, opts: { normalizer?: number } = {}): ContrastiveResult {
  const R = rows.length;
  if (E.length !== R * D) throw new ShapeError(`contrastiveLoss: E has ${E.length} values, expected ${R} rows × ${D}`);
  const at = new Map<number, number>();
  rows.forEach((r, i) => at.set(r, i));
  const idx = (row: number, what: string): number => {
    const i = at.get(row);
    if (i === undefined) throw new UsageError(`contrastiveLoss: ${what} row ${row} is not among the gathered rows`);
    return i;
  };
  const tau = spec.temperature ?? 0.05;
  const kind = spec.kind ?? "infonce";
  const norms = new Float64Array(R);
  for (let i = 0; i < R; i++) {
    let s = 0;
    for (let k = 0; k < D; k++) s += E[i * D + k]! ** 2;
    norms[i] = Math.max(Math.sqrt(s), 1e-12);
  }
  const cos = (a: number, b: number): number => {
    let s = 0;
    for (let k = 0; k < D; k++) s += E[a * D + k]! * E[b * D + k]!;
    return s / (norms[a]! * norms[b]!);
  };
  const dE = new Float64Array(R * D);
  // ∂s/∂a = b/(|a||b|) − s·a/|a|², and symmetrically for b; scaled by g = ∂ℓ/∂s.
  const addCosGrad = (a: number, b: number, s: number, g: number): void => {
    if (g === 0) return;
    const nab = norms[a]! * norms[b]!;
    const na2 = norms[a]! ** 2;
    const nb2 = norms[b]! ** 2;
    for (let k = 0; k < D; k++) {
      const ea = E[a * D + k]!;
      const eb = E[b * D + k]!;
      dE[a * D + k]! += g * (eb / nab - (s * ea) / na2);
      dE[b * D + k]! += g * (ea / nab - (s * eb) / nb2);
    }
  };
  const n = spec.pairs.length;
  const norm = opts.normalizer ?? n;
  if (n > 0 && !(norm > 0 && Number.isFinite(norm))) throw new UsageError(`contrastiveLoss: normalizer must be a finite number > 0, got ${norm}`);
  let sum = 0;
  let correct = 0;
  spec.pairs.forEach((p, i) => {
    const a = idx(p.anchor, `pairs[${i}].anchor`);
    const cand = contrastiveCandidates(spec, i).map((j) => idx(spec.docs[j]!, `docs[${j}]`));
    const s = cand.map((d) => cos(a, d));
    if (s.slice(1).every((x) => s[0]! > x)) correct++;
    if (kind === "infonce") {
      const z = s.map((x) => x / tau);
      const mx = Math.max(...z);
      const se = z.reduce((acc, x) => acc + Math.exp(x - mx), 0);
      const lse = mx + Math.log(se);
      sum += lse - z[0]!;
      cand.forEach((d, j) => addCosGrad(a, d, s[j]!, (Math.exp(z[j]! - lse) - (j === 0 ? 1 : 0)) / tau / norm));
    } else {
      const m = cand.length - 1;
      if (m === 0) return;
      let gp = 0;
      for (let j = 1; j <= m; j++) {
        const x = (s[0]! - s[j]!) / tau;
        sum += softplus(-x) / m;
        const sig = sigmoid(-x); // −∂softplus(−x)/∂x
        gp -= sig / tau / m;
        addCosGrad(a, cand[j]!, s[j]!, sig / tau / m / norm);
      }
      addCosGrad(a, cand[0]!, s[0]!, gp / norm);
    }
  });
  return { loss: n > 0 ? sum / norm : 0, sum, pairs: n, correct, dE };
}

function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}
function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}
