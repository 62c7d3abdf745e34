// gemv_bcast.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   for a few activation rows
// (M = 1..16: `onegen serve`'s batched decode step), each W chunk loaded once for MB rows.
// Reference: linearReference in src/ops/linear.ts (Hugging Face nn.Linear, y = x·Wᵀ + b).
//
// Bindings and Params: kernels/linear_io.wgsl. x: array<f32> [M, K] from params.x_base (f32
// units); W: TILED: the lane-interleaved tiles of T = 8 rows (src/gpu/tensor.ts TilesLayout, as
// kernels/gemv_tiled.wgsl reads them: 16-byte chunk (tile, c, lane) at (tile·kc + c)·T + lane,
// zero past N and K); else row-major [nw, K]: f16 as vec4<u32> (8 halves) or u32 pairs (VEC1),
// f32 as vec4<f32> or f32 (VEC1: K not a multiple of the chunk, so rows start unaligned).
//
// Mapping: a workgroup is T = 8 invocations (needs the 'subgroups' feature with subgroups of at
// least 8 / XL invocations: resolveLinear checks; XL = 1 where subgroups hold ≥ 8 lanes, XL = 2
// where they may hold only 4, e.g. SwiftShader, so a workgroup may be two subgroups). Invocation `lane` owns W rows (g·R + r)·T + lane,
// r < R (tile g·R + r in the tiles layout), and all MB activation rows of its M-block
// (workgroup z; rows past M repeat row M − 1 for loads and are not stored). K is walked in steps
// of 8 elements: each lane loads XL x elements per row (x[m, s·8 + XL·sl + j], sl its subgroup
// lane) and subgroupBroadcast from lanes 0 .. 8/XL − 1 hands all 8 to every lane of the subgroup, so x costs one loaded word per lane per 8 elements instead of 8
// (on llvmpipe every storage load is a per-lane gather, GPU-NOTES; a broadcast is a register
// shuffle); each lane then loads its R rows' 8 weights once and multiplies them into MB·R
// accumulators. No workgroup memory, no barriers.
// Accumulation: f32 scalar per (row, activation row), one 8-term dot per step; bias added last.
// f16 weights widen exactly, so only the summation order differs from the reference.
// Measured against gemv.wgsl / gemv_tiled.wgsl / matmul.wgsl: resolveLinear and GEMV_MAX_M in
// src/ops/linear.ts; bench/batch-gemv.bench.ts.
enable subgroups;

#include linear_io

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;
const T: u32 = 8u;     // rows per tile = invocations per workgroup = K elements per step
const XL: u32 = {{XL}}u; // x elements each lane loads per step (8 / lanes broadcast from)

#include gemv_chunk
#include linear_bias

// Weight chunk base of row slot r of this invocation: TILED the chunk index of (tile, c = 0, lane),
// else the row index (clamped to the window: rows past nw repeat the last, never stored).
fn row_base(g: u32, r: u32, lane: u32) -> u32 {
#if TILED
  return min(g * R + r, params.tiles - 1u) * params.kc * T + lane;
#else
  return min((g * R + r) * T + lane, params.nw - 1u);
#endif
}

// The 8 weights of K step s (elements s·8 .. s·8 + 7) of the row at `base`, widened to f32.
// Past K: zero (tiles, VEC1) or any finite weight of the same row (f32 chunk pairs: the second
// chunk clamped), always multiplied by x = 0 there.
fn load_w8(base: u32, s: u32) -> Chunk {
#if TILED
#if WF16
  return chunk_f16x8(w[base + s * T]);
#else
  let c = min(2u * s + 1u, params.kc - 1u);
  return Chunk(w[base + 2u * s * T], w[base + c * T]);
#endif
#else
#if VEC1
  var v: array<f32, 8>;
  for (var e = 0u; e < 8u; e++) {
    let k = min(s * 8u + e, params.K - 1u);
    let i = base * params.K + k;
#if WF16
    v[e] = chunk_f16x1(w[i >> 1u], i).lo.x;
#else
    v[e] = w[i];
#endif
  }
  return Chunk(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
#else
#if WF16
  return chunk_f16x8(w[base * (params.K / 8u) + s]);
#else
  let cpr = params.K / 4u;
  return Chunk(w[base * cpr + 2u * s], w[base * cpr + min(2u * s + 1u, cpr - 1u)]);
#endif
#endif
#endif
}

// x[row at xr, k], zero past K (the load clamped inside the row).
fn x_at(xr: u32, k: u32) -> f32 {
  return select(0.0, x[xr + min(k, params.K - 1u)], k < params.K);
}

// The 8 x values of step s of the row at xr, in every lane of the subgroup: lane sl loads
// XL of them (elements s·8 + XL·sl + j) and lanes 0 .. 8/XL − 1 broadcast theirs.
fn bcast8(xr: u32, s: u32, sl: u32) -> Chunk {
  let k = s * 8u + XL * sl;
#if XL2
  let a = x_at(xr, k);
  let b = x_at(xr, k + 1u);
  return Chunk(vec4<f32>(subgroupBroadcast(a, 0u), subgroupBroadcast(b, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(b, 1u)),
               vec4<f32>(subgroupBroadcast(a, 2u), subgroupBroadcast(b, 2u), subgroupBroadcast(a, 3u), subgroupBroadcast(b, 3u)));
#else
  let v = x_at(xr, k);
  return Chunk(vec4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
               vec4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
#endif
}

fn dot8(a: Chunk, b: Chunk) -> f32 {
  return dot(a.lo, b.lo) + dot(a.hi, b.hi);
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32, @builtin(subgroup_invocation_id) sl: u32) {
  let g = wid.x + wid.y * nwg.x;
  if (g * R * T >= params.nw) { return; }
  let mb0 = wid.z * MB;
  let K = params.K;
  var base: array<u32, {{R}}>;
  var xrow: array<u32, {{MB}}>;         // x element index of (row, k = 0)
  var acc: array<f32, {{ACC}}>;         // [MB][R]
  for (var r = 0u; r < R; r++) { base[r] = row_base(g, r, lane); }
  for (var i = 0u; i < MB; i++) { xrow[i] = params.x_base + min(mb0 + i, params.M - 1u) * K; }
  let steps = (K + 7u) / 8u;
  for (var s = 0u; s < steps; s++) {
    var ws: array<Chunk, {{R}}>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w8(base[r], s); }
    for (var i = 0u; i < MB; i++) {
      let xc = bcast8(xrow[i], s, sl);
      for (var r = 0u; r < R; r++) { acc[i * R + r] += dot8(ws[r], xc); }
    }
  }
  for (var r = 0u; r < R; r++) {
    let n = (g * R + r) * T + lane;
    if (n >= params.nw) { break; }
    let b = load_bias(n);
    for (var i = 0u; i < MB; i++) {
      let m = mb0 + i;
      if (m >= params.M) { break; }
      y[params.y_base + m * params.N + params.n0 + n] = acc[i * R + r] + b;
    }
  }
}
