// What the runtime knows of its device: the limits it honours and the adapter's description
// (filled by openDevice, src/gpu/device.ts; printed by `onegen device`).

/** Limits this runtime honours (may be stricter than the device's, e.g. a forced binding size for tests). */
export interface RuntimeLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  maxUniformBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
  minUniformBufferOffsetAlignment: number;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** "node-dawn" | "navigator.gpu" | "injected" */
  backend: string;
  isSoftware: boolean;
  /** What the adapter offers (the device gets the optional features and these limits' values). */
  features: readonly string[];
  limits: Readonly<Record<string, number>>;
  /** Smallest subgroup the adapter may run (GPUAdapterInfo.subgroupMinSize); absent when unknown. */
  subgroupMinSize?: number;
}
