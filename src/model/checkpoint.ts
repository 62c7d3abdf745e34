// Hugging Face checkpoints: one model.safetensors or shards listed by model.safetensors.index.json,
// a memory plan made before anything is uploaded, and streaming upload into GPU tensors.
//
// Upload path, per tensor: read its byte range from the file (in chunks of at most `chunkBytes`),
// convert on the host (BF16 → f16 by default, or f32; F16 stays f16; F32 stays f32; by option any
// float → f16 or f32), write into the GPU tensor with ctx.write at an element offset. Peak host
// memory is about two chunks, independent of the checkpoint's size. Each float tensor is then
// scanned for NaN/±inf on the GPU (src/ops/nonfinite.ts); the counts come back once per load.

import { LoadError, UnsupportedError } from "../errors.js";
import type { GpuContext } from "../gpu/context.js";
import { isQuantDType, type DType, type QuantDType, type Tensor } from "../gpu/tensor.js";
import { QK, quantBytes, quantizeBlocksInto } from "../quant/formats.js";
import { toQuantTiles } from "../quant/tiles.js";
import { parseQuantizationRecord, storedQuantNames, type QuantizationRecord } from "../quant/policy.js";
import { bf16ArrayToF32, convertBf16ToF16, convertF16ToF32, convertF32ToF16 } from "../util/f16.js";
import { checkWeights, expectedTensors, parseModelConfig, reconcileVocabSize, type ModelConfig, type WeightCheck } from "./config.js";
import { SafetensorsFile, bytesAsArray, dtypeBits, type SafetensorsDtype, type TensorInfo } from "../io/safetensors.js";
import { joinName, readJson, toModelDir, type ModelDir } from "../io/source.js";
import { NonFiniteScan } from "../ops/nonfinite.js";
import { toTilesLayout } from "../ops/linear.js";
import { checkMemoryPlan, formatBytes, planMemory, type MemoryPlan, type PlanOptions, type StoredQuant } from "./memory-plan.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

export interface CheckpointTensor {
  readonly file: SafetensorsFile;
  readonly info: TensorInfo;
}

/** The tensors of a checkpoint (one file or several shards), headers validated, no data read. */
export class Checkpoint {
  constructor(
    /** Where it came from (directory name). */
    readonly name: string,
    readonly files: readonly SafetensorsFile[],
    readonly tensors: ReadonlyMap<string, CheckpointTensor>,
    /** The index file's "metadata" (e.g. total_size), or the single file's __metadata__. */
    readonly metadata: Readonly<Record<string, unknown>> | null,
  ) {}

  get sharded(): boolean {
    return this.files.length > 1 || this.files.some((f) => !f.name.endsWith(SINGLE_FILE));
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  get(name: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new LoadError(`checkpoint '${this.name}' has no tensor '${name}'`);
    return t;
  }
  shapes(): Map<string, readonly number[]> {
    return new Map([...this.tensors].map(([n, t]) => [n, t.info.shape]));
  }
  /** Element counts per source dtype. */
  dtypeCounts(): Map<SafetensorsDtype, number> {
    const m = new Map<SafetensorsDtype, number>();
    for (const t of this.tensors.values()) m.set(t.info.dtype, (m.get(t.info.dtype) ?? 0) + t.info.numel);
    return m;
  }
  async close(): Promise<void> {
    for (const f of this.files) await f.close();
  }
}

/** Opens a checkpoint in a model directory: model.safetensors, or the shards named by the index. */
export async function openCheckpoint(dirOrPath: string | ModelDir): Promise<Checkpoint> {
  const dir = await toModelDir(dirOrPath);
  if (await dir.exists(SINGLE_FILE)) {
    const file = await SafetensorsFile.open(await dir.open(SINGLE_FILE));
    const tensors = new Map(file.tensors.map((info) => [info.name, { file, info }]));
    return new Checkpoint(dir.name, [file], tensors, file.metadata);
  }
  if (await dir.exists(INDEX_FILE)) return openSharded(dir);
  for (const other of ["pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "consolidated.00.pth"]) {
    if (await dir.exists(other)) {
      throw new UnsupportedError(
        `model directory '${dir.name}' holds '${other}', a pickle checkpoint; only safetensors are read`,
        "save it with `model.save_pretrained(DIR, safe_serialization=True)` or convert it to safetensors",
      );
    }
  }
  throw new LoadError(`model directory '${dir.name}' has neither '${SINGLE_FILE}' nor '${INDEX_FILE}'`);
}

async function openSharded(dir: ModelDir): Promise<Checkpoint> {
  const indexName = joinName(dir.name, INDEX_FILE);
  const index = await readJson(dir, INDEX_FILE);
  if (typeof index !== "object" || index === null || Array.isArray(index)) throw new LoadError(`'${indexName}' must be a JSON object`);
  const wm = (index as Record<string, unknown>).weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) throw new LoadError(`'${indexName}' has no "weight_map" object`);
  const weightMap = new Map<string, string>();
  for (const [tensor, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== "string") throw new LoadError(`'${indexName}': weight_map['${tensor}'] must be a file name, got ${JSON.stringify(file)}`);
    weightMap.set(tensor, file);
  }
  const byFile = new Map<string, string[]>();
  for (const [tensor, file] of weightMap) {
    let l = byFile.get(file);
    if (!l) byFile.set(file, (l = []));
    l.push(tensor);
  }
  const missingFiles: string[] = [];
  for (const file of byFile.keys()) if (!(await dir.exists(file))) missingFiles.push(file);
  if (missingFiles.length > 0) {
    throw new LoadError(
      `'${indexName}' names ${missingFiles.length} shard file(s) missing from '${dir.name}': ` +
        missingFiles.map((f) => `${f} (${byFile.get(f)!.length} tensors)`).join(", "),
    );
  }
  const files: SafetensorsFile[] = [];
  const tensors = new Map<string, CheckpointTensor>();
  const missingTensors: string[] = [];
  try {
    for (const [fileName, names] of [...byFile].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const file = await SafetensorsFile.open(await dir.open(fileName));
      files.push(file);
      for (const n of names) {
        if (file.has(n)) tensors.set(n, { file, info: file.info(n) });
        else missingTensors.push(`${n} (in ${fileName})`);
      }
    }
  } catch (e) {
    for (const f of files) await f.close();
    throw e;
  }
  if (missingTensors.length > 0) {
    for (const f of files) await f.close();
    throw new LoadError(`'${indexName}' maps ${missingTensors.length} tensor(s) to shards that do not hold them: ${missingTensors.join(", ")}`);
  }
  const meta = (index as Record<string, unknown>).metadata;
  return new Checkpoint(dir.name, files, tensors, typeof meta === "object" && meta !== null ? (meta as Record<string, unknown>) : null);
}

/** Reads config.json and, when present, generation_config.json. */
export async function loadModelConfig(dirOrPath: string | ModelDir): Promise<ModelConfig> {
  const dir = await toModelDir(dirOrPath);
  if (!(await dir.exists("config.json"))) throw new LoadError(`model directory '${dir.name}' has no config.json`);
  const config = await readJson(dir, "config.json");
  const gen = (await dir.exists("generation_config.json")) ? await readJson(dir, "generation_config.json") : null;
  return parseModelConfig(config, gen, joinName(dir.name, "config.json"));
}

// ---------------------------------------------------------------- upload

export interface LoadProgress {
  /** Bytes read from the files so far, and in total. */
  bytesDone: number;
  bytesTotal: number;
  tensorsDone: number;
  tensorsTotal: number;
  /** The tensor being loaded. */
  tensor: string;
}

export interface LoadOptions extends PlanOptions {
  /** Refuse before uploading when the plan's total exceeds this many bytes (default: what ctx.memoryBudget leaves). */
  budgetBytes?: number;
  onProgress?: (p: LoadProgress) => void;
  /** Host bytes read per step for large tensors (default 64 MiB). */
  chunkBytes?: number;
  /** Tensor labels are `${labelPrefix}${name}`. */
  labelPrefix?: string;
}

const DEFAULT_CHUNK = 64 << 20;
/** Let the queue drain this often, so the driver's staging copies do not pile up. */
const SYNC_EVERY_BYTES = 512 << 20;

/** Converts little-endian source bytes to the host array ctx.write expects for `dtype`. */
export function convertForGpu(bytes: Uint8Array, source: SafetensorsDtype, dtype: DType, what: string): Float32Array | Uint16Array | Int32Array | Uint32Array {
  const src = bytesAsArray(bytes, source, what);
  const overflow = (count: number): void => {
    if (count > 0) {
      throw new LoadError(`${what}: ${count} ${source} value(s) exceed f16's range (±65504) and would become infinite`, "load this tensor as f32 (dtype: 'f32' or dtypeFor)");
    }
  };
  if (dtype === "f32") {
    if (source === "F32") return src as Float32Array;
    if (source === "F16") return convertF16ToF32(src as Uint16Array);
    if (source === "BF16") return bf16ArrayToF32(src as Uint16Array);
    if (source === "F64") return Float32Array.from(src as Float64Array);
  } else if (dtype === "f16") {
    if (source === "F16") return src as Uint16Array;
    if (source === "BF16") {
      const { out, overflows } = convertBf16ToF16(src as Uint16Array);
      overflow(overflows);
      return out;
    }
    if (source === "F32" || source === "F64") {
      const { out, overflows } = convertF32ToF16(source === "F32" ? (src as Float32Array) : Float32Array.from(src as Float64Array));
      overflow(overflows);
      return out;
    }
  } else if (dtype === "i32") {
    if (src instanceof Int32Array) return src;
    if (src instanceof BigInt64Array) {
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (v < -2147483648n || v > 2147483647n) throw new LoadError(`${what}: I64 value ${v} at element ${i} does not fit i32`);
        out[i] = Number(v);
      }
      return out;
    }
    if (src instanceof Int8Array || src instanceof Int16Array) return Int32Array.from(src);
  } else if (dtype === "u32") {
    if (src instanceof Uint32Array) return src;
    if (src instanceof Uint8Array || (src instanceof Uint16Array && source === "U16")) return Uint32Array.from(src);
  }
  throw new UnsupportedError(`${what}: cannot convert ${source} to ${dtype}`);
}

/** Uploads one checkpoint tensor into a new GPU tensor, reading at most `chunkBytes` at a time. */
export async function uploadTensor(
  ctx: GpuContext,
  entry: CheckpointTensor,
  dtype: DType,
  options: { chunkBytes?: number; label?: string; onBytes?: (n: number) => void; tilesT?: number } = {},
): Promise<Tensor> {
  if (isQuantDType(dtype)) return uploadQuantized(ctx, entry, dtype, options);
  if (options.tilesT) throw new UnsupportedError(`uploadTensor: '${entry.info.name}' ${dtype}: the tiles layout of float weights is made on the GPU after the upload (toTilesLayout)`);
  const { file, info } = entry;
  const what = `'${file.name}', tensor '${info.name}'`;
  const t = ctx.empty(info.shape, dtype, options.label ?? info.name);
  try {
    if (info.numel === 0) return t;
    const srcElemBytes = dtypeBits(info.dtype) / 8;
    // Chunks hold a whole number of elements, and an even number so f16 writes stay 4-byte aligned.
    let perChunk = Math.max(2, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK) / srcElemBytes));
    perChunk -= perChunk % 2;
    for (let e = 0; e < info.numel; e += perChunk) {
      const n = Math.min(perChunk, info.numel - e);
      const bytes = await file.readBytes(info.name, e * srcElemBytes, n * srcElemBytes);
      ctx.write(t, convertForGpu(bytes, info.dtype, dtype, what), e);
      options.onBytes?.(n * srcElemBytes);
    }
    return t;
  } catch (e) {
    t.dispose();
    // A host array the chunk needs could not be allocated: say so, naming the tensor (no stack).
    if (e instanceof RangeError) throw new LoadError(`${what}: host memory ran out while reading it (${e.message})`, "lower chunkBytes, or free host memory");
    throw e;
  }
}

/**
 * Quantizes one float checkpoint tensor W [N, K] on the host while streaming it (chunks of whole
 * rows, each converted to f32 and quantized into the split-blocks arrays), then uploads the packed
 * bytes in one write (tilesT: transformed on the host into the tiles layout first,
 * src/quant/tiles.ts, byte for byte). Host memory: the quantized tensor (1.06 / 0.56 bytes per
 * weight) plus one chunk (plus its tiled copy with tilesT). Non-finite weights are refused here (the
 * GPU scan only sees float tensors).
 */
async function uploadQuantized(
  ctx: GpuContext,
  entry: CheckpointTensor,
  format: QuantDType,
  options: { chunkBytes?: number; label?: string; onBytes?: (n: number) => void; tilesT?: number },
): Promise<Tensor> {
  const { file, info } = entry;
  const what = `'${file.name}', tensor '${info.name}'`;
  const [N, K] = info.shape as [number, number];
  const { qsBytes, total } = quantBytes(N, K, format);
  let packed: Uint8Array;
  try {
    packed = new Uint8Array(total);
  } catch (e) {
    if (e instanceof RangeError) throw new LoadError(`${what}: host memory ran out while quantizing it (${e.message})`, "free host memory");
    throw e;
  }
  const qs = packed.subarray(0, qsBytes);
  const scales = new Uint16Array(packed.buffer, qsBytes, (N * K) / QK);
  const srcElemBytes = dtypeBits(info.dtype) / 8;
  const rowsPer = Math.max(1, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK) / (K * srcElemBytes)));
  for (let r = 0; r < N; r += rowsPer) {
    const n = Math.min(rowsPer, N - r);
    const bytes = await file.readBytes(info.name, r * K * srcElemBytes, n * K * srcElemBytes);
    const f = convertForGpu(bytes, info.dtype, "f32", what) as Float32Array;
    let bad = 0;
    for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i]!)) bad++;
    if (bad > 0) throw new LoadError(`${what}: ${bad} NaN/infinite value(s) in rows ${r}..${r + n - 1}; a model with non-finite weights cannot run`);
    quantizeBlocksInto(f, (n * K) / QK, format, qs, scales, (r * K) / QK, what);
    options.onBytes?.(n * K * srcElemBytes);
  }
  return uploadPacked(ctx, packed, [N, K], format, options.label ?? info.name, options.tilesT);
}

/** Uploads split-blocks bytes (quants then scales) as they are, or transformed into the tiles layout (tilesT > 0). */
function uploadPacked(ctx: GpuContext, packed: Uint8Array, shape: readonly [number, number], format: QuantDType, label: string, tilesT = 0): Tensor {
  if (!tilesT) return ctx.upload(packed, shape, format, label);
  const [N, K] = shape;
  const { qsBytes, scaleBytes } = quantBytes(N, K, format);
  // Views of the two arrays (no copy): packed starts its own buffer, so the scales are 2-aligned.
  const q = { format, N, K, qs: packed.subarray(0, qsBytes), scales: new Uint16Array(packed.buffer, packed.byteOffset + qsBytes, scaleBytes / 2) };
  return ctx.uploadTiles(toQuantTiles(q, tilesT), shape, format, tilesT, label);
}

/** Uploads a weight stored quantized (PREFIX.qweight + PREFIX.scales) as they are: one packed write. */
async function uploadStoredQuant(ctx: GpuContext, name: string, s: StoredQuant, options: { label?: string; onBytes?: (n: number) => void; tilesT?: number }): Promise<Tensor> {
  const [N, K] = s.shape;
  const { qsBytes, total } = quantBytes(N, K, s.format);
  const packed = new Uint8Array(total);
  packed.set(await s.qweight.file.readBytes(s.qweight.info.name, 0, qsBytes), 0);
  const scaleBytes = await s.scales.file.readBytes(s.scales.info.name, 0, total - qsBytes);
  for (let i = 0; i + 1 < scaleBytes.length; i += 2) {
    if ((scaleBytes[i + 1]! & 0x7c) === 0x7c) throw new LoadError(`'${s.scales.file.name}', tensor '${s.scales.info.name}': scale ${i / 2} is NaN/infinite; a model with non-finite weights cannot run`);
  }
  packed.set(scaleBytes, qsBytes);
  options.onBytes?.(total);
  return uploadPacked(ctx, packed, s.shape, s.format, options.label ?? name, options.tilesT);
}

/**
 * The weights a quantized model directory stores as PREFIX.qweight + PREFIX.scales, by their
 * `.weight` names, with shapes checked against the record's format: qweight U8 [N, K] (q8_0) or
 * [N, K/2] (q4_0), scales F16 [N, K/32]. K comes from the scales' width.
 */
export function storedQuantWeights(ckpt: Checkpoint, record: QuantizationRecord): Map<string, StoredQuant> {
  const out = new Map<string, StoredQuant>();
  for (const [name, t] of ckpt.tensors) {
    if (!name.endsWith(".qweight")) continue;
    const weight = name.replace(/\.qweight$/, ".weight");
    const { scales: sName } = storedQuantNames(weight);
    const scales = ckpt.tensors.get(sName);
    const where = `checkpoint '${ckpt.name}'`;
    if (!scales) throw new LoadError(`${where}: '${name}' has no '${sName}' beside it`);
    const [N, B] = scales.info.shape as [number, number];
    const K = B * QK;
    const qCols = record.format === "q8_0" ? K : K / 2;
    if (t.info.dtype !== "U8" || scales.info.dtype !== "F16" || scales.info.shape.length !== 2 || t.info.shape.length !== 2 || t.info.shape[0] !== N || t.info.shape[1] !== qCols) {
      throw new LoadError(
        `${where}: '${name}' ${t.info.dtype} [${t.info.shape.join(", ")}] and '${sName}' ${scales.info.dtype} [${scales.info.shape.join(", ")}] are not a ${record.format} weight (expected U8 [N, ${record.format === "q8_0" ? "K" : "K/2"}] and F16 [N, K/32])`,
      );
    }
    out.set(weight, { format: record.format, shape: [N, K], qweight: t, scales });
  }
  return out;
}

/**
 * Loads checkpoint tensors into GPU tensors. The memory plan is checked first (device limits,
 * optional budget), so a model that cannot fit is refused before anything is uploaded. Every
 * f32/f16 tensor is scanned for NaN/±inf on the GPU right after its upload (src/ops/nonfinite.ts,
 * one readback for the whole load); a checkpoint holding any is refused with a LoadError naming
 * the file and tensor. On any error the tensors already uploaded are disposed.
 */
export async function loadTensors(ctx: GpuContext, ckpt: Checkpoint, options: LoadOptions = {}): Promise<Map<string, Tensor>> {
  const plan = planMemory(ckpt, options);
  const live = ctx.pool.stats.liveBytes;
  if (options.budgetBytes !== undefined) checkMemoryPlan(plan, ctx.limits, options.budgetBytes, "given");
  else checkMemoryPlan(plan, ctx.limits, ctx.memoryAvailable, `${ctx.memoryBudget.source}${live > 0 ? `, less ${formatBytes(live)} already in use` : ""}`);
  const out = new Map<string, Tensor>();
  const progress: LoadProgress = { bytesDone: 0, bytesTotal: plan.fileBytes, tensorsDone: 0, tensorsTotal: plan.tensors.length, tensor: "" };
  let sinceSync = 0;
  // Cost of the scan (lavapipe, 2-core machine busy with other jobs, 2026-12-02, best of 5 loads
  // from the page cache, three A/B rounds): demo model (3.5 MB) 3–5 → 12–15 ms; synthetic 384 MiB
  // (4×64 MiB F16 + 2×64 MiB F32) 336–358 → 472–542 ms, the scan alone 136–186 ms (2.1–2.8 GB/s).
  // On lavapipe the "GPU" is the same two cores, so the scan adds its whole time; on a hardware
  // GPU it runs at memory bandwidth, far below the disk read (unmeasured: no GPU here).
  const scan = NonFiniteScan.create(ctx, plan.tensors.length);
  try {
    for (const p of plan.tensors) {
      progress.tensor = p.name;
      // Quantized weights are transformed into tiles on the host (uploadPacked); float ones on the GPU below.
      const quantTiles = p.tilesT !== undefined && isQuantDType(p.dtype);
      const upOpts = {
        ...(quantTiles ? { tilesT: p.tilesT } : {}),
        chunkBytes: options.chunkBytes,
        label: `${options.labelPrefix ?? ""}${p.name}`,
        onBytes: (n: number) => {
          progress.bytesDone += n;
          options.onProgress?.({ ...progress });
        },
      };
      const stored = options.stored?.get(p.name);
      const t = stored ? await uploadStoredQuant(ctx, p.name, stored, upOpts) : await uploadTensor(ctx, ckpt.get(p.name), p.dtype, upOpts);
      out.set(p.name, t);
      if (t.dtype === "f32" || t.dtype === "f16") await scan.add(t, p.name);
      if (p.tilesT && !quantTiles) {
        // The scan above was encoded first; the row-major buffer goes back to the pool at once.
        out.set(p.name, await toTilesLayout(ctx, t, p.tilesT));
        t.dispose();
      }
      progress.tensorsDone++;
      options.onProgress?.({ ...progress });
      sinceSync += p.gpuBytes;
      if (sinceSync >= SYNC_EVERY_BYTES) {
        await ctx.sync();
        sinceSync = 0;
      }
    }
    const bad = await scan.read();
    await ctx.sync();
    if (bad.length > 0) {
      const { name, count } = bad[0]!;
      const more = bad.length > 1 ? ` (and ${bad.length - 1} more tensor(s): ${bad.slice(1, 4).map((b) => `'${b.name}'`).join(", ")}${bad.length > 4 ? ", …" : ""})` : "";
      throw new LoadError(`'${ckpt.get(name).file.name}', tensor '${name}': ${count} NaN/infinite value(s)${more}; a model with non-finite weights cannot run`);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  } finally {
    scan.dispose();
  }
  return out;
}

export interface LoadedModel {
  config: ModelConfig;
  /** config.json's "quantization" record of a directory saved quantized (null otherwise). */
  quantization: QuantizationRecord | null;
  weights: Map<string, Tensor>;
  plan: MemoryPlan;
  check: WeightCheck;
  /** True when the embedding's row count replaced config.json's vocab_size. */
  vocabFromCheckpoint: boolean;
}

/** A model directory's config and checkpoint, checked against each other; nothing uploaded. */
export interface ModelCheckpoint {
  config: ModelConfig;
  /** True when the embedding's row count replaced config.json's vocab_size. */
  vocabFromCheckpoint: boolean;
  ckpt: Checkpoint;
  /** config.json's "quantization" record of a directory saved quantized (null otherwise). */
  quantization: QuantizationRecord | null;
  /** Its weights stored quantized, by `.weight` name (empty otherwise). */
  stored: Map<string, StoredQuant>;
  check: WeightCheck;
  /** The tensors the architecture uses, in load order. */
  names: string[];
}

/**
 * Opens a model directory's config and checkpoint and checks them against each other (names,
 * shapes, layer count, vocabulary). A directory saved quantized has PREFIX.qweight/.scales pairs
 * standing for PREFIX.weight. The caller closes `ckpt`.
 */
export async function openModelCheckpoint(dirOrPath: string | ModelDir): Promise<ModelCheckpoint> {
  const dir = await toModelDir(dirOrPath);
  const base = await loadModelConfig(dir);
  const quantization = parseQuantizationRecord(await readJson(dir, "config.json"), joinName(dir.name, "config.json"));
  const ckpt = await openCheckpoint(dir);
  try {
    const stored = quantization ? storedQuantWeights(ckpt, quantization) : new Map<string, StoredQuant>();
    const shapes = ckpt.shapes();
    for (const [weight, s] of stored) {
      const n = storedQuantNames(weight);
      shapes.delete(n.qweight);
      shapes.delete(n.scales);
      shapes.set(weight, s.shape);
    }
    const { config, changed } = reconcileVocabSize(base, (n) => shapes.get(n));
    const check = checkWeights(config, shapes, `checkpoint '${dir.name}'`);
    const names = expectedTensors(config).map((e) => e.name);
    return { config, vocabFromCheckpoint: changed, ckpt, quantization, stored, check, names };
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}

/**
 * Loads a model directory: config (+ generation config), checkpoint headers, vocabulary size
 * from the embedding, tensor names and shapes checked against the config, memory plan checked,
 * then the weights the architecture uses are uploaded (unused tensors are skipped).
 */
export async function loadModel(ctx: GpuContext, dirOrPath: string | ModelDir, options: Omit<LoadOptions, "names" | "kvCache" | "stored"> & { contextLength?: number } = {}): Promise<LoadedModel> {
  const dir = await toModelDir(dirOrPath);
  const m = await openModelCheckpoint(dir);
  const { config, ckpt, quantization, stored, check, names } = m;
  try {
    if (quantization && options.quantize && options.quantize !== quantization.format) {
      throw new UnsupportedError(`model directory '${dir.name}' is stored as ${quantization.format} (config.json "quantization"); it cannot be loaded as ${options.quantize}`, "load it without --quantize, or quantize the unquantized model");
    }
    const loadOptions: LoadOptions = { ...options, names, stored };
    if (options.contextLength !== undefined) loadOptions.kvCache = { config, contextLength: options.contextLength };
    const plan = planMemory(ckpt, loadOptions);
    const weights = await loadTensors(ctx, ckpt, loadOptions);
    return { config, quantization, weights, plan, check, vocabFromCheckpoint: m.vocabFromCheckpoint };
  } finally {
    await ckpt.close();
  }
}
