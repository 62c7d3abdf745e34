import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { attentionStep, attentionStepReference, attentionStepSplits, planAttentionStep, stepRanges } from "../src/ops/attention-step.js";
import { attention, DECODE_MIN_CHUNK } from "../src/ops/attention.js";
import { causalRangesFor } from "../src/model/session.js";
import type { GpuContext } from "../src/gpu/context.js";
import { ShapeError, UnsupportedError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";

// Tolerance as test/attention.test.ts: the reference reads the same cache values in float64; the
// kernel's f32 scores, exp and convex combination stay within atol 2e-5 + rtol 1e-4.
const TOL = { atol: 2e-5, rtol: 1e-4 };

interface Case {
  H: number;
  Hkv: number;
  hd: number;
  S: number;
  maxRows: number;
  rows: number;
  last: number;
  cache: "f32" | "f16";
  window?: number;
  splits?: number;
  chunk?: number;
  headsInner?: boolean;
  kernel?: "split" | "lanes";
}

interface Data {
  qkv: Float32Array;
  kHost: Float32Array | Uint16Array;
  vHost: Float32Array | Uint16Array;
}

function data(rng: Rng, c: Case): Data {
  const W = (c.H + 2 * c.Hkv) * c.hd;
  const kf = rng.fillUniform(c.Hkv * c.S * c.hd);
  const vf = rng.fillUniform(c.Hkv * c.S * c.hd);
  return {
    qkv: rng.fillUniform(c.maxRows * W),
    kHost: c.cache === "f16" ? f32ArrayToF16(kf) : kf,
    vHost: c.cache === "f16" ? f32ArrayToF16(vf) : vf,
  };
}

/** Runs attention_step on a NaN-prefilled out; checks rows < T against the reference and rows ≥ T untouched. Returns out. */
async function runCase(ctx: GpuContext, c: Case, d: Data, what: string): Promise<Float32Array> {
  const { H, Hkv, hd, S, maxRows, cache } = c;
  const W = (H + 2 * Hkv) * hd;
  const qkvT = ctx.upload(d.qkv, [maxRows, W], "f32", "qkv");
  const kc = ctx.upload(d.kHost, [Hkv, S, hd], cache, "kCache");
  const vc = ctx.upload(d.vHost, [Hkv, S, hd], cache, "vCache");
  const step = ctx.upload(stepWords(c.last, c.rows, 3, 0), [8], "u32", "step");
  const out = ctx.upload(new Float32Array(maxRows * H * hd).fill(NaN), [maxRows, H * hd], "f32", "out");
  const opts = { ...(c.window !== undefined ? { window: c.window } : {}), ...(c.splits !== undefined ? { splits: c.splits } : {}), ...(c.chunk !== undefined ? { chunk: c.chunk } : {}), ...(c.headsInner !== undefined ? { headsInner: c.headsInner } : {}), ...(c.kernel !== undefined ? { kernel: c.kernel } : {}) };
  await attentionStep(ctx, qkvT, kc, vc, step, out, opts);
  const got = await out.read();
  const T = Math.min(c.rows, maxRows);
  const want = attentionStepReference(d.qkv, d.kHost, d.vHost, { last: c.last, rows: c.rows }, { maxRows, H, Hkv, hd, S }, c.window ?? 0);
  assertClose(got.subarray(0, T * H * hd), want, TOL, what);
  assert.ok(got.subarray(T * H * hd).every((x) => Number.isNaN(x)), `${what}: rows ≥ T untouched`);
  for (const t of [qkvT, kc, vc, step, out]) t.dispose();
  return got;
}

test("stepRanges: the ranges Session uses (causalRangesFor), window included", () => {
  for (const [last, rows, window] of [[0, 1, 0], [9, 5, 0], [9, 5, 4], [3, 2, 8], [100, 3, 50]] as const) {
    assertEqualArrays(stepRanges(last, rows, window), causalRangesFor(last + 1 - rows, rows, window), `last=${last} rows=${rows} window=${window}`);
  }
});

test("attentionStep: matches the reference over GQA 1 and 3, odd head dims, f32/f16 caches, T = 1, 2, 5, near the capacity end, with and without splits and windows", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(21);
    const shapes = [
      { H: 3, Hkv: 1, hd: 8 }, // GQA 3, vec4
      { H: 2, Hkv: 2, hd: 5 }, // GQA 1, odd hd (scalar path; packed pairs straddle rows)
      { H: 6, Hkv: 2, hd: 12 },
    ];
    for (const { H, Hkv, hd } of shapes) {
      for (const cache of ["f32", "f16"] as const) {
        for (const S of [37, 300]) {
          for (const rows of [1, 2, 5]) {
            for (const last of [rows - 1, S - 1, Math.floor(S / 2)]) {
              for (const window of [0, 7]) {
                const c: Case = { H, Hkv, hd, S, maxRows: 5, rows, last, cache, window };
                await runCase(ctx, c, data(rng, c), `H=${H} Hkv=${Hkv} hd=${hd} ${cache} S=${S} T=${rows} last=${last} window=${window}`);
              }
            }
          }
        }
      }
    }
  });
});

test("attentionStep: forced splits, a fixed chunk, one split, a window longer than the context, and T clamped to maxRows", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(22);
    const base = { H: 4, Hkv: 2, hd: 16, S: 400, maxRows: 4, cache: "f16" as const };
    const cases: Case[] = [
      { ...base, rows: 3, last: 399, splits: 7 },
      { ...base, rows: 3, last: 399, splits: 7, headsInner: false },
      { ...base, rows: 3, last: 250, splits: 5, chunk: 64 },
      { ...base, rows: 2, last: 399, splits: 1 },
      { ...base, rows: 4, last: 150, window: 1000 },
      { ...base, rows: 4, last: 399, window: 130 },
      { ...base, rows: 9, last: 399 },
    ];
    for (const c of cases) await runCase(ctx, c, data(rng, c), JSON.stringify({ ...c, cache: c.cache }));
  });
});

test("attentionStep, the lanes kernel: matches the reference over GQA 1 and 3, odd head dims, f32/f16 caches, T = 1, 2, 5, windows, fixed chunks, T clamped", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(25);
    for (const { H, Hkv, hd } of [{ H: 3, Hkv: 1, hd: 8 }, { H: 2, Hkv: 2, hd: 5 }, { H: 6, Hkv: 2, hd: 12 }]) {
      for (const cache of ["f32", "f16"] as const) {
        for (const rows of [1, 2, 5]) {
          for (const [S, last, window] of [[37, rows - 1, 0], [300, 299, 0], [300, 150, 7], [37, 36, 7]] as const) {
            const c: Case = { H, Hkv, hd, S, maxRows: 5, rows, last, cache, window, kernel: "lanes" };
            await runCase(ctx, c, data(rng, c), `lanes H=${H} Hkv=${Hkv} hd=${hd} ${cache} S=${S} T=${rows} last=${last} window=${window}`);
          }
        }
      }
    }
    const base = { H: 4, Hkv: 2, hd: 16, S: 400, maxRows: 4, cache: "f16" as const, kernel: "lanes" as const };
    for (const c of [{ ...base, rows: 3, last: 250, splits: 5, chunk: 64 }, { ...base, rows: 9, last: 399 }, { ...base, rows: 2, last: 399, splits: 1 }] as Case[]) {
      await runCase(ctx, c, data(rng, c), JSON.stringify(c));
    }
  });
});

test("attentionStep: bit-identical to the decode attention (host ranges, the same split) and to the prefill kernel without splits", async () => {
  await forDevices({}, async (ctx, device) => {
    const rng = new Rng(23);
    for (const [H, Hkv, hd, cache] of [[9, 3, 64, "f16"], [32, 4, 64, "f32"], [2, 2, 5, "f16"]] as const) {
      const S = 700;
      const last = 612;
      const c: Case = { H, Hkv, hd, S, maxRows: 2, rows: 1, last, cache };
      const d = data(rng, c);
      const got = await runCase(ctx, c, d, `[${device}] H=${H} hd=${hd} ${cache}`);
      const q = ctx.upload(d.qkv.subarray(0, H * hd), [1, H, hd], "f32", "q");
      const kc = ctx.upload(d.kHost, [Hkv, S, hd], cache, "kc");
      const vc = ctx.upload(d.vHost, [Hkv, S, hd], cache, "vc");
      const ranges = ctx.upload(stepRanges(last, 1), [1, 2], "u32", "ranges");
      const n = attentionStepSplits(H, S);
      const len = last + 1;
      const chunk = Math.max(DECODE_MIN_CHUNK, Math.ceil(len / n));
      const ref = await (await attention(ctx, q, kc, vc, ranges, { variant: "decode", chunk, maxKeys: len })).read();
      assertEqualArrays(got.subarray(0, H * hd), ref, `[${device}] H=${H} hd=${hd} ${cache}: as attention(decode, chunk ${chunk})`);
      const gotSplits = await runCase(ctx, { ...c, headsInner: false }, d, `[${device}] H=${H} hd=${hd} ${cache} splits-inner`);
      assertEqualArrays(gotSplits.subarray(0, H * hd), ref, `[${device}] H=${H} hd=${hd} ${cache}: splits-inner order, the same bits`);
      // one split: the prefill kernel's single pass
      const c1: Case = { ...c, splits: 1 };
      const got1 = await runCase(ctx, c1, d, `[${device}] H=${H} hd=${hd} ${cache} splits=1`);
      const ref1 = await (await attention(ctx, q, kc, vc, ranges, { variant: "prefill" })).read();
      assertEqualArrays(got1.subarray(0, H * hd), ref1, `[${device}] H=${H} hd=${hd} ${cache}: as attention(prefill)`);
    }
  });
});

test("attentionStep: the plan (fixed grid) serves steps of different T and positions set on the GPU", async () => {
  const ctx = await gpu();
  const rng = new Rng(24);
  const H = 6, Hkv = 2, hd = 8, S = 260, maxRows = 5;
  const c: Case = { H, Hkv, hd, S, maxRows, rows: 1, last: 0, cache: "f32" };
  const d = data(rng, c);
  const W = (H + 2 * Hkv) * hd;
  const qkvT = ctx.upload(d.qkv, [maxRows, W], "f32", "qkv");
  const kc = ctx.upload(d.kHost, [Hkv, S, hd], "f32", "kc");
  const vc = ctx.upload(d.vHost, [Hkv, S, hd], "f32", "vc");
  const step = ctx.upload(stepWords(0, 1), [8], "u32", "step");
  const plan = await planAttentionStep(ctx, qkvT, kc, vc, step, { window: 200 });
  assert.is(plan.dispatches.length, 2, plan.label);
  for (const [last, rows] of [[0, 1], [5, 5], [200, 1], [259, 3], [120, 2]] as const) {
    ctx.write(step, stepWords(last, rows));
    plan.encode(ctx);
    const got = await plan.out.read();
    const want = attentionStepReference(d.qkv, d.kHost, d.vHost, { last, rows }, { maxRows, H, Hkv, hd, S }, 200);
    assertClose(got.subarray(0, rows * H * hd), want, TOL, `last=${last} rows=${rows}`);
  }
  plan.dispose();
  assert.ok(plan.out.isDisposed, "the plan's own out goes back with dispose()");
});

test("attentionStep: argument errors", async () => {
  const ctx = await gpu();
  const step = ctx.upload(stepWords(0, 1), [8], "u32", "step");
  const kc = ctx.empty([2, 8, 4], "f32", "kc");
  const vc = ctx.empty([2, 8, 4], "f32", "vc");
  await assertRejects(() => planAttentionStep(ctx, ctx.empty([2, 4 * 7], "f32", "qkv"), kc, vc, step), ShapeError, [/3 query heads are not a multiple of 2 kv heads/], "GQA");
  await assertRejects(() => planAttentionStep(ctx, ctx.empty([2, 4 * 8], "f32", "qkv"), kc, vc, step, { chunk: 16 }), UnsupportedError, [/fixed chunk/, /splits > 1/], "chunk without splits");
  await assertRejects(() => planAttentionStep(ctx, ctx.empty([2, 4 * 8], "f32", "qkv"), kc, ctx.empty([2, 8, 4], "f16", "vh"), step), ShapeError, [/vCache/, /f32/], "cache dtypes");
  const huge = ctx.empty([1, (2048 + 2) * 128], "f32", "huge"); // GQA 2048 × 32 slots: over any workgroup
  await assertRejects(() => planAttentionStep(ctx, huge, ctx.empty([1, 8, 128], "f32", "k1"), ctx.empty([1, 8, 128], "f32", "v1"), step, { kernel: "lanes" }), UnsupportedError, [/lanes kernel needs 2048·32 = 65536 lanes/, /kernel 'split'/], "lanes over the workgroup limit");
  await assertRejects(() => planAttentionStep(ctx, ctx.empty([2, 4 * 8], "f32", "qkv"), kc, vc, step, { heads: 6, kvHeads: 2 }), ShapeError, [/heads 6 does not match qkv \('qkv'\) \[2, 32\]/, /imply heads 4/], "stated heads");
});

test.run();
