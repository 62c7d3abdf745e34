// attention_io.wgsl: the bindings the attention kernels (attention, attention_step,
// attention_step_lanes) share: q, the K and V caches, and the output (SPLIT: partial accumulators
// and (m, l) pairs), with the value alias V and the running-max floor NEG. Binding 3 (the key ranges, or the step state) and
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

// Keys [x, y) that row t of a decode step attends to (attention_step, attention_step_lanes): the
// causal range of the row at cache position p0 + t, cut to the sliding window (window > 0, else
// full causal) and to the cache capacity S.
fn step_row_keys(p0: u32, t: u32, S: u32, window: u32) -> vec2<u32> {
  let end = p0 + t + 1u;
  let hi = min(end, S);
  var lo = 0u;
  if (window > 0u && end > window) { lo = end - window; }
  return vec2<u32>(min(lo, hi), hi);
}

// The keys of `r` that split `split` of n_splits covers: chunks of c = chunk, or of
// max(min_chunk, ceil(len / n_splits)) when chunk = 0; the last split runs to r.y.
fn split_keys(r: vec2<u32>, split: u32, n_splits: u32, chunk: u32, min_chunk: u32) -> vec2<u32> {
  var c = chunk;
  if (c == 0u) { c = max(min_chunk, (r.y - r.x + n_splits - 1u) / n_splits); }
  let lo = min(r.x + split * c, r.y);
  var hi = r.y;
  if (split + 1u < n_splits) { hi = min(lo + c, r.y); }
  return vec2<u32>(lo, hi);
}
