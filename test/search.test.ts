import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { COSINE_TOPK_LAYOUTS, cosineIndexPack, cosineIndexPackOf, cosineTopK, cosineTopKReference, NO_ID, TOPK_MAX_K, type CosineTopKLayout, type TopkTileShape } from "../src/ops/search.js";
import { tiledCopyReference } from "../src/ops/tiled-copy.js";
import type { GpuContext } from "../src/gpu/context.js";
import { ShapeError, UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16, f16ArrayToF32 } from "../src/util/f16.js";

// Scores: f32 dot products of unit vectors over D terms against a float64 reference: error ≲
// D·2⁻²⁴·Σ|qᵢrᵢ| ≤ D·6e-8; atol 1e-5 covers D ≤ 160 worst case and D = 4096 typical (√D·6e-8).
// Ids are compared exactly: random unit vectors at these N have top-k score gaps ≫ 1e-5, and the
// tie tests use small-integer data whose dot products are exact in f32 (so ties are real ties).
const TOL = { atol: 1e-5, rtol: 0 };
const rng = new Rng(1234);

function unitRows(n: number, D: number): Float32Array {
  const a = rng.fillNormal(n * D);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += a[r * D + i]! ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < D; i++) a[r * D + i]! *= inv;
  }
  return a;
}

async function check(ctx: GpuContext, q: Float32Array, Q: number | null, rows: Float32Array, N: number, D: number, k: number, dt: "f32" | "f16", what: string, count?: number, layout: CosineTopKLayout | "auto" = "auto", tile?: TopkTileShape): Promise<void> {
  const vals = dt === "f16" ? f16ArrayToF32(f32ArrayToF16(rows)) : rows;
  const index = ctx.upload(vals, [N, D], dt, "index");
  const query = ctx.upload(q, Q === null ? [D] : [Q, D], "f32", "query");
  const nq = Q ?? 1;
  const outIds = ctx.upload(new Uint32Array(nq * k).fill(12345), Q === null ? [k] : [Q, k], "u32", "ids");
  const outScores = ctx.upload(new Float32Array(nq * k).fill(NaN), Q === null ? [k] : [Q, k], "f32", "scores");
  await cosineTopK(ctx, query, index, k, { outIds, outScores, layout, ...(tile ? { tile } : {}), ...(count === undefined ? {} : { count }) });
  const ref = cosineTopKReference(q, vals, count ?? N, D, k);
  assertEqualArrays(await outIds.read(), ref.ids, `${what} ${layout}${tile ? ` T=${tile.T} R=${tile.R}` : ""}: ids`);
  assertClose(await outScores.read(), ref.scores, TOL, `${what} ${layout}${tile ? ` T=${tile.T} R=${tile.R}` : ""}: scores`);
  index.dispose();
}

test("cosineTopK: f32/f16, vec4 and scalar D, N not a multiple of the workgroup, k=1, k>N, several queries", async () => {
  await forDevices({}, async (ctx) => {
    const cases: [number, number, number, number | null][] = [
      [1000, 64, 10, null],
      [777, 13, 1, null],
      [3000, 32, 64, 3],
      [300, 8, 256, null],
      [5, 20, 9, 2], // k > N: tail of sentinels
      [513, 7, 5, null], // D odd and < one f32 chunk... D % 8 = 7 (f16 tail chunk), N = 2 tiles + 1
      [300, 9, 3, 2], // D = one chunk + 1 element (f32) / + 1 (f16)
    ];
    for (const [N, D, k, Q] of cases) {
      for (const dt of ["f32", "f16"] as const) {
        const rows = unitRows(N, D);
        const q = rng.fillNormal((Q ?? 1) * D);
        for (const layout of COSINE_TOPK_LAYOUTS) await check(ctx, q, Q, rows, N, D, k, dt, `N=${N} D=${D} k=${k} Q=${Q} ${dt}`, undefined, layout);
      }
    }
  });
});

test("cosineTopK tiled: other tile shapes (T rows per tile, R rows per invocation), rows not a multiple of T·R, D odd", async () => {
  await forDevices({}, async (ctx) => {
    for (const tile of [{ T: 1, R: 1 }, { T: 64, R: 3 }, { T: 256, R: 2 }]) {
      for (const [N, D, k, Q] of [[2100, 9, 6, 2]] as const) {
        const rows = unitRows(N, D);
        await check(ctx, rng.fillNormal((Q ?? 1) * D), Q, rows, N, D, k, "f16", `N=${N} D=${D}`, undefined, "tiled", tile);
      }
    }
  });
});

test("cosineTopK: ties (duplicate rows) → lower id first; zero query → lowest ids; count < N", async () => {
  const ctx = await gpu();
  const N = 3000, D = 12, k = 40;
  // small integers: every dot product is exact in f32, so ties are exact
  const rows = new Float32Array(N * D);
  for (let i = 0; i < rows.length; i++) rows[i] = rng.int(5) - 2;
  for (let r = 2000; r < 2100; r++) rows.copyWithin(r * D, 7 * D, 8 * D); // 100 duplicates of row 7
  const q = new Float32Array(D);
  for (let i = 0; i < D; i++) q[i] = rows[7 * D + i]! + (i === 0 ? 1 : 0);
  for (const dt of ["f32", "f16"] as const) {
    for (const layout of COSINE_TOPK_LAYOUTS) {
      await check(ctx, q, null, rows, N, D, k, dt, `ties ${dt}`, undefined, layout);
      await check(ctx, new Float32Array(D), null, rows, N, D, k, dt, `zero query ${dt}`, undefined, layout);
      await check(ctx, q, null, rows, N, D, k, dt, `count=1500 ${dt}`, 1500, layout);
    }
  }
  // the zero query's result is the k lowest ids with score 0
  const z = cosineTopKReference(new Float32Array(D), rows, N, D, 3);
  assertEqualArrays(z.ids, [0, 1, 2], "zero-query reference");
  // count = 0: all sentinels
  const empty = await cosineTopK(ctx, ctx.upload(q, [D], "f32", "q"), ctx.upload(rows, [N, D], "f32", "ix"), 4, { count: 0 });
  assertEqualArrays(await empty.ids.read(), [NO_ID, NO_ID, NO_ID, NO_ID], "count 0 ids");
  assertEqualArrays(await empty.scores.read(), [-Infinity, -Infinity, -Infinity, -Infinity], "count 0 scores");
});

test("cosineTopK: index above the binding limit (forced 64 KiB), f16 and f32", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    const N = 9001, D = 36; // f16 648 KB → 11 windows, f32 → 21 windows
    const rows = unitRows(N, D);
    for (const dt of ["f16", "f32"] as const) {
      for (const layout of dt === "f16" ? COSINE_TOPK_LAYOUTS : (["rows"] as const)) { // the tiled windows do not depend on the dtype
        const before = ctx.stats.dispatches;
        await check(ctx, rng.fillNormal(2 * D), 2, rows, N, D, 32, dt, `windowed ${dt}`, undefined, layout);
        assert.ok(ctx.stats.dispatches - before >= (dt === "f16" ? 10 : 20), `windows: ${ctx.stats.dispatches - before} dispatches`);
      }
    }
  });
});

test("cosineTopK: N = 1,000,000 at D = 8 f16 over binding windows (forced 1 MiB), exact ids", async () => {
  await forDevices({ maxStorageBufferBindingSize: 1 << 20 }, async (ctx) => {
    const N = 1_000_000, D = 8, k = 64;
    const rows = new Uint16Array(N * D);
    const vals = new Float32Array(N * D);
    const lut = f32ArrayToF16([-3, -2, -1, 0, 1, 2, 3]);
    for (let i = 0; i < rows.length; i++) {
      const v = rng.int(7);
      rows[i] = lut[v]!;
      vals[i] = v - 3;
    }
    const q = Float32Array.from([3, -1, 2, 0, 1, -2, 3, 1]);
    const index = ctx.upload(rows, [N, D], "f16", "index-1M");
    const ref = cosineTopKReference(q, vals, N, D, k);
    for (const layout of ["tiled"] as const) { // the rows layout's windows: the 64 KiB test above
      const before = ctx.stats.dispatches;
      const { ids, scores } = await cosineTopK(ctx, ctx.upload(q, [D], "f32", "q"), index, k, { layout });
      assert.ok(ctx.stats.dispatches - before >= 16, "windows");
      assertEqualArrays(await ids.read(), ref.ids, `1M ids ${layout}`);
      assertClose(await scores.read(), ref.scores, TOL, `1M scores ${layout}`);
    }
    index.dispose();
  });
});

test("cosineTopK: argument errors", async () => {
  const ctx = await gpu();
  const ix = ctx.empty([10, 4], "f32", "ix");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, TOPK_MAX_K + 1), UsageError, [/k = /], "k too large");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, 0), UsageError, [/k = 0/], "k = 0");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, 2, { count: 11 }), UsageError, [/count = 11/], "count > N");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, 2, { layout: "tiled", vec4: true }), UsageError, [/vec4/], "vec4 on tiled");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, 2, { gate: ctx.empty([1], "f32", "g") }), ShapeError, [/gate/], "f32 gate");
  await assertRejects(() => cosineTopK(ctx, ctx.empty([4], "f32", "q"), ix, 2, { normWeight: ctx.empty([5], "f32", "g") }), ShapeError, [/normWeight/], "norm weight shape");
});

test("cosineIndexPack: the tiled copy matches tiledCopyReference (f32, f16; D odd; count < N; extended when count grows)", async () => {
  await forDevices({}, async (ctx) => {
    for (const [N, D, counts, T] of [[600, 13, [257, 300, 599], 8], [40, 8, [3, 40], 1], [3, 1, [3], 8], [700, 6, [100, 650], 64]] as const) {
      for (const dt of ["f32", "f16"] as const) {
        const rows = unitRows(N, D);
        const vals = dt === "f16" ? f16ArrayToF32(f32ArrayToF16(rows)) : rows;
        const index = ctx.upload(vals, [N, D], dt, "index");
        for (const count of counts) {
          const pack = await cosineIndexPack(ctx, index, count, T);
          assert.is(cosineIndexPackOf(index, T), pack, "cached");
          assert.is(await cosineIndexPack(ctx, index, count, T), pack, "same count: reused");
          assert.is((await cosineIndexPack(ctx, index, Math.max(1, count - 1), T)).count, count, "fewer rows: the copy holds them already");
          const words = await pack.tensor.read();
          const want = tiledCopyReference(vals, count, D, dt === "f16" ? 8 : 4, T);
          const all = dt === "f32" ? Array.from(new Float32Array(words.buffer, words.byteOffset, words.length)) : Array.from(f16ArrayToF32(new Uint16Array(words.buffer, words.byteOffset, words.length * 2)));
          assertEqualArrays(all.slice(0, want.length), want, `pack N=${N} D=${D} T=${T} count=${count} (after ${counts.join(", ")}) ${dt}`);
          if (T === 8) { // the default software tile height (other T: the tile-shape test)
            const q = vals.slice((count - 1) * D, count * D); // the last row copied finds itself
            const { ids } = await cosineTopK(ctx, ctx.upload(q, [D], "f32", "q"), index, 1, { count, layout: "tiled", tile: { T, R: 4 } });
            assertEqualArrays(await ids.read(), cosineTopKReference(q, vals, count, D, 1).ids, `search after the copy of ${count} rows`);
          }
        }
        index.dispose();
      }
    }
  });
});

test("cosineTopK gate: gate 0 leaves the outputs untouched with the same dispatches, gate 1 searches (both layouts, merge and scan)", async () => {
  await forDevices({}, async (ctx) => {
    for (const N of [700, 2500]) { // one workgroup (1 dispatch: no merge), three (scan + merge)
    const D = 20, k = 5;
    const rows = unitRows(N, D);
    const q = rng.fillNormal(2 * D);
    const index = ctx.upload(rows, [N, D], "f16", "index");
    const vals = f16ArrayToF32(f32ArrayToF16(rows));
    const ref = cosineTopKReference(q, vals, N, D, k);
    const query = ctx.upload(q, [2, D], "f32", "query");
    for (const layout of COSINE_TOPK_LAYOUTS) {
      await cosineIndexPack(ctx, index, N); // so that both gate values encode the same dispatches
      const counts: number[] = [];
      for (const g of [0, 1, 0]) {
        const gate = ctx.upload(Uint32Array.of(g), [1], "u32", "gate");
        const outIds = ctx.upload(new Uint32Array(2 * k).fill(12345), [2, k], "u32", "ids");
        const outScores = ctx.upload(new Float32Array(2 * k).fill(7), [2, k], "f32", "scores");
        const before = ctx.stats.dispatches;
        await cosineTopK(ctx, query, index, k, { outIds, outScores, layout, gate });
        counts.push(ctx.stats.dispatches - before);
        if (g === 0) {
          assertEqualArrays(await outIds.read(), new Uint32Array(2 * k).fill(12345), `gate 0 ${layout}: ids untouched`);
          assertEqualArrays(await outScores.read(), new Float32Array(2 * k).fill(7), `gate 0 ${layout}: scores untouched`);
        } else {
          assertEqualArrays(await outIds.read(), ref.ids, `gate 1 ${layout}: ids`);
          assertClose(await outScores.read(), ref.scores, TOL, `gate 1 ${layout}: scores`);
        }
      }
      assert.ok(counts[0] === counts[1] && counts[1] === counts[2] && counts[0]! === (N > 1024 ? 2 : 1), `fixed dispatches: ${counts.join(", ")}`);
    }
    // a gate word inside a larger buffer at another value than 0/1 counts as on
    const gate = ctx.upload(Uint32Array.of(5), [1], "u32", "gate5");
    const { ids } = await cosineTopK(ctx, query, index, k, { gate });
    assertEqualArrays(await ids.read(), ref.ids, "gate 5: on");
    index.dispose();
    }
  });
});

test("cosineTopK normWeight: a raw hidden row h with the norm weight g scores as h ∘ g (f32/f16 g, both layouts, D odd)", async () => {
  await forDevices({}, async (ctx) => {
    for (const [N, D, k, Q, gdt] of [[900, 24, 7, 1, "f32"], [1333, 11, 4, 2, "f16"]] as const) {
      const rows = unitRows(N, D);
      const h = rng.fillNormal(Q * D).map((v) => v * 37); // unnormalized, like a residual-stream row
      const gVals = rng.fillNormal(D).map((v) => 1 + 0.5 * v);
      {
        const g = gdt === "f16" ? f16ArrayToF32(f32ArrayToF16(gVals)) : gVals;
        const qg = h.map((v, i) => v * g[i % D]!);
        const ref = cosineTopKReference(qg, rows, N, D, k);
        const index = ctx.upload(rows, [N, D], "f32", "index");
        const normWeight = ctx.upload(g, [D], gdt, "norm");
        for (const layout of gdt === "f32" ? COSINE_TOPK_LAYOUTS : (["tiled"] as const)) {
          const { ids, scores } = await cosineTopK(ctx, ctx.upload(h, Q === 1 ? [D] : [Q, D], "f32", "h"), index, k, { layout, normWeight });
          assertEqualArrays(await ids.read(), ref.ids, `qnorm ${gdt} ${layout} N=${N} D=${D}: ids`);
          assertClose(await scores.read(), ref.scores, TOL, `qnorm ${gdt} ${layout} N=${N} D=${D}: scores`);
        }
        index.dispose();
      }
    }
  });
});

test.run();
