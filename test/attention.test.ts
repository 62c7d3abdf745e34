import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import {
  attention,
  attentionVariant,
  attentionReference,
  causalRanges,
  kvAppend,
  kvAppendReference,
  kvAppendVariant,
  packedCausalRanges,
  resolveAttention,
  type AttentionKind,
  type CacheDType,
} from "../src/ops/attention.js";
import type { GpuContext } from "../src/gpu/context.js";
import { ShapeError, UnsupportedError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

// Tolerance, both cache dtypes: the reference reads the very same cache values (f16 bits decoded
// exactly) and computes in float64, so the only difference is the kernel's f32 arithmetic: scores
// carry ~hd·2^-24·|q||k| relative error (≤ 1e-5 for hd ≤ 128 and |q|,|k| ≤ 1), exp() a few ulp,
// and the output is a convex combination of |v| ≤ 1 rounded through ≤ a few hundred f32 adds.
// atol 2e-5 + rtol 1e-4 bounds that with margin; f16 rounding itself is tested in kvAppend.
const TOL = { atol: 2e-5, rtol: 1e-4 };
const F16_NAN = 0x7e00;

interface Case {
  T: number;
  H: number;
  Hkv: number;
  hd: number;
  S: number;
  cache: CacheDType;
  ranges: Uint32Array;
  kind: AttentionKind | "auto";
  chunk?: number;
  scale?: number;
  maxKeys?: number;
}

/** Random q and caches (f16 caches hold f16-rounded values), runs attention into a NaN-prefilled out, compares with the reference. */
async function runCase(ctx: GpuContext, rng: Rng, c: Case, what: string): Promise<string> {
  const { T, H, Hkv, hd, S, cache } = c;
  const q = rng.fillUniform(T * H * hd);
  const kf = rng.fillUniform(Hkv * S * hd);
  const vf = rng.fillUniform(Hkv * S * hd);
  const kHost = cache === "f16" ? f32ArrayToF16(kf) : kf;
  const vHost = cache === "f16" ? f32ArrayToF16(vf) : vf;
  const kc = ctx.upload(kHost, [Hkv, S, hd], cache, "kCache");
  const vc = ctx.upload(vHost, [Hkv, S, hd], cache, "vCache");
  const out = ctx.upload(new Float32Array(T * H * hd).fill(NaN), [T, H, hd], "f32", "out");
  const rt = ctx.upload(c.ranges, [T, 2], "u32", "ranges");
  const qt = ctx.upload(q, [T, H, hd], "f32", "q");
  const opts = { out, variant: c.kind, ...(c.chunk !== undefined ? { chunk: c.chunk } : {}), ...(c.scale !== undefined ? { scale: c.scale } : {}), ...(c.maxKeys !== undefined ? { maxKeys: c.maxKeys } : {}) };
  const plan = resolveAttention(ctx, { T, H, Hkv, hd, S, cache }, opts);
  await attention(ctx, qt, kc, vc, rt, opts);
  const want = attentionReference(q, kHost, vHost, c.ranges, { T, H, Hkv, S, hd }, c.scale);
  assertClose(await out.read(), want, TOL, `${what} [${plan.label}] T=${T} H=${H} Hkv=${Hkv} hd=${hd} S=${S} ${cache}`);
  for (const t of [kc, vc, out, rt, qt]) t.dispose();
  return plan.label;
}

test("causalRanges and packedCausalRanges", () => {
  assertEqualArrays(causalRanges(3, 5), [0, 6, 0, 7, 0, 8], "causal p0=5");
  assertEqualArrays(causalRanges(2, 0, 10), [10, 11, 10, 12], "causal from cache position 10");
  assertEqualArrays(packedCausalRanges([2, 1, 3], 4), [4, 5, 4, 6, 6, 7, 7, 8, 7, 9, 7, 10], "packed");
});

test("attention prefill and decode: hd 64/80/96/128/24/7 × GQA 1/4/7, T = 1 and T = 37 (> one tile), p0 off-tile, f32 cache", async () => {
  const ctx = await gpu();
  const rng = new Rng(1234);
  for (const hd of [64, 80, 96, 128, 24, 7]) {
    for (const [H, Hkv] of [[3, 3], [8, 2], [7, 1]] as const) {
      for (const kind of ["prefill", "decode"] as const) {
        // T = 37 rows from cache position p0 = 5: ranges [0, 6..42], crossing KT = 16 tiles at odd places
        const p0 = 5;
        const S = 45;
        await runCase(ctx, rng, { T: 37, H, Hkv, hd, S, cache: "f32", ranges: causalRanges(37, p0), kind, ...(kind === "decode" ? { chunk: 13 } : {}) }, "prefill-shape");
        // T = 1 decode over 41 keys
        await runCase(ctx, rng, { T: 1, H, Hkv, hd, S, cache: "f32", ranges: causalRanges(1, 40), kind, ...(kind === "decode" ? { chunk: 16 } : {}) }, "decode-shape");
      }
    }
  }
});

test("attention with an f16 cache: every head dim, GQA 1/4/7, both kinds", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(77);
    for (const hd of [64, 80, 96, 128, 24, 7]) {
      for (const [H, Hkv] of [[2, 2], [4, 1], [14, 2]] as const) {
        await runCase(ctx, rng, { T: 21, H, Hkv, hd, S: 30, cache: "f16", ranges: causalRanges(21, 3), kind: "prefill" }, "f16 prefill");
        await runCase(ctx, rng, { T: 1, H, Hkv, hd, S: 70, cache: "f16", ranges: causalRanges(1, 66), kind: "decode", chunk: 20 }, "f16 decode");
      }
    }
  });
});

test("attention: long context decode (1000 keys) goes through split-K under auto; sharp softmax stays finite", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(9);
    for (const cache of ["f32", "f16"] as const) {
      const label = await runCase(ctx, rng, { T: 1, H: 8, Hkv: 2, hd: 64, S: 1024, cache, ranges: Uint32Array.from([0, 1000]), kind: "auto" }, "auto decode");
      assert.match(label, /^attention_decode_/, `auto picked ${label}`);
      assert.match(label, /\+combine/);
    }
    // scale 8: softmax close to one-hot, scores up to ~±100; the running max changes across tiles
    await runCase(ctx, rng, { T: 1, H: 4, Hkv: 4, hd: 32, S: 300, cache: "f32", ranges: Uint32Array.from([3, 290]), kind: "decode", scale: 8 }, "sharp decode");
    await runCase(ctx, rng, { T: 40, H: 4, Hkv: 4, hd: 32, S: 300, cache: "f32", ranges: causalRanges(40, 250), kind: "prefill", scale: 8 }, "sharp prefill");
    // many rows: auto picks prefill
    const label = await runCase(ctx, rng, { T: 130, H: 4, Hkv: 1, hd: 16, S: 130, cache: "f32", ranges: causalRanges(130, 0), kind: "auto" }, "auto prefill");
    assert.match(label, /^attention_prefill_/, `auto picked ${label}`);
  });
});

test("attention: packed sequences, empty and out-of-range ranges give zeros, not NaN; splits that are empty", async () => {
  const ctx = await gpu();
  const rng = new Rng(31);
  const packed = packedCausalRanges([5, 17, 1, 9]);
  // rows 32..34: empty [3, 3), reversed [9, 2) (= empty), and [40, 1000) clamped to [40, S = 40) (= empty)
  const ranges = new Uint32Array([...packed, 3, 3, 9, 2, 40, 1000]);
  const T = ranges.length / 2;
  for (const kind of ["prefill", "decode"] as const) {
    for (const cache of ["f32", "f16"] as const) {
      await runCase(ctx, rng, { T, H: 4, Hkv: 2, hd: 12, S: 40, cache, ranges, kind, ...(kind === "decode" ? { chunk: 3 } : {}) }, `packed ${kind}`);
    }
  }
  // the empty rows are exactly zero (the reference says so; check explicitly too)
  const hd = 8;
  const out = ctx.upload(new Float32Array(2 * hd).fill(NaN), [2, 1, hd], "f32", "out");
  const kc = ctx.upload(rng.fillUniform(16 * hd), [1, 16, hd], "f32", "k");
  for (const variant of ["prefill", "decode"] as const) {
    await attention(ctx, ctx.upload(rng.fillUniform(2 * hd), [2, 1, hd], "f32"), kc, kc, ctx.upload([4, 4, 0, 0], [2, 2], "u32"), { out, variant });
    assertEqualArrays(await out.read(), new Float32Array(2 * hd), `empty ranges → zeros (${variant})`);
  }
  // maxKeys smaller than the real ranges only changes the split, not the result
  await runCase(ctx, rng, { T: 2, H: 2, Hkv: 1, hd: 16, S: 600, cache: "f32", ranges: Uint32Array.from([0, 600, 100, 590]), kind: "decode", maxKeys: 130 }, "maxKeys underestimate");
});

test("kvAppend: f32 copy is exact, f16 is round-to-nearest of f32; untouched slots keep their NaN; positions ≥ S are skipped", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(5);
    // [3, 4, 5, 6] with odd hd: neighbouring rows share a word, written by two invocations at once
    for (const [hd, pos] of [[64, [7, 0, 19, 25]], [7, [7, 0, 19, 25]], [7, [3, 4, 5, 6]], [5, [6, 5, 4, 3]]] as const) {
      const Hkv = 3, S = 20, T = 4;
      const positions = Uint32Array.from(pos); // 25 ≥ S: skipped
      const k = rng.fillUniform(T * Hkv * hd, -3, 3);
      const v = rng.fillUniform(T * Hkv * hd, -3, 3);
      for (const cache of ["f32", "f16"] as const) {
        const init = cache === "f32" ? new Float32Array(Hkv * S * hd).fill(NaN) : new Uint16Array(Hkv * S * hd).fill(F16_NAN);
        const kc = ctx.upload(init, [Hkv, S, hd], cache, "kCache");
        const vc = ctx.upload(init, [Hkv, S, hd], cache, "vCache");
        await kvAppend(ctx, ctx.upload(k, [T, Hkv, hd], "f32", "k"), ctx.upload(v, [T, Hkv, hd], "f32", "v"), kc, vc, ctx.upload(positions, [T], "u32", "pos"));
        const want = kvAppendReference(k, v, init, init.slice(), positions, { Hkv, S, hd });
        if (cache === "f32") {
          assertEqualArrays(await kc.read(), want.kCache, `kvAppend f32 k hd=${hd}`);
          assertEqualArrays(await vc.read(), want.vCache, `kvAppend f32 v hd=${hd}`);
        } else {
          // WGSL lets f32→f16 round either way; compare in values within one f16 ulp (2^-10 relative)
          // and NaN slots exactly (assertClose requires NaN where the reference has NaN).
          const tol = { atol: 0, rtol: 2 ** -10 };
          assertClose(await kc.readF32(), f16ArrayToF32(want.kCache as unknown as Uint16Array), tol, `kvAppend f16 k hd=${hd} positions ${pos.join(",")}`);
          assertClose(await vc.readF32(), f16ArrayToF32(want.vCache as unknown as Uint16Array), tol, `kvAppend f16 v hd=${hd} positions ${pos.join(",")}`);
        }
      }
    }
  });
});

test("prefill through the cache: kvAppend of a chunk, then causal attention over it, one batch", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(8);
    const Hkv = 2, H = 8, hd = 40, S = 64, T = 19, p0 = 23;
    const kc = ctx.upload(new Float32Array(Hkv * S * hd).fill(0.5), [Hkv, S, hd], "f32", "kCache");
    const vc = ctx.upload(new Float32Array(Hkv * S * hd).fill(-0.25), [Hkv, S, hd], "f32", "vCache");
    const k = rng.fillUniform(T * Hkv * hd), v = rng.fillUniform(T * Hkv * hd), q = rng.fillUniform(T * H * hd);
    const positions = Uint32Array.from({ length: T }, (_, t) => p0 + t);
    await kvAppend(ctx, ctx.upload(k, [T, Hkv, hd], "f32"), ctx.upload(v, [T, Hkv, hd], "f32"), kc, vc, ctx.upload(positions, [T], "u32"));
    const ranges = causalRanges(T, p0);
    const out = await attention(ctx, ctx.upload(q, [T, H, hd], "f32"), kc, vc, ctx.upload(ranges, [T, 2], "u32"));
    const ref = kvAppendReference(k, v, new Float32Array(Hkv * S * hd).fill(0.5), new Float32Array(Hkv * S * hd).fill(-0.25), positions, { Hkv, S, hd });
    assertClose(await out.read(), attentionReference(q, ref.kCache, ref.vCache, ranges, { T, H, Hkv, S, hd }), TOL, "append + attention");
  });
});

test("attention and kvAppend errors: shapes, GQA, binding limit, explicit variants that cannot run, native f16 without shader-f16", async () => {
  const ctx = await gpu();
  const kc = ctx.empty([3, 16, 8], "f32", "kc3");
  const rg = ctx.empty([2, 2], "u32", "rg");
  await assertRejects(() => attention(ctx, ctx.empty([2, 4, 8], "f32", "q4"), kc, kc, rg), ShapeError, [/4 query heads/, /3 kv heads/], "GQA ratio");
  await assertRejects(() => attention(ctx, ctx.empty([2, 3, 6], "f32", "qbad"), kc, kc, rg), ShapeError, [/qbad/, /\[T, H, 8\]/], "q head dim");
  await assertRejects(() => attention(ctx, ctx.empty([2, 3, 8], "f32"), kc, ctx.empty([3, 16, 8], "f16", "vc16"), rg), ShapeError, [/vc16/, /f16/], "cache dtypes differ");
  await assertRejects(() => attention(ctx, ctx.empty([2, 3, 8], "f32"), kc, kc, ctx.empty([2], "u32", "rg1")), ShapeError, [/rg1/, /\[2, 2\]/], "ranges shape");
  await assertRejects(() => attention(ctx, ctx.empty([2, 3, 8], "f32"), kc, kc, rg, { variant: "prefill", chunk: 4 }), UnsupportedError, [/chunk/, /prefill/], "chunk with prefill");
  await assertRejects(() => attention(ctx, ctx.empty([2, 3, 8], "f32"), kc, kc, rg, { chunk: 4 }), UnsupportedError, [/chunk/, /decode/], "chunk with auto");
  await assertRejects(
    () => kvAppend(ctx, ctx.empty([2, 3, 4], "f32", "kbad"), ctx.empty([2, 3, 4], "f32"), kc, kc, ctx.empty([2], "u32")),
    ShapeError,
    [/kbad/, /\[T, 3, 8\]/],
    "kvAppend k shape",
  );
  // binding limit: a 96 KiB cache under a forced 64 KiB binding limit is refused up front
  const small = await gpu({ maxStorageBufferBindingSize: 65536 });
  const big = small.empty([2, 1536, 8], "f32", "bigK");
  await assertRejects(() => attention(small, small.empty([1, 2, 8], "f32"), big, big, small.empty([1, 2], "u32")), UnsupportedError, [/bigK/, /98304 bytes/, /65536/], "cache over binding");
  await assertRejects(
    () => kvAppend(small, small.empty([1, 2, 8], "f32"), small.empty([1, 2, 8], "f32"), big, big, small.empty([1], "u32")),
    UnsupportedError,
    [/bigK/, /65536/],
    "kvAppend cache over binding",
  );
  // decode partials over the limit: explicit decode throws rather than falling back to prefill
  const kc2 = small.empty([1, 4096, 8], "f32", "kc2");
  await assertRejects(
    () => attention(small, small.empty([64, 8, 8], "f32"), kc2, kc2, small.empty([64, 2], "u32"), { variant: "decode", chunk: 64 }),
    UnsupportedError,
    [/partial accumulators/, /65536/],
    "decode partials over binding",
  );
  // without shader-f16 an f16 cache runs the packed-pairs kernels; the native ones, asked for
  // explicitly, are refused (never silently replaced)
  const no16 = await gpu({ disableFeatures: ["shader-f16"] });
  assert.ok(resolveAttention(no16, { T: 1, H: 1, Hkv: 1, hd: 8, S: 4, cache: "f16" }).label.includes("_f16p_"), "packed attention picked");
  await assertRejects(() => no16.kernels.get(attentionVariant({ kind: "decode", cache: "f16", vec4: true, wg: 32 })), UnsupportedError, [/attention_decode_f16_v4/, /shader-f16/], "native f16 attention");
  await assertRejects(() => no16.kernels.get(kvAppendVariant("f16")), UnsupportedError, [/kv_append_f16_wg/, /shader-f16/], "native f16 append");
});

test.run();
