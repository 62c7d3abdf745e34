// Public API of onegen-webgpu. Runtime-neutral: nothing here imports Node built-ins; the Node GPU
// provider is loaded lazily inside openDevice().
export * from "./errors.js";
export { openDevice, describeContext, OPTIONAL_FEATURES, type OpenDeviceOptions } from "./gpu/device.js";
export { GpuContext, type RuntimeLimits, type RuntimeStats, type AdapterDescription, type BindingResource, type BufferWindow, type WindowPlan } from "./gpu/context.js";
export { Tensor, DTYPE_BYTES, numel, type DType, type HostArray } from "./gpu/tensor.js";
export { BufferPool, sizeClass, type PoolStats } from "./gpu/pool.js";
export { KernelRegistry, type Kernel, type KernelVariant, type BindingKind } from "./gpu/kernels.js";
export { Profiler, type KernelTiming } from "./gpu/profiler.js";
export { preprocessWgsl, type Defines, type DefineValue } from "./gpu/wgsl.js";
export { Params, grid } from "./ops/common.js";
export { add, addReference, addVariant } from "./ops/elementwise.js";
export * from "./util/f16.js";
export { Rng } from "./util/rng.js";
