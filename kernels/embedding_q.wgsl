// embedding_q.wgsl: out[t, :] = deq(table)[ids[t], :]   (gather of rows of a Q8_0 / Q4_0 table)
// Reference: embeddingReference in src/ops/embedding.ts over dequantizeMatrix (src/quant/formats.ts)
// of the table: element k of row v is q · d, q the integer of block k/32 and d its f16 scale.
//
// The table [V, D] is in the split-blocks layout (src/quant/formats.ts): quants of every block
// row-major (Q8_0: 32 bytes per block, int8; Q4_0: 16 bytes, byte j = element j (low nibble) and
// j + 16 (high nibble)), then the scales f16 [V, D/32]. The launcher binds, per window of whole
// rows [firstRow, firstRow + rows), the window's quants and its scales at the aligned offset at or
// below their start (q_base words, s_base halves). Ids and out-of-range handling as embedding.wgsl.
//
// Bindings (group 0):
//   0 ids:    array<u32>          read        [T]
//   1 q:      array<u32>          read        quants of the window's rows, from word params.q_base
//   2 s:      array<u32>          read        scales f16 [rows, D/32] (packed pairs) from half params.s_base
//   3 out:    array<f32>          read_write  [T, D]
//   4 errors: array<atomic<u32>>  read_write  [1]    (bit 0: an id was ≥ V)
//   5 params: Params              uniform
// TILES: the table lies in the tiles layout of src/gpu/tensor.ts TilesLayout for q8_0/q4_0 (T = TT
// rows per tile, params.kc chunks per packed row, groups of 8 blocks: quant chunks then a scales
// chunk; Q8_0 bytes stored as q + 128; CPU mirror: quantTilesElement in src/quant/tiles.ts): the
// window is whole tiles from word params.q_base of q; s unused (projection weights in the tiles
// layout, gathered for the model fingerprint).
// Mapping (entry point in kernels/embedding_row.wgsl): one workgroup per token; WG invocations
// stride over the row, one element each. Exact: q · d is exact in f32.

struct Params {
  T: u32,         // tokens
  D: u32,         // row length in elements (multiple of 32)
  V: u32,         // rows of the whole table
  firstRow: u32,  // first table row in this window
  rows: u32,      // rows in this window
  q_base: u32,    // word offset of the window's first quant inside the q binding
  s_base: u32,    // half offset of the window's first scale inside the s binding
  kc: u32,        // TILES: chunks per packed row
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> s: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> errors: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> params: Params;

#include embedding_row
#include quant_block

// Row `row` of the window, dequantized, into out[dst ..< dst + D].
fn copy_row(dst: u32, row: u32, lid: u32) {
  let nb = params.D / 32u;
#if TILES
  let tb = (row / {{TT}}u) * params.kc * {{TT}}u + row % {{TT}}u;   // chunk of (tile, 0, lane)
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let b = i / 32u;
    let j = i % 32u;
    let g = b / 8u;
    let jb = b % 8u;
    let nbg = min(8u, nb - g * 8u);
    let sc = tb + (g * QGC + nbg * QCB) * {{TT}}u;   // the group's scales chunk
    let d = unpack2x16float(q[params.q_base + sc * 4u + (jb >> 1u)])[jb & 1u];
#if Q8
    let e = j % 16u;                                  // byte of the half-block chunk
    let qc = tb + (g * QGC + jb * 2u + j / 16u) * {{TT}}u;
    let u = (q[params.q_base + qc * 4u + (e >> 2u)] >> (8u * (e & 3u))) & 0xffu;
    out[dst + i] = (f32(u) - 128.0) * d;
#else
    let e = j & 15u;                                  // byte of the block chunk; nibble j >> 4
    let qc = tb + (g * QGC + jb) * {{TT}}u;
    let nib = (q[params.q_base + qc * 4u + (e >> 2u)] >> (8u * (e & 3u) + 4u * (j >> 4u))) & 15u;
    out[dst + i] = (f32(nib) - 8.0) * d;
#endif
  }
#else
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let b = row * nb + i / 32u;  // block index in the window
    let j = i % 32u;
    let e = params.s_base + b;
    let d = unpack2x16float((s[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu).x;
#if Q8
    let byte = b * 32u + j;
    let v = (bitcast<i32>(q[params.q_base + (byte >> 2u)]) << (24u - 8u * (byte & 3u))) >> 24u;
    out[dst + i] = f32(v) * d;
#else
    let byte = b * 16u + (j & 15u);
    let nib = (q[params.q_base + (byte >> 2u)] >> (8u * (byte & 3u) + 4u * (j >> 4u))) & 15u;
    out[dst + i] = (f32(nib) - 8.0) * d;
#endif
  }
#endif
}
