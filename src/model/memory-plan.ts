// The memory plan of a checkpoint, made before anything is uploaded: the GPU dtype each tensor is
// stored as (the dtype policy, --quantize), the GPU bytes per tensor and in total (weights, a KV
// cache estimate, what the caller reserves), and its refusal when a tensor exceeds the device's
// maxBufferSize or the total the memory budget.

import { UnsupportedError } from "../errors.js";
import type { RuntimeLimits } from "../gpu/context.js";
import { DTYPE_BYTES, isQuantDType, tilesBytes, tilesLayout, type DType, type QuantDType } from "../gpu/tensor.js";
import { kvCacheBytes, type ModelConfig } from "./config.js";
import { QK, quantBytes, type QuantFormat } from "../quant/formats.js";
import { isQuantizedWeight } from "../quant/policy.js";
import type { Checkpoint, CheckpointTensor } from "./checkpoint.js";
import type { SafetensorsDtype } from "../io/safetensors.js";

export interface DtypeOptions {
  /** Float weights on the GPU: "auto" keeps F32 as f32 and stores F16/BF16 as f16; "f16"/"f32" force one. */
  dtype?: "auto" | "f16" | "f32";
  /**
   * Quantize the decoder layers' projection weights (src/quant/policy.ts isQuantizedWeight) to
   * GGUF Q8_0 / Q4_0 blocks on the host while streaming them, one tensor at a time; every other
   * tensor follows `dtype`. Each such weight's K must be a multiple of 32 (refused in the plan).
   */
  quantize?: QuantFormat;
  /** Per-tensor override (e.g. norms in f32); return undefined to use `dtype`. */
  dtypeFor?: (name: string, source: SafetensorsDtype) => DType | undefined;
}

const FLOAT_SOURCES: ReadonlySet<string> = new Set(["F32", "F16", "BF16", "F64"]);

/** The GPU dtype a source tensor is stored as. Integer tensors widen to i32/u32. */
export function gpuDtypeFor(name: string, source: SafetensorsDtype, options: DtypeOptions = {}): DType {
  const override = options.dtypeFor?.(name, source);
  const isFloat = FLOAT_SOURCES.has(source);
  if (override !== undefined) {
    if (isFloat !== (override === "f16" || override === "f32")) throw new UnsupportedError(`tensor '${name}': cannot store ${source} as ${override}`);
    return override;
  }
  if (isFloat) {
    if (options.quantize && isQuantizedWeight(name)) return options.quantize;
    const policy = options.dtype ?? "auto";
    if (policy !== "auto") return policy;
    return source === "F32" || source === "F64" ? "f32" : "f16";
  }
  switch (source) {
    case "I8":
    case "I16":
    case "I32":
    case "I64":
      return "i32";
    case "U8":
    case "U16":
    case "U32":
    case "BOOL":
      return "u32";
    default:
      throw new UnsupportedError(`tensor '${name}': dtype ${source} cannot be loaded onto the GPU`);
  }
}

export interface PlannedTensor {
  name: string;
  shape: readonly number[];
  source: SafetensorsDtype;
  dtype: DType;
  /** Bytes in the file. */
  fileBytes: number;
  /** Bytes on the GPU (buffers are rounded up to 4 bytes; tiles: the padded tiles). */
  gpuBytes: number;
  /** Transformed into the tiles layout with this many rows per tile after upload (PlanOptions.tiles). */
  tilesT?: number;
}

export interface MemoryPlan {
  tensors: PlannedTensor[];
  /** Sum of the tensors' GPU bytes. */
  weightBytes: number;
  /** Sum of the tensors' bytes in the files (what loading reads). */
  fileBytes: number;
  /** KV cache estimate (0 unless requested). */
  kvCacheBytes: number;
  /** Other GPU memory the caller will add (an index, …), by name. */
  reserved: { what: string; bytes: number }[];
  totalBytes: number;
  largest: PlannedTensor | null;
}

/**
 * A weight stored quantized in a model directory (src/model/save-quantized.ts): `PREFIX.qweight` U8 and
 * `PREFIX.scales` F16 standing for `PREFIX.weight` [N, K]; loaded as they are (no re-quantizing).
 */
export interface StoredQuant {
  format: QuantFormat;
  shape: readonly [number, number];
  qweight: CheckpointTensor;
  scales: CheckpointTensor;
}

export interface PlanOptions extends DtypeOptions {
  /** Weights stored quantized, by their `.weight` name (storedQuantWeights). */
  stored?: ReadonlyMap<string, StoredQuant>;
  /** Tensors to load (default: all in the checkpoint). */
  names?: readonly string[];
  /** GPU memory the caller will add after loading (e.g. { what: "index 'DIR'", bytes }), planned with the weights. */
  reserve?: readonly { what: string; bytes: number }[];
  /** Adds the KV cache for this context to the plan. */
  kvCache?: { config: ModelConfig; contextLength: number; bytesPerElement?: number; batch?: number };
  /**
   * 2-D f32/f16 weights selected by name are transformed into the tiles layout with T rows per
   * tile right after their upload (src/gpu/tensor.ts TilesLayout; the row-major upload is freed at
   * once): planned at their tiled size (padding rows to T and K to a 16-byte chunk). Selected
   * q8_0/q4_0 weights (quantized while loading, or stored) are transformed on the host before
   * their upload (src/quant/tiles.ts): planned at their tiled size (rows padded to T, scales to
   * whole chunks of 8).
   */
  tiles?: { T: number; select: (name: string) => boolean };
}

/** GPU bytes per tensor after dtype conversion, plus an optional KV cache estimate. */
export function planMemory(ckpt: Checkpoint, options: PlanOptions = {}): MemoryPlan {
  const names = options.names ?? [...ckpt.tensors.keys()];
  const tensors: PlannedTensor[] = [];
  let weightBytes = 0;
  let fileBytes = 0;
  let largest: PlannedTensor | null = null;
  for (const name of names) {
    const stored = options.stored?.get(name);
    let p: PlannedTensor;
    if (stored) {
      const tiled = options.tiles !== undefined && options.tiles.select(name);
      const gpuBytes = tiled ? tilesBytes(tilesLayout(stored.shape[0], stored.shape[1], stored.format, options.tiles!.T)) : quantBytes(stored.shape[0], stored.shape[1], stored.format).total;
      p = { name, shape: stored.shape, source: stored.qweight.info.dtype, dtype: stored.format, fileBytes: stored.qweight.info.byteLength + stored.scales.info.byteLength, gpuBytes, ...(tiled ? { tilesT: options.tiles!.T } : {}) };
    } else {
      const { info } = ckpt.get(name);
      const dtype = gpuDtypeFor(name, info.dtype, options);
      if (isQuantDType(dtype) && (info.shape.length !== 2 || info.shape[1]! % QK !== 0)) {
        throw new UnsupportedError(
          `tensor '${name}' [${info.shape.join(", ")}] cannot be quantized to ${dtype}: its rows (K = ${info.shape[info.shape.length - 1]}) are not a multiple of ${QK}; nothing was uploaded`,
          "load this model without --quantize",
        );
      }
      const tiled = options.tiles && (dtype === "f32" || dtype === "f16" || isQuantDType(dtype)) && info.shape.length === 2 && options.tiles.select(name);
      const gpuBytes = tiled ? tilesBytes(tilesLayout(info.shape[0]!, info.shape[1]!, dtype as "f32" | "f16" | QuantDType, options.tiles!.T)) : Math.ceil((info.numel * DTYPE_BYTES[dtype]) / 4) * 4;
      p = { name, shape: info.shape, source: info.dtype, dtype, fileBytes: info.byteLength, gpuBytes, ...(tiled ? { tilesT: options.tiles!.T } : {}) };
    }
    tensors.push(p);
    weightBytes += p.gpuBytes;
    fileBytes += p.fileBytes;
    if (!largest || p.gpuBytes > largest.gpuBytes) largest = p;
  }
  const kv = options.kvCache;
  const kvBytes = kv ? kvCacheBytes(kv.config, kv.contextLength, kv.bytesPerElement ?? 2, kv.batch ?? 1) : 0;
  const reserved = (options.reserve ?? []).map((r) => ({ ...r }));
  // The tiles transform holds one row-major weight beside its tiles while it runs: the peak.
  // (Quantized weights are transformed on the host before their upload: no GPU transient.)
  const transient = tensors.filter((t) => t.tilesT && !isQuantDType(t.dtype)).reduce((m, t) => Math.max(m, Math.ceil((t.shape[0]! * t.shape[1]! * DTYPE_BYTES[t.dtype]) / 4) * 4), 0);
  if (transient > 0) reserved.push({ what: "one row-major weight while it is transformed into tiles (transient)", bytes: transient });
  const reservedBytes = reserved.reduce((a, r) => a + r.bytes, 0);
  return { tensors, weightBytes, fileBytes, kvCacheBytes: kvBytes, reserved, totalBytes: weightBytes + kvBytes + reservedBytes, largest };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/**
 * Refuses a plan that cannot fit: a tensor over the device's maxBufferSize, or a total over
 * `budgetBytes` (WebGPU does not report a device's memory size, so the budget is the caller's).
 */
export function checkMemoryPlan(plan: MemoryPlan, limits: Pick<RuntimeLimits, "maxBufferSize">, budgetBytes?: number, budgetSource?: string): void {
  const tooBig = plan.tensors.filter((t) => t.gpuBytes > limits.maxBufferSize);
  if (tooBig.length > 0) {
    throw new UnsupportedError(
      `${tooBig.length} tensor(s) exceed this device's maxBufferSize of ${formatBytes(limits.maxBufferSize)}: ` +
        tooBig.slice(0, 5).map((t) => `'${t.name}' [${t.shape.join(", ")}] ${t.dtype} = ${formatBytes(t.gpuBytes)}`).join(", "),
      "store the weights as f16 (dtype: 'f16'), or use a device with a larger maxBufferSize",
    );
  }
  if (budgetBytes !== undefined && plan.totalBytes > budgetBytes) {
    throw new UnsupportedError(
      `the model needs ${formatBytes(plan.totalBytes)} of GPU memory (weights ${formatBytes(plan.weightBytes)}` +
        `${plan.kvCacheBytes ? ` + KV cache ${formatBytes(plan.kvCacheBytes)}` : ""}${plan.reserved.map((r) => ` + ${r.what} ${formatBytes(r.bytes)}`).join("")}), over the budget of ${formatBytes(budgetBytes)}` +
        `${budgetSource ? ` (${budgetSource})` : ""}; nothing was uploaded`,
      plan.tensors.some((t) => t.dtype === "f32")
        ? "store the weights as f16 (dtype: 'f16'), quantize them (--quantize q8_0|q4_0) or shorten the context"
        : plan.tensors.some((t) => t.dtype === "f16")
          ? "quantize the weights (--quantize q8_0|q4_0), shorten the context or raise the budget (--gpu-memory SIZE)"
          : "shorten the context or raise the budget (--gpu-memory SIZE)",
    );
  }
}
