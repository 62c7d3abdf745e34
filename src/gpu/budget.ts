// The GPU memory budget: how many bytes of buffers this runtime lets itself allocate on a device.
// WebGPU does not report a device's memory size, so the budget is defined here:
//   - given: openDevice({ memoryBudgetBytes }) / the CLI's --gpu-memory SIZE;
//   - a software adapter (lavapipe, SwiftShader: "GPU" buffers are host memory): the host memory
//     this process can still use (the least of MemAvailable, the cgroup limit and ulimit -v; see
//     hostAvailableBytes; else os.freemem()) less a margin of max(512 MiB, 10 %) for the process
//     itself and the driver's staging copies;
//   - a hardware adapter: DEFAULT_GPU_BUDGET_BYTES (8 GiB, a common discrete-GPU size), since
//     nothing reports the real one; raise it with --gpu-memory / memoryBudgetBytes;
//   - outside Node/Deno (browsers) the same default.
// The buffer pool refuses an allocation that would take the live buffers past the budget
// (GpuOutOfMemoryError naming the tensor, the budget and what holds the memory), and the model
// loader adds up weights + KV cache against it before anything is uploaded.

export interface MemoryBudget {
  /** Bytes of GPU buffers allowed (Infinity: no budget). */
  bytes: number;
  /** Where the figure comes from, for messages ("host MemAvailable 23.2 GiB less 2.3 GiB margin"). */
  source: string;
}

export const DEFAULT_GPU_BUDGET_BYTES = 8 * 1024 ** 3;
const MIN_HOST_MARGIN = 512 * 1024 ** 2;

function gib(n: number): string {
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** What bounds the host memory this process can still use, and by how much. */
interface HostMemory {
  bytes: number;
  /** "MemAvailable", "cgroup memory limit" or "address-space limit (ulimit -v)". */
  bound: string;
}

type ReadText = (p: string) => Promise<string | null>;

/**
 * The host memory this process can still use (Node/Deno), or null where it cannot be read: the
 * least of /proc/meminfo's MemAvailable, the cgroup's memory limit less its usage (v2 memory.max,
 * v1 memory.limit_in_bytes: a container's MemAvailable is the host's), and the address-space
 * limit (ulimit -v, /proc/self/limits) less the process's size. lavapipe's buffers are host
 * memory, and it crashes (SIGSEGV, measured under ulimit -v) rather than report an allocation it
 * cannot back, so every one of these bounds must hold before a buffer is made.
 */
async function hostAvailableBytes(): Promise<HostMemory | null> {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (typeof proc?.versions?.node !== "string") return null;
  let read: ReadText;
  try {
    const fsName = "node:fs/promises"; // variables, so browser bundlers leave them alone
    const fs = (await import(fsName)) as { readFile(p: string, enc: "utf8"): Promise<string> };
    read = (p) => fs.readFile(p, "utf8").catch(() => null);
  } catch {
    return null;
  }
  const bounds: HostMemory[] = [];
  const meminfo = await read("/proc/meminfo");
  const avail = meminfo ? /^MemAvailable:\s+(\d+)\s+kB/m.exec(meminfo) : null;
  if (avail) bounds.push({ bytes: Number(avail[1]) * 1024, bound: "host MemAvailable" });
  const cg = await cgroupAvailable(read);
  if (cg !== null) bounds.push({ bytes: cg, bound: "cgroup memory limit" });
  const limits = await read("/proc/self/limits");
  const as = limits ? /^Max address space\s+(\d+)/m.exec(limits) : null;
  if (as) {
    const status = await read("/proc/self/status");
    const vm = status ? /^VmSize:\s+(\d+)\s+kB/m.exec(status) : null;
    bounds.push({ bytes: Math.max(0, Number(as[1]) - (vm ? Number(vm[1]) * 1024 : 0)), bound: "address-space limit (ulimit -v)" });
  }
  if (bounds.length === 0) {
    try {
      const osName = "node:os";
      const os = (await import(osName)) as { freemem(): number };
      return { bytes: os.freemem(), bound: "free memory" };
    } catch {
      return null;
    }
  }
  return bounds.reduce((a, b) => (b.bytes < a.bytes ? b : a));
}

/** The cgroup's memory limit less its usage, or null without a (finite) limit. `read`: a file's text or null. */
export async function cgroupAvailable(read: ReadText): Promise<number | null> {
  const self = (await read("/proc/self/cgroup")) ?? "";
  const v2 = /^0::(\S*)$/m.exec(self)?.[1] ?? "";
  const v1 = /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(\S*)$/m.exec(self)?.[1] ?? "";
  const tries: [string, string][] = [
    [`/sys/fs/cgroup${v2}/memory.max`, `/sys/fs/cgroup${v2}/memory.current`],
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"],
    [`/sys/fs/cgroup/memory${v1}/memory.limit_in_bytes`, `/sys/fs/cgroup/memory${v1}/memory.usage_in_bytes`],
    ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"],
  ];
  for (const [limitFile, usageFile] of tries) {
    const limit = (await read(limitFile))?.trim();
    if (limit === undefined) continue;
    if (limit === "max" || !/^\d+$/.test(limit) || Number(limit) >= 2 ** 60) return null; // no limit
    const usage = Number((await read(usageFile))?.trim() ?? "0");
    return Math.max(0, Number(limit) - (Number.isFinite(usage) ? usage : 0));
  }
  return null;
}

/** The budget for an adapter when the caller gives none (see the file header). */
export async function defaultMemoryBudget(isSoftware: boolean): Promise<MemoryBudget> {
  if (isSoftware) {
    const host = await hostAvailableBytes();
    if (host !== null) {
      const margin = Math.max(MIN_HOST_MARGIN, Math.floor(host.bytes / 10));
      return { bytes: Math.max(0, host.bytes - margin), source: `software adapter: ${host.bound} ${gib(host.bytes)} less a ${gib(margin)} margin` };
    }
  }
  return { bytes: DEFAULT_GPU_BUDGET_BYTES, source: `default for ${isSoftware ? "an adapter whose host memory cannot be read" : "a hardware adapter (WebGPU reports no memory size)"}; set it with --gpu-memory` };
}

/** Parses a size such as "8G", "8GiB", "512M", "1.5g", "1048576" (bytes) into bytes, or null. */
export function parseByteSize(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  if (!m) return null;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const v = Math.floor(Number(m[1]) * mult);
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}
