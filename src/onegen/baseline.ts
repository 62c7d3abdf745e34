// The two-pass baseline of OneGen retrieval, for comparison with the one-pass loop (generateOnePass:
// Session.generate with the retrieval hook, src/onegen/loop.ts). Same inputs, same outputs (GeneratedToken objects with
// `retrieval` and `injected`), but at every query token:
//   1. the decode loop stops (Session.generate with the query token as an extra stop id: the
//      host reads the token back);
//   2. the whole sequence so far, ending with the query token, is re-encoded by a separate
//      forward on a fresh KV cache, and the final-norm hidden state at its last position is read
//      back (D floats);
//   3. the search runs on the CPU (cosineTopKReference) over the index's vectors, read back once
//      per index and kept on the host;
//   4. the best document (prefix + its tokens + suffix) is prefilled with Session.append, and
//      decoding resumes.
// This is what a pipeline built from a separate retriever does (OneGen's own evaluator re-feeds
// the query the same way). With greedy decoding it gives the one-pass results (same hits, scores
// within the f32 summation-order tolerance, same continuation); with sampling the random stream
// restarts at every resume (Session.generate numbers its steps from 0), so sampled runs differ.
//
// Outcomes mirror the one-pass loop: an empty index → query tokens are generated as ordinary
// tokens (no retrieval); k > entries → all entries; an injection that does not fit
// (query position + L + 1 > capacity, or L = 0) → `injected: {refused: true}` and "context-full".

import type { Decoder } from "../model/decoder.js";
import type { DType } from "../gpu/tensor.js";
import { Session, type FinishReason, type GenerateOptions } from "../model/session.js";
import { injectionFits, injectionIds, type RetrievalGenerateOptions, type RetrievalHit, type RetrievalToken } from "./loop.js";
import { embedding } from "../ops/embedding.js";
import { cosineTopKReference, NO_ID, TOPK_MAX_K } from "../ops/search.js";
import { UsageError } from "../errors.js";
import type { DocumentIndex } from "./index.js";

/** Host copies of index vectors, read back once per index (re-read when entries were added). */
const hostVectors = new WeakMap<DocumentIndex, { count: number; vectors: Float32Array }>();

/** The index's vectors [count, D] as f32 on the host (one readback, then cached). */
export async function indexVectorsOnHost(index: DocumentIndex): Promise<Float32Array> {
  const have = hostVectors.get(index);
  if (have && have.count === index.count) return have.vectors;
  const vectors = await index.readVectors();
  hostVectors.set(index, { count: index.count, vectors });
  return vectors;
}

/**
 * CPU top-k cosine search of `query` [D] over the index's host vectors, best first, ties → lower
 * entry (the GPU kernel's order). k is clamped to the entry count; an empty index gives [].
 */
export async function searchOnHost(index: DocumentIndex, query: Float32Array, k: number): Promise<RetrievalHit[]> {
  if (!Number.isInteger(k) || k < 1) throw new UsageError(`searchOnHost: k must be a positive integer, got ${k}`);
  if (k > TOPK_MAX_K) throw new UsageError(`searchOnHost: k = ${k} exceeds the largest supported k (${TOPK_MAX_K})`);
  if (query.length !== index.dim) throw new UsageError(`searchOnHost: the query has ${query.length} values, the index ${index.dim}`);
  if (index.count === 0) return [];
  const vectors = await indexVectorsOnHost(index);
  const kk = Math.min(k, index.count);
  const { ids, scores } = cosineTopKReference(query, vectors, index.count, index.dim, kk);
  const hits: RetrievalHit[] = [];
  for (let j = 0; j < kk; j++) {
    const e = ids[j]!;
    if (e === NO_ID) break;
    const { id, fragment } = index.entry(e);
    hits.push({ id, fragment, score: Math.fround(scores[j]!), entry: e });
  }
  return hits;
}

/**
 * Re-encodes `ids` with a separate forward on a fresh KV cache and reads back the final-norm
 * hidden state at the last position ([D] f32). Two readbacks' worth of work: only D floats move.
 */
export async function reencodeLastHidden(decoder: Decoder, ids: readonly number[], cacheDtype?: DType): Promise<Float32Array> {
  if (ids.length === 0) throw new UsageError("reencodeLastHidden: no ids");
  const s = new Session(decoder, decoder.createCache(ids.length, cacheDtype));
  try {
    const out = await s.append(ids, { logits: "none", keepHidden: true });
    const last = await embedding(decoder.ctx, [ids.length - 1], out.hidden!); // [1, D]
    out.hidden!.dispose();
    const v = (await last.read()) as Float32Array;
    last.dispose();
    return v;
  } finally {
    s.dispose();
  }
}

/**
 * generateOnePass run as the two-pass baseline (see the file header).
 * Yields the same GeneratedToken objects and returns the same finish reason as the one-pass loop
 * under greedy decoding.
 */
export async function* twoPassGenerate(session: Session, opts: RetrievalGenerateOptions): AsyncGenerator<RetrievalToken, FinishReason> {
  const spec = opts.retrieval;
  // a copy-input rule replays from where this call starts, across the segments below
  const { retrieval: _r, ...rest } = opts;
  const plain: GenerateOptions = { ...rest, ...(opts.copyInput ? { copyInputFrom: opts.copyInputFrom ?? session.length } : {}) };
  if (!spec || spec.index.count === 0) return yield* session.generate(plain);
  const q = spec.queryTokenId;
  const k = Math.max(1, spec.k ?? 1);
  const maxRetrievals = spec.maxRetrievals ?? Infinity;
  const eos = opts.eosIds ?? [];
  const realEos = new Set(eos);
  const stops = opts.stopStrings ?? [];
  const decode = opts.decode;
  const produced: number[] = [];
  let retrievals = 0;
  for (;;) {
    const remaining = opts.maxNewTokens - produced.length;
    if (remaining <= 0) return "max-tokens";
    const searching = retrievals < maxRetrievals;
    const before = produced.slice();
    const it = session.generate({
      ...plain,
      maxNewTokens: remaining,
      eosIds: searching ? [...eos, q] : eos,
      // the text of all ids generated by this call so far, as one one-pass call would see it
      ...(decode ? { decode: (ids: number[]) => decode([...before, ...ids]) } : {}),
    });
    let pending: RetrievalToken | null = null;
    let finish: FinishReason;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      produced.push(r.value.id);
      if (searching && r.value.id === q) {
        pending = r.value; // the loop stops here ("eos"): handled after the generator has finished
        continue;
      }
      yield r.value;
    }
    if (!pending) return finish;
    // (1) readback done: the query token is on the host. (2) re-encode the sequence so far.
    retrievals++;
    const position = pending.position;
    const query = await reencodeLastHidden(session.decoder, session.ids.slice(0, position + 1), session.cache.dtype);
    // (3) CPU search.
    const hits = await searchOnHost(spec.index, query, k);
    const tok: RetrievalToken = { ...pending, retrieval: { position, hits } };
    let stop: FinishReason | null = null;
    // (4) injection with Session.append.
    if (spec.inject && hits.length > 0) {
      const ids = injectionIds(spec.index, spec.index.entry(hits[0]!.entry).document, spec.inject);
      if (!injectionFits(position, ids.length, session.capacity)) {
        tok.injected = { refused: true };
        stop = "context-full";
      } else {
        await session.append(ids);
        tok.injected = { ids, document: hits[0]!.id, start: position + 1 };
      }
    }
    yield tok;
    if (stop) return stop;
    if (realEos.has(q)) return "eos";
    if (tok.text !== undefined && stops.some((s) => tok.text!.includes(s))) return "stop-string";
    // `finish` was "eos" for the query token; anything else (max tokens, context) applies now.
    if (finish !== "eos") return finish;
  }
}

export { injectionFits, injectionIds };
