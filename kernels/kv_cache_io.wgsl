// kv_cache_io.wgsl: the KV cache bindings of the kernels that write the cache (kv_append,
// rope_kv): k_cache and v_cache [Hkv, S, hd] at bindings 3 and 4 (CT = f32 or f16; PACKED: f16
// pairs as atomic<u32> words, so a word shared with a neighbouring row can be updated by halves),
// and the kernel's Params at binding 5. Included with `#include kv_cache_io`; not a kernel.
// Reference: kvAppendReference in src/ops/attention.ts.

#if PACKED
@group(0) @binding(3) var<storage, read_write> k_cache: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<atomic<u32>>;
#else
@group(0) @binding(3) var<storage, read_write> k_cache: array<{{CT}}>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<{{CT}}>;
#endif
@group(0) @binding(5) var<uniform> params: Params;
