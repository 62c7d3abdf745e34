// attention_io.wgsl: the bindings the attention kernels (attention, attention_step) share: q,
// the K and V caches, and the output (SPLIT: partial accumulators and (m, l) pairs), with the
// value alias V and the running-max floor NEG. Binding 3 (the key ranges, or the step state) and
// Params are the kernel's own. Included with `#include attention_io`; not a kernel.
// Reference: attentionReference in src/ops/attention.ts.

alias V = {{V}};
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<V>;
@group(0) @binding(1) var<storage, read> k_cache: array<{{CV}}>;
@group(0) @binding(2) var<storage, read> v_cache: array<{{CV}}>;
#if SPLIT
@group(0) @binding(4) var<storage, read_write> acc: array<V>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
#else
@group(0) @binding(4) var<storage, read_write> acc: array<V>;
@group(0) @binding(5) var<uniform> params: Params;
#endif
