// `onegen search --model DIR --index INDEX_DIR (--text T | --ids LIST) [--k K] [--json]`
// The query is the final-norm hidden state at the last input position (one forward of the
// input); prints the k best entries best first: with --json `[{"id", "fragment", "score"}]`,
// otherwise one "score<TAB>id<TAB>fragment" line each. An empty index prints [] (no lines);
// k larger than the index prints every entry.
import { numberFlag, parseArgs } from "./args.js";
import { inputIds, openModel, MODEL_FLAGS } from "./model.js";
import { UsageError } from "../errors.js";
import { Session } from "../model/session.js";
import { embedding } from "../ops/embedding.js";
import { indexGpuBytesOf, loadIndex } from "../onegen/index-files.js";
import { TOPK_MAX_K } from "../ops/search.js";

const USAGE = "usage: onegen search --model DIR --index INDEX_DIR (--text TEXT | --ids LIST) [--k K (default 5)] [--json] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--quiet]";

export async function searchCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: [...MODEL_FLAGS, "index", "text", "ids", "k"], booleans: ["help", "json", "quiet"] }, "search");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const indexDir = args.flags.get("index");
  if (!args.flags.has("model")) throw new UsageError(`search: --model DIR is required`);
  if (!indexDir) throw new UsageError(`search: --index INDEX_DIR is required`);
  const k = numberFlag(args, "k", "search", { integer: true, min: 1, max: TOPK_MAX_K }) ?? 5; // clamped to the index's size by index.search
  // The index is planned with the weights (its manifest read and checked first), so a pair that
  // cannot fit the memory budget is refused before either is loaded.
  const reserve = [{ what: `index '${indexDir}'`, bytes: await indexGpuBytesOf(indexDir) }];
  const { ctx, model } = await openModel(args, "search", { reserve });
  try {
    const ids = inputIds(args, "text", model.tokenizer, "search");
    const maxPos = model.config.maxPositionEmbeddings;
    if (ids.length > maxPos) throw new UsageError(`search: the query has ${ids.length} tokens, more than the model's context of ${maxPos}`);
    const index = await loadIndex(ctx, indexDir, model.decoder);
    const session = Session.create(model.decoder, ids.length);
    const out = await session.append(ids, { logits: "none", keepHidden: true });
    const query = await embedding(ctx, [ids.length - 1], out.hidden!); // [1, D]: the last position
    out.hidden!.dispose();
    const hits = await index.search(query.view([model.decoder.hiddenSize]), k);
    query.dispose();
    session.dispose();
    index.dispose();
    if (args.bools.has("json")) {
      process.stdout.write(JSON.stringify(hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score }))) + "\n");
    } else {
      for (const h of hits) process.stdout.write(`${h.score.toFixed(6)}\t${h.id}\t${h.fragment}\n`);
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}
