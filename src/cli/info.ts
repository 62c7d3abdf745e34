// `onegen info --model DIR [--json] [--dtype auto|f16|f32] [--context N]`: what a model directory
// holds and what loading it would take, without uploading anything: architecture and dimensions,
// parameter count, checkpoint dtypes, GPU bytes after dtype conversion (plus a KV cache for
// --context), whether that fits the adapter's limits, and the tokenizer's special tokens.
// Exit codes: 0 ok, 1 bad input (one-line error on stderr), 2 usage.

import { OnegenError, UsageError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import { openDevice } from "../gpu/device.js";
import { loadModelConfig, openModelCheckpoint } from "../model/checkpoint.js";
import { checkMemoryPlan, formatBytes, planMemory, type MemoryPlan } from "../model/memory-plan.js";
import { joinName, toModelDir } from "../io/source.js";
import { parameterCount, type ModelConfig } from "../model/config.js";
import type { QuantFormat } from "../quant/formats.js";
import { quantizeFlag } from "./model.js";
import { tryLoadTokenizer } from "../tokenizer.js";
import { cliDebug, numberFlag, parseArgs, sizeFlag } from "./args.js";
import { formatError, oneLine } from "./report-error.js";

interface CommandIo {
  stdout(s: string): void;
  stderr(s: string): void;
  /** The GPU context to describe (tests pass a shared one); default: openDevice(), destroyed after. */
  openDevice?: () => Promise<GpuContext>;
}

const USAGE = "usage: onegen info --model DIR [--json] [--dtype auto|f16|f32] [--quantize q8_0|q4_0] [--context N] [--gpu-memory SIZE (default: see src/gpu/budget.ts)]";

function defaultIo(): CommandIo {
  const proc = (globalThis as { process?: { stdout: { write(s: string): unknown }; stderr: { write(s: string): unknown } } }).process;
  return { stdout: (s) => void proc?.stdout.write(s), stderr: (s) => void proc?.stderr.write(s) };
}

interface ModelInfo {
  model: string;
  architecture: string;
  config: ModelConfig;
  /** config.json's vocab_size when the embedding's row count replaced it. */
  configVocabSize: number | null;
  parameters: number;
  checkpoint: { files: string[]; tensors: number; unusedTensors: string[] };
  /** Elements per source dtype, over the tensors that are loaded. */
  dtypes: Record<string, number>;
  gpu: {
    dtype: string;
    /** The projections' block format: as --quantize asks, or as the directory stores them; null for float. */
    quantization: string | null;
    weightBytes: number;
    kvCacheBytes: number;
    contextLength: number | null;
    totalBytes: number;
    largestTensor: { name: string; bytes: number } | null;
    adapter: string | null;
    adapterError: string | null;
    maxBufferSize: number | null;
    /** The GPU memory budget (src/gpu/budget.ts) the plan is checked against; null without an adapter. */
    memoryBudget: { bytes: number; source: string } | null;
    /** Every tensor fits maxBufferSize and weights (+ KV cache for --context) fit the budget. */
    fits: boolean | null;
    fitError: string | null;
  };
  tokenizer: { vocabSize: number; bos: { token: string; id: number } | null; eos: { token: string; id: number } | null; special: { id: number; content: string }[] } | null;
}

export async function infoCommand(argv: string[], io: CommandIo = defaultIo()): Promise<number> {
  let args;
  let contextLength: number | null;
  let memoryBudgetBytes: number | undefined;
  let quantize: QuantFormat | undefined;
  try {
    args = parseArgs(argv, { values: ["model", "dtype", "context", "gpu-memory", "quantize"], booleans: ["json", "help"] }, "info");
    if (args.bools.has("help")) {
      io.stdout(USAGE + "\n");
      return 0;
    }
    if (!args.flags.has("model")) throw new UsageError("info: --model DIR is required");
    const dt = args.flags.get("dtype") ?? "auto";
    if (dt !== "auto" && dt !== "f16" && dt !== "f32") throw new UsageError(`info: --dtype must be auto, f16 or f32, got '${dt}'`);
    contextLength = numberFlag(args, "context", "info", { integer: true, min: 1 }) ?? null;
    memoryBudgetBytes = sizeFlag(args, "gpu-memory", "info");
    quantize = quantizeFlag(args, "info");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(formatError(e, "info", cliDebug.enabled).text);
    return 2;
  }
  try {
    const info = await modelInfo(args.flags.get("model")!, {
      dtype: (args.flags.get("dtype") ?? "auto") as "auto" | "f16" | "f32",
      contextLength,
      ...(quantize ? { quantize } : {}),
      openDevice: io.openDevice,
      ...(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {}),
    });
    io.stdout(args.bools.has("json") ? JSON.stringify(info, null, 2) + "\n" : formatInfo(info));
    return 0;
  } catch (e) {
    if (!(e instanceof OnegenError)) throw e;
    io.stderr(formatError(e, "info", cliDebug.enabled).text);
    return e instanceof UsageError ? 2 : 1;
  }
}

/** Everything `onegen info` reports, as data. Opens the GPU only to read its limits. */
async function modelInfo(
  path: string,
  options: { dtype?: "auto" | "f16" | "f32"; quantize?: QuantFormat; contextLength?: number | null; openDevice?: (() => Promise<GpuContext>) | undefined; memoryBudgetBytes?: number } = {},
): Promise<ModelInfo> {
  const dir = await toModelDir(path);
  const base = await loadModelConfig(dir);
  const { config, vocabFromCheckpoint: changed, ckpt, check, names, stored, quantization } = await openModelCheckpoint(dir);
  try {
    if (quantization && options.quantize && options.quantize !== quantization.format) {
      throw new UsageError(`--quantize ${options.quantize}: '${dir.name}' is stored as ${quantization.format} (config.json "quantization")`);
    }
    const ctxLen = options.contextLength ?? null;
    if (ctxLen !== null && ctxLen > config.maxPositionEmbeddings) {
      throw new UsageError(`--context ${ctxLen} exceeds the model's context of ${config.maxPositionEmbeddings} positions (max_position_embeddings in '${joinName(dir.name, "config.json")}')`);
    }
    const plan: MemoryPlan = planMemory(ckpt, { names, stored, dtype: options.dtype ?? "auto", ...(options.quantize ? { quantize: options.quantize } : {}), ...(ctxLen !== null ? { kvCache: { config, contextLength: ctxLen } } : {}) });
    const dtypes: Record<string, number> = {};
    for (const t of plan.tensors) dtypes[t.source] = (dtypes[t.source] ?? 0) + t.shape.reduce((a, b) => a * b, 1);

    let adapter: string | null = null;
    let adapterError: string | null = null;
    let maxBufferSize: number | null = null;
    let fits: boolean | null = null;
    let fitError: string | null = null;
    let budget: { bytes: number; source: string } | null = null;
    let ctx: GpuContext | null = null;
    try {
      ctx = await (options.openDevice ?? (() => openDevice()))();
      adapter = `${ctx.adapter.description}${ctx.adapter.isSoftware ? " (software)" : ""} via ${ctx.adapter.backend}`;
      maxBufferSize = ctx.limits.maxBufferSize;
      budget = options.memoryBudgetBytes !== undefined ? { bytes: options.memoryBudgetBytes, source: "given" } : { ...ctx.memoryBudget };
      try {
        checkMemoryPlan(plan, ctx.limits, budget.bytes, budget.source);
        fits = true;
      } catch (e) {
        fits = false;
        fitError = oneLine((e as Error).message);
      }
    } catch (e) {
      adapterError = oneLine(e instanceof Error ? e.message : String(e));
    } finally {
      if (ctx && !options.openDevice) ctx.destroy();
    }

    const tok = await tryLoadTokenizer(dir);
    const tokenizer = tok
      ? {
          vocabSize: tok.vocabSize,
          bos: tok.bosToken !== null && tok.bosTokenId !== null ? { token: tok.bosToken, id: tok.bosTokenId } : null,
          eos: tok.eosToken !== null && tok.eosTokenId !== null ? { token: tok.eosToken, id: tok.eosTokenId } : null,
          special: tok.specialTokens(),
        }
      : null;
    return {
      model: dir.name,
      architecture: config.architecture,
      config,
      configVocabSize: changed ? base.vocabSize : null,
      parameters: parameterCount(config),
      checkpoint: { files: ckpt.files.map((f) => f.name), tensors: ckpt.tensors.size, unusedTensors: check.unused },
      dtypes,
      gpu: {
        dtype: options.dtype ?? "auto",
        quantization: quantization ? `${quantization.format} (stored)` : options.quantize ? `${options.quantize} (quantized while loading)` : null,
        weightBytes: plan.weightBytes,
        kvCacheBytes: plan.kvCacheBytes,
        contextLength: ctxLen,
        totalBytes: plan.totalBytes,
        largestTensor: plan.largest ? { name: plan.largest.name, bytes: plan.largest.gpuBytes } : null,
        adapter,
        adapterError,
        maxBufferSize,
        memoryBudget: budget,
        fits,
        fitError,
      },
      tokenizer,
    };
  } finally {
    await ckpt.close();
  }
}

function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

function formatInfo(i: ModelInfo): string {
  const c = i.config;
  const rope =
    c.ropeScaling.type === "none"
      ? "none"
      : c.ropeScaling.type === "linear"
        ? `linear ×${c.ropeScaling.factor}`
        : `llama3 ×${c.ropeScaling.factor} (low ${c.ropeScaling.lowFreqFactor}, high ${c.ropeScaling.highFreqFactor}, original ${c.ropeScaling.originalMaxPositionEmbeddings})`;
  const biases = [c.attentionBias ? "qkv" : "", c.attentionOutputBias ? "o" : "", c.mlpBias ? "mlp" : ""].filter(Boolean).join(", ") || "none";
  const lines = [
    `model:          ${i.model}`,
    `architecture:   ${i.architecture} (${c.modelType})`,
    `dimensions:     D=${c.hiddenSize} I=${c.intermediateSize} L=${c.numLayers} H=${c.numHeads} Hkv=${c.numKvHeads} hd=${c.headDim} V=${c.vocabSize}` +
      (i.configVocabSize !== null ? ` (config.json says ${i.configVocabSize}; the embedding's rows win)` : ""),
    `context:        ${c.maxPositionEmbeddings} positions${c.slidingWindow !== null ? `, sliding window ${c.slidingWindow}` : ""}`,
    `rope:           theta ${c.ropeTheta}, scaling ${rope}`,
    `norm eps:       ${c.rmsNormEps}; tied embeddings: ${c.tieWordEmbeddings ? "yes" : "no"}; biases: ${biases}`,
    `parameters:     ${i.parameters.toLocaleString("en-US")} (${count(i.parameters)})`,
    `checkpoint:     ${i.checkpoint.files.length} file(s), ${i.checkpoint.tensors} tensors${i.checkpoint.unusedTensors.length ? ` (${i.checkpoint.unusedTensors.length} unused: ${i.checkpoint.unusedTensors.slice(0, 3).join(", ")}${i.checkpoint.unusedTensors.length > 3 ? ", ..." : ""})` : ""}`,
    `dtypes:         ${Object.entries(i.dtypes).map(([d, n]) => `${d} ${count(n)}`).join(", ")}`,
    `gpu bytes:      ${formatBytes(i.gpu.weightBytes)} weights (--dtype ${i.gpu.dtype}${i.gpu.quantization ? `; projections ${i.gpu.quantization}` : ""})` +
      (i.gpu.contextLength !== null ? ` + ${formatBytes(i.gpu.kvCacheBytes)} KV cache for ${i.gpu.contextLength} tokens = ${formatBytes(i.gpu.totalBytes)}` : "") +
      (i.gpu.largestTensor ? `; largest tensor ${i.gpu.largestTensor.name} ${formatBytes(i.gpu.largestTensor.bytes)}` : ""),
    i.gpu.adapter !== null
      ? `adapter:        ${i.gpu.adapter}; maxBufferSize ${formatBytes(i.gpu.maxBufferSize ?? 0)}\n` +
        `memory budget:  ${i.gpu.memoryBudget ? `${formatBytes(i.gpu.memoryBudget.bytes)} (${i.gpu.memoryBudget.source})` : "none"}; ` +
        `${i.gpu.fits ? `fits (${formatBytes(i.gpu.totalBytes)} planned)` : `does not fit: ${i.gpu.fitError}`}`
      : `adapter:        unavailable: ${i.gpu.adapterError}`,
    `bos/eos ids:    ${c.bosTokenId ?? "none"} / ${c.eosTokenIds.join(", ") || "none"} (config)`,
  ];
  if (i.tokenizer) {
    const t = i.tokenizer;
    lines.push(
      `tokenizer:      ${t.vocabSize} ids; bos ${t.bos ? `${t.bos.token}=${t.bos.id}` : "none"}, eos ${t.eos ? `${t.eos.token}=${t.eos.id}` : "none"}`,
      `special tokens: ${t.special.map((s) => `${s.content}=${s.id}`).join(" ") || "none"}`,
    );
  } else lines.push("tokenizer:      none (no tokenizer.json: commands take token ids)");
  return lines.join("\n") + "\n";
}
