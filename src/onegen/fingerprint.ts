// Model fingerprint: identifies the model whose hidden states a document index holds, so that an
// index is never searched with queries from another model.
//
//   fingerprint = SHA-256 over
//     the parsed config (ModelConfig as canonical JSON, without the informational torchDtype),
//     every weight's name and shape, in decoder order,
//     a sample of every weight's values: rows 0, ⌊n/2⌋ and n−1 of each 2-D weight and the whole
//       of each 1-D weight, at most FINGERPRINT_SAMPLE values per row, rounded to f16 bits.
//
// The sample is gathered on the GPU (embedding gather into one buffer) and read back once, so it
// costs one small readback whatever the model's size (7B: ~230 rows of 64 values). Rounding to f16
// makes the fingerprint independent of the dtype the weights were loaded in (F32/BF16/F16 file
// loaded as f16 or f32 gives the same f16 values), so an index built with `--dtype f32` can be
// searched with the same checkpoint loaded as f16; the dtypes of the loaded weights are recorded
// separately (weightDtypes) for information. Any change to the config, a shape, or a sampled
// value (fine-tuning changes essentially every row) changes the fingerprint.

import type { Decoder } from "../model/decoder.js";
import type { Tensor } from "../gpu/tensor.js";
import { embedding } from "../ops/embedding.js";
import { f32ArrayToF16 } from "../util/f16.js";

/** Values sampled per weight row. */
export const FINGERPRINT_SAMPLE = 64;

export interface ModelFingerprint {
  /** "sha256:<hex>" */
  fingerprint: string;
  /** GPU dtypes of the loaded weights, e.g. { f16: 18 } (informational, not part of the hash). */
  weightDtypes: Record<string, number>;
}

const cache = new WeakMap<Decoder, Promise<ModelFingerprint>>();

/** The decoder's fingerprint (computed once per decoder: one small readback). */
export function modelFingerprint(decoder: Decoder): Promise<ModelFingerprint> {
  let p = cache.get(decoder);
  if (!p) {
    p = computeFingerprint(decoder);
    cache.set(decoder, p);
    p.catch(() => cache.delete(decoder));
  }
  return p;
}

function namedWeights(decoder: Decoder): [string, Tensor][] {
  const w = decoder.weights;
  const out: [string, Tensor][] = [["embed", w.embed]];
  w.layers.forEach((L, l) => {
    for (const [k, t] of Object.entries(L)) if (t) out.push([`layers.${l}.${k}`, t as Tensor]);
  });
  out.push(["norm", w.norm]);
  if (w.lmHead !== w.embed) out.push(["lmHead", w.lmHead]);
  return out;
}

async function computeFingerprint(decoder: Decoder): Promise<ModelFingerprint> {
  const ctx = decoder.ctx;
  const weights = namedWeights(decoder);
  const { torchDtype: _ignored, ...config } = decoder.config;
  const shapes: string[] = [];
  const dtypes: Record<string, number> = {};
  // Plan the sample: per weight, rows to gather and the values kept per row.
  const plan = weights.map(([name, t]) => {
    shapes.push(`${name}:[${t.shape.join(",")}]`);
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    const table = t.shape.length === 2 ? t : t.view([1, t.numel]);
    const [n, width] = table.shape as [number, number];
    const rows = [...new Set([0, Math.floor(n / 2), n - 1])].filter((r) => r >= 0 && r < n);
    return { table, rows, width, keep: Math.min(width, FINGERPRINT_SAMPLE) };
  });
  const total = plan.reduce((s, p) => s + p.rows.length * p.keep, 0);
  const sample = ctx.empty([Math.max(1, total)], "f32", "fingerprint.sample");
  let at = 0;
  for (const p of plan) {
    if (p.width === 0 || p.rows.length === 0) continue;
    const rows = await embedding(ctx, p.rows, p.table);
    for (let r = 0; r < p.rows.length; r++) {
      ctx.copy(rows.buffer, r * p.width * 4, sample.buffer, at * 4, p.keep * 4);
      at += p.keep;
    }
    rows.dispose();
  }
  const values = (await sample.read()).subarray(0, total);
  sample.dispose();
  const bits = f32ArrayToF16(values);
  const head = new TextEncoder().encode(JSON.stringify(canonical(config)) + "\n" + shapes.join("\n") + "\n");
  const bytes = new Uint8Array(head.byteLength + bits.byteLength);
  bytes.set(head, 0);
  bytes.set(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), head.byteLength);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return { fingerprint: `sha256:${[...digest].map((b) => b.toString(16).padStart(2, "0")).join("")}`, weightDtypes: dtypes };
}

/** JSON value with object keys sorted (stable across property insertion orders). */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v as Record<string, unknown>)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
