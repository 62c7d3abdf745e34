// gemv_tiled.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   for small M (decode), with W
// repacked into lane-interleaved tiles so that neighbouring invocations read neighbouring memory.
// Reference: linearReference in src/ops/linear.ts; the layout: tiledCopyReference in
// src/ops/tiled-copy.ts (made once per weight by kernels/gemv_repack.wgsl, cached beside the weight).
//
// Layout of the packed W ("tiles", all in 16-byte chunks of CE elements: 8 halves or 4 f32):
//   Wp[tile][c][lane] = W[tile·T + lane, c·CE .. c·CE + CE)   tile < ceil(N / T), c < Kc = ceil(K / CE)
// i.e. [N/T, Kc, T, CE] elements, rows past N and columns past K zero. T = WG (one lane per row of
// a tile): at every step, lane i of a workgroup reads chunk i of a contiguous run of T chunks.
//
// Bindings (group 0); every storage binding is one window of at most maxStorageBufferBindingSize:
//   0 x:      array<f32 | vec4<f32>>   read        [M, K] rows m0.. of the activations, from
//                                                 params.x_base (x's element units); vec4 when
//                                                 K % 4 = 0 (XVEC), else scalars
//   1 w:      array<vec4<u32> | vec4<f32>> read    packed tiles ntile0.. of this window (f16 as
//                                                 packed pairs through unpack2x16float: no
//                                                 shader-f16 needed)
//   2 bias:   array<u32>               read        [N] f32 (bits) or f16 (packed pairs) from
//                                                 element params.b_base; dummy if bias_kind = 0
//   3 y:      array<f32>               read_write  [M, N] rows m0.. from params.y_base; this
//                                                 dispatch writes columns n0 .. n0 + nw
//   4 params: Params                   uniform
//
// Mapping: one workgroup = R consecutive tiles (R·T rows); invocation `lane` owns row lane of each
// of them and all MB activation rows of its M-block (workgroup z), and walks the whole K reduction
// itself (no workgroup memory, no barriers). x chunks are the same address for every lane.
// The last, partial chunk (K % CE ≠ 0) is read with guarded x loads (W is zero there).
// Accumulation: f32 per lane of a vec4 accumulator, lanes summed at the end, bias added last;
// f16 widens exactly, so only the summation order differs from the reference.
// T and R per device class, with the measurements: gemvTiledShape in src/ops/linear.ts; A/B against
// gemv.wgsl in bench/linear.bench.ts ("A/B" rows).

#include linear_io

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;
const T: u32 = {{WG}}u;
const CE: u32 = {{CE}}u;

#include gemv_chunk

fn load_w(i: u32) -> Chunk {
#if WF16
  return chunk_f16x8(w[i]);
#else
  return chunk_f32x4(w[i]);
#endif
}

// x[m, c·CE ..] with every element in range (c < K / CE).
fn load_x(m: u32, c: u32) -> Chunk {
#if XVEC
  let i = params.x_base + m * (params.K / 4u) + c * (CE / 4u);
#if WF16
  return Chunk(x[i], x[i + 1u]);
#else
  return Chunk(x[i], vec4<f32>());
#endif
#else
  let i = params.x_base + m * params.K + c * CE;
#if WF16
  return Chunk(vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]), vec4<f32>(x[i + 4u], x[i + 5u], x[i + 6u], x[i + 7u]));
#else
  return Chunk(vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]), vec4<f32>());
#endif
#endif
}

// The last, partial chunk: elements at or past K read as 0 (never outside row m).
fn load_x_tail(m: u32, c: u32) -> Chunk {
  var v: array<f32, 8>;
#if XVEC
  // K % 4 = 0 here, so only the f16 chunk can be partial, and only its upper half.
  let i = params.x_base + m * (params.K / 4u) + c * 2u;
  return Chunk(x[i], vec4<f32>());
#else
  let i = params.x_base + m * params.K;
  for (var e = 0u; e < CE; e++) {
    let k = c * CE + e;
    if (k < params.K) { v[e] = x[i + k]; }
  }
  return Chunk(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
#endif
}

#include linear_bias

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let tile0 = (wid.x + wid.y * nwg.x) * R;
  if (tile0 >= params.tiles) { return; }
  let mb0 = wid.z * MB;
  let kc = params.kc;
  let full = params.K / CE;              // chunks with every element in range
  var acc: array<vec4<f32>, {{ACC}}>;   // [MB][R]
  var base: array<u32, {{R}}>;           // chunk index of (tile, c = 0, lane)
  var ms: array<u32, {{MB}}>;
  for (var r = 0u; r < R; r++) { base[r] = (min(tile0 + r, params.tiles - 1u) * kc) * T + lane; }
  for (var i = 0u; i < MB; i++) { ms[i] = min(mb0 + i, params.M - 1u); }
  for (var c = 0u; c < kc; c++) {
    var xs: array<Chunk, {{MB}}>;
    if (c < full) {
      for (var i = 0u; i < MB; i++) { xs[i] = load_x(ms[i], c); }
    } else {
      for (var i = 0u; i < MB; i++) { xs[i] = load_x_tail(ms[i], c); }
    }
    for (var r = 0u; r < R; r++) {
      let wc = load_w(base[r] + c * T);
      for (var i = 0u; i < MB; i++) { acc[i * R + r] = fmac(wc, xs[i], acc[i * R + r]); }
    }
  }
  for (var r = 0u; r < R; r++) {
    let n = (tile0 + r) * T + lane;
    if (tile0 + r >= params.tiles || n >= params.nw) { break; }
    let b = load_bias(n);
    for (var i = 0u; i < MB; i++) {
      let m = mb0 + i;
      if (m >= params.M) { break; }
      y[params.y_base + m * params.N + params.n0 + n] = hsum(acc[i * R + r]) + b;
    }
  }
}
