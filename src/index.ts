// Public API of onegen-webgpu. Runtime-neutral: nothing here imports Node built-ins at load time
// (the Node GPU provider and node:fs are imported lazily where they are needed).

// Runtime foundation
export * from "./errors.js";
export { openDevice, describeContext, OPTIONAL_FEATURES, BROWSER_LIKE, type OpenDeviceOptions } from "./gpu/device.js";
export { GpuContext, type RuntimeLimits, type RuntimeStats, type AdapterDescription, type BindingResource, type BufferWindow, type WindowPlan } from "./gpu/context.js";
export { Tensor, DTYPE_BYTES, numel, type DType, type HostArray } from "./gpu/tensor.js";
export { BufferPool, sizeClass, type PoolStats } from "./gpu/pool.js";
export { KernelRegistry, type Kernel, type KernelVariant, type BindingKind } from "./gpu/kernels.js";
export { Profiler, type KernelTiming } from "./gpu/profiler.js";
export { CapturedProgram } from "./gpu/capture.js";
export { preprocessWgsl, type Defines, type DefineValue } from "./gpu/wgsl.js";
export { Params, grid } from "./ops/common.js";
export * from "./util/f16.js";
export { Rng } from "./util/rng.js";

// Kernels (launchers + CPU references)
export * from "./ops/elementwise.js";
export * from "./ops/linear.js";
export * from "./ops/rmsnorm.js";
export * from "./ops/rope.js";
export * from "./ops/attention.js";
export * from "./ops/swiglu.js";
export * from "./ops/embedding.js";
export * from "./ops/sample.js";
export * from "./ops/search.js";
export * from "./ops/l2norm.js";
export * from "./ops/decode_state.js";
export * from "./ops/nonfinite.js";
export * from "./ops/tiled-copy.js";

// Checkpoints, configs, tokenizers
export * from "./io/source.js";
export * from "./io/safetensors.js";
export * from "./io/safetensors-write.js";
export * from "./io/strict-json.js";
export * from "./model/checkpoint.js";
export * from "./model/memory-plan.js";
export * from "./model/config.js";
export * from "./tokenizer.js";

// Decoder, generation
export * from "./model/decoder.js";
export * from "./model/session.js";
export * from "./model/hooks.js";
export * from "./model/load.js";

// OneGen retrieval
export * from "./onegen/index.js";
export * from "./onegen/index-format.js";
export * from "./onegen/index-files.js";
export * from "./onegen/encode.js";
export * from "./onegen/fingerprint.js";
export {
  detect as onegenDetect,
  resolve as onegenResolve,
  record as onegenRecord,
  loopStateWords as onegenLoopStateWords,
  detectReference as onegenDetectReference,
  resolveReference as onegenResolveReference,
  planReference as onegenPlanReference,
  RECORD_SEARCHED,
  RECORD_OVERFLOW,
  RECORD_LENGTH_MASK,
  type LoopParams,
  type HostLoopState,
  generateOnePass,
  RetrievalHook,
  type InLoopRetrieval,
  type RetrievalHit,
  type RetrievalToken,
  type RetrievalGenerateOptions,
} from "./onegen/loop.js";

// Training: backward kernels
export * from "./train/ops/linear_backward.js";
export * from "./train/ops/rmsnorm_backward.js";
export * from "./train/ops/rope_backward.js";
export * from "./train/ops/attention_backward.js";
export * from "./train/ops/swiglu_backward.js";
export * from "./train/ops/embedding_backward.js";
export * from "./train/ops/residual_backward.js";
export * from "./train/ops/cross_entropy.js";
export { numericGrad, dot64 } from "./train/ops/gradcheck.js";

// OneGen tasks (protocol, event stream, the tasks, output parsing), two-pass baseline, traces
export * from "./onegen/defaults.js";
export * from "./onegen/token-names.js";
export * from "./onegen/protocol.js";
export * from "./onegen/stream.js";
export { checkDocToken } from "./onegen/task-runner.js";
export * from "./onegen/entity-linking.js";
export * from "./onegen/multihop-qa.js";
export * from "./onegen/rerank.js";
export * from "./onegen/parse-output.js";
export * from "./onegen/baseline.js";
export * from "./onegen/trace.js";

// Training: losses, optimizer, LoRA, training step
export * from "./train/losses.js";
export * from "./train/optim.js";
export * from "./train/lora.js";
export * from "./train/model.js";
export {
  TrainData,
  tokenizeSegments,
  collate,
  type SegmentKind as TrainSegmentKind,
  type TokenizedSequence,
  type DocRef,
  type TrainSample,
  type DbDocument,
  type DataSpec,
  type DataFiles,
  type CollateOptions,
  type CollatedBatch,
} from "./train/data.js";
export * from "./train/trainer.js";
export * from "./train/save.js";
