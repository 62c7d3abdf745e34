// l2norm.wgsl: out[outRow0 + r, i] = x[r, i] / ‖x[r, :]‖₂   (0 for a zero row)
// Reference: l2normRowsReference in src/ops/l2norm.ts. Used to append OneGen document vectors to
// the index: rows of final-norm hidden states (f32) become unit rows of the index (f16 or f32).
//
// Bindings (group 0):
//   0 x:      array<f32>   read        [R, D] f32, a window of whole rows; row r starts at element xBase + r·D
//   1 out:    array<O>     read_write  window of the index [capacity, D], O = f32 or f16 (F16);
//                                      row r of x goes to element outBase + r·D of the window
//   2 params: Params       uniform
// Mapping, default: one workgroup per row (linear workgroup index = x + y·num_x; rows ≥ R
// skip); the WG invocations stride over the row, accumulate Σx² in f32, reduce it in workgroup
// memory, then write x · (1/sqrt(Σx²)) rounded once to O.
// Mapping with THREAD_ROW (short rows): one invocation per row (row = linear invocation index),
// a sequential Σx² over the row, then the scaled row; no workgroup memory or barriers.
// Precision: f32 throughout; f16 only on the store.
// PACKED (f16 index without shader-f16): out is array<atomic<u32>> of packed pairs. A word whose
// two halves both lie in the row is stored whole; a word shared with a neighbouring row (odd D,
// or an odd first element) gets its own half only, by atomicAnd (clear) then atomicOr (set), so
// two invocations writing the two halves of one word never lose each other's half.
#include f16_enable
#include f16_packed

struct Params {
  R: u32,        // rows in this window
  D: u32,        // row length in elements
  outBase: u32,  // element offset of output row 0 inside the bound out window
  xBase: u32,    // element offset of input row 0 inside the bound x window
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
#if PACKED
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
#else
@group(0) @binding(1) var<storage, read_write> out: array<{{O}}>;
#endif
@group(0) @binding(2) var<uniform> params: Params;

#if PACKED
// Stores x[base + j] · inv for j < D at out elements ob + j: the words of the row, starting at
// its k0-th word, every step-th (k0 = 0, step = 1 for one invocation per row).
fn store_row_packed(base: u32, ob: u32, inv: f32, k0: u32, step: u32) {
  let end = ob + params.D;
  let w1 = (end + 1u) >> 1u;
  for (var w = (ob >> 1u) + k0; w < w1; w += step) {
    let e = 2u * w;
    let lo_in = e >= ob;
    let hi_in = e + 1u < end;
    if (lo_in && hi_in) {
      atomicStore(&out[w], f16p_pair(x[base + e - ob] * inv, x[base + e + 1u - ob] * inv));
    } else if (lo_in) {
      atomicAnd(&out[w], f16p_keep_mask(e));
      atomicOr(&out[w], f16p_half_bits(x[base + e - ob] * inv, e));
    } else {
      atomicAnd(&out[w], f16p_keep_mask(e + 1u));
      atomicOr(&out[w], f16p_half_bits(x[base + e + 1u - ob] * inv, e + 1u));
    }
  }
}
#endif

#if THREAD_ROW
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (row >= params.R) { return; }
  let base = params.xBase + row * params.D;
  var ss = 0.0;
  for (var i = 0u; i < params.D; i++) {
    let v = x[base + i];
    ss += v * v;
  }
  let inv = select(0.0, 1.0 / sqrt(ss), ss > 0.0);
  let ob = params.outBase + row * params.D;
#if PACKED
  store_row_packed(base, ob, inv, 0u, 1u);
#else
  for (var i = 0u; i < params.D; i++) {
    out[ob + i] = {{O}}(x[base + i] * inv);
  }
#endif
}
#else
var<workgroup> partial: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;   // workgroup-uniform
  if (row >= params.R) { return; }
  let base = params.xBase + row * params.D;
  var ss = 0.0;
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  let inv = select(0.0, 1.0 / sqrt(total), total > 0.0);
  let ob = params.outBase + row * params.D;
#if PACKED
  store_row_packed(base, ob, inv, lid, {{WG}}u);
#else
  for (var i = lid; i < params.D; i += {{WG}}u) {
    out[ob + i] = {{O}}(x[base + i] * inv);
  }
#endif
}
#endif
