import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { embedRows, embedRowsReference, planEmbedRows } from "../src/ops/embed-rows.js";
import type { GpuContext } from "../src/gpu/context.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

/** Runs embed_rows into a NaN-prefilled out; rows < T must equal the reference exactly, rows ≥ T stay NaN. */
async function runCase(ctx: GpuContext, rng: Rng, V: number, D: number, dtype: "f32" | "f16", ids: number[], T: number, what: string): Promise<void> {
  const maxRows = ids.length;
  const tf = rng.fillUniform(V * D);
  const host = dtype === "f16" ? f32ArrayToF16(tf) : tf;
  const values = dtype === "f16" ? f16ArrayToF32(host as Uint16Array) : tf;
  const table = ctx.upload(host, [V, D], dtype, "table");
  const rows = ctx.upload(Uint32Array.from(ids), [maxRows], "u32", "rows");
  const out = ctx.upload(new Float32Array(maxRows * D).fill(NaN), [maxRows, D], "f32", "out");
  const errors = ctx.upload([0], [1], "u32", "errors");
  const step = ctx.upload(stepWords(40, T), [8], "u32", "step");
  const plan = await planEmbedRows(ctx, rows, table, step, out, { errors });
  plan.encode(ctx);
  const got = await out.read();
  const want = embedRowsReference(ids, T, values, V, D);
  const Tl = Math.min(T, maxRows);
  assertEqualArrays(got.subarray(0, Tl * D), want.out, `${what} (${plan.label})`);
  assert.ok(got.subarray(Tl * D).every((x) => Number.isNaN(x)), `${what}: rows ≥ T untouched`);
  assert.is((await errors.read())[0], want.outOfRange ? 1 : 0, `${what}: the out-of-range flag`);
  for (const t of [table, rows, out, errors, step]) t.dispose();
}

test("embedRows: the live rows of the step, f32/f16 tables (packed on the browser-like device), odd D, T = 1, 2, 5, out-of-range ids flagged", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(31);
    for (const dtype of ["f32", "f16"] as const) {
      for (const D of [13, 64, 130]) {
        const V = 37;
        await runCase(ctx, rng, V, D, dtype, [5, 0, 36, 7, 7, 1], 1, `${dtype} D=${D} T=1`);
        await runCase(ctx, rng, V, D, dtype, [36, 2, 9, 9, 9, 9], 2, `${dtype} D=${D} T=2`);
        await runCase(ctx, rng, V, D, dtype, [3, 1, 4, 1, 5, 9], 5, `${dtype} D=${D} T=5`);
        await runCase(ctx, rng, V, D, dtype, [3, 37, 4, 0xffffffff, 5, 9], 5, `${dtype} D=${D} T=5 with ids ≥ V`);
        await runCase(ctx, rng, V, D, dtype, [3, 1, 4], 8, `${dtype} D=${D} T=8 > maxRows=3`);
      }
    }
  });
});

test("embedRows: a table over one storage binding is bound in row windows (one dispatch each), ids in every window", async () => {
  await forDevices({ maxStorageBufferBindingSize: 65536 }, async (ctx) => {
    const rng = new Rng(32);
    for (const dtype of ["f32", "f16"] as const) {
      const D = 100;
      const V = Math.ceil((3.5 * 65536) / (D * (dtype === "f16" ? 2 : 4)));
      await runCase(ctx, rng, V, D, dtype, [0, V - 1, Math.floor(V / 2), V, 1], 5, `${dtype} V=${V} windows`);
      const plan = await planEmbedRows(ctx, ctx.empty([5], "u32", "r"), ctx.empty([V, D], dtype, "t"), ctx.upload(stepWords(0, 1), [8], "u32", "s"), ctx.empty([5, D], "f32", "o"));
      assert.ok(plan.dispatches.length >= 4, `${plan.dispatches.length} windows`);
    }
  });
});

test("embedRows: shape errors", async () => {
  const ctx = await gpu();
  const step = ctx.upload(stepWords(0, 1), [8], "u32", "step");
  await assertRejects(() => embedRows(ctx, ctx.empty([3], "u32", "rows"), ctx.empty([10, 4], "f32", "table"), step, ctx.empty([2, 4], "f32", "out")), ShapeError, [/out \('out'\)/, /\[3, 4\]/], "out rows");
  await assertRejects(() => embedRows(ctx, ctx.empty([3], "f32", "rows"), ctx.empty([10, 4], "f32", "table"), step, ctx.empty([3, 4], "f32", "out")), ShapeError, [/rows/, /u32/], "rows dtype");
});

test.run();
