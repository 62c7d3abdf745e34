import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { ShapeError, UnsupportedError } from "../src/errors.js";
import { add, addVariant } from "../src/ops/elementwise.js";
import { sizeClass } from "../src/gpu/pool.js";

const rng = new Rng(7);

test("round trips every dtype, including sizes that are not a multiple of 4 bytes", async () => {
  const ctx = await gpu();
  for (const n of [1, 2, 3, 5, 7, 255, 1001]) {
    const f32 = rng.fillNormal(n);
    assertEqualArrays(await ctx.upload(f32, [n], "f32").read(), f32, `f32 n=${n}`);
    const bits = f32ArrayToF16(f32);
    const t16 = ctx.upload(bits, [n], "f16");
    assertEqualArrays(await t16.read(), bits, `f16 n=${n}`);
    assertEqualArrays(await t16.readF32(), f16ArrayToF32(bits), `f16→f32 n=${n}`);
    const u = Uint32Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 0);
    assertEqualArrays(await ctx.upload(u, [n], "u32").read(), u, `u32 n=${n}`);
    const s = Int32Array.from({ length: n }, (_, i) => (i % 2 ? -1 : 1) * i * 7919);
    assertEqualArrays(await ctx.upload(s, [n], "i32").read(), s, `i32 n=${n}`);
  }
  // numbers are converted to the dtype (f16: rounded)
  assertEqualArrays(await ctx.upload([0.1, 65504, 1e6], [3], "f16").readF32(), f16ArrayToF32(f32ArrayToF16([0.1, 65504, 1e6])), "f16 from numbers");
});

test("shapes: zero-size, views, bad shapes and oversized writes are handled", async () => {
  const ctx = await gpu();
  const z = ctx.empty([0, 4], "f32", "zero");
  assert.is(z.numel, 0);
  assert.is((await z.read()).length, 0);
  const t = ctx.upload([1, 2, 3, 4, 5, 6], [2, 3], "f32", "m");
  assert.equal(t.view([3, 2]).shape, [3, 2]);
  assert.throws(() => t.view([4, 2]), (e: Error) => e instanceof ShapeError && /'m'/.test(e.message));
  assert.throws(() => ctx.empty([2, -1], "f32", "neg"), (e: Error) => e instanceof ShapeError && /neg/.test(e.message));
  assert.throws(() => ctx.write(t, new Float32Array(7)), (e: Error) => e instanceof ShapeError && /exceed/.test(e.message));
  assert.throws(() => ctx.empty([2 ** 20, 2 ** 20], "f32", "huge"), (e: Error) => e instanceof UnsupportedError && /huge.*maxBufferSize/.test(e.message));
  t.dispose();
  await assertRejects(() => t.read(), ShapeError, [/after dispose/], "use after dispose");
});

test("tensors above the storage binding limit: round trip and a windowed op", async () => {
  const limit = 64 * 1024; // forced: 16,384 f32 per binding
  await forDevices({ maxStorageBufferBindingSize: limit }, async (ctx) => {
    for (const [n, dtype] of [[100_003, "f32"], [70_001, "f16"]] as const) {
      const x = rng.fillUniform(n);
      const y = rng.fillUniform(n);
      const a = ctx.upload(x, [n], dtype, "a");
      const b = ctx.upload(y, [n], dtype, "b");
      assert.ok(a.byteLength > limit);
      const before = ctx.stats.dispatches;
      const out = await add(ctx, a, b);
      const windows = ctx.stats.dispatches - before;
      assert.ok(windows >= Math.ceil(a.byteLength / limit), `${dtype}: expected ≥ ${Math.ceil(a.byteLength / limit)} windows, got ${windows}`);
      const got = await out.readF32();
      const xa = await a.readF32();
      const ya = await b.readF32();
      for (let i = 0; i < n; i++) {
        const want = Math.fround(xa[i]! + ya[i]!);
        const tol = dtype === "f16" ? 2 ** -10 * Math.abs(want) + 1e-7 : 0;
        if (!(Math.abs(got[i]! - want) <= tol)) assert.unreachable(`${dtype} add window mismatch at ${i}: got ${got[i]}, want ${want}`);
      }
    }
  });
});

test("a kernel bound to more than the binding limit is refused, not silently truncated", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 64 * 1024 });
  const t = ctx.empty([20_000], "f32", "big");
  const kernel = await ctx.kernels.get(addVariant("f32"));
  assert.throws(
    () => ctx.dispatch(kernel, [t, t, t], new Uint8Array(16), [1]),
    (e: Error) => e instanceof UnsupportedError && /add_f32_wg256/.test(e.message) && /binding limit/.test(e.message),
  );
});

test("a size class never rounds a request past maxBufferSize", async () => {
  const ctx = await gpu();
  const { BufferPool } = await import("../src/gpu/pool.js");
  let created = 0;
  const fakeDevice = { createBuffer: (d: GPUBufferDescriptor) => ({ size: d.size, usage: d.usage, label: d.label ?? "", destroy() {} }) } as unknown as GPUDevice;
  const pool = new BufferPool(fakeDevice, () => created++, 4_294_967_295);
  const b = pool.acquire(4_096_000_000, 0x80, "big"); // sizeClass would give 4 GiB, one byte over the limit
  assert.ok(b.size >= 4_096_000_000 && b.size <= 4_294_967_295, `size ${b.size}`);
  assert.is(created, 1);
  assert.ok(ctx.limits.maxBufferSize > 0);
});

test("pool size classes bound the slack", () => {
  for (const n of [1, 255, 256, 257, 1 << 20, (1 << 20) + 1, 3_000_000, 123_456_789]) {
    const c = sizeClass(n);
    assert.ok(c >= n && c <= Math.max(256, n * 1.125 + 256), `sizeClass(${n}) = ${c}`);
  }
});

test.run();
