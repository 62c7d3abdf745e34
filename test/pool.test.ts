import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { add } from "../src/ops/elementwise.js";
import type { Tensor } from "../src/gpu/tensor.js";

test("a 1,000-iteration loop allocates no GPU buffers after warm-up", async () => {
  const ctx = await gpu();
  const x = ctx.upload(new Float32Array(4096).fill(1), [4096], "f32", "x");
  const step = async (acc: Tensor): Promise<Tensor> => {
    const tmp = await add(ctx, x, acc); // fresh temporary from the pool
    const next = await add(ctx, tmp, x);
    tmp.dispose();
    acc.dispose();
    ctx.submit(); // one submit per logical step
    return next;
  };
  let acc: Tensor = ctx.upload(new Float32Array(4096), [4096], "f32", "acc");
  for (let i = 0; i < 5; i++) acc = await step(acc); // warm-up, including one readback
  await acc.read();
  const created = ctx.stats.buffersCreated;
  const submits = ctx.stats.submits;
  for (let i = 0; i < 1000; i++) acc = await step(acc);
  const v = await acc.read();
  assert.is(v[0], 2 * 1005);
  assert.is(v[4095], 2 * 1005);
  // (the readback's staging buffer was created during warm-up)
  assert.is(ctx.stats.buffersCreated, created, `GPU buffers created during the loop: ${ctx.stats.buffersCreated - created}`);
  assert.ok(ctx.pool.stats.reused > 2000);
  assert.is(ctx.stats.submits - submits, 1001); // 1000 steps + the readback's copy
});

test("ops batch into one submit; only explicit reads sync with the host", async () => {
  const ctx = await gpu();
  const a = ctx.upload([1, 2, 3], [3], "f32");
  await ctx.sync();
  const s0 = { ...ctx.stats };
  let t: Tensor = a;
  for (let i = 0; i < 50; i++) t = await add(ctx, t, a);
  assert.is(ctx.stats.submits, s0.submits, "no submit while encoding");
  assert.is(ctx.stats.dispatches - s0.dispatches, 50);
  const v = await t.read();
  assert.equal(Array.from(v), [51, 102, 153]);
  assert.is(ctx.stats.submits - s0.submits, 1);
  assert.is(ctx.stats.readbacks - s0.readbacks, 1);
  assert.is(ctx.stats.bytesReadBack - s0.bytesReadBack, 12);
});

test("write() after encoded ops keeps the ops' view of the old data", async () => {
  const ctx = await gpu();
  const a = ctx.upload([1, 1], [2], "f32");
  const out = await add(ctx, a, a); // encoded, not submitted
  ctx.write(a, new Float32Array([5, 5]));
  assert.equal(Array.from(await out.read()), [2, 2]);
  assert.equal(Array.from(await (await add(ctx, a, a)).read()), [10, 10]);
});

test.run();
