// attention_combine.wgsl: second pass of split-K ("flash-decoding") attention: merges the
// per-split partial softmax states written by attention.wgsl (SPLIT) into the output
// (reference: attentionReference in src/ops/attention.ts).
//   M = max_i m_i;  w_i = exp(m_i − M);  L = Σ_i w_i·l_i
//   out[t,h,:] = Σ_i w_i·acc_i / L            (L = 0, i.e. an empty range → zeros)
//
// Bindings (group 0). V = vec4<f32> with VEC4 (hd % 4 == 0), else f32; slots = hd/4 or hd.
//   0 part_acc: array<V>    read        [T, H, n_splits, hd]
//   1 part_ml:  array<f32>  read        [T, H, n_splits, 2]   (m_i, l_i)
//   2 out:      array<V>    read_write  [T, H, hd] f32
//   3 params:   Params      uniform
// Mapping: one invocation per (row t·H + h, slot): it reads n_splits (m, l) pairs and n_splits
// V elements. Empty splits carry m = NEG (finite), l = 0, acc = 0 and get weight 0.
// Accumulation f32.
// STEP (the decode step, attention_step.wgsl's second pass; reference attentionStepReference in
// src/ops/attention-step.ts): binding 2 is the step state (read), out and params move to 3 and 4;
// the grid is fixed at H · slots invocations (independent of T) and each loops over the live
// rows t < T = step[STEP_ROWS].
#if STEP
#include step_state
#endif

struct Params {
  rows: u32,      // T · H (with STEP: H, the rows of one step row)
  n_splits: u32,
  slots: u32,     // V elements per row
  max_rows: u32,  // with STEP: the step rows the buffers hold (T is clamped to it); else unused
}

alias V = {{V}};
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> part_acc: array<V>;
@group(0) @binding(1) var<storage, read> part_ml: array<f32>;
#if STEP
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<V>;
@group(0) @binding(4) var<uniform> params: Params;
#else
@group(0) @binding(2) var<storage, read_write> out: array<V>;
@group(0) @binding(3) var<uniform> params: Params;
#endif

/** Merges the n_splits partial states of output row `row` (t·H + h), slot i. */
fn combine(row: u32, i: u32) {
  let ns = params.slots;
  let p0 = row * params.n_splits;
  var mx = NEG;
  for (var sp = 0u; sp < params.n_splits; sp++) { mx = max(mx, part_ml[2u * (p0 + sp)]); }
  var lsum = 0.0;
  var acc = V(0.0);
  for (var sp = 0u; sp < params.n_splits; sp++) {
    let w = exp(part_ml[2u * (p0 + sp)] - mx);
    lsum += w * part_ml[2u * (p0 + sp) + 1u];
    acc = fma(V(w), part_acc[(p0 + sp) * ns + i], acc);
  }
  out[row * ns + i] = acc * select(0.0, 1.0 / lsum, lsum > 0.0);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  let ns = params.slots;
  if (idx >= params.rows * ns) { return; }
#if STEP
  // rows = H: invocation (h, slot) merges that head's slot for every live row t < T.
  let T = min(step[STEP_ROWS], params.max_rows);
  for (var t = 0u; t < T; t++) { combine(t * params.rows + idx / ns, idx % ns); }
#else
  combine(idx / ns, idx % ns);
#endif
}
