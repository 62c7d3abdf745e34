import { test } from "uvu";
import * as assert from "uvu/assert";
import { browserLike, forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { KernelRegistry } from "../src/gpu/kernels.js";
import { preprocessWgsl } from "../src/gpu/wgsl.js";
import { GpuValidationError, ShapeError, UnsupportedError } from "../src/errors.js";
import { add, addReference, addVariant } from "../src/ops/elementwise.js";
import { Profiler } from "../src/gpu/profiler.js";
import { Rng } from "../src/util/rng.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { f32ArrayToF16, f16ArrayToF32 } from "../src/util/f16.js";

test("preprocessor: #if/#else/#endif, negation, nesting, substitution, and loud errors", () => {
  const src = "a\n#if X\nx{{N}}\n#if !Y\nnoty\n#else\ny\n#endif\n#else\nnotx\n#endif\nb";
  const lines = (s: string) => s.split("\n").filter(Boolean);
  assert.equal(lines(preprocessWgsl(src, { X: true, Y: false, N: 3 }, "t")), ["a", "x3", "noty", "b"]);
  assert.equal(lines(preprocessWgsl(src, { X: false, Y: true, N: 3 }, "t")), ["a", "notx", "b"]);
  assert.is(preprocessWgsl(src, { X: true, Y: true, N: 1 }, "t").split("\n").length, src.split("\n").length, "line numbers kept");
  assert.throws(() => preprocessWgsl("#if Z\n#endif", {}, "t"), /'Z' is not defined/);
  assert.throws(() => preprocessWgsl("{{Q}}", {}, "t"), /t\.wgsl:1: \{\{Q\}\}/);
  assert.throws(() => preprocessWgsl("#if X\n", { X: true }, "t"), /without #endif/);
  assert.throws(() => preprocessWgsl("#endif\n", {}, "t"), /without #if/);
  assert.throws(() => preprocessWgsl("#define X\n", {}, "t"), /unknown directive/);
  // an included file's enable directive goes before everything, on line 1 (line numbers kept)
  const inc = { e: "#if F16\nenable f16;\n#endif\nfn e() {}" };
  const withEnable = preprocessWgsl("// head\n#include e\nfn f() {}", { F16: true }, "t", inc).split("\n");
  assert.is(withEnable[0], "enable f16; // head");
  assert.is(withEnable[2], "fn f() {}");
  assert.not.ok(withEnable.slice(1).some((l) => l.includes("enable")), "enable appears once");
  assert.is(preprocessWgsl("// head\n#include e\nfn f() {}", { F16: false }, "t", inc).split("\n")[0], "// head");
});

test("an invalid kernel raises GpuValidationError naming the kernel and the line", async () => {
  const ctx = await gpu();
  const reg = new KernelRegistry(ctx.device, ctx.features, {
    broken: "@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = undefined_thing;\n}\n",
  });
  const variant = { file: "broken", name: "broken_v1", defines: {}, bindings: [] };
  await assertRejects(() => reg.get(variant), GpuValidationError, [/broken_v1/, /broken\.wgsl:3/, /undefined_thing/], "compile error");
  // a failed variant is not cached as a success: asking again fails again
  await assertRejects(() => reg.get(variant), GpuValidationError, [/broken_v1/], "compile error again");
  // a layout mismatch (binding declared but kernel expects uniform) is also named
  const reg2 = new KernelRegistry(ctx.device, ctx.features, {
    mismatch: "@group(0) @binding(0) var<uniform> u: vec4<u32>;\n@compute @workgroup_size(1)\nfn main() { _ = u.x; }\n",
  });
  await assertRejects(
    () => reg2.get({ file: "mismatch", name: "mismatch_v1", defines: {}, bindings: ["read_write"] }),
    GpuValidationError,
    [/mismatch_v1/],
    "layout mismatch",
  );
  await assertRejects(() => reg.get({ file: "nope", name: "nope_v1", defines: {}, bindings: [] }), UnsupportedError, [/kernels\/nope\.wgsl/], "unknown file");
});

test("pipelines are created once per variant and cached", async () => {
  const ctx = await gpu();
  const k1 = await ctx.kernels.get(addVariant("f32"));
  const k2 = await ctx.kernels.get(addVariant("f32"));
  assert.ok(k1 === k2);
  assert.ok(ctx.kernels.names().includes("add_f32_wg256"));
  assert.throws(() => ctx.kernels.get({ ...addVariant("f32"), defines: { F16: false, T: "f32", WG: 64 } }), /two different variants/);
});

test("a variant that needs a missing feature is refused, not substituted; f16 ops pick the packed path", async () => {
  const ctx = await gpu({ disableFeatures: ["shader-f16"] });
  assert.not.ok(ctx.hasF16);
  // the native f16 kernel, asked for explicitly, throws instead of running the packed one
  await assertRejects(() => ctx.kernels.get(addVariant("f16")), UnsupportedError, [/add_f16_wg256/, /shader-f16/], "native f16 add without shader-f16");
  // the op itself runs the packed-pairs variant, and its name says so
  const a = ctx.upload([1, 2], [2], "f16");
  assert.equal(Array.from(f16ArrayToF32((await (await add(ctx, a, a)).read()) as Uint16Array)), [2, 4]);
  assert.ok(ctx.kernels.names().includes("add_f16p_wg256"), ctx.kernels.names().join(","));
  assert.not.ok(ctx.kernels.names().includes("add_f16_wg256"));
});

test("preprocessor: #include appends a shared file once, keeps line numbers, refuses unknown and nested includes", () => {
  const src = "a\n#include lib\n#if X\n#include lib\n#endif\nb";
  const out = preprocessWgsl(src, { X: true, N: 2 }, "t", { lib: "fn f() -> u32 { return {{N}}u; }" });
  assert.equal(out.split("\n").slice(0, 6), ["a", "", "", "", "", "b"], "line numbers of the including file kept");
  assert.is(out.split("\n").filter((l) => l.includes("fn f()")).length, 1, "included once");
  assert.ok(out.includes("return 2u;"), "defines apply inside the included file");
  assert.throws(() => preprocessWgsl("#include nope", {}, "t", {}), /t\.wgsl:1: #include nope/);
  assert.throws(() => preprocessWgsl("#include lib", {}, "t", { lib: "#include lib" }), /do not nest/);
});

test("the browser-like profile: no shader-f16, 256-byte alignments, and a misaligned window is refused naming the kernel", async () => {
  const ctx = await browserLike();
  assert.not.ok(ctx.hasF16);
  assert.is(ctx.limits.minStorageBufferOffsetAlignment, 256);
  assert.is(ctx.limits.minUniformBufferOffsetAlignment, 256);
  const a = ctx.upload(new Float32Array(128), [128], "f32", "a");
  const kernel = await ctx.kernels.get(addVariant("f32"));
  const params = new Uint8Array(16);
  assert.throws(
    () => ctx.dispatch(kernel, [{ tensor: a, byteOffset: 64, byteSize: 64 }, a, ctx.empty([16], "f32", "o")], params, [1]),
    (e: Error) => e instanceof GpuValidationError && /add_f32_wg256/.test(e.message) && /byte 64/.test(e.message) && /256/.test(e.message),
  );
  // many dispatches in one batch: uniform chunks at 256-byte offsets stay valid
  const x = ctx.upload([1, 2, 3], [3], "f32", "x");
  let acc: Tensor = x;
  for (let i = 0; i < 300; i++) acc = await add(ctx, acc, x);
  assert.equal(Array.from(await acc.read()), [301, 602, 903]);
});

test("add: CPU reference agreement over awkward sizes, f32 and f16; NaN-prefilled outputs", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(11);
    for (const n of [1, 3, 255, 256, 257, 4097, 65_535 * 256 + 3]) {
      const x = rng.fillUniform(n, -4, 4);
      const y = rng.fillUniform(n, -4, 4);
      const out = ctx.upload(new Float32Array(n).fill(NaN), [n], "f32", "out");
      await add(ctx, ctx.upload(x, [n], "f32"), ctx.upload(y, [n], "f32"), out);
      assertClose(await out.read(), addReference(x, y), { atol: 0, rtol: 0 }, `add f32 n=${n}`); // one f32 rounding: exact
      if (n > 100_000) continue;
      const xh = f32ArrayToF16(x), yh = f32ArrayToF16(y);
      const outh = ctx.upload(new Uint16Array(n).fill(0x7e00), [n], "f16", "out16"); // f16 NaN
      await add(ctx, ctx.upload(xh, [n], "f16"), ctx.upload(yh, [n], "f16"), outh);
      // the sum is exact in f32 and rounded once to f16, as the reference does: bit-exact
      assertClose(f16ArrayToF32(await outh.read()), f16ArrayToF32(addReference(xh, yh)), { atol: 0, rtol: 0 }, `add f16 n=${n}`);
    }
    await assertRejects(async () => add(ctx, ctx.empty([3], "f32", "p"), ctx.empty([4], "f32", "q")), ShapeError, [/'q'/, /\[4\]/, /\[3\]/], "shape mismatch");
  });
});

test("GPU validation errors are thrown with the kernel's name, never returned as zeros", async () => {
  const ctx = await gpu({ disableFeatures: ["timestamp-query"] }); // a context of its own
  const a = ctx.upload([1, 2, 3], [3], "f32", "aliased");
  // out aliases a read-only input: invalid in WebGPU; refused before encoding, naming the kernel
  await assertRejects(() => add(ctx, a, a, a), GpuValidationError, [/add_f32_wg256/, /'aliased'/, /writable/], "aliasing");
  // an error Dawn finds only when the batch is finished (a 5-byte copy) is thrown at the next sync
  const b = ctx.upload([1, 2], [2], "f32", "b");
  await add(ctx, b, b);
  ctx.copy(b.buffer, 0, a.buffer, 0, 5);
  await assertRejects(() => a.read(), GpuValidationError, [/kernels \[add_f32_wg256\]/, /multiple of 4/i], "unaligned copy");
  // the context stays usable afterwards
  assert.equal(Array.from(await (await add(ctx, b, b)).read()), [2, 4]);
});

test("profiler: per-kernel GPU times from timestamp queries", async () => {
  // timestamp-query is requested only when profiling (requesting it can slow decode on some backends)
  const plain = await gpu();
  assert.not.ok(plain.hasTimestamps, "a default device has no timestamp-query");
  assert.throws(() => new Profiler(plain), /profiling: true/);
  const ctx = await gpu({ profiling: true, dawnOptions: ["disable-dawn-features=timestamp_quantization"] });
  assert.ok(ctx.hasTimestamps);
  const a = ctx.upload(new Float32Array(1 << 16).fill(1), [1 << 16], "f32");
  const prof = new Profiler(ctx);
  ctx.profiler = prof;
  try {
    for (let i = 0; i < 5; i++) {
      await add(ctx, a, a);
      ctx.submit(); // several batches: each resolves its queries
    }
    const timings = await prof.collect();
    const t = timings.find((x) => x.kernel === "add_f32_wg256");
    assert.ok(t, `timings: ${JSON.stringify(timings)}`);
    assert.is(t.calls, 5);
    assert.ok(t.totalMs > 0 && t.totalMs < 10_000, `totalMs ${t.totalMs}`);
    assert.throws(() => new Profiler(ctx, 4096), /at most 4,096 timestamps/);
  } finally {
    ctx.profiler = null;
    prof.destroy();
  }
});

test("profiler: dispatches past its capacity are counted as untimed, not summed", async () => {
  const ctx = await gpu({ profiling: true, dawnOptions: ["disable-dawn-features=timestamp_quantization"] });
  const a = ctx.upload(new Float32Array(1024).fill(1), [1024], "f32");
  const prof = new Profiler(ctx, 3);
  ctx.profiler = prof;
  try {
    for (let i = 0; i < 5; i++) await add(ctx, a, a);
    assert.is(prof.untimed, 2, "two of five dispatches found the 3 slots full");
    const t = (await prof.collect()).find((x) => x.kernel === "add_f32_wg256");
    assert.is(t?.calls, 3, "only the timed dispatches are summed");
    assert.is(prof.untimed, 0, "collect() starts a new interval");
  } finally {
    ctx.profiler = null;
    prof.destroy();
    a.dispose();
  }
});

test.run();
