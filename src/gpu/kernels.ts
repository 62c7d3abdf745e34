// Kernel registry: turns a typed variant description into a compute pipeline, once per variant.
// Cache key: the variant's `name`, which each op builds from the parameters that change the
// WGSL (dtype, tile and workgroup sizes, optional fusions) so the same name always means the same
// code. Pipelines are created lazily with createComputePipelineAsync; compile and validation
// errors are rethrown as GpuValidationError naming the kernel, its file and the compiler message.

import { GpuValidationError, UnsupportedError } from "../errors.js";
import { KERNEL_SOURCES } from "../generated/kernel-sources.js";
import { preprocessWgsl, type Defines } from "./wgsl.js";

/** How a kernel binds each buffer, in binding order (all in group 0). */
export type BindingKind = "read" | "read_write" | "uniform";

export interface KernelVariant {
  /** The WGSL file, kernels/<file>.wgsl. */
  readonly file: string;
  /** Stable name of this variant, e.g. "gemv_f16_wg256": the cache key and every GPU label. */
  readonly name: string;
  readonly defines: Defines;
  /** Binding kinds in @binding order: inputs first, outputs next, the params uniform last. */
  readonly bindings: readonly BindingKind[];
  readonly entryPoint?: string;
  /** Device features the variant needs, e.g. "shader-f16", "subgroups". */
  readonly features?: readonly GPUFeatureName[];
}

export interface Kernel {
  readonly name: string;
  readonly variant: KernelVariant;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

export class KernelRegistry {
  private readonly cache = new Map<string, Promise<Kernel>>();
  private readonly signatures = new Map<string, string>();

  constructor(
    private readonly device: GPUDevice,
    private readonly features: ReadonlySet<string>,
    private readonly sources: Readonly<Record<string, string>> = KERNEL_SOURCES,
  ) {}

  /** The pipeline for a variant, created on first use. */
  get(variant: KernelVariant): Promise<Kernel> {
    const signature = JSON.stringify([variant.file, variant.entryPoint ?? "main", variant.defines, variant.bindings]);
    const known = this.signatures.get(variant.name);
    if (known !== undefined && known !== signature) {
      throw new Error(`kernel variant name '${variant.name}' is used for two different variants: the op's naming function misses a parameter`);
    }
    let p = this.cache.get(variant.name);
    if (!p) {
      this.signatures.set(variant.name, signature);
      p = this.create(variant);
      this.cache.set(variant.name, p);
      p.catch(() => {
        this.cache.delete(variant.name);
        this.signatures.delete(variant.name);
      });
    }
    return p;
  }

  /** Names of the variants created so far. */
  names(): string[] {
    return [...this.cache.keys()];
  }

  /** The preprocessed WGSL of a variant (for dumps and error messages). */
  source(variant: KernelVariant): string {
    const raw = this.sources[variant.file];
    if (raw === undefined) throw new UnsupportedError(`kernel '${variant.name}': no kernels/${variant.file}.wgsl was embedded (run the build)`);
    return preprocessWgsl(raw, variant.defines, variant.file, this.sources);
  }

  private async create(variant: KernelVariant): Promise<Kernel> {
    for (const f of variant.features ?? []) {
      if (!this.features.has(f)) {
        throw new UnsupportedError(`kernel '${variant.name}' needs the device feature '${f}', which this device lacks`, "choose a variant without it (the op's resolver does this when no variant is forced)");
      }
    }
    const code = this.source(variant);
    const device = this.device;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code, label: variant.name });
    const layout = device.createBindGroupLayout({
      label: variant.name,
      entries: variant.bindings.map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer:
          kind === "uniform"
            ? { type: "uniform" as const, hasDynamicOffset: true }
            : { type: kind === "read" ? ("read-only-storage" as const) : ("storage" as const) },
      })),
    });
    const pipelineLayout = device.createPipelineLayout({ label: variant.name, bindGroupLayouts: [layout] });
    const scopeError = device.popErrorScope();
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await device.createComputePipelineAsync({
        label: variant.name,
        layout: pipelineLayout,
        compute: { module, entryPoint: variant.entryPoint ?? "main" },
      });
    } catch (e) {
      const info = await module.getCompilationInfo().catch(() => null);
      const messages = (info?.messages ?? [])
        .filter((m) => m.type === "error")
        .map((m) => `kernels/${variant.file}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
      const detail = messages.length ? messages.join("\n  ") : e instanceof Error ? e.message : String(e);
      throw new GpuValidationError(`kernel '${variant.name}' (kernels/${variant.file}.wgsl) failed to compile:\n  ${detail}`);
    }
    const err = await scopeError;
    if (err) throw new GpuValidationError(`kernel '${variant.name}' (kernels/${variant.file}.wgsl): ${err.message}`);
    return { name: variant.name, variant, pipeline, layout };
  }
}
