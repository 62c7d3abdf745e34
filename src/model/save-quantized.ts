// Writing a quantized model directory (`onegen quantize`): the same Hugging Face layout as the
// source (config.json, model.safetensors or shards + index, tokenizer and generation files copied)
// with every projection weight (src/quant/policy.ts) stored as its GGUF blocks' two fields:
//   PREFIX.qweight  U8  [N, K] (Q8_0: int8 as two's complement) or [N, K/2] (Q4_0: GGUF nibble order)
//   PREFIX.scales   F16 [N, K/32]
// for PREFIX.weight [N, K]; every other tensor the architecture uses is copied byte for byte in its
// stored dtype (tensors it does not use are left out and listed). config.json gains
// "quantization": {"format", "layout": "onegen-split-blocks-v1", "block_size": 32, "tensors":
// "projections"}; loadModel then loads the pairs as they are (no re-quantizing).
//
// Host only (no GPU): tensors stream from the source files into the output files in chunks of whole
// rows, so peak host memory is about two chunks (default 64 MiB). A weight's scales and its quants
// lie apart in the file (safetensors orders by dtype, then name), so each quantized weight is
// quantized twice, once per field. Written atomically through src/io/output.ts (writeDirAtomic):
// the output must be absent, empty or a model directory this project wrote, never the source.

import { LoadError, UnsupportedError } from "../errors.js";
import { openModelCheckpoint, type CheckpointTensor } from "./checkpoint.js";
import { convertForGpu } from "./checkpoint.js";
import { checkOutput, writeDirAtomic, type InputPath } from "../io/output.js";
import { dtypeBits, type SafetensorsDtype } from "../io/safetensors.js";
import { layoutSafetensors } from "../io/safetensors-write.js";
import { readJson, toModelDir } from "../io/source.js";
import { QK, quantBytes, quantizeBlocksInto, type QuantFormat } from "../quant/formats.js";
import { isQuantizedWeight, quantizationRecord, storedQuantNames } from "../quant/policy.js";

const FLOAT_SOURCES: ReadonlySet<string> = new Set(["F32", "F16", "BF16", "F64"]);
const COPIED = ["generation_config.json", "special_tokens_map.json", "tokenizer.model", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"];
const DEFAULT_CHUNK = 64 << 20;

export interface QuantizeModelOptions {
  /** Names the output in messages (the CLI passes "--out"). */
  flag?: string;
  /** Names the input in messages (the CLI passes "--model"). */
  inputFlag?: string;
  /** Largest shard in bytes (default 2 GiB: one file below that). */
  maxShardBytes?: number;
  /** Source bytes read per step (default 64 MiB). */
  chunkBytes?: number;
  onProgress?: (p: { tensorsDone: number; tensorsTotal: number; tensor: string }) => void;
}

export interface QuantizedModelSummary {
  format: QuantFormat;
  /** Weights quantized, and tensors copied as stored. */
  quantized: number;
  copied: number;
  /** Checkpoint tensors the architecture does not use (not written). */
  dropped: string[];
  /** Bytes of tensor data in the source (used tensors) and in the output. */
  sourceBytes: number;
  outputBytes: number;
  shards: number;
}

/** One tensor of the output: its spec and how to stream its bytes. */
interface OutTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  bytes: number;
  write: (sink: (b: Uint8Array) => Promise<void>) => Promise<void>;
}

/** Quantizes the model in `srcDir` into a new model directory `outDir` (see the file header). */
export async function quantizeModelDir(srcDir: string, outDir: string, format: QuantFormat, opts: QuantizeModelOptions = {}): Promise<QuantizedModelSummary> {
  const flag = opts.flag ?? "quantizeModelDir: outDir";
  const inputs: InputPath[] = [{ flag: opts.inputFlag ?? "srcDir", path: srcDir }];
  await checkOutput({ flag, path: outDir, kind: "model" }, inputs);
  const src = await toModelDir(srcDir);
  const m = await openModelCheckpoint(src);
  const chunk = opts.chunkBytes ?? DEFAULT_CHUNK;
  try {
    if (m.quantization) throw new UnsupportedError(`model directory '${src.name}' is already quantized (${m.quantization.format}, config.json "quantization")`, "quantize the unquantized model");
    const tensors: OutTensor[] = [];
    let sourceBytes = 0;
    let quantized = 0;
    for (const name of m.names) {
      const entry = m.ckpt.get(name);
      const { info } = entry;
      sourceBytes += info.byteLength;
      if (isQuantizedWeight(name) && FLOAT_SOURCES.has(info.dtype)) {
        if (info.shape.length !== 2 || info.shape[1]! % QK !== 0) {
          throw new UnsupportedError(`tensor '${name}' [${info.shape.join(", ")}] cannot be quantized to ${format}: its rows (K = ${info.shape[info.shape.length - 1]}) are not a multiple of ${QK}; nothing was written`);
        }
        const [N, K] = info.shape as [number, number];
        const { qsBytes, scaleBytes } = quantBytes(N, K, format);
        const names = storedQuantNames(name);
        tensors.push(
          { name: names.qweight, dtype: "U8", shape: [N, format === "q8_0" ? K : K / 2], bytes: qsBytes, write: (sink) => streamQuantized(entry, format, "qweight", chunk, sink) },
          { name: names.scales, dtype: "F16", shape: [N, K / QK], bytes: scaleBytes, write: (sink) => streamQuantized(entry, format, "scales", chunk, sink) },
        );
        quantized++;
      } else {
        tensors.push({ name, dtype: info.dtype, shape: info.shape, bytes: info.byteLength, write: (sink) => streamCopy(entry, chunk, sink) });
      }
    }
    // Shards in name order, cut when the next tensor would overflow one (as saveModelDir).
    const maxShard = opts.maxShardBytes ?? 2 ** 31;
    if (!(maxShard > 0)) throw new UnsupportedError(`quantizeModelDir: maxShardBytes must be > 0, got ${maxShard}`);
    const shards: OutTensor[][] = [[]];
    let size = 0;
    let outputBytes = 0;
    for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (size > 0 && size + t.bytes > maxShard) {
        shards.push([]);
        size = 0;
      }
      shards[shards.length - 1]!.push(t);
      size += t.bytes;
      outputBytes += t.bytes;
    }
    const rawConfig = await readJson(src, "config.json");
    if (typeof rawConfig !== "object" || rawConfig === null || Array.isArray(rawConfig)) throw new LoadError(`${src.name}/config.json must be a JSON object`);
    const config = { ...(rawConfig as Record<string, unknown>), quantization: quantizationRecord(format) };
    const json = (o: unknown) => JSON.stringify(o, null, 2) + "\n";
    const shardName = (i: number) => (shards.length === 1 ? "model.safetensors" : `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`);
    let done = 0;
    await writeDirAtomic(
      outDir,
      "model",
      async (w) => {
        const weightMap: Record<string, string> = {};
        for (let i = 0; i < shards.length; i++) {
          const shard = shards[i]!;
          const byName = new Map(shard.map((t) => [t.name, t]));
          const layout = layoutSafetensors(new Map(shard.map((t) => [t.name, { dtype: t.dtype, shape: t.shape }])), { format: "pt" });
          const sink = await w.open(shardName(i));
          try {
            await sink.write(layout.headerBytes);
            for (const name of layout.order) {
              const t = byName.get(name)!;
              opts.onProgress?.({ tensorsDone: done, tensorsTotal: tensors.length, tensor: name });
              let wrote = 0;
              await t.write(async (b) => {
                wrote += b.byteLength;
                await sink.write(b);
              });
              if (wrote !== t.bytes) throw new LoadError(`quantizeModelDir: tensor '${name}': wrote ${wrote} bytes, its header says ${t.bytes}`);
              weightMap[name] = shardName(i);
              done++;
            }
            await sink.sync();
          } finally {
            await sink.close();
          }
        }
        if (shards.length > 1) await w.writeFile("model.safetensors.index.json", json({ metadata: { total_size: outputBytes }, weight_map: weightMap }));
        await w.writeFile("config.json", json(config));
        for (const f of COPIED) {
          if (!(await src.exists(f))) continue;
          const b = await src.open(f);
          try {
            await w.writeFile(f, await b.read(0, b.size));
          } finally {
            await b.close?.();
          }
        }
      },
      { flag, inputs },
    );
    return { format, quantized, copied: tensors.length - 2 * quantized, dropped: [...m.check.unused], sourceBytes, outputBytes, shards: shards.length };
  } finally {
    await m.ckpt.close();
  }
}

/** A stored tensor's bytes, copied in chunks. */
async function streamCopy(entry: CheckpointTensor, chunk: number, sink: (b: Uint8Array) => Promise<void>): Promise<void> {
  const { file, info } = entry;
  for (let at = 0; at < info.byteLength; at += chunk) await sink(await file.readBytes(info.name, at, Math.min(chunk, info.byteLength - at)));
}

/** One field (quants or scales) of a float weight's blocks, quantized in chunks of whole rows. */
async function streamQuantized(entry: CheckpointTensor, format: QuantFormat, field: "qweight" | "scales", chunk: number, sink: (b: Uint8Array) => Promise<void>): Promise<void> {
  const { file, info } = entry;
  const what = `'${file.name}', tensor '${info.name}'`;
  const [N, K] = info.shape as [number, number];
  const srcElemBytes = dtypeBits(info.dtype) / 8;
  const rowsPer = Math.max(1, Math.floor(chunk / (K * srcElemBytes)));
  const rowQ = quantBytes(1, K, format).qsBytes;
  for (let r = 0; r < N; r += rowsPer) {
    const n = Math.min(rowsPer, N - r);
    const f = convertForGpu(await file.readBytes(info.name, r * K * srcElemBytes, n * K * srcElemBytes), info.dtype, "f32", what) as Float32Array;
    const qs = new Uint8Array(n * rowQ);
    const scales = new Uint16Array((n * K) / QK);
    quantizeBlocksInto(f, scales.length, format, qs, scales, 0, `${what} (rows ${r}..${r + n - 1})`);
    await sink(field === "qweight" ? qs : new Uint8Array(scales.buffer));
  }
}
