// Capture / replay of encoded GPU work (src/gpu/capture.ts, GpuContext.beginCapture/endCapture):
// a captured sequence of real ops replayed N times gives bit-identical results to encoding it N
// times; the program owns the pool buffers it uses until dispose(); what cannot be replayed exactly
// is refused.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { browserLike, forDevices, gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { modelFixture } from "./helpers/fixtures.js";
import { openDevice } from "../src/gpu/device.js";
import { Profiler } from "../src/gpu/profiler.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { rmsnorm } from "../src/ops/rmsnorm.js";
import { linear } from "../src/ops/linear.js";
import { add, addVariant } from "../src/ops/elementwise.js";
import { Params } from "../src/ops/common.js";
import { sample } from "../src/ops/sample.js";
import { loadDecoder } from "../src/model/load.js";
import { causalRangesFor } from "../src/model/session.js";
import { DeviceLostError, UnsupportedError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

const T = 5, D = 37; // awkward sizes

/** State and weights of a small stateful step: s ← rmsnorm(R += linear(rmsnorm(s, g1), W, b), g2). */
async function setup(ctx: GpuContext, seed: number) {
  const rng = new Rng(seed);
  const wd = ctx.hasF16 ? "f16" : "f32";
  return {
    s: ctx.upload(rng.fillNormal(T * D, 1), [T, D], "f32", "cap.s"),
    r: ctx.upload(rng.fillNormal(T * D, 1), [T, D], "f32", "cap.r"),
    g1: ctx.upload(rng.fillNormal(D, 1), [D], "f32", "cap.g1"),
    g2: ctx.upload(rng.fillNormal(D, 1), [D], wd, "cap.g2"),
    w: ctx.upload(rng.fillNormal(D * D, 0.2), [D, D], wd, "cap.w"),
    b: ctx.upload(rng.fillNormal(D, 0.1), [D], "f32", "cap.b"),
  };
}
type State = Awaited<ReturnType<typeof setup>>;

/** One step of real ops; every temporary comes from the pool and is disposed inside. */
async function step(ctx: GpuContext, st: State): Promise<void> {
  const n = await rmsnorm(ctx, st.s, st.g1, 1e-5);
  const y = await linear(ctx, n, st.w, { bias: st.b });
  n.dispose();
  const h = await rmsnorm(ctx, y, st.g2, 1e-5, { residual: st.r }); // r += y; h = rmsnorm(r)
  y.dispose();
  const z = await add(ctx, h, st.r);
  h.dispose();
  ctx.copy(z.buffer, 0, st.s.buffer, 0, T * D * 4);
  z.dispose();
}

function dispose(st: State): void {
  for (const t of Object.values(st)) t.dispose();
}

const bits = async (t: Tensor) => Array.from(new Uint32Array((await t.read()).buffer, 0, t.numel));

test("a captured sequence of real ops replayed N times equals encoding it N times, bit for bit", async () => {
  await forDevices({}, async (ctx) => {
    const N = 6;
    const a = await setup(ctx, 7);
    for (let i = 0; i < N; i++) {
      await step(ctx, a);
      if (i % 2 === 1) ctx.submit();
    }
    const d0 = ctx.stats.dispatches;
    await step(ctx, a); // one more step, to count its dispatches
    const perStep = ctx.stats.dispatches - d0;
    const wantS = await bits(a.s), wantR = await bits(a.r);

    const b = await setup(ctx, 7);
    const s0 = { ...ctx.stats };
    ctx.beginCapture("test-step");
    assert.is(ctx.capturing, "test-step");
    await step(ctx, b);
    const prog = ctx.endCapture();
    assert.is(ctx.capturing, null);
    assert.is(ctx.stats.dispatches, s0.dispatches, "nothing is encoded while capturing");
    assert.is(ctx.stats.submits, s0.submits);
    assert.is(prog.dispatches, perStep, "the program holds one step's dispatches");
    assert.is(prog.commands, perStep + 1, "… and its copy");
    for (let i = 0; i <= N; i++) {
      prog.replay();
      if (i % 2 === 1) ctx.submit();
    }
    assert.equal(await bits(b.s), wantS, "s after N+1 replays");
    assert.equal(await bits(b.r), wantR, "r after N+1 replays");
    assert.is(ctx.stats.replays - s0.replays, N + 1);
    assert.is(ctx.stats.replayDispatches - s0.replayDispatches, (N + 1) * perStep);
    assert.is(ctx.stats.dispatches - s0.dispatches, (N + 1) * perStep, "replayed dispatches count as dispatches");
    assert.ok(Number.isFinite(ctx.stats.replayEncodeMs) && ctx.stats.replayEncodeMs >= s0.replayEncodeMs);
    assert.is(prog.replays, N + 1);
    prog.dispose();
    assert.throws(() => prog.replay(), (e: Error) => e instanceof UsageError && /after dispose/.test(e.message));
    prog.dispose(); // idempotent
    dispose(a);
    dispose(b);
  });
});

test("interleaving replays with ordinary ops keeps queue order; params are baked at capture", async () => {
  const ctx = await gpu();
  const x = ctx.upload([1, 2, 3], [3], "f32", "x");
  const acc = ctx.upload([0, 0, 0], [3], "f32", "acc");
  ctx.beginCapture("acc+=x");
  const t = await add(ctx, acc, x);
  ctx.copy(t.buffer, 0, acc.buffer, 0, 12);
  t.dispose();
  const prog = ctx.endCapture();
  prog.replay(); // acc = x
  const y = await add(ctx, acc, acc); // 2x, encoded between replays
  prog.replay(); // acc = 2x
  prog.replay(); // acc = 3x
  assert.equal(Array.from(await y.read()), [2, 4, 6]);
  assert.equal(Array.from(await acc.read()), [3, 6, 9]);
  ctx.write(x, [10, 10, 10]); // GPU-resident inputs may change between replays
  prog.replay();
  assert.equal(Array.from(await acc.read()), [13, 16, 19]);
  // a clear is recorded too
  ctx.beginCapture("clear");
  ctx.clear(acc);
  const clr = ctx.endCapture();
  assert.is(clr.dispatches, 0);
  assert.is(clr.commands, 1);
  clr.replay();
  prog.replay();
  assert.equal(Array.from(await acc.read()), [10, 10, 10]);
  // disposing a program whose replay is still in the open batch: the batch still runs
  prog.replay();
  for (const p of [prog, clr]) p.dispose();
  await ctx.sync();
  assert.equal(Array.from(await acc.read()), [20, 20, 20]);
  for (const v of [x, acc, y]) v.dispose();
});

test("an indirect dispatch is recorded with its args buffer: the GPU-side counts of each replay apply", async () => {
  const ctx = await gpu();
  const a = ctx.upload([1, 2, 3], [3], "f32", "a");
  const out = ctx.upload([0, 0, 0], [3], "f32", "out");
  const args = ctx.pool.acquire(16, GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_DST, "args");
  const kernel = await ctx.kernels.get(addVariant("f32"));
  const prog = await ctx.captureProgram("indirect", () => {
    ctx.clear(out);
    ctx.dispatchIndirect(kernel, [a, a, out], new Params().u32(3).bytes(), args, 4);
  });
  assert.is(prog.dispatches, 1);
  ctx.device.queue.writeBuffer(args, 0, Uint32Array.of(0, 1, 1, 1));
  prog.replay();
  assert.equal(Array.from(await out.read()), [2, 4, 6]);
  ctx.device.queue.writeBuffer(args, 0, Uint32Array.of(0, 0, 1, 1));
  prog.replay();
  assert.equal(Array.from(await out.read()), [0, 0, 0], "zero workgroups: only the clear ran");
  prog.dispose();
  ctx.releaseBuffer(args);
  for (const t of [a, out]) t.dispose();
});

test("refusals: write, upload, readback, submit, nesting and replay inside a capture", async () => {
  const ctx = await gpu();
  const a = ctx.upload([1, 2], [2], "f32", "a");
  ctx.beginCapture("outer");
  await assertRejects(() => ctx.write(a, [3, 4]), UnsupportedError, [/write to 'a' inside the capture 'outer'/], "write");
  await assertRejects(() => ctx.upload([1], [1], "f32", "u"), UnsupportedError, [/inside the capture 'outer'/], "upload");
  await assertRejects(() => a.read(), UnsupportedError, [/readback of 'a'/, /capture 'outer'/], "readback");
  await assertRejects(() => ctx.submit(), UnsupportedError, [/submit\(\) inside the capture 'outer'/], "submit");
  await assertRejects(() => ctx.sync(), UnsupportedError, [/submit\(\)/], "sync");
  await assertRejects(() => ctx.beginCapture("inner"), UnsupportedError, [/captures do not nest/], "nesting");
  ctx.cancelCapture();
  assert.is(ctx.capturing, null);
  // a program cannot be replayed inside a capture
  ctx.beginCapture("p");
  await add(ctx, a, a);
  const p = ctx.endCapture();
  ctx.beginCapture("q");
  await assertRejects(() => p.replay(), UnsupportedError, [/replay of 'p' inside the capture 'q'/], "replay in capture");
  ctx.cancelCapture();
  await assertRejects(() => ctx.endCapture(), UsageError, [/without beginCapture/], "endCapture alone");
  // the context works as before
  p.replay();
  assert.equal(Array.from(await (await add(ctx, a, a)).read()), [2, 4]);
  p.dispose();
});

test("replay after the context was destroyed is refused", async () => {
  const ctx = await openDevice(); // a context of its own
  const a = ctx.upload([1, 2], [2], "f32", "a");
  ctx.beginCapture("p");
  await add(ctx, a, a);
  const p = ctx.endCapture();
  p.replay();
  await ctx.sync();
  ctx.destroy();
  await assertRejects(() => p.replay(), DeviceLostError, [/'p'/, /destroyed/], "replay after destroy");
  p.dispose(); // harmless
});

test("pool ownership: buffers used inside a capture are the program's until dispose", async () => {
  await forDevices({}, async (ctx) => {
    const n = 1000;
    const x = ctx.upload(new Float32Array(n).fill(1), [n], "f32", "x");
    const bound = ctx.upload(new Float32Array(n).fill(2), [n], "f32", "bound"); // made before, bound inside
    const held0 = ctx.pool.stats.heldBytes;
    ctx.beginCapture("own");
    const tmp = await add(ctx, x, bound);
    const tmpBuffer = tmp.buffer;
    tmp.dispose();
    // a later acquisition inside the same capture may reuse it (queue order keeps that safe)
    const tmp2 = ctx.empty([n], "f32", "tmp2");
    assert.ok(tmp2.buffer === tmpBuffer, "reuse inside the capture");
    const out = await add(ctx, tmp2, x);
    tmp2.dispose();
    const prog = ctx.endCapture();
    assert.ok(ctx.pool.stats.heldBytes > held0, "the released temporary is held for the program");
    // the owner of a bound tensor disposes it after endCapture: its buffer is held too
    const boundBuffer = bound.buffer;
    bound.dispose();
    const outside: Tensor[] = [];
    for (let i = 0; i < 6; i++) outside.push(ctx.empty([n], "f32", `outside${i}`));
    for (const t of outside) {
      assert.ok(t.buffer !== tmpBuffer, "a temporary of the capture was handed out after endCapture");
      assert.ok(t.buffer !== boundBuffer, "a buffer the program binds was handed out after its owner disposed it");
    }
    await ctx.sync();
    ctx.pool.trim(); // destroys free buffers: none of the program's
    prog.replay(); // still valid: nothing it binds was handed to anyone else or destroyed
    await ctx.sync();
    // tmp2 is tmp's buffer, written earlier in the same replay (x + bound = 3): out = 3 + x
    assert.ok((await out.read()).every((v) => v === 4), "out after a replay");
    for (const t of outside) t.dispose();
    const before = ctx.pool.stats.heldBytes;
    prog.dispose();
    assert.ok(ctx.pool.stats.heldBytes < before, "dispose returns the held buffers");
    assert.is(ctx.pool.stats.heldBytes, held0);
    const got = new Set<GPUBuffer>();
    const again: Tensor[] = [];
    for (let i = 0; i < 8; i++) {
      const t = ctx.empty([n], "f32", `again${i}`);
      again.push(t);
      got.add(t.buffer);
    }
    assert.ok(got.has(tmpBuffer) && got.has(boundBuffer), "after dispose the buffers are the pool's again");
    for (const t of [...again, x, out]) t.dispose();
  });
});

test("a cancelled capture keeps nothing; captureProgram cancels when its body throws", async () => {
  const ctx = await gpu();
  const x = ctx.upload([1, 2, 3], [3], "f32", "x");
  const held0 = ctx.pool.stats.heldBytes;
  ctx.beginCapture("c");
  const t = await add(ctx, x, x);
  t.dispose();
  assert.ok(ctx.pool.stats.heldBytes > held0);
  ctx.cancelCapture();
  assert.is(ctx.pool.stats.heldBytes, held0);
  await assertRejects(
    () =>
      ctx.captureProgram("failing", async () => {
        (await add(ctx, x, x)).dispose();
        ctx.write(x, [0, 0, 0]);
      }),
    UnsupportedError,
    [/inside the capture 'failing'/],
    "a body that throws",
  );
  assert.is(ctx.capturing, null);
  assert.is(ctx.pool.stats.heldBytes, held0);
  let y: Tensor | null = null;
  const prog = await ctx.captureProgram("ok", async () => {
    y = await add(ctx, x, x);
  });
  prog.replay();
  assert.equal(Array.from(await y!.read()), [2, 4, 6]);
  prog.dispose();
  y!.dispose();
  x.dispose();
});

test("profiling: every replayed dispatch gets its own timed pass", async () => {
  const ctx = await gpu({ profiling: true, dawnOptions: ["disable-dawn-features=timestamp_quantization"] });
  const st = await setup(ctx, 3);
  ctx.beginCapture("timed");
  await step(ctx, st);
  const prog = ctx.endCapture();
  const prof = new Profiler(ctx);
  ctx.profiler = prof;
  try {
    for (let i = 0; i < 3; i++) {
      prog.replay();
      ctx.submit();
    }
    const timings = await prof.collect();
    const calls = timings.reduce((s, t) => s + t.calls, 0);
    assert.is(calls, 3 * prog.dispatches, `timings: ${JSON.stringify(timings)}`);
    assert.ok(timings.some((t) => /rmsnorm/.test(t.kernel)));
  } finally {
    ctx.profiler = null;
    prof.destroy();
  }
  // the same results as unprofiled replays on a fresh copy of the state
  const ref = await setup(ctx, 3);
  for (let i = 0; i < 3; i++) await step(ctx, ref);
  assert.equal(await bits(st.s), await bits(ref.s));
  prog.dispose();
  dispose(st);
  dispose(ref);
});

test("a greedy decode step (sample → Decoder.forward of the sampled id) captured once and replayed equals step-by-step encoding", async () => {
  for (const [name, ctx] of [["default", await gpu()], ["browser-like", await browserLike()]] as const) {
    const m = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true });
    const dec = m.decoder;
    const V = dec.vocabSize;
    const prompt = [5, 17, 99, 3, 250];
    const N = 6;
    const cap = prompt.length + N + 1;
    const run = async (captured: boolean) => {
      const cache = dec.createCache(cap, "f32");
      const P = prompt.length;
      const ids = ctx.upload(Uint32Array.from(prompt), [P], "u32", "ids");
      const pos = ctx.upload(Uint32Array.from(prompt, (_, i) => i), [P], "u32", "pos");
      const rng = ctx.upload(causalRangesFor(0, P), [P, 2], "u32", "ranges");
      const lastRow = ctx.upload([P - 1], [1], "u32", "lastRow");
      const logits = ctx.empty([1, V], "f32", "logits");
      await dec.forward(cache, { ids, ropePositions: pos, cacheRows: pos, ranges: rng }, { logitsRows: lastRow, logitsOut: logits });
      const token = ctx.upload([0], [1], "u32", "token");
      const position = ctx.upload([P - 1], [1], "u32", "position");
      const ranges = ctx.upload(causalRangesFor(P - 1, 1), [1, 2], "u32", "ranges1");
      // The position stays at P - 1 (each step rewrites that cache row): only the sampled id,
      // written on the GPU, changes between replays. The live decode step that also advances
      // the position (src/model/decode-step.ts) is checked in test/step-chain.test.ts.
      const decodeStep = async () => {
        await sample(ctx, logits, token, { temperature: 0, seed: 0, step: position });
        await dec.forward(cache, { ids: token, ropePositions: position, cacheRows: position, ranges }, { logitsRows: "all", logitsOut: logits });
      };
      let prog = null;
      if (captured) {
        ctx.beginCapture("decode-step");
        await decodeStep();
        prog = ctx.endCapture();
      }
      const out: number[] = [];
      for (let j = 0; j < N; j++) {
        if (prog) prog.replay();
        else await decodeStep();
        ctx.submit();
        out.push((await token.read())[0]!);
      }
      const finalLogits = await bits(logits);
      prog?.dispose();
      for (const t of [ids, pos, rng, lastRow, logits, token, position, ranges]) t.dispose();
      cache.dispose();
      return { out, finalLogits, dispatches: prog?.dispatches ?? 0 };
    };
    const plain = await run(false);
    const replayed = await run(true);
    assert.ok(replayed.dispatches > 10, `[${name}] dispatches per captured step: ${replayed.dispatches}`);
    assert.equal(replayed.out, plain.out, `[${name}] tokens`);
    assert.ok(replayed.finalLogits.length === V && replayed.finalLogits.every((b, i) => b === plain.finalLogits[i]), `[${name}] final logits differ`);
    m.dispose();
  }
});

test.run();
