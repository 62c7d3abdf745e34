// OneGen retrieval requests as rows of `onegen serve`'s batched step (src/serve/engine.ts,
// "Retrieval requests as rows"; src/serve/retrieval.ts startRetrievalRow), through the official
// `openai` client on the bundled demo model and indexes. The reference is the same task run alone
// on its own Session (runEntityLinking / runMultiHopQa: the in-loop retrieval hook, an
// independent path): the row gives the same text and tokens, the same retrievals (positions, hit
// ids, scores within float tolerance), the same injected documents, mentions and answer, alone
// and beside plain streams that join and leave mid-batch (which stay equal to their own solo
// runs), greedy or sampled; it never takes a turn of its own (engine.stats.turns stays 0) and
// shares the steps with the plain streams. A query token a step fed is searched on that step's own
// final-norm row (engine.stats.searchesFromStep), with scores equal to the Session run's within the
// same tolerance; a joining prompt's query tokens on the prompt prefill's rows, as the Session run
// searches them (engine.stats.searchesFromPrefill); only query tokens neither fed (a row's last id)
// take the one-row forward (engine.stats.searchForwards). (Retrieval requests on their own sessions, the server's
// retrieval "turns": test/serve.test.ts.)

import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { gpu } from "./helpers/gpu.js";
import { openDevice } from "../src/gpu/device.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { startServer, type RunningServer } from "../src/serve/server.js";
import type { DocumentIndex } from "../src/onegen/index.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { prepareEntityLinking, runEntityLinking } from "../src/onegen/entity-linking.js";
import { execute } from "../src/onegen/task-runner.js";
import { submitTaskRow } from "../src/serve/retrieval.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import type { TaskResult } from "../src/onegen/protocol.js";
import { until, body } from "./helpers/serve.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEMO_MODEL = join(ROOT, "demo", "model");
const CONTEXT = 160;
const EL_SENTENCE = "As a young engineer, Casimir Dalley left Marwick for Kestport.";
const EL_OTHER = "The pilot Fenna Solberg flew from Braegate to Tormoor.";
const MH_QUESTION = "Where does the founder of Falcon Institute work?";
const PROMPTS = ["Marwick is a city in", "Kestport is known for", "Casimir Dalley is an engineer born in", "The pilot Fenna Solberg left", "Sable Records is a label based in"];

let model: LoadedDecoder;
let server: RunningServer;
let client: OpenAI;
let elIndex: DocumentIndex;
let mhIndex: DocumentIndex;



interface Report {
  position: number;
  source: string;
  hits: { id: string; fragment: number; score: number }[];
  injected: { document: string; start: number; tokens: number } | { refused: true } | null;
}
interface OnegenBody {
  onegen: { task: string; retrievals: Report[]; mentions?: { entity: string | null }[]; answer?: string | null };
}

/** The reference's retrievals in the protocol's shape (hits, and the injection after each). */
function reportsOf(ref: TaskResult): Report[] {
  return ref.retrievals.map((r) => {
    const inj = ref.injections.find((x) => x.position === r.position);
    return {
      position: r.position,
      source: r.source,
      hits: r.hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score })),
      injected: !inj ? null : "refused" in inj ? { refused: true as const } : { document: inj.document, start: inj.start, tokens: inj.ids.length },
    };
  });
}

/** Equal reports, scores within float tolerance (the batched step's forward and the Session's step round differently). */
function sameReports(got: Report[], want: Report[], what: string): void {
  const strip = (rs: Report[]) => rs.map((r) => ({ ...r, hits: r.hits.map((h) => ({ id: h.id, fragment: h.fragment })) }));
  assert.equal(strip(got), strip(want), `${what}: positions, hits and injections`);
  got.forEach((r, i) => r.hits.forEach((h, j) => assert.ok(Math.abs(h.score - want[i]!.hits[j]!.score) < 1e-4, `${what}: score ${h.score} vs ${want[i]!.hits[j]!.score}`)));
}

/** Streams a completion: its text, its retrieval objects, its final onegen object, and the engine's running rows at each text chunk. */
async function streamed(params: Record<string, unknown>, signal?: AbortSignal): Promise<{ text: string; reports: Report[]; onegen: OnegenBody["onegen"] | null; running: number[] }> {
  const s = await client.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", temperature: 0, ...params, stream: true }), signal ? { signal } : {});
  let text = "";
  const reports: Report[] = [];
  let onegen: OnegenBody["onegen"] | null = null;
  const running: number[] = [];
  for await (const c of s) {
    const t = c.choices.map((x) => x.text).join("");
    if (t !== "") {
      text += t;
      running.push(server.engine.running);
    }
    const x = c as unknown as { retrieval?: Report; onegen?: OnegenBody["onegen"] };
    if (x.retrieval) reports.push(x.retrieval);
    if (x.onegen) onegen = x.onegen;
  }
  return { text, reports, onegen, running };
}

/** Query tokens the reference's decoding wrote and searched (source "generated"). */
function generatedRetrievals(...refs: TaskResult[]): number {
  return refs.reduce((n, r) => n + r.retrievals.filter((x) => x.source === "generated").length, 0);
}

/**
 * How the engine's searches got their hidden states since `before`: on the final-norm row of the
 * step that fed the query token (no forward), or by a one-row forward (no step fed it).
 */
function searchesSince(engine: RunningServer["engine"], before: { searchesFromStep: number; searchesFromPrefill: number; searchForwards: number }): { fromStep: number; fromPrefill: number; forwards: number } {
  return { fromStep: engine.stats.searchesFromStep - before.searchesFromStep, fromPrefill: engine.stats.searchesFromPrefill - before.searchesFromPrefill, forwards: engine.stats.searchForwards - before.searchForwards };
}

async function plainAlone(prompt: string, maxTokens: number): Promise<string> {
  return (await client.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true }))).choices[0]!.text;
}

test.before(async () => {
  const ctx = await gpu();
  model = await loadDecoder(ctx, DEMO_MODEL);
  elIndex = await loadIndex(ctx, join(ROOT, "demo", "index", "el"), model.decoder);
  mhIndex = await loadIndex(ctx, join(ROOT, "demo", "index", "mhqa"), model.decoder);
  const indexes = new Map([
    ["el", { name: "el", index: elIndex }],
    ["mh", { name: "mh", index: mhIndex }],
  ]);
  server = await startServer(model, { modelId: "demo", maxBatch: 8, maxQueue: 8, contextTokens: CONTEXT, indexes });
  client = new OpenAI({ apiKey: "none", baseURL: server.url + "/v1", maxRetries: 0, timeout: 120_000 });
});

test.after(async () => {
  await server?.shutdown(0);
  elIndex?.dispose();
  mhIndex?.dispose();
  model?.dispose();
});

test("rows alone: entity linking (k 2, forced [_CONTINUE_]) and multi-hop QA (injections) equal their Session runs: text, retrievals, scores, injected documents, mentions, answer, usage; no turn taken", async () => {
  const turns0 = server.engine.stats.turns;
  const searches0 = { ...server.engine.stats };
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT, k: 2 });
  assert.ok(elRef.retrievals.length > 0, "the entity-linking reference retrieves");
  assert.ok(elRef.trace.segments.some((x) => x.kind === "forced"), "the entity-linking reference forces [_CONTINUE_]");
  const el = (await client.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt: EL_SENTENCE, max_tokens: 64, temperature: 0, onegen: { index: "el", k: 2 } }))) as unknown as OpenAI.Completion & OnegenBody;
  assert.is(el.choices[0]!.text, elRef.output);
  sameReports(el.onegen.retrievals, reportsOf(elRef), "entity linking");
  assert.equal(el.onegen.mentions!.map((m) => m.entity), elRef.mentions.map((m) => m.entity));
  assert.is(el.usage!.prompt_tokens, elRef.promptIds.length);
  assert.is(el.usage!.completion_tokens, elRef.stats.newTokens);
  assert.is(el.choices[0]!.finish_reason, elRef.finish === "eos" ? "stop" : "length");

  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  assert.ok(mhRef.injections.some((x) => "ids" in x), "the multi-hop reference injects a document");
  const mh = await streamed({ prompt: MH_QUESTION, max_tokens: 96, onegen: { index: "mh" } });
  assert.is(mh.text, mhRef.output);
  sameReports(mh.reports, reportsOf(mhRef), "multi-hop QA (stream chunks)");
  sameReports(mh.onegen!.retrievals, reportsOf(mhRef), "multi-hop QA (final chunk)");
  assert.is(mh.onegen!.answer, mhRef.answer);
  assert.is(server.engine.stats.turns, turns0, "no request took a turn of its own: they were rows");
  // every query token here was fed by a step: searched on that step's final-norm row, no forward
  assert.equal(searchesSince(server.engine, searches0), { fromStep: generatedRetrievals(elRef, mhRef), fromPrefill: 0, forwards: 0 }, "searches on the steps' own rows");
});

test("rows in the batch: plain streams, then entity-linking and multi-hop rows joining mid-batch, a plain stream joining after them and others leaving: every output equals its solo run, the rows share steps", async () => {
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT });
  const el2Ref = await runEntityLinking(model, elIndex, { text: EL_OTHER }, { maxNewTokens: 48, temperature: 0, capacity: CONTEXT });
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  const plain = [
    { prompt: PROMPTS[0]!, max_tokens: 100 },
    { prompt: PROMPTS[1]!, max_tokens: 20 }, // leaves early
    { prompt: PROMPTS[2]!, max_tokens: 130 },
  ];
  const late = { prompt: PROMPTS[3]!, max_tokens: 60 };
  const alone: string[] = [];
  for (const r of [...plain, late]) alone.push(await plainAlone(r.prompt, r.max_tokens));
  const turns0 = server.engine.stats.turns;
  const searches0 = { ...server.engine.stats };
  const plainRuns = plain.map((r) => streamed({ ...r, ignore_eos: true }));
  await until(() => server.engine.stats.steps > 4 && server.engine.running === 3, "the plain streams running");
  const el = streamed({ prompt: EL_SENTENCE, max_tokens: 64, onegen: { index: "el" } });
  const mh = streamed({ prompt: MH_QUESTION, max_tokens: 96, onegen: { index: "mh" } });
  await until(() => server.engine.running >= 4, "the rows joined");
  const el2 = streamed({ prompt: EL_OTHER, max_tokens: 48, onegen: { index: "el" } });
  const lateRun = streamed({ ...late, ignore_eos: true });
  const [elOut, mhOut, el2Out, lateOut, ...plainOuts] = await Promise.all([el, mh, el2, lateRun, ...plainRuns]);
  assert.is(elOut.text, elRef.output, "entity linking equals its solo run");
  sameReports(elOut.reports, reportsOf(elRef), "entity linking in the batch");
  assert.equal(elOut.onegen!.mentions!.map((m) => m.entity), elRef.mentions.map((m) => m.entity));
  assert.is(el2Out.text, el2Ref.output, "the second entity linking equals its solo run");
  sameReports(el2Out.reports, reportsOf(el2Ref), "the second entity linking in the batch");
  assert.is(mhOut.text, mhRef.output, "multi-hop QA (with injections) equals its solo run");
  sameReports(mhOut.reports, reportsOf(mhRef), "multi-hop QA in the batch");
  assert.is(mhOut.onegen!.answer, mhRef.answer);
  assert.equal([...plainOuts.map((x) => x.text), lateOut.text], alone, "each plain stream equals the request alone");
  assert.is(server.engine.stats.turns, turns0, "the retrieval requests were rows (no turn of their own)");
  assert.equal(searchesSince(server.engine, searches0), { fromStep: generatedRetrievals(elRef, el2Ref, mhRef), fromPrefill: 0, forwards: 0 }, "searches on the steps' own rows, in the batch");
  for (const [what, out] of [["entity linking", elOut], ["multi-hop QA", mhOut]] as const) {
    assert.ok(Math.max(...out.running) >= 4, `${what}: shared steps with the plain streams (rows running: ${JSON.stringify(out.running)})`);
  }
  await until(() => server.engine.running === 0, "an idle engine");
});

const MH_FIRST = "Which city is the label of the singer Mira Holt based in?"; // its first generated id is the query token

/** A non-streamed onegen completion on `c` and the same task run alone on a Session: equal text, finish, usage and reports. */
async function sameAsSession(c: OpenAI, task: "el" | "mh", prompt: string, maxTokens: number, capacity: number, what: string): Promise<TaskResult> {
  const ref = task === "el"
    ? await runEntityLinking(model, elIndex, { text: prompt }, { maxNewTokens: maxTokens, temperature: 0, capacity })
    : await runMultiHopQa(model, mhIndex, { text: prompt }, { maxNewTokens: maxTokens, temperature: 0, capacity });
  const r = (await c.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt, max_tokens: maxTokens, temperature: 0, onegen: { index: task } }))) as unknown as OpenAI.Completion & OnegenBody;
  assert.is(r.choices[0]!.text, ref.output, `${what}: text`);
  assert.is(r.choices[0]!.finish_reason, ref.finish === "eos" ? "stop" : "length", `${what}: finish (${ref.finish})`);
  assert.is(r.usage!.completion_tokens, ref.stats.newTokens, `${what}: completion tokens`);
  sameReports(r.onegen.retrievals, reportsOf(ref), what);
  return ref;
}

test("rows at the edges, each equal to its Session run: a query token as the first generated id (the joining step's input), as the last id (max_tokens: still searched, its injection reported), a run to a full slot, and an injection refused for lack of room", async () => {
  let before = { ...server.engine.stats };
  const first = await sameAsSession(client, "mh", MH_FIRST, 150, CONTEXT, "query token first");
  assert.is(first.retrievals[0]!.position, first.promptIds.length, "the first generated id retrieves");
  // the first id is the joining step's input row (its final-norm row kept while the next step runs)
  assert.equal(searchesSince(server.engine, before), { fromStep: generatedRetrievals(first), fromPrefill: 0, forwards: 0 }, "query token first: searched on the joining step's row");
  before = { ...server.engine.stats };
  const full = await sameAsSession(client, "mh", MH_QUESTION, 150, CONTEXT, "to a full slot");
  assert.is(full.finish, "context-full");
  assert.equal(searchesSince(server.engine, before), { fromStep: generatedRetrievals(full), fromPrefill: 0, forwards: 0 }, "to a full slot: searched on the steps' rows");
  // a fresh server (its slots never held these requests' rows: a last id that no step fed must be
  // written by its own search), with a smaller slot, where the second injection does not fit
  const small = await startServer(model, { modelId: "demo", maxBatch: 2, contextTokens: 140, indexes: new Map([["mh", { name: "mh", index: mhIndex }], ["el", { name: "el", index: elIndex }]]) });
  try {
    const c = new OpenAI({ apiKey: "none", baseURL: small.url + "/v1", maxRetries: 0, timeout: 120_000 });
    const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: 140 });
    before = { ...small.engine.stats };
    await sameAsSession(c, "el", EL_SENTENCE, elRef.retrievals[0]!.position - elRef.promptIds.length + 1, 140, "query token last (entity linking)");
    const q = full.retrievals[0]!.position - full.promptIds.length + 1;
    const last = await sameAsSession(c, "mh", MH_QUESTION, q, 140, "query token last (multi-hop)");
    assert.ok(last.injections.length === 1 && "ids" in last.injections[0]!, "the last query token's injection is reported");
    // a last id is fed by no step: its search runs the one-row forward
    assert.equal(searchesSince(small.engine, before), { fromStep: 0, fromPrefill: 0, forwards: 2 }, "query token last: one forward each");
    const refused = await sameAsSession(c, "mh", MH_QUESTION, 130, 140, "injection refused");
    assert.ok(refused.injections.some((x) => "refused" in x), "the reference refuses an injection");
    assert.is(small.engine.stats.turns, 0, "a row");
  } finally {
    await small.shutdown(0);
  }
});

test("rows: query tokens in the prompt are searched at join (source 'prompt'); a prompt ending with the query token gets its document injected before the first step, one ending with `</MENTION>[LK]` its forced [_CONTINUE_]; each equal to its Session run, beside a plain stream", async () => {
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT });
  const cases = [
    { what: "multi-hop, prompt ending with the query token", index: "mh", ids: mhRef.ids.slice(0, mhRef.retrievals[0]!.position + 1), max: 60 },
    { what: "entity linking, prompt ending with </MENTION>[LK]", index: "el", ids: elRef.ids.slice(0, elRef.retrievals[0]!.position + 1), max: 40 },
    { what: "entity linking, query tokens inside the prompt", index: "el", ids: elRef.ids.slice(0, elRef.retrievals[1]!.position + 3), max: 30 },
  ];
  const plainRef = await plainAlone(PROMPTS[0]!, 90);
  const turns0 = server.engine.stats.turns;
  const searches0 = { ...server.engine.stats };
  const refs: TaskResult[] = [];
  const plain = streamed({ prompt: PROMPTS[0]!, max_tokens: 90, ignore_eos: true });
  plain.catch(() => {}); // awaited below (a failed assertion before must not leave it unhandled)
  await until(() => server.engine.running === 1, "the plain stream running");
  for (const c of cases) {
    const ref = c.index === "mh"
      ? await runMultiHopQa(model, mhIndex, { ids: c.ids }, { maxNewTokens: c.max, temperature: 0, capacity: CONTEXT })
      : await runEntityLinking(model, elIndex, { ids: c.ids }, { maxNewTokens: c.max, temperature: 0, capacity: CONTEXT });
    assert.ok(ref.retrievals.some((x) => x.source === "prompt"), `${c.what}: the reference retrieves at the prompt`);
    refs.push(ref);
    const r = (await client.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt: c.ids, max_tokens: c.max, temperature: 0, onegen: { index: c.index } }))) as unknown as OpenAI.Completion & OnegenBody;
    assert.is(r.choices[0]!.text, ref.output, `${c.what}: text`);
    assert.is(r.usage!.completion_tokens, ref.stats.newTokens, `${c.what}: completion tokens`);
    sameReports(r.onegen.retrievals, reportsOf(ref), c.what);
  }
  assert.is((await plain).text, plainRef, "the plain stream is unchanged");
  assert.is(server.engine.stats.turns, turns0, "all rows");
  // a prompt's query tokens are searched on the prompt prefill's rows, generated ones on the steps' rows: no forward
  const atPrompt = refs.reduce((n, r) => n + r.retrievals.filter((x) => x.source === "prompt").length, 0);
  assert.equal(searchesSince(server.engine, searches0), { fromStep: generatedRetrievals(...refs), fromPrefill: atPrompt, forwards: 0 }, "prompt searches on the prefill's rows, generated ones on the steps'");
});

test("rows beside embeddings (jobs alone between steps, which may read a step back before the next is encoded: a query token no step fed yet takes its own forward): each row equals its Session run", async () => {
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT });
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  // a fresh server: its slots never held these requests' rows (a search reading a row no step wrote yet would differ)
  const fresh = await startServer(model, { modelId: "demo", maxBatch: 2, contextTokens: CONTEXT, indexes: new Map([["mh", { name: "mh", index: mhIndex }], ["el", { name: "el", index: elIndex }]]) });
  try {
    const c = new OpenAI({ apiKey: "none", baseURL: fresh.url + "/v1", maxRetries: 0, timeout: 120_000 });
    const run = async (prompt: string, index: string, maxTokens: number): Promise<Report[]> => {
      const r = (await c.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt, max_tokens: maxTokens, temperature: 0, onegen: { index } }))) as unknown as OpenAI.Completion & OnegenBody;
      return Object.assign(r.onegen.retrievals, { text: r.choices[0]!.text });
    };
    let rowsDone = false;
    const embeds = (async () => {
      let n = 0;
      for (; !rowsDone; n++) {
        await fresh.engine.embed(elRef.promptIds, elRef.promptIds.length - 1);
        const steps = fresh.engine.stats.steps; // a step between two embeddings (jobs go first: back to back they would starve the rows)
        await until(() => rowsDone || fresh.engine.stats.steps > steps, "a step after an embedding");
      }
      return n;
    })();
    embeds.catch(() => {}); // awaited below
    let outs: (Report[] & { text?: string })[];
    try {
      outs = await Promise.all([run(EL_SENTENCE, "el", 64), run(MH_QUESTION, "mh", 96)]);
    } finally {
      rowsDone = true;
    }
    assert.ok((await embeds) > 0, "embeddings ran meanwhile");
    const [el, mh] = outs;
    assert.is(el!.text, elRef.output, "entity linking beside embeddings");
    sameReports(el!, reportsOf(elRef), "entity linking beside embeddings");
    assert.is(mh!.text, mhRef.output, "multi-hop QA beside embeddings");
    sameReports(mh!, reportsOf(mhRef), "multi-hop QA beside embeddings");
    const got = searchesSince(fresh.engine, { searchesFromStep: 0, searchesFromPrefill: 0, searchForwards: 0 });
    assert.is(got.fromStep + got.forwards, generatedRetrievals(elRef, mhRef), `every query token searched once (${got.fromStep} on a step's row, ${got.forwards} by a forward)`);
  } finally {
    await fresh.shutdown(0);
  }
});

test("rows: banned ids are masked per row (the demo model has none: ids the solo run writes are banned here), beside a plain stream that may write them; equal to the Session run with the same rules", async () => {
  const t = prepareEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 40, temperature: 0, capacity: CONTEXT });
  const free = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 40, temperature: 0, capacity: CONTEXT });
  const written = free.ids.slice(free.promptIds.length);
  const banned = [written[0]!, written[3]!];
  const gen = { ...t.gen, bannedIds: banned };
  const ref = t.finish(await execute(model, t.prompt, gen, t.capacity, {}));
  assert.ok(ref.output !== free.output, "the banned ids change the output");
  const plainRef = await plainAlone(PROMPTS[4]!, 40);
  const plain = streamed({ prompt: PROMPTS[4]!, max_tokens: 40, ignore_eos: true });
  plain.catch(() => {}); // awaited below (a failed assertion before must not leave it unhandled)
  await until(() => server.engine.running === 1, "the plain stream running");
  const events: string[] = [];
  const got = await submitTaskRow(server.engine, model, { ...t, gen }, (e) => events.push(e.type)).done;
  assert.ok(got, "the row ran");
  assert.equal(got!.ids, ref.ids, "the row's ids equal the Session run's");
  assert.ok(got!.ids.slice(ref.promptIds.length).every((id) => !banned.includes(id)), "no banned id written");
  assert.equal(got!.trace.segments, ref.trace.segments, "generated, forced and injected stretches alike");
  sameReports(reportsOf(got!), reportsOf(ref), "banned ids");
  assert.is(events[events.length - 1], "done");
  assert.is((await plain).text, plainRef, "the plain stream is unchanged");
});

test("rows: a client that disconnects frees its row at once", async () => {
  const ac = new AbortController();
  let chunks = 0;
  const cut = (async () => {
    const s = await client.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt: MH_QUESTION, max_tokens: 96, temperature: 0, stream: true, onegen: { index: "mh" } }), { signal: ac.signal });
    for await (const c of s) if (c.choices.some((x) => x.text !== "")) chunks++;
  })().catch((e) => {
    if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
  });
  await until(() => chunks > 0, "the row's first chunk");
  assert.is(server.engine.running, 1);
  ac.abort();
  await cut;
  await until(() => server.engine.running === 0, "the row freed");
});

test("rows: sampled retrieval requests (temperature, top_p, seed) draw as their Session runs do (an injection fed during decoding takes a sampler step), beside plain streams", async () => {
  const turns0 = server.engine.stats.turns;
  const searches0 = { ...server.engine.stats };
  const sampling = { temperature: 0.9, topP: 0.95, seed: 11 };
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 48, capacity: CONTEXT, ...sampling });
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_FIRST }, { maxNewTokens: 80, capacity: CONTEXT, ...sampling });
  const mhGreedy = await runMultiHopQa(model, mhIndex, { text: MH_FIRST }, { maxNewTokens: 80, temperature: 0, capacity: CONTEXT });
  assert.ok(mhRef.output !== mhGreedy.output, "sampling changes the multi-hop output");
  assert.ok(mhRef.injections.some((x) => "ids" in x), "the sampled multi-hop reference injects");
  const plainRefs = [await plainAlone(PROMPTS[1]!, 70), await plainAlone(PROMPTS[2]!, 50)];
  const plains = [streamed({ prompt: PROMPTS[1]!, max_tokens: 70, ignore_eos: true }), streamed({ prompt: PROMPTS[2]!, max_tokens: 50, ignore_eos: true })];
  await until(() => server.engine.running === 2, "the plain streams running");
  const opts = { temperature: 0.9, top_p: 0.95, seed: 11 };
  const [el, mh, ...plainOuts] = await Promise.all([
    streamed({ prompt: EL_SENTENCE, max_tokens: 48, onegen: { index: "el" }, ...opts }),
    streamed({ prompt: MH_FIRST, max_tokens: 80, onegen: { index: "mh" }, ...opts }),
    ...plains,
  ]);
  assert.is(el.text, elRef.output, "sampled entity linking equals its Session run");
  sameReports(el.reports, reportsOf(elRef), "sampled entity linking");
  assert.is(mh.text, mhRef.output, "sampled multi-hop QA equals its Session run");
  sameReports(mh.reports, reportsOf(mhRef), "sampled multi-hop QA");
  assert.equal(plainOuts.map((p) => p.text), plainRefs, "the plain streams are unchanged");
  assert.is(server.engine.stats.turns, turns0, "rows, no turns");
  assert.equal(searchesSince(server.engine, searches0), { fromStep: generatedRetrievals(elRef, mhRef), fromPrefill: 0, forwards: 0 }, "sampled rows: searches on the steps' own rows");
});

test("rows on a lost device: the row in flight and a plain stream beside it get the GPU failure, later requests 503, `failed` resolves", async () => {
  const ctx = await openDevice();
  const m = await loadDecoder(ctx, DEMO_MODEL);
  const el = await loadIndex(ctx, join(ROOT, "demo", "index", "el"), m.decoder);
  const s = await startServer(m, { modelId: "demo", maxBatch: 2, contextTokens: CONTEXT, indexes: new Map([["el", { name: "el", index: el }]]) });
  const c = new OpenAI({ apiKey: "none", baseURL: s.url + "/v1", maxRetries: 0 });
  const drain = async (params: Record<string, unknown>, onText: () => void): Promise<void> => {
    const st = await c.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", temperature: 0, stream: true, ...params }));
    for await (const x of st) if (x.choices.some((y) => y.text !== "")) onText();
  };
  try {
    let plainChunks = 0;
    let rowChunks = 0;
    const plain = drain({ prompt: "Marwick is", max_tokens: 120, ignore_eos: true }, () => plainChunks++);
    plain.catch(() => {}); // awaited below
    await until(() => plainChunks > 0, "the plain stream to start");
    const row = drain({ prompt: EL_SENTENCE, max_tokens: 60, onegen: { index: "el" } }, () => rowChunks++);
    row.catch(() => {}); // awaited below
    await until(() => rowChunks > 0, "the row to stream");
    assert.is(s.engine.running, 2, "the row runs in the batch beside the stream");
    assert.is(s.engine.stats.turns, 0);
    ctx.device.destroy(); // what a driver reset looks like from here
    assert.match((await s.failed).message, /GPU device lost/);
    for (const [what, p] of [["the plain stream", plain], ["the row", row]] as const) {
      try {
        await p;
        assert.unreachable(`${what} completed on a lost device`);
      } catch (err) {
        assert.instance(err, OpenAI.APIError, what);
        assert.match((err as Error).message, /GPU failed/);
      }
    }
    try {
      await c.completions.create(body({ model: "demo", prompt: "x", max_tokens: 2, onegen: { index: "el" } }));
      assert.unreachable("a retrieval request was accepted after the device was lost");
    } catch (err) {
      assert.is((err as InstanceType<typeof OpenAI.APIError>).status, 503);
    }
  } finally {
    await s.shutdown(0);
    el.dispose();
    ctx.destroy();
  }
});

test.run();
