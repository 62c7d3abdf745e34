// The demo's two document indexes (entity index INDEX_DIR/el, fragment index INDEX_DIR/mhqa):
// loaded from a local folder or over HTTP, or built from the data folder's documents and saved.
//
// No Node built-ins at load time (the demo page runs this file): node:fs is imported lazily, only
// for local folders.
import { LoadError, UsageError } from "../errors.js";
import { urlDir, type ModelDir } from "../io/source.js";
import type { GpuContext } from "../gpu/context.js";
import type { LoadedDecoder } from "../model/load.js";
import { encodeDocuments, type EncodeProgress } from "../onegen/encode.js";
import type { DocumentIndex } from "../onegen/index.js";
import { loadIndex, saveIndex } from "../onegen/index-files.js";
import { joinPath, type DemoData, type DemoDocument } from "./data.js";

export interface DemoIndexes {
  el: DocumentIndex;
  mh: DocumentIndex;
  /** "loaded" or "built" per index. */
  how: { el: "loaded" | "built"; mh: "loaded" | "built" };
  dispose(): void;
}

async function isDir(path: string): Promise<boolean> {
  const specifier = "node:fs/promises"; // a variable, so browser bundlers leave it alone
  const { stat } = (await import(specifier)) as typeof import("node:fs/promises");
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The demo's two indexes somewhere other than a local folder (e.g. served beside a page). */
interface DemoIndexDirs {
  /** Shown in messages: a URL or description. */
  readonly name: string;
  dir(sub: "el" | "mhqa"): ModelDir;
}

/** INDEX_URL/el/ and INDEX_URL/mhqa/ over HTTP (read with Range requests by loadIndex). */
export function urlDemoIndexDirs(baseUrl: string, options: { fetch?: typeof fetch } = {}): DemoIndexDirs {
  return { name: baseUrl, dir: (sub) => urlDir(joinPath(baseUrl, sub), options) };
}

/**
 * The entity index (INDEX_DIR/el, [SE]) and the fragment index (INDEX_DIR/mhqa,
 * [Document Fragment Representation]) of the demo. Loaded when present (a mismatched model or a
 * corrupt index is refused by loadIndex); when absent and `build` is given, encoded from the data
 * folder's docs.jsonl files with the model and saved there; otherwise a LoadError. Given
 * DemoIndexDirs (no file system), the indexes are loaded only: `build`/`rebuild` are refused.
 */
export async function openDemoIndexes(
  ctx: GpuContext,
  model: LoadedDecoder,
  indexDir: string | DemoIndexDirs,
  data: DemoData,
  opts: { build?: boolean; rebuild?: boolean; onProgress?: (what: string, p: EncodeProgress) => void } = {},
): Promise<DemoIndexes> {
  const one = async (sub: "el" | "mhqa", docs: DemoDocument[], conv: { docToken: string; skipFirst: number }): Promise<[DocumentIndex, "loaded" | "built"]> => {
    if (typeof indexDir !== "string") {
      if (opts.rebuild) throw new UsageError(`openDemoIndexes: cannot rebuild the indexes at '${indexDir.name}': saving needs a local folder`);
      return [await loadIndex(ctx, indexDir.dir(sub), model.decoder), "loaded"];
    }
    const dir = joinPath(indexDir, sub);
    if (!opts.rebuild && (await isDir(dir))) return [await loadIndex(ctx, dir, model.decoder), "loaded"];
    if (!opts.build && !opts.rebuild) {
      throw new LoadError(`index '${dir}' does not exist`, "run `onegen demo` once (it builds and saves the demo indexes), or give --index DIR");
    }
    if (!model.tokenizer) throw new LoadError("the demo model directory has no tokenizer.json, so the documents cannot be encoded");
    const docTokenId = model.tokenizer.requireTokenId(conv.docToken);
    const index = await encodeDocuments(model.decoder, docs, {
      docTokenId,
      docTokenName: conv.docToken,
      skipFirst: conv.skipFirst,
      tokenizer: model.tokenizer,
      dtype: "f16",
      ...(opts.onProgress ? { onProgress: (p: EncodeProgress) => opts.onProgress!(sub, p) } : {}),
    });
    // The demo owns INDEX_DIR's layout: create it (saveIndex itself wants an existing parent).
    const specifier = "node:fs/promises";
    const { mkdir } = (await import(specifier)) as typeof import("node:fs/promises");
    await mkdir(indexDir, { recursive: true });
    await saveIndex(index, dir, { flag: "--index" });
    return [index, "built"];
  };
  const [el, elHow] = await one("el", data.elDocs, data.el);
  let mh: DocumentIndex;
  let mhHow: "loaded" | "built";
  try {
    [mh, mhHow] = await one("mhqa", data.mhDocs, data.mh);
  } catch (e) {
    el.dispose();
    throw e;
  }
  return {
    el,
    mh,
    how: { el: elHow, mh: mhHow },
    dispose: () => {
      el.dispose();
      mh.dispose();
    },
  };
}
