// attention_dq_backward.wgsl: query gradient of out = softmax(scale·q·Kᵀ)·V over per-row key
// ranges with GQA (forward: kernels/attention.wgsl; reference: attentionBackwardReference in
// src/train/ops/attention_backward.ts). For query row t, head h, kv head g = h / group, keys j in
// [lo_t, hi_t) = ranges[t] (hi clamped to S, lo to hi):
//   lse   = log Σ_j exp(s_j),  s_j = scale·q·k_j          (recomputed: pass 1, online max/sum)
//   Dsum  = Σ_d dout[d]·out[d]                           (= Σ_j p_j·dp_j)
//   p_j   = exp(s_j − lse),  dp_j = dout·v_j,  ds_j = p_j·(dp_j − Dsum)
//   dq    = scale · Σ_j ds_j·k_j                          (pass 2)
//   stats[t, h] = (lse, Dsum) for attention_dkv_backward.wgsl. Empty range: dq = 0, lse = NEG.
//
// Bindings (group 0):
//   0 q:      array<f32>  read        [T, H, hd]
//   1 k:      array<f32>  read        [Hkv, S, hd]   (the KV cache layout of the forward)
//   2 v:      array<f32>  read        [Hkv, S, hd]
//   3 ranges: array<u32>  read        [T, 2]
//   4 out:    array<f32>  read        [T, H, hd]     (forward output)
//   5 dout:   array<f32>  read        [T, H, hd]
//   6 dq:     array<f32>  read_write  [T, H, hd]
//   7 stats:  array<f32>  read_write  [T, H, 2]
//   8 params: Params      uniform
// Mapping: one invocation per (t, h) (linear index (x + y·num_x)·WG + lid = t·H + h); q, dout and
// the dq accumulator live in private arrays of HDMAX ≥ hd floats (hd is a uniform: constant hd
// made lavapipe's LLVM unroll everything, see attention.wgsl). Memory O(T·H·hd): no T×T matrix;
// compute 3 passes of T·keys·hd (QK twice, dout·V once). f32 throughout; exp of values ≤ 0
// (up to rounding) only.

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  S: u32,
  group: u32,   // H / Hkv
  hd: u32,
  scale: f32,
  _pad0: u32,
}

const HDMAX: u32 = {{HDMAX}}u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> ranges: array<u32>;
@group(0) @binding(4) var<storage, read> out: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let unit = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (unit >= params.T * params.H) { return; }
  let t = unit / params.H;
  let h = unit % params.H;
  let g = h / params.group;
  let hd = params.hd;
  let hi = min(ranges[2u * t + 1u], params.S);
  let lo = min(ranges[2u * t], hi);
  let qo = unit * hd;

  var qs: array<f32, {{HDMAX}}>;
  var go: array<f32, {{HDMAX}}>;
  var acc: array<f32, {{HDMAX}}>;
  var dsum = 0.0;
  for (var d = 0u; d < hd; d++) {
    qs[d] = q[qo + d] * params.scale;
    go[d] = dout[qo + d];
    acc[d] = 0.0;
    dsum += go[d] * out[qo + d];
  }
  // Pass 1: logsumexp of the scores (online max and sum).
  var m = NEG;
  var l = 0.0;
  for (var j = lo; j < hi; j++) {
    let kb = (g * params.S + j) * hd;
    var s = 0.0;
    for (var d = 0u; d < hd; d++) { s = fma(qs[d], k[kb + d], s); }
    if (s > m) {
      l = l * exp(m - s) + 1.0;
      m = s;
    } else {
      l += exp(s - m);
    }
  }
  let lse = select(NEG, m + log(l), l > 0.0);
  // Pass 2: dq = Σ_j p_j (dp_j − Dsum) k_j.
  for (var j = lo; j < hi; j++) {
    let kb = (g * params.S + j) * hd;
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < hd; d++) {
      s = fma(qs[d], k[kb + d], s);
      dp = fma(go[d], v[kb + d], dp);
    }
    let ds = exp(s - lse) * (dp - dsum);
    for (var d = 0u; d < hd; d++) { acc[d] = fma(ds, k[kb + d], acc[d]); }
  }
  for (var d = 0u; d < hd; d++) { dq[qo + d] = acc[d] * params.scale; }
  stats[2u * unit] = lse;
  stats[2u * unit + 1u] = dsum;
}
