// attention_dkv_backward.wgsl: key and value gradients of out = softmax(scale·q·Kᵀ)·V with GQA
// and per-row key ranges (reference: attentionBackwardReference in
// src/train/ops/attention_backward.ts). For cache row j of kv head g:
//   dv[g, j] = Σ_{t: lo_t ≤ j < hi_t} Σ_{h in group g} p_{t,h,j} · dout[t, h]
//   dk[g, j] = scale · Σ_{t, h} p_{t,h,j} · (dout[t,h]·v[g,j] − Dsum[t,h]) · q[t, h]
//   p_{t,h,j} = exp(scale·q[t,h]·k[g,j] − lse[t,h])   with (lse, Dsum) from attention_dq_backward.
// Rows j that no range covers get zeros. Each (g, j) has exactly one writer (no float atomics).
//
// Bindings (group 0):
//   0 q:      array<f32>  read        [T, H, hd]
//   1 k:      array<f32>  read        [Hkv, S, hd]
//   2 v:      array<f32>  read        [Hkv, S, hd]
//   3 ranges: array<u32>  read        [T, 2]
//   4 dout:   array<f32>  read        [T, H, hd]
//   5 stats:  array<f32>  read        [T, H, 2]   (lse, Dsum)
//   6 dk:     array<f32>  read_write  [Hkv, S, hd]
//   7 dv:     array<f32>  read_write  [Hkv, S, hd]
//   8 params: Params      uniform
// Mapping: one invocation per (g, j) (linear index = g·S + j); it scans all T query rows (the
// range test is cheap next to the hd-long dots) and the group's heads; k_j, v_j and the two
// accumulators live in private arrays of HDMAX floats. Cost T·group·hd·3 per invocation:
// meant for training lengths (T ≤ a few thousand). f32 throughout.

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  S: u32,
  group: u32,
  hd: u32,
  scale: f32,
  _pad0: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> ranges: array<u32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let unit = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (unit >= params.Hkv * params.S) { return; }
  let g = unit / params.S;
  let j = unit % params.S;
  let hd = params.hd;
  let kb = unit * hd;
  var kj: array<f32, {{HDMAX}}>;
  var vj: array<f32, {{HDMAX}}>;
  var ak: array<f32, {{HDMAX}}>;
  var av: array<f32, {{HDMAX}}>;
  for (var d = 0u; d < hd; d++) {
    kj[d] = k[kb + d] * params.scale;
    vj[d] = v[kb + d];
    ak[d] = 0.0;
    av[d] = 0.0;
  }
  for (var t = 0u; t < params.T; t++) {
    let hi = min(ranges[2u * t + 1u], params.S);
    let lo = min(ranges[2u * t], hi);
    if (j < lo || j >= hi) { continue; }
    for (var b = 0u; b < params.group; b++) {
      let row = t * params.H + g * params.group + b;
      let qo = row * hd;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < hd; d++) {
        s = fma(q[qo + d], kj[d], s);
        dp = fma(dout[qo + d], vj[d], dp);
      }
      let p = exp(s - stats[2u * row]);
      let ds = p * (dp - stats[2u * row + 1u]);
      for (var d = 0u; d < hd; d++) {
        av[d] = fma(p, dout[qo + d], av[d]);
        ak[d] = fma(ds, q[qo + d], ak[d]);
      }
    }
  }
  for (var d = 0u; d < hd; d++) {
    dk[kb + d] = ak[d] * params.scale;
    dv[kb + d] = av[d];
  }
}
