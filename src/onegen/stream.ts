// The task event stream over one Session: streamRun appends a prompt and generates, turning
// Session.generate's RetrievalToken objects (src/onegen/loop.ts, or the two-pass baseline of
// src/onegen/baseline.ts) into TaskEvent values (src/onegen/protocol.ts).
//
// Query tokens already in the PROMPT (e.g. OneGen's entity disambiguation, whose prompt holds the
// annotated sentence): their hidden states come from the prompt's own prefill (keepHidden) and
// are searched on the GPU (two-pass mode: each re-encoded and searched on the CPU); they are
// reported as retrievals with source "prompt" and count toward maxRetrievals, in order. Nothing is
// injected for them, except when the prompt ENDS with the query token and the task injects: then
// the best document is prefilled by the host (Session.append) before decoding starts, exactly
// as the loop would have done had the model generated that token. Injecting in the middle of a
// prompt would rewrite the user's input, so it is never done.
//
// Defined outcomes (both modes): an empty index → no retrieval at all (query tokens are ordinary
// tokens; mentions get entity null); k larger than the index → every entry, best first; an
// injection that does not fit the session (query position + injected length + 1 > capacity) →
// an injection event with refused: true and finish "context-full" (nothing is injected).

import type { Tensor } from "../gpu/tensor.js";
import { UsageError } from "../errors.js";
import type { FinishReason, Session } from "../model/session.js";
import { generateOnePass, type RetrievalGenerateOptions, type RetrievalHit, type RetrievalToken } from "./loop.js";
import { embedding } from "../ops/embedding.js";
import { NO_ID, TOPK_MAX_K } from "../ops/search.js";
import type { DocumentIndex } from "./index.js";
import { injectionFits, injectionIds, reencodeLastHidden, searchOnHost, twoPassGenerate } from "./baseline.js";
import type { TaskEvent, TokenKind } from "./protocol.js";

export interface StreamOptions extends RetrievalGenerateOptions {
  /** Run retrieval as the two-pass baseline (src/onegen/baseline.ts) instead of in the loop. */
  twoPass?: boolean;
}

/** Whether a forceAfter rule produced `id` at `position` (its pattern ends just before it). */
export function isForced(ids: readonly number[], position: number, id: number, rules: RetrievalGenerateOptions["forceAfter"]): boolean {
  for (const r of rules ?? []) {
    const n = r.pattern.length;
    if (r.token !== id || n === 0 || position < n) continue;
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = ids[position - n + i] === r.pattern[i];
    if (ok) return true;
  }
  return false;
}

/**
 * Appends `prompt` to the session and generates, streaming events: retrievals for query tokens in
 * the prompt (see the file header), then one "token" event per generated id, followed by its
 * "retrieval" and "injection" events, then "done". Returns the finish reason.
 */
export async function* streamRun(session: Session, prompt: readonly number[], opts: StreamOptions): AsyncGenerator<TaskEvent, FinishReason> {
  if (prompt.length === 0) throw new UsageError("streamRun: the prompt is empty");
  const spec = opts.retrieval && opts.retrieval.index.count > 0 ? opts.retrieval : null;
  const k = Math.max(1, spec?.k ?? 1);
  if (spec && k > TOPK_MAX_K) throw new UsageError(`k = ${k} exceeds the largest supported k (${TOPK_MAX_K})`);
  // Injected documents go through the embedding gather on the GPU, which cannot refuse an id.
  if (spec?.inject && spec.index.maxTokenId >= session.decoder.vocabSize) {
    throw new UsageError(`streamRun: the index holds token id ${spec.index.maxTokenId}, outside the model's vocabulary (0..${session.decoder.vocabSize - 1}): its documents cannot be injected`);
  }
  const maxRetrievals = spec?.maxRetrievals ?? Infinity;
  const base = session.length;
  const promptQueries: number[] = [];
  if (spec) {
    prompt.forEach((t, i) => {
      if (t === spec.queryTokenId && promptQueries.length < maxRetrievals) promptQueries.push(i);
    });
  }
  const oneShot = promptQueries.length > 0 && !opts.twoPass;
  const out = await session.append(prompt, { keepHidden: oneShot });
  let used = 0;
  let last: { position: number; hits: RetrievalHit[] } | null = null;
  if (spec && promptQueries.length > 0) {
    const found: RetrievalHit[][] = [];
    if (oneShot) {
      const hidden = out.hidden!;
      const first = hidden.shape[0]! - prompt.length; // rows before the prompt: a pending sampled id
      const rows = await embedding(session.ctx, promptQueries.map((i) => first + i), hidden); // [Q, D]
      hidden.dispose();
      found.push(...(await searchRows(spec.index, rows, promptQueries.length, k)));
      rows.dispose();
    } else {
      for (const i of promptQueries) {
        const q = await reencodeLastHidden(session.decoder, session.ids.slice(0, base + i + 1), session.cache.dtype);
        found.push(await searchOnHost(spec.index, q, k));
      }
    }
    for (const [j, i] of promptQueries.entries()) {
      used++;
      last = { position: base + i, hits: found[j]! };
      yield { type: "retrieval", position: base + i, source: "prompt", hits: found[j]! };
    }
  } else out.hidden?.dispose();
  // A prompt that ends with a searched query token: inject as the loop would have.
  if (spec?.inject && last && last.position === session.length - 1 && last.hits.length > 0) {
    const ids = injectionIds(spec.index, last.hits[0]!.id, spec.inject);
    if (!injectionFits(last.position, ids.length, session.capacity)) {
      yield { type: "injection", position: last.position, refused: true };
      yield { type: "done", finish: "context-full", length: session.length };
      return "context-full";
    }
    await session.append(ids);
    yield { type: "injection", position: last.position, start: last.position + 1, ids, document: last.hits[0]!.id };
  }
  const left = maxRetrievals - used; // Infinity when unlimited
  const gen: RetrievalGenerateOptions = { ...opts, retrieval: spec ? { ...spec, ...(Number.isFinite(left) ? { maxRetrievals: left } : {}) } : undefined };
  const it = opts.twoPass ? twoPassGenerate(session, gen) : generateOnePass(session, gen);
  let finish: FinishReason;
  for (;;) {
    const r = await it.next();
    if (r.done) {
      finish = r.value;
      break;
    }
    yield* tokenEvents(session, r.value, opts.forceAfter);
  }
  yield { type: "done", finish, length: session.length };
  return finish;
}

function* tokenEvents(session: Session, tok: RetrievalToken, rules: RetrievalGenerateOptions["forceAfter"]): Generator<TaskEvent> {
  const kind: TokenKind = isForced(session.ids, tok.position, tok.id, rules) ? "forced" : "generated";
  yield { type: "token", id: tok.id, position: tok.position, kind, ...(tok.text !== undefined ? { text: tok.text } : {}) };
  if (tok.retrieval) yield { type: "retrieval", position: tok.retrieval.position, source: "generated", hits: tok.retrieval.hits };
  const inj = tok.injected;
  if (inj && "refused" in inj) yield { type: "injection", position: tok.position, refused: true };
  else if (inj) yield { type: "injection", position: tok.position, start: inj.start, ids: inj.ids, document: inj.document };
}

/** GPU search of Q query rows [Q, D]: one readback of ids and scores. */
async function searchRows(index: DocumentIndex, rows: Tensor, Q: number, k: number): Promise<RetrievalHit[][]> {
  const kk = Math.min(k, index.count);
  const { ids, scores } = await index.searchGpu(rows, kk);
  const idv = (await ids.read()) as Uint32Array;
  const sv = (await scores.read()) as Float32Array;
  ids.dispose();
  scores.dispose();
  const all: RetrievalHit[][] = [];
  for (let q = 0; q < Q; q++) {
    const hits: RetrievalHit[] = [];
    for (let j = 0; j < kk; j++) {
      const e = idv[q * kk + j]!;
      if (e === NO_ID) break;
      const { id, fragment } = index.entry(e);
      hits.push({ id, fragment, score: sv[q * kk + j]!, entry: e });
    }
    all.push(hits);
  }
  return all;
}
