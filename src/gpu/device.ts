// Device acquisition: the one runtime-specific part of the GPU path.
//   Node:            Dawn through the `webgpu` npm package (loaded lazily, so browsers and Deno
//                    never import it).
//   Deno, browsers:  navigator.gpu.
// Requests the adapter's own values for the limits LLM kernels care about (a Dawn device gets the
// small WebGPU defaults otherwise) and the optional features shader-f16 and subgroups when the
// adapter has them. timestamp-query only with { profiling: true }: merely requesting it was
// reported to cost ~3x decode on Dawn/Metal (other runtimes' measurement), so no device pays for
// profiling it does not do.

import { GpuUnavailableError, UnsupportedError } from "../errors.js";
import { GpuContext, type AdapterDescription, type RuntimeLimits } from "./context.js";
import { defaultMemoryBudget } from "./budget.js";
import { HOST_WAIT_MODES, type HostWaitMode } from "./host-wait.js";

/** Features requested whenever the adapter offers them. */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ["shader-f16", "subgroups"];
/** Requested only by openDevice({ profiling: true }) (src/gpu/profiler.ts needs it). */
const PROFILING_FEATURE: GPUFeatureName = "timestamp-query";

/** Limits requested at the adapter's own values. */
const REQUESTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "maxBindingsPerBindGroup",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
] as const;

export interface OpenDeviceOptions {
  /** Features that must be present: a missing one throws UnsupportedError. */
  requireFeatures?: readonly GPUFeatureName[];
  /** Optional features not to request even if present (e.g. "subgroups", to test the portable path). */
  disableFeatures?: readonly GPUFeatureName[];
  /** A binding limit stricter than the device's, honoured by every op (tests of split tensors). */
  maxStorageBufferBindingSize?: number;
  /**
   * Offset alignments stricter than the device's (powers of two, e.g. 256 as browsers have): every
   * op aligns its windows to them and the context refuses a binding that is not (tests of a
   * browser's limits on a device with smaller ones, e.g. lavapipe).
   */
  minStorageBufferOffsetAlignment?: number;
  minUniformBufferOffsetAlignment?: number;
  powerPreference?: GPUPowerPreference;
  /** Dawn options for Node, e.g. ["enable-dawn-features=disable_robustness"]. Ignored elsewhere. */
  dawnOptions?: readonly string[];
  /** Use this GPU object instead of discovering one (embedding, tests). */
  gpu?: GPU;
  /** GPU memory budget in bytes (default: see src/gpu/budget.ts); allocations past it are refused. */
  memoryBudgetBytes?: number;
  /** Request timestamp-query for the Profiler (an adapter without it: UnsupportedError). Off by default. */
  profiling?: boolean;
  /**
   * How host waits for the GPU (GpuContext.hostWait, src/gpu/host-wait.ts); default: the
   * environment's ONEGEN_HOST_WAIT where set (paced | spin: A/B runs of any command), else "paced"
   * on Node + Dawn and "spin" elsewhere.
   */
  hostWait?: HostWaitMode;
}

const INSTALL_HINT =
  "install a GPU driver with Vulkan support, or the software driver: `bash scripts/setup-software-gpu.sh` " +
  "(Debian 12: Mesa 25 lavapipe from bookworm-backports; Debian's Mesa 22 is refused by Dawn)";

interface GpuProvider {
  gpu: GPU;
  backend: string;
  keepAlive: unknown;
}

async function findGpu(options: OpenDeviceOptions): Promise<GpuProvider> {
  if (options.gpu) return { gpu: options.gpu, backend: "injected", keepAlive: null };
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === "string";
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  if (nav?.gpu && (!isNode || isDeno)) return { gpu: nav.gpu, backend: "navigator.gpu", keepAlive: null };
  if (isNode && !isDeno) {
    // Dawn's Vulkan loader warns when XDG_RUNTIME_DIR is unset; harmless but noisy.
    const proc = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
    if (proc && proc.env.XDG_RUNTIME_DIR === undefined) proc.env.XDG_RUNTIME_DIR = "/tmp";
    const specifier = "webgpu"; // a variable, so bundlers for the browser leave it alone
    let mod: { create: (opts: string[]) => GPU; globals: Record<string, unknown> };
    try {
      mod = (await import(specifier)) as typeof mod;
    } catch (e) {
      throw new GpuUnavailableError(`cannot load the 'webgpu' package (Dawn for Node): ${(e as Error).message}`, "run `npm ci` in the project");
    }
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    const gpu = mod.create([...(options.dawnOptions ?? [])]);
    return { gpu, backend: "node-dawn", keepAlive: gpu };
  }
  if (nav?.gpu) return { gpu: nav.gpu, backend: "navigator.gpu", keepAlive: null };
  throw new GpuUnavailableError("this JavaScript runtime has no WebGPU (navigator.gpu is missing)", "use a browser with WebGPU, Deno 2, or Node 20+ with the 'webgpu' package");
}

/** Opens a GPU device with the limits and features LLM kernels need, and reports what it got. */
export async function openDevice(options: OpenDeviceOptions = {}): Promise<GpuContext> {
  const given = options.memoryBudgetBytes;
  if (given !== undefined && !(given > 0)) throw new UnsupportedError(`memoryBudgetBytes must be a positive number of bytes, got ${given}`);
  if (options.hostWait !== undefined && !HOST_WAIT_MODES.includes(options.hostWait)) {
    throw new UnsupportedError(`openDevice: hostWait must be one of ${HOST_WAIT_MODES.join(", ")}, got '${String(options.hostWait)}'`);
  }
  const envWait = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.ONEGEN_HOST_WAIT;
  if (envWait !== undefined && envWait !== "" && !HOST_WAIT_MODES.includes(envWait as HostWaitMode)) {
    throw new UnsupportedError(`ONEGEN_HOST_WAIT must be one of ${HOST_WAIT_MODES.join(", ")}, got '${envWait}'`);
  }
  const storageAlign = alignmentOption(options, "minStorageBufferOffsetAlignment");
  const uniformAlign = alignmentOption(options, "minUniformBufferOffsetAlignment");
  const provider = await findGpu(options);
  let adapter: GPUAdapter | null;
  try {
    adapter = await provider.gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : undefined);
  } catch (e) {
    throw new GpuUnavailableError(`requesting a WebGPU adapter failed: ${(e as Error).message}`, INSTALL_HINT);
  }
  if (!adapter) throw new GpuUnavailableError("no WebGPU adapter found (no usable Vulkan/Metal/D3D12 driver)", INSTALL_HINT);

  const have = new Set<string>(adapter.features);
  for (const f of options.requireFeatures ?? []) {
    if (!have.has(f)) {
      throw new UnsupportedError(`the GPU adapter lacks the required feature '${f}' (it has: ${[...have].sort().join(", ") || "none"})`);
    }
  }
  const disabled = new Set<string>(options.disableFeatures ?? []);
  const wanted = new Set<GPUFeatureName>([...(options.requireFeatures ?? [])]);
  for (const f of OPTIONAL_FEATURES) if (have.has(f) && !disabled.has(f)) wanted.add(f);
  if (options.profiling) {
    if (!have.has(PROFILING_FEATURE)) throw new UnsupportedError(`profiling needs the adapter feature '${PROFILING_FEATURE}', which this adapter lacks`);
    wanted.add(PROFILING_FEATURE);
  }

  const requiredLimits: Record<string, number> = {};
  const adapterLimits = adapter.limits as unknown as Record<string, number>;
  for (const name of REQUESTED_LIMITS) {
    const v = adapterLimits[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: [...wanted], requiredLimits, label: "onegen" });
  } catch (e) {
    throw new GpuUnavailableError(`requesting a device from the adapter failed: ${(e as Error).message}`, INSTALL_HINT);
  }

  const dl = device.limits;
  const limits: RuntimeLimits = {
    maxStorageBufferBindingSize: Math.min(dl.maxStorageBufferBindingSize, options.maxStorageBufferBindingSize ?? Infinity),
    maxBufferSize: dl.maxBufferSize,
    maxComputeWorkgroupStorageSize: dl.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: dl.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: dl.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupsPerDimension: dl.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: dl.maxStorageBuffersPerShaderStage,
    maxUniformBufferBindingSize: dl.maxUniformBufferBindingSize,
    minStorageBufferOffsetAlignment: Math.max(dl.minStorageBufferOffsetAlignment, storageAlign),
    minUniformBufferOffsetAlignment: Math.max(dl.minUniformBufferOffsetAlignment, uniformAlign),
  };
  if (options.maxStorageBufferBindingSize !== undefined && options.maxStorageBufferBindingSize % limits.minStorageBufferOffsetAlignment !== 0) {
    device.destroy();
    throw new UnsupportedError(`maxStorageBufferBindingSize override ${options.maxStorageBufferBindingSize} must be a multiple of ${limits.minStorageBufferOffsetAlignment}`);
  }
  const info = adapter.info;
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unknown adapter";
  const adapterDesc: AdapterDescription = {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description,
    backend: provider.backend,
    isSoftware: /llvmpipe|lavapipe|swiftshader|software|cpu/i.test(description),
    features: [...have].sort(),
    limits: Object.fromEntries(REQUESTED_LIMITS.flatMap((name) => (typeof adapterLimits[name] === "number" ? [[name, adapterLimits[name]!]] : []))),
    ...(typeof (info as { subgroupMinSize?: unknown }).subgroupMinSize === "number" ? { subgroupMinSize: (info as { subgroupMinSize: number }).subgroupMinSize } : {}),
  };
  const ctx = new GpuContext(device, new Set<string>(device.features), limits, adapterDesc, provider.keepAlive);
  ctx.hostWait = options.hostWait ?? (envWait ? (envWait as HostWaitMode) : provider.backend === "node-dawn" ? "paced" : "spin");
  if (given !== undefined) ctx.memoryBudget = { bytes: given, source: "given" };
  else ctx.memoryBudget = await defaultMemoryBudget(adapterDesc.isSoftware);
  return ctx;
}

function alignmentOption(options: OpenDeviceOptions, name: "minStorageBufferOffsetAlignment" | "minUniformBufferOffsetAlignment"): number {
  const v = options[name];
  if (v === undefined) return 0;
  if (!Number.isInteger(v) || v < 4 || (v & (v - 1)) !== 0) throw new UnsupportedError(`openDevice: ${name} override ${v} must be a power of two ≥ 4`);
  return v;
}

/**
 * The device profile of a browser's CPU adapter (Chromium's SwiftShader): no shader-f16 and
 * 256-byte offset alignments. Opening a lavapipe device with these options makes it a true
 * no-f16 device (the feature is simply not requested) whose context enforces the alignments, so
 * the library's tests cover the browser's data paths in Node too.
 */
export const BROWSER_LIKE: Readonly<OpenDeviceOptions> = Object.freeze({
  disableFeatures: ["shader-f16"] as readonly GPUFeatureName[],
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
});

/** A one-paragraph summary of what a context got, for CLIs and benchmark reports. */
export function describeContext(ctx: GpuContext): Record<string, unknown> {
  return {
    adapter: ctx.adapter.description,
    backend: ctx.adapter.backend,
    software: ctx.adapter.isSoftware,
    features: [...ctx.features].filter((f) => OPTIONAL_FEATURES.includes(f as GPUFeatureName) || f === PROFILING_FEATURE).sort(),
    limits: { ...ctx.limits },
    memoryBudget: { bytes: ctx.memoryBudget.bytes, source: ctx.memoryBudget.source },
  };
}
