// node-llama-cpp (llama.cpp's prebuilt binaries) for the peer comparison. It is not a dependency
// of this package: it is found at ONEGEN_PEER_NODE_LLAMA_CPP (the package directory,
// e.g. /some/where/node_modules/node-llama-cpp) or in bench/peer/node_modules/node-llama-cpp
// (git-ignored; the install command is in bench/peer/README.md).
//
// Pitfalls handled here:
// - getLlama() defaults to build "auto", which may download llama.cpp and run cmake: we pass
//   build "never", skipDownload (prebuilt binaries only, or an error).
// - llama.cpp's Vulkan backend skips CPU-type devices (lavapipe): without GGML_VK_VISIBLE_DEVICES it
//   reports "No devices found" and silently computes on the CPU while llama.gpu still says
//   "vulkan". We set GGML_VK_VISIBLE_DEVICES=0 and, unless the caller chose an ICD, Mesa's lvp ICD
//   before the backend loads (so in the process that runs the Vulkan arm only), and refuse to
//   go on if the backend lists no device.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export const NODE_LLAMA_CPP_ENV = "ONEGEN_PEER_NODE_LLAMA_CPP";
export const LVP_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json";

export interface NodeLlamaCppPackage {
  dir: string;
  version: string;
  entry: string;
}

/** Where node-llama-cpp is, or null with the reason (one line). */
export function findNodeLlamaCpp(repoRoot: string): { found: NodeLlamaCppPackage } | { missing: string } {
  const fromEnv = process.env[NODE_LLAMA_CPP_ENV];
  const dir = fromEnv && fromEnv !== "" ? fromEnv : join(repoRoot, "bench", "peer", "node_modules", "node-llama-cpp");
  const pj = join(dir, "package.json");
  if (!existsSync(pj)) {
    return {
      missing: fromEnv
        ? `${NODE_LLAMA_CPP_ENV}=${fromEnv} holds no package.json: point it at the node-llama-cpp package directory`
        : `node-llama-cpp not found (set ${NODE_LLAMA_CPP_ENV}=/path/to/node_modules/node-llama-cpp, or install it in bench/peer/node_modules: see bench/peer/README.md)`,
    };
  }
  const p = JSON.parse(readFileSync(pj, "utf8")) as { name?: string; version?: string; exports?: Record<string, Record<string, string> | string>; main?: string };
  if (p.name !== "node-llama-cpp") return { missing: `${pj} is package '${p.name}', not node-llama-cpp` };
  const dot = p.exports?.["."];
  const rel = (typeof dot === "string" ? dot : (dot?.import ?? dot?.default)) ?? p.main ?? "dist/index.js";
  return { found: { dir, version: p.version ?? "?", entry: join(dir, rel) } };
}

// The parts of node-llama-cpp's API used here (its types are not available at build time).
export interface LlamaLike {
  gpu: string | false;
  buildType: string;
  llamaCppRelease: { release: string };
  systemInfo: string;
  getGpuDeviceNames(): Promise<string[]>;
  loadModel(o: Record<string, unknown>): Promise<LlamaModelLike>;
  dispose(): Promise<void>;
}
export interface LlamaModelLike {
  size: number;
  gpuLayers: number;
  typeDescription: string;
  fileInfo: { metadata: Record<string, unknown> };
  createContext(o: Record<string, unknown>): Promise<LlamaContextLike>;
  dispose(): Promise<void>;
}
export interface LlamaContextLike {
  contextSize: number;
  batchSize: number;
  flashAttention: boolean;
  getSequence(): LlamaSequenceLike;
  dispose(): Promise<void>;
}
export interface LlamaSequenceLike {
  nextTokenIndex: number;
  clearHistory(): Promise<void>;
  evaluateWithoutGeneratingNewTokens(ids: number[]): Promise<void>;
  evaluate(ids: number[], o: Record<string, unknown>): AsyncIterable<number>;
  controlledEvaluate(items: (number | [number, Record<string, unknown>])[]): Promise<({ next?: { logits?: Map<number, number> } } | undefined)[]>;
}

export interface LoadedLlama {
  llama: LlamaLike;
  info: { backend: string; device: string; llamaCpp: string; nodeLlamaCpp: string; buildType: string; systemInfo: string };
}

/** node-llama-cpp on "cpu" or "vulkan", prebuilt binaries only. */
export async function loadLlama(pkg: NodeLlamaCppPackage, backend: "cpu" | "vulkan", threads: number): Promise<LoadedLlama> {
  if (backend === "vulkan") {
    process.env.GGML_VK_VISIBLE_DEVICES ??= "0";
    if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(LVP_ICD)) process.env.VK_ICD_FILENAMES = LVP_ICD;
    process.env.XDG_RUNTIME_DIR ??= "/tmp";
  }
  const mod = (await import(pathToFileURL(pkg.entry).href)) as { getLlama(o: Record<string, unknown>): Promise<LlamaLike> };
  const logs: string[] = [];
  const llama = await mod.getLlama({
    gpu: backend === "cpu" ? false : "vulkan",
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: "debug",
    logger: (_level: string, message: string) => void logs.push(message),
  });
  if (backend === "vulkan" && llama.gpu !== "vulkan") throw new Error(`asked node-llama-cpp for vulkan, got ${String(llama.gpu)}`);
  const devices = await llama.getGpuDeviceNames();
  if (backend === "vulkan" && devices.length === 0) throw new Error("llama.cpp's Vulkan backend lists no device (GGML_VK_VISIBLE_DEVICES / VK_ICD_FILENAMES?)");
  const vk = logs.find((l) => l.includes("ggml_vulkan: 0 ="));
  return {
    llama,
    info: {
      backend: llama.gpu === false ? "cpu" : String(llama.gpu),
      device: backend === "cpu" ? "CPU" : (vk ? vk.replace(/^.*ggml_vulkan: 0 = /, "").trim() : devices.join(", ")),
      llamaCpp: llama.llamaCppRelease?.release ?? "?",
      nodeLlamaCpp: pkg.version,
      buildType: llama.buildType,
      systemInfo: llama.systemInfo.trim(),
    },
  };
}
