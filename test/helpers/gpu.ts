// One shared GPU context per test process (device creation costs ~100 ms on lavapipe), plus
// contexts with special options. All are destroyed by scripts/run-tests.mjs after the run.
// There is deliberately no "skip if no GPU": CI installs the software GPU, and a missing adapter
// must fail the run.
//
// devices(): the device profiles every kernel test with f16 data loops over — the default device
// (shader-f16 where the adapter has it: lavapipe does) and the browser-like profile (BROWSER_LIKE:
// shader-f16 not requested, 256-byte offset alignments enforced by the context), so the packed
// f16 paths and the browser's alignment are tested on lavapipe too. In a browser both are the
// browser's own device (no f16 there), the second with its alignment raised if smaller.
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

/** The default context and the browser-like one (both with `options`), for tests to loop over. */
export async function devices(options: OpenDeviceOptions = {}): Promise<TestDevice[]> {
  return [
    { name: "default", ctx: await gpu(options) },
    { name: "browser-like", ctx: await browserLike(options) },
  ];
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
