// matmul.wgsl: y[m, n0 + n] = Σ_k x[m, k] · W[n, k] (+ bias[n])   (prefill, batched rows)
// Reference: linearReference in src/ops/linear.ts (Hugging Face nn.Linear, y = x·Wᵀ + b).
//
// Bindings (group 0); every storage binding is one window of at most maxStorageBufferBindingSize:
//   0 x:      array<vec4<f32> | f32>   read        [M, K] activation rows m0.. from params.x_base
//                                                  (in units of x's element type)
//   1 w:      array<vec4<f32> | f32 | vec2<u32> | u32>  read  [nw, K] rows n0..n0+nw of W
//                                                  (f16 read as packed pairs of halves)
//   2 bias:   array<u32>               read        [N] f32 (bits) or f16 (packed pairs) from element
//                                                  params.b_base; a dummy if params.bias_kind = 0
//   3 y:      array<f32>               read_write  [M, N] rows m0.. from params.y_base; this
//                                                  dispatch writes columns n0..n0+nw
//   4 params: Params                   uniform
//
// Mapping: register tiling without workgroup memory (best measured on lavapipe: f32 1024³ at
// 9–10 GFLOP/s in Node vs 1.2 naive; variants with workgroup memory and barriers were slower there
// and took 1–2 s to compile at first dispatch). One invocation computes a TM×TN block of y: TM activation rows × TN rows of W,
// walking K in chunks of VEC elements (VEC = 4: vec4<f32> for x and f32 W, vec2<u32> = 4 halves
// for f16 W; VEC = 1 when K % 4 ≠ 0, because rows then start unaligned). Both operands are
// contiguous along K (W is stored [N, K]), so every load is a full chunk. A workgroup is
// WGX × WGY invocations: x along W rows (adjacent invocations share the same activation row, so
// x loads are uniform across a SIMD lane group on llvmpipe), y along activation rows. Edge tiles
// clamp their row indices for loads and skip the stores: any M, N, K ≥ 1 work.
// TILES: W in the lane-interleaved tiles layout (src/gpu/tensor.ts TilesLayout: chunk (tile, c16,
// lane) of 16 bytes = W[tile·TT + lane, c16·CE ..] at chunk index (tile·kc + c16)·TT + lane, zero past
// N and K), the window starting at a tile: row j's VEC chunk c is read at its tile/lane address
// (VEC = 4: half a 16-byte chunk for f16, a whole one for f32; VEC = 1: one element). The TN rows
// of an invocation are TN neighbouring lanes of one tile (TN ≤ TT), so its loads are contiguous.
// Accumulation: f32 (one dot per chunk added to a scalar per output); bias added last.
// f16 weights are widened exactly to f32 (unpack2x16float, no shader-f16 needed).
//
// Measured (lavapipe, AMD EPYC 2 cores shared with other jobs, Node + Dawn, 2026-11-24; f32
// 512×1024×1024, interleaved A/B): t4x8 (kept) 4.6 GFLOP/s; t4x4 3.7; t8x8 3.0; t4x16 2.9;
// t2x8 3.4; vec4 accumulators with fma instead of dot() (t4x8) 3.3; invocations along M instead
// of N (W loads uniform, x per lane) 4.4. Workgroup shape barely matters (8×1 … 64×1, 8×4 within
// 5%). Details beside MATMUL_TM/MATMUL_TN in src/ops/linear.ts; current figures in bench/.

#include linear_io

const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;

#if TILES
const TT: u32 = {{TT}}u;   // rows per tile
const CE: u32 = {{CE}}u;   // elements per 16-byte chunk

// Chunk index of (tile of `row`, c16 = 0, lane of `row`) inside this window.
fn w_base(row: u32) -> u32 {
  return (row / TT) * params.kc * TT + row % TT;
}

// Chunk c (VEC elements) of the W row whose chunk base is `base`, widened to f32.
fn load_w(base: u32, c: u32, cpr: u32) -> vec4<f32> {
#if VEC4
#if WF16
  let p = w[(base + (c >> 1u) * TT) * 2u + (c & 1u)];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
#else
  return w[base + c * TT];
#endif
#else
  let e = (base + (c / CE) * TT) * CE + c % CE;   // element c of the row
#if WF16
  return vec4<f32>(unpack2x16float((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu).x, 0.0, 0.0, 0.0);
#else
  return vec4<f32>(w[e], 0.0, 0.0, 0.0);
#endif
#endif
}
#else
// Chunk c (VEC elements) of W row `row`, widened to f32 (VEC = 1: in .x, rest zero).
fn load_w(row: u32, c: u32, cpr: u32) -> vec4<f32> {
#if WF16
#if VEC4
  let p = w[row * cpr + c];
  return vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y));
#else
  let e = row * params.K + c;
  return vec4<f32>(unpack2x16float((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu).x, 0.0, 0.0, 0.0);
#endif
#else
#if VEC4
  return w[row * cpr + c];
#else
  return vec4<f32>(w[row * cpr + c], 0.0, 0.0, 0.0);
#endif
#endif
}
#endif

fn load_x(m: u32, c: u32, cpr: u32) -> vec4<f32> {
#if VEC4
  return x[params.x_base + m * cpr + c];
#else
  return vec4<f32>(x[params.x_base + m * cpr + c], 0.0, 0.0, 0.0);
#endif
}

#include linear_bias

@compute @workgroup_size({{WGX}}, {{WGY}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n_base = gid.x * TN;
  let m_base = gid.y * TM;
  if (n_base >= params.nw || m_base >= params.M) { return; }
  let cpr = params.K / {{VECN}}u;
  var rows: array<u32, {{TN}}>;
  var ms: array<u32, {{TM}}>;
#if TILES
  for (var j = 0u; j < TN; j++) { rows[j] = w_base(min(n_base + j, params.nw - 1u)); }
#else
  for (var j = 0u; j < TN; j++) { rows[j] = min(n_base + j, params.nw - 1u); }
#endif
  for (var i = 0u; i < TM; i++) { ms[i] = min(m_base + i, params.M - 1u); }
  var acc: array<f32, {{ACC}}>;   // [TM][TN]
  for (var c = 0u; c < cpr; c++) {
    var xs: array<vec4<f32>, {{TM}}>;
    for (var i = 0u; i < TM; i++) { xs[i] = load_x(ms[i], c, cpr); }
    for (var j = 0u; j < TN; j++) {
      let wv = load_w(rows[j], c, cpr);
      for (var i = 0u; i < TM; i++) { acc[i * TN + j] += dot(xs[i], wv); }
    }
  }
  for (var j = 0u; j < TN; j++) {
    let n = n_base + j;
    if (n >= params.nw) { break; }
    let b = load_bias(n);
    for (var i = 0u; i < TM; i++) {
      let m = m_base + i;
      if (m >= params.M) { break; }
      y[params.y_base + m * params.N + params.n0 + n] = acc[i * TN + j] + b;
    }
  }
}
