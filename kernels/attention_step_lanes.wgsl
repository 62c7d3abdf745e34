// attention_step_lanes.wgsl: decode-step attention with lanes over the head dimension: the split
// pass of attention_step (same contract, same partial layout, finished by attention_combine.wgsl
// with STEP; reference attentionStepReference in src/ops/attention-step.ts), mapped so that
// neighbouring invocations read neighbouring memory and the query heads of a GQA group share
// every K/V load.
//   T = step[STEP_ROWS], p0 = step_first_pos(step[STEP_LAST], T); row t at e = p0 + t attends to
//   keys [lo_t, hi_t) = [end − window if window > 0 and end > window else 0, end), end = e + 1
//   (hi clamped to S, lo to hi). Split `split` covers [lo + split·c, ...) of that range, the last
//   split runs to hi; c = params.chunk, or max(min_chunk, ceil(len/n_splits)) per row when 0.
//
// Bindings (group 0; all but step declared by kernels/attention_io.wgsl with SPLIT).
// V = vec4<f32> with VEC4 (hd % 4 == 0), else f32; slots = hd/4 or hd.
//   0 q:        array<V>   read        [maxRows, q_stride]  (qkv activations; q heads read)
//   1 k_cache:  array<CV>  read        [Hkv, S, hd]
//   2 v_cache:  array<CV>  read        [Hkv, S, hd]
//   3 step:     array<u32> read        [8]   step state (kernels/step_state.wgsl)
//   4 acc:      array<V>   read_write  [maxRows, H, n_splits, slots]  unnormalised Σ p_j·v_j
//   5 part_ml:  array<f32> read_write  [maxRows, H, n_splits, 2]      (running max m, Σ p_j)
//   6 params:   Params     uniform
//
// Mapping: one workgroup per (kv head g, split), a fixed grid of Hkv · n_splits workgroups
// (independent of T), looping over the rows t < T. Lane (hg, s) = (query head g·group + hg,
// slot s) for lanes < group·slots (the others idle but take part in the barriers). Per tile of 4
// keys: each lane loads its slot of the 4 K rows (consecutive lanes, consecutive slots) and
// writes the 4 partial products q·k of that slot to workgroup memory; after a barrier the slot-0
// lane of each head sums its head's slots (in slot order) into the 4 scores; after a second
// barrier every lane applies the online-softmax update (m, l per head, replicated over its lanes)
// to its own accumulator slot, o_acc = α·o_acc + Σ_k p_k·v_k[s] (registers: no private arrays). The
// scores are sums over slots of per-slot dot products, a different f32 summation order from
// attention_core.wgsl (same float64 reference, same tolerance). All f32; f16 widened on load.
#include f16_enable
#include f16_packed
#include step_state
#include attention_load

struct Params {
  H: u32,
  Hkv: u32,
  S: u32,          // cache capacity in positions
  group: u32,      // H / Hkv
  n_splits: u32,
  chunk: u32,      // keys per split; 0 = per row on the GPU
  min_chunk: u32,
  lanes: u32,      // group · slots live lanes
  scale: f32,
  slots: u32,      // V elements per head
  q_stride: u32,   // V elements per qkv row
  window: u32,     // sliding window in keys, 0 = full causal
  max_rows: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

const WG: u32 = {{WG}}u;

#include attention_io
@group(0) @binding(3) var<storage, read> step: array<u32>;

var<workgroup> red: array<vec4<f32>, WG>;     // per lane: its slot's products with the tile's 4 keys
var<workgroup> scores: array<vec4<f32>, WG>;  // per head of the group: the tile's 4 scores

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = wid.x + wid.y * nwg.x;
  if (wg >= params.Hkv * params.n_splits) { return; }
  let split = wg % params.n_splits;
  let g = wg / params.n_splits;
  let ns = params.slots;
  let live = lid < params.lanes;
  let lane = min(lid, params.lanes - 1u);   // idle lanes shadow the last one (their results are dropped)
  let hg = lane / ns;
  let s = lane % ns;
  let h = g * params.group + hg;
  let kbase = g * params.S;
  let rows = min(step[STEP_ROWS], params.max_rows);
  let p0 = step_first_pos(step[STEP_LAST], step[STEP_ROWS]);

  for (var t = 0u; t < rows; t++) {
    let keys = split_keys(step_row_keys(p0, t, params.S, params.window), split, params.n_splits, params.chunk, params.min_chunk);
    let lo = keys.x;
    let hi = keys.y;

    let qv = q[t * params.q_stride + h * ns + s];
    var m = NEG;
    var l = 0.0;
    var o_acc = V(0.0);
    for (var j0 = lo; j0 < hi; j0 += 4u) {
      let valid = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(hi);
      let r0 = (kbase + j0) * ns + s;
      let r1 = (kbase + select(j0, j0 + 1u, valid.y)) * ns + s;
      let r2 = (kbase + select(j0, j0 + 2u, valid.z)) * ns + s;
      let r3 = (kbase + select(j0, j0 + 3u, valid.w)) * ns + s;
      red[lid] = vec4<f32>(hsum(qv * load_k(r0)), hsum(qv * load_k(r1)), hsum(qv * load_k(r2)), hsum(qv * load_k(r3)));
      workgroupBarrier();
      if (live && s == 0u) {
        var sum = vec4<f32>(0.0);
        for (var i = 0u; i < ns; i++) { sum += red[lid + i]; }
        scores[hg] = sum * params.scale;
      }
      workgroupBarrier();
      let sc = select(vec4<f32>(NEG), scores[hg], valid);
      let m_new = max(m, max(max(sc.x, sc.y), max(sc.z, sc.w)));
      let alpha = exp(m - m_new);
      let p = exp(sc - vec4<f32>(m_new));
      l = l * alpha + ((p.x + p.y) + (p.z + p.w));
      m = m_new;
      var o = o_acc * alpha;
      o = fma(V(p.x), load_v(r0), o);
      o = fma(V(p.y), load_v(r1), o);
      o = fma(V(p.z), load_v(r2), o);
      o = fma(V(p.w), load_v(r3), o);
      o_acc = o;
    }
    if (live) {
      let p_idx = (t * params.H + h) * params.n_splits + split;
      acc[p_idx * ns + s] = o_acc;
      if (s == 0u) {
        part_ml[2u * p_idx] = m;
        part_ml[2u * p_idx + 1u] = l;
      }
    }
  }
}
