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
// Files (saveIndex / loadIndex): INDEX_DIR/vectors.safetensors (`vectors` F16|F32 [count, D],
// `entries` U32 [count, 2], `tokens` U32 [totalTokens], `documents` U32 [docs, 2]) and
// INDEX_DIR/manifest.json (see IndexManifest), plus the output tag onegen-output.json. Saving
// writes a temporary directory next to the target, fsyncs it, then swaps it in with renames
// (src/io/output.ts, see saveIndex); loading recovers an interrupted swap first, and refuses an index of
// another model (fingerprint, src/onegen/fingerprint.ts) and any file that disagrees with the
// manifest (shapes, CRC-32 checksums, row norms).

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import type { Decoder } from "../model/decoder.js";
import { LoadError, ShapeError, UsageError } from "../errors.js";
import { cosineIndexPack, cosineTopK, cosineTopKPreferredLayout, NO_ID, releaseCosineIndexPack, TOPK_MAX_K, type CosineTopKOptions } from "../ops/search.js";
import { l2normRows } from "../ops/l2norm.js";
import { layoutSafetensors, SafetensorsFile, type SafetensorsDtype } from "../io/safetensors.js";
import { joinName, readJson, toModelDir, type ModelDir } from "../io/source.js";
import { nodeIo, recoverOutput, writeDirAtomic, type InputPath } from "../io/output.js";
import { f16ArrayToF32 } from "../util/f16.js";
import { modelFingerprint, type ModelFingerprint } from "./fingerprint.js";

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
   * encoded inside a gated block or a captured step, where a copy must not happen).
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

// ==================================================================== files

export const INDEX_FORMAT = "onegen-index";
export const INDEX_VERSION = 1;
export const VECTORS_FILE = "vectors.safetensors";
export const MANIFEST_FILE = "manifest.json";

/** manifest.json of a saved index. */
export interface IndexManifest {
  format: typeof INDEX_FORMAT;
  version: number;
  model: { fingerprint: string | null; weightDtypes: Record<string, number> | null };
  dim: number;
  dtype: IndexDtype;
  /** Entries. */
  count: number;
  totalTokens: number;
  docToken: DocToken | null;
  skipFirst: number;
  documents: { id: string; fragments: number; firstEntry: number; tokenOffset: number; tokenCount: number }[];
  /** CRC-32 (hex) of each tensor's bytes in vectors.safetensors. */
  checksums: Record<string, string>;
  created: string;
}

/** A sink for one file of a save (replaceable to inject failures in tests). */
export interface IndexFileWriter {
  write(bytes: Uint8Array): Promise<void>;
  /** Flushes to stable storage (fsync). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface SaveIndexOptions {
  /** Opens a file for writing (default: an exclusive, fsync'd file of the temporary directory). */
  openWriter?: (path: string) => Promise<IndexFileWriter>;
  /** Names `dir` in messages (the CLI passes "--out"). */
  flag?: string;
  /** Paths the index must not replace or hold (the CLI's --model, --docs). */
  inputs?: readonly InputPath[];
}

const SAVE_CHUNK = 16 << 20;

/**
 * Saves the index to directory `dir`, atomically (src/io/output.ts writeDirAtomic): everything is
 * written into a fresh temporary sibling (`.NAME.tmp-…`), each file fsync'd, then swapped in
 * (the previous index renamed aside to `.NAME.old-…` and removed last). A failure while writing
 * removes the temporary directory and leaves `dir` untouched; a crash at any point leaves the old
 * or the new index, which loadIndex recovers. `dir` must be absent, empty or an index (its
 * manifest.json says "format": "onegen-index"), and its parent must exist; anything else is
 * refused (UsageError) before anything is written.
 */
export async function saveIndex(index: DocumentIndex, dir: string, opts: SaveIndexOptions = {}): Promise<void> {
  const { path } = await nodeIo();
  await writeDirAtomic(
    dir,
    "index",
    async (w) => {
      const open = opts.openWriter ?? ((p: string) => w.open(path.basename(p)));
      const checksums = await writeVectorsFile(index, path.join(w.dir, VECTORS_FILE), open);
      const manifest: IndexManifest = {
        format: INDEX_FORMAT,
        version: INDEX_VERSION,
        model: { fingerprint: index.model?.fingerprint ?? null, weightDtypes: index.model?.weightDtypes ?? null },
        dim: index.dim,
        dtype: index.dtype,
        count: index.count,
        totalTokens: index.totalTokens,
        docToken: index.docToken,
        skipFirst: index.skipFirst,
        documents: index.documents.map((d) => ({ id: d.id, fragments: d.fragments, firstEntry: d.firstEntry, tokenOffset: d.tokenOffset, tokenCount: d.tokenCount })),
        checksums,
        created: new Date().toISOString(),
      };
      const mw = await open(path.join(w.dir, MANIFEST_FILE));
      try {
        await mw.write(new TextEncoder().encode(JSON.stringify(manifest, null, 1) + "\n"));
        await mw.sync();
      } finally {
        await mw.close();
      }
    },
    { flag: opts.flag ?? "saveIndex: dir", ...(opts.inputs ? { inputs: opts.inputs } : {}) },
  );
}

/** The tensors of vectors.safetensors, each with a function streaming its bytes in chunks. */
function fileTensors(index: DocumentIndex): Map<string, { dtype: SafetensorsDtype; shape: number[]; chunks: () => AsyncGenerator<Uint8Array> }> {
  const ctx = index.ctx;
  const D = index.dim;
  const rowBytes = D * DTYPE_BYTES[index.dtype];
  const u32 = (a: Uint32Array) =>
    async function* () {
      yield new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    };
  const entries = new Uint32Array(2 * index.count);
  for (let e = 0; e < index.count; e++) {
    const x = index.entry(e);
    entries[2 * e] = x.document;
    entries[2 * e + 1] = x.fragment;
  }
  const tokens = new Uint32Array(index.totalTokens);
  const docs = new Uint32Array(2 * index.documentCount);
  index.documents.forEach((d, i) => {
    tokens.set(index.documentTokens(i), d.tokenOffset);
    docs[2 * i] = d.tokenOffset;
    docs[2 * i + 1] = d.tokenCount;
  });
  const vectors = index.vectors;
  return new Map([
    [
      "vectors",
      {
        dtype: index.dtype === "f16" ? "F16" : "F32",
        shape: [index.count, D],
        chunks: async function* () {
          const rowsPer = Math.max(2, Math.floor(SAVE_CHUNK / rowBytes));
          for (let r = 0; r < index.count; r += rowsPer) {
            const m = Math.min(rowsPer, index.count - r);
            yield await ctx.readBytes(vectors.buffer, r * rowBytes, m * rowBytes);
          }
        },
      },
    ],
    ["entries", { dtype: "U32", shape: [index.count, 2], chunks: u32(entries) }],
    ["tokens", { dtype: "U32", shape: [index.totalTokens], chunks: u32(tokens) }],
    ["documents", { dtype: "U32", shape: [index.documentCount, 2], chunks: u32(docs) }],
  ]);
}

async function writeVectorsFile(index: DocumentIndex, file: string, open: (p: string) => Promise<IndexFileWriter>): Promise<Record<string, string>> {
  const tensors = fileTensors(index);
  const layout = layoutSafetensors(tensors, { format: INDEX_FORMAT, version: String(INDEX_VERSION) });
  const checksums: Record<string, string> = {};
  const w = await open(file);
  try {
    await w.write(layout.headerBytes);
    for (const name of layout.order) {
      let crc = CRC_INIT;
      for await (const chunk of tensors.get(name)!.chunks()) {
        crc = crc32Update(crc, chunk);
        await w.write(chunk);
      }
      checksums[name] = crc32Hex(crc);
    }
    await w.sync();
  } finally {
    await w.close();
  }
  return checksums;
}

export interface LoadIndexOptions {
  /** Skip the per-row norm check of the vectors (it costs one pass over them on the host). */
  skipNormCheck?: boolean;
}

/**
 * Loads an index saved by saveIndex. `decoder`: the model that will query it; the index must
 * have been built by the same model (fingerprint), else LoadError. Pass null only for an index
 * of synthetic vectors or for inspection: no model check is made then.
 * Refuses (LoadError naming the file) a missing or malformed manifest, a truncated or malformed
 * vectors.safetensors, tensors whose shapes or dtypes disagree with the manifest, checksum
 * mismatches, and stored rows that are not unit (or zero) vectors.
 */
export async function loadIndex(ctx: GpuContext, dir: string | ModelDir, decoder: Decoder | null, opts: LoadIndexOptions = {}): Promise<DocumentIndex> {
  const md = await openIndexDir(dir);
  const where = md.name;
  const manifest = parseManifest(await readJson(md, MANIFEST_FILE), joinName(where, MANIFEST_FILE));
  if (decoder) {
    if (manifest.dim !== decoder.hiddenSize) {
      throw new LoadError(`index '${where}' holds vectors of ${manifest.dim} dimensions, the model's hidden size is ${decoder.hiddenSize}: it was built by a different model`);
    }
    const fp = await modelFingerprint(decoder);
    if (manifest.model.fingerprint !== fp.fingerprint) {
      throw new LoadError(
        `index '${where}' was built by a different model: its fingerprint is ${manifest.model.fingerprint ?? "none (synthetic vectors)"}, the loaded model's is ${fp.fingerprint}`,
        "rebuild the index with `onegen index` using this model",
      );
    }
  }
  const source = await md.open(VECTORS_FILE);
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(source); // rejects truncation and malformed headers
  } catch (e) {
    await source.close?.();
    throw e;
  }
  try {
    const fname = joinName(where, VECTORS_FILE);
    checkIndexFile(file, manifest, fname);
    const { count, dim } = manifest;
    // The device: the vectors must fit one buffer, and the index's tables the memory budget left.
    const { vectorBytes, totalBytes: indexBytes } = indexGpuBytes({ ...manifest, documentCount: manifest.documents.length });
    if (vectorBytes > ctx.limits.maxBufferSize) {
      throw new LoadError(`index '${where}': ${count} vectors of ${dim} ${manifest.dtype} take ${vectorBytes} bytes, over this device's maxBufferSize of ${ctx.limits.maxBufferSize}`);
    }
    if (indexBytes > ctx.memoryAvailable) {
      throw new LoadError(
        `index '${where}' needs ${indexBytes} bytes of GPU memory (vectors ${vectorBytes}, tables ${indexBytes - vectorBytes}); ` +
          `${ctx.pool.stats.liveBytes} bytes are in use (the model and caches) of the budget of ${ctx.memoryBudget.bytes} (${ctx.memoryBudget.source}); nothing was loaded`,
        "raise the budget with --gpu-memory SIZE, or use a smaller index",
      );
    }
    const readU32 = async (name: string): Promise<Uint32Array> => {
      const bytes = await file.readBytes(name);
      checkCrc(manifest, name, crc32Update(CRC_INIT, bytes), fname);
      const copy = bytes.slice();
      return new Uint32Array(copy.buffer, 0, copy.byteLength / 4);
    };
    const tokens = await readU32("tokens");
    const docsT = await readU32("documents");
    const entries = await readU32("entries");
    // The tables must say what the manifest says.
    manifest.documents.forEach((d, i) => {
      if (docsT[2 * i] !== d.tokenOffset || docsT[2 * i + 1] !== d.tokenCount) {
        throw new LoadError(`'${fname}': documents[${i}] is (${docsT[2 * i]}, ${docsT[2 * i + 1]}), the manifest says document '${d.id}' has tokens (${d.tokenOffset}, ${d.tokenCount})`);
      }
      for (let f = 0; f < d.fragments; f++) {
        const e = d.firstEntry + f;
        if (entries[2 * e] !== i || entries[2 * e + 1] !== f) {
          throw new LoadError(`'${fname}': entries[${e}] is (${entries[2 * e]}, ${entries[2 * e + 1]}), the manifest says (document ${i} '${d.id}', fragment ${f})`);
        }
      }
    });
    const parts: IndexParts = {
      dim,
      dtype: manifest.dtype,
      count,
      tokens,
      documents: manifest.documents.map((d) => ({ ...d })),
      model: manifest.model.fingerprint ? { fingerprint: manifest.model.fingerprint, weightDtypes: manifest.model.weightDtypes ?? {} } : null,
      docToken: manifest.docToken,
      skipFirst: manifest.skipFirst,
    };
    return await DocumentIndex.fromParts(ctx, parts, async (ix) => {
      const elBytes = DTYPE_BYTES[manifest.dtype];
      const rowBytes = dim * elBytes;
      const rowsPer = Math.max(2, Math.floor(SAVE_CHUNK / rowBytes / 2) * 2); // even: f16 writes at 4-byte offsets
      let crc = CRC_INIT;
      for (let r = 0; r < count; r += rowsPer) {
        const m = Math.min(rowsPer, count - r);
        const bytes = (await file.readBytes("vectors", r * rowBytes, m * rowBytes)).slice();
        crc = crc32Update(crc, bytes);
        const vals = manifest.dtype === "f32" ? new Float32Array(bytes.buffer, 0, m * dim) : new Uint16Array(bytes.buffer, 0, m * dim);
        if (!opts.skipNormCheck) checkNorms(vals, m, dim, r, fname);
        ctx.write(ix.vectors, vals, r * dim);
      }
      checkCrc(manifest, "vectors", crc, fname);
    });
  } finally {
    await file.close();
  }
}

/** The tensors of vectors.safetensors (header only) against the manifest: names, dtypes, shapes. */
function checkIndexFile(file: SafetensorsFile, manifest: IndexManifest, fname: string): void {
  const expect = (name: string, dtype: SafetensorsDtype, shape: number[]): void => {
    if (!file.has(name)) throw new LoadError(`'${fname}' has no tensor '${name}'`);
    const t = file.info(name);
    if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new LoadError(`'${fname}': tensor '${name}' is ${t.dtype} [${t.shape.join(", ")}], the manifest says ${dtype} [${shape.join(", ")}]`);
    }
  };
  expect("vectors", manifest.dtype === "f16" ? "F16" : "F32", [manifest.count, manifest.dim]);
  expect("entries", "U32", [manifest.count, 2]);
  expect("tokens", "U32", [manifest.totalTokens]);
  expect("documents", "U32", [manifest.documents.length, 2]);
  if (file.tensors.length !== 4) throw new LoadError(`'${fname}' holds ${file.tensors.length} tensors, expected 4 (vectors, entries, tokens, documents)`);
}

/** GPU bytes a loaded index takes: vectors [count, D], entry table [count, 2] u32, tokens, document table [docs, 2] u32. */
export function indexGpuBytes(m: Pick<IndexManifest, "count" | "dim" | "dtype" | "totalTokens"> & { documentCount: number }): { vectorBytes: number; totalBytes: number } {
  const vectorBytes = m.count * m.dim * DTYPE_BYTES[m.dtype];
  return { vectorBytes, totalBytes: vectorBytes + 8 * m.count + 4 * m.totalTokens + 8 * m.documentCount };
}

/**
 * The GPU bytes an index directory will take once loaded, from its manifest alone (validated;
 * nothing else is read): lets a command plan model + index against the memory budget before
 * loading either.
 */
export async function indexGpuBytesOf(dir: string | ModelDir): Promise<number> {
  const md = await openIndexDir(dir);
  const manifest = parseManifest(await readJson(md, MANIFEST_FILE), joinName(md.name, MANIFEST_FILE));
  const source = await md.open(VECTORS_FILE);
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(source); // the header only
  } catch (e) {
    await source.close?.();
    throw e;
  }
  try {
    checkIndexFile(file, manifest, joinName(md.name, VECTORS_FILE));
  } finally {
    await file.close();
  }
  return indexGpuBytes({ ...manifest, documentCount: manifest.documents.length }).totalBytes;
}

async function openIndexDir(dir: string | ModelDir): Promise<ModelDir> {
  if (typeof dir !== "string") return dir;
  const { fs, path } = await nodeIo();
  const target = path.resolve(dir);
  // A save interrupted while swapping directories leaves the previous index aside: put it back.
  await recoverOutput(target);
  try {
    await fs.stat(target);
  } catch {
    throw new LoadError(`index directory '${dir}' does not exist`);
  }
  return toModelDir(dir);
}

function checkNorms(vals: Float32Array | Uint16Array, rows: number, D: number, firstRow: number, fname: string): void {
  const f = vals instanceof Float32Array ? vals : f16ArrayToF32(vals);
  // f16 rows: each element carries ≤ 2⁻¹¹ relative rounding, so ‖row‖ is within ~1e-3 of 1.
  const tol = vals instanceof Float32Array ? 1e-4 : 4e-3;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += f[r * D + i]! ** 2;
    const n = Math.sqrt(ss);
    if (!(ss === 0 || Math.abs(n - 1) <= tol)) {
      throw new LoadError(`'${fname}': vector ${firstRow + r} has norm ${n}, expected 1 (or 0): the file is corrupt`);
    }
  }
}

function checkCrc(m: IndexManifest, name: string, crc: number, fname: string): void {
  const want = m.checksums[name];
  if (want === undefined) throw new LoadError(`${MANIFEST_FILE} beside '${fname}' has no checksum for tensor '${name}'`);
  if (crc32Hex(crc) !== want) throw new LoadError(`'${fname}': tensor '${name}' has CRC-32 ${crc32Hex(crc)}, the manifest says ${want}: the file is corrupt`);
}

/** Validates manifest.json strictly (every field, consistent counts). */
export function parseManifest(raw: unknown, file: string): IndexManifest {
  const bad = (what: string): never => {
    throw new LoadError(`'${file}': ${what}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) bad("not a JSON object");
  const m = raw as Record<string, unknown>;
  if (m.format !== INDEX_FORMAT) bad(`format is ${JSON.stringify(m.format)}, expected "${INDEX_FORMAT}"`);
  if (m.version !== INDEX_VERSION) bad(`version ${JSON.stringify(m.version)} is not supported (this build reads version ${INDEX_VERSION})`);
  const nat = (v: unknown, what: string, min = 0): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) bad(`${what} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const dim = nat(m.dim, "dim", 1);
  const count = nat(m.count, "count");
  const totalTokens = nat(m.totalTokens, "totalTokens");
  const skipFirst = nat(m.skipFirst, "skipFirst");
  if (m.dtype !== "f16" && m.dtype !== "f32") bad(`dtype is ${JSON.stringify(m.dtype)}, expected "f16" or "f32"`);
  const model = m.model as Record<string, unknown> | undefined;
  if (typeof model !== "object" || model === null) bad("model must be an object");
  const fp = model!.fingerprint;
  if (fp !== null && (typeof fp !== "string" || !/^sha256:[0-9a-f]{64}$/.test(fp))) bad(`model.fingerprint is ${JSON.stringify(fp)}`);
  const wd = model!.weightDtypes;
  if (wd !== null && (typeof wd !== "object" || Array.isArray(wd))) bad("model.weightDtypes must be an object or null");
  let docToken: DocToken | null = null;
  if (m.docToken !== null) {
    const dt = m.docToken as Record<string, unknown>;
    if (typeof dt !== "object" || dt === null) bad("docToken must be an object or null");
    docToken = { id: nat(dt.id, "docToken.id"), name: typeof dt.name === "string" ? dt.name : null };
  }
  if (!Array.isArray(m.documents)) bad("documents must be a list");
  const seen = new Set<string>();
  let entries = 0;
  let tokens = 0;
  const documents = (m.documents as unknown[]).map((x, i) => {
    const d = x as Record<string, unknown>;
    if (typeof d !== "object" || d === null) bad(`documents[${i}] is not an object`);
    if (typeof d.id !== "string" || d.id === "") bad(`documents[${i}].id must be a non-empty string`);
    if (seen.has(d.id as string)) bad(`document id '${d.id as string}' appears twice`);
    seen.add(d.id as string);
    const doc = {
      id: d.id as string,
      fragments: nat(d.fragments, `documents[${i}].fragments`),
      firstEntry: nat(d.firstEntry, `documents[${i}].firstEntry`),
      tokenOffset: nat(d.tokenOffset, `documents[${i}].tokenOffset`),
      tokenCount: nat(d.tokenCount, `documents[${i}].tokenCount`),
    };
    if (doc.tokenOffset !== tokens) bad(`documents[${i}].tokenOffset is ${doc.tokenOffset}, expected ${tokens} (documents' tokens are back to back)`);
    tokens += doc.tokenCount;
    if (doc.fragments > 0) {
      if (doc.firstEntry + doc.fragments > count) bad(`documents[${i}] entries [${doc.firstEntry}, ${doc.firstEntry + doc.fragments}) exceed count ${count}`);
      entries += doc.fragments;
    }
    return doc;
  });
  if (tokens !== totalTokens) bad(`the documents hold ${tokens} tokens, totalTokens says ${totalTokens}`);
  if (entries !== count) bad(`the documents hold ${entries} fragments, count says ${count}`);
  // No entry in two documents: sort the documents' entry ranges and compare neighbours (nothing
  // sized by `count` is allocated here; count is checked against vectors.safetensors by loadIndex).
  const ranges = documents.filter((d) => d.fragments > 0).sort((a, b) => a.firstEntry - b.firstEntry);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1]!;
    if (ranges[i]!.firstEntry < prev.firstEntry + prev.fragments) bad(`entry ${ranges[i]!.firstEntry} belongs to two documents ('${prev.id}' and '${ranges[i]!.id}')`);
  }
  const cs = m.checksums as Record<string, unknown>;
  if (typeof cs !== "object" || cs === null) bad("checksums must be an object");
  const checksums: Record<string, string> = {};
  for (const [k, v] of Object.entries(cs)) {
    if (typeof v !== "string" || !/^[0-9a-f]{8}$/.test(v)) bad(`checksums.${k} is ${JSON.stringify(v)}`);
    checksums[k] = v as string;
  }
  return {
    format: INDEX_FORMAT,
    version: INDEX_VERSION,
    model: { fingerprint: fp as string | null, weightDtypes: (wd as Record<string, number> | null) ?? null },
    dim,
    dtype: m.dtype as IndexDtype,
    count,
    totalTokens,
    docToken,
    skipFirst,
    documents,
    checksums,
    created: typeof m.created === "string" ? m.created : "",
  };
}

// ---------------------------------------------------------------- CRC-32 (IEEE, as zlib)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
const CRC_INIT = 0xffffffff;

function crc32Update(crc: number, bytes: Uint8Array): number {
  let c = crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}
function crc32Hex(crc: number): string {
  return ((crc ^ 0xffffffff) >>> 0).toString(16).padStart(8, "0");
}
