import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { embedding, embeddingReference } from "../src/ops/embedding.js";
import { UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16, f16ArrayToF32 } from "../src/util/f16.js";
import { dequantizeMatrix, packQuantized, quantizeMatrix } from "../src/quant/formats.js";

// A gather is a copy (f16 → f32 widening is exact): every comparison is bit-exact.
const rng = new Rng(7);

test("embedding: f32 and f16 tables, ids from a GPU buffer, T=1 and odd D, NaN-prefilled", async () => {
  await forDevices({}, async (ctx) => {
    for (const [V, D, ids] of [[50, 33, [49]], [1000, 64, [0, 999, 5, 5, 17, 512, 3]], [7, 4097, [6, 0, 3]]] as [number, number, number[]][]) {
      for (const dt of ["f32", "f16"] as const) {
        let table = rng.fillNormal(V * D);
        if (dt === "f16") table = f16ArrayToF32(f32ArrayToF16(table));
        const tab = ctx.upload(table, [V, D], dt, "table");
        const idsT = ctx.upload(Uint32Array.from(ids), [ids.length], "u32", "ids");
        const out = ctx.upload(new Float32Array(ids.length * D).fill(NaN), [ids.length, D], "f32", "out");
        await embedding(ctx, idsT, tab, { out });
        assertEqualArrays(await out.read(), embeddingReference(ids, table, V, D).out, `embedding V=${V} D=${D} ${dt}`);
      }
    }
  });
});

test("embedding: q8_0 and q4_0 tables gather exactly dequantized rows; windows above a forced 64 KiB limit; out-of-range ids flagged", async () => {
  for (const limit of [undefined, 65536]) {
    await forDevices(limit ? { maxStorageBufferBindingSize: limit } : {}, async (ctx) => {
      for (const format of ["q8_0", "q4_0"] as const) {
        for (const [V, D, ids] of [[5, 32, [4, 0, 4]], [1000, 96, [0, 999, 5, 512, 3, 1000]], [3, 4096, [2, 1]]] as [number, number, number[]][]) {
          const q = quantizeMatrix(rng.fillNormal(V * D), V, D, format);
          const tab = ctx.upload(packQuantized(q), [V, D], format, "qtable");
          const idsT = ctx.upload(Uint32Array.from(ids), [ids.length], "u32", "ids");
          const out = ctx.upload(new Float32Array(ids.length * D).fill(NaN), [ids.length, D], "f32", "out");
          const errors = ctx.upload(new Uint32Array(1), [1], "u32", "errors");
          const before = ctx.stats.dispatches;
          await embedding(ctx, idsT, tab, { out, errors });
          const want = embeddingReference(ids, dequantizeMatrix(q), V, D);
          assertEqualArrays(await out.read(), want.out, `embedding ${format} V=${V} D=${D} limit ${limit ?? "default"}`);
          assert.is((await errors.read())[0], want.outOfRange ? 1 : 0, "error flag");
          if (limit && (format === "q8_0" ? V * D : (V * D) / 2) > limit) assert.ok(ctx.stats.dispatches - before > 1, `windowed ${format} V=${V} D=${D}`);
          for (const t of [tab, idsT, out, errors]) t.dispose();
        }
      }
    });
  }
});

test("embedding: table above the binding limit (forced 64 KiB): one dispatch per row window", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    const V = 3001, D = 40; // f16: 240 KB → 4 windows; f32: 480 KB → 8 windows
    for (const dt of ["f16", "f32"] as const) {
      let table = rng.fillNormal(V * D);
      if (dt === "f16") table = f16ArrayToF32(f32ArrayToF16(table));
      const tab = ctx.upload(table, [V, D], dt, "big-table");
      const ids = [3000, 0, 819, 820, 1638, 1639, 2457, 2458, 1, 2999, 1500];
      const before = ctx.stats.dispatches;
      const out = await embedding(ctx, ids, tab); // host ids: validated and uploaded
      assert.ok(ctx.stats.dispatches - before >= (dt === "f16" ? 4 : 8), "windows");
      assertEqualArrays(await out.read(), embeddingReference(ids, table, V, D).out, `windowed embedding ${dt}`);
    }
  });
});

test("embedding: out-of-range GPU ids give a zero row and set the error flag; host ids are refused", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  const V = 2000, D = 24;
  const table = rng.fillNormal(V * D);
  const tab = ctx.upload(table, [V, D], "f32", "t"); // 192 KB → 3 windows: only the first writes the zero row
  const ids = [5, 2000, 1999, 0xffffffff, 7];
  const errors = ctx.upload([0], [1], "u32", "errors");
  const out = ctx.upload(new Float32Array(ids.length * D).fill(NaN), [ids.length, D], "f32", "out");
  await embedding(ctx, ctx.upload(ids, [ids.length], "u32", "ids"), tab, { out, errors });
  const ref = embeddingReference(ids, table, V, D);
  assertEqualArrays(await out.read(), ref.out, "out-of-range rows are zero");
  assert.ok(ref.outOfRange);
  assert.is((await errors.read())[0], 1, "error flag set");
  // in range: the flag stays clear
  const errors2 = ctx.upload([0], [1], "u32", "errors2");
  await embedding(ctx, ctx.upload([1, 2], [2], "u32", "ids2"), tab, { errors: errors2 });
  assert.is((await errors2.read())[0], 0, "error flag clear");
  await assertRejects(() => embedding(ctx, [1, 2000], tab), UsageError, [/2000/, /'t'/, /2000 rows/], "host id out of range");
});

test.run();
