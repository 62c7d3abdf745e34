// embedding.wgsl: out[t, :] = f32(table[ids[t], :])   (token embedding gather)
// Reference: embeddingReference in src/ops/embedding.ts.
//
// The table [V, D] may exceed one storage binding: the launcher binds it in windows of whole rows
// [firstRow, firstRow + rows) and dispatches once per window; each dispatch copies only the tokens
// whose id falls in its window. ids are read on the GPU (a decode loop writes the sampled id there).
// Out-of-range ids (id ≥ V): the dispatch of the first window (firstRow == 0) writes a zero row
// and sets errors[0] |= 1; no other dispatch touches that row. Who checks ids and who reads the
// flag: the header of src/ops/embedding.ts.
//
// Bindings (group 0):
//   0 ids:    array<u32>          read        [T]
//   1 table:  array<E>            read        [rows, D] window of the [V, D] table, E = f32 or f16 (F16)
//   2 out:    array<f32>          read_write  [T, D]
//   3 errors: array<atomic<u32>>  read_write  [1]    (bit 0: an id was ≥ V)
//   4 params: Params              uniform
// Mapping (entry point in kernels/embedding_row.wgsl): one workgroup per token; WG invocations
// stride over the row. Pure copy (f16 widened exactly to f32).
// TILES: the table lies in the tiles layout of src/gpu/tensor.ts (TilesLayout: T = TT rows per tile,
// 16-byte chunks of CE elements; the window starts at a tile): element (row, i) at element
// ((row / TT · kc + i / CE) · TT + row % TT) · CE + i % CE of the window (projection weights
// transformed at load time, gathered for the model fingerprint).
// PACKED (f16 without shader-f16): E = u32, the window's f16 elements as packed pairs (the
// window starts at an aligned byte offset, so element 0 is the low half of word 0).
#include f16_enable
#include f16_packed

struct Params {
  T: u32,         // tokens
  D: u32,         // row length in elements
  V: u32,         // rows of the whole table
  firstRow: u32,  // first table row in this window
  rows: u32,      // rows in this window
  kc: u32,        // TILES: 16-byte chunks per packed row
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<{{E}}>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> errors: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> params: Params;

#include embedding_row

// Row `row` of the window, widened to f32, into out[dst ..< dst + D].
fn copy_row(dst: u32, row: u32, lid: u32) {
#if TILES
  let tb = (row / {{TT}}u) * params.kc * {{TT}}u + row % {{TT}}u;   // chunk of (tile, 0, lane)
  for (var i = lid; i < params.D; i += {{WG}}u) {
    let e = (tb + (i / {{CE}}u) * {{TT}}u) * {{CE}}u + i % {{CE}}u;
#if PACKED
    out[dst + i] = f16p_at(table[e >> 1u], e);
#else
    out[dst + i] = f32(table[e]);
#endif
  }
#else
  let src = row * params.D;
#if PACKED
  for (var i = lid; i < params.D; i += {{WG}}u) { out[dst + i] = f16p_at(table[(src + i) >> 1u], src + i); }
#else
  for (var i = lid; i < params.D; i += {{WG}}u) { out[dst + i] = f32(table[src + i]); }
#endif
#endif
}
