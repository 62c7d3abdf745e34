import { test } from "uvu";
import * as assert from "uvu/assert";
import { openDevice } from "../src/gpu/device.js";
import { DeviceLostError, GpuUnavailableError, UnsupportedError } from "../src/errors.js";
import { gpu, runtimeAdapter } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";

test("opens a real adapter with the LLM-relevant limits at the adapter's values", async () => {
  const ctx = await gpu();
  const d = ctx.device.limits;
  // WebGPU defaults are 256 invocations and a 256 MiB maxBufferSize; the adapter offers more.
  assert.ok(d.maxComputeInvocationsPerWorkgroup > 256, `maxComputeInvocationsPerWorkgroup ${d.maxComputeInvocationsPerWorkgroup}`);
  assert.ok(d.maxBufferSize > 256 * 2 ** 20, `maxBufferSize ${d.maxBufferSize}`);
  assert.ok(d.maxStorageBufferBindingSize >= 128 * 2 ** 20);
  assert.is(ctx.limits.maxStorageBufferBindingSize, d.maxStorageBufferBindingSize);
  assert.ok(ctx.adapter.description.length > 0);
  // The software GPU in CI (Mesa 25 lavapipe) has all three optional features; they must be requested.
  for (const f of ["shader-f16", "timestamp-query"]) assert.ok(ctx.features.has(f), `feature ${f} not enabled`);
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
