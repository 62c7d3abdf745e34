// Generation on the GPU decode loop (src/model/session.ts), checked against the full forward.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { argmaxRow } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { assertRejects } from "./helpers/check.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session, generateIds, type GenerateOptions } from "../src/model/session.js";
import { UsageError } from "../src/errors.js";
import type { Tensor } from "../src/gpu/tensor.js";

let modelPromise: Promise<LoadedDecoder> | null = null;
const model = () => (modelPromise ??= gpu().then((ctx) => loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true })));
const PROMPT = [5, 17, 99, 3, 250, 42, 7];

/** Logits [T, V] of one full forward over `ids` (f32 cache). */
async function fullLogits(m: LoadedDecoder, ids: number[]): Promise<Float32Array> {
  const s = new Session(m.decoder, m.decoder.createCache(ids.length, "f32"));
  const out = await s.append(ids, { logits: "all" });
  const l = (await (out.logits as Tensor).read()) as Float32Array;
  out.logits?.dispose();
  s.dispose();
  return l;
}

/** Asserts generated[j] = argmax of the full forward at the position before it, except at near-ties. */
function assertArgmaxChain(logits: Float32Array, V: number, promptLen: number, generated: number[], what: string): number {
  let nearTies = 0;
  for (let j = 0; j < generated.length; j++) {
    const row = promptLen - 1 + j;
    const want = argmaxRow(logits, row, V);
    if (generated[j] === want) continue;
    const margin = logits[row * V + want]! - logits[row * V + generated[j]!]!;
    if (margin < 1e-4) {
      nearTies++;
      continue;
    }
    assert.unreachable(`${what}: token ${j} is ${generated[j]}, the full forward's argmax is ${want} (margin ${margin})`);
  }
  return nearTies;
}

test("1,000-token greedy generation: no GPU allocation after warm-up, equals the full forward's argmax", async () => {
  const m = await model();
  const ctx = m.decoder.ctx;
  const N = 1000;
  const session = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N, "f32"));
  await session.append(PROMPT);
  const ids: number[] = [];
  let createdAfterWarmup = -1;
  let readbacksAfterWarmup = -1;
  let bytesAfterWarmup = -1;
  for await (const t of session.generate({ maxNewTokens: N, temperature: 0, stepsPerRead: 4 })) {
    ids.push(t.id);
    if (ids.length === 8) {
      createdAfterWarmup = ctx.stats.buffersCreated;
      readbacksAfterWarmup = ctx.stats.readbacks;
      bytesAfterWarmup = ctx.stats.bytesReadBack;
    }
  }
  assert.is(ids.length, N);
  assert.is(ctx.stats.buffersCreated, createdAfterWarmup, `GPU buffers created after warm-up: ${ctx.stats.buffersCreated - createdAfterWarmup}`);
  const perStep = (ctx.stats.bytesReadBack - bytesAfterWarmup) / (N - 8);
  assert.ok(perStep <= 4, `bytes read back per step: ${perStep}`);
  assert.ok((ctx.stats.readbacks - readbacksAfterWarmup) <= Math.ceil((N - 8) / 4) + 1, "one readback per 4 steps");
  session.dispose();
  const logits = await fullLogits(m, [...PROMPT, ...ids.slice(0, -1)]);
  const ties = assertArgmaxChain(logits, m.decoder.vocabSize, PROMPT.length, ids, "greedy");
  assert.ok(ties <= 2, `${ties} near-ties`);
});

test("sampling: same seed → same ids, whatever the steps per submit; top-k 1 = greedy", async () => {
  const m = await model();
  const run = async (opts: Partial<GenerateOptions>) => {
    const s = Session.create(m.decoder, 64);
    const r = await generateIds(s, PROMPT, { maxNewTokens: 24, ...opts });
    s.dispose();
    return r.ids;
  };
  const a = await run({ temperature: 1.0, topP: 0.95, seed: 7, stepsPerRead: 1 });
  const b = await run({ temperature: 1.0, topP: 0.95, seed: 7, stepsPerRead: 8 });
  const c = await run({ temperature: 1.0, topP: 0.95, seed: 8 });
  assert.equal(a, b);
  assert.not.equal(a, c, "different seeds gave identical 24-token samples");
  const greedy = await run({ temperature: 0 });
  assert.equal(await run({ temperature: 0.7, topK: 1, seed: 3 }), greedy);
});

test("stops on EOS ids and max tokens; banned ids are never sampled; forcing fires", async () => {
  const m = await model();
  const s0 = Session.create(m.decoder, 64);
  const greedy = (await generateIds(s0, PROMPT, { maxNewTokens: 12 })).ids;
  s0.dispose();
  // EOS: the 6th greedy token
  const s1 = Session.create(m.decoder, 64);
  const r1 = await generateIds(s1, PROMPT, { maxNewTokens: 12, eosIds: [greedy[5]!] });
  const firstEos = greedy.indexOf(greedy[5]!);
  assert.equal(r1.ids, greedy.slice(0, firstEos + 1));
  assert.is(r1.finish, "eos");
  s1.dispose();
  // banned: the greedy tokens can't appear
  const banned = [...new Set(greedy.slice(0, 3))];
  const s2 = Session.create(m.decoder, 64);
  const r2 = await generateIds(s2, PROMPT, { maxNewTokens: 12, bannedIds: banned });
  assert.ok(r2.ids.every((id) => !banned.includes(id)), `banned ids sampled: ${r2.ids}`);
  assert.is(r2.finish, "max-tokens");
  s2.dispose();
  // forcing: after the prompt's last two ids, id 123 must follow; after greedy[0], id 77
  const s3 = Session.create(m.decoder, 64);
  const r3 = await generateIds(s3, PROMPT, { maxNewTokens: 4, forceAfter: [{ pattern: PROMPT.slice(-2), token: 123 }] });
  assert.is(r3.ids[0], 123);
  s3.dispose();
  const s4 = Session.create(m.decoder, 64);
  const r4 = await generateIds(s4, PROMPT, { maxNewTokens: 4, forceAfter: [{ pattern: [greedy[0]!], token: 77 }] });
  assert.equal(r4.ids.slice(0, 2), [greedy[0]!, 77]);
  s4.dispose();
});

test("stop strings end generation at the token whose text completes them; text streams with each token", async () => {
  const m = await model();
  const s0 = Session.create(m.decoder, 64);
  const greedy = (await generateIds(s0, PROMPT, { maxNewTokens: 10 })).ids;
  s0.dispose();
  const decode = (ids: number[]) => ids.map((id) => `<${id}>`).join("");
  const stop = `${greedy[3]}><${greedy[4]}`; // spans two tokens
  const s = Session.create(m.decoder, 64);
  await s.append(PROMPT);
  const got: { id: number; text?: string }[] = [];
  const it = s.generate({ maxNewTokens: 10, decode, stopStrings: [stop] });
  let r = await it.next();
  while (!r.done) {
    got.push(r.value);
    r = await it.next();
  }
  assert.is(r.value, "stop-string");
  const firstHit = greedy.findIndex((_, i) => decode(greedy.slice(0, i + 1)).includes(stop));
  assert.equal(got.map((g) => g.id), greedy.slice(0, firstHit + 1));
  assert.is(got[1]!.text, decode(greedy.slice(0, 2)));
  s.dispose();
});

test("context edits: injected ids mid-generation and truncation continue like a fresh forward", async () => {
  const m = await model();
  const V = m.decoder.vocabSize;
  const s = Session.create(m.decoder, 128);
  const g1 = (await generateIds(s, PROMPT, { maxNewTokens: 5 })).ids;
  const injected = [300, 301, 302, 8, 9];
  await s.append(injected);
  const g2 = (await generateIds(s, [], { maxNewTokens: 6 })).ids;
  const seq = [...PROMPT, ...g1, ...injected];
  const logits = await fullLogits(m, [...seq, ...g2.slice(0, -1)]);
  assertArgmaxChain(logits, V, seq.length, g2, "after injection");
  // truncate back to the end of the prompt: the continuation repeats g1
  s.truncate(PROMPT.length);
  const again = (await generateIds(s, [], { maxNewTokens: 5 })).ids;
  assert.equal(again, g1);
  assert.is(s.length, PROMPT.length + 5);
  s.dispose();
});

test("errors: context overflow, ids out of the vocabulary, empty session", async () => {
  const m = await model();
  const s = Session.create(m.decoder, 8);
  await assertRejects(() => s.append(Array(9).fill(1)), UsageError, [/exceed the context of 8/], "overflow");
  await assertRejects(() => s.append([1, m.decoder.vocabSize]), UsageError, [/out of the vocabulary/], "oov");
  await assertRejects(() => s.append([-1]), UsageError, [/out of the vocabulary/], "negative");
  const it = s.generate({ maxNewTokens: 3 });
  await assertRejects(() => it.next(), UsageError, [/empty/], "empty session");
  // a full context ends generation with "context-full"
  const r = await generateIds(s, [1, 2, 3, 4, 5, 6], { maxNewTokens: 10 });
  assert.is(r.ids.length, 2);
  assert.is(r.finish, "context-full");
  s.dispose();
});

test.run();
