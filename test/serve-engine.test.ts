// The batching engine of `onegen serve` (src/serve/engine.ts) on a toy decoder: the captured
// batched step (one program per batch width, ids sampled and fed on the GPU) against the
// single-sequence decode (Session.generate, the same request alone) and against the engine's
// op-by-op forward mode, at awkward batch sizes (3, 5, 6 sequences), with sequences joining and
// leaving mid-batch (free slots below the highest busy one: holes), a cancelled one, and a
// sampled one (temperature, top-p, seed) beside greedy ones; interleaved jobs (sessions of their
// own taking turns with the batch: each equal to the request alone, the batch stepping between
// their turns; bounded, cancelled, failed) and the memory plan with retrieval sessions.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { toyDecoder } from "./helpers/train.js";
import { Session } from "../src/model/session.js";
import { BatchEngine, JobCancelled, checkEngineFits, engineCacheBytes, engineStepBytes, stepWidth, type InterleavedJob, type SequenceParams, type StepMode } from "../src/serve/engine.js";
import { ApiError } from "../src/serve/protocol.js";
import { DeviceLostError, GpuOutOfMemoryError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { Decoder } from "../src/model/decoder.js";
import { until } from "./helpers/serve.js";

const SLOT = 40;

interface Req {
  prompt: number[];
  maxTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  ignoreEos?: boolean;
}

/** The request alone: Session.append + generate (the single-sequence decode loop). */
async function alone(decoder: Decoder, r: Req): Promise<number[]> {
  const s = Session.create(decoder, SLOT);
  try {
    await s.append(r.prompt);
    const out: number[] = [];
    const it = s.generate({ maxNewTokens: r.maxTokens, temperature: r.temperature ?? 0, seed: r.seed ?? 0, ...(r.topP !== undefined ? { topP: r.topP } : {}), eosIds: [] });
    for (;;) {
      const x = await it.next();
      if (x.done) break;
      out.push(x.value.id);
    }
    return out;
  } finally {
    s.dispose();
  }
}

function params(r: Req): SequenceParams {
  return { prompt: r.prompt, temperature: r.temperature ?? 0, ...(r.topP !== undefined ? { topP: r.topP } : {}), seed: r.seed ?? 0, maxTokens: r.maxTokens, stop: [], ignoreEos: r.ignoreEos ?? true };
}

/** Submits `r` to the engine; resolves with the streamed ids (checked against onEnd's count). */
function run(engine: BatchEngine, r: Req): { done: Promise<number[]>; cancel: () => void } {
  const ids: number[] = [];
  let cancel = (): void => {};
  const done = new Promise<number[]>((resolve, reject) => {
    const [h] = engine.submit([params(r)], [
      {
        onToken: (id) => ids.push(id),
        onEnd: (e) => {
          if (e.completionTokens !== ids.length) reject(new Error(`onEnd counts ${e.completionTokens} tokens, ${ids.length} streamed`));
          resolve(ids);
        },
        onError: (e) => reject(e),
      },
    ]);
    cancel = () => h!.cancel();
  });
  return { done, cancel };
}


const prompt = (i: number, n: number): number[] => Array.from({ length: n }, (_, j) => (3 + 7 * i + 5 * j) % 48);

for (const mode of ["captured", "forward"] as StepMode[]) {
  test(`engine (${mode}): 3 then 5 sequences, joining and leaving mid-batch, one sampled, one cancelled: each equals the request alone`, async () => {
    const ctx = await gpu();
    const toy = toyDecoder(ctx, 19);
    const engine = new BatchEngine(toy.decoder, { maxBatch: 6, slotTokens: SLOT, maxQueue: 8, eosIds: [], decode: () => "", stepMode: mode });
    try {
      // wave 1: 3 sequences, lengths differ so they leave at different steps (slot 1 first: a hole)
      const first: Req[] = [
        { prompt: prompt(0, 5), maxTokens: 9 },
        { prompt: prompt(1, 1), maxTokens: 4 },
        { prompt: prompt(2, 7), maxTokens: 14, temperature: 0.9, topP: 0.9, seed: 77 },
      ];
      const runs = first.map((r) => run(engine, r));
      await until(() => engine.stats.steps >= 2, "two steps");
      // wave 2 joins while wave 1 decodes: 5 more, 6 slots → one waits for a slot that frees mid-run
      const second: Req[] = [
        { prompt: prompt(3, 3), maxTokens: 6 },
        { prompt: prompt(4, 11), maxTokens: 10 },
        { prompt: prompt(5, 2), maxTokens: 3 },
        { prompt: prompt(6, 4), maxTokens: 12 },
        { prompt: prompt(7, 6), maxTokens: 8 },
      ];
      runs.push(...second.map((r) => run(engine, r)));
      const doomed = run(engine, { prompt: prompt(8, 3), maxTokens: 30 });
      await until(() => engine.stats.tokensGenerated >= 20, "some tokens");
      doomed.cancel();
      const got = await Promise.all(runs.map((r) => r.done));
      const reqs = [...first, ...second];
      for (const [i, r] of reqs.entries()) {
        const want = await alone(toy.decoder, r);
        assert.equal(got[i], want, `sequence ${i} (prompt ${r.prompt.length} tokens, ${r.maxTokens} new${r.temperature ? ", sampled" : ""})`);
      }
      assert.ok(engine.stats.maxBatchSeen >= 5, `sequences shared steps (largest batch ${engine.stats.maxBatchSeen})`);
      assert.is(engine.running, 0, "every sequence left, the cancelled one included");
      await until(() => engine.running === 0 && engine.queued === 0, "an idle engine");
    } finally {
      await engine.drain(0);
      engine.dispose();
      toy.dispose();
    }
  });
}

test("engine (captured): a slot's next sequence after one that ended mid-batch starts clean (the width shrinks and grows)", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 23);
  const engine = new BatchEngine(toy.decoder, { maxBatch: 4, slotTokens: SLOT, maxQueue: 8, eosIds: [], decode: () => "" });
  try {
    const reqs: Req[] = [
      { prompt: prompt(10, 4), maxTokens: 2 },
      { prompt: prompt(11, 9), maxTokens: 5 },
      { prompt: prompt(12, 2), maxTokens: 3 },
      { prompt: prompt(13, 5), maxTokens: 1 },
      { prompt: prompt(14, 8), maxTokens: 7 },
      { prompt: prompt(15, 3), maxTokens: 4 },
    ];
    const got = await Promise.all(reqs.map((r) => run(engine, r).done));
    for (const [i, r] of reqs.entries()) assert.equal(got[i], await alone(toy.decoder, r), `sequence ${i}`);
    // a lone request afterwards runs at width 1 on slot 0, which several sequences used before
    const last: Req = { prompt: prompt(16, 6), maxTokens: 6 };
    assert.equal(await run(engine, last).done, await alone(toy.decoder, last), "the lone request");
  } finally {
    await engine.drain(0);
    engine.dispose();
    toy.dispose();
  }
});

test("engine (captured): 10 sequences in 12 slots run at width 12 (2 hole rows), each equal to the request alone", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 29);
  const engine = new BatchEngine(toy.decoder, { maxBatch: 12, slotTokens: SLOT, maxQueue: 8, eosIds: [], decode: () => "" });
  try {
    const reqs: Req[] = Array.from({ length: 10 }, (_, i) => ({ prompt: prompt(20 + i, 1 + ((3 * i) % 7)), maxTokens: 2 + ((5 * i) % 6) }));
    const got = await Promise.all(reqs.map((r) => run(engine, r).done));
    for (const [i, r] of reqs.entries()) assert.equal(got[i], await alone(toy.decoder, r), `sequence ${i}`);
    assert.is(engine.stats.maxBatchSeen, 10);
  } finally {
    await engine.drain(0);
    engine.dispose();
    toy.dispose();
  }
});

test("engine (captured): sequences that end by EOS mid-batch (one more row is in flight) free their slots to queued ones cleanly", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 31);
  try {
    const reqs: Req[] = Array.from({ length: 7 }, (_, i) => ({ prompt: prompt(40 + i, 2 + ((4 * i) % 5)), maxTokens: 12 }));
    const full: number[][] = [];
    for (const r of reqs) full.push(await alone(toy.decoder, r));
    // an EOS id that some streams reach early: the most common id among the greedy outputs' first half
    const counts = new Map<number, number>();
    for (const f of full) for (const id of f.slice(1, 6)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const eos = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
    const want = full.map((f) => (f.indexOf(eos) >= 0 ? f.slice(0, f.indexOf(eos) + 1) : f));
    assert.ok(want.some((w, i) => w.length < full[i]!.length), "some stream ends by EOS before max_tokens");
    const engine = new BatchEngine(toy.decoder, { maxBatch: 3, slotTokens: SLOT, maxQueue: 8, eosIds: [eos], decode: () => "" });
    try {
      const got = await Promise.all(reqs.map((r) => run(engine, { ...r, ignoreEos: false }).done));
      for (const [i, w] of want.entries()) assert.equal(got[i], w, `sequence ${i} (EOS ${eos})`);
    } finally {
      await engine.drain(0);
      engine.dispose();
    }
  } finally {
    toy.dispose();
  }
});

/** An interleaved job: `r` on its own Session (2 steps per readback), its readbacks through the engine's turn; logs the batch's step count at each of its turns. */
function sessionJob(engine: BatchEngine, decoder: Decoder, r: Req, log: number[]): InterleavedJob<number[]> {
  return engine.interleave(async (turn) => {
    log.push(engine.stats.steps);
    const s = Session.create(decoder, SLOT);
    try {
      await s.append(r.prompt);
      const out: number[] = [];
      const it = s.generate({
        maxNewTokens: r.maxTokens,
        temperature: r.temperature ?? 0,
        seed: r.seed ?? 0,
        eosIds: [],
        stepsPerRead: 2,
        turn: async (read) => {
          const bytes = await turn(read);
          log.push(engine.stats.steps);
          return bytes;
        },
      });
      for (;;) {
        const x = await it.next();
        if (x.done) break;
        out.push(x.value.id);
      }
      return out;
    } finally {
      s.dispose();
    }
  });
}

for (const mode of ["captured", "forward"] as StepMode[]) {
  test(`engine (${mode}): two interleaved jobs (sessions of their own) take turns with batched sequences joining mid-run: every output equals the request alone, and the batch steps between a job's turns`, async () => {
    const ctx = await gpu();
    const toy = toyDecoder(ctx, 37);
    const engine = new BatchEngine(toy.decoder, { maxBatch: 6, slotTokens: SLOT, maxQueue: 8, eosIds: [], decode: () => "", stepMode: mode, maxInterleaved: 2 });
    try {
      const first: Req[] = [
        { prompt: prompt(50, 4), maxTokens: 30 },
        { prompt: prompt(51, 2), maxTokens: 24, temperature: 0.8, topP: 0.9, seed: 5 },
      ];
      const runs = first.map((r) => run(engine, r));
      await until(() => engine.stats.steps >= 2, "two steps");
      // the jobs build their decode-step programs (captures) while the batch runs; wave 2 joins
      // while they decode, so the batch captures programs of new widths meanwhile
      const jobReqs: Req[] = [
        { prompt: prompt(60, 5), maxTokens: 20 },
        { prompt: prompt(61, 3), maxTokens: 16, temperature: 0.9, seed: 11 },
      ];
      const logs: number[][] = [[], []];
      const jobs = jobReqs.map((r, i) => sessionJob(engine, toy.decoder, r, logs[i]!));
      await until(() => engine.interleaved.running === 2 && engine.stats.turns >= 4, "both jobs running");
      const second: Req[] = [
        { prompt: prompt(52, 7), maxTokens: 10 },
        { prompt: prompt(53, 1), maxTokens: 12 },
        { prompt: prompt(54, 9), maxTokens: 8 },
      ];
      runs.push(...second.map((r) => run(engine, r)));
      const got = await Promise.all(runs.map((r) => r.done));
      const jobGot = await Promise.all(jobs.map((j) => j.done));
      for (const [i, r] of [...first, ...second].entries()) assert.equal(got[i], await alone(toy.decoder, r), `sequence ${i}`);
      for (const [i, r] of jobReqs.entries()) assert.equal(jobGot[i], await alone(toy.decoder, r), `job ${i}`);
      // while the first wave ran (30 tokens), the batch advanced between the jobs' turns
      const advanced = logs.map((l) => l.filter((x, i) => i > 0 && x > l[i - 1]!).length);
      assert.ok(advanced.every((n) => n >= 3), `batch steps between a job's turns: ${JSON.stringify(logs)}`);
      assert.is(engine.interleaved.running, 0);
    } finally {
      await engine.drain(0);
      engine.dispose();
      toy.dispose();
    }
  });
}

test("interleave: bounded (429 past maxQueue waiting); cancel frees a waiting job and a job awaiting its readback at once; a job's lost device fails the engine (503 to everyone)", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 41);
  const engine = new BatchEngine(toy.decoder, { maxBatch: 2, slotTokens: SLOT, maxQueue: 1, eosIds: [], decode: () => "", maxInterleaved: 1 });
  try {
    // a job stuck in its readback (a promise that never settles) holds the only interleaved place
    const never = new Promise<Uint8Array>(() => {});
    let reached!: () => void;
    const waiting = new Promise<void>((r) => (reached = r));
    const stuck = engine.interleave(async (turn) => {
      reached();
      await turn(never);
      return "unreachable";
    });
    await waiting;
    const queued = engine.interleave(async () => "queued ran");
    assert.equal(engine.interleaved, { running: 1, waiting: 1 });
    assert.throws(
      () => engine.interleave(async () => "x"),
      (e: Error) => e instanceof ApiError && e.status === 429 && e.headers?.["Retry-After"] === "1",
    );
    // a sequence runs meanwhile: the stuck job does not hold the device while it waits
    assert.equal(await run(engine, { prompt: prompt(70, 3), maxTokens: 5 }).done, await alone(toy.decoder, { prompt: prompt(70, 3), maxTokens: 5 }));
    queued.cancel();
    try {
      await queued.done;
      assert.unreachable("a cancelled waiting job ran");
    } catch (e) {
      assert.instance(e, JobCancelled);
    }
    assert.equal(engine.interleaved, { running: 1, waiting: 0 });
    stuck.cancel();
    try {
      await stuck.done;
      assert.unreachable("a cancelled job finished");
    } catch (e) {
      assert.instance(e, JobCancelled);
    }
    assert.equal(engine.interleaved, { running: 0, waiting: 0 });
    // the device is free again: a job runs to its end
    assert.is(await engine.interleave(async () => "ran").done, "ran");
    // a lost device inside a job fails the engine: the job, a waiting one and later work get 503
    let lose!: () => void;
    const lost = new Promise<void>((r) => (lose = r));
    const failing = engine.interleave(async () => {
      await lost;
      throw new DeviceLostError("GPU device lost: test");
    });
    const behind = engine.interleave(async () => "never");
    lose();
    for (const j of [failing, behind]) {
      try {
        await j.done;
        assert.unreachable("a job finished on a lost device");
      } catch (e) {
        assert.ok(e instanceof ApiError && e.status === 503 && /GPU failed/.test(e.message), String(e));
      }
    }
    assert.instance(engine.fatal, DeviceLostError);
    assert.throws(() => engine.interleave(async () => "x"), (e: Error) => e instanceof ApiError && e.status === 503);
  } finally {
    await engine.drain(0);
    engine.dispose();
    toy.dispose();
  }
});

test("stepWidth: exact up to 8 rows, then powers of two, at most maxBatch", () => {
  assert.equal([1, 3, 5, 8, 9, 16, 17, 33].map((t) => stepWidth(t, 64)), [1, 3, 5, 8, 16, 16, 32, 64]);
  assert.equal([3, 9, 12].map((t) => stepWidth(t, 12)), [3, 12, 12]);
});

test("checkEngineFits: the KV cache and the step buffers (logits of max-batch rows) are planned together", async () => {
  const ctx = await gpu();
  const toy = toyDecoder(ctx, 5);
  try {
    const cache = engineCacheBytes(toy.decoder, 4, SLOT);
    const step = engineStepBytes(toy.decoder, 4);
    assert.is(step, 4 * (48 * 4 + 8 * 4 + 2 * 32 * 4) + 32 * 4); // logits, u32 words, two steps' final-norm rows (D 32), the searched row
    const fake = (bytes: number) => ({ memoryAvailable: bytes, memoryBudget: { source: "given" } }) as unknown as GpuContext;
    checkEngineFits(fake(cache + step), toy.decoder, 4, SLOT);
    assert.throws(
      () => checkEngineFits(fake(cache + step - 1), toy.decoder, 4, SLOT),
      (e: Error) => e instanceof GpuOutOfMemoryError && new RegExp(`KV cache of 4 \\+ 1 slots × ${SLOT} tokens \\(${cache} bytes\\) and the step buffers of 4 rows \\(${step} bytes`).test(e.message),
    );
    // retrieval sessions (interleaved jobs) are planned beside them
    const sessions = { count: 2, bytesEach: 1000 };
    checkEngineFits(fake(cache + step + 2000), toy.decoder, 4, SLOT, sessions);
    assert.throws(
      () => checkEngineFits(fake(cache + step + 1999), toy.decoder, 4, SLOT, sessions),
      (e: Error) => e instanceof GpuOutOfMemoryError && /and 2 retrieval session\(s\) of 1000 bytes each need/.test(e.message) && /hint: lower --max-batch, --max-retrievals/.test(e.message),
    );
  } finally {
    toy.dispose();
  }
});

test.run();
