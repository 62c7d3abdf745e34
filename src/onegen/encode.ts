// Batched document encoding for the OneGen index: documents run through the same decoder, and the
// final-norm hidden state at every occurrence of the document-side token (e.g. [SE]) becomes one
// index entry.
//
// Several documents share one forward (packing): document j occupies cache rows
// [s_j, s_j + n_j), its RoPE positions are 0..n_j−1, and token p of it attends rows
// [s_j, s_j + p + 1) only (with a sliding window: the last `window` of those), so there is no
// cross-document attention and every document is encoded exactly as if it were alone. Documents
// are packed greedily in input order into forwards of at most `batchTokens` tokens; the hidden
// rows at the kept doc-token positions are gathered on the GPU (embedding gather over the
// [T, D] hidden states) and L2-normalized into the index (src/ops/l2norm.ts). Nothing is read
// back; the host waits for each forward to finish (sync) only to report honest progress.

import type { Decoder, KVCache } from "../model/decoder.js";
import type { DType, Tensor } from "../gpu/tensor.js";
import type { Tokenizer } from "../tokenizer.js";
import { GpuOutOfMemoryError, UsageError } from "../errors.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { kvCacheBytes } from "../model/config.js";
import { embedding } from "../ops/embedding.js";
import { DocumentIndex, type IndexDtype } from "./index.js";
import { indexGpuBytes } from "./index-format.js";
import { modelFingerprint } from "./fingerprint.js";

/** A document: pre-tokenized `ids`, or `text` rendered with the template and tokenized. */
export interface DocumentInput {
  id: string;
  ids?: readonly number[];
  text?: string;
}

/** Renders a text document: a function, or a string with `{text}` and `{doc_token}` placeholders. */
export type DocumentTemplate = string | ((text: string, docToken: string) => string);

/** OneGen's document side: the text followed by the doc token, unless the text already holds one. */
export const DEFAULT_DOCUMENT_TEMPLATE = (text: string, docToken: string): string => (text.includes(docToken) ? text : text + docToken);

/** Default tokens per forward (the KV cache of one batch holds this many rows). */
export const DEFAULT_BATCH_TOKENS = 2048;

export interface EncodeProgress {
  documentsDone: number;
  documentsTotal: number;
  tokensDone: number;
  tokensTotal: number;
  /** Entries in the index so far. */
  entries: number;
  batchesDone: number;
  batchesTotal: number;
}

export interface EncodeOptions {
  /** The document-side token's id. */
  docTokenId: number;
  /** Its text (needed to render text documents; default: the tokenizer's name for docTokenId). */
  docTokenName?: string | null;
  /** Occurrences skipped at the start of every document (OneGen: its instruction holds one). Default 0. */
  skipFirst?: number;
  /** Most tokens per forward; a longer document is an error. Default DEFAULT_BATCH_TOKENS. */
  batchTokens?: number;
  /** For text documents. */
  tokenizer?: Tokenizer | null;
  template?: DocumentTemplate;
  /** Add to this index (its model, doc token and skipFirst must match); default: a new index. */
  index?: DocumentIndex;
  /** Vector dtype of a new index (default f16 when available). */
  dtype?: IndexDtype;
  /** KV cache dtype for encoding (default: the decoder's default, f16 when available). */
  cacheDtype?: DType;
  onProgress?: (p: EncodeProgress) => void;
}

interface Prepared {
  id: string;
  ids: number[];
  /** Kept doc-token positions (after skipping). */
  positions: number[];
}

export function renderDocument(text: string, docToken: string, template: DocumentTemplate = DEFAULT_DOCUMENT_TEMPLATE): string {
  if (typeof template === "function") return template(text, docToken);
  return template.split("{text}").map((s) => s.split("{doc_token}").join(docToken)).join(text);
}

/** Tokenizes and validates every document before any GPU work (a bad document fails fast). */
export function prepareDocuments(docs: readonly DocumentInput[], opts: EncodeOptions, vocabSize: number, maxTokens: number, contextLength: number): Prepared[] {
  const skip = opts.skipFirst ?? 0;
  const seen = new Set<string>();
  const tokName = opts.docTokenName ?? opts.tokenizer?.idToToken(opts.docTokenId) ?? null;
  return docs.map((d, i) => {
    const what = `document ${i} ('${String(d.id)}')`;
    if (typeof d.id !== "string" || d.id === "") throw new UsageError(`document ${i}: id must be a non-empty string, got ${JSON.stringify(d.id)}`);
    if (seen.has(d.id) || opts.index?.documentNumber(d.id) !== undefined) throw new UsageError(`${what}: the id '${d.id}' is used twice`);
    seen.add(d.id);
    let ids: number[];
    if ((d.ids === undefined) === (d.text === undefined)) throw new UsageError(`${what}: give exactly one of "ids" or "text"`);
    if (d.ids !== undefined) {
      ids = [...d.ids];
      for (const [p, t] of ids.entries()) {
        if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new UsageError(`${what}: token ${p} is ${t}, outside the vocabulary (0..${vocabSize - 1})`);
      }
    } else {
      if (typeof d.text !== "string") throw new UsageError(`${what}: "text" must be a string`);
      if (!opts.tokenizer) throw new UsageError(`${what} is text, but the model has no tokenizer`, "give pre-tokenized documents as {\"id\", \"ids\": [...]}");
      if (tokName === null) throw new UsageError(`${what}: the doc token ${opts.docTokenId} has no name in the tokenizer, so text documents cannot be rendered`);
      ids = opts.tokenizer.encode(renderDocument(d.text, tokName, opts.template));
    }
    if (ids.length === 0) throw new UsageError(`${what} has no tokens`);
    if (ids.length > contextLength) throw new UsageError(`${what} has ${ids.length} tokens, more than the model's context of ${contextLength}`);
    if (ids.length > maxTokens) throw new UsageError(`${what} has ${ids.length} tokens, more than the ${maxTokens} tokens per batch`, "raise --batch-tokens");
    const all: number[] = [];
    ids.forEach((t, p) => {
      if (t === opts.docTokenId) all.push(p);
    });
    if (all.length <= skip) {
      throw new UsageError(
        `${what} has ${all.length} occurrence(s) of the doc token ${tokName ?? ""}(id ${opts.docTokenId})${skip ? `, and the first ${skip} are skipped` : ""}: nothing to index`,
        d.text !== undefined ? "the doc token must be a single token of the tokenizer (an added/special token)" : undefined,
      );
    }
    return { id: d.id, ids, positions: all.slice(skip) };
  });
}

/** Greedy packing in input order: batches of consecutive documents with ≤ maxTokens tokens. */
export function packBatches(lengths: readonly number[], maxTokens: number): number[][] {
  const batches: number[][] = [];
  let cur: number[] = [];
  let used = 0;
  lengths.forEach((n, i) => {
    if (cur.length > 0 && used + n > maxTokens) {
      batches.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(i);
    used += n;
  });
  if (cur.length) batches.push(cur);
  return batches;
}

/**
 * Encodes documents into a DocumentIndex (a new one, or opts.index) and returns it. Entries are
 * appended in document order, fragments numbered from 0 per document after the skipped
 * occurrences. Every document is validated before any GPU work: documents longer than
 * batchTokens or the model's context, without a doc token left after skipping, with ids
 * outside the vocabulary or with a duplicate id are errors naming them (the index is unchanged).
 * A later failure leaves the batches completed before it in the index.
 */
export async function encodeDocuments(decoder: Decoder, docs: readonly DocumentInput[], opts: EncodeOptions): Promise<DocumentIndex> {
  const ctx = decoder.ctx;
  const V = decoder.vocabSize;
  if (!Number.isInteger(opts.docTokenId) || opts.docTokenId < 0 || opts.docTokenId >= V) {
    throw new UsageError(`encodeDocuments: doc token id ${opts.docTokenId} is outside the vocabulary (0..${V - 1})`);
  }
  const skip = opts.skipFirst ?? 0;
  if (!Number.isInteger(skip) || skip < 0) throw new UsageError(`encodeDocuments: skipFirst must be a non-negative integer, got ${skip}`);
  const batchTokens = opts.batchTokens ?? DEFAULT_BATCH_TOKENS;
  if (!Number.isInteger(batchTokens) || batchTokens < 1) throw new UsageError(`encodeDocuments: batchTokens must be a positive integer, got ${batchTokens}`);
  const fp = await modelFingerprint(decoder);
  const tokName = opts.docTokenName ?? opts.tokenizer?.idToToken(opts.docTokenId) ?? null;
  let index = opts.index;
  if (index) {
    if (index.dim !== decoder.hiddenSize) throw new UsageError(`encodeDocuments: the index holds ${index.dim}-dimensional vectors, the model's hidden size is ${decoder.hiddenSize}`);
    if (index.model && index.model.fingerprint !== fp.fingerprint) {
      throw new UsageError(`encodeDocuments: the index was built by a different model (fingerprint ${index.model.fingerprint}, this model ${fp.fingerprint})`);
    }
    if (index.docToken && index.docToken.id !== opts.docTokenId) {
      throw new UsageError(`encodeDocuments: the index was built at doc token id ${index.docToken.id}, not ${opts.docTokenId}`);
    }
    if (index.count > 0 && index.skipFirst !== skip) throw new UsageError(`encodeDocuments: the index was built with skipFirst ${index.skipFirst}, not ${skip}`);
  }
  const prepared = prepareDocuments(docs, opts, V, batchTokens, decoder.config.maxPositionEmbeddings);
  if (!index) {
    index = DocumentIndex.create(ctx, decoder.hiddenSize, {
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
      model: fp,
      docToken: { id: opts.docTokenId, name: tokName },
      skipFirst: skip,
    });
  } else {
    index.model ??= fp;
    index.docToken ??= { id: opts.docTokenId, name: tokName };
    index.skipFirst = skip;
  }
  const batches = packBatches(prepared.map((p) => p.ids.length), batchTokens);
  const progress: EncodeProgress = {
    documentsDone: 0,
    documentsTotal: prepared.length,
    tokensDone: 0,
    tokensTotal: prepared.reduce((s, p) => s + p.ids.length, 0),
    entries: index.count,
    batchesDone: 0,
    batchesTotal: batches.length,
  };
  if (prepared.length === 0) return index;
  const rows = Math.max(...batches.map((b) => b.reduce((s, i) => s + prepared[i]!.ids.length, 0)));
  // The index's final size is known before any forward: planned with the KV cache of the largest
  // batch (sized by min(batchTokens, the documents' tokens)) against the budget left, then
  // reserved at once (no doubling, no transient copies).
  const cacheDtype = opts.cacheDtype ?? (ctx.hasF16 ? "f16" : "f32");
  const kvBytes = kvCacheBytes(decoder.config, rows, DTYPE_BYTES[cacheDtype]);
  const entries = index.count + prepared.reduce((s, p) => s + p.positions.length, 0);
  const tokens = index.totalTokens + progress.tokensTotal;
  const documents = index.documentCount + prepared.length;
  const indexBytes = indexGpuBytes({ count: entries, dim: index.dim, dtype: index.dtype, totalTokens: tokens, documentCount: documents }).totalBytes;
  if (kvBytes + indexBytes > ctx.memoryAvailable) {
    throw new GpuOutOfMemoryError(
      `encodeDocuments: the index of ${entries} entries needs ${indexBytes} bytes and the KV cache of the largest batch (${rows} tokens, batchTokens ${batchTokens}) ${kvBytes} bytes, ` +
        `more than the ${ctx.memoryAvailable} bytes left of the GPU memory budget (${ctx.memoryBudget.source}); nothing was encoded`,
      "lower --batch-tokens, index fewer documents at a time, or raise the budget with --gpu-memory SIZE",
    );
  }
  index.reserve(entries, tokens, documents);
  const cache: KVCache = decoder.createCache(rows, opts.cacheDtype);
  const window = decoder.config.slidingWindow ?? 0;
  try {
    for (const batch of batches) {
      const T = batch.reduce((s, i) => s + prepared[i]!.ids.length, 0);
      const ids = new Uint32Array(T);
      const pos = new Uint32Array(T);
      const cacheRows = new Uint32Array(T);
      const ranges = new Uint32Array(2 * T);
      const pick: number[] = [];
      const owners: number[] = [];
      let s = 0;
      // Documents are added to the index only after their forward was encoded, so a failure
      // leaves the index as it was after the previous batch.
      let docNum = index.documentCount;
      for (const i of batch) {
        const doc = prepared[i]!;
        doc.ids.forEach((t, p) => {
          const row = s + p;
          ids[row] = t;
          pos[row] = p;
          cacheRows[row] = row;
          const end = row + 1;
          ranges[2 * row] = window > 0 && p + 1 > window ? end - window : s;
          ranges[2 * row + 1] = end;
        });
        for (const p of doc.positions) {
          pick.push(s + p);
          owners.push(docNum);
        }
        s += doc.ids.length;
        docNum++;
      }
      const plan = {
        ids: ctx.upload(ids, [T], "u32", "encode.ids"),
        ropePositions: ctx.upload(pos, [T], "u32", "encode.positions"),
        cacheRows: ctx.upload(cacheRows, [T], "u32", "encode.cacheRows"),
        ranges: ctx.upload(ranges, [T, 2], "u32", "encode.ranges"),
      };
      let hidden: Tensor | null = null;
      let picked: Tensor | null = null;
      try {
        hidden = (await decoder.forward(cache, plan, { logitsRows: "none", keepHidden: true })).hidden!;
        picked = await embedding(ctx, pick, hidden); // [R, D] f32 rows at the doc-token positions
        for (const i of batch) index.addDocument(prepared[i]!.id, prepared[i]!.ids);
        await index.appendEntries(picked, owners);
      } finally {
        for (const t of [plan.ids, plan.ropePositions, plan.cacheRows, plan.ranges, hidden, picked]) t?.dispose();
      }
      await ctx.sync();
      progress.documentsDone += batch.length;
      progress.tokensDone += T;
      progress.entries = index.count;
      progress.batchesDone++;
      opts.onProgress?.({ ...progress });
    }
  } finally {
    cache.dispose();
  }
  return index;
}
