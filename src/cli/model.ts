// Shared by the model commands: open the device, load a model directory with a progress bar,
// and turn --ids / --text / --prompt into token ids.
import { openDevice } from "../gpu/device.js";
import type { GpuContext } from "../gpu/context.js";
import { UsageError } from "../errors.js";
import { loadDecoder, type LoadDecoderOptions, type LoadedDecoder } from "../model/load.js";
import { parseIdList, type Tokenizer } from "../tokenizer.js";
import { createProgressBar } from "./progress.js";
import { numberFlag, sizeFlag, type ParsedArgs } from "./args.js";
import { loadModelConfig } from "../model/checkpoint.js";
import { isQuantFormat, QUANT_FORMATS, type QuantFormat } from "../quant/formats.js";

export const MODEL_FLAGS = ["model", "dtype", "context", "gpu-memory", "quantize"] as const;

/** --quantize FORMAT (q8_0 | q4_0): the projections' block format when loading (src/quant/policy.ts). */
export function quantizeFlag(args: ParsedArgs, command: string): QuantFormat | undefined {
  const v = args.flags.get("quantize");
  if (v === undefined) return undefined;
  if (!isQuantFormat(v)) throw new UsageError(`${command}: --quantize must be ${QUANT_FORMATS.join(" or ")}, got '${v}'`);
  return v;
}

/** The warning line for checkpoint tensors the architecture does not use (they are not loaded). */
export function unusedTensorsWarning(command: string, dir: string, unused: readonly string[]): string | null {
  if (unused.length === 0) return null;
  const list = unused.length > 5 ? `${unused.slice(0, 5).join(", ")} and ${unused.length - 5} more` : unused.join(", ");
  return `onegen ${command}: warning: '${dir}' holds ${unused.length} tensor(s) the model does not use, not loaded: ${list}\n`;
}

export async function openModel(
  args: ParsedArgs,
  command: string,
  opts: { contextLength?: number; reserve?: readonly { what: string; bytes: number }[] } = {},
): Promise<{ ctx: GpuContext; model: LoadedDecoder }> {
  const dir = args.flags.get("model");
  if (!dir) throw new UsageError(`${command}: --model DIR is required`);
  const dtype = args.flags.get("dtype") ?? "auto";
  if (dtype !== "auto" && dtype !== "f16" && dtype !== "f32") throw new UsageError(`${command}: --dtype must be auto, f16 or f32, got '${dtype}'`);
  const budget = sizeFlag(args, "gpu-memory", command);
  const quantize = quantizeFlag(args, command);
  // --context bounds the KV cache: checked against the config before anything is loaded, then
  // added to the memory plan with the weights.
  const context = numberFlag(args, "context", command, { integer: true, min: 1 }) ?? opts.contextLength;
  if (context !== undefined) {
    const maxPos = (await loadModelConfig(dir)).maxPositionEmbeddings;
    if (context > maxPos) throw new UsageError(`${command}: --context ${context} exceeds the model's context of ${maxPos} positions (max_position_embeddings in '${dir}/config.json')`);
  }
  return loadOnDevice(dir, command, {
    dtype,
    gemvLayout: "auto", // inference only: the projections' layout measured faster on this device class
    ...(quantize ? { quantize } : {}),
    ...(context !== undefined ? { contextLength: context } : {}),
    ...(opts.reserve ? { reserve: opts.reserve } : {}),
    ...(budget !== undefined ? { memoryBudgetBytes: budget } : {}),
    quiet: args.bools.has("quiet"),
  });
}

/**
 * Opens the device and loads the model directory `dir` (a progress bar on stderr unless quiet, a
 * warning for tensors the model does not use); the device is destroyed when loading fails.
 */
export async function loadOnDevice(
  dir: string,
  command: string,
  o: Omit<LoadDecoderOptions, "onProgress"> & { memoryBudgetBytes?: number; quiet?: boolean },
): Promise<{ ctx: GpuContext; model: LoadedDecoder }> {
  const { memoryBudgetBytes, quiet, ...load } = o;
  const ctx = await openDevice(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {});
  try {
    const bar = quiet ? null : createProgressBar("loading");
    const model = await loadDecoder(ctx, dir, { ...load, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) });
    bar?.done();
    const warn = unusedTensorsWarning(command, dir, model.unusedTensors);
    if (warn) process.stderr.write(warn);
    return { ctx, model };
  } catch (e) {
    ctx.destroy();
    throw e;
  }
}

/** Ids from --ids LIST, or from text (--text/--prompt) through the tokenizer. */
export function inputIds(args: ParsedArgs, textFlag: "text" | "prompt", tokenizer: Tokenizer | null, command: string): number[] {
  const ids = args.flags.get("ids");
  const text = args.flags.get(textFlag);
  if ((ids === undefined) === (text === undefined)) throw new UsageError(`${command}: give exactly one of --ids LIST or --${textFlag} TEXT`);
  if (ids !== undefined) {
    const list = parseIdList(ids);
    if (list.length === 0) throw new UsageError(`${command}: --ids is empty`);
    return list;
  }
  if (!tokenizer) throw new UsageError(`${command}: --${textFlag} needs a tokenizer, but the model directory has no tokenizer.json`, "pass token ids with --ids instead");
  const list = tokenizer.encode(text!);
  if (list.length === 0) throw new UsageError(`${command}: --${textFlag} encodes to no tokens`);
  return list;
}
