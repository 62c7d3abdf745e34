// embedding_row.wgsl: the entry point of the row-per-workgroup gathers (embedding, embedding_q):
// workgroup t (linear index x + y·num_x) finds which row of the bound table window token t reads
// and calls the including kernel's copy_row(dst, row, lid), which writes out[dst ..< dst + D]
// strided over the WG invocations. Included with `#include embedding_row`; not a kernel. The
// including kernel declares ids, out (f32), errors (atomic<u32>) and a params with T, D, V,
// firstRow, rows. Reference: embeddingReference in src/ops/embedding.ts.

const NO_ROW: u32 = 0xffffffffu;

// Table row of token t relative to this window, or NO_ROW when this window has nothing to write:
// an id in another window, or an id outside the vocabulary (out row t zeroed and errors[0] bit 0
// set by the first window only, so the flag is raised once per dispatch sequence).
fn window_row(t: u32, lid: u32) -> u32 {
  let id = ids[t];
  if (id >= params.V) {
    if (params.firstRow == 0u) {
      let dst = t * params.D;
      for (var i = lid; i < params.D; i += {{WG}}u) { out[dst + i] = 0.0; }
      if (lid == 0u) { atomicOr(&errors[0], 1u); }
    }
    return NO_ROW;
  }
  if (id < params.firstRow || id - params.firstRow >= params.rows) { return NO_ROW; }
  return id - params.firstRow;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= params.T) { return; }
  let row = window_row(t, lid);
  if (row == NO_ROW) { return; }
  copy_row(t * params.D, row, lid);
}
