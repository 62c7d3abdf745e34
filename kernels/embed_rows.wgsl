// embed_rows.wgsl: out[t, :] = f32(table[rows[t], :]) for the live rows t < T of a decode step,
// T = step[STEP_ROWS] read on the GPU (reference: embedRowsReference in src/ops/embed-rows.ts).
//
// The table [V, D] may exceed one storage binding: the launcher binds it in windows of whole rows
// [firstRow, firstRow + rows) and dispatches once per window (a fixed list, planned once); each
// dispatch copies the rows whose id falls in its window. Out-of-range ids (id ≥ V), as
// embedding.wgsl: the dispatch of the first window (firstRow == 0) writes a zero row and sets
// errors[0] |= 1; no other dispatch touches that row.
//
// Bindings (group 0):
//   0 step:   array<u32>          read        [8]   step state (kernels/step_state.wgsl)
//   1 rows:   array<u32>          read        [maxRows]   ids fed this step (written by advance)
//   2 table:  array<E>            read        [rows, D] window of the [V, D] table, E = f32 | f16 (F16) | u32 (PACKED pairs)
//   3 out:    array<f32>          read_write  [maxRows, D]
//   4 errors: array<atomic<u32>>  read_write  [1]    (bit 0: an id was ≥ V)
//   5 params: Params              uniform
// Mapping: a fixed grid of D invocations (independent of T; linear index x + y·num_x): invocation
// i copies element i of every live row, so neighbouring invocations read neighbouring elements.
// Pure copy (f16 widened exactly to f32). With PACKED the window starts at an aligned byte offset,
// so element 0 is the low half of word 0.
#include f16_enable
#include f16_packed
#include step_state

struct Params {
  D: u32,         // row length in elements
  V: u32,         // rows of the whole table
  firstRow: u32,  // first table row in this window
  rows: u32,      // rows in this window
  max_rows: u32,  // rows `out` and `rows` hold (T is clamped to it)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> step: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<{{E}}>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> errors: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= params.D) { return; }
  let T = min(step[STEP_ROWS], params.max_rows);
  for (var t = 0u; t < T; t++) {
    let id = ids[t];
    let dst = t * params.D + i;
    if (id >= params.V) {
      if (params.firstRow == 0u) {
        out[dst] = 0.0;
        if (i == 0u) { atomicOr(&errors[0], 1u); }
      }
      continue;
    }
    if (id < params.firstRow || id - params.firstRow >= params.rows) { continue; }
    let src = (id - params.firstRow) * params.D + i;
#if PACKED
    out[dst] = f16p_at(table[src >> 1u], src);
#else
    out[dst] = f32(table[src]);
#endif
  }
}
