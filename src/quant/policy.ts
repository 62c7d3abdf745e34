// Which checkpoint tensors `quantize` turns into Q8_0 / Q4_0 blocks, and the config.json record of a
// quantized model directory.
//
// Quantized: the seven projection weights of every decoder layer (q, k, v, o, gate, up, down:
// ~97% of a Llama-2-7B's non-embedding bytes; every token reads them all). Kept as loaded (f16, or
// f32 for F32 checkpoints): embeddings (a gather reads one row per token, so their bytes do not
// cost decode time, and kernels/embedding.wgsl reads float tables only), norms and biases (tiny),
// and lm_head, which llama.cpp also keeps at higher precision (Q6_K in its Q4_0 files) because
// logits are most sensitive to it; tied embeddings are the same tensor anyway. Not yet measured
// here against a quantized lm_head (issue 17, item 5).

import { LoadError } from "../errors.js";
import { isQuantFormat, QK, QUANT_LAYOUT, type QuantFormat } from "./formats.js";

const PROJECTION = /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** Whether `quantize` applies to this checkpoint tensor (a decoder layer's projection weight). */
export function isQuantizedWeight(name: string): boolean {
  return PROJECTION.test(name);
}

/** Tensor names of a stored quantized weight `PREFIX.weight`: `PREFIX.qweight` (U8) and `PREFIX.scales` (F16). */
export function storedQuantNames(weightName: string): { qweight: string; scales: string } {
  const prefix = weightName.replace(/\.weight$/, "");
  return { qweight: `${prefix}.qweight`, scales: `${prefix}.scales` };
}

/** config.json's "quantization" object of a quantized model directory. */
export interface QuantizationRecord {
  format: QuantFormat;
  layout: typeof QUANT_LAYOUT;
  block_size: typeof QK;
  /** Which tensors are quantized: "projections" (isQuantizedWeight). */
  tensors: "projections";
}

export function quantizationRecord(format: QuantFormat): QuantizationRecord {
  return { format, layout: QUANT_LAYOUT, block_size: QK, tensors: "projections" };
}

/** Parses config.json's "quantization" (absent → null); anything this reader does not know is refused. */
export function parseQuantizationRecord(config: unknown, file: string): QuantizationRecord | null {
  if (typeof config !== "object" || config === null || !("quantization" in config)) return null;
  const q = (config as { quantization: unknown }).quantization;
  if (q === null || q === undefined) return null;
  if (typeof q !== "object" || Array.isArray(q)) throw new LoadError(`'${file}': "quantization" must be an object, got ${JSON.stringify(q)}`);
  const r = q as Record<string, unknown>;
  if (!isQuantFormat(r.format)) throw new LoadError(`'${file}': quantization.format must be "q8_0" or "q4_0", got ${JSON.stringify(r.format)}`);
  if (r.layout !== QUANT_LAYOUT) throw new LoadError(`'${file}': quantization.layout must be "${QUANT_LAYOUT}", got ${JSON.stringify(r.layout)}`);
  if (r.block_size !== QK) throw new LoadError(`'${file}': quantization.block_size must be ${QK}, got ${JSON.stringify(r.block_size)}`);
  if (r.tensors !== "projections") throw new LoadError(`'${file}': quantization.tensors must be "projections", got ${JSON.stringify(r.tensors)}`);
  return { format: r.format, layout: QUANT_LAYOUT, block_size: QK, tensors: "projections" };
}
