import { test } from "uvu";
import * as assert from "uvu/assert";
import { OPTIONAL_FEATURES, openDevice } from "../src/gpu/device.js";
import { DeviceLostError, GpuUnavailableError, UnsupportedError } from "../src/errors.js";
import { gpu, runtimeAdapter } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";

test("opens a real adapter with the LLM-relevant limits at the adapter's values and its optional features", async () => {
  const ctx = await gpu();
  const d = ctx.device.limits as unknown as Record<string, number>;
  // Whatever the adapter (lavapipe: 1024 invocations, 2 GiB buffers, shader-f16; a browser's
  // SwiftShader: 256 invocations, 1 GiB, no shader-f16), the device gets the adapter's own values,
  // not WebGPU's defaults (256 MiB maxBufferSize, 128 MiB bindings), and every optional feature it has.
  const names = Object.keys(ctx.adapter.limits);
  assert.ok(names.includes("maxBufferSize") && names.includes("maxStorageBufferBindingSize") && names.includes("maxComputeInvocationsPerWorkgroup"), names.join(", "));
  for (const name of names) assert.is(d[name], ctx.adapter.limits[name], `device limit ${name}`);
  assert.ok(d.maxStorageBufferBindingSize! >= 128 * 2 ** 20);
  assert.is(ctx.limits.maxStorageBufferBindingSize, d.maxStorageBufferBindingSize);
  assert.ok(ctx.adapter.description.length > 0);
  for (const f of OPTIONAL_FEATURES) assert.is(ctx.features.has(f), ctx.adapter.features.includes(f), `optional feature ${f}: adapter has it = device has it`);
});

test("offset alignment overrides: raised above the device's, never lowered, powers of two only", async () => {
  const ctx = await gpu();
  const raised = await gpu({ minStorageBufferOffsetAlignment: 512, minUniformBufferOffsetAlignment: 512 });
  assert.is(raised.limits.minStorageBufferOffsetAlignment, Math.max(512, ctx.device.limits.minStorageBufferOffsetAlignment));
  assert.is(raised.limits.minUniformBufferOffsetAlignment, Math.max(512, ctx.device.limits.minUniformBufferOffsetAlignment));
  const lower = await gpu({ minStorageBufferOffsetAlignment: 4 });
  assert.is(lower.limits.minStorageBufferOffsetAlignment, ctx.device.limits.minStorageBufferOffsetAlignment, "an override never lowers the device's alignment");
  await assertRejects(() => openDevice({ minStorageBufferOffsetAlignment: 100 }), UnsupportedError, [/minStorageBufferOffsetAlignment/, /power of two/], "not a power of two");
  // a forced binding limit must be a multiple of the raised alignment
  await assertRejects(() => openDevice({ minStorageBufferOffsetAlignment: 1024, maxStorageBufferBindingSize: 65536 + 512 }), UnsupportedError, [/multiple of 1024/], "binding limit vs alignment");
});

test("no adapter: an error that says what to install", async () => {
  const fakeGpu = { requestAdapter: async () => null } as unknown as GPU;
  await assertRejects(() => openDevice({ gpu: fakeGpu }), GpuUnavailableError, [/no WebGPU adapter/, /setup-software-gpu\.sh/], "null adapter");
  const throwing = { requestAdapter: async () => { throw new Error("driver exploded"); } } as unknown as GPU;
  await assertRejects(() => openDevice({ gpu: throwing }), GpuUnavailableError, [/driver exploded/], "throwing adapter");
});

test("a required feature the adapter lacks is refused by name", async () => {
  // A feature this adapter lacks (lavapipe has no ASTC; SwiftShader has ASTC but no shader-f16).
  const adapter = await runtimeAdapter();
  const candidates: GPUFeatureName[] = ["texture-compression-astc", "shader-f16", "texture-compression-etc2", "dual-source-blending"];
  const missing = candidates.find((f) => !adapter.features.has(f));
  if (!missing) assert.unreachable(`the adapter has every candidate feature (${candidates.join(", ")}): add one it lacks`);
  await assertRejects(
    () => openDevice({ requireFeatures: [missing!] }),
    UnsupportedError,
    [new RegExp(`'${missing}'`)],
    "missing feature",
  );
});

test("disableFeatures leaves optional features off; forced binding limit is reported", async () => {
  const ctx = await gpu({ disableFeatures: ["subgroups"], maxStorageBufferBindingSize: 65536 });
  assert.not.ok(ctx.hasSubgroups);
  assert.is(ctx.limits.maxStorageBufferBindingSize, 65536);
  await assertRejects(() => openDevice({ maxStorageBufferBindingSize: 1000 }), UnsupportedError, [/multiple of/], "unaligned override");
});

test("a destroyed context refuses work with DeviceLostError", async () => {
  const ctx = await openDevice();
  const t = ctx.upload([1, 2, 3], [3], "f32", "x");
  assert.equal(Array.from(await t.read()), [1, 2, 3]);
  ctx.destroy();
  await assertRejects(() => t.read(), DeviceLostError, [/destroyed/], "read after destroy");
  await assertRejects(() => ctx.empty([4], "f32"), DeviceLostError, [/destroyed/], "alloc after destroy");
});

test.run();
