// cross_entropy.wgsl: fused softmax cross-entropy over the vocabulary, three stages of one file
// (reference: crossEntropyReference in src/train/ops/cross_entropy.ts).
//   ROWS   (one workgroup per row t):   lse[t] = log Σ_v exp(logits[t, v]) (max-subtracted),
//          loss[t] = lse[t] − logits[t, labels[t]]; masked rows (labels[t] = 0xFFFFFFFF) → 0;
//          a label ≥ V that is not the mask → NaN (loudly wrong, never silently masked).
//   REDUCE (one workgroup):              count = #unmasked rows, sum = Σ loss[t];
//          result = [scale·sum/norm, count, sum, scale/norm], norm = params.norm if > 0 else count
//          (count = 0 → factor 0, loss 0).
//   GRAD   (one workgroup per row t):   g[t, v] = (exp(logits[t, v] − lse[t]) − [v = label])·factor,
//          in place over the logits (the launcher copies them first when a separate output is
//          wanted); masked rows → 0.
// Rows above one storage binding come in row windows (ROWS and GRAD dispatch once per window;
// row0 = the window's first row, for labels and rowstats which are bound whole).
//
// Bindings (group 0):
//  ROWS:   0 logits: array<f32> read [rows, V]; 1 labels: array<u32> read [T];
//          2 rowstats: array<f32> read_write [T, 2] (lse, loss); 3 params
//  REDUCE: 0 labels: array<u32> read [T]; 1 rowstats: array<f32> read [T, 2];
//          2 result: array<f32> read_write [4]; 3 params
//  GRAD:   0 labels; 1 rowstats: read [T, 2]; 2 result: read [4];
//          3 g: array<f32> read_write [rows, V] (logits in, dlogits out); 4 params
// Mapping: WG invocations stride over a row (adjacent invocations, adjacent columns). ROWS keeps
// an online (max, Σexp) pair per invocation — one read of the row — then merges the WG pairs by
// a tree in workgroup memory. Accumulation f32; exp of differences ≤ 0 only; the running max
// starts at NEG (finite; WGSL may assume no infinities). V up to 2^32/rows.

struct Params {
  rows: u32,    // rows in this window (ROWS, GRAD) / T (REDUCE)
  V: u32,
  row0: u32,    // first row of this window
  _pad0: u32,
  norm: f32,    // REDUCE: divisor; ≤ 0 → the unmasked count
  scale: f32,   // REDUCE: multiplier of the mean and the gradient (e.g. λ_gen)
  _pad1: u32,
  _pad2: u32,
}

const IGNORE: u32 = 0xffffffffu;
const NEG: f32 = -3.0e38;

#if ROWS
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> rowstats: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> wm: array<f32, {{WG}}>;
var<workgroup> ws: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;   // workgroup-uniform
  if (r >= params.rows) { return; }
  let base = r * params.V;
  var m = NEG;
  var s = 0.0;
  for (var v = lid; v < params.V; v += {{WG}}u) {
    let x = logits[base + v];
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  wm[lid] = m;
  ws[lid] = s;
  workgroupBarrier();
  for (var k = {{WG}}u / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let m2 = max(wm[lid], wm[lid + k]);
      ws[lid] = ws[lid] * exp(wm[lid] - m2) + ws[lid + k] * exp(wm[lid + k] - m2);
      wm[lid] = m2;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let t = params.row0 + r;
    let lse = wm[0] + log(ws[0]);
    let label = labels[t];
    var loss = 0.0;
    if (label != IGNORE) {
      if (label < params.V) {
        loss = lse - logits[base + label];
      } else {
        loss = bitcast<f32>(0x7fc00000u + 0u * label);   // NaN (a run-time value, not a const-expression)
      }
    }
    rowstats[2u * t] = lse;
    rowstats[2u * t + 1u] = loss;
  }
}
#endif

#if REDUCE
@group(0) @binding(0) var<storage, read> labels: array<u32>;
@group(0) @binding(1) var<storage, read> rowstats: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> wsum: array<f32, {{WG}}>;
var<workgroup> wcnt: array<u32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0u;
  for (var t = lid; t < params.rows; t += {{WG}}u) {
    if (labels[t] != IGNORE) {
      s += rowstats[2u * t + 1u];
      c += 1u;
    }
  }
  wsum[lid] = s;
  wcnt[lid] = c;
  workgroupBarrier();
  for (var k = {{WG}}u / 2u; k > 0u; k >>= 1u) {
    if (lid < k) {
      wsum[lid] += wsum[lid + k];
      wcnt[lid] += wcnt[lid + k];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let count = f32(wcnt[0]);
    let norm = select(count, params.norm, params.norm > 0.0);
    let factor = select(0.0, params.scale / norm, norm > 0.0);
    result[0] = wsum[0] * factor;
    result[1] = count;
    result[2] = wsum[0];
    result[3] = factor;
  }
}
#endif

#if GRAD
@group(0) @binding(0) var<storage, read> labels: array<u32>;
@group(0) @binding(1) var<storage, read> rowstats: array<f32>;
@group(0) @binding(2) var<storage, read> result: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= params.rows) { return; }
  let t = params.row0 + r;
  let base = r * params.V;
  let label = labels[t];
  if (label == IGNORE) {
    for (var v = lid; v < params.V; v += {{WG}}u) { g[base + v] = 0.0; }
    return;
  }
  let lse = rowstats[2u * t];
  let factor = result[3];
  for (var v = lid; v < params.V; v += {{WG}}u) {
    let p = exp(g[base + v] - lse);
    g[base + v] = (p - select(0.0, 1.0, v == label)) * factor;
  }
}
#endif
