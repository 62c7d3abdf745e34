// One shared GPU context per test process (device creation costs ~100 ms on lavapipe), plus
// contexts with special options. All are destroyed by scripts/run-tests.mjs after the run.
// There is deliberately no "skip if no GPU": CI installs the software GPU, and a missing adapter
// must fail the run.
//
// devices(): the device profiles every kernel test with f16 data loops over — the default device
// (shader-f16 where the adapter has it: lavapipe does) and the browser-like profile (BROWSER_LIKE:
// shader-f16 not requested, 256-byte offset alignments enforced by the context), so the packed
// f16 paths and the browser's alignment are tested on lavapipe too. In a browser whose adapter has
// no f16 and 256-byte alignments (Chromium's SwiftShader) the default device is that profile and
// is the only one.
import { BROWSER_LIKE, openDevice, type OpenDeviceOptions } from "../../src/gpu/device.js";
import type { GpuContext } from "../../src/gpu/context.js";

const contexts = new Map<string, Promise<GpuContext>>();

export function gpu(options: OpenDeviceOptions = {}): Promise<GpuContext> {
  const key = JSON.stringify(options);
  let p = contexts.get(key);
  if (!p) contexts.set(key, (p = openDevice(options)));
  return p;
}

/** The browser-like context (no shader-f16, 256-byte alignments), with extra options. */
export function browserLike(options: OpenDeviceOptions = {}): Promise<GpuContext> {
  return gpu({ ...options, ...BROWSER_LIKE });
}

export interface TestDevice {
  /** "default" or "browser-like": name it in assertion messages. */
  name: string;
  ctx: GpuContext;
}

/**
 * The default context and the browser-like one (both with `options`), for tests to loop over.
 * Where the default device already is that profile (a browser's CPU adapter: no shader-f16,
 * alignments of 256 or more) it is the only one, named "browser-like": a second device of the
 * same profile would run every case again and compile every kernel again for nothing (it doubled
 * the browser suites' time).
 */
export async function devices(options: OpenDeviceOptions = {}): Promise<TestDevice[]> {
  const ctx = await gpu(options);
  if (isBrowserLike(ctx)) return [{ name: "browser-like", ctx }];
  return [
    { name: "default", ctx },
    { name: "browser-like", ctx: await browserLike(options) },
  ];
}

/** Whether a context already has the browser-like profile (BROWSER_LIKE): no shader-f16, offset alignments ≥ 256. */
export function isBrowserLike(ctx: GpuContext): boolean {
  return !ctx.features.has("shader-f16") && ctx.limits.minStorageBufferOffsetAlignment >= 256 && ctx.limits.minUniformBufferOffsetAlignment >= 256;
}

/**
 * Runs `body` on each of devices(options) in turn; a failure names the device it happened on
 * (its message is prefixed with "[browser-like] ").
 */
export async function forDevices(options: OpenDeviceOptions, body: (ctx: GpuContext, device: string) => Promise<void>): Promise<void> {
  for (const { name, ctx } of await devices(options)) {
    try {
      await body(ctx, name);
    } catch (e) {
      if (e instanceof Error) e.message = `[${name}] ${e.message}`;
      throw e;
    }
  }
}

/** Whether this test runs in a browser page (scripts/run-browser-tests.mjs) rather than Node or Deno. */
export const IN_BROWSER = typeof (globalThis as { document?: unknown }).document !== "undefined";

/**
 * The quantized formats a test's matrix runs: both in Node (lavapipe, both device profiles); in a
 * browser one, named by the test (each format's WGSL is the same code with one define changed,
 * and the full matrix made gemv-step the browser suites' slowest file: 101–119 s of 270–373 s on
 * 2 cores), so the browser suites still run each format somewhere.
 */
export function quantFormats(browserPick: "q8_0" | "q4_0"): readonly ("q8_0" | "q4_0")[] {
  return IN_BROWSER ? [browserPick] : ["q8_0", "q4_0"];
}

export async function destroyAllContexts(): Promise<void> {
  for (const p of contexts.values()) (await p.catch(() => null))?.destroy();
  contexts.clear();
}

let dawn: GPU | null = null; // Node: a Dawn instance of our own, kept alive for the process

/**
 * The adapter this runtime offers (navigator.gpu in a browser or Deno, Dawn in Node), requested
 * outside openDevice, so tests can compare what openDevice got against the adapter's own limits
 * and features instead of one driver's values (lavapipe in Node, SwiftShader in Chromium).
 */
export async function runtimeAdapter(): Promise<GPUAdapter> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string";
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  let provider: GPU | undefined = nav?.gpu;
  if (isNode && !isDeno) {
    if (!dawn) {
      const specifier = "webgpu"; // a variable, so the browser bundle leaves it alone
      dawn = ((await import(specifier)) as { create: (opts: string[]) => GPU }).create([]);
    }
    provider = dawn;
  }
  const adapter = await provider?.requestAdapter();
  if (!adapter) throw new Error("runtimeAdapter: this runtime gives no WebGPU adapter");
  return adapter;
}
