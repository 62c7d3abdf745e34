import { test } from "uvu";
import * as assert from "uvu/assert";
import { devices, gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { maskLogits, maskLogitsReference, sample, sampleReference, sampleUniform01, pcgHash, NONFINITE_ID, type SampleReferenceOptions } from "../src/ops/sample.js";
import { UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

// Sampled ids are compared exactly with the reference using the same RNG draws. The GPU sums in
// f32 and the reference in float64: they could disagree only if topP·Z or u·Z landed within
// ~1e-6 relative of a cumulative-mass boundary; with these seeds that does not happen (a failure
// here would print the row; check the margin before suspecting the kernel).
const rng = new Rng(2024);
const POISON = 0xdeadbeef;

async function run(ctx: Awaited<ReturnType<typeof gpu>>, logits: Float32Array, B: number, V: number, opts: SampleReferenceOptions & { seed: number; step: number }, what: string): Promise<void> {
  const L = ctx.upload(logits, [B, V], "f32", "logits");
  const out = ctx.upload(new Uint32Array(B).fill(POISON), [B], "u32", "ids");
  await sample(ctx, L, out, opts);
  const want = sampleReference(logits, V, opts, (row) => sampleUniform01(opts.seed, opts.step, row));
  assertEqualArrays(await out.read(), want, what);
  L.dispose();
}

test("PCG hash and uniform draws: fixed values (the kernel uses the same arithmetic)", () => {
  // pcg_hash(0) from the reference C implementation (Jarzynski & Olano 2020)
  assert.is(pcgHash(0), 129708002);
  const u = sampleUniform01(1, 2, 3);
  assert.ok(u >= 0 && u < 1);
  assert.is.not(sampleUniform01(1, 2, 3), sampleUniform01(1, 3, 3));
});

test("argmax (temperature 0): ties → lowest id, −inf entries, V = 1, 7, 1000, 128256", async () => {
  const ctx = await gpu();
  for (const [B, V] of [[1, 1], [3, 7], [4, 1000], [1, 128256]] as [number, number][]) {
    const l = rng.fillNormal(B * V, 3);
    for (let b = 0; b < B; b++) {
      if (V > 5) {
        // a tie for the maximum at two ids; the lower must win
        const hi = 100 + b;
        l[b * V + V - 2] = hi;
        l[b * V + 3] = hi;
        l[b * V + 1] = -Infinity;
      }
    }
    await run(ctx, l, B, V, { temperature: 0, seed: 1, step: 0 }, `argmax B=${B} V=${V}`);
    const got = sampleReference(l, V, { temperature: 0 }, () => 0);
    if (V > 5) assert.is(got[0], 3, "reference picks the lower tied id");
  }
  // all −inf: the lowest id
  await run(ctx, new Float32Array(9).fill(-Infinity), 1, 9, { temperature: 1, seed: 3, step: 0 }, "all −inf");
});

test("seeded sampling matches the reference exactly: temperature, top-k, top-p, combinations", async () => {
  const ctx = await gpu();
  const cases: SampleReferenceOptions[] = [
    { temperature: 1 },
    { temperature: 0.7, topK: 40 },
    { temperature: 1.3, topP: 0.8 },
    { temperature: 1, topK: 100, topP: 0.5 },
    { temperature: 2, topK: 1 },
    { temperature: 1, topP: 1e-6 },
    { temperature: 0.5, topK: 999, topP: 0.95 },
  ];
  const B = 6, V = 1000;
  for (const c of cases) {
    for (const [seed, step] of [[7, 0], [7, 1], [123456789, 42]] as [number, number][]) {
      const l = rng.fillNormal(B * V, 2);
      // a few repeated values so that top-k/top-p boundaries see ties
      for (let i = 0; i < B * V; i += 97) l[i] = 2.5;
      await run(ctx, l, B, V, { ...c, seed, step }, `sample ${JSON.stringify(c)} seed=${seed} step=${step}`);
    }
  }
  // Llama-3 vocabulary, one row
  const V3 = 128256;
  const l3 = rng.fillNormal(V3, 2);
  await run(ctx, l3, 1, V3, { temperature: 0.8, topK: 50, topP: 0.9, seed: 99, step: 5 }, "V=128256 top-k+top-p");
  await run(ctx, l3, 1, V3, { temperature: 1, seed: 99, step: 6 }, "V=128256 plain");
});

test("top-k keeps exactly the k largest; top-p keeps the smallest top set reaching p (reference semantics)", () => {
  const V = 6;
  const l = Float32Array.from([0, 3, 1, 3, 2, -1]); // ids 1 and 3 tie at the top
  const pick = (o: SampleReferenceOptions) => {
    const seen = new Set<number>();
    for (let i = 0; i < 400; i++) seen.add(sampleReference(l, V, o, () => i / 400)[0]!);
    return [...seen].sort();
  };
  assert.equal(pick({ temperature: 1, topK: 2 }), [1, 3]);
  assert.equal(pick({ temperature: 1, topK: 3 }), [1, 3, 4]);
  assert.equal(pick({ temperature: 1, topK: 1 }), [1, 3], "ties at the k-th value are kept");
  // p tiny: only the top value (both tied ids); p = 1: everything
  assert.equal(pick({ temperature: 1, topP: 0.01 }), [1, 3]);
  assert.equal(pick({ temperature: 1, topP: 1 }), [0, 1, 2, 3, 4, 5]);
  // mass of {1,3} = 2e³/(2e³+e²+e+1+e⁻¹) ≈ 0.778: p = 0.77 keeps {1,3}, p = 0.79 adds id 4
  assert.equal(pick({ temperature: 1, topP: 0.77 }), [1, 3]);
  assert.equal(pick({ temperature: 1, topP: 0.79 }), [1, 3, 4]);
});

test("deterministic: same seed+step → same id; step from a GPU buffer equals the number", async () => {
  const ctx = await gpu();
  const V = 500;
  const l = rng.fillNormal(V, 1);
  const L = ctx.upload(l, [1, V], "f32", "logits");
  const outs = ctx.upload(new Uint32Array(40).fill(POISON), [40], "u32", "ids");
  const stepT = ctx.upload([10], [1], "u32", "step");
  for (let j = 0; j < 20; j++) await sample(ctx, L, outs, { temperature: 1, seed: 5, step: 10 + j, outOffset: j });
  for (let j = 0; j < 20; j++) await sample(ctx, L, outs, { temperature: 1, seed: 5, step: stepT, stepAdd: j, outOffset: 20 + j });
  const got = await outs.read();
  assertEqualArrays(got.subarray(20), got.subarray(0, 20), "tensor step == numeric step");
  assert.ok(new Set(got.subarray(0, 20)).size > 5, "different steps give different draws");
  for (let j = 0; j < 20; j++) assert.is(got[j], sampleReference(l, V, { temperature: 1 }, () => sampleUniform01(5, 10 + j, 0))[0], `step ${10 + j}`);
});

test("sampling frequencies follow softmax(l / T) (4000 rows, one dispatch)", async () => {
  const ctx = await gpu();
  const V = 5, B = 4000, T = 0.9;
  const row = Float32Array.from([1, 0.5, -1, 2, 0]);
  const l = new Float32Array(B * V);
  for (let b = 0; b < B; b++) l.set(row, b * V);
  const out = ctx.upload(new Uint32Array(B).fill(POISON), [B], "u32", "ids");
  await sample(ctx, ctx.upload(l, [B, V], "f32", "l"), out, { temperature: T, seed: 11, step: 3 });
  const got = await out.read();
  const z = row.reduce((s, x) => s + Math.exp(x / T), 0);
  for (let i = 0; i < V; i++) {
    const p = Math.exp(row[i]! / T) / z;
    const f = got.filter((x) => x === i).length / B;
    assert.ok(Math.abs(f - p) < 4 * Math.sqrt((p * (1 - p)) / B), `id ${i}: frequency ${f}, probability ${p}`);
  }
});

test("maskLogits: banned ids become −inf (ids ≥ V ignored), windows over a forced 64 KiB limit (also at 256-byte alignment)", async () => {
  for (const { name, ctx } of await devices({ maxStorageBufferBindingSize: 65536 })) {
    const B = 5, V = 5000; // 20 KB rows → 2 windows
    // Under 256-byte alignment a 20,000-byte row boundary is aligned only every 8 rows (160 KB):
    // the windows are bound at the aligned offset below their first row (an element base).
    const spans = ctx.bindingSpans(B, V * 4, 4, "logits");
    assert.ok(spans.length >= 2, `${name}: windows`);
    if (ctx.limits.minStorageBufferOffsetAlignment >= 256) assert.ok(spans.some((w) => w.elementBase > 0), `${name}: a window starts between aligned offsets`);
    const l = rng.fillNormal(B * V);
    const banned = [0, 4999, 17, 70000];
    for (let b = 0; b < B; b++) l[b * V + 17] = 50; // would be the argmax
    const L = ctx.upload(l, [B, V], "f32", "logits");
    await maskLogits(ctx, L, ctx.upload(banned, [banned.length], "u32", "banned"));
    const masked = maskLogitsReference(l, V, banned);
    assertEqualArrays(await L.read(), masked, "masked logits");
    const out = ctx.upload(new Uint32Array(B).fill(POISON), [B], "u32", "ids");
    const before = ctx.stats.dispatches;
    await sample(ctx, L, out, { temperature: 0, seed: 0, step: 0 });
    assert.ok(ctx.stats.dispatches - before >= 2, "windows");
    assertEqualArrays(await out.read(), sampleReference(masked, V, { temperature: 0 }, () => 0), "argmax after mask");
    const out2 = ctx.upload(new Uint32Array(B).fill(POISON), [B], "u32", "ids2");
    await sample(ctx, L, out2, { temperature: 1.1, topK: 20, topP: 0.9, seed: 8, step: 2 });
    assertEqualArrays(await out2.read(), sampleReference(masked, V, { temperature: 1.1, topK: 20, topP: 0.9 }, (r) => sampleUniform01(8, 2, r)), `${name}: windowed sampling`);
  }
});

test("sample: option errors", async () => {
  const ctx = await gpu();
  const L = ctx.empty([1, 4], "f32", "l");
  const o = ctx.empty([1], "u32", "o");
  await assertRejects(() => sample(ctx, L, o, { temperature: -1, seed: 0, step: 0 }), UsageError, [/temperature/], "negative temperature");
  await assertRejects(() => sample(ctx, L, o, { temperature: 1, topP: 0, seed: 0, step: 0 }), UsageError, [/topP/], "topP 0");
  await assertRejects(() => sample(ctx, L, o, { temperature: 1, seed: 0, step: 0, outOffset: 1 }), Error, [/outOffset/], "offset past the end");
});

test("sample: a row holding NaN (either sign) or +inf gives NONFINITE_ID under every option; −inf rows and entries do not", async () => {
  const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
  const posNaN = f32(0x7fc00000), negNaN = f32(0xffc00000), sigNaN = f32(0x7f800001);
  const contexts = [await gpu(), ...(await devices({ maxStorageBufferBindingSize: 65536 })).map((d) => d.ctx)];
  for (const ctx of contexts) {
    const limit = ctx.limits.maxStorageBufferBindingSize;
    for (const V of [1, 7, 1000, 5000]) { // 5000: 20 KB rows, several windows under the 64 KiB limit
      const B = 8;
      const l = rng.fillNormal(B * V, 2);
      const put = (b: number, i: number, x: number) => { l[b * V + Math.min(i, V - 1)] = x; };
      put(0, 0, posNaN);          // first element
      put(1, V - 1, negNaN);      // last element (the default NaN on x86 is negative: below −inf in key order)
      put(2, V >> 1, Infinity);
      put(3, 3, sigNaN);
      put(4, 2, -Infinity);       // −inf alone: an ordinary row
      for (let i = 0; i < V; i++) l[5 * V + i] = -Infinity; // all −inf: the lowest id
      put(6, V - 1, 1e38);        // huge but finite: an ordinary row
      put(7, 1, posNaN);
      put(7, 2, -Infinity);
      for (const opts of [{ temperature: 0 }, { temperature: 1 }, { temperature: 0.8, topK: 3 }, { temperature: 1.2, topP: 0.7 }, { temperature: 1, topK: 50, topP: 0.9 }] as SampleReferenceOptions[]) {
        const want = sampleReference(l, V, opts, (row) => sampleUniform01(5, 1, row));
        const bad = V === 1 ? [0, 1, 2, 3] : [0, 1, 2, 3, 7]; // V = 1: row 7's −inf overwrites its NaN
        for (let b = 0; b < B; b++) assert.is(want[b] === NONFINITE_ID, bad.includes(b), `reference row ${b} V=${V}`);
        const L = ctx.upload(l, [B, V], "f32", "logits");
        const out = ctx.upload(new Uint32Array(B).fill(POISON), [B], "u32", "ids");
        await sample(ctx, L, out, { ...opts, seed: 5, step: 1 });
        assertEqualArrays(await out.read(), want, `V=${V} ${JSON.stringify(opts)} limit ${limit} align ${ctx.limits.minStorageBufferOffsetAlignment}`);
        L.dispose();
        out.dispose();
      }
    }
  }
});

test.run();
