// `onegen demo [--input "…"] [--model DIR] [--index DIR] [--data DIR] [--examples N] [--limit N]
//  [--rebuild-index] [--el-decoding copy-input|free] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--quiet]`
// The bundled demo: loads the demo model (demo/model), loads its indexes (demo/index/{el,mhqa};
// built from demo/data and saved there when absent), then
//   - without --input: runs entity linking and multi-hop QA on held-out examples, printing the
//     annotated text with each mention's entity and score, the retrieved documents per hop and
//     the answer, then the accuracy on the first --limit held-out sentences and questions
//     (one-pass) with timing, beside the trivial baseline;
//   - with --input "…": runs entity linking on that sentence (with both decodings unless
//     --el-decoding names one).
import { numberFlag, parseArgs, sizeFlag } from "./args.js";
import { UsageError } from "../errors.js";
import type { EntityLinkingResult, MultiHopResult } from "../onegen/protocol.js";
import { loadDemoData, type DemoData, type ElGold, type MhGold } from "../demo/data.js";
import { trivialScores } from "../demo/baselines.js";
import { openDemoIndexes } from "../demo/indexes.js";
import { DEFAULT_EL_DECODING, linkSentence } from "../demo/tasks.js";
import { evaluateModel } from "../demo/eval.js";
import { DEFAULT_DEMO_DATA, DEFAULT_DEMO_INDEX, DEFAULT_DEMO_MODEL, elDecodingFlag, openDemoModel, requireModelDir } from "./eval.js";
import { quantizeFlag } from "./model.js";

const DEFAULT_EXAMPLES = 3;
const DEFAULT_LIMIT = 40;

const USAGE = [
  "usage: onegen demo [--input 'a sentence to link'] [--model DIR (default demo/model)] [--index DIR (default demo/index)] [--data DIR (default demo/data)]",
  `  [--el-decoding copy-input|free (default ${DEFAULT_EL_DECODING})] [--examples N (shown per task, default ${DEFAULT_EXAMPLES})] [--limit N (held-out sentences and questions scored, default ${DEFAULT_LIMIT})] [--rebuild-index] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--gpu-memory SIZE] [--quiet]`,
].join("\n");


function entityLabel(data: DemoData, id: string | null): string {
  if (id === null) return "(nothing retrieved)";
  const e = data.kb.find((x) => x.id === id);
  if (!e) return id;
  const d = e.description.length > 70 ? e.description.slice(0, 67) + "..." : e.description;
  return `${id} "${d}"`;
}

function printLinking(w: (s: string) => void, data: DemoData, r: EntityLinkingResult, gold: ElGold | null): void {
  w(`  output:   ${r.annotated ?? "(no tokenizer)"}\n`);
  if (r.mentions.length === 0) w("  (no mention linked)\n");
  r.mentions.forEach((m, i) => {
    const g = gold?.labels.find((l) => m.span !== null && l.span[0] === m.span[0] && l.span[1] === m.span[1]);
    const mark = gold ? (g ? (g.entity_id === m.entity ? " ✓" : ` ✗ (gold ${g.entity_id})`) : " ✗ (not a gold mention)") : "";
    const score = m.score === null ? "" : ` score ${m.score.toFixed(3)}`;
    w(`  [${i + 1}] ${JSON.stringify(m.mention)}${m.span ? ` @${m.span[0]}-${m.span[1]}` : ""} → ${entityLabel(data, m.entity)}${score}${mark}\n`);
  });
  w(`  ${r.stats.newTokens} tokens, ${r.retrievals.length} retrieval(s), ${Math.round(r.stats.ms)} ms, ${r.mode}\n`);
}

function printMultiHop(w: (s: string) => void, data: DemoData, r: MultiHopResult, gold: MhGold): void {
  r.retrievals.forEach((x, i) => {
    const best = x.hits[0];
    const want = gold.hops[i]?.doc;
    const mark = want === undefined ? "" : best?.id === want ? " ✓" : ` ✗ (gold ${want})`;
    w(`  hop ${i + 1}: retrieved ${best ? `${entityLabel(data, best.id)} score ${best.score.toFixed(3)}` : "(nothing)"}${mark}\n`);
  });
  const ok = r.answer !== null && r.answer.trim().toLowerCase() === gold.answer.toLowerCase();
  w(`  answer: ${r.answer === null ? "(none)" : JSON.stringify(r.answer)}   gold: ${JSON.stringify(gold.answer)}${ok ? " ✓" : " ✗"}\n`);
  w(`  ${r.stats.newTokens} tokens, ${r.injections.length} injection(s), ${Math.round(r.stats.ms)} ms, ${r.mode}\n`);
}

export async function demoCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ["model", "index", "data", "input", "examples", "limit", "dtype", "el-decoding", "gpu-memory", "quantize"], booleans: ["help", "rebuild-index", "quiet"] }, "demo");
  const decoding = elDecodingFlag(args, "demo");
  const copyInput = decoding === "copy-input";
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const examples = numberFlag(args, "examples", "demo", { integer: true, min: 0 }) ?? DEFAULT_EXAMPLES;
  const limit = numberFlag(args, "limit", "demo", { integer: true, min: 1 }) ?? DEFAULT_LIMIT;
  if (examples > limit) throw new UsageError(`demo: --examples (${examples}) cannot exceed --limit (${limit}): the examples are the first scored ones`);
  const input = args.flags.get("input");
  if (input !== undefined && input.trim() === "") throw new UsageError("demo: --input is empty");
  const modelDir = args.flags.get("model") ?? DEFAULT_DEMO_MODEL;
  const indexDir = args.flags.get("index") ?? DEFAULT_DEMO_INDEX;
  const quiet = args.bools.has("quiet");
  await requireModelDir(modelDir, !args.flags.has("model"));
  const data = await loadDemoData(args.flags.get("data") ?? DEFAULT_DEMO_DATA, "test");
  const w = (s: string) => void process.stdout.write(s);
  const { ctx, model } = await openDemoModel(modelDir, args.flags.get("dtype") ?? "auto", quiet, "demo", sizeFlag(args, "gpu-memory", "demo"), quantizeFlag(args, "demo"));
  try {
    const t0 = performance.now();
    const indexes = await openDemoIndexes(ctx, model, indexDir, data, {
      build: true,
      rebuild: args.bools.has("rebuild-index"),
      ...(quiet ? {} : { onProgress: (what: string, p: { documentsDone: number; documentsTotal: number }) => process.stderr.write(`\rindex ${what}: ${p.documentsDone}/${p.documentsTotal} documents`) }),
    });
    if (!quiet && (indexes.how.el === "built" || indexes.how.mh === "built")) process.stderr.write("\n");
    w(`model ${modelDir}; indexes ${indexDir}: entities ${indexes.el.documentCount} (${indexes.how.el}), fragments ${indexes.mh.count} (${indexes.how.mh}) in ${Math.round(performance.now() - t0)} ms\n`);
    try {
      if (input !== undefined) {
        w(`\nentity linking\n  input:    ${input}\n`);
        // both decodings unless one was asked for: on a sentence unlike the training templates the
        // model's free output may drift from the input, which copy-input rules out
        const modes = args.flags.has("el-decoding") ? [copyInput] : [false, true];
        for (const copy of modes) {
          w(`  decoding: ${copy ? "copy-input (the output is the input with mention markup)" : "free (as OneGen)"}\n`);
          const r = await linkSentence(model, indexes, input, { copyInput: copy });
          printLinking(w, data, r, null);
        }
        return 0;
      }
      let shownEl = 0;
      let shownMh = 0;
      const scores = await evaluateModel(model, indexes, data, {
        limitEl: limit,
        limitMh: limit,
        copyInput,
        onExample: (e) => {
          if (e.task === "entity-linking" && shownEl < examples) {
            if (shownEl++ === 0) w(`\nentity linking (held-out sentences; ${copyInput ? "copy-input decoding: the output is the input, the model places the mentions and links them" : "free decoding, as OneGen"})\n`);
            w(`\n  input:    ${e.gold.text}\n`);
            printLinking(w, data, e.result, e.gold);
          } else if (e.task === "multihop-qa" && shownMh < examples) {
            if (shownMh++ === 0) w("\nmulti-hop QA (held-out questions)\n");
            w(`\n  question: ${e.gold.question}\n`);
            printMultiHop(w, data, e.result, e.gold);
          }
        },
      });
      // the same sentences with the other entity-linking decoding, for comparison
      const other = await evaluateModel(model, indexes, data, { limitEl: limit, limitMh: 0, copyInput: !copyInput, retrievalProbe: false });
      const triv = trivialScores(data, { el: limit, mh: limit });
      const f = (x: number) => x.toFixed(3);
      const name = (copy: boolean) => (copy ? "copy-input" : "free");
      w(`\nheld-out accuracy (first ${scores.examples.el} test sentences, ${scores.examples.mh} test questions; one-pass)\n`);
      w(`  entity linking micro-F1  ${f(scores.el_micro_f1)}   (${name(!copyInput)} decoding ${f(other.el_micro_f1)}; trivial most-frequent entity ${f(triv.el_micro_f1)})\n`);
      w(`  mention detection F1     ${f(scores.md_f1)}   (${name(!copyInput)} decoding ${f(other.md_f1)}; trivial dictionary match ${f(triv.md_f1)})\n`);
      w(`  retrieval accuracy@1     ${f(scores.retrieval_acc_at1)}   (trivial lexical overlap ${f(triv.retrieval_acc_at1)})\n`);
      w(`  multi-hop EM / F1        ${f(scores.multihop_em)} / ${f(scores.multihop_f1)}   (trivial majority answer ${f(triv.multihop_em)} / ${f(triv.multihop_f1)})\n`);
      w(`  entity-linking decoding: ${name(copyInput)} (--el-decoding ${name(!copyInput)} for the other)\n`);
      w(`  timing: ${scores.timing.el_ms_per_sentence} ms per sentence, ${scores.timing.mh_ms_per_question} ms per question (one pass, generation with in-loop retrieval)\n`);
      w("  the whole held-out split beside the two-pass baseline: onegen eval\n");
      return 0;
    } finally {
      indexes.dispose();
    }
  } finally {
    model.dispose();
    ctx.destroy();
  }
}
