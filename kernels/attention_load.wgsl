// attention_load.wgsl: KV-cache element loads shared by the attention kernels (attention.wgsl,
// attention_step.wgsl, attention_step_lanes.wgsl; included with `#include attention_load`; not a
// kernel). Reference: attentionReference in src/ops/attention.ts. The including kernel declares
// k_cache, v_cache (array<CV>) and `alias V`, and defines VEC4 and PACKED: load_k(i) / load_v(i)
// widen cache element (or vec4 slot) i to f32 (PACKED: f16 pairs in u32 words); hsum(x) sums a V.

// Cache element (or vec4 slot) i widened to f32.
fn load_k(i: u32) -> V {
#if PACKED
#if VEC4
  return f16p_vec4(k_cache[i]);
#else
  return f16p_at(k_cache[i >> 1u], i);
#endif
#else
  return V(k_cache[i]);
#endif
}
fn load_v(i: u32) -> V {
#if PACKED
#if VEC4
  return f16p_vec4(v_cache[i]);
#else
  return f16p_at(v_cache[i >> 1u], i);
#endif
#else
  return V(v_cache[i]);
#endif
}

fn hsum(x: V) -> f32 {
#if VEC4
  return (x.x + x.y) + (x.z + x.w);
#else
  return x;
#endif
}
