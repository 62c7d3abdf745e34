// `onegen index --model DIR --docs FILE.jsonl --out INDEX_DIR [--doc-token TOKEN] [--skip-first N]
//  [--batch-tokens N] [--template T] [--f32]`
// Builds a OneGen document index: every line of FILE.jsonl is {"id": "...", "text": "..."} or
// {"id": "...", "ids": [int, ...]} (pre-tokenized; works without tokenizer files). Each
// occurrence of the doc token (default [SE]; '#ID' names it by id) becomes one entry. Progress
// goes to stderr; the index is saved atomically (src/onegen/index-files.ts saveIndex). --out is checked
// before the model is loaded: absent, empty or an index (never a directory holding other files,
// an input, or a path whose directory is missing).
import { parseJsonlObjects } from "../util/jsonl.js";
import { readInputFile } from "./input-file.js";
import { numberFlag, parseArgs } from "./args.js";
import { openModel, MODEL_FLAGS } from "./model.js";
import { LoadError, UsageError } from "../errors.js";
import { resolveTokenId } from "../tokenizer.js";
import { DEFAULT_BATCH_TOKENS, encodeDocuments, type DocumentInput } from "../onegen/encode.js";
import { saveIndex } from "../onegen/index-files.js";
import { checkOutput, type InputPath } from "../io/output.js";

const USAGE =
  "usage: onegen index --model DIR --docs FILE.jsonl --out INDEX_DIR [--doc-token TOKEN|#ID (default [SE])] [--skip-first N] " +
  `[--batch-tokens N (default ${DEFAULT_BATCH_TOKENS})] [--template 'TEXT with {text} and {doc_token}'] [--f32] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--quiet]`;

const DEFAULT_DOC_TOKEN = "[SE]";

/** Parses a JSONL document file; errors name the file and line. Blank lines are skipped. */
function parseDocumentsJsonl(text: string, file: string): DocumentInput[] {
  const docs: DocumentInput[] = [];
  for (const { where, value: o } of parseJsonlObjects(text, file, (m) => new LoadError(m))) {
    if (typeof o.id !== "string" || o.id === "") throw new LoadError(`${where}: "id" must be a non-empty string`);
    const hasText = o.text !== undefined;
    const hasIds = o.ids !== undefined;
    if (hasText === hasIds) throw new LoadError(`${where}: give exactly one of "text" or "ids"`);
    if (hasText) {
      if (typeof o.text !== "string") throw new LoadError(`${where}: "text" must be a string`);
      docs.push({ id: o.id, text: o.text });
    } else {
      if (!Array.isArray(o.ids) || o.ids.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 0)) {
        throw new LoadError(`${where}: "ids" must be a list of non-negative integers`);
      }
      docs.push({ id: o.id, ids: o.ids as number[] });
    }
  }
  return docs;
}

export async function indexCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: [...MODEL_FLAGS, "docs", "out", "doc-token", "skip-first", "batch-tokens", "template"], booleans: ["help", "quiet", "f32"] }, "index");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const docsFile = args.flags.get("docs");
  const out = args.flags.get("out");
  if (!args.flags.has("model")) throw new UsageError(`index: --model DIR is required`);
  if (!docsFile) throw new UsageError(`index: --docs FILE.jsonl is required`);
  if (!out) throw new UsageError(`index: --out INDEX_DIR is required`);
  const skipFirst = numberFlag(args, "skip-first", "index", { integer: true, min: 0 }) ?? 0;
  const batchTokens = numberFlag(args, "batch-tokens", "index", { integer: true, min: 1 }) ?? DEFAULT_BATCH_TOKENS;
  // The output is checked before any work (src/io/output.ts): absent, empty or an index, not an input.
  const inputs: InputPath[] = [{ flag: "--model", path: args.flags.get("model")! }, { flag: "--docs", path: docsFile }];
  await checkOutput({ flag: "--out", path: out, kind: "index" }, inputs);
  const text = await readInputFile(docsFile, "--docs");
  const docs = parseDocumentsJsonl(text, docsFile);
  if (docs.length === 0) throw new LoadError(`index: --docs '${docsFile}' holds no documents`);
  const quiet = args.bools.has("quiet");
  const { ctx, model } = await openModel(args, "index");
  try {
    const tokenArg = args.flags.get("doc-token") ?? DEFAULT_DOC_TOKEN;
    const docTokenId = resolveTokenId(tokenArg, model.tokenizer);
    const docTokenName = tokenArg.startsWith("#") ? (model.tokenizer?.idToToken(docTokenId) ?? null) : tokenArg;
    const template = args.flags.get("template");
    const t0 = performance.now();
    let lastReport = 0;
    const index = await encodeDocuments(model.decoder, docs, {
      docTokenId,
      docTokenName,
      skipFirst,
      batchTokens,
      tokenizer: model.tokenizer,
      ...(template !== undefined ? { template } : {}),
      dtype: args.bools.has("f32") ? "f32" : "f16",
      onProgress: quiet
        ? undefined
        : (p) => {
            const now = performance.now();
            if (now - lastReport < 1000 && p.batchesDone < p.batchesTotal) return; // at most one line a second
            lastReport = now;
            const secs = (now - t0) / 1000;
            process.stderr.write(
              `index: batch ${p.batchesDone}/${p.batchesTotal}, documents ${p.documentsDone}/${p.documentsTotal}, tokens ${p.tokensDone}/${p.tokensTotal}, entries ${p.entries}, ${(p.tokensDone / Math.max(secs, 1e-9)).toFixed(0)} tok/s\n`,
            );
          },
    });
    await saveIndex(index, out, { flag: "--out", inputs });
    if (!quiet) process.stderr.write(`wrote ${out}: ${index.count} entries from ${index.documentCount} documents, ${index.dim}-d ${index.dtype}\n`);
    index.dispose();
    return 0;
  } finally {
    ctx.destroy();
  }
}
