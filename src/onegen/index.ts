// The OneGen document index on the GPU: unit vectors (one per document-side token occurrence)
// searched by the fused top-k cosine kernel, plus every document's token ids for injection.
//
// GPU tensors (all grow by reallocation with amortized doubling, copied on the GPU; a tensor
// getter returns the current one, so callers must not hold on to it across add calls):
//   vectors     [capacity, D] f16 (default) or f32   rows [0, count) are L2-normalized entries
//   entryTable  [capacity, 2] u32                    entry e → (document number, fragment)
//   tokens      [tokenCapacity] u32                  all documents' token ids, back to back
//   docTable    [docCapacity, 2] u32                 document d → (token offset, token count)
// An entry is (document id, fragment): the fragment-th indexed document-side token of the
// document (numbered from 0 after any skipped occurrences). A document's entries are contiguous.
// The host mirrors the tables and the tokens (not the vectors), so lookups and saves need no
// readback of them.
//
// Search edge cases (defined): an empty index returns no hits; k larger than the number of
// entries returns all entries (k is clamped to count); k above TOPK_MAX_K is a UsageError; a
// zero query scores 0 against every entry (so the lowest entry numbers win, ties → lower entry).
//
// On disk: src/onegen/index-format.ts (manifest.json, the tensors of vectors.safetensors) and
// src/onegen/index-files.ts (saveIndex / loadIndex).

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { ShapeError, UsageError } from "../errors.js";
import { cosineIndexPack, cosineTopK, cosineTopKPreferredLayout, NO_ID, releaseCosineIndexPack, TOPK_MAX_K, type CosineTopKOptions } from "../ops/search.js";
import { l2normRows } from "../ops/l2norm.js";
import { f16ArrayToF32 } from "../util/f16.js";
import type { ModelFingerprint } from "./fingerprint.js";

export type IndexDtype = "f16" | "f32";

export interface IndexDocument {
  id: string;
  /** Number of the document's first entry (its entries are [firstEntry, firstEntry + fragments)). */
  firstEntry: number;
  fragments: number;
  /** Offset of its tokens in the token buffer, and their count. */
  tokenOffset: number;
  tokenCount: number;
}

export interface SearchHit {
  /** Document id. */
  id: string;
  fragment: number;
  /** Cosine similarity of the query with the entry (f32 dot product with the stored unit row). */
  score: number;
  /** Entry number (row of `vectors`). */
  entry: number;
}

/** The document-side token the entries were taken at. */
export interface DocToken {
  id: number;
  /** Its name when known (e.g. "[SE]"), else null. */
  name: string | null;
}

export interface DocumentIndexOptions {
  /**
   * Vector storage, default f16 on every device: without shader-f16 the kernels read and write it
   * as packed pairs, so an index gives the same scores whatever the adapter.
   */
  dtype?: IndexDtype;
  /** Initial capacities (entries, tokens, documents); they grow as needed. */
  capacity?: number;
  tokenCapacity?: number;
  documentCapacity?: number;
  /** The model that produced the vectors (null for synthetic vectors). */
  model?: ModelFingerprint | null;
  docToken?: DocToken | null;
  /** Occurrences of the doc token skipped at the start of every document. */
  skipFirst?: number;
}

const GROWTH_MIN = 64;

export class DocumentIndex {
  private _vectors: Tensor;
  private _entryTable: Tensor;
  private _tokens: Tensor;
  private _docTable: Tensor;
  private _count = 0;
  private _tokenCount = 0;
  private _maxTokenId = -1;
  private entryDoc: Uint32Array = new Uint32Array(0);
  private entryFragment: Uint32Array = new Uint32Array(0);
  private hostTokens: Uint32Array = new Uint32Array(0);
  private readonly docs: IndexDocument[] = [];
  private readonly byId = new Map<string, number>();
  private disposed = false;
  model: ModelFingerprint | null;
  docToken: DocToken | null;
  skipFirst: number;

  private constructor(
    readonly ctx: GpuContext,
    /** Vector length D (the model's hidden size). */
    readonly dim: number,
    readonly dtype: IndexDtype,
    opts: DocumentIndexOptions,
  ) {
    const cap = Math.max(1, opts.capacity ?? GROWTH_MIN);
    this._vectors = ctx.empty([cap, dim], dtype, "index.vectors");
    this._entryTable = ctx.empty([cap, 2], "u32", "index.entries");
    this._tokens = ctx.empty([Math.max(1, opts.tokenCapacity ?? 1024)], "u32", "index.tokens");
    this._docTable = ctx.empty([Math.max(1, opts.documentCapacity ?? GROWTH_MIN), 2], "u32", "index.documents");
    this.model = opts.model ?? null;
    this.docToken = opts.docToken ?? null;
    this.skipFirst = opts.skipFirst ?? 0;
  }

  /** An empty index of D-dimensional vectors. */
  static create(ctx: GpuContext, dim: number, opts: DocumentIndexOptions = {}): DocumentIndex {
    if (!Number.isInteger(dim) || dim < 1) throw new UsageError(`DocumentIndex: dimension must be a positive integer, got ${dim}`);
    const dtype = opts.dtype ?? "f16";
    if (dtype !== "f16" && dtype !== "f32") throw new UsageError(`DocumentIndex: dtype must be f16 or f32, got '${String(dtype)}'`);
    const skip = opts.skipFirst ?? 0;
    if (!Number.isInteger(skip) || skip < 0) throw new UsageError(`DocumentIndex: skipFirst must be a non-negative integer, got ${skip}`);
    return new DocumentIndex(ctx, dim, dtype, opts);
  }

  // ---------------------------------------------------------------- accessors

  /** Entries (vectors) in the index. */
  get count(): number {
    return this._count;
  }
  get documentCount(): number {
    return this.docs.length;
  }
  get totalTokens(): number {
    return this._tokenCount;
  }
  /**
   * The largest token id of any document (−1 without tokens). Injected documents are fed to the
   * model's embedding gather on the GPU, which cannot refuse an id: a model must have more ids
   * than this (checked by loadIndex with a decoder and by streamRun before a run that injects).
   */
  get maxTokenId(): number {
    return this._maxTokenId;
  }
  /** Rows allocated for vectors (≥ count). */
  get capacity(): number {
    return this._vectors.shape[0]!;
  }
  /** [capacity, D] unit vectors; rows ≥ count are undefined. Replaced when the index grows. */
  get vectors(): Tensor {
    return this._vectors;
  }
  /** [capacity, 2] u32: entry → (document number, fragment). */
  get entryTable(): Tensor {
    return this._entryTable;
  }
  /** [tokenCapacity] u32: document tokens back to back (first totalTokens are valid). */
  get tokens(): Tensor {
    return this._tokens;
  }
  /** [documentCapacity, 2] u32: document number → (token offset, token count). */
  get documentTable(): Tensor {
    return this._docTable;
  }
  get documents(): readonly IndexDocument[] {
    return this.docs;
  }
  /** Document number of an id, or undefined. */
  documentNumber(id: string): number | undefined {
    return this.byId.get(id);
  }
  /** Host copy of a document's token ids. */
  documentTokens(doc: number | string): Uint32Array {
    const d = this.docs[typeof doc === "string" ? (this.byId.get(doc) ?? -1) : doc];
    if (!d) throw new UsageError(`DocumentIndex: no document ${JSON.stringify(doc)}`);
    return this.hostTokens.slice(d.tokenOffset, d.tokenOffset + d.tokenCount);
  }
  /** What an entry number refers to. */
  entry(e: number): { id: string; document: number; fragment: number } {
    if (!Number.isInteger(e) || e < 0 || e >= this._count) throw new UsageError(`DocumentIndex: entry ${e} is outside [0, ${this._count})`);
    const doc = this.entryDoc[e]!;
    return { id: this.docs[doc]!.id, document: doc, fragment: this.entryFragment[e]! };
  }

  // ---------------------------------------------------------------- adding

  /** Adds a document (no entries yet) and its tokens; returns its document number. */
  addDocument(id: string, tokens: ArrayLike<number>): number {
    this.assertLive();
    if (typeof id !== "string" || id === "") throw new UsageError(`DocumentIndex: document ids must be non-empty strings, got ${JSON.stringify(id)}`);
    if (this.byId.has(id)) throw new UsageError(`DocumentIndex: a document with id '${id}' is already in the index`);
    const toks = Uint32Array.from(tokens as ArrayLike<number>);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw new UsageError(`DocumentIndex: document '${id}': token ${i} is ${t}, not a token id`);
    }
    const docNum = this.docs.length;
    this.reserve(this._count, this._tokenCount + toks.length, docNum + 1);
    if (toks.length > 0) this.ctx.write(this._tokens, toks, this._tokenCount);
    this.ctx.write(this._docTable, Uint32Array.of(this._tokenCount, toks.length), docNum * 2);
    this.hostTokens = growU32(this.hostTokens, this._tokenCount + toks.length);
    this.hostTokens.set(toks, this._tokenCount);
    this.docs.push({ id, firstEntry: this._count, fragments: 0, tokenOffset: this._tokenCount, tokenCount: toks.length });
    this.byId.set(id, docNum);
    this._tokenCount += toks.length;
    for (const t of toks) if (t > this._maxTokenId) this._maxTokenId = t;
    return docNum;
  }

  /**
   * Appends entries: row r of `rows` [R, D] f32 (raw, e.g. final-norm hidden states) is
   * L2-normalized into entry count + r, which belongs to entries[r].document. Each document's
   * entries must continue its own (contiguous) run: a document that already has entries must own
   * the last entries of the index. Fragments are numbered on from the document's current count.
   * Encodes only (no submit).
   */
  async appendEntries(rows: Tensor, documents: readonly number[]): Promise<void> {
    this.assertLive();
    if (rows.shape.length !== 2 || rows.shape[1] !== this.dim) {
      throw new ShapeError(`DocumentIndex.appendEntries: rows ('${rows.label}') have shape [${rows.shape.join(", ")}], expected [R, ${this.dim}]`);
    }
    const R = rows.shape[0]!;
    if (documents.length !== R) throw new ShapeError(`DocumentIndex.appendEntries: ${R} rows but ${documents.length} document numbers`);
    if (R === 0) return;
    // Validate contiguity before touching anything.
    const pending = new Map<number, number>();
    let prev = -1;
    for (const d of documents) {
      const doc = this.docs[d];
      if (!doc) throw new UsageError(`DocumentIndex.appendEntries: no document number ${d}`);
      if (d !== prev) {
        if (pending.has(d)) throw new UsageError(`DocumentIndex.appendEntries: entries of document '${doc.id}' are not contiguous`);
        if (doc.fragments > 0 && (doc.firstEntry + doc.fragments !== this._count || pending.size > 0)) {
          throw new UsageError(`DocumentIndex.appendEntries: document '${doc.id}' already has entries that are not the last of the index`);
        }
        prev = d;
      }
      pending.set(d, (pending.get(d) ?? 0) + 1);
    }
    const n0 = this._count;
    this.reserve(n0 + R, this._tokenCount, this.docs.length);
    await l2normRows(this.ctx, rows, this._vectors, n0);
    const table = new Uint32Array(2 * R);
    for (let r = 0; r < R; r++) {
      const d = documents[r]!;
      const doc = this.docs[d]!;
      if (doc.fragments === 0) doc.firstEntry = n0 + r;
      table[2 * r] = d;
      table[2 * r + 1] = doc.fragments;
      this.entryDoc[n0 + r] = d;
      this.entryFragment[n0 + r] = doc.fragments;
      doc.fragments++;
    }
    this.ctx.write(this._entryTable, table, n0 * 2);
    this._count = n0 + R;
    await this.keepSearchCopy();
  }

  /**
   * Extends the search's tiled copy of the vectors (cosineIndexPack) to the current count where
   * this device class scans that layout, so that no search has to make it (a search may be
   * encoded inside a captured step, where a copy must not happen).
   */
  private async keepSearchCopy(): Promise<void> {
    if (this._count > 0 && cosineTopKPreferredLayout(this.ctx) === "tiled") await cosineIndexPack(this.ctx, this._vectors, this._count);
  }

  /**
   * Adds a document whose vectors are given on the host (synthetic data, or vectors computed
   * elsewhere): vectors [n·D] f32, normalized on the GPU, as fragments 0..n−1. Uploads in chunks.
   */
  async addVectors(id: string, vectors: Float32Array, tokens: ArrayLike<number> = []): Promise<number> {
    if (vectors.length % this.dim !== 0) throw new ShapeError(`DocumentIndex.addVectors('${id}'): ${vectors.length} values are not whole rows of ${this.dim}`);
    const n = vectors.length / this.dim;
    const doc = this.addDocument(id, tokens);
    this.reserve(this._count + n, this._tokenCount, this.docs.length);
    const chunkRows = Math.max(1, Math.floor((16 << 20) / (this.dim * 4)));
    for (let r = 0; r < n; r += chunkRows) {
      const m = Math.min(chunkRows, n - r);
      const t = this.ctx.upload(vectors.subarray(r * this.dim, (r + m) * this.dim), [m, this.dim], "f32", "index.addVectors");
      await this.appendEntries(t, new Array<number>(m).fill(doc));
      t.dispose();
      this.ctx.submit();
    }
    return doc;
  }

  /** Grows the GPU tensors (and host mirrors) to hold at least these counts. */
  reserve(entries: number, tokens: number, documents: number): void {
    this.assertLive();
    const ctx = this.ctx;
    const next = (have: number, need: number): number => Math.max(need, have * 2, GROWTH_MIN);
    if (entries > this._vectors.shape[0]!) {
      const cap = next(this._vectors.shape[0]!, entries);
      releaseCosineIndexPack(this._vectors); // the search's tiled copy of the old tensor, if any
      this._vectors = regrow(ctx, this._vectors, [cap, this.dim], this._count * this.dim * DTYPE_BYTES[this.dtype]);
      this._entryTable = regrow(ctx, this._entryTable, [cap, 2], this._count * 8);
    }
    if (entries > this.entryDoc.length) {
      const cap = Math.max(entries, this.entryDoc.length * 2, GROWTH_MIN);
      this.entryDoc = growU32(this.entryDoc, cap);
      this.entryFragment = growU32(this.entryFragment, cap);
    }
    if (tokens > this._tokens.shape[0]!) {
      this._tokens = regrow(ctx, this._tokens, [next(this._tokens.shape[0]!, tokens)], this._tokenCount * 4);
    }
    if (documents > this._docTable.shape[0]!) {
      this._docTable = regrow(ctx, this._docTable, [next(this._docTable.shape[0]!, documents), 2], this.docs.length * 8);
    }
  }

  // ---------------------------------------------------------------- search

  /**
   * Encodes a top-k search over the entries on the GPU (no submit, no readback): ids u32 and
   * scores f32, shaped [k] for a query [D] (or [Q, k] for [Q, D]). Entry ids; the tail past count
   * holds NO_ID / −inf. Throws UsageError on an empty index (the host cannot make hits of nothing).
   * `gate` (u32 [1]): the search's dispatches return at once when gate[0] = 0, leaving the outputs
   * untouched (cosineTopK's option); `normWeight`: the query is a raw hidden row scored as h ∘ g.
   */
  /**
   * Makes ahead of time what searchGpu reads (the lane-interleaved copy of the vectors on devices
   * that scan that layout; kept up to date by every add, so this is a check), so that a decode step
   * captured after this call never contains the copy.
   */
  async prepareSearchGpu(): Promise<void> {
    this.assertLive();
    await this.keepSearchCopy();
  }

  async searchGpu(query: Tensor, k: number, opts: Pick<CosineTopKOptions, "outIds" | "outScores" | "gate" | "normWeight"> = {}): Promise<{ ids: Tensor; scores: Tensor }> {
    this.assertLive();
    if (this._count === 0) throw new UsageError("DocumentIndex.searchGpu: the index is empty");
    return cosineTopK(this.ctx, query, this._vectors, k, { count: this._count, ...opts });
  }

  /**
   * The k entries most similar to `query` (a [D] f32 tensor, or host values), best first; ties
   * → lower entry number. k > count returns all count entries; an empty index returns [].
   * One readback.
   */
  async search(query: Tensor | Float32Array | readonly number[], k: number): Promise<SearchHit[]> {
    this.assertLive();
    if (!Number.isInteger(k) || k < 1) throw new UsageError(`DocumentIndex.search: k must be a positive integer, got ${k}`);
    if (k > TOPK_MAX_K) throw new UsageError(`DocumentIndex.search: k = ${k} exceeds the largest supported k (${TOPK_MAX_K})`);
    const ctx = this.ctx;
    let q: Tensor;
    let owned = false;
    if (query instanceof Float32Array || Array.isArray(query)) {
      if (query.length !== this.dim) throw new ShapeError(`DocumentIndex.search: the query has ${query.length} values, expected ${this.dim}`);
      q = ctx.upload(Float32Array.from(query as ArrayLike<number>), [this.dim], "f32", "index.query");
      owned = true;
    } else {
      q = query as Tensor;
      if (q.numel !== this.dim || q.dtype !== "f32") throw new ShapeError(`DocumentIndex.search: query ('${q.label}') is [${q.shape.join(", ")}] ${q.dtype}, expected ${this.dim} f32 values`);
      if (q.shape.length !== 1) q = q.view([this.dim]);
    }
    try {
      if (this._count === 0) return [];
      const kk = Math.min(k, this._count);
      const { ids, scores } = await cosineTopK(ctx, q, this._vectors, kk, { count: this._count });
      // one readback: ids and scores copied side by side
      const both = ctx.empty([2 * kk], "u32", "index.hits");
      ctx.copy(ids.buffer, 0, both.buffer, 0, kk * 4);
      ctx.copy(scores.buffer, 0, both.buffer, kk * 4, kk * 4);
      ids.dispose();
      scores.dispose();
      const raw = await both.read();
      both.dispose();
      const sc = new Float32Array(raw.buffer, raw.byteOffset + kk * 4, kk);
      const hits: SearchHit[] = [];
      for (let j = 0; j < kk; j++) {
        const e = raw[j]!;
        if (e === NO_ID) continue; // NaN-scoring rows are never returned
        hits.push({ id: this.docs[this.entryDoc[e]!]!.id, fragment: this.entryFragment[e]!, score: sc[j]!, entry: e });
      }
      return hits;
    } finally {
      if (owned) q.dispose();
    }
  }

  /** Reads the stored vectors [count, D] back as f32 values (for tests and tools). */
  async readVectors(): Promise<Float32Array> {
    if (this._count === 0) return new Float32Array(0);
    const bytes = await this.ctx.readBytes(this._vectors.buffer, 0, this._count * this.dim * DTYPE_BYTES[this.dtype]);
    return this.dtype === "f32" ? new Float32Array(bytes.buffer, bytes.byteOffset, this._count * this.dim) : f16ArrayToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, this._count * this.dim));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    releaseCosineIndexPack(this._vectors);
    for (const t of [this._vectors, this._entryTable, this._tokens, this._docTable]) t.dispose();
  }

  private assertLive(): void {
    if (this.disposed) throw new UsageError("DocumentIndex: used after dispose()");
  }

  /** @internal loadIndex: installs tables read from a file (the index must be fresh). */
  static async fromParts(ctx: GpuContext, parts: IndexParts, writeVectors: (index: DocumentIndex) => Promise<void>): Promise<DocumentIndex> {
    const ix = DocumentIndex.create(ctx, parts.dim, {
      dtype: parts.dtype,
      capacity: Math.max(1, parts.count),
      tokenCapacity: Math.max(1, parts.tokens.length),
      documentCapacity: Math.max(1, parts.documents.length),
      model: parts.model,
      docToken: parts.docToken,
      skipFirst: parts.skipFirst,
    });
    try {
      ix.reserve(parts.count, parts.tokens.length, parts.documents.length);
      for (const d of parts.documents) {
        ix.byId.set(d.id, ix.docs.length);
        ix.docs.push({ ...d });
      }
      ix.hostTokens = parts.tokens;
      ix._tokenCount = parts.tokens.length;
      for (const t of parts.tokens) if (t > ix._maxTokenId) ix._maxTokenId = t;
      if (parts.tokens.length) ctx.write(ix._tokens, parts.tokens);
      if (parts.documents.length) ctx.write(ix._docTable, Uint32Array.from(parts.documents.flatMap((d) => [d.tokenOffset, d.tokenCount])));
      const table = new Uint32Array(2 * parts.count);
      for (const [dn, d] of parts.documents.entries()) {
        for (let f = 0; f < d.fragments; f++) {
          const e = d.firstEntry + f;
          ix.entryDoc[e] = dn;
          ix.entryFragment[e] = f;
          table[2 * e] = dn;
          table[2 * e + 1] = f;
        }
      }
      if (parts.count) ctx.write(ix._entryTable, table);
      ix._count = parts.count;
      await writeVectors(ix);
      await ix.keepSearchCopy();
      return ix;
    } catch (e) {
      ix.dispose();
      throw e;
    }
  }
}

/** @internal */
export interface IndexParts {
  dim: number;
  dtype: IndexDtype;
  count: number;
  tokens: Uint32Array;
  documents: IndexDocument[];
  model: ModelFingerprint | null;
  docToken: DocToken | null;
  skipFirst: number;
}

function regrow(ctx: GpuContext, old: Tensor, shape: number[], usedBytes: number): Tensor {
  const t = ctx.empty(shape, old.dtype, old.label);
  const bytes = Math.ceil(usedBytes / 4) * 4;
  if (bytes > 0) ctx.copy(old.buffer, 0, t.buffer, 0, bytes);
  old.dispose(); // the copy is encoded before any later use of the released buffer
  return t;
}

function growU32(a: Uint32Array, n: number): Uint32Array {
  if (n <= a.length) return a;
  const b = new Uint32Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}
