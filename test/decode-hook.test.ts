// The decode step program (src/model/decode-step.ts) and decode hooks (src/model/hooks.ts): with no
// hook every step replays one captured program (≤ 7 dispatches per layer) and greedy decoding
// equals a full forward's argmax; a hook encodes its work once; a hook that plans an injection gets
// it fed by the next step, and a continuation equal to a full forward over the sequence with it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { argmaxRow } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session, type GeneratedToken, type GenerateOptions } from "../src/model/session.js";
import type { DecodeHook, DecodeStep, HookOutcome } from "../src/model/hooks.js";
import { STEP_PENDING } from "../src/ops/step-state.js";
import type { Tensor } from "../src/gpu/tensor.js";

let modelPromise: Promise<LoadedDecoder> | null = null;
const model = () => (modelPromise ??= gpu().then((ctx) => loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true })));
const PROMPT = [5, 17, 99, 3, 250, 42, 7];

async function run(s: Session, opts: GenerateOptions): Promise<GeneratedToken[]> {
  const toks: GeneratedToken[] = [];
  for await (const t of s.generate(opts)) toks.push(t);
  return toks;
}

/** Greedy ids of a full forward over `seq` (prefill logits, argmax per row): the independent check of decode. */
async function greedyRows(m: LoadedDecoder, seq: number[]): Promise<Float32Array> {
  const f = new Session(m.decoder, m.decoder.createCache(seq.length, "f32"));
  const out = await f.append(seq, { logits: "all" });
  const logits = (await (out.logits as Tensor).read()) as Float32Array;
  (out.logits as Tensor).dispose();
  f.dispose();
  return logits;
}

test("no hook: every step replays one captured program of at most 7 dispatches per layer; greedy ids equal a full forward's", async () => {
  const m = await model();
  const ctx = m.decoder.ctx;
  const L = m.decoder.config.numLayers;
  const V = m.decoder.vocabSize;
  const N = 6;
  for (const hooks of [undefined, []]) {
    const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N, "f32"));
    await s.append(PROMPT);
    await ctx.sync();
    const d0 = ctx.stats.dispatches;
    const r0 = ctx.stats.replays;
    const toks = await run(s, { maxNewTokens: N, stepsPerRead: 3, ...(hooks ? { hooks } : {}) });
    assert.is(toks.length, N);
    const per = s.stepDispatches;
    assert.ok(per > 0 && per <= 7 * L + 4, `${per} dispatches per step for ${L} layers`);
    // every step replays the head (sample, advance); all but the last replay the body (the forward) too
    assert.is(ctx.stats.replays - r0, 2 * N - 1);
    assert.ok(ctx.stats.dispatches - d0 < N * per, `dispatches ${ctx.stats.dispatches - d0} for ${N} steps of ${per}`);
    const logits = await greedyRows(m, [...PROMPT, ...toks.map((t) => t.id)]);
    for (let j = 0; j < N; j++) assert.is(toks[j]!.id, argmaxRow(logits, PROMPT.length - 1 + j, V), `token ${j}`);
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
    this.steps.push(step.recordOffset);
  }
  async afterForward(_step: DecodeStep, hidden: Tensor | null): Promise<void> {
    this.calls.after++;
    this.hiddenRows.push(hidden?.shape[0] ?? -1);
  }
  async onToken(_tok: GeneratedToken, record: number, j: number): Promise<void> {
    this.calls.onToken++;
    this.records.push(record);
    this.steps.push(j);
  }
  end(): void {
    this.calls.end++;
  }
}

test("a hook encodes its work once into the step program; one that encodes nothing changes no output", async () => {
  const m = await model();
  const ctx = m.decoder.ctx;
  const N = 7;
  const ref = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 1, "f32"));
  await ref.append(PROMPT);
  const want = (await run(ref, { maxNewTokens: N, stepsPerRead: 3 })).map((t) => t.id);
  const plainPer = ref.stepDispatches;
  ref.dispose();
  const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 1, "f32"));
  await s.append(PROMPT);
  await ctx.sync();
  const hook = new CountingHook();
  const got = await run(s, { maxNewTokens: N, stepsPerRead: 3, hooks: [hook] });
  assert.equal(got.map((t) => t.id), want);
  assert.equal(hook.calls, { begin: 1, before: 1, after: 1, onToken: N, end: 1 });
  // recordOffset 1 (word 0 of a step's record is its id), then the host's step numbers
  assert.equal(hook.steps, [1, 0, 1, 2, 3, 4, 5, 6]);
  assert.equal(hook.hiddenRows, [1]);
  assert.equal(hook.records, Array(N).fill(0), "record words start cleared");
  // the hidden state of the last row costs one dispatch
  assert.is(s.stepDispatches, plainPer + 1);
  s.dispose();
});

/**
 * Injects the fixed row `id` after the first sampled token, with buffer copies only: at every step
 * it copies `ids` into the session's plan and `pending` into step[STEP_PENDING], then zeroes
 * `pending`, so only the first step plans an injection (which the second step feeds).
 */
class InjectOnceHook implements DecodeHook {
  readonly recordWords = 0;
  readonly needsHidden = false;
  readonly maxInjectRows = 1;
  private t: Record<"ids" | "pending" | "zero", Tensor> | null = null;
  constructor(
    private readonly s: Session,
    private readonly id: number,
  ) {}
  begin(): void {
    const ctx = this.s.ctx;
    this.t = {
      ids: ctx.upload(Uint32Array.of(this.id), [1], "u32", "hook.ids"),
      pending: ctx.upload(Uint32Array.of(1), [1], "u32", "hook.pending"),
      zero: ctx.upload(Uint32Array.of(0), [1], "u32", "hook.zero"),
    };
  }
  async afterForward(step: DecodeStep): Promise<void> {
    const t = this.t!;
    step.ctx.copy(t.ids.buffer, 0, step.plan.buffer, 0, 4);
    step.ctx.copy(t.pending.buffer, 0, step.step.buffer, 4 * STEP_PENDING, 4);
    step.ctx.copy(t.zero.buffer, 0, t.pending.buffer, 0, 4);
  }
  async onToken(tok: GeneratedToken, _record: number, j: number): Promise<HookOutcome | void> {
    if (j !== 0) return;
    tok.injected = { ids: [this.id], document: "fixed", start: tok.position + 1 };
    return { injectedIds: [this.id] };
  }
  end(): void {
    for (const x of Object.values(this.t ?? {})) x.dispose();
    this.t = null;
  }
}

test("a hook that injects a fixed token row: the next step feeds it, and generation continues like a full forward over the sequence with it", async () => {
  const m = await model();
  const V = m.decoder.vocabSize;
  const X = 123;
  const N = 6;
  for (const stepsPerRead of [1, 3]) {
    const s = new Session(m.decoder, m.decoder.createCache(PROMPT.length + N + 4, "f32"));
    await s.append(PROMPT);
    const toks = await run(s, { maxNewTokens: N, stepsPerRead, hooks: [new InjectOnceHook(s, X)] });
    assert.is(toks.length, N);
    assert.equal(toks[0]!.injected, { ids: [X], document: "fixed", start: PROMPT.length + 1 });
    const seq = [...PROMPT, toks[0]!.id, X, ...toks.slice(1).map((t) => t.id)];
    assert.equal(s.ids, seq);
    const logits = await greedyRows(m, seq);
    assert.is(toks[0]!.id, argmaxRow(logits, PROMPT.length - 1, V));
    for (let j = 1; j < N; j++) assert.is(toks[j]!.id, argmaxRow(logits, PROMPT.length + 1 + j - 1, V), `token ${j} after the injected row (stepsPerRead ${stepsPerRead})`);
    // the session goes on from there
    const more = await run(s, { maxNewTokens: 2 });
    assert.is(more.length, 2);
    s.dispose();
  }
});

test.run();
