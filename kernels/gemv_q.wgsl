// gemv_q.wgsl: y[m, n0 + n] = Σ_k x[m, k] · deq(W)[n, k] (+ bias[n])   W block-quantized (Q8_0 / Q4_0)
// Reference: linearQReference in src/ops/linear_q.ts (dequantizeMatrix of src/quant/formats.ts,
// then linearReference): deq(W)[n, 32b + j] = q · d exactly (q the block's integer, d its f16 scale).
//
// W is read in its packed bytes (no dequantized copy), split-blocks layout of src/quant/formats.ts:
// quants of every block row-major by (n, b), then the f16 scales [N, B], B = K/32.
//   Q8_0 (define Q8): a block's 32 int8 = 8 words; half-block h (elements 16h..16h+15) is one
//        vec4<u32>: word c holds elements 16h + 4c .. +3, lowest byte first.
//   Q4_0 (define Q4): a block's 16 bytes = 4 words, byte j = element j (low nibble) and j + 16
//        (high nibble); half-block h = words 2h, 2h+1 (vec2<u32>): word c of it holds elements
//        8h + 4c .. +3 in its low nibbles and 16 + 8h + 4c .. +3 in its high nibbles.
// Either way one half-block gives 4 weight chunks of 4 elements, paired with 4 x chunks. The
// unpacking and the x pairing are shared with gemv_step through kernels/quant_block.wgsl.
// TILES: W in the tiles layout instead (src/gpu/tensor.ts TilesLayout for q8_0/q4_0, made at load
// time by src/quant/tiles.ts); its own entry point below (main under #if TILES).
//
// Bindings (group 0); every storage binding is one window of at most maxStorageBufferBindingSize:
//   0 x:      array<vec4<f32>>          read        [M, K] activation rows m0.. from params.x_base (vec4s)
//   1 q:      array<vec4<u32> | vec2<u32>>  read    quants of W rows n0..n0+nw from params.q_base
//                                                   (units of the array's element: one half-block)
//   2 s:      array<u32>                read        scales f16 [nw, B] (packed pairs) from half
//                                                   params.s_base
//   3 bias:   array<u32>                read        [N] f32 bits or f16 pairs from params.b_base;
//                                                   a dummy when params.bias_kind = 0
//   4 y:      array<f32>                read_write  [M, N] rows m0.. from params.y_base; this
//                                                   dispatch writes columns n0..n0+nw
//   5 params: Params                    uniform
//
// Mapping: gemv.wgsl's "rows" design with a register tile: one invocation owns R rows of W and MB
// activation rows and walks all K itself, block by block (R scales per block, then per half-block
// MB·4 x chunks and R quant words). Decode ("gemv_q", MB 1–2, R 4) and prefill ("matmul_q", MB 4,
// R 8: W read once per 4 activation rows) are the same code with other tile sizes. Workgroups: x =
// blocks of WG·R rows (2-D grid past 65,535), z = M-blocks; rows past nw / M reuse the last row for
// loads and skip the store. No workgroup memory, no barriers, no shader-f16 (scales through
// unpack2x16float), no packed-integer builtins (bytes and nibbles by shifts).
// Accumulation: f32, per lane of a vec4 accumulator; each weight chunk is dequantized exactly
// (q · d, ≤ 19 significant bits) before its fma, so only the summation order differs from the
// reference. Bias (f32 or f16 widened) added last. BLOCKSUM (experiment, A/B arm in
// bench/linear-q): the block's Σ q·x is summed unscaled and multiplied by d once per block (Q4_0:
// Σ n·x − 8·Σ x with the nibbles n unshifted), saving a multiply (and a subtract) per weight chunk;
// still f32 throughout, another summation order.
// Constraints: K a multiple of 32 (the launcher refuses others, naming the tensor).
//
// Measured (bench/linear-q --quick, lavapipe, 2-core machine at load average 12–16, 2026-12-02,
// bench/results/2026-12-02-linear-q-ab.json; alternated rounds, speed relative to f16 gemv/matmul
// on the same shape; the spread within one arm was 2–10×, so only large gaps mean anything):
//   M=1 2048×2048:  q8_0 ×0.44, q8_0 BLOCKSUM ×0.75, q4_0 ×0.33, q4_0 BLOCKSUM ×0.46
//   M=1 5632×2048:  q8_0 ×0.89, BLOCKSUM ×1.05;      q4_0 ×0.85, BLOCKSUM ×0.91
//   M=64 1024×1024: q8_0 ×0.54, BLOCKSUM ×0.70;      q4_0 ×0.78, BLOCKSUM ×0.58
// Three more alternated runs of M=1 (7 rounds each, load average 8–10, after making the weight
// chunks struct members and unrolling the x loads): q4_0 ×0.71–1.36 (BLOCKSUM ×0.76–1.83),
// q8_0 ×0.47–0.99 (BLOCKSUM ×0.49–1.22) of f16 gemv; the same arm moved 2× between runs.
// So this rows-layout design does not yet beat f16 on lavapipe although it loads 1.9–3.6× fewer
// bytes of W: its per-lane unpacking costs as much as the saved loads. The standalone experiments
// of the GPU notes (2.4–3.3× over f16) read lane-interleaved tiles; that layout (as gemv_tiled's)
// is the next step. Unmeasured on hardware GPUs (memory-bound there, where fewer bytes should win).

struct Params {
  K: u32,         // reduction length, elements (multiple of 32)
  nw: u32,        // rows of W in this window
  M: u32,         // activation rows in this M-window
  N: u32,         // y row stride, elements
  n0: u32,        // first output column of this window
  x_base: u32,    // offset of x row m0 inside the x binding, vec4s
  y_base: u32,    // element offset of y[m0, 0] inside the y binding
  b_base: u32,    // element offset of bias[n0] inside the bias binding
  bias_kind: u32, // 0: no bias, 1: f32, 2: f16
  q_base: u32,    // offset of row n0's quants inside the q binding, half-blocks
  s_base: u32,    // offset of row n0's scales inside the s binding, halves
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> q: array<{{QT}}>;
@group(0) @binding(2) var<storage, read> s: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

const R: u32 = {{R}}u;
const MB: u32 = {{MB}}u;

#if !TILES
// Scale of block b of W row `row` (window-relative), widened to f32.
fn scale(row: u32, b: u32, nb: u32) -> f32 {
  let e = params.s_base + row * nb + b;
  return q_scale_f16(s[e >> 1u], e);
}

// x chunk (4 elements) paired with weight chunk c of half-block h of block b.
fn x_index(m: u32, b: u32, h: u32, c: u32, cpr: u32) -> u32 {
  return params.x_base + m * cpr + q_x4(b, h, c);
}

// The 4 weight chunks of half-block h of block b of W row `row`, dequantized (· d; BLOCKSUM:
// unscaled integers, Q4_0 nibbles unshifted). Unpacking: kernels/quant_block.wgsl.
fn load_w(row: u32, b: u32, h: u32, nb: u32, d: f32) -> W4 {
  let p = q[params.q_base + (row * nb + b) * 2u + h];
#if Q8
#if BLOCKSUM
  return q8_ints(p);
#else
  return w4_scaled(q8_ints(p), d);
#endif
#else
#if BLOCKSUM
  // nibbles n unshifted: Σ (n − 8)·x = Σ n·x − 8·Σ x, the second term once per block (main)
  return q4_nibbles(p);
#else
  return w4_scaled(q4_ints(p), d);
#endif
#endif
}
#endif

#include quant_block
#include gemv_chunk
#include linear_bias
#include gemv_tile

#if TILES
// W in the tiles layout (src/gpu/tensor.ts TilesLayout for q8_0/q4_0, T = WG rows per tile, the
// window's tiles from chunk params.q_base of the q binding, QT = vec4<u32>; s unused): invocation lid
// of workgroup gl owns rows (gl·R + r)·T + lid, r < R, so the T lanes of a workgroup read T
// neighbouring 16-byte chunks at every step; MB activation rows share every quant chunk. Per group of 8
// blocks R scale chunks, per block MB·8 x vec4s (scaled by qt_xscale, Σx), then per row its quant
// chunk(s): acc += d · (Σ u·x − QOFF·Σx) (kernels/quant_block.wgsl). Always one scale per block.
// XBCAST (T = 8, subgroups of ≥ 8 lanes, or ≥ 4 with XL2; kernels/x_bcast.wgsl): each lane loads
// one (XL2: two) of a block's 8 x vec4s per activation row and subgroupBroadcast hands all 8 to
// every lane, instead of every lane loading all 8 (x was 8·MB of the 8·MB + R·QCB vec4s a lane
// loaded per block). Every lane runs the loop (rows past the window read clamped tiles, never stored).
const TT: u32 = {{WG}}u;
#if XBCAST
#include x_bcast
#endif

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
#if XBCAST
        @builtin(subgroup_invocation_id) sl: u32,
#endif
        @builtin(local_invocation_index) lid: u32) {
  let gl = wid.x + wid.y * nwg.x;   // workgroup-uniform
  let ntiles = (params.nw + TT - 1u) / TT;
  let tile0 = gl * R;
  if (tile0 >= ntiles) { return; }
  let row0 = tile0 * TT + lid;      // row r: row0 + r·T
  let cpr = params.K / 4u;          // x vec4s per row
  let nb = params.K / 32u;
  let kc = qt_kc(nb);
  var rows: array<u32, {{R}}>;      // chunk 0 of each row's packed row (tiles past the last clamped)
  for (var r = 0u; r < R; r++) { rows[r] = params.q_base + min(tile0 + r, ntiles - 1u) * kc * TT + lid; }
  let mb0 = wid.z * MB;
  var ms = tile_ms(mb0);
  var acc: array<vec4<f32>, {{ACC}}>;  // [MB][R]
  for (var i = 0u; i < {{ACC}}u; i++) { acc[i] = vec4<f32>(); }
  let xsc = qt_xscale();
  for (var g = 0u; g * 8u < nb; g++) {
    let nbg = min(8u, nb - g * 8u);
    let c0 = g * QGC;
    var sv: array<vec4<u32>, {{R}}>;
    for (var r = 0u; r < R; r++) { sv[r] = q[rows[r] + (c0 + nbg * QCB) * TT]; }
    for (var j = 0u; j < nbg; j++) {
      let b = g * 8u + j;
      var xp: array<array<vec4<f32>, 8>, {{MB}}>;
      var xo: array<vec4<f32>, {{MB}}>;
      for (var i = 0u; i < MB; i++) {
        var xsum = vec4<f32>();
#if XBCAST
        let xr = params.x_base + ms[i] * cpr + b * 8u + bc_lane(sl);
        let v0 = x[xr];
#if XL2
        let xa = bc8(v0, x[xr + 4u]);
#else
        let xa = bc8(v0, v0);
#endif
        for (var k = 0u; k < 8u; k++) {
          let xv = xa[k];
#else
        for (var k = 0u; k < 8u; k++) {
          let xv = x[params.x_base + ms[i] * cpr + b * 8u + k];
#endif
          xsum += xv;
          xp[i][k] = xv * xsc;
        }
        xo[i] = xsum * -QOFF;   // exact (QOFF a power of two)
      }
      let cq = c0 + j * QCB;
      for (var r = 0u; r < R; r++) {
        let at = rows[r] + cq * TT;
        let p0 = q[at];
#if Q8
        let p1 = q[at + TT];
#else
        let p1 = p0;
#endif
        let d = vec4<f32>(qt_scale(sv[r], j));
        for (var i = 0u; i < MB; i++) { acc[i * R + r] = fma(d, qt_block_dot(p0, p1, xp[i], xo[i]), acc[i * R + r]); }
      }
    }
  }
  for (var r = 0u; r < R; r++) {
    let n = row0 + r * TT;
    if (n >= params.nw) { break; }
    let bv = load_bias(n);
    for (var i = 0u; i < MB; i++) {
      let m = mb0 + i;
      if (m >= params.M) { break; }
      y[params.y_base + m * params.N + params.n0 + n] = hsum(acc[i * R + r]) + bv;
    }
  }
}
#else
@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = tile_of(wid, nwg, lid);
  if (tile.x >= params.nw) { return; }
  let cpr = params.K / 4u;   // x vec4s per row
  let nb = params.K / 32u;   // blocks per row
  var acc: array<vec4<f32>, {{ACC}}>;  // [MB][R]
  var rows = tile_rows(tile.x);
  var ms = tile_ms(tile.y);
  for (var b = 0u; b < nb; b++) {
    var ds: array<f32, {{R}}>;
    for (var r = 0u; r < R; r++) { ds[r] = scale(rows[r], b, nb); }
#if BLOCKSUM
    var bacc = array<vec4<f32>, {{ACC}}>();  // [MB][R] this block's Σ q·x, unscaled (explicitly zeroed each block)
#if !Q8
    var xsum = array<vec4<f32>, {{MB}}>();   // [MB] this block's Σ x (lanes)
#endif
#endif
    for (var h = 0u; h < 2u; h++) {
      var xs: array<vec4<f32>, {{XS}}>;  // [MB][4]
      for (var i = 0u; i < MB; i++) {
        xs[i * 4u] = x[x_index(ms[i], b, h, 0u, cpr)];
        xs[i * 4u + 1u] = x[x_index(ms[i], b, h, 1u, cpr)];
        xs[i * 4u + 2u] = x[x_index(ms[i], b, h, 2u, cpr)];
        xs[i * 4u + 3u] = x[x_index(ms[i], b, h, 3u, cpr)];
#if BLOCKSUM
#if !Q8
        xsum[i] += (xs[i * 4u] + xs[i * 4u + 1u]) + (xs[i * 4u + 2u] + xs[i * 4u + 3u]);
#endif
#endif
      }
      for (var r = 0u; r < R; r++) {
        let wc = load_w(rows[r], b, h, nb, ds[r]);
        for (var i = 0u; i < MB; i++) {
#if BLOCKSUM
          var a = bacc[i * R + r];
#else
          var a = acc[i * R + r];
#endif
          a = fma(wc.w0, xs[i * 4u], a);
          a = fma(wc.w1, xs[i * 4u + 1u], a);
          a = fma(wc.w2, xs[i * 4u + 2u], a);
          a = fma(wc.w3, xs[i * 4u + 3u], a);
#if BLOCKSUM
          bacc[i * R + r] = a;
#else
          acc[i * R + r] = a;
#endif
        }
      }
    }
#if BLOCKSUM
    for (var r = 0u; r < R; r++) {
      for (var i = 0u; i < MB; i++) {
#if Q8
        acc[i * R + r] = fma(vec4<f32>(ds[r]), bacc[i * R + r], acc[i * R + r]);
#else
        acc[i * R + r] = fma(vec4<f32>(ds[r]), fma(vec4<f32>(-8.0), xsum[i], bacc[i * R + r]), acc[i * R + r]);
#endif
      }
    }
#endif
  }
  store_tile(&acc, tile.x, tile.y);
}
#endif
