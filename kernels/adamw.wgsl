// adamw.wgsl: AdamW with f32 master weights and global-norm gradient clipping, three stages of
// one file (reference: adamwReference and clipFactorReference in src/train/optim.ts).
//   SUMSQ    (one workgroup per CHUNK = WG·PER elements of one gradient window):
//            partials[slot0 + w] = Σ_{i in chunk w} g[i]²
//   FINALIZE (one workgroup):  total = Σ_j partials[j] (j < count), norm = sqrt(total),
//            clip = min(1, maxNorm / (norm + 1e-6)) when maxNorm > 0 else 1 (torch's
//            clip_grad_norm_); stats = [norm, clip, total, 0]
//   STEP     (one invocation per pair of elements 2i, 2i+1):
//            g = grad·clip·gradScale
//            m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²
//            w = w·(1 − lr·wd) − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)   (torch.optim.AdamW)
//            F16: the updated f32 master is also rounded into the f16 weights the forward reads.
//            Skipped when Σg² (stats[2]) is NaN or inf: w, m, v (and w16) keep their values, so a
//            diverged step never reaches the weights (the trainer stops on it, src/train/trainer.ts).
//            Tested on the exponent bits: WGSL lets compilers assume floats are finite.
// Every reduction runs in a fixed order (no atomics): the same inputs give the same bits.
//
// Bindings (group 0); gradient, master, m, v and f16 weights are bound one window at a time:
//  SUMSQ:    0 g: array<f32> read [n]; 1 partials: array<f32> read_write [count]; 2 params
//  FINALIZE: 0 partials: array<f32> read [count]; 1 stats: array<f32> read_write [4]; 2 params
//  STEP:     0 g: array<f32> read [n]; 1 stats: array<f32> read [4];
//            2 w: array<f32> read_write [n] (f32 master); 3 m: array<f32> read_write [n];
//            4 v: array<f32> read_write [n]; (F16) 5 w16: array<u32> read_write [ceil(n/2)]
//            (f16 pairs; the pad half of an odd last pair is written 0); last: params
// Accumulation f32 (sums of squares: per-invocation serial sums of PER values, then a tree).

struct Params {
  n: u32,         // SUMSQ/STEP: elements in this window; FINALIZE: partial count
  slot0: u32,     // SUMSQ: first partial of this window
  _pad0: u32,
  _pad1: u32,
  lr: f32,        // STEP
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,     // STEP: 1 − lr·wd
  step_size: f32, // STEP: lr / (1 − β1^t)
  bc2_sqrt: f32,  // STEP: sqrt(1 − β2^t)
  grad_scale: f32,
  max_norm: f32,  // FINALIZE: ≤ 0 → no clipping
  _pad2: u32,
  _pad3: u32,
  _pad4: u32,
}

#if SUMSQ
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> ws: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;   // workgroup-uniform
  let base = w * {{WG}}u * {{PER}}u;
  if (base >= params.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < {{PER}}u; k++) {
    let i = base + k * {{WG}}u + lid;
    if (i < params.n) { let x = g[i]; s = fma(x, x, s); }
  }
  ws[lid] = s;
  workgroupBarrier();
  for (var h = {{WG}}u / 2u; h > 0u; h = h / 2u) {
    if (lid < h) { ws[lid] = ws[lid] + ws[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[params.slot0 + w] = ws[0]; }
}
#endif

#if FINALIZE
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> ws: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var j = lid; j < params.n; j += {{WG}}u) { s += partials[j]; }
  ws[lid] = s;
  workgroupBarrier();
  for (var h = {{WG}}u / 2u; h > 0u; h = h / 2u) {
    if (lid < h) { ws[lid] = ws[lid] + ws[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let total = ws[0];
    let norm = sqrt(total);
    var clip = 1.0;
    if (params.max_norm > 0.0) { clip = min(1.0, params.max_norm / (norm + 1e-6)); }
    stats[0] = norm;
    stats[1] = clip;
    stats[2] = total;
    stats[3] = 0.0;
  }
}
#endif

#if STEP
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
#if F16
@group(0) @binding(5) var<storage, read_write> w16: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;
#else
@group(0) @binding(5) var<uniform> params: Params;
#endif

fn update(i: u32, gs: f32) -> f32 {
  let gi = g[i] * gs;
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * gi;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let wi = w[i] * params.decay - params.step_size * mi / (sqrt(vi) / params.bc2_sqrt + params.eps);
  w[i] = wi;
  return wi;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let p = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  let i = 2u * p;
  if (i >= params.n) { return; }
  if ((bitcast<u32>(stats[2]) & 0x7f800000u) == 0x7f800000u) { return; }
  let gs = stats[1] * params.grad_scale;
  let a = update(i, gs);
  var b = 0.0;
  if (i + 1u < params.n) { b = update(i + 1u, gs); }
#if F16
  w16[p] = pack2x16float(vec2<f32>(a, b));
#endif
}
#endif
