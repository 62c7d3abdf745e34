// Decode hooks (src/model/hooks.ts): the session calls them at fixed points of every step; with no
// hook a step encodes exactly plain decoding's dispatches; a hook that injects a token row gets a
// continuation equal to a full forward over the sequence with that row in it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { argmaxRow } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session, causalRangesFor, type GeneratedToken, type GenerateOptions } from "../src/model/session.js";
import type { DecodeHook, DecodeStep, HookOutcome } from "../src/model/hooks.js";
import { sample } from "../src/ops/sample.js";
import { advancePosition } from "../src/ops/decode_state.js";
import type { Tensor } from "../src/gpu/tensor.js";

let modelPromise: Promise<LoadedDecoder> | null = null;
const model = () => (modelPromise ??= gpu().then((ctx) => loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true })));
const PROMPT = [5, 17, 99, 3, 250, 42, 7];

async function run(s: Session, opts: GenerateOptions): Promise<GeneratedToken[]> {
  const toks: GeneratedToken[] = [];
  for await (const t of s.generate(opts)) toks.push(t);
  return toks;
}

/** Dispatches of one plain decode step encoded by hand: sample, advance, forward of one token. */
async function plainStepDispatches(m: LoadedDecoder): Promise<{ sampleAdvance: number; forward: number }> {
  const ctx = m.decoder.ctx;
  const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + 4, "f32"));
  await s.append(PROMPT);
  ctx.write(s.positionTensor, Uint32Array.of(PROMPT.length - 1));
  ctx.write(s.rangesTensor, causalRangesFor(PROMPT.length - 1, 1));
  const d0 = ctx.stats.dispatches;
  await sample(ctx, s.logitsTensor, s.tokenTensor, { temperature: 0, seed: 0, step: 0 });
  await advancePosition(ctx, s.tokenTensor, s.positionTensor, s.rangesTensor, s.contextTensor, 0);
  const d1 = ctx.stats.dispatches;
  const out = await m.decoder.forward(s.cache, { ids: s.tokenTensor, ropePositions: s.positionTensor, cacheRows: s.positionTensor, ranges: s.rangesTensor }, {
    logitsRows: "all",
    logitsOut: s.logitsTensor,
  });
  out.hidden?.dispose();
  const d2 = ctx.stats.dispatches;
  ctx.submit();
  await ctx.sync();
  s.dispose();
  return { sampleAdvance: d1 - d0, forward: d2 - d1 };
}

test("no hook: generate encodes exactly plain decoding's dispatches", async () => {
  const m = await model();
  const ctx = m.decoder.ctx;
  const plain = await plainStepDispatches(m);
  assert.ok(plain.forward > 0 && plain.sampleAdvance > 0);
  const N = 6;
  for (const hooks of [undefined, []]) {
    const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N, "f32"));
    await s.append(PROMPT);
    await ctx.sync();
    const d0 = ctx.stats.dispatches;
    const toks = await run(s, { maxNewTokens: N, stepsPerRead: 3, ...(hooks ? { hooks } : {}) });
    assert.is(toks.length, N);
    // every step samples and advances; all but the last feed the sampled token
    assert.is(ctx.stats.dispatches - d0, N * plain.sampleAdvance + (N - 1) * plain.forward, `hooks ${JSON.stringify(hooks)}`);
    s.dispose();
  }
});

/** Counts the session's calls; encodes nothing. */
class CountingHook implements DecodeHook {
  readonly recordWords = 1;
  readonly needsHidden = true;
  readonly maxInjectRows = 0;
  calls = { begin: 0, before: 0, after: 0, onToken: 0, end: 0 };
  steps: number[] = [];
  records: number[] = [];
  hiddenRows: number[] = [];
  begin(): void {
    this.calls.begin++;
  }
  async beforeForward(step: DecodeStep): Promise<void> {
    this.calls.before++;
    this.steps.push(step.j);
  }
  async afterForward(_step: DecodeStep, hidden: Tensor | null): Promise<void> {
    this.calls.after++;
    this.hiddenRows.push(hidden?.shape[0] ?? -1);
  }
  async onToken(_tok: GeneratedToken, record: number): Promise<void> {
    this.calls.onToken++;
    this.records.push(record);
  }
  end(): void {
    this.calls.end++;
  }
}

test("a hook is called at every step, and one that encodes nothing changes neither outputs nor dispatches", async () => {
  const m = await model();
  const ctx = m.decoder.ctx;
  const plain = await plainStepDispatches(m);
  const N = 7;
  const ref = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 1, "f32"));
  await ref.append(PROMPT);
  const want = (await run(ref, { maxNewTokens: N, stepsPerRead: 3 })).map((t) => t.id);
  ref.dispose();
  const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 1, "f32"));
  await s.append(PROMPT);
  await ctx.sync();
  const hook = new CountingHook();
  const d0 = ctx.stats.dispatches;
  const got = await run(s, { maxNewTokens: N, stepsPerRead: 3, hooks: [hook] });
  // with a hook every step feeds its token (the hook may need its hidden state)
  assert.is(ctx.stats.dispatches - d0, N * (plain.sampleAdvance + plain.forward));
  assert.equal(got.map((t) => t.id), want);
  assert.equal(hook.calls, { begin: 1, before: N, after: N, onToken: N, end: 1 });
  assert.equal(hook.steps, [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(hook.hiddenRows, Array(N).fill(1));
  assert.equal(hook.records, Array(N).fill(0), "record words start cleared");
  s.dispose();
});

/** Injects the fixed row `id` after the token sampled at step 0 (GPU-gated by a flag set to 1). */
class InjectOnceHook implements DecodeHook {
  readonly recordWords = 0;
  readonly needsHidden = false;
  readonly maxInjectRows = 1;
  private left = 1;
  private t: Record<"on" | "off" | "ids" | "pos" | "ranges" | "last", Tensor> | null = null;
  constructor(
    private readonly s: Session,
    private readonly id: number,
  ) {}
  injectionsLeft(): number {
    return this.left;
  }
  begin(): void {
    const ctx = this.s.ctx;
    const p = this.s.length; // position of the token sampled at step 0
    this.t = {
      on: ctx.upload(Uint32Array.of(1), [1], "u32", "hook.on"),
      off: ctx.upload(Uint32Array.of(0), [1], "u32", "hook.off"),
      ids: ctx.upload(Uint32Array.of(this.id), [1], "u32", "hook.ids"),
      pos: ctx.upload(Uint32Array.of(p + 1), [1], "u32", "hook.pos"),
      ranges: ctx.upload(causalRangesFor(p + 1, 1), [1, 2], "u32", "hook.ranges"),
      last: ctx.upload(Uint32Array.of(0), [1], "u32", "hook.last"),
    };
  }
  async afterForward(step: DecodeStep): Promise<void> {
    const t = this.t!;
    // the gated block runs at every step; only step 0's flag is on
    if (step.j === 0) await advancePosition(step.ctx, t.ids, step.position, step.ranges, step.context, 0);
    await step.inject({ flag: step.j === 0 ? t.on : t.off, ids: t.ids, positions: t.pos, ranges: t.ranges, lastRow: t.last, maxRows: 1 });
  }
  async onToken(tok: GeneratedToken, _record: number, j: number): Promise<HookOutcome | void> {
    if (j !== 0) return;
    this.left = 0;
    tok.injected = { ids: [this.id], document: "fixed", start: tok.position + 1 };
    return { injectedIds: [this.id] };
  }
  end(): void {
    for (const x of Object.values(this.t ?? {})) x.dispose();
    this.t = null;
  }
}

test("a hook that injects a fixed token row: generation continues like a full forward over the sequence with it", async () => {
  const m = await model();
  const V = m.decoder.vocabSize;
  const X = 123;
  const N = 6;
  const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 4, "f32"));
  await s.append(PROMPT);
  const toks = await run(s, { maxNewTokens: N, stepsPerRead: 3, hooks: [new InjectOnceHook(s, X)] });
  assert.is(toks.length, N);
  assert.equal(toks[0]!.injected, { ids: [X], document: "fixed", start: PROMPT.length + 1 });
  const seq = [...PROMPT, toks[0]!.id, X, ...toks.slice(1).map((t) => t.id)];
  assert.equal(s.ids, seq);
  const f = new Session(m.decoder, m.decoder.createCache(seq.length, "f32"));
  const out = await f.append(seq, { logits: "all" });
  const logits = (await (out.logits as Tensor).read()) as Float32Array;
  f.dispose();
  assert.is(toks[0]!.id, argmaxRow(logits, PROMPT.length - 1, V));
  for (let j = 1; j < N; j++) assert.is(toks[j]!.id, argmaxRow(logits, PROMPT.length + 1 + j - 1, V), `token ${j} after the injected row`);
  // the session goes on from there
  const more = await run(s, { maxNewTokens: 2 });
  assert.is(more.length, 2);
  s.dispose();
});

test.run();
