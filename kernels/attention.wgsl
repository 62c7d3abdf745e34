// attention.wgsl: scaled-dot-product attention of f32 queries over a KV cache with per-query key
// ranges, online softmax over key tiles (reference: attentionReference in src/ops/attention.ts).
//   For query row t, head h (kv head g = h / group), keys j in [lo_t, hi_t) = ranges[t]:
//     s_j = scale · q[t,h,:]·k_cache[g,j,:]
//     out[t,h,:] = Σ_j softmax(s)_j · v_cache[g,j,:]          (empty range → zeros, not NaN)
//   hi_t is clamped to S and lo_t to hi_t, so a bad range reads nothing out of bounds.
//
// Bindings (group 0). V = vec4<f32> with VEC4 (hd % 4 == 0), else f32; "slots" = hd/4 or hd.
//   0 q:        array<V>   read        [T, H, hd] f32
//   1 k_cache:  array<CV>  read        [Hkv, S, hd]  (CV = f32/f16, vec4 of it with VEC4)
//   2 v_cache:  array<CV>  read        [Hkv, S, hd]
//   3 ranges:   array<u32> read        [T, 2]   (lo, hi) cache positions, read on the GPU
//  without SPLIT (prefill variant):
//   4 out:      array<V>   read_write  [T, H, hd] f32 (also the running accumulator)
//   5 params:   Params     uniform
//  with SPLIT (split-K "flash-decoding" variant; attention_combine.wgsl finishes it):
//   4 part_acc: array<V>   read_write  [T, H, n_splits, hd]  unnormalised Σ p_j·v_j, p_j = exp(s_j − m)
//   5 part_ml:  array<f32> read_write  [T, H, n_splits, 2]   (running max m, Σ p_j)
//   6 params:   Params     uniform
//
// Mapping: one invocation per (row t, head h, split); consecutive invocations are consecutive
// splits, then heads (heads of one GQA group read the same K/V rows back to back). A split covers
// keys [lo + split·chunk, lo + (split+1)·chunk) of the row's range; the last split runs to hi
// whatever its length, so the result never depends on the host's split count (which only decides
// parallelism). Without SPLIT n_splits = 1.
// Keys are processed in tiles of 4 held as one vec4 of scores: one pass over hd computes the 4
// dot products (each q load reused 4×), then the online-softmax update m' = max(m, tile max),
// α = exp(m − m'), l = α·l + Σ p, and one pass acc = α·acc + Σ_k p_k·v_k over hd. Tail keys of a
// tile are masked (score NEG → p = 0; their row index is clamped to a valid key). Nothing of size
// T×T (or T×keys) exists in memory; the accumulator lives in the invocation's own output row.
// Accumulation: f32 throughout; f16 cache values are widened on load. The running max starts at
// NEG (finite: WGSL implementations may assume no infinities), exp() only sees arguments ≤ 0.
//
// Why no private arrays: llvmpipe lowers dynamically indexed function-local arrays to if-ladders.
// The first version (q and acc in private arrays, hd/qb/KT compile-time constants, qb query heads
// of a GQA group per invocation sharing K/V loads) took 287 s to compile for hd 128 × qb 7, and
// with runtime loop bounds still 2.5–13.7 s and ran at 0.1 GB/s in decode (TinyLlama heads, 4096
// keys, f16: 31–49 ms). This version: 17–29 ms there, compiles in < 1 s. Measured on lavapipe,
// 2 cores, 2026-11-24; full figures in the header of src/ops/attention.ts.
// PACKED (f16 cache without shader-f16): CV = u32 (scalar: element e is in word e >> 1) or
// vec2<u32> (VEC4: one vec4 slot in two words), packed pairs widened exactly to f32.
#include f16_enable
#include f16_packed
// The key loop (online softmax over 4-key tiles) is attend_keys in kernels/attention_core.wgsl,
// shared with attention_step.wgsl.

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  S: u32,         // cache capacity in positions
  group: u32,     // H / Hkv
  n_splits: u32,  // key splits per row (1 without SPLIT)
  chunk: u32,     // keys per split (ignored without SPLIT)
  units: u32,     // T · H · n_splits invocations
  scale: f32,
  slots: u32,     // V elements per row: hd/4 with VEC4, else hd
  _pad0: u32,
  _pad1: u32,
}

#include attention_io
@group(0) @binding(3) var<storage, read> ranges: array<u32>;

#include attention_load
#include attention_core

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let unit = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (unit >= params.units) { return; }
  let split = unit % params.n_splits;
  let row = unit / params.n_splits;   // t · H + h
  let t = row / params.H;
  let g = (row % params.H) / params.group;
  let ns = params.slots;

  let hi_row = min(ranges[2u * t + 1u], params.S);
  let lo_row = min(ranges[2u * t], hi_row);
  var lo = lo_row;
  var hi = hi_row;
#if SPLIT
  lo = min(lo_row + split * params.chunk, hi_row);
  if (split + 1u < params.n_splits) { hi = min(lo + params.chunk, hi_row); }
  let a0 = (row * params.n_splits + split) * ns;
#else
  let a0 = row * ns;
#endif
  let q0 = row * ns;
  let ml = attend_keys(q0, a0, g * params.S, lo, hi);
  let m = ml.x;
  let l = ml.y;

#if SPLIT
  let p_idx = row * params.n_splits + split;
  part_ml[2u * p_idx] = m;
  part_ml[2u * p_idx + 1u] = l;
#else
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var i = 0u; i < ns; i++) { acc[a0 + i] = acc[a0 + i] * inv; }
#endif
}
