// embedding_backward.wgsl: dTable[id, :] (+)= Σ_{t : ids[t] = id} dOut[t, :]   (no float atomics)
// Reference: embeddingBackwardReference in src/train/ops/embedding_backward.ts.
// Two stages of this file (LINK / SCATTER variants), dispatched in order:
//  LINK: one invocation per token t scans the ids: head[t] = 1 when t is the first occurrence of
//    its id, next[t] = the next token with the same id (0xFFFFFFFF at the end of the chain).
//    Cost O(T²) u32 compares (T = 4096: 17M, negligible next to the rows).
//  SCATTER: one invocation per (token t, 4 columns); only chain heads work: they sum the dOut
//    rows along their chain and write the table row, so every touched table element has exactly
//    one writer; rows of ids that do not appear are not touched. Cost O(T·D) reads + (distinct
//    ids)·D writes. The table may exceed one binding: it is bound in row windows
//    [firstRow, firstRow + rows), one SCATTER dispatch each; a head outside its window skips.
// ids ≥ V are skipped and set bit 0 of errors[0] (LINK). Accumulation f32, in token order.
//
// Bindings (group 0):
//  LINK:    0 ids: array<u32> read [T]; 1 link: array<u32> read_write [T, 2] (head, next);
//           2 errors: array<atomic<u32>> read_write [1]; 3 params
//  SCATTER: 0 ids: array<u32> read [T]; 1 link: array<u32> read [T, 2];
//           2 dout: array<f32> read [T, D]; 3 table: array<f32> read_write [rows, D] (window);
//           4 params
// Mapping: LINK one invocation per token; SCATTER one invocation per (t, c4), linear index
// (x + y·num_x)·WG + lid = t·ceil(D/4) + c4, so adjacent invocations read adjacent columns.

struct Params {
  T: u32,          // tokens
  D: u32,          // row length, elements
  V: u32,          // rows of the whole table
  firstRow: u32,   // first table row of this window (SCATTER)
  rows: u32,       // rows in this window (SCATTER)
  accumulate: u32, // 1: table += sum, 0: table = sum (SCATTER)
  _pad0: u32,
  _pad1: u32,
}

const END: u32 = 0xffffffffu;

#if LINK
@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> link: array<u32>;
@group(0) @binding(2) var<storage, read_write> errors: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (t >= params.T) { return; }
  let id = ids[t];
  var head = 1u;
  var next = END;
  if (id >= params.V) {
    head = 0u;
    atomicOr(&errors[0], 1u);
  } else {
    for (var u = 0u; u < t; u++) {
      if (ids[u] == id) { head = 0u; break; }
    }
    for (var u = t + 1u; u < params.T; u++) {
      if (ids[u] == id) { next = u; break; }
    }
  }
  link[2u * t] = head;
  link[2u * t + 1u] = next;
}
#else
@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> link: array<u32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> table: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let c4n = (params.D + 3u) / 4u;
  let unit = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (unit >= params.T * c4n) { return; }
  let t = unit / c4n;
  let c0 = (unit % c4n) * 4u;
  if (link[2u * t] == 0u) { return; }
  let id = ids[t];
  if (id < params.firstRow || id - params.firstRow >= params.rows) { return; }
  let nc = min(4u, params.D - c0);
  var s = vec4<f32>(0.0);
  var u = t;
  loop {
    for (var c = 0u; c < nc; c++) { s[c] += dout[u * params.D + c0 + c]; }
    u = link[2u * u + 1u];
    if (u == END) { break; }
  }
  let o = (id - params.firstRow) * params.D + c0;
  for (var c = 0u; c < nc; c++) {
    table[o + c] = select(s[c], table[o + c] + s[c], params.accumulate != 0u);
  }
}
#endif
