// attention_core.wgsl: the key loop shared by attention.wgsl and attention_step.wgsl (included
// with `#include attention_core`; not a kernel). Reference: attentionReference in
// src/ops/attention.ts. The including kernel declares q, k_cache, v_cache (array<CV>), acc
// (array<V>), `alias V`, NEG, and a `params` with `scale` and `slots`, and includes
// attention_load (load_k, load_v, hsum).
//
// attend_keys: online softmax of the query q[q0 .. q0 + slots) over cache rows [lo, hi) of the kv
// head whose first row is kbase (g·S): keys in tiles of 4 held as one vec4 of scores (one pass
// over hd computes the 4 dot products), m' = max(m, tile max), α = exp(m − m'), l = α·l + Σ p,
// acc = α·acc + Σ_k p_k·v_k. Tail keys of a tile are masked (score NEG → p = 0, their row index
// clamped to a valid key). acc[a0 ..] is zeroed first and holds the unnormalised Σ p_j·v_j;
// returns (m, l) (NEG, 0 for an empty range). All f32; f16 cache values widened on load.

fn attend_keys(q0: u32, a0: u32, kbase: u32, lo: u32, hi: u32) -> vec2<f32> {
  let ns = params.slots;
  for (var i = 0u; i < ns; i++) { acc[a0 + i] = V(0.0); }
  var m = NEG;
  var l = 0.0;
  for (var j0 = lo; j0 < hi; j0 += 4u) {
    let valid = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(hi);
    let r0 = (kbase + j0) * ns;
    let r1 = (kbase + select(j0, j0 + 1u, valid.y)) * ns;
    let r2 = (kbase + select(j0, j0 + 2u, valid.z)) * ns;
    let r3 = (kbase + select(j0, j0 + 3u, valid.w)) * ns;
    var d0 = V(0.0);
    var d1 = V(0.0);
    var d2 = V(0.0);
    var d3 = V(0.0);
    for (var i = 0u; i < ns; i++) {
      let qq = q[q0 + i];
      d0 = fma(qq, load_k(r0 + i), d0);
      d1 = fma(qq, load_k(r1 + i), d1);
      d2 = fma(qq, load_k(r2 + i), d2);
      d3 = fma(qq, load_k(r3 + i), d3);
    }
    let sc = select(vec4<f32>(NEG), vec4<f32>(hsum(d0), hsum(d1), hsum(d2), hsum(d3)) * params.scale, valid);
    let m_new = max(m, max(max(sc.x, sc.y), max(sc.z, sc.w)));
    let alpha = exp(m - m_new);
    let p = exp(sc - vec4<f32>(m_new));
    l = l * alpha + ((p.x + p.y) + (p.z + p.w));
    m = m_new;
    for (var i = 0u; i < ns; i++) {
      var o = acc[a0 + i] * alpha;
      o = fma(V(p.x), load_v(r0 + i), o);
      o = fma(V(p.y), load_v(r1 + i), o);
      o = fma(V(p.z), load_v(r2 + i), o);
      o = fma(V(p.w), load_v(r3 + i), o);
      acc[a0 + i] = o;
    }
  }

  return vec2<f32>(m, l);
}
