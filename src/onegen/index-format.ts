// The on-disk format of a OneGen document index (src/onegen/index.ts): INDEX_DIR/manifest.json
// (IndexManifest, validated strictly by parseManifest) and INDEX_DIR/vectors.safetensors
// (`vectors` F16|F32 [count, D], `entries` U32 [count, 2], `tokens` U32 [totalTokens],
// `documents` U32 [docs, 2]), checked against the manifest by checkIndexFile; and the GPU bytes
// an index of a given manifest takes. Saving and loading: src/onegen/index-files.ts.

import { DTYPE_BYTES } from "../gpu/tensor.js";
import { LoadError } from "../errors.js";
import type { SafetensorsDtype, SafetensorsFile } from "../io/safetensors.js";
import type { DocToken, IndexDtype } from "./index.js";

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

/** The tensors of vectors.safetensors (header only) against the manifest: names, dtypes, shapes. */
export function checkIndexFile(file: SafetensorsFile, manifest: IndexManifest, fname: string): void {
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
