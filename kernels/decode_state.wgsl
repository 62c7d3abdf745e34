// decode_state.wgsl: GPU-side bookkeeping between decode steps, so consecutive steps can be
// encoded into one submit without the host writing anything (reference: advanceReference and
// forceAfterReference in src/ops/decode_state.ts).
//
// Entry point `advance` (one invocation):
//   0 token:    array<u32>  read        [1]   id just sampled (input of the next step)
//   1 position: array<u32>  read_write  [1]   position of the token being fed; += 1
//   2 ranges:   array<u32>  read_write  [2]   attention range of the next step: [start, position + 1),
//                                             start = position + 1 - window when a sliding window is set
//   3 context:  array<u32>  read_write  [capacity]  every id in the cache; context[position] = token
//   4 params:   Params      uniform     (a = capacity of `context`, b = sliding window or 0)
// It runs after sampling step j: the sampled token will sit at position + 1.
//
// Entry point `force_after` (one workgroup of WG invocations, strided over the vocabulary):
//   0 context:  array<u32>  read        [capacity]  ids fed so far (context[0..=last])
//   1 pattern:  array<u32>  read        [n]         the trigger sequence
//   2 position: array<u32>  read        [1]         last = position[0], the newest id's index
//   3 logits:   array<f32>  read_write  [V]         logits of the step that follows `last`
//   4 params:   Params      uniform     (n = params.b; forced id = params.c; V = params.d)
// `last` is read on the GPU so the rule sees injected text too (the host may not know it yet).
// If context[last-n+1 ..= last] == pattern, every logit except the forced id becomes -inf.

struct Params {
  a: u32,
  b: u32,
  c: u32,
  d: u32,
  neg_inf: f32,  // -inf, given by the host (WGSL constant expressions cannot hold infinities)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

#if ADVANCE
@group(0) @binding(0) var<storage, read> token: array<u32>;
@group(0) @binding(1) var<storage, read_write> position: array<u32>;
@group(0) @binding(2) var<storage, read_write> ranges: array<u32>;
@group(0) @binding(3) var<storage, read_write> context: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(1)
fn main() {
  let p = position[0] + 1u;
  position[0] = p;
  ranges[1] = p + 1u;
  if (params.b > 0u && p + 1u > params.b) { ranges[0] = p + 1u - params.b; }
  if (p < params.a) { context[p] = token[0]; }
}
#else
@group(0) @binding(0) var<storage, read> context: array<u32>;
@group(0) @binding(1) var<storage, read> pattern: array<u32>;
@group(0) @binding(2) var<storage, read> position: array<u32>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  let last = position[0];
  let n = params.b;
  if (n == 0u || last + 1u < n) { return; }
  for (var i = 0u; i < n; i++) {
    if (context[last + 1u - n + i] != pattern[i]) { return; }
  }
  for (var v = lid; v < params.d; v += {{WG}}u) {
    if (v != params.c) { logits[v] = params.neg_inf; }
  }
}
#endif
