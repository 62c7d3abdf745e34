// `onegen run --model DIR --index INDEX_DIR --task entity-linking|multihop-qa
//  (--input FILE.jsonl | --text T | --ids LIST) [--max-new-tokens N] [--out FILE.jsonl] [--trace FILE.json]
//  [--two-pass] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--k K] [--max-retrievals N] …`
// Runs a OneGen task (src/onegen/entity-linking.ts, src/onegen/multihop-qa.ts) on each input: greedy unless sampling options are given;
// one-pass retrieval in the decode loop, or the two-pass baseline with --two-pass. Prints one JSON
// line per input (or writes them to --out), each tagged "format": "onegen-run". --trace writes the
// run's trace (src/onegen/trace.ts) tagged {"format": "onegen-trace", "version": 1}: one input →
// the trace's fields beside the tag; several → "traces": [...] in input order. Both outputs are
// checked before the model is loaded and written atomically (src/io/output.ts).
//
// Input lines: {"id"?: "...", "text": "..."} (or "question", as OneGen's multi-hop data), or
// {"id"?: "...", "ids": [int, ...]}. Text input is rendered with the task's template (OneGen's by
// default; --template 'TEXT {input}' or --no-template) and tokenized without BOS (OneGen's
// configs; --bos adds it); ids input is the whole prompt unless --template-ids '1,2,{input},3'
// wraps it. A text option given for ids input (or the reverse) is an error, never ignored. Token names (--query-token …) take a
// name known to the tokenizer or '#ID'; markers (--mention-close …) take text or '#ID,#ID,…'.
// Without tokenizer files every token and marker must be given as ids, and spans are token offsets.
import { parseJsonlObjects } from "../util/jsonl.js";
import { readInputFile } from "./input-file.js";
import { numberFlag, parseArgs, type ParsedArgs } from "./args.js";
import { openModel, MODEL_FLAGS } from "./model.js";
import { LoadError, UsageError } from "../errors.js";
import { loadTokenizer, parseIdList } from "../tokenizer.js";
import { indexGpuBytesOf, loadIndex } from "../onegen/index-files.js";
import type { EntityLinkingOptions, MultiHopOptions, TaskInput, TaskResult } from "../onegen/protocol.js";
import { runEntityLinking } from "../onegen/entity-linking.js";
import { runMultiHopQa } from "../onegen/multihop-qa.js";
import type { Trace } from "../onegen/trace.js";
import { checkOutputs, FILE_FORMATS, writeFileAtomic, type InputPath } from "../io/output.js";
import { TOPK_MAX_K } from "../ops/search.js";

const USAGE = [
  "usage: onegen run --model DIR --index INDEX_DIR --task entity-linking|multihop-qa (--input FILE.jsonl | --text TEXT | --ids LIST)",
  "  [--max-new-tokens N] [--out FILE.jsonl] [--trace FILE.json] [--two-pass] [--k K (hits per retrieval, default 1)]",
  "  [--temperature T] [--top-k K] [--top-p P] [--seed S] [--context N (KV cache rows)] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--quiet]",
  "  [--template 'TEXT with {input}' | --no-template] [--template-ids 'ID,…,{input},ID,…'] [--bos] [--add-tokens '[LK],[SE],…']",
  "  [--doc-token TOKEN|#ID (the index's doc token must be this one; default: refuse an index built at the other task's)] [--gpu-memory SIZE]",
  "  entity linking: [--query-token [LK]|#ID] [--continue-token [_CONTINUE_]|#ID] [--mention-open <MENTION>|#ID,…] [--mention-close </MENTION>|#ID,…] [--max-retrievals N]",
  "                  [--copy-input (constrained decoding: the output is the input with mention markup)]",
  "  multi-hop QA:   [--query-token '[Question Representation]'|#ID] [--paragraph-open <paragraph>|#ID,…] [--paragraph-close </paragraph>|#ID,…]",
  "                  [--answer-open <FINAL-ANSWER>|#ID,…] [--answer-close </FINAL-ANSWER>|#ID,…] [--max-retrievals N (default 5)] [--max-doc-tokens N] [--stop-after-answer]",
].join("\n");

const TASKS = ["entity-linking", "multihop-qa"] as const;
type TaskName = (typeof TASKS)[number];

interface InputItem {
  id: string | null;
  input: TaskInput;
}

/** Parses the --input JSONL file; errors name the file and line. */
export function parseRunInputs(text: string, file: string): InputItem[] {
  const items: InputItem[] = [];
  for (const { where, value: o } of parseJsonlObjects(text, file, (m) => new LoadError(m))) {
    if (o.id !== undefined && typeof o.id !== "string" && typeof o.id !== "number") throw new LoadError(`${where}: "id" must be a string or a number`);
    const id = o.id === undefined ? null : String(o.id);
    const given = ["text", "question", "ids"].filter((k) => o[k] !== undefined);
    if (given.length !== 1) throw new LoadError(`${where}: give exactly one of "text", "question" or "ids"`);
    if (o.ids !== undefined) {
      if (!Array.isArray(o.ids) || o.ids.length === 0 || o.ids.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 0)) {
        throw new LoadError(`${where}: "ids" must be a non-empty list of non-negative integers`);
      }
      items.push({ id, input: { ids: o.ids as number[] } });
    } else {
      const t = o.text ?? o.question;
      if (typeof t !== "string") throw new LoadError(`${where}: "${given[0]}" must be a string`);
      items.push({ id, input: { text: t } });
    }
  }
  return items;
}

/** --template-ids 'A,B,{input},C' → ids before and after the input. */
export function parseIdsTemplate(spec: string): { before: number[]; after: number[] } {
  const parts = spec.split("{input}");
  if (parts.length !== 2) throw new UsageError(`run: --template-ids must hold {input} exactly once, got '${spec}'`);
  return { before: parseIdList(parts[0]!.replace(/,\s*$/, "")), after: parseIdList(parts[1]!.replace(/^\s*,/, "")) };
}

function hitsJson(hits: readonly { id: string; fragment: number; score: number }[]): { id: string; fragment: number; score: number }[] {
  return hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score }));
}

function commonJson(r: TaskResult, item: InputItem): Record<string, unknown> {
  return {
    format: FILE_FORMATS["run-results"],
    ...(item.id !== null ? { id: item.id } : {}),
    mode: r.mode,
    input: "text" in item.input ? item.input.text : item.input.ids,
    prompt_tokens: r.promptIds.length,
    output: r.output,
    output_ids: r.ids.slice(r.promptIds.length),
    retrievals: r.retrievals.map((x) => ({ position: x.position, source: x.source, hits: hitsJson(x.hits) })),
    finish: r.finish,
    stats: { new_tokens: r.stats.newTokens, host_readbacks: r.stats.readbacks, ms: Math.round(r.stats.ms) },
  };
}

export async function runCommand(argv: string[]): Promise<number> {
  const args = parseArgs(
    argv,
    {
      values: [
        ...MODEL_FLAGS, "index", "task", "input", "text", "ids", "max-new-tokens", "out", "trace", "temperature", "top-k", "top-p", "seed", "k",
        "max-retrievals", "query-token", "continue-token", "mention-open", "mention-close", "paragraph-open", "paragraph-close", "answer-open",
        "answer-close", "template", "template-ids", "add-tokens", "max-doc-tokens", "doc-token",
      ],
      booleans: ["help", "two-pass", "quiet", "bos", "no-template", "stop-after-answer", "copy-input"],
    },
    "run",
  );
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const task = args.flags.get("task");
  if (!args.flags.has("model")) throw new UsageError(`run: --model DIR is required`);
  const indexDir = args.flags.get("index");
  if (!indexDir) throw new UsageError(`run: --index INDEX_DIR is required`);
  if (!task || !(TASKS as readonly string[]).includes(task)) throw new UsageError(`run: --task must be one of ${TASKS.join(", ")}, got ${task === undefined ? "nothing" : `'${task}'`}`);
  const sources = ["input", "text", "ids"].filter((f) => args.flags.has(f));
  if (sources.length !== 1) throw new UsageError(`run: give exactly one of --input FILE.jsonl, --text TEXT or --ids LIST`);
  if (args.flags.has("template") && args.bools.has("no-template")) throw new UsageError("run: --template and --no-template exclude each other");
  // Outputs checked before any work (src/io/output.ts): not an input, directory present and
  // writable, absent, empty or an earlier output of the same kind.
  const inputs: InputPath[] = [{ flag: "--model", path: args.flags.get("model")! }, { flag: "--index", path: indexDir }];
  if (args.flags.has("input")) inputs.push({ flag: "--input", path: args.flags.get("input")! });
  const outArg = args.flags.get("out");
  const traceArg = args.flags.get("trace");
  await checkOutputs(
    [outArg !== undefined ? { flag: "--out", path: outArg, kind: "run-results" } : null, traceArg !== undefined ? { flag: "--trace", path: traceArg, kind: "trace" } : null],
    inputs,
  );
  const items = await readItems(args);
  const opts = commonOptions(args, task as TaskName);
  // The index is planned with the weights (its manifest read and checked first), so a pair that
  // cannot fit the memory budget is refused before either is loaded.
  const reserve = [{ what: `index '${indexDir}'`, bytes: await indexGpuBytesOf(indexDir) }];
  const { ctx, model } = await openModel(args, "run", { reserve });
  try {
    const added = args.flags.get("add-tokens");
    if (added !== undefined) {
      if (!model.tokenizer) throw new UsageError("run: --add-tokens needs tokenizer files in the model directory");
      const list = added.split(",").map((s) => s.trim()).filter((s) => s !== "");
      model.tokenizer = await loadTokenizer(args.flags.get("model")!, { addedTokens: list });
    }
    const index = await loadIndex(ctx, indexDir, model.decoder);
    const lines: string[] = [];
    const traces: Trace[] = [];
    try {
      for (const item of items) {
        if (task === "entity-linking") {
          const r = await runEntityLinking(model, index, item.input, opts as EntityLinkingOptions);
          traces.push(r.trace);
          lines.push(
            JSON.stringify({
              ...commonJson(r, item),
              task,
              annotated: r.annotated,
              span_unit: r.spanUnit,
              mentions: r.mentions.map((m) => ({ mention: m.mention, mention_ids: m.mentionIds, span: m.span, position: m.position, entity_id: m.entity, fragment: m.fragment, score: m.score })),
            }),
          );
        } else {
          const r = await runMultiHopQa(model, index, item.input, opts as MultiHopOptions);
          traces.push(r.trace);
          lines.push(
            JSON.stringify({
              ...commonJson(r, item),
              task,
              answer: r.answer,
              answer_ids: r.answerIds,
              injections: r.injections.map((x) => ("refused" in x ? { position: x.position, refused: true } : { position: x.position, document: x.document, start: x.start, length: x.ids.length })),
            }),
          );
        }
        if (!args.flags.has("out")) process.stdout.write(lines[lines.length - 1]! + "\n");
      }
    } finally {
      index.dispose();
    }
    const out = outArg;
    if (out !== undefined) await writeFileAtomic(out, "run-results", lines.join("\n") + "\n", { flag: "--out", inputs });
    const traceFile = traceArg;
    if (traceFile !== undefined) {
      const body = traces.length === 1 ? { format: FILE_FORMATS.trace, version: 1, ...traces[0]! } : { format: FILE_FORMATS.trace, version: 1, traces };
      await writeFileAtomic(traceFile, "trace", JSON.stringify(body) + "\n", { flag: "--trace", inputs });
    }
    if (!args.bools.has("quiet")) process.stderr.write(`run: ${items.length} input(s), ${task}, ${opts.twoPass ? "two-pass" : "one-pass"}${out ? `, wrote ${out}` : ""}\n`);
    return 0;
  } finally {
    ctx.destroy();
  }
}

async function readItems(args: ParsedArgs): Promise<InputItem[]> {
  const file = args.flags.get("input");
  if (file !== undefined) {
    const text = await readInputFile(file, "--input");
    const items = parseRunInputs(text, file);
    if (items.length === 0) throw new LoadError(`run: --input '${file}' holds no inputs`);
    return items;
  }
  const text = args.flags.get("text");
  if (text !== undefined) return [{ id: null, input: { text } }];
  const ids = parseIdList(args.flags.get("ids")!);
  if (ids.length === 0) throw new UsageError("run: --ids is empty");
  return [{ id: null, input: { ids } }];
}

function commonOptions(args: ParsedArgs, task: TaskName): EntityLinkingOptions & MultiHopOptions {
  const n = (name: string, o: { integer?: boolean; min?: number; max?: number } = {}) => numberFlag(args, name, "run", o);
  const maxNew = n("max-new-tokens", { integer: true, min: 0 });
  const temperature = n("temperature", { min: 0 });
  const topK = n("top-k", { integer: true, min: 0, max: 0xffffffff });
  const topP = n("top-p", { min: 0, max: 1 });
  const seed = n("seed", { integer: true, min: 0, max: 0xffffffff });
  const k = n("k", { integer: true, min: 1, max: TOPK_MAX_K });
  const maxRetrievals = n("max-retrievals", { integer: true, min: 0 });
  const capacity = n("context", { integer: true, min: 1 });
  const maxDocTokens = n("max-doc-tokens", { integer: true, min: 0 });
  const f = (name: string): string | undefined => args.flags.get(name);
  const only = (name: string, t: TaskName) => {
    if (args.flags.has(name) || args.bools.has(name)) {
      if (task !== t) throw new UsageError(`run: --${name} applies to --task ${t} only`);
    }
  };
  for (const x of ["continue-token", "mention-open", "mention-close", "copy-input"]) only(x, "entity-linking");
  for (const x of ["paragraph-open", "paragraph-close", "answer-open", "answer-close", "max-doc-tokens", "stop-after-answer"]) only(x, "multihop-qa");
  const template = args.bools.has("no-template") ? null : f("template");
  const tids = f("template-ids");
  return {
    ...(maxNew !== undefined ? { maxNewTokens: maxNew } : {}),
    ...(temperature !== undefined ? { temperature } : {}),
    ...(topK !== undefined ? { topK } : {}),
    ...(topP !== undefined ? { topP } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(k !== undefined ? { k } : {}),
    ...(maxRetrievals !== undefined ? { maxRetrievals } : {}),
    ...(capacity !== undefined ? { capacity } : {}),
    ...(maxDocTokens !== undefined ? { maxDocTokens } : {}),
    ...(template !== undefined ? { template } : {}),
    ...(tids !== undefined ? { idsTemplate: parseIdsTemplate(tids) } : {}),
    ...(args.bools.has("bos") ? { addSpecialTokens: true } : {}),
    twoPass: args.bools.has("two-pass"),
    stopAfterAnswer: args.bools.has("stop-after-answer"),
    ...(args.bools.has("copy-input") ? { copyInput: true } : {}),
    ...(f("query-token") !== undefined ? { queryToken: f("query-token")! } : {}),
    ...(f("doc-token") !== undefined ? { docToken: f("doc-token")! } : {}),
    ...(f("continue-token") !== undefined ? { continueToken: f("continue-token")! } : {}),
    ...(f("mention-open") !== undefined ? { mentionOpen: f("mention-open")! } : {}),
    ...(f("mention-close") !== undefined ? { mentionClose: f("mention-close")! } : {}),
    ...(f("paragraph-open") !== undefined ? { paragraphOpen: f("paragraph-open")! } : {}),
    ...(f("paragraph-close") !== undefined ? { paragraphClose: f("paragraph-close")! } : {}),
    ...(f("answer-open") !== undefined ? { answerOpen: f("answer-open")! } : {}),
    ...(f("answer-close") !== undefined ? { answerClose: f("answer-close")! } : {}),
  };
}
