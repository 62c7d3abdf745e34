// gemv_step.wgsl: the fused decode GEMV of the step program (API: src/ops/gemv-step.ts):
//   y[m', col] = epilogue( Σ_k prologue(x[m])[k] · W[n, k] + bias[col] )   for the live rows m
// Reference: gemvStepReference in src/ops/gemv-step.ts.
//   prologue NORM:  x̂[k] = x[m, k] · rsqrt(mean_j x[m, j]² + eps) · g[k]   (Llama RMSNorm; g f32 or
//                   f16); without NORM x̂ = x.
//   W: f32, f16, or block-quantized (QUANT: GGUF Q8_0 / Q4_0, deq(W) = q · d exactly, read in
//   its packed bytes, see below); one matrix [N, K] (windows of it, one dispatch each), or MULTI: two or three matrices
//   W0 [N0, K], W1 [N1, K], W2 [N2, K] bound separately whose output rows are concatenated
//   (col = n, N0 + n, N0 + N1 + n: q, k, v), or SWIGLU: W0 = gate [I, K], W1 = up [I, K].
//   epilogue STORE:    y[m', col] = acc + bias[col]
//            RESIDUAL: y[m', col] += acc + bias[col]      (y is the residual stream, in place)
//            SWIGLU:   y[m', i] = silu(accg_i + bias[i]) · (accu_i + bias[I + i])
//   rows: FROM_STEP: m = 0..T−1 with T = step[STEP_ROWS] (clamped to params.M, the row capacity);
//         otherwise T = params.M (host rows). LAST_ROW: only m = T − 1, written to y row 0.
//         m' = m (or 0 with LAST_ROW).
//
// Bindings (group 0); 8 storage bindings, the WebGPU default maximum per stage:
//   0 x:      array<XT>  read        [rows, K] f32 (XT = vec4<f32> when VEC ≥ 4, else f32), whole
//   1 g:      array<u32> read        [K] RMSNorm weight, f32 bits or f16 packed pairs (GF16);
//                                    a dummy without NORM
//   2 w0:     array<WT>  read        [nw, K] rows n0.. of W0 (a window of it in single-matrix mode);
//                                    f16 as packed u32 pairs (vec4<u32> = 8 halves) or f32
//   3 w1:     array<WT>  read        [N1, K] (MULTI) or up [I, K] (SWIGLU); else a dummy
//   4 w2:     array<WT>  read        [N2, K] (MULTI with three matrices); else a dummy
//   5 bias:   array<u32> read        concatenated bias (f32 bits or f16 pairs) from element
//                                    params.b_base; a dummy when params.bias_kind = 0
//   QUANT (split-blocks layout of src/quant/formats.ts: the quants of every block, then the f16
//   scales [N, K/32]; unpacking shared with gemv_q through kernels/quant_block.wgsl): w* are
//   array<vec4<u32>>. Single matrix (QWIN): w0 = the quants of this window's rows from vec4
//   params.q_base, w1 = their scales from half params.s_base. MULTI / SWIGLU: each matrix's buffer
//   bound whole (quants and scales in one binding, scales from half n_i·K/2 (Q8) or n_i·K/4 (Q4)).
//   Bound sizes are rounded up to 16 bytes (the pool's buffers are) so the last scales are reachable.
//   6 step:   array<u32> read        the step state u32[8] (kernels/step_state.wgsl); a dummy
//                                    without FROM_STEP
//   7 y:      array<f32> read_write  [rows (1 with LAST_ROW), N], whole
//   8 params: Params     uniform
//
// TILES (W in the lane-interleaved tiles layout of src/gpu/tensor.ts TilesLayout, T = WG: chunk
//   (tile, c, lane) = W[tile·T + lane, c·CE ..] at chunk index (tile·kc + c)·T + lane, CE = 8 halves
//   (f16, WT = vec4<u32>) or 4 f32 (WT = vec4<f32>), zero past N and K): invocation lid of
//   workgroup gl owns rows (gl·R + r)·T + lid, r < R, so at every chunk step the T lanes read T
//   neighbouring 16-byte chunks. K need not be a multiple of CE: KTAIL variants (chosen when it is
//   not) read the last, partial chunk of x (and g) guarded; x is vec4 when K % 4 = 0 (XVEC), scalars otherwise. Windows are whole tiles.
//   Same prologues, matrices and epilogues as the rows layout.
//   QUANT with TILES (q8_0/q4_0 tiles: groups of 8 blocks per packed row, their quant chunks then one
//   chunk of their scales; kernels/quant_block.wgsl, src/quant/tiles.ts): w* hold whole tiles, quants
//   and scales together (single matrix: windows of whole tiles, as f16; QWIN off), chunk c of a row at
//   rows[r] + c·T as above. Always one scale per block (BLOCKSUM): per block and row,
//   acc += d · (Σ u·x̂ − QOFF·Σ x̂) with bytes / nibbles masked in place and x̂ pre-scaled by 2^(−8i)
//   (no shift per weight; exact), Σx̂ and the scaling shared by the R rows.
// Mapping: the rows design of gemv.wgsl (neighbouring invocations own neighbouring groups of R
// rows of W; each invocation walks the whole K reduction with VEC-element chunks, helpers in
// gemv_chunk.wgsl). A workgroup belongs to exactly one matrix (MULTI: workgroups [0, g1) → W0,
// [g1, g2) → W1, [g2, groups) → W2), so the matrix choice is workgroup-uniform. The grid is fixed
// (sized for one row's work); the kernel loops over the T live rows inside, reading W once per row.
// NORM, three paths (src/ops/gemv-step.ts GemvStepNormPath), per live row:
//   loop (XSHARED off): the K loop also accumulates Σx² from the x chunks it loads anyway and
//     multiplies each x chunk by its g chunk; the sums are scaled by inv = 1/sqrt(Σx²/K + eps) at
//     the end. No barrier, no workgroup memory; costs the g loads (1/6 more words for f16 g).
//   shared (XSHARED): the workgroup reduces Σx² (lanes stride over x, tree reduction as
//     rmsnorm.wgsl) and stages x̂ = x·inv·g in workgroup memory for the K loop. Barriers sit
//     outside every lane-dependent branch.
//   prepass: entry point norm_rows (end of file) writes x̂ of the live rows into a scratch, one
//     workgroup per row; the GEMV then runs without NORM on it (2 dispatches).
// Accumulation: f32 per lane of a vec4, lanes summed at the end, bias added last (as gemv.wgsl).
// QUANT: the K loop walks blocks as gemv_q does (R scales per block, then per half-block 4 x chunks
// and R quant words). BLOCKSUM (the resolver's default for quantized W; off: each weight chunk is
// dequantized exactly, q · d, before its fma): a block's Σ q·x is summed unscaled and multiplied by
// d once per block (Q4_0: Σ n·x − 8·Σ x, nibbles n unshifted), as gemv_q's BLOCKSUM. Either way
// f32 throughout, only the summation order differs from the reference on the dequantized W.
// K a multiple of 32.
//
// Measured (lavapipe: llvmpipe 8-wide, 2 shared cores at load 4–9, Node + Dawn, 2026-12-02;
// bench/gemv-step.bench.ts, results bench/results/2026-12-02-5ef4eca-gemv-step-ab.json; f16 W,
// T = 1 from a step state; A/B arms alternated in one process; speed = unfused ms / fused ms, as
// wall time / as CPU time of the driver's worker threads, which swings less with the load):
//   fused vs unfused ops             Llama 134M (D=576, I=1536)   TinyLlama (D=2048, I=5632)
//   qkv   (rmsnorm + 3 linear)       1.39 / 1.18  (loop norm)      1.55 / 1.63  (prepass norm)
//   o     (linear + add)             1.52 / 0.93                   0.86 / 1.13
//   gate/up (rmsnorm+2 linear+swiglu) 1.13 / 0.75 (loop; prepass 1.48 / 0.86) 1.21 / 1.10 (prepass)
//   down  (linear + add)             2.04 / 1.20                   1.11 / 1.07
//   lm_head (rmsnorm + linear, last) 1.36 / 0.90  (prepass)        0.95 / 1.10  (prepass, 2 windows)
//   one layer's GEMVs                1.33 / 0.93                   1.19 / 1.15
//   (single shapes swing ±20% between runs on this machine; the earlier runs at load 20 agreed
//   in direction.) The wall-time gain is mostly fewer dispatches (~0.1–0.2 ms each).
// Quantized W (bench/gemv-step.bench.ts benchQuant, bench/results/2026-12-02-qstep-gemv-step-quant.json;
// lavapipe at load 3–5, fused q vs fused f16 on the 134M shape, T = 1, wall; two runs):
//   one layer's GEMVs: q8_0 ×0.76 / ×0.72, BLOCKSUM ×0.82 / ×0.82; q4_0 ×0.95 / ×1.05, BLOCKSUM
//   ×1.11 / ×1.10 (the default). By GEMV (BLOCKSUM): q4_0 qkv ×0.65–0.78, o ×0.56–0.90, gate/up
//   ×1.53–1.59, down ×0.77–0.97, lm_head ×1.00–1.12; q8_0 qkv ×0.57–0.61, o ×0.46–0.67, gate/up
//   ×1.09–1.13, down ×0.57–0.64, lm_head ×0.69–0.71. As gemv_q: 1.9–3.6× fewer bytes, but the
//   per-lane unpacking costs about what the saved loads do on llvmpipe; unmeasured on hardware.
// Designs measured and dropped (same bench, driver CPU unless noted):
//   - NORM by barriers + workgroup memory ("shared", kept as an arm): 0.55–0.93 of unfused; any
//     workgroupBarrier made the kernel ~1.3× slower (a barrier added to the plain GEMV: lm_head
//     ×0.76 wall) — llvmpipe runs barrier shaders as coroutines.
//   - one K loop with a workgroup-uniform matrix switch in the W load (q/k/v): 1.45× the CPU of
//     the same rows as one matrix; now one loop per binding (dot_rows with a constant index).
//   - swiglu with gate and up in one K loop (2R accumulators; SWIGLU_JOINT, kept as an arm):
//     1536×576 R=4 3.02 ms vs 2.08 two loops (R=2: 2.08 vs 2.50); TinyLlama 0.69 vs 1.10 of unfused.
//   - T rows: W is read once per live row (fine for T = 1; an injection of L rows costs L GEMVs).
//     BLOCKED (a forced arm, src/ops/gemv-step.ts STEP_ROW_BLOCK: figures there) shares each W
//     chunk among MB rows: ×1.4–2.2 at T = 26 with the x broadcast, slower without it (x reloaded
//     per W row), and it compiles 2–3× longer.
#include gemv_chunk
#include linear_bias
#include step_state
#if GF16
#include f16_packed
#endif
#if SWIGLU
#include silu
#endif
#if QUANT
#include quant_block
#endif
#if XBCAST
#include x_bcast
#endif

struct Params {
  K: u32,         // reduction length, elements
  N: u32,         // y row stride, elements
  M: u32,         // host rows (without FROM_STEP), else the row capacity of x and y
  nw: u32,        // rows of W0 in this window (SWIGLU: I)
  n1: u32,        // rows of W1 (MULTI)
  n2: u32,        // rows of W2 (MULTI; 0 with two matrices)
  n0: u32,        // y column of W0's first row in this window
  g1: u32,        // first workgroup of W1 (MULTI)
  g2: u32,        // first workgroup of W2 (MULTI; = groups with two matrices)
  groups: u32,    // workgroups of this dispatch (the 2-D grid may overshoot)
  b_base: u32,    // bias element of W0's first row in this window, inside the bias binding
  bias_kind: u32, // 0: none, 1: f32, 2: f16
  eps: f32,       // RMSNorm epsilon (NORM)
  kf: f32,        // K as f32 (the mean's divisor)
  q_base: u32,    // QWIN: vec4 of W0 row n0's quants inside the w0 binding
  s_base: u32,    // QWIN: half of W0 row n0's scales inside the w1 binding
}

@group(0) @binding(0) var<storage, read> x: array<{{XT}}>;
@group(0) @binding(1) var<storage, read> g: array<u32>;
@group(0) @binding(2) var<storage, read> w0: array<{{WT}}>;
@group(0) @binding(3) var<storage, read> w1: array<{{WT}}>;
@group(0) @binding(4) var<storage, read> w2: array<{{WT}}>;
@group(0) @binding(5) var<storage, read> bias: array<u32>;
@group(0) @binding(6) var<storage, read> step: array<u32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

const R: u32 = {{R}}u;
const XW: u32 = {{XW}}u;   // elements per x unit (4: vec4<f32>, 1: f32)

#if NORM
var<workgroup> partial: array<f32, {{WG}}>;   // norm_prologue, norm_rows
#endif
#if XSHARED
var<workgroup> xs: array<{{XT}}, {{XCAP}}>;   // x̂ of the current row
#endif

#if XBCAST
// XBCAST (TILES, K a multiple of 32, no XSHARED/KTAIL; subgroups of ≥ 8 / XL lanes; W f16, f32 or
// q8_0/q4_0): x̂ through the
// subgroup instead of per-lane loads. K is walked 32 elements (8 x vec4) at a time; lane sl loads
// vec4 sl of them (XL 2, 4-lane subgroups: sl and sl + 4), applies the in-loop norm to it (Σx² lane
// by lane, summed over the subgroup at the end), and subgroupBroadcast hands all 8 to every lane,
// as kernels/gemv_bcast.wgsl does: x and g cost XL vec4 loads per lane per 32 elements instead of 8.
// Every lane runs the K loop (broadcasts need them all; lanes past the matrix read clamped tiles,
// never stored).
var<private> sl_: u32;   // subgroup_invocation_id

// x̂ vec4 u of the row at x unit xb (the in-loop norm's Σx² into ss).
fn xb_load(xb: u32, u: u32, ss: ptr<function, vec4<f32>>) -> vec4<f32> {
#if NORM
  let xr = x[xb + u];
  *ss = fma(xr, xr, *ss);
  return xr * g4(4u * u);
#else
  return x[xb + u];
#endif
}

// This lane's x̂ vec4(s) of the 32-element step at x vec4 u0, broadcast: the 8 x̂ vec4s.
// (XL 2 on subgroups of 8 lanes: lanes 4..7 load what lanes 0..3 do, unused.)
fn bcast_step(xb: u32, u0: u32, ss: ptr<function, vec4<f32>>) -> array<vec4<f32>, 8> {
  let v0 = xb_load(xb, u0 + bc_lane(sl_), ss);
#if XL2
  let v1 = xb_load(xb, u0 + bc_lane(sl_) + 4u, ss);
#else
  let v1 = v0;
#endif
  return bc8(v0, v1);
}

// Σx² of the row in every lane, from each lane's sum over the x vec4s it loaded (XL 2: lanes 4..7
// of a wider subgroup repeat lanes 0..3 and are left out).
fn bcast_sumsq(ss: vec4<f32>) -> vec4<f32> {
#if XL2
  return subgroupAdd(select(vec4<f32>(), ss, sl_ < 4u));
#else
  return subgroupAdd(ss);
#endif
}

#endif
// Word i of matrix `mat` (workgroup-uniform; constant with SWIGLU).
fn w_at(mat: u32, i: u32) -> {{WT}} {
#if MULTI
  if (mat == 2u) { return w2[i]; }
  if (mat == 1u) { return w1[i]; }
#endif
#if SWIGLU
  if (mat == 1u) { return w1[i]; }
#endif
  return w0[i];
}

#if !TILES
#if !QUANT
fn load_w(mat: u32, row: u32, c: u32, cpr: u32) -> Chunk {
#if WF16
#if VEC8
  return chunk_f16x8(w_at(mat, row * cpr + c));
#else
  let e = row * params.K + c;           // element index of a half
  return chunk_f16x1(w_at(mat, e >> 1u), e);
#endif
#else
#if VEC4
  return chunk_f32x4(w_at(mat, row * cpr + c));
#else
  return chunk_f32x1(w_at(mat, row * cpr + c));
#endif
#endif
}
#endif
#endif

#if QUANT
// First half of matrix mat's scales inside its scales binding (mat constant at every call site).
fn q_sbase(mat: u32) -> u32 {
#if QWIN
  return params.s_base;
#else
  var n = params.nw;
#if MULTI
  if (mat == 1u) { n = params.n1; }
  if (mat == 2u) { n = params.n2; }
#endif
  return n * (params.K / {{QDIV}}u);   // the matrix's quants in halves: Q8 K/2, Q4 K/4 per row
#endif
}

// Scale of block b of row `row` of matrix mat, widened to f32 (sb = q_sbase(mat)).
fn q_scale(mat: u32, row: u32, b: u32, nb: u32, sb: u32) -> f32 {
  let e = sb + row * nb + b;
#if QWIN
  let v = w1[e >> 3u];
#else
  let v = w_at(mat, e >> 3u);
#endif
  return q_scale_f16(v[(e >> 1u) & 3u], e);
}

// The 4 weight chunks of half-block h of block b of row `row` of matrix mat, dequantized (· d);
// BLOCKSUM: unscaled (Q8_0 integers, Q4_0 nibbles unshifted).
fn q_load_w(mat: u32, row: u32, b: u32, h: u32, nb: u32, d: f32) -> W4 {
#if Q8
  let w = q8_ints(w_at(mat, params.q_base + (row * nb + b) * 2u + h));
#else
  let blk = w_at(mat, params.q_base + row * nb + b);   // one Q4_0 block = one vec4<u32>
#if BLOCKSUM
  let w = q4_nibbles(select(blk.xy, blk.zw, h == 1u));
#else
  let w = q4_ints(select(blk.xy, blk.zw, h == 1u));
#endif
#endif
#if BLOCKSUM
  return w;
#else
  return w4_scaled(w, d);
#endif
}
#endif

#if !TILES
// Chunk c of the x row starting at x unit xb.
fn load_x(xb: u32, c: u32) -> Chunk {
#if VEC8
  return Chunk(x[xb + 2u * c], x[xb + 2u * c + 1u]);
#else
#if VEC4
  return Chunk(x[xb + c], vec4<f32>());
#else
  return chunk_f32x1(x[xb + c]);
#endif
#endif
}
#endif

#if NORM
// RMSNorm weight elements e (scalar) and e..e+3 (e a multiple of 4), widened to f32.
fn g1(e: u32) -> f32 {
#if GF16
  return f16p_at(g[e >> 1u], e);
#else
  return bitcast<f32>(g[e]);
#endif
}

fn g4(e: u32) -> vec4<f32> {
#if GF16
  return f16p_vec4(vec2<u32>(g[e >> 1u], g[(e >> 1u) + 1u]));
#else
  return bitcast<vec4<f32>>(vec4<u32>(g[e], g[e + 1u], g[e + 2u], g[e + 3u]));
#endif
}

// g for x unit i.
fn g_unit(i: u32) -> {{XT}} {
#if XVEC
  return g4(4u * i);
#else
  return g1(i);
#endif
}

fn sq(h: {{XT}}) -> f32 {
#if XVEC
  return dot(h, h);
#else
  return h * h;
#endif
}

// Σx² of the row at x unit xb (all lanes of the workgroup; barriers), reduced as rmsnorm.wgsl.
fn row_sumsq(xb: u32, lid: u32, xw: u32) -> f32 {
  workgroupBarrier();   // the previous row's readers of partial (and xs) are done
  var ss = 0.0;
  for (var i = lid; i < xw; i += {{WG}}u) { ss += sq(x[xb + i]); }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

#if XSHARED
// Σx² of the row at x unit xb → inv = 1 / sqrt(mean + eps); with XSHARED also xs = x·inv·g.
// Called by every invocation of the workgroup (uniform control flow: it holds barriers).
fn norm_prologue(xb: u32, lid: u32, xw: u32) -> f32 {
  let inv = 1.0 / sqrt(row_sumsq(xb, lid, xw) / params.kf + params.eps);
  for (var i = lid; i < xw; i += {{WG}}u) { xs[i] = x[xb + i] * inv * g_unit(i); }
  workgroupBarrier();
  return inv;
}
#endif

#if !TILES
#if !XSHARED
// Chunk c of g (inline NORM).
fn load_g(c: u32) -> Chunk {
#if VEC8
  return Chunk(g4(8u * c), g4(8u * c + 4u));
#else
#if VEC4
  return Chunk(g4(4u * c), vec4<f32>());
#else
  return chunk_f32x1(g1(c));
#endif
#endif
}
#endif
#endif
#endif

#if !TILES
// Chunk c of x̂ (the prologue's output) for the row at x unit xb.
fn load_xhat(xb: u32, c: u32) -> Chunk {
#if XSHARED
#if VEC8
  return Chunk(xs[2u * c], xs[2u * c + 1u]);
#else
#if VEC4
  return Chunk(xs[c], vec4<f32>());
#else
  return chunk_f32x1(xs[c]);
#endif
#endif
#else
  return load_x(xb, c);
#endif
}
#endif

// The K loop for rows `rows` of matrix `mat` (a constant at every call site) and the x row at
// x unit xb: acc[r] and, for the in-loop norm, Σx² of the x row.
// SWIGLU_JOINT (a losing arm kept runnable): the same loop also accumulates up's rows in up.
struct Sums { acc: array<vec4<f32>, {{R}}>, up: array<vec4<f32>, {{R}}>, ss: vec4<f32> }


#if TILES
const TT: u32 = {{WG}}u;   // rows per tile
#if QUANT
// Chunks per packed row (quants and scale chunks: kernels/quant_block.wgsl qt_kc).
fn tiles_kc() -> u32 { return qt_kc(params.K / 32u); }
#else
const CE: u32 = {{VECN}}u; // elements per 16-byte chunk
#if XBCAST
const XCPS: u32 = 32u / CE;  // W chunks per 32-element broadcast step: 4 (f16) or 8 (f32)

// Chunk j of a broadcast step's x̂ (xa: its 8 x̂ vec4s).
fn xa_chunk(xa: array<vec4<f32>, 8>, j: u32) -> Chunk {
#if WF16
  return Chunk(xa[2u * j], xa[2u * j + 1u]);
#else
  return Chunk(xa[j], vec4<f32>());
#endif
}
#endif

// Chunks per packed row.
fn tiles_kc() -> u32 { return (params.K + CE - 1u) / CE; }

// Chunk i (16 bytes) of matrix mat, widened.
fn load_wt(mat: u32, i: u32) -> Chunk {
#if WF16
  return chunk_f16x8(w_at(mat, i));
#else
  return chunk_f32x4(w_at(mat, i));
#endif
}

// x unit i of the row at x unit xb (x̂ from workgroup memory with XSHARED).
fn x_unit(xb: u32, i: u32) -> {{XT}} {
#if XSHARED
  return xs[i];
#else
  return x[xb + i];
#endif
}

// Element k (< K) of that row.
fn x_elem(xb: u32, k: u32) -> f32 {
#if XVEC
  return x_unit(xb, k >> 2u)[k & 3u];
#else
  return x_unit(xb, k);
#endif
}

// Chunk c of the row, every element < K.
fn load_xt(xb: u32, c: u32) -> Chunk {
#if XVEC
#if VEC8
  return Chunk(x_unit(xb, 2u * c), x_unit(xb, 2u * c + 1u));
#else
  return Chunk(x_unit(xb, c), vec4<f32>());
#endif
#else
  let k = c * CE;
  let lo = vec4<f32>(x_unit(xb, k), x_unit(xb, k + 1u), x_unit(xb, k + 2u), x_unit(xb, k + 3u));
#if VEC8
  return Chunk(lo, vec4<f32>(x_unit(xb, k + 4u), x_unit(xb, k + 5u), x_unit(xb, k + 6u), x_unit(xb, k + 7u)));
#else
  return Chunk(lo, vec4<f32>());
#endif
#endif
}

// The last, partial chunk c: elements at or past K read as 0.
fn load_xt_tail(xb: u32, c: u32) -> Chunk {
  var v: array<f32, 8>;
  for (var e = 0u; e < CE; e++) {
    let k = c * CE + e;
    if (k < params.K) { v[e] = x_elem(xb, k); }
  }
  return Chunk(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

// Chunk c of x in the K loop: only KTAIL variants (K % CE ≠ 0) have a partial last chunk.
fn load_x(xb: u32, c: u32) -> Chunk {
#if KTAIL
  if (c == params.K / CE) { return load_xt_tail(xb, c); }
#endif
  return load_xt(xb, c);
}

#if NORM
#if !XSHARED
// Chunk c of g, every element < K (g4 reads 4 elements from a multiple of 4).
fn load_gt(c: u32) -> Chunk {
#if VEC8
  return Chunk(g4(8u * c), g4(8u * c + 4u));
#else
  return Chunk(g4(4u * c), vec4<f32>());
#endif
}

fn load_gt_tail(c: u32) -> Chunk {
  var v: array<f32, 8>;
  for (var e = 0u; e < CE; e++) {
    let k = c * CE + e;
    if (k < params.K) { v[e] = g1(k); }
  }
  return Chunk(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

// Chunk c of g (inline NORM), partial last chunk as load_x.
fn load_g(c: u32) -> Chunk {
#if KTAIL
  if (c == params.K / CE) { return load_gt_tail(c); }
#endif
  return load_gt(c);
}
#endif
#endif

// The rest of the K loop's loads in the tiles layout (dot_rows below): x̂ (load_x reads whichever
// x_unit reads: x, or xs with XSHARED) and chunk c of the row whose chunk 0 is at `at`.
fn load_xhat(xb: u32, c: u32) -> Chunk { return load_x(xb, c); }
fn load_w(mat: u32, at: u32, c: u32, kc: u32) -> Chunk { return load_wt(mat, at + c * TT); }
#endif
#endif
#if QUANT
#if TILES
// The K loop on quantized W in the tiles layout: rows[r] = chunk 0 of row r's packed row (chunk c
// at rows[r] + c·T). Per group of 8 blocks, R scale chunks; per block, the 8 x̂ vec4s (prologue as
// the rows layout's loop), Σx, x̂ · qt_xscale, then per row its quant chunk(s) and
// acc += d · (Σ u·x̂ − QOFF·Σx) (kernels/quant_block.wgsl qt_block_dot). cpr unused.
fn dot_rows(mat: u32, xb: u32, rows: array<u32, {{R}}>, cpr: u32) -> Sums {
  var acc: array<vec4<f32>, {{R}}>;
  var up: array<vec4<f32>, {{R}}>;
  for (var i = 0u; i < R; i++) { acc[i] = vec4<f32>(); up[i] = vec4<f32>(); }
  var ss = vec4<f32>();
  let nb = params.K / 32u;
  let xsc = qt_xscale();
  for (var g = 0u; g * 8u < nb; g++) {
    let nbg = min(8u, nb - g * 8u);
    let c0 = g * QGC;
    var sv: array<vec4<u32>, {{R}}>;
    for (var r = 0u; r < R; r++) { sv[r] = w_at(mat, rows[r] + (c0 + nbg * QCB) * TT); }
    for (var j = 0u; j < nbg; j++) {
      let b = g * 8u + j;
      var xp: array<vec4<f32>, 8>;
      var xsum = vec4<f32>();
#if XBCAST
      let xa = bcast_step(xb, b * 8u, &ss);
      for (var k = 0u; k < 8u; k++) {
        let xv = xa[k];
#else
      for (var k = 0u; k < 8u; k++) {
        let k4 = b * 8u + k;
#if NORM
#if XSHARED
        let xv = xs[k4];
#else
        let xr = x[xb + k4];
        ss = fma(xr, xr, ss);
        let xv = xr * g4(4u * k4);
#endif
#else
        let xv = x[xb + k4];
#endif
#endif
        xsum += xv;
        xp[k] = xv * xsc;
      }
      let xo = xsum * -QOFF;   // exact (QOFF a power of two)
      let cq = c0 + j * QCB;
      for (var r = 0u; r < R; r++) {
        let at = rows[r] + cq * TT;
        let p0 = w_at(mat, at);
#if Q8
        let p1 = w_at(mat, at + TT);
#else
        let p1 = p0;
#endif
        acc[r] = fma(vec4<f32>(qt_scale(sv[r], j)), qt_block_dot(p0, p1, xp, xo), acc[r]);
      }
    }
  }
#if XBCAST
#if NORM
  ss = bcast_sumsq(ss);
#endif
#endif
  return Sums(acc, up, ss);
}
#else
// The block loop of gemv_q.wgsl (R scales per block, then per half-block 4 x chunks — x̂ chunks
// with the norm prologue — and R quant words), for rows `rows` of matrix `mat` (a constant at every
// call site). cpr unused (K / 32 blocks).
fn dot_rows(mat: u32, xb: u32, rows: array<u32, {{R}}>, cpr: u32) -> Sums {
  var acc: array<vec4<f32>, {{R}}>;
  var up: array<vec4<f32>, {{R}}>;
  for (var i = 0u; i < R; i++) { acc[i] = vec4<f32>(); up[i] = vec4<f32>(); }
  var ss = vec4<f32>();
  let nb = params.K / 32u;
  let sb = q_sbase(mat);
  for (var b = 0u; b < nb; b++) {
    var ds: array<f32, {{R}}>;
    for (var r = 0u; r < R; r++) { ds[r] = q_scale(mat, rows[r], b, nb, sb); }
#if BLOCKSUM
    // this block's Σ q·x per row, unscaled (Q4_0: Σ n·x and Σ x, the −8·Σx applied once per block)
    var bacc: array<vec4<f32>, {{R}}>;
    for (var i = 0u; i < R; i++) { bacc[i] = vec4<f32>(); }
    var xsum = vec4<f32>();
#endif
    for (var h = 0u; h < 2u; h++) {
      var xs4: array<vec4<f32>, 4>;
      for (var c = 0u; c < 4u; c++) {
        let k4 = q_x4(b, h, c);
#if NORM
#if XSHARED
        xs4[c] = xs[k4];
#else
        let xr = x[xb + k4];
        ss = fma(xr, xr, ss);
        xs4[c] = xr * g4(4u * k4);
#endif
#else
        xs4[c] = x[xb + k4];
#endif
      }
#if BLOCKSUM
      xsum += (xs4[0] + xs4[1]) + (xs4[2] + xs4[3]);
#endif
      for (var r = 0u; r < R; r++) {
        let wc = q_load_w(mat, rows[r], b, h, nb, ds[r]);
#if BLOCKSUM
        var a = bacc[r];
#else
        var a = acc[r];
#endif
        a = fma(wc.w0, xs4[0], a);
        a = fma(wc.w1, xs4[1], a);
        a = fma(wc.w2, xs4[2], a);
        a = fma(wc.w3, xs4[3], a);
#if BLOCKSUM
        bacc[r] = a;
#else
        acc[r] = a;
#endif
      }
    }
#if BLOCKSUM
    for (var r = 0u; r < R; r++) {
#if Q8
      acc[r] = fma(vec4<f32>(ds[r]), bacc[r], acc[r]);
#else
      acc[r] = fma(vec4<f32>(ds[r]), fma(vec4<f32>(-8.0), xsum, bacc[r]), acc[r]);
#endif
    }
#endif
  }
  return Sums(acc, up, ss);
}
#endif
#else
// The K loop of the f32/f16 layouts: rows[r] = row r's W row (rows layout) or its chunk 0 index
// (tiles: chunk c at rows[r] + c·T), cpr chunks per row (tiles: the last one partial when
// K % CE ≠ 0, read guarded by load_x/load_g in KTAIL variants).
fn dot_rows(mat: u32, xb: u32, rows: array<u32, {{R}}>, cpr: u32) -> Sums {
  // Zeroed explicitly: lavapipe kept the previous row's sums in a `var` declared (zero-initialised
  // by WGSL) inside the row loop (2026-12-02).
  var acc: array<vec4<f32>, {{R}}>;
  var up: array<vec4<f32>, {{R}}>;
  for (var i = 0u; i < R; i++) { acc[i] = vec4<f32>(); up[i] = vec4<f32>(); }
  var ss = vec4<f32>();
#if XBCAST
  // XCPS chunks (4 of 8 halves, 8 of 4 f32) per broadcast step of 32 elements; cpr a multiple of XCPS.
  for (var c = 0u; c < cpr; c += XCPS) {
    let xa = bcast_step(xb, c * CE / 4u, &ss);
    for (var j = 0u; j < XCPS; j++) {
      let xc = xa_chunk(xa, j);
      for (var r = 0u; r < R; r++) {
        acc[r] = fmac(load_w(mat, rows[r], c + j, cpr), xc, acc[r]);
      }
    }
  }
#if NORM
  ss = bcast_sumsq(ss);
#endif
#else
  for (var c = 0u; c < cpr; c++) {
#if NORM
#if XSHARED
    let xc = load_xhat(xb, c);
#else
    let xr = load_x(xb, c);
    ss = fma(xr.lo, xr.lo, fma(xr.hi, xr.hi, ss));
    let gc = load_g(c);
    let xc = Chunk(xr.lo * gc.lo, xr.hi * gc.hi);
#endif
#else
    let xc = load_xhat(xb, c);
#endif
    for (var r = 0u; r < R; r++) {
      acc[r] = fmac(load_w(mat, rows[r], c, cpr), xc, acc[r]);
#if SWIGLU_JOINT
      up[r] = fmac(load_w(1u, rows[r], c, cpr), xc, up[r]);
#endif
    }
  }
#endif
  return Sums(acc, up, ss);
}
#endif

#if BLOCKED
// BLOCKED (T > 1 live rows: an injection's, or host rows; f32/f16 W, no XSHARED, no LAST_ROW): MB
// x rows at a time share every W chunk load, where the per-row loop of main reads W once per row.
// One W row per K pass (main loops over its R rows with a bound the compiler cannot fold, so the
// pass is compiled once, not R times): per chunk the W row's chunk, then each x row's x̂ (the
// in-loop norm, or the x̂ broadcast with XBCAST) into its sum; Σx² per x row.
const MB: u32 = {{MB}}u;
struct SumsMB { acc: array<vec4<f32>, {{MB}}>, ss: array<vec4<f32>, {{MB}}> }

// The W row whose chunk 0 is at `at` (rows layout: its row) against the x rows at units xbs.
fn dot_row_mb(mat: u32, xbs: array<u32, {{MB}}>, at: u32, cpr: u32) -> SumsMB {
  var acc: array<vec4<f32>, {{MB}}>;
  var ss: array<vec4<f32>, {{MB}}>;
  for (var i = 0u; i < MB; i++) { acc[i] = vec4<f32>(); ss[i] = vec4<f32>(); }
#if XBCAST
  for (var c = 0u; c < cpr; c += XCPS) {
    var wc: array<Chunk, XCPS>;
    for (var j = 0u; j < XCPS; j++) { wc[j] = load_w(mat, at, c + j, cpr); }
    for (var i = 0u; i < MB; i++) {
      var si = ss[i];
      let xa = bcast_step(xbs[i], c * CE / 4u, &si);
      ss[i] = si;
      var a = acc[i];
      for (var j = 0u; j < XCPS; j++) { a = fmac(wc[j], xa_chunk(xa, j), a); }
      acc[i] = a;
    }
  }
#if NORM
  for (var i = 0u; i < MB; i++) { ss[i] = bcast_sumsq(ss[i]); }
#endif
#else
  for (var c = 0u; c < cpr; c++) {
    let wc = load_w(mat, at, c, cpr);
#if NORM
    let gc = load_g(c);
#endif
    for (var i = 0u; i < MB; i++) {
#if NORM
      let xr = load_x(xbs[i], c);
      ss[i] = fma(xr.lo, xr.lo, fma(xr.hi, xr.hi, ss[i]));
      acc[i] = fmac(wc, Chunk(xr.lo * gc.lo, xr.hi * gc.hi), acc[i]);
#else
      acc[i] = fmac(wc, load_x(xbs[i], c), acc[i]);
#endif
    }
  }
#endif
  return SumsMB(acc, ss);
}
#endif

// The epilogue for x row yrow (its y offset) and W row n of the matrix whose output columns start
// at col0 (bias from brow0): sum acc (and up: SWIGLU), Σx² ss (in-loop NORM). Nothing past nm.
fn store_one(yrow: u32, col0: u32, n: u32, nm: u32, brow0: u32, acc: vec4<f32>, up: vec4<f32>, ss: vec4<f32>) {
  if (n >= nm) { return; }
  var v = hsum(acc);
#if NORM
#if !XSHARED
  let inv = 1.0 / sqrt(hsum(ss) / params.kf + params.eps);
  v = v * inv;
#endif
#endif
  v += load_bias(brow0 + n);
#if SWIGLU
  var u = hsum(up);
#if NORM
#if !XSHARED
  u = u * inv;
#endif
#endif
  u += load_bias(params.nw + n);
  y[yrow + col0 + n] = silu(v) * u;
#else
#if RESIDUAL
  y[yrow + col0 + n] = y[yrow + col0 + n] + v;
#else
  y[yrow + col0 + n] = v;
#endif
#endif
}

// The epilogue for one x row: W rows row0 + r·RS (r < R) (store_one).
fn store_row(yrow: u32, col0: u32, row0: u32, RS: u32, nm: u32, brow0: u32, acc: array<vec4<f32>, {{R}}>, up: array<vec4<f32>, {{R}}>, ss: vec4<f32>) {
  for (var r = 0u; r < R; r++) { store_one(yrow, col0, row0 + r * RS, nm, brow0, acc[r], up[r], ss); }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
#if XBCAST
        @builtin(subgroup_invocation_id) sgl: u32,
#endif
        @builtin(local_invocation_index) lid: u32) {
  let gw = wid.x + wid.y * nwg.x;    // workgroup-uniform
  if (gw >= params.groups) { return; }
#if XBCAST
  sl_ = sgl;
#endif
  // This workgroup's matrix: its index, first workgroup, rows, and first bias element (after b_base).
  var mat = 0u;
  var gl = gw;
  var nm = params.nw;
  var brow0 = 0u;
#if MULTI
  if (gw >= params.g2) {
    mat = 2u; gl = gw - params.g2; nm = params.n2; brow0 = params.nw + params.n1;
  } else if (gw >= params.g1) {
    mat = 1u; gl = gw - params.g1; nm = params.n1; brow0 = params.nw;
  }
#endif
  let col0 = params.n0 + brow0;      // y column of this matrix's row 0
  let xw = params.K / XW;            // x units per row
  var rows: array<u32, {{R}}>;       // rows layout: W rows (clamped); TILES: chunk bases
#if TILES
  // Rows (gl·R + r)·T + lid; r-th row's chunk c at rows[r] + c·T (tiles past the last clamped).
  let tile0 = gl * R;
  let row0 = tile0 * TT + lid;
  let RS = TT;                       // row stride between r and r + 1
  let cpr = tiles_kc();
  let ntiles = (nm + TT - 1u) / TT;
  for (var r = 0u; r < R; r++) { rows[r] = min(tile0 + r, ntiles - 1u) * cpr * TT + lid; }
#else
  let row0 = (gl * {{WG}}u + lid) * R;
  let RS = 1u;
  let cpr = params.K / {{VECN}}u;    // chunks per W row
  for (var r = 0u; r < R; r++) { rows[r] = min(row0 + r, nm - 1u); }
#endif
  let live = row0 < nm;

#if FROM_STEP
  let T = min(step[STEP_ROWS], params.M);
#else
  let T = params.M;
#endif
  if (T == 0u) { return; }
#if LAST_ROW
  let m_first = T - 1u;
#else
  let m_first = 0u;
#endif
  var m = m_first;
#if BLOCKED
  // two or more live rows left: blocks of MB (rows past T read row T − 1, never stored), one W
  // row at a time; rn = R, a bound the compiler cannot fold (K ≥ 1), so the loop is not unrolled
  let rn = select(R, 0u, params.K == 0u);
  for (; m + 1u < T; m += MB) {
    var xbs: array<u32, {{MB}}>;
    for (var i = 0u; i < MB; i++) { xbs[i] = min(m + i, T - 1u) * xw; }
#if XBCAST
    {
#else
    if (live) {
#endif
      for (var r = 0u; r < rn; r++) {
#if TILES
        let at = min(tile0 + r, ntiles - 1u) * cpr * TT + lid;
#else
        let at = min(row0 + r, nm - 1u);
#endif
        // MULTI: the matrix index as a (workgroup-uniform) variable, one copy of the pass; the
        // per-row path's switch over constant indices would compile it three times
        let s = dot_row_mb(mat, xbs, at, cpr);
#if SWIGLU
        let up = dot_row_mb(1u, xbs, at, cpr).acc;
#else
        let up = s.acc;
#endif
        for (var i = 0u; i < MB; i++) {
          if (m + i >= T) { break; }
          store_one((m + i) * params.N, col0, row0 + r * RS, nm, brow0, s.acc[i], up[i], s.ss[i]);
        }
      }
    }
  }
#endif
  for (; m < T; m++) {
    let xb = m * xw;
#if XSHARED
    let inv = norm_prologue(xb, lid, xw);
#endif
#if XBCAST
    {   // every lane (see XBCAST above); the stores below stop at nm
#else
    if (live) {
#endif
      var s: Sums;
#if MULTI
      // One call per matrix with a constant index: once inlined (Mesa inlines every function),
      // each is a K loop over one binding. A workgroup-uniform switch inside the K loop (w_at
      // with a variable index) cost 1.45× driver CPU on lavapipe (qkv of the 134M model,
      // 2026-12-02, bench/gemv-step.bench.ts "one matrix (no switch)" arm).
      switch mat {
        case 1u: { s = dot_rows(1u, xb, rows, cpr); }
        case 2u: { s = dot_rows(2u, xb, rows, cpr); }
        default: { s = dot_rows(0u, xb, rows, cpr); }
      }
#else
      s = dot_rows(0u, xb, rows, cpr);
#endif
      var acc = s.acc;
#if SWIGLU
      // up after gate, in a second K loop (x reloaded: as cheap as a second GEMV), unless
      // SWIGLU_JOINT (one loop over both matrices, 2R accumulators: slower on lavapipe, see the
      // figures in src/ops/gemv-step.ts).
#if SWIGLU_JOINT
      let up = s.up;
#else
      let up = dot_rows(1u, xb, rows, cpr).acc;
#endif
#endif
#if SWIGLU
      store_row((m - m_first) * params.N, col0, row0, RS, nm, brow0, acc, up, s.ss);
#else
      store_row((m - m_first) * params.N, col0, row0, RS, nm, brow0, acc, acc, s.ss);
#endif
    }
  }
}

#if NORM
// Entry point norm_rows (the "prepass" norm path): y[m, :] = x[m, :] · inv · g for the live rows
// (LAST_ROW: row T − 1 only, kept at its own row), y [rows, K] f32 (a scratch the gemv reads next).
// One workgroup per row; workgroups past T return. Same bindings (w*, bias unused).
@compute @workgroup_size({{WG}})
fn norm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let gw = wid.x + wid.y * nwg.x;    // workgroup-uniform
#if FROM_STEP
  let T = min(step[STEP_ROWS], params.M);
#else
  let T = params.M;
#endif
#if LAST_ROW
  if (T == 0u || gw != 0u) { return; }
  let m = T - 1u;
#else
  if (gw >= T) { return; }
  let m = gw;
#endif
  let xw = params.K / XW;
  let xb = m * xw;
  let inv = 1.0 / sqrt(row_sumsq(xb, lid, xw) / params.kf + params.eps);
  for (var i = lid; i < xw; i += {{WG}}u) {
    let v = x[xb + i] * inv * g_unit(i);
#if XVEC
    let e = m * params.K + 4u * i;
    y[e] = v.x; y[e + 1u] = v.y; y[e + 2u] = v.z; y[e + 3u] = v.w;
#else
    y[m * params.K + i] = v;
#endif
  }
}
#endif
