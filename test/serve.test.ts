// `onegen serve` through the official `openai` client against a server on a loopback port, with
// the bundled demo model (and a small chat template given at load, the demo has none):
// completions and chat (streamed and not) against Session.generate run directly, embeddings
// against the decoder's hidden state normalised on the CPU, auth, every error path, the queue
// limit (429 + Retry-After), client disconnects freeing their sequences, concurrent greedy
// streams each equal to the same request alone (nothing lost, nothing mixed), OneGen retrieval
// requests on their own sessions (retrieval "turns"; the default rows of the batched step are
// test/serve-retrieval-rows.test.ts) taking turns with plain streams (each output equal to its solo run; the plain streams
// keep producing tokens meanwhile; a disconnect frees the retrieval session at once), a lost
// device (503, `failed`), and the command itself (SIGTERM drains and exits 0).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import OpenAI from "openai";
import { gpu } from "./helpers/gpu.js";
import { openDevice } from "../src/gpu/device.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { startServer, type RunningServer } from "../src/serve/server.js";
import type { DocumentIndex } from "../src/onegen/index.js";
import { loadIndex } from "../src/onegen/index-files.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import { until, body } from "./helpers/serve.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEMO_MODEL = join(ROOT, "demo", "model");
const TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
const KEY = "test-key-123";
const CONTEXT = 160;
const PROMPTS = [
  "Marwick is a city in",
  "Kestport is known for",
  "Casimir Dalley is an engineer born in",
  "The pilot Fenna Solberg left",
  "Sable Records is a label based in",
  "Lukas Dalsen is a novelist born in",
  "Braegate is a city in",
  "Tormoor is known for",
];

let model: LoadedDecoder;
let server: RunningServer;
let client: OpenAI;
let elIndex: DocumentIndex;
let mhIndex: DocumentIndex;



async function expectApiError(p: Promise<unknown>, status: number, match: RegExp, param?: string | null): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, OpenAI.APIError, `an APIError, got ${String(e)}`);
    const err = e as InstanceType<typeof OpenAI.APIError>;
    assert.is(err.status, status, `status of: ${err.message}`);
    assert.match(err.message, match);
    if (param !== undefined) assert.is(err.param, param);
    return err;
  }
  throw new Error(`expected HTTP ${status}, the request succeeded`);
}

/** Greedy ids and text from a Session (the single-sequence decode loop), as the reference. */
async function sessionGreedy(prompt: string, maxNew: number, sampling: { temperature?: number; seed?: number; topP?: number } = {}): Promise<{ text: string; ids: number[]; finish: string }> {
  const tok = model.tokenizer!;
  const ids = tok.encode(prompt);
  const s = Session.create(model.decoder, CONTEXT);
  try {
    await s.append(ids);
    const out: number[] = [];
    const it = s.generate({ maxNewTokens: maxNew, temperature: sampling.temperature ?? 0, seed: sampling.seed ?? 0, ...(sampling.topP !== undefined ? { topP: sampling.topP } : {}), eosIds: model.config.eosTokenIds });
    let finish = "";
    for (;;) {
      const r = await it.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      out.push(r.value.id);
    }
    return { text: tok.decode(out, { skipSpecialTokens: true }), ids: out, finish: finish === "eos" ? "stop" : "length" };
  } finally {
    s.dispose();
  }
}

test.before(async () => {
  const ctx = await gpu();
  model = await loadDecoder(ctx, DEMO_MODEL, { tokenizer: { chatTemplate: TEMPLATE } });
  elIndex = await loadIndex(ctx, join(ROOT, "demo", "index", "el"), model.decoder);
  mhIndex = await loadIndex(ctx, join(ROOT, "demo", "index", "mhqa"), model.decoder);
  const indexes = new Map([
    ["el", { name: "el", index: elIndex }],
    ["mh", { name: "mh", index: mhIndex }],
  ]);
  // retrieval "turns": this file tests retrieval requests on their own sessions (the rows, the
  // default, are test/serve-retrieval-rows.test.ts)
  server = await startServer(model, { apiKey: KEY, modelId: "demo", maxBatch: 8, maxQueue: 8, contextTokens: CONTEXT, maxN: 4, maxBodyBytes: 64 * 1024, indexes, retrieval: "turns" });
  client = new OpenAI({ apiKey: KEY, baseURL: server.url + "/v1", maxRetries: 0, timeout: 60_000 });
});

test.after(async () => {
  await server?.shutdown(0);
  elIndex?.dispose();
  mhIndex?.dispose();
  model?.dispose();
});

test("binds 127.0.0.1; /v1/models lists the model; /v1/models/{id}", async () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const list = await client.models.list();
  assert.equal(list.data.map((m) => [m.id, m.object, m.owned_by]), [["demo", "model", "onegen"]]);
  assert.is((await client.models.retrieve("demo")).id, "demo");
  const health = await fetch(server.url + "/health");
  assert.is(health.status, 200, "health needs no key");
  assert.equal(await health.json(), { status: "ok" });
  await expectApiError(client.models.retrieve("other"), 404, /does not exist/);
});

test("completions: greedy text equals Session.generate; streamed chunks add up to the same; usage counts", async () => {
  const prompt = PROMPTS[0]!;
  const ref = await sessionGreedy(prompt, 12);
  const promptTokens = model.tokenizer!.encode(prompt).length;
  const r = await client.completions.create({ model: "demo", prompt, max_tokens: 12, temperature: 0 });
  assert.is(r.object, "text_completion");
  assert.is(r.choices.length, 1);
  assert.is(r.choices[0]!.text, ref.text);
  assert.is(r.choices[0]!.finish_reason, ref.finish);
  assert.equal(r.usage, { prompt_tokens: promptTokens, completion_tokens: ref.ids.length, total_tokens: promptTokens + ref.ids.length });

  const stream = await client.completions.create({ model: "demo", prompt, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let finish: string | null = null;
  let usage: unknown = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    assert.is(c.object, "text_completion");
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks > 2, "streamed in pieces");
  assert.is(text, ref.text);
  assert.is(finish, ref.finish);
  assert.equal(usage, r.usage);
});

test("completions: sampled text (temperature, top_p, seed) equals Session.generate with that seed; n choices; token-id prompts", async () => {
  const prompt = PROMPTS[1]!;
  const ref = await sessionGreedy(prompt, 10, { temperature: 0.9, seed: 7, topP: 0.95 });
  const r = await client.completions.create({ model: "demo", prompt, max_tokens: 10, temperature: 0.9, top_p: 0.95, seed: 7 });
  assert.is(r.choices[0]!.text, ref.text);
  const ids = model.tokenizer!.encode(prompt);
  const byIds = await client.completions.create({ model: "demo", prompt: ids, max_tokens: 10, temperature: 0.9, top_p: 0.95, seed: 7 });
  assert.is(byIds.choices[0]!.text, ref.text, "a prompt given as token ids");
  const many = await client.completions.create({ model: "demo", prompt: [prompt, PROMPTS[0]!], n: 2, max_tokens: 6, temperature: 0 });
  assert.equal(many.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.is(many.usage!.prompt_tokens, ids.length + model.tokenizer!.encode(PROMPTS[0]!).length, "each prompt counted once, whatever n");
  assert.is(many.choices[0]!.text, many.choices[1]!.text, "greedy choices of one prompt agree");
  assert.is(many.choices[2]!.text, (await sessionGreedy(PROMPTS[0]!, 6)).text);
});

test("completions: a stop string ends the text before it (finish 'stop'), streamed or not", async () => {
  const ref = await sessionGreedy(PROMPTS[0]!, 16);
  const words = ref.text.trim().split(/\s+/);
  assert.ok(words.length >= 3, `enough text to cut: ${JSON.stringify(ref.text)}`);
  const stop = " " + words[2]!;
  const cut = ref.text.slice(0, ref.text.indexOf(stop));
  const r = await client.completions.create({ model: "demo", prompt: PROMPTS[0]!, max_tokens: 16, temperature: 0, stop: [stop, "zzzz-never"] });
  assert.is(r.choices[0]!.text, cut);
  assert.is(r.choices[0]!.finish_reason, "stop");
  let text = "";
  for await (const c of await client.completions.create({ model: "demo", prompt: PROMPTS[0]!, max_tokens: 16, temperature: 0, stop, stream: true })) text += c.choices.map((x) => x.text).join("");
  assert.is(text, cut, "no part of the stop string is streamed");
});

test("chat: the template's prompt, greedy reply equal streamed and not; role first; usage", async () => {
  const messages = [{ role: "user" as const, content: "Where was the founder of Sable Records born?" }];
  const tok = model.tokenizer!;
  const promptIds = tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  const r = await client.chat.completions.create({ model: "demo", messages, max_tokens: 10, temperature: 0 });
  assert.is(r.object, "chat.completion");
  assert.is(r.choices[0]!.message.role, "assistant");
  assert.is(r.usage!.prompt_tokens, promptIds.length);
  // the same prompt through completions (token ids) gives the same text
  const same = await client.completions.create({ model: "demo", prompt: promptIds, max_tokens: 10, temperature: 0 });
  assert.is(r.choices[0]!.message.content, same.choices[0]!.text);
  const stream = await client.chat.completions.create({ model: "demo", messages, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let first = true;
  let finish: string | null = null;
  let usage: unknown = null;
  for await (const c of stream) {
    assert.is(c.object, "chat.completion.chunk");
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (first) assert.is(ch.delta.role, "assistant", "the first chunk carries the role");
      first = false;
      text += ch.delta.content ?? "";
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.is(text, r.choices[0]!.message.content);
  assert.is(finish, r.choices[0]!.finish_reason);
  assert.equal(usage, r.usage);
});

test("embeddings: normalised hidden state at the document token, float and base64 alike", async () => {
  const text = "Marwick is a city in Doravia.";
  const tok = model.tokenizer!;
  const ids = tok.encode(text + "[SE]");
  const se = tok.requireTokenId("[SE]");
  assert.is(ids[ids.length - 1], se);
  // reference: the decoder's final-norm hidden state at that row, normalised on the CPU
  const ctx = model.decoder.ctx;
  const cache = model.decoder.createCache(ids.length);
  const T = ids.length;
  const plan = {
    ids: ctx.upload(Uint32Array.from(ids), [T], "u32"),
    ropePositions: ctx.upload(Uint32Array.from(ids.keys()), [T], "u32"),
    cacheRows: ctx.upload(Uint32Array.from(ids.keys()), [T], "u32"),
    ranges: ctx.upload(Uint32Array.from(ids.flatMap((_, p) => [0, p + 1])), [T, 2], "u32"),
  };
  const out = await model.decoder.forward(cache, plan, { logitsRows: "none", keepHidden: true });
  const hidden = await out.hidden!.readF32();
  for (const t of [...Object.values(plan), out.hidden!]) t.dispose();
  cache.dispose();
  const D = model.decoder.hiddenSize;
  const row = hidden.subarray((T - 1) * D, T * D);
  const norm = Math.sqrt(row.reduce((s, x) => s + x * x, 0));
  const want = Array.from(row, (x) => x / norm);

  const f = await client.embeddings.create({ model: "demo", input: [text, "Kestport is a city in Kalmora."], encoding_format: "float" });
  assert.is(f.data.length, 2);
  const got = f.data[0]!.embedding;
  assert.is(got.length, D);
  const maxErr = Math.max(...got.map((x, i) => Math.abs(x - want[i]!)));
  assert.ok(maxErr < 1e-4, `max error ${maxErr}`);
  assert.ok(f.usage.prompt_tokens > T);
  const b = await client.embeddings.create({ model: "demo", input: text }); // the client asks for base64
  assert.equal(Array.from(b.data[0]!.embedding), got);
  const byIds = await client.embeddings.create({ model: "demo", input: ids.slice(0, -1), encoding_format: "float" });
  assert.equal(byIds.data[0]!.embedding, got, "ids without the doc token get it appended");
});

test("onegen extension: entity linking with in-loop retrieval equals runEntityLinking; retrieval objects on the stream and in the response", async () => {
  const sentence = "As a young engineer, Casimir Dalley left Marwick for Kestport.";
  const ref = await runEntityLinking(model, elIndex, { text: sentence }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT });
  assert.ok(ref.retrievals.length > 0, "the reference retrieves");
  type OnegenBody = { onegen: { task: string; retrievals: { position: number; hits: { id: string; score: number }[]; injected: unknown }[]; mentions: { entity: string | null }[] } };
  const r = (await client.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", prompt: sentence, max_tokens: 64, temperature: 0, onegen: { index: "el", k: 2 } }))) as unknown as OpenAI.Completion & OnegenBody;
  assert.is(r.choices[0]!.text, ref.output);
  assert.is(r.onegen.task, "entity-linking");
  assert.equal(r.onegen.retrievals.map((x) => [x.position, x.hits[0]!.id]), ref.retrievals.map((x) => [x.position, x.hits[0]!.id]));
  assert.ok(r.onegen.retrievals.every((x) => x.hits.length === 2 && x.injected === null), "k hits, no injection");
  assert.equal(r.onegen.mentions.map((m) => m.entity), ref.mentions.map((m) => m.entity));
  assert.is(r.usage!.prompt_tokens, ref.promptIds.length);
  // streamed: the same text, one retrieval object per query token, in order
  const stream = await client.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt: sentence, max_tokens: 64, temperature: 0, stream: true, onegen: { index: "el" } }));
  let text = "";
  const seen: number[] = [];
  for await (const c of stream) {
    text += c.choices.map((x) => x.text).join("");
    const rr = (c as unknown as { retrieval?: { position: number } }).retrieval;
    if (rr) seen.push(rr.position);
  }
  assert.is(text, ref.output);
  assert.equal(seen, ref.retrievals.map((x) => x.position));
  // a client ignoring the extension gets plain chat text
  const chat = await client.chat.completions.create(body<OpenAI.ChatCompletionCreateParamsNonStreaming>({ model: "demo", messages: [{ role: "user", content: sentence }], max_tokens: 64, temperature: 0, onegen: { index: "el" } }));
  assert.is(chat.choices[0]!.message.content, ref.output);
});

test("auth: no key or a wrong key gets 401 in OpenAI's shape", async () => {
  const wrong = new OpenAI({ apiKey: "nope", baseURL: server.url + "/v1", maxRetries: 0 });
  await expectApiError(wrong.models.list(), 401, /Incorrect API key/);
  const res = await fetch(server.url + "/v1/completions", { method: "POST", body: JSON.stringify({ model: "demo", prompt: "x" }) });
  assert.is(res.status, 401);
  assert.equal(await res.json(), { error: { message: "You didn't provide an API key: pass it as 'Authorization: Bearer KEY'", type: "invalid_request_error", param: null, code: "invalid_api_key" } });
});

test("malformed requests: 400 in OpenAI's shape naming the parameter; 404, 405, 413", async () => {
  const c = client;
  const p = { model: "demo", prompt: "x" };
  await expectApiError(c.completions.create(body({ ...p, foo: 1 })), 400, /Unrecognized request argument supplied: foo/, "foo");
  await expectApiError(c.completions.create(body({ prompt: "x" })), 400, /'model' is required/, "model");
  await expectApiError(c.completions.create(body({ model: "demo" })), 400, /'prompt' is required/, "prompt");
  await expectApiError(c.completions.create({ ...p, model: "gpt-9" }), 404, /The model 'gpt-9' does not exist/, "model");
  await expectApiError(c.completions.create({ ...p, max_tokens: CONTEXT + 1 }), 400, /max_tokens is 161, more than this server's limit of 160/, "max_tokens");
  await expectApiError(c.completions.create({ ...p, max_tokens: CONTEXT }), 400, /more than this server's context of 160 per sequence/, "max_tokens");
  await expectApiError(c.completions.create({ ...p, max_tokens: 0 }), 400, /'max_tokens' must be ≥ 1/, "max_tokens");
  await expectApiError(c.completions.create({ ...p, n: 5 }), 400, /'n' is 5, more than this server's limit of 4/, "n");
  await expectApiError(c.completions.create({ ...p, temperature: 3 }), 400, /'temperature' must be ≤ 2/, "temperature");
  await expectApiError(c.completions.create({ ...p, top_p: 0 }), 400, /'top_p' must be > 0/, "top_p");
  await expectApiError(c.completions.create(body({ ...p, temperature: "hot" })), 400, /'temperature' must be a finite number/, "temperature");
  await expectApiError(c.completions.create({ ...p, logprobs: 2 }), 400, /'logprobs' is not supported/, "logprobs");
  await expectApiError(c.completions.create({ ...p, stop: ["a", "b", "c", "d", "e"] }), 400, /'stop' holds 5 strings, at most 4/, "stop");
  await expectApiError(c.completions.create({ ...p, prompt: "city ".repeat(200) }), 400, /the prompt has \d+ tokens; this server's context holds 160/, "prompt");
  await expectApiError(c.completions.create({ ...p, prompt: [1, 2, 99999] }), 400, /token id 99999, outside the vocabulary/, "prompt");
  await expectApiError(c.completions.create({ ...p, stream_options: { include_usage: true } }), 400, /only allowed when 'stream' is true/, "stream_options");
  await expectApiError(c.completions.create(body({ ...p, onegen: { index: "wiki" } })), 400, /no index named 'wiki' is loaded on this server \(loaded: el, mh\)/, "onegen.index");
  await expectApiError(c.completions.create(body({ ...p, onegen: { index: "el", inject: true } })), 400, /'onegen.inject' true is not what entity-linking does/, "onegen.inject");
  await expectApiError(c.completions.create(body({ ...p, onegen: { index: "el", task: "poetry" } })), 400, /'onegen.task' must be one of entity-linking, multihop-qa/, "onegen.task");
  await expectApiError(c.completions.create(body({ ...p, n: 2, onegen: { index: "el" } })), 400, /'n' must be 1 with 'onegen'/, "n");
  await expectApiError(c.completions.create(body({ ...p, onegen: { index: "el", k: 0 } })), 400, /'onegen.k' must be an integer/, "onegen.k");
  await expectApiError(c.chat.completions.create(body({ model: "demo", messages: [] })), 400, /'messages' must be a non-empty array/, "messages");
  await expectApiError(c.chat.completions.create(body({ model: "demo", messages: [{ role: "wizard", content: "x" }] })), 400, /role must be one of/, "messages[0].role");
  await expectApiError(c.embeddings.create(body({ model: "demo", input: "x", dimensions: 8 })), 400, /'dimensions' is not supported/, "dimensions");
  await expectApiError(c.embeddings.create(body({ model: "demo", input: 3 })), 400, /'input' must be a string/, "input");

  const raw = (path: string, init: RequestInit = {}) => fetch(server.url + path, { ...init, headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", ...(init.headers ?? {}) } });
  const bad = await raw("/v1/completions", { method: "POST", body: "{not json" });
  assert.is(bad.status, 400);
  const e = (await bad.json()) as { error: { type: string; code: string } };
  assert.is(e.error.type, "invalid_request_error");
  assert.is(e.error.code, "invalid_json");
  const arr = await raw("/v1/completions", { method: "POST", body: "[1]" });
  assert.is(arr.status, 400);
  assert.match(((await arr.json()) as { error: { message: string } }).error.message, /must be a JSON object/);
  const big = await raw("/v1/completions", { method: "POST", body: JSON.stringify({ model: "demo", prompt: "x".repeat(70 * 1024) }) });
  assert.is(big.status, 413);
  assert.is(((await big.json()) as { error: { code: string } }).error.code, "request_too_large");
  const get = await raw("/v1/completions");
  assert.is(get.status, 405);
  assert.is(get.headers.get("allow"), "POST");
  const nowhere = await raw("/v1/nowhere");
  assert.is(nowhere.status, 404);
  assert.is(((await nowhere.json()) as { error: { code: string } }).error.code, "unknown_url");
});

test("concurrency: 32 streaming greedy requests at once (8 slots, 24 queued; lengths differ, so sequences leave and join mid-run) each equal the same request alone", async () => {
  // a server of its own with room to queue all 32 (the shared one queues 8, as the 429 test needs)
  const big = await startServer(model, { modelId: "demo", maxBatch: 8, maxQueue: 24, contextTokens: CONTEXT });
  try {
    const c = new OpenAI({ apiKey: "none", baseURL: big.url + "/v1", maxRetries: 0, timeout: 120_000 });
    const variants = [(p: string) => p, (p: string) => p.replace(/ in$| for$/, ""), (p: string) => `${p} the`, (p: string) => `Today ${p}`];
    const reqs = variants.flatMap((v) => PROMPTS.map(v)).map((prompt, i) => ({ prompt, max_tokens: 4 + (i % 13) }));
    assert.is(reqs.length, 32);
    const alone: string[] = [];
    for (const r of reqs) alone.push((await c.completions.create({ model: "demo", ...r, temperature: 0 })).choices[0]!.text);
    const before = { ...big.engine.stats };
    const together = await Promise.all(
      reqs.map(async (r) => {
        let text = "";
        for await (const ch of await c.completions.create({ model: "demo", ...r, temperature: 0, stream: true })) text += ch.choices.map((x) => x.text).join("");
        return text;
      }),
    );
    assert.equal(together, alone, "nothing lost, nothing mixed between sequences");
    const steps = big.engine.stats.steps - before.steps;
    const generated = big.engine.stats.tokensGenerated - before.tokensGenerated;
    assert.ok(big.engine.stats.maxBatchSeen >= 4, `sequences shared steps (largest batch ${big.engine.stats.maxBatchSeen} of 8)`);
    assert.ok(steps < generated, `${generated} tokens in ${steps} steps`);
  } finally {
    await big.shutdown(0);
  }
});

test("queue: past max-queue a request gets 429 with Retry-After; a client that disconnects frees its sequence", async () => {
  const engine = server.engine;
  const before = engine.stats.tokensGenerated;
  // 8 long streams fill every slot (ignore_eos: they run to max_tokens unless cancelled)
  const aborts: AbortController[] = [];
  const firstChunk: Promise<void>[] = [];
  const streams = PROMPTS.map((prompt) => {
    const ac = new AbortController();
    aborts.push(ac);
    let seen!: () => void;
    firstChunk.push(new Promise<void>((r) => (seen = r)));
    return (async () => {
      try {
        const s = await client.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt, max_tokens: 80, temperature: 0, stream: true, ignore_eos: true }), { signal: ac.signal });
        for await (const c of s) if (c.choices.some((x) => x.text !== "")) seen();
      } catch (e) {
        if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
      }
      return "aborted";
    })();
  });
  await Promise.all(firstChunk);
  assert.is(engine.running, 8);
  // 8 more wait in the queue
  const queued = PROMPTS.map((prompt) => client.completions.create({ model: "demo", prompt, max_tokens: 4, temperature: 0 }));
  await until(() => engine.queued === 8, "8 queued sequences");
  const err = await expectApiError(client.completions.create({ model: "demo", prompt: "x", max_tokens: 2 }), 429, /the server is busy/);
  assert.is(err.headers?.get("retry-after"), "1");
  assert.is((err.error as { type?: string }).type, "rate_limit_exceeded");
  for (const ac of aborts) ac.abort();
  await Promise.all(streams);
  const done = await Promise.all(queued);
  assert.ok(done.every((r) => r.choices[0]!.finish_reason !== null));
  await until(() => engine.running === 0 && engine.queued === 0, "an idle engine");
  const generated = engine.stats.tokensGenerated - before;
  assert.ok(generated < 8 * 80, `cancelled streams stopped early (${generated} tokens generated)`);
});

const EL_SENTENCE = "As a young engineer, Casimir Dalley left Marwick for Kestport.";
const MH_QUESTION = "Where does the founder of Falcon Institute work?";

/**
 * Streams a completion; every chunk with text logs `tag` (in arrival order) and, for retrieval
 * requests, the engine's step count and running retrieval requests at that moment.
 */
async function streamLogged(params: Record<string, unknown>, tag: string, log: string[], at: Map<string, { steps: number; running: number }[]>, signal?: AbortSignal): Promise<string> {
  let text = "";
  const s = await client.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", temperature: 0, ...params, stream: true }), signal ? { signal } : {});
  for await (const c of s) {
    const t = c.choices.map((x) => x.text).join("");
    if (t === "") continue;
    text += t;
    log.push(tag);
    if (tag !== "P") at.set(tag, [...(at.get(tag) ?? []), { steps: server.engine.stats.steps, running: server.engine.interleaved.running }]);
  }
  return text;
}

test("onegen requests take turns with the batch: 4 plain streams, an entity-linking and a multi-hop request at once each equal their solo outputs; the batch keeps stepping while they run", async () => {
  const elRef = await runEntityLinking(model, elIndex, { text: EL_SENTENCE }, { maxNewTokens: 64, temperature: 0, capacity: CONTEXT });
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  assert.ok(mhRef.injections.some((x) => "ids" in x), "the multi-hop reference injects a document");
  const plain = PROMPTS.slice(0, 4).map((prompt) => ({ prompt, max_tokens: 120, ignore_eos: true }));
  const alone: string[] = [];
  for (const r of plain) alone.push((await client.completions.create(body<OpenAI.CompletionCreateParamsNonStreaming>({ model: "demo", ...r, temperature: 0 }))).choices[0]!.text);
  const log: string[] = [];
  const at = new Map<string, { steps: number; running: number }[]>();
  const plainRuns = plain.map((r) => streamLogged(r, "P", log, at));
  await until(() => log.length >= 4, "the plain streams' first tokens");
  const el = streamLogged({ prompt: EL_SENTENCE, max_tokens: 64, onegen: { index: "el" } }, "E", log, at);
  const mh = streamLogged({ prompt: MH_QUESTION, max_tokens: 96, onegen: { index: "mh" } }, "M", log, at);
  const [elText, mhText, ...plainTexts] = await Promise.all([el, mh, ...plainRuns]);
  assert.is(elText, elRef.output, "entity linking equals its solo run");
  assert.is(mhText, mhRef.output, "multi-hop QA (with injections) equals its solo run");
  assert.equal(plainTexts, alone, "each plain stream equals the request alone");
  assert.ok([...at.values()].flat().some((x) => x.running === 2), "the two retrieval requests ran at once");
  for (const tag of ["E", "M"]) {
    const seen = at.get(tag)!;
    const first = log.indexOf(tag);
    const last = log.lastIndexOf(tag);
    const plainBetween = log.slice(first, last).filter((x) => x === "P").length;
    // the old design (the whole request alone on the device) froze the batch here: 0 steps, no plain chunk
    assert.ok(seen[seen.length - 1]!.steps - seen[0]!.steps >= 4, `${tag}: batch steps while it ran: ${JSON.stringify(seen.map((x) => x.steps))}`);
    assert.ok(plainBetween >= 4, `${tag}: plain chunks between its first and last chunk: ${log.join("")}`);
  }
  await until(() => server.engine.interleaved.running === 0, "the retrieval sessions freed");
});

test("onegen: a client that disconnects frees its retrieval request at once, waiting for its place or running; the others finish equal to their solo runs", async () => {
  const engine = server.engine;
  const live0 = model.decoder.ctx.pool.stats.liveBytes;
  const mhRef = await runMultiHopQa(model, mhIndex, { text: MH_QUESTION }, { maxNewTokens: 96, temperature: 0, capacity: CONTEXT });
  const log: string[] = [];
  const at = new Map<string, { steps: number; running: number }[]>();
  // a long plain stream keeps the batch busy (the retrieval requests alternate with its steps)
  const plainAc = new AbortController();
  const plainRun = streamLogged({ prompt: PROMPTS[2]!, max_tokens: 140, ignore_eos: true }, "P", log, at, plainAc.signal).catch((e) => {
    if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
  });
  await until(() => log.length >= 1, "the plain stream's first token");
  // three retrieval requests, two places (--max-retrievals 2): the third waits
  const acs = [0, 1, 2].map(() => new AbortController());
  const finished = [false, false, false];
  const start = (i: number): Promise<string> =>
    streamLogged({ prompt: MH_QUESTION, max_tokens: 96, onegen: { index: "mh" } }, `R${i}`, log, at, acs[i]!.signal)
      .catch((e) => {
        if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
        return "aborted";
      })
      .finally(() => (finished[i] = true));
  const r0 = start(0);
  await until(() => engine.interleaved.running === 1, "R0 running");
  const r1 = start(1);
  await until(() => engine.interleaved.running === 2, "R1 running");
  const r2 = start(2);
  await until(() => engine.interleaved.waiting === 1, "R2 waiting");
  acs[2]!.abort();
  await until(() => engine.interleaved.waiting === 0, "R2 out of the queue");
  assert.ok(["aborted", ""].includes(await r2), "R2 never streamed a token");
  assert.is(engine.interleaved.running, 2, "the waiting one left; the running ones go on");
  await until(() => at.has("R0"), "R0's first chunk");
  acs[0]!.abort();
  await until(() => engine.interleaved.running === 1, "R0's session freed");
  assert.not.ok(finished[1], "R0 was freed while R1 still ran (at once, not at the end of anything)");
  const cut = await r0; // what arrived before the abort (or "aborted")
  assert.ok(cut === "aborted" || (cut !== mhRef.output && mhRef.output!.startsWith(cut)), `R0 stopped early: ${JSON.stringify(cut)}`);
  assert.is(await r1, mhRef.output, "R1 equals its solo run");
  assert.ok(!at.has("R2"), "the aborted waiting request never ran");
  plainAc.abort();
  await plainRun;
  await until(() => engine.running === 0 && engine.interleaved.running === 0, "an idle engine");
  assert.ok(model.decoder.ctx.pool.stats.liveBytes <= live0, `GPU memory back to where it was (${model.decoder.ctx.pool.stats.liveBytes} vs ${live0} bytes live)`);
});

test("a lost device: in-flight requests (a retrieval request among them) and later ones get 503, `failed` resolves", async () => {
  const ctx = await openDevice();
  const m = await loadDecoder(ctx, DEMO_MODEL);
  const el = await loadIndex(ctx, join(ROOT, "demo", "index", "el"), m.decoder);
  const s = await startServer(m, { modelId: "demo", maxBatch: 2, contextTokens: CONTEXT, indexes: new Map([["el", { name: "el", index: el }]]), retrieval: "turns" });
  const c = new OpenAI({ apiKey: "none", baseURL: s.url + "/v1", maxRetries: 0 });
  try {
    assert.ok((await c.completions.create({ model: "demo", prompt: "Marwick is", max_tokens: 3, temperature: 0 })).choices[0]!.text.length > 0);
    await expectApiError(c.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "x" }] }), 400, /has no chat template/, "messages");
    const streamed = (async () => {
      const st = await c.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt: "Marwick is", max_tokens: 60, temperature: 0, stream: true, ignore_eos: true }));
      let text = "";
      for await (const x of st) text += x.choices.map((y) => y.text).join("");
      return text;
    })();
    await until(() => s.engine.stats.steps > 3, "the stream to start");
    let retrievalChunks = 0;
    const retrieving = (async () => {
      const st = await c.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt: EL_SENTENCE, max_tokens: 60, temperature: 0, stream: true, onegen: { index: "el" } }));
      for await (const x of st) if (x.choices.some((y) => y.text !== "")) retrievalChunks++;
    })();
    retrieving.catch(() => {}); // awaited below
    await until(() => retrievalChunks > 0, "the retrieval request to stream");
    assert.is(s.engine.interleaved.running, 1, "the retrieval request runs beside the stream");
    ctx.device.destroy(); // what a driver reset looks like from here
    const e = await s.failed;
    assert.match(e.message, /GPU device lost/);
    try {
      await streamed;
      assert.unreachable("a stream completed on a lost device");
    } catch (err) {
      assert.instance(err, OpenAI.APIError);
      assert.match((err as Error).message, /GPU failed/);
    }
    try {
      await retrieving;
      assert.unreachable("a retrieval request completed on a lost device");
    } catch (err) {
      assert.instance(err, OpenAI.APIError);
      assert.match((err as Error).message, /GPU failed/);
    }
    assert.equal(s.engine.interleaved, { running: 0, waiting: 0 });
    await expectApiError(c.completions.create({ model: "demo", prompt: "x", max_tokens: 2 }), 503, /GPU failed/);
    await expectApiError(c.completions.create(body({ model: "demo", prompt: "x", max_tokens: 2, onegen: { index: "el" } })), 503, /GPU failed/);
    await expectApiError(c.models.list(), 503, /GPU failed/);
    assert.is((await fetch(s.url + "/health")).status, 503, "health tells the load balancer");
  } finally {
    await s.shutdown(0);
    el.dispose();
    ctx.destroy();
  }
});

test("the command: prints its URL on 127.0.0.1, takes the key from ONEGEN_API_KEY, serves, and drains on SIGTERM, exit 0", async () => {
  const child = spawn(process.execPath, [join(ROOT, "dist", "src", "cli.js"), "serve", "--model", DEMO_MODEL, "--port", "0", "--quiet", "--context", "64", "--max-batch", "2", "--model-name", "demo"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ONEGEN_API_KEY: "env-key" },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  try {
    await until(() => /serving 'demo' at (http:\S+)\/v1/.test(out), `the URL line (stdout: ${out} stderr: ${err})`, 50_000);
    const url = /serving 'demo' at (http:\S+)\/v1/.exec(out)![1]!;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(out, /API key required/);
    assert.is((await fetch(url + "/v1/models")).status, 401, "the key from ONEGEN_API_KEY is required");
    const c = new OpenAI({ apiKey: "env-key", baseURL: url + "/v1", maxRetries: 0 });
    const st = await c.completions.create(body<OpenAI.CompletionCreateParamsStreaming>({ model: "demo", prompt: "Marwick is", max_tokens: 30, temperature: 0, stream: true, ignore_eos: true }));
    let text = "";
    let finish: string | null = null;
    let signalled = false;
    for await (const x of st) {
      text += x.choices.map((y) => y.text).join("");
      for (const y of x.choices) if (y.finish_reason) finish = y.finish_reason;
      if (!signalled) {
        signalled = true;
        child.kill("SIGTERM");
      }
    }
    assert.is(finish, "length", "the running stream was drained to its end");
    assert.ok(text.length > 0);
    assert.is(await exited, 0, `exit status (stderr: ${err})`);
    assert.match(out, /SIGTERM: draining/);
    assert.match(out, /stopped\n$/);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test.run();
