// Saving and loading a OneGen document index (format: src/onegen/index-format.ts). Saving
// writes a temporary directory next to the target, fsyncs it, then swaps it in with renames
// (src/io/output.ts, see saveIndex); loading recovers an interrupted swap first, and refuses an
// index of another model (fingerprint, src/onegen/fingerprint.ts) and any file that disagrees
// with the manifest (shapes, CRC-32 checksums, row norms). The output tag onegen-output.json sits
// beside the two files.

import type { GpuContext } from "../gpu/context.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import type { Decoder } from "../model/decoder.js";
import { LoadError } from "../errors.js";
import { SafetensorsFile, type SafetensorsDtype } from "../io/safetensors.js";
import { layoutSafetensors } from "../io/safetensors-write.js";
import { joinName, readJson, toModelDir, type ModelDir } from "../io/source.js";
import { nodeIo, recoverOutput, writeDirAtomic, type InputPath } from "../io/output.js";
import { f16ArrayToF32 } from "../util/f16.js";
import { CRC_INIT, crc32Hex, crc32Update } from "../util/crc32.js";
import { modelFingerprint } from "./fingerprint.js";
import { DocumentIndex, type IndexParts } from "./index.js";
import { checkIndexFile, indexGpuBytes, INDEX_FORMAT, INDEX_VERSION, MANIFEST_FILE, parseManifest, VECTORS_FILE, type IndexManifest } from "./index-format.js";

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
      // Injection feeds these ids to the model's embedding gather on the GPU, which cannot refuse one.
      if (decoder) {
        for (let t = d.tokenOffset; t < d.tokenOffset + d.tokenCount; t++) {
          if (tokens[t]! >= decoder.vocabSize) {
            throw new LoadError(`'${fname}': document '${d.id}' holds token id ${tokens[t]} (token ${t - d.tokenOffset}), outside the model's vocabulary (0..${decoder.vocabSize - 1})`);
          }
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
