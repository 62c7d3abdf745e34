// attention_step.wgsl: decode-step attention of the live rows of a step, T read on the GPU from the
// step state (reference: attentionStepReference in src/ops/attention-step.ts = attentionReference
// over stepRanges). Same key loop as the decode attention (attend_keys, kernels/attention_core.wgsl),
// so the same split gives the same bits.
//   T = step[STEP_ROWS], p0 = step_first_pos(step[STEP_LAST], T). Row t (t < T) sits at cache
//   position e = p0 + t and attends to keys [lo_t, hi_t) = [end − window if window > 0 and
//   end > window else 0, end), end = e + 1 (hi clamped to S, lo to hi: a bad state reads nothing
//   out of bounds). Query head h of row t = qkv[t, h·hd ..] (q heads first in a qkv row of
//   q_stride slots); kv head g = h / group.
//
// Bindings (group 0). V = vec4<f32> with VEC4 (hd % 4 == 0), else f32; slots = hd/4 or hd.
//   0 q:        array<V>   read        [maxRows, q_stride]  (the qkv activations; q heads read)
//   1 k_cache:  array<CV>  read        [Hkv, S, hd]  (CV = f32/f16, vec4 of it with VEC4; packed pairs with PACKED)
//   2 v_cache:  array<CV>  read        [Hkv, S, hd]
//   3 step:     array<u32> read        [8]   step state (kernels/step_state.wgsl)
//  without SPLIT:
//   4 out:      array<V>   read_write  [maxRows, H, hd] f32 (also the running accumulator)
//   5 params:   Params     uniform
//  with SPLIT (attention_combine.wgsl with STEP finishes it):
//   4 part_acc: array<V>   read_write  [maxRows, H, n_splits, hd]  unnormalised Σ p_j·v_j
//   5 part_ml:  array<f32> read_write  [maxRows, H, n_splits, 2]   (running max m, Σ p_j)
//   6 params:   Params     uniform
//
// Mapping: a fixed grid of H · n_splits invocations (independent of T): invocation (h, split);
// with heads_inner consecutive invocations are the query heads of one GQA group (then splits,
// then kv heads: neighbouring lanes read the same K/V rows), else consecutive splits then heads
// (the decode attention's order); each loops over the rows t < T. Split
// `split` of row t covers keys [lo + split·c, lo + (split+1)·c) of the row's range, the last split
// runs to hi. c = params.chunk when nonzero (fixed, as the decode attention's host chunk), else
// per row on the GPU: c = max(min_chunk, ceil(len_t / n_splits)), so a short context does not
// leave most splits idle and a long one is spread evenly. Without SPLIT one invocation per head
// covers the whole range and normalises its output row.
#include f16_enable
#include f16_packed
#include step_state
#include attention_load
#include attention_core

struct Params {
  H: u32,
  S: u32,          // cache capacity in positions
  group: u32,      // H / Hkv
  n_splits: u32,   // key splits per row (1 without SPLIT)
  chunk: u32,      // keys per split; 0 = per row on the GPU (see the header)
  min_chunk: u32,  // fewest keys per split when chunk = 0
  units: u32,      // H · n_splits invocations
  scale: f32,
  slots: u32,      // V elements per head: hd/4 with VEC4, else hd
  q_stride: u32,   // V elements per qkv row: (H + 2·Hkv)·slots
  window: u32,     // sliding window in keys, 0 = full causal
  max_rows: u32,   // rows the activations hold (T is clamped to it)
  heads_inner: u32, // 1: consecutive invocations are the heads of one GQA group (same keys), else splits
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

#include attention_io
@group(0) @binding(3) var<storage, read> step: array<u32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let unit = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (unit >= params.units) { return; }
  var split = unit % params.n_splits;
  var h = unit / params.n_splits;
  if (params.heads_inner != 0u) {
    let r = unit / params.group;
    split = r % params.n_splits;
    h = (r / params.n_splits) * params.group + unit % params.group;
  }
  let kbase = (h / params.group) * params.S;
  let ns = params.slots;
  let rows = min(step[STEP_ROWS], params.max_rows);
  let p0 = step_first_pos(step[STEP_LAST], step[STEP_ROWS]);

  for (var t = 0u; t < rows; t++) {
    // without SPLIT: n_splits = 1, chunk = 0, so the keys are the row's whole range
    let keys = split_keys(step_row_keys(p0, t, params.S, params.window), split, params.n_splits, params.chunk, params.min_chunk);
    let row = t * params.H + h;
#if SPLIT
    let a0 = (row * params.n_splits + split) * ns;
#else
    let a0 = row * ns;
#endif
    let ml = attend_keys(t * params.q_stride + h * ns, a0, kbase, keys.x, keys.y);
#if SPLIT
    let p_idx = row * params.n_splits + split;
    part_ml[2u * p_idx] = ml.x;
    part_ml[2u * p_idx + 1u] = ml.y;
#else
    let inv = select(0.0, 1.0 / ml.y, ml.y > 0.0);
    for (var i = 0u; i < ns; i++) { acc[a0 + i] = acc[a0 + i] * inv; }
#endif
  }
}
