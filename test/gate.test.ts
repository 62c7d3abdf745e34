import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { add } from "../src/ops/elementwise.js";
import { UnsupportedError } from "../src/errors.js";
import { GATE_VARIANT, gateArgsReference } from "../src/gpu/context.js";
import { Rng } from "../src/util/rng.js";

test("gate kernel: indirect arguments equal gateArgsReference for the flag off and on, nothing written past n", async () => {
  const ctx = await gpu();
  const kernel = await ctx.kernels.get(GATE_VARIANT);
  const rng = new Rng(20);
  const n = 70; // more than one workgroup of 64, not a multiple of it
  const template = Uint32Array.from({ length: 3 * n }, () => 1 + rng.int(1000));
  for (const on of [0, 1, 7]) {
    const flag = ctx.upload(Uint32Array.of(on), [1], "u32", "flag");
    const tmpl = ctx.upload(template, [3 * n], "u32", "template");
    const args = ctx.upload(new Uint32Array(3 * n + 6).fill(0xdeadbeef), [3 * n + 6], "u32", "args");
    ctx.dispatch(kernel, [flag, tmpl, args], new Uint8Array(Uint32Array.of(n, 0, 0, 0).buffer), [Math.ceil(n / 64)]);
    ctx.submit();
    const got = (await args.read()) as Uint32Array;
    assert.equal(Array.from(got.subarray(0, 3 * n)), Array.from(gateArgsReference(on, template, n)), `flag ${on}`);
    assert.equal(Array.from(got.subarray(3 * n)), new Array(6).fill(0xdeadbeef), `flag ${on}: past n untouched`);
    for (const t of [flag, tmpl, args]) t.dispose();
  }
});

test("a gated block runs exactly when the GPU flag is set, with no host readback", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 64 * 1024 }); // windows: several dispatches per op
  const n = 40_000;
  const a = ctx.upload(new Float32Array(n).fill(1), [n], "f32", "a");
  const flag = ctx.upload(Uint32Array.of(0), [1], "u32", "flag");
  for (const on of [0, 1, 0, 1]) {
    ctx.write(flag, Uint32Array.of(on));
    const out = ctx.upload(new Float32Array(n).fill(-7), [n], "f32", "out");
    const readbacks = ctx.stats.readbacks;
    await ctx.beginGate(flag, "test");
    await add(ctx, a, a, out);
    await add(ctx, out, a, out === a ? a : ctx.empty([n], "f32")); // a second op in the block
    const count = ctx.endGate();
    assert.ok(count >= 2 * Math.ceil((n * 4) / (64 * 1024)), `gated dispatches: ${count}`);
    ctx.submit();
    assert.is(ctx.stats.readbacks, readbacks, "no readback while encoding");
    const got = await out.read();
    assert.is(got[0], on ? 2 : -7, `flag ${on}: first element`);
    assert.is(got[n - 1], on ? 2 : -7, `flag ${on}: last element (last window)`);
  }
});

test("gates refuse what cannot be gated, and do not nest", async () => {
  const ctx = await gpu();
  const flag = ctx.upload(Uint32Array.of(1), [1], "u32", "flag");
  const t = ctx.empty([4], "f32", "t");
  await ctx.beginGate(flag, "g1");
  assert.throws(() => ctx.clear(t), (e: Error) => e instanceof UnsupportedError && /g1/.test(e.message));
  assert.throws(() => ctx.write(t, new Float32Array(4)), (e: Error) => e instanceof UnsupportedError && /gated/.test(e.message));
  let nested: unknown = null;
  await ctx.beginGate(flag, "g2").catch((e) => (nested = e));
  assert.ok(nested instanceof UnsupportedError);
  ctx.endGate();
  assert.throws(() => ctx.endGate(), /without beginGate/);
  ctx.submit();
});

test.run();
