// rope_kv.wgsl: RoPE on the q and k heads of a decode step's live rows and the KV-cache append,
// in one dispatch (reference: ropeKvReference in src/ops/rope-kv.ts = ropeReference on the q and
// k heads + kvAppendReference). T and the positions are read on the GPU from the step state.
//   T = step[STEP_ROWS], p0 = step_first_pos(step[STEP_LAST], T); row t sits at position p0 + t.
//   A qkv row holds H q heads, then Hkv k heads, then Hkv v heads, hd elements each.
//   q heads: rotated in place in qkv (rotate-half, as rope.wgsl);
//   k heads: rotated and written to k_cache[g, p0 + t, :] (qkv's k is left as it was);
//   v heads: copied to v_cache[g, p0 + t, :].
//   A position ≥ S writes no cache row (the q heads are still rotated), as kv_append.wgsl.
// The angle and sin/cos are rope.wgsl's (#include rope_sincos: range reduction + polynomials), so
// q and k rotate exactly as the rope kernel rotates them.
//
// Bindings (group 0):
//   0 step:     array<u32>  read        [8]   step state (kernels/step_state.wgsl)
//   1 inv_freq: array<f32>  read        [hd/2]
//   2 qkv:      array<f32>  read_write  [maxRows, (H + 2·Hkv)·hd]
//   3 k_cache:  array<CT>   read_write  [Hkv, S, hd]   (CT = f32 | f16; atomic<u32> packed pairs with PACKED)
//   4 v_cache:  array<CT>   read_write  [Hkv, S, hd]
//   5 params:   Params      uniform
// Mapping: a fixed grid of J·(H + Hkv) invocations, J = ceil(hd/4), independent of T: invocation
// (j, slot) (consecutive j consecutive) owns the rotation pairs i0 = 2j and i1 = 2j + 1 (if
// i1 < hd/2), i.e. elements {i0, i1, i0 + hd/2, i1 + hd/2}, of head `slot` (slot < H: q head;
// else kv head slot − H: its k and v rows), and loops over the live rows t < T, computing the two
// angles' sin/cos once per row. All arithmetic f32.
// PACKED (f16 cache without shader-f16): with hd/2 even, an invocation's elements fill whole
// words ({i0, i1} and {i0 + hd/2, i1 + hd/2}), stored with atomicStore; with hd/2 odd a word
// may be shared with the neighbouring invocation, so each element's half is changed alone
// (atomicAnd then atomicOr, as kv_append.wgsl), neither writer losing the other's half.
#include f16_enable
#include f16_packed
#include step_state
#include rope_sincos

struct Params {
  H: u32,
  Hkv: u32,
  hd: u32,
  half: u32,      // hd / 2
  S: u32,         // cache capacity in positions
  J: u32,         // ceil(hd / 4): pair-of-pairs per head
  stride: u32,    // qkv row length (H + 2·Hkv)·hd
  max_rows: u32,  // rows qkv holds (T is clamped to it)
}

@group(0) @binding(0) var<storage, read> step: array<u32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
#include kv_cache_io

#if PACKED
// Element e's half of its word set to a (the other half kept).
fn put_k1(e: u32, a: f32) {
  atomicAnd(&k_cache[e >> 1u], f16p_keep_mask(e));
  atomicOr(&k_cache[e >> 1u], f16p_half_bits(a, e));
}
fn put_v1(e: u32, a: f32) {
  atomicAnd(&v_cache[e >> 1u], f16p_keep_mask(e));
  atomicOr(&v_cache[e >> 1u], f16p_half_bits(a, e));
}
#endif

// Elements (e, e + 1, e + half, e + half + 1) of a k row (rotated) and a v row at cache element dst;
// `two`: e + 1 is a pair of this invocation.
fn store_kv(dst: u32, e: u32, two: bool, k: vec4<f32>, v: vec4<f32>) {
  let half = params.half;
#if PACKED
  if (two && (half & 1u) == 0u) {
    // dst and e are even (hd even, e = 2j), half even: two whole words per cache
    atomicStore(&k_cache[(dst + e) >> 1u], f16p_pair(k.x, k.y));
    atomicStore(&k_cache[(dst + e + half) >> 1u], f16p_pair(k.z, k.w));
    atomicStore(&v_cache[(dst + e) >> 1u], f16p_pair(v.x, v.y));
    atomicStore(&v_cache[(dst + e + half) >> 1u], f16p_pair(v.z, v.w));
  } else {
    put_k1(dst + e, k.x);
    put_k1(dst + e + half, k.z);
    put_v1(dst + e, v.x);
    put_v1(dst + e + half, v.z);
    if (two) {
      put_k1(dst + e + 1u, k.y);
      put_k1(dst + e + half + 1u, k.w);
      put_v1(dst + e + 1u, v.y);
      put_v1(dst + e + half + 1u, v.w);
    }
  }
#else
  k_cache[dst + e] = {{CT}}(k.x);
  k_cache[dst + e + half] = {{CT}}(k.z);
  v_cache[dst + e] = {{CT}}(v.x);
  v_cache[dst + e + half] = {{CT}}(v.z);
  if (two) {
    k_cache[dst + e + 1u] = {{CT}}(k.y);
    k_cache[dst + e + half + 1u] = {{CT}}(k.w);
    v_cache[dst + e + 1u] = {{CT}}(v.y);
    v_cache[dst + e + half + 1u] = {{CT}}(v.w);
  }
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (idx >= params.J * (params.H + params.Hkv)) { return; }
  let j = idx % params.J;
  let slot = idx / params.J;
  let half = params.half;
  let i0 = 2u * j;
  let two = i0 + 1u < half;
  let i1 = select(i0, i0 + 1u, two);
  let f0 = inv_freq[i0];
  let f1 = inv_freq[i1];
  let rows = min(step[STEP_ROWS], params.max_rows);
  let p0 = step_first_pos(step[STEP_LAST], step[STEP_ROWS]);
  for (var t = 0u; t < rows; t++) {
    let pos = p0 + t;
    let sc0 = sincos_reduced(reduce_angle(f32(pos) * f0));
    let sc1 = sincos_reduced(reduce_angle(f32(pos) * f1));
    // (sin, cos) of pair i0 in .xy, of pair i1 in .zw
    let s = vec2<f32>(sc0.x, sc1.x);
    let c = vec2<f32>(sc0.y, sc1.y);
    let row = t * params.stride;
    if (slot < params.H) {
      let b = row + slot * params.hd + i0;
      let x0 = vec2<f32>(qkv[b], qkv[b + 1u]);
      let x1 = vec2<f32>(qkv[b + half], qkv[b + half + 1u]);
      let y0 = x0 * c - x1 * s;
      let y1 = x1 * c + x0 * s;
      qkv[b] = y0.x;
      qkv[b + half] = y1.x;
      if (two) {
        qkv[b + 1u] = y0.y;
        qkv[b + half + 1u] = y1.y;
      }
    } else {
      if (pos >= params.S) { continue; }
      let g = slot - params.H;
      let kb = row + (params.H + g) * params.hd + i0;
      let vb = row + (params.H + params.Hkv + g) * params.hd + i0;
      let x0 = vec2<f32>(qkv[kb], qkv[kb + 1u]);
      let x1 = vec2<f32>(qkv[kb + half], qkv[kb + half + 1u]);
      let y0 = x0 * c - x1 * s;
      let y1 = x1 * c + x0 * s;
      let v = vec4<f32>(qkv[vb], qkv[vb + 1u], qkv[vb + half], qkv[vb + half + 1u]);
      store_kv((g * params.S + pos) * params.hd, i0, two, vec4<f32>(y0.x, y0.y, y1.x, y1.y), v);
    }
  }
}
