// sample.wgsl: draws one token id per row of logits [B, V] on the GPU and writes it to outIds.
// Reference: sampleReference in src/ops/sample.ts (the definition below is the spec).
//
//   A row holding NaN or +inf (non-finite logits: the model overflowed) gets the id 0xffffffff
//   (NONFINITE_ID, never a vocabulary id) whatever the options; the host, which reads every sampled
//   id anyway, stops there. −inf is not an error: it is how logits processors remove ids.
//   temperature == 0: argmax (ties → lowest id). Keys: the f32 bits mapped to an order-preserving
//                     u32 (key(a) > key(b) ⇔ a > b; NaN above +inf).
//   otherwise (Hugging Face order):
//     s_i = l_i / temperature, m = max s, e_i = exp(s_i − m)
//     top-k (0 < topK < V): keep i with key(l_i) ≥ τ_k, τ_k = the topK-th largest key (with
//          multiplicity; ties at the boundary are all kept), found by a 4-pass 8-bit radix select.
//     top-p (topP < 1): over the kept set K with Z_K = Σ_K e: keep i iff Σ_{j∈K, key_j > key_i} e_j
//          < topP·Z_K, i.e. the smallest set of top values whose mass reaches topP (at least the
//          maximum). The key threshold is found by a 32-step bisection over u32 keys.
//     draw: u = uniform01(seed, step, row) (PCG hash, identical on the host: sampleUniform01),
//          u_mass = u·Z over the kept set; walk ids in ascending order and return the first id
//          whose running mass exceeds u_mass (the last kept id if rounding leaves none).
//     If Z is 0 or not finite (all −inf, or l/temperature overflowing) the argmax is returned.
//
// Bindings (group 0):
//   0 logits:  array<f32>  read        [rows, V] window of the [B, V] logits, from element elemBase
//   1 step:    array<u32>  read        [> stepWord]  (read when params.stepFromBuffer:
//                                          step = step[params.stepWord] + params.step; the decode
//                                          step binds its step state with stepWord = STEP_COUNT, so
//                                          the captured step needs no per-token parameter)
//   2 out_ids: array<u32>  read_write  [≥ outOffset + B]
//   3 params:  Params      uniform
// Mapping: one workgroup of WG invocations per row. Passes over the row are strided
// (i = lid, lid + WG, ...) except the final walk, where invocation j owns a contiguous chunk of
// ids so that a prefix sum over invocations orders the mass by id. Sums in f32.

struct Params {
  V: u32,
  rows: u32,          // rows in this window
  rowBase: u32,       // global row index of the window's first row (RNG stream and output slot)
  outOffset: u32,     // out_ids[outOffset + row]
  temperature: f32,
  topK: u32,          // 0 = off
  topP: f32,          // ≥ 1 = off
  seed: u32,
  step: u32,
  stepFromBuffer: u32,
  neg_inf: f32,       // −inf (WGSL constant expressions cannot hold infinities)
  elemBase: u32,      // elements from the binding's (aligned) start to the window's first row
  stepWord: u32,      // word of step_buf holding the RNG step (with stepFromBuffer)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> step_buf: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_ids: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

const WG: u32 = {{WG}}u;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_k: array<u32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> shared_u: u32;
var<workgroup> shared_u2: u32;
var<workgroup> pick_min: atomic<u32>;
var<workgroup> bad_row: atomic<u32>;

const NONFINITE_ID: u32 = 0xffffffffu;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// Uniform in [0, 1) with 24 random bits.
fn uniform01(seed: u32, step: u32, row: u32) -> f32 {
  return f32(pcg(pcg(pcg(seed) ^ step) ^ row) >> 8u) * (1.0 / 16777216.0);
}

fn key_of(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sum_all(lid: u32, v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_f[lid] += red_f[lid + s]; }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let V = params.V;
  let base = params.elemBase + row * V;

  // ---- argmax over keys (ties → lowest id): strided ids increase per invocation, so '>' keeps the first;
  // the same pass flags NaN/+inf from the key: keys of −inf .. max finite are the contiguous range
  // [0x007fffff, 0xff7fffff]; +inf and positive NaNs lie above it, negative NaNs below (one wrapping
  // subtraction and one compare per element)
  if (lid == 0u) { atomicStore(&bad_row, 0u); }
  workgroupBarrier();
  var bk = 0u;
  var bi = 0xffffffffu;
  var bad = false;
  for (var i = lid; i < V; i += WG) {
    let k = key_of(logits[base + i]);
    bad = bad || (k - 0x007fffffu) > 0xff000000u;
    if (bi == 0xffffffffu || k > bk) { bk = k; bi = i; }
  }
  if (bad) { atomicOr(&bad_row, 1u); }
  red_k[lid] = bk;
  red_i[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ok = red_k[lid + s];
      let oi = red_i[lid + s];
      if (oi != 0xffffffffu && (red_i[lid] == 0xffffffffu || ok > red_k[lid] || (ok == red_k[lid] && oi < red_i[lid]))) {
        red_k[lid] = ok;
        red_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  let arg = red_i[0];
  let out_slot = params.outOffset + params.rowBase + row;
  if (lid == 0u) { shared_u = atomicLoad(&bad_row); }
  if (workgroupUniformLoad(&shared_u) != 0u) {
    if (lid == 0u) { out_ids[out_slot] = NONFINITE_ID; }
    return;
  }
  if (params.temperature == 0.0) {
    if (lid == 0u) { out_ids[out_slot] = arg; }
    return;
  }
  let m = logits[base + arg] / params.temperature;

  // ---- top-k threshold: radix select of the topK-th largest key, 8 bits per pass
  var tau = 0u;
  if (params.topK > 0u && params.topK < V) {
    var prefix = 0u;
    var mask = 0u;
    var remaining = params.topK;
    for (var p8 = 0u; p8 < 4u; p8++) {
      let shift = 24u - 8u * p8;
      for (var j = lid; j < 256u; j += WG) { atomicStore(&hist[j], 0u); }
      workgroupBarrier();
      for (var i = lid; i < V; i += WG) {
        let k = key_of(logits[base + i]);
        if ((k & mask) == prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
      }
      workgroupBarrier();
      if (lid == 0u) {
        var cum = 0u;
        var d = 255u;
        loop {
          let h = atomicLoad(&hist[d]);
          if (cum + h >= remaining || d == 0u) { break; }
          cum += h;
          d -= 1u;
        }
        shared_u = d;
        shared_u2 = remaining - cum;
      }
      workgroupBarrier();
      prefix |= shared_u << shift;
      remaining = shared_u2;
      mask |= 255u << shift;
      workgroupBarrier();
    }
    tau = prefix;
  }

  // ---- top-p threshold over the kept set: smallest key t with mass_above(t) < topP·Z_K
  var theta = tau;
  if (params.topP < 1.0) {
    var zl = 0.0;
    for (var i = lid; i < V; i += WG) {
      let l = logits[base + i];
      if (key_of(l) >= tau) { zl += exp(l / params.temperature - m); }
    }
    let p_mass = params.topP * sum_all(lid, zl);
    // largest t' with mass_above(t') ≥ p_mass, built bit by bit (the predicate is monotone)
    var tp = 0u;
    for (var b = 0u; b < 32u; b++) {
      let cand = tp | (0x80000000u >> b);
      var ml = 0.0;
      for (var i = lid; i < V; i += WG) {
        let l = logits[base + i];
        let k = key_of(l);
        if (k > cand && k >= tau) { ml += exp(l / params.temperature - m); }
      }
      if (sum_all(lid, ml) >= p_mass) { tp = cand; }
    }
    var ml0 = 0.0;
    for (var i = lid; i < V; i += WG) {
      let l = logits[base + i];
      let k = key_of(l);
      if (k > tp && k >= tau) { ml0 += exp(l / params.temperature - m); }
    }
    let tstar = select(0u, tp + 1u, sum_all(lid, ml0) >= p_mass);
    theta = max(tau, tstar);
  }

  // ---- draw: contiguous chunks per invocation, exclusive prefix over invocations, walk
  let chunk = (V + WG - 1u) / WG;
  let c0 = min(lid * chunk, V);
  let c1 = min(c0 + chunk, V);
  var local = 0.0;
  for (var i = c0; i < c1; i++) {
    let l = logits[base + i];
    if (key_of(l) >= theta) { local += exp(l / params.temperature - m); }
  }
  red_f[lid] = local;
  if (lid == 0u) { atomicStore(&pick_min, 0xffffffffu); }
  workgroupBarrier();
  if (lid == 0u) {
    var run = 0.0;
    for (var j = 0u; j < WG; j++) {
      let v = red_f[j];
      red_f[j] = run;       // exclusive prefix, the same f32 additions as each invocation's excl + local
      run += v;
    }
    shared_u = bitcast<u32>(run);
  }
  let total = bitcast<f32>(workgroupUniformLoad(&shared_u));
  // total == 0 or not finite: fall back to the argmax
  if (!(total > 0.0 && total <= bitcast<f32>(0x7f7fffffu))) {
    if (lid == 0u) { out_ids[out_slot] = arg; }
    return;
  }
  let excl = red_f[lid];
  let incl = excl + local;
  var step = params.step;
  if (params.stepFromBuffer != 0u) { step = step_buf[params.stepWord] + params.step; }
  let u_mass = uniform01(params.seed, step, params.rowBase + row) * total;
  // The chunk holding u_mass walks; if rounding put u_mass at or past the total, the chunk(s)
  // ending at the total walk too and pick their last kept id. atomicMin keeps one winner.
  if (local > 0.0 && u_mass >= excl && (u_mass < incl || incl >= total)) {
    var cum = excl;
    var pick = 0xffffffffu;
    var last_kept = 0u;
    for (var i = c0; i < c1; i++) {
      let l = logits[base + i];
      if (key_of(l) >= theta) {
        cum += exp(l / params.temperature - m);
        last_kept = i;
        if (cum > u_mass) { pick = i; break; }
      }
    }
    if (pick == 0xffffffffu) { pick = last_kept; }
    atomicMin(&pick_min, pick);
  }
  workgroupBarrier();
  if (lid == 0u) { out_ids[out_slot] = atomicLoad(&pick_min); }
}
