// Rerank: candidates scored by cosine with a query's retrieval-token state (one forward of the
// query, no generation), from index vectors or candidates encoded on the fly.

import type { DType } from "../gpu/tensor.js";
import { UsageError } from "../errors.js";
import type { DocumentIndex } from "./index.js";
import { encodeDocuments } from "./encode.js";
import { indexVectorsOnHost, reencodeLastHidden } from "./baseline.js";
import { tokenIdOf, type TokenRef } from "./token-names.js";
import { checkIndex } from "./task-runner.js";
import type { TaskInput, TaskModel } from "./protocol.js";

/** A candidate: a document of the index (id only), or text / ids encoded on the fly. */
export interface RerankCandidate {
  id: string;
  text?: string;
  ids?: readonly number[];
}

export interface RerankOptions {
  /** Retrieval token appended to the query unless it already ends with it (default: none, the query is used as given). */
  queryToken?: TokenRef;
  /** Document-side token of on-the-fly candidates (default: the index's doc token). */
  docToken?: TokenRef;
  /** Occurrences of the doc token skipped in on-the-fly candidates (default: the index's skipFirst, else 0). */
  skipFirst?: number;
  /** Text query: add BOS/EOS (default false). */
  addSpecialTokens?: boolean;
  cacheDtype?: DType;
}

export interface RerankScore {
  id: string;
  /** Best fragment of the candidate. */
  fragment: number;
  /** Cosine of the query state with the candidate's best fragment. */
  score: number;
  /** Where its vector came from. */
  source: "index" | "encoded";
}

/**
 * Scores candidates against a query's retrieval-token state: one forward of the query (with the
 * query token appended when `queryToken` is given and the query does not end with it), the
 * final-norm hidden state at its last position, cosine with every fragment of each candidate
 * (vectors from the index, or candidates encoded on the fly like index documents), the best
 * fragment per candidate; sorted best first (ties: input order).
 */
export async function rerank(model: TaskModel, index: DocumentIndex | null, query: TaskInput, candidates: readonly RerankCandidate[], o: RerankOptions = {}): Promise<RerankScore[]> {
  const what = "rerank";
  const V = model.decoder.vocabSize;
  const D = model.decoder.hiddenSize;
  if (index) checkIndex(model, index, what);
  let q: number[];
  if ("text" in query) {
    if (!model.tokenizer) throw new UsageError(`${what}: a text query needs a tokenizer`);
    q = model.tokenizer.encode(query.text, { addSpecialTokens: o.addSpecialTokens ?? false });
  } else q = [...query.ids];
  if (o.queryToken !== undefined) {
    const qt = tokenIdOf(o.queryToken, model.tokenizer, V, `${what} (query token)`);
    if (q[q.length - 1] !== qt) q.push(qt);
  }
  if (q.length === 0) throw new UsageError(`${what}: the query is empty`);
  for (const t of q) if (!Number.isInteger(t) || t < 0 || t >= V) throw new UsageError(`${what}: query id ${t} is outside the vocabulary (0..${V - 1})`);
  const qv = await reencodeLastHidden(model.decoder, q, o.cacheDtype);
  let qn = 0;
  for (let i = 0; i < D; i++) qn += qv[i]! ** 2;
  const inv = qn > 0 ? 1 / Math.sqrt(qn) : 0;
  const cosine = (rows: Float32Array, r: number): number => {
    let dot = 0;
    for (let i = 0; i < D; i++) dot += qv[i]! * rows[r * D + i]!;
    return dot * inv;
  };
  // candidates to encode
  const fresh = candidates.filter((c) => c.text !== undefined || c.ids !== undefined);
  let temp: DocumentIndex | null = null;
  let tempRows: Float32Array | null = null;
  try {
    if (fresh.length > 0) {
      const docRef = o.docToken ?? (index?.docToken ? `#${index.docToken.id}` : undefined);
      if (docRef === undefined) throw new UsageError(`${what}: candidates given as text or ids need a document-side token (docToken), and there is no index to take it from`);
      const docTokenId = tokenIdOf(docRef, model.tokenizer, V, `${what} (doc token)`);
      temp = await encodeDocuments(model.decoder, fresh.map((c) => (c.ids !== undefined ? { id: c.id, ids: c.ids } : { id: c.id, text: c.text! })), {
        docTokenId,
        skipFirst: o.skipFirst ?? index?.skipFirst ?? 0,
        tokenizer: model.tokenizer,
        dtype: "f32",
        ...(o.cacheDtype ? { cacheDtype: o.cacheDtype } : {}),
      });
      tempRows = await temp.readVectors();
    }
    const indexRows = index && candidates.some((c) => c.text === undefined && c.ids === undefined) ? await indexVectorsOnHost(index) : null;
    const scored = candidates.map((c, order) => {
      let rows: Float32Array;
      let first: number;
      let n: number;
      let source: RerankScore["source"];
      if (c.text !== undefined || c.ids !== undefined) {
        const d = temp!.documents[temp!.documentNumber(c.id)!]!;
        rows = tempRows!;
        first = d.firstEntry;
        n = d.fragments;
        source = "encoded";
      } else {
        const num = index?.documentNumber(c.id);
        if (!index || num === undefined) throw new UsageError(`${what}: candidate '${c.id}' is not in the index; give its text or ids`);
        const d = index.documents[num]!;
        if (d.fragments === 0) throw new UsageError(`${what}: document '${c.id}' has no entries in the index`);
        rows = indexRows!;
        first = d.firstEntry;
        n = d.fragments;
        source = "index";
      }
      let best = -Infinity;
      let fragment = 0;
      for (let f = 0; f < n; f++) {
        const s = cosine(rows, first + f);
        if (s > best) {
          best = s;
          fragment = f;
        }
      }
      return { id: c.id, fragment, score: best, source, order };
    });
    scored.sort((a, b) => b.score - a.score || a.order - b.order);
    return scored.map(({ id, fragment, score, source }) => ({ id, fragment, score, source }));
  } finally {
    temp?.dispose();
  }
}
