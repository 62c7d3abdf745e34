// The GPU memory budget: how many bytes of buffers this runtime lets itself allocate on a device.
// WebGPU does not report a device's memory size, so the budget is defined here:
//   - given: openDevice({ memoryBudgetBytes }) / the CLI's --gpu-memory SIZE;
//   - a software adapter (lavapipe, SwiftShader: "GPU" buffers are host memory): the host's
//     available memory (Linux /proc/meminfo MemAvailable, else os.freemem()) less a margin of
//     max(512 MiB, 10 %) for the process itself and the driver's staging copies;
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

/** Available host memory in bytes (Node/Deno), or null where it cannot be read. */
export async function hostAvailableBytes(): Promise<number | null> {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (typeof proc?.versions?.node !== "string") return null;
  try {
    const fsName = "node:fs/promises"; // variables, so browser bundlers leave them alone
    const fs = (await import(fsName)) as { readFile(p: string, enc: "utf8"): Promise<string> };
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(await fs.readFile("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall through to os.freemem()
  }
  try {
    const osName = "node:os";
    const os = (await import(osName)) as { freemem(): number };
    return os.freemem();
  } catch {
    return null;
  }
}

/** The budget for an adapter when the caller gives none (see the file header). */
export async function defaultMemoryBudget(isSoftware: boolean): Promise<MemoryBudget> {
  if (isSoftware) {
    const avail = await hostAvailableBytes();
    if (avail !== null) {
      const margin = Math.max(MIN_HOST_MARGIN, Math.floor(avail / 10));
      return { bytes: Math.max(0, avail - margin), source: `software adapter: host MemAvailable ${gib(avail)} less a ${gib(margin)} margin` };
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
