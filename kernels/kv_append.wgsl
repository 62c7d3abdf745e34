// kv_append.wgsl: writes new key/value rows into a layer's KV cache, in place
// (reference: kvAppendReference in src/ops/attention.ts).
//   k_cache[g, positions[t], d] = k[t, g, d];  v_cache[g, positions[t], d] = v[t, g, d]
//   for t < T, g < Hkv, d < hd. The cache element type CT is f32, or f16 with F16 (one
//   round-to-nearest f32 → f16 conversion on store).
//
// Bindings (group 0):
//   0 k:         array<f32>  read        [T, Hkv, hd]
//   1 v:         array<f32>  read        [T, Hkv, hd]
//   2 positions: array<u32>  read        [T]            (cache positions, read on the GPU)
//   3 k_cache:   array<CT>   read_write  [Hkv, S, hd]
//   4 v_cache:   array<CT>   read_write  [Hkv, S, hd]
//   5 params:    Params      uniform
// Mapping: one invocation per (t, g) row pair, looping over hd (k and v). A position ≥ S writes
// nothing (the GPU cannot raise an error; the host never sees positions) — callers size S.
// Rows with equal positions race (last writer unspecified), as any scatter does.
// PACKED (f16 cache without shader-f16): the caches are array<atomic<u32>> of packed pairs. A
// word whose halves both belong to this row is stored whole; with odd hd a row's first or last
// word is shared with the neighbouring row (another invocation), so only this row's half is
// changed, by atomicAnd (clear) then atomicOr (set): neither writer loses the other's half.
#include f16_enable
#include f16_packed

struct Params {
  T: u32,
  Hkv: u32,
  S: u32,     // cache capacity in positions
  hd: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
#include kv_cache_io

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (idx >= params.T * params.Hkv) { return; }
  let t = idx / params.Hkv;
  let g = idx % params.Hkv;
  let pos = positions[t];
  if (pos >= params.S) { return; }
  let src = idx * params.hd;
  let dst = (g * params.S + pos) * params.hd;
#if PACKED
  let end = dst + params.hd;
  let w_end = (end + 1u) >> 1u;
  for (var w = dst >> 1u; w < w_end; w++) {
    let e = 2u * w;
    if (e >= dst && e + 1u < end) {
      atomicStore(&k_cache[w], f16p_pair(k[src + e - dst], k[src + e + 1u - dst]));
      atomicStore(&v_cache[w], f16p_pair(v[src + e - dst], v[src + e + 1u - dst]));
    } else {
      let own = select(e + 1u, e, e >= dst);   // the one element of this word in the row
      atomicAnd(&k_cache[w], f16p_keep_mask(own));
      atomicOr(&k_cache[w], f16p_half_bits(k[src + own - dst], own));
      atomicAnd(&v_cache[w], f16p_keep_mask(own));
      atomicOr(&v_cache[w], f16p_half_bits(v[src + own - dst], own));
    }
  }
#else
  for (var d = 0u; d < params.hd; d++) {
    k_cache[dst + d] = {{CT}}(k[src + d]);
    v_cache[dst + d] = {{CT}}(v[src + d]);
  }
#endif
}
