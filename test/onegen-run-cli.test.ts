// `onegen run` (src/cli/run.ts) end to end on the tiny random fixture without tokenizer files:
// tokens and markers given as '#ID', an index built by `onegen index`, the JSONL output and the
// trace checked against the task API and against `onegen search` for the query prefixes.
// (Called in-process through runCommand until the command is wired into src/cli.ts.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { readFile, rm, writeFile } from "node:fs/promises";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { FIXTURE_ROOT } from "./helpers/golden.js";
import { loadDecoder } from "../src/model/load.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import { checkTrace, type Trace } from "../src/onegen/trace.js";
import { indexCommand } from "../src/cli/index.js";
import { searchCommand } from "../src/cli/search.js";
import { parseIdsTemplate, parseRunInputs, runCommand } from "../src/cli/run.js";
import { LoadError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { scratchDir } from "./helpers/scratch.js";

const MODEL = join(FIXTURE_ROOT, "llama-gqa-f32");
const DOC = 7;
const Q = 9;
// f16 index and f16 KV cache (the CLI defaults): see TOL_F16 in test/onegen-index.test.ts
const TOL = 3e-3;

async function capture(fn: () => Promise<number>): Promise<{ rc: number; out: string }> {
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  let out = "";
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return { rc: await fn(), out };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

let built: Promise<{ root: string; index: string }> | null = null;
function fixture() {
  return (built ??= (async () => {
    const root = scratchDir("run");
    const rng = new Rng(4242);
    const lines = Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `d${i}`, ids: [...Array.from({ length: 4 + rng.int(5) }, () => 20 + rng.int(260)), DOC] }));
    await writeFile(join(root, "docs.jsonl"), lines.join("\n") + "\n");
    const index = join(root, "ix");
    const r = await capture(() => indexCommand(["--model", MODEL, "--docs", join(root, "docs.jsonl"), "--out", index, "--doc-token", `#${DOC}`, "--quiet"]));
    assert.is(r.rc, 0);
    return { root, index };
  })());
}

const MH_FLAGS = ["--query-token", `#${Q}`, "--paragraph-open", "#303", "--paragraph-close", "#304", "--answer-open", "#305", "--answer-close", "#305,#306"];

test("onegen run --task multihop-qa --ids …: JSONL + trace equal the API; the retrieval equals `onegen search` over the prefix", async () => {
  const { root, index } = await fixture();
  const prompt = [11, 40, 73, 200, 17, Q];
  const out = join(root, "mh.jsonl");
  const tr = join(root, "mh.trace.json");
  const r = await capture(() => runCommand(["--model", MODEL, "--index", index, "--task", "multihop-qa", "--ids", prompt.join(","), "--max-new-tokens", "5", "--k", "3", "--out", out, "--trace", tr, "--quiet", ...MH_FLAGS]));
  assert.is(r.rc, 0);
  assert.is(r.out, "", "--out: nothing on stdout");
  const lines = (await readFile(out, "utf8")).trim().split("\n");
  assert.is(lines.length, 1);
  const res = JSON.parse(lines[0]!) as Record<string, unknown>;
  const trace = JSON.parse(await readFile(tr, "utf8")) as Trace;
  assert.equal(checkTrace(trace, Q), []);
  assert.equal(trace.segments.map((s) => s.kind), ["prompt", "injected", "generated"]);
  assert.equal(trace.retrievals.map((x) => x.position), [prompt.length - 1]);
  assert.equal(res.output_ids, trace.ids.slice(prompt.length));
  assert.is(res.task, "multihop-qa");
  assert.is(res.finish, "max-tokens");
  assert.equal((res.injections as { document: string }[]).map((x) => x.document), [trace.retrievals[0]!.hits[0]!.id]);
  // the API with the same defaults gives the same run
  const ctx = await gpu();
  const m = await loadDecoder(ctx, MODEL);
  const ix = await loadIndex(ctx, index, m.decoder);
  const api = await runMultiHopQa(m, ix, { ids: prompt }, { queryToken: Q, paragraphOpen: [303], paragraphClose: [304], answerOpen: [305], answerClose: [305, 306], maxNewTokens: 5, k: 3 });
  assert.equal(api.trace.ids, trace.ids);
  assert.equal(api.trace.segments, trace.segments);
  assert.equal(api.trace.retrievals.map((x) => x.hits.map((h) => h.id)), trace.retrievals.map((x) => x.hits.map((h) => h.id)));
  ix.dispose();
  m.dispose();
  // `onegen search` over the prefix ending at the query token finds the same hits
  const s = await capture(() => searchCommand(["--model", MODEL, "--index", index, "--ids", prompt.join(","), "--k", "3", "--json", "--quiet"]));
  const want = JSON.parse(s.out) as { id: string; fragment: number; score: number }[];
  const got = trace.retrievals[0]!.hits;
  assert.equal(got.map((h) => [h.id, h.fragment]), want.map((h) => [h.id, h.fragment]));
  got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i]!.score) < TOL, `score ${i}: ${h.score} vs ${want[i]!.score}`));
  // two-pass: same output
  const r2 = await capture(() => runCommand(["--model", MODEL, "--index", index, "--task", "multihop-qa", "--ids", prompt.join(","), "--max-new-tokens", "5", "--k", "3", "--two-pass", "--quiet", ...MH_FLAGS]));
  const res2 = JSON.parse(r2.out.trim()) as Record<string, unknown>;
  assert.is(res2.mode, "two-pass");
  assert.equal(res2.output_ids, res.output_ids);
  assert.equal((res2.retrievals as { hits: { id: string }[] }[]).map((x) => x.hits.map((h) => h.id)), (res.retrievals as { hits: { id: string }[] }[]).map((x) => x.hits.map((h) => h.id)));
});

test("onegen run --task entity-linking --input FILE.jsonl: one line per input, a trace array, prompt [LK] retrievals", async () => {
  const { root, index } = await fixture();
  const inputs = join(root, "el.jsonl");
  await writeFile(inputs, [JSON.stringify({ id: "a", ids: [11, 40, Q, 73] }), "", JSON.stringify({ id: 2, ids: [12, Q, 41, Q, 5] })].join("\n") + "\n");
  const tr = join(root, "el.trace.json");
  const r = await capture(() =>
    runCommand(["--model", MODEL, "--index", index, "--task", "entity-linking", "--input", inputs, "--max-new-tokens", "4", "--trace", tr, "--quiet", "--query-token", `#${Q}`, "--continue-token", "#10", "--mention-open", "#300", "--mention-close", "#301,#302"]),
  );
  assert.is(r.rc, 0);
  const lines = r.out.trim().split("\n").map((l) => JSON.parse(l) as { id: string; task: string; retrievals: { position: number; source: string }[]; span_unit: string; mentions: unknown[]; output_ids: number[] });
  assert.equal(lines.map((l) => l.id), ["a", "2"]);
  assert.equal(lines[0]!.retrievals.filter((x) => x.source === "prompt").map((x) => x.position), [2]);
  assert.equal(lines[1]!.retrievals.filter((x) => x.source === "prompt").map((x) => x.position), [1, 3]);
  assert.is(lines[0]!.span_unit, "token");
  const file = JSON.parse(await readFile(tr, "utf8")) as { format: string; traces: Trace[] };
  assert.is(file.format, "onegen-trace");
  const traces = file.traces;
  assert.is(traces.length, 2);
  traces.forEach((t, i) => {
    assert.equal(checkTrace(t, Q), []);
    assert.equal(t.ids.slice(t.segments[0]!.end), lines[i]!.output_ids);
  });
});

test("onegen run: usage errors and input parsing", async () => {
  const { index } = await fixture();
  const base = ["--model", MODEL, "--index", index, "--quiet"];
  await assertRejects(() => runCommand([...base, "--ids", "1,2"]), UsageError, [/--task/], "no task");
  await assertRejects(() => runCommand([...base, "--task", "qa", "--ids", "1,2"]), UsageError, [/entity-linking, multihop-qa/], "bad task");
  await assertRejects(() => runCommand([...base, "--task", "multihop-qa", "--ids", "1,2", "--text", "x"]), UsageError, [/exactly one/], "two inputs");
  await assertRejects(() => runCommand([...base, "--task", "multihop-qa", "--ids", "1,2", "--continue-token", "#10"]), UsageError, [/entity-linking only/], "task-specific flag");
  await assertRejects(() => runCommand([...base, "--task", "multihop-qa", "--ids", "1,2", "--copy-input"]), UsageError, [/--copy-input applies to --task entity-linking only/], "copy-input on multi-hop");
  await assertRejects(() => runCommand([...base, "--task", "multihop-qa", "--text", "hello", ...MH_FLAGS]), UsageError, [/tokenizer/], "text without a tokenizer");
  await assertRejects(() => runCommand([...base, "--task", "multihop-qa", "--ids", "1,2"]), UsageError, [/Question Representation/, /#<id>/], "default token names need a tokenizer");
  await assertRejects(() => runCommand([...base, "--task", "entity-linking", "--ids", "1,2", "--bogus"]), UsageError, [/--bogus/], "unknown flag");
  assert.throws(() => parseRunInputs('{"id": "x", "ids": [1]}\n{"text": 3}\n', "in.jsonl"), (e: Error) => e instanceof LoadError && /in\.jsonl:2/.test(e.message));
  await assertRejects(() => runCommand([...base, "--task", "entity-linking", "--ids", "1,2", "--copy-input", "--query-token", `#${Q}`, "--continue-token", "#10", "--mention-open", "#300", "--mention-close", "#301,#302"]), UsageError, [/copyInput needs single-token mention markers/], "copy-input with a two-id closer");
  assert.throws(() => parseRunInputs('{"ids": [1], "text": "a"}\n', "in.jsonl"), (e: Error) => e instanceof LoadError && /exactly one/.test(e.message));
  assert.equal(parseRunInputs('{"question": "who?"}\n\n{"id": 3, "ids": [4, 5]}\n', "f"), [
    { id: null, input: { text: "who?" } },
    { id: "3", input: { ids: [4, 5] } },
  ]);
  assert.equal(parseIdsTemplate("1,2,{input},3"), { before: [1, 2], after: [3] });
  assert.equal(parseIdsTemplate("{input}"), { before: [], after: [] });
  const help = await capture(() => runCommand(["--help"]));
  assert.is(help.rc, 0);
  assert.match(help.out, /--two-pass/);
});

test.after(async () => {
  if (!built) return;
  const { root } = await built;
  await rm(root, { recursive: true, force: true });
});

test.run();
