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
// Mapping: a workgroup is T = 8 invocations, one subgroup (needs the 'subgroups' feature and a
// subgroup size ≥ 8: resolveLinear checks). Invocation `lane` owns W rows (g·R + r)·T + lane,
// r < R (tile g·R + r in the tiles layout), and all MB activation rows of its M-block
// (workgroup z; rows past M repeat row M − 1 for loads and are not stored). K is walked in steps
// of 8 elements: each lane loads ONE x element per row (x[m, s·8 + lane]) and subgroupBroadcast
// hands all 8 to every lane, so x costs one loaded word per lane per 8 elements instead of 8
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

// Element e of every lane's v, for e = 0..7: the 8 x values of a step in every lane.
fn bcast8(v: f32) -> Chunk {
  return Chunk(vec4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
               vec4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
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
  var xrow: array<u32, {{MB}}>;         // x element index of (row, k = sl)
  var acc: array<f32, {{ACC}}>;         // [MB][R]
  for (var r = 0u; r < R; r++) { base[r] = row_base(g, r, lane); }
  for (var i = 0u; i < MB; i++) { xrow[i] = params.x_base + min(mb0 + i, params.M - 1u) * K + sl; }
  let steps = (K + 7u) / 8u;
  for (var s = 0u; s < steps; s++) {
    var ws: array<Chunk, {{R}}>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w8(base[r], s); }
    let inK = s * 8u + sl < K;
    for (var i = 0u; i < MB; i++) {
      let xc = bcast8(select(0.0, x[min(xrow[i] + s * 8u, xrow[i] + K - 1u - sl)], inK));
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
