// gemv_tile.wgsl: the register tile of the rows-design GEMVs (gemv, gemv_splitk, gemv_q): R rows
// of W from row0 and MB activation rows from mb0, accumulated in acc [MB][R] vec4 lanes.
// Included with `#include gemv_tile`; not a kernel. Needs linear_bias (load_bias), gemv_chunk
// (hsum), the constants R and MB, ACC = R·MB, and y / params as in linear_io.wgsl.
// Reference: linearReference in src/ops/linear.ts.

// (row0, mb0) of invocation lid of workgroup wid in the one-tile-per-invocation GEMVs (gemv,
// gemv_q): linear invocation index (x + y·num_x)·WG + lid, MB-row block wid.z.
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
  return vec2<u32>(((wid.x + wid.y * nwg.x) * {{WG}}u + lid) * R, wid.z * MB);
}

// Row indices for loads, clamped to the window: rows past nw / M repeat the last one (their
// results are not stored).
fn tile_rows(row0: u32) -> array<u32, {{R}}> {
  var rows: array<u32, {{R}}>;
  for (var r = 0u; r < R; r++) { rows[r] = min(row0 + r, params.nw - 1u); }
  return rows;
}

fn tile_ms(mb0: u32) -> array<u32, {{MB}}> {
  var ms: array<u32, {{MB}}>;
  for (var i = 0u; i < MB; i++) { ms[i] = min(mb0 + i, params.M - 1u); }
  return ms;
}

// y[m, n0 + n] = hsum(acc[m][n]) + bias[n] for the tile's rows inside the window.
fn store_tile(acc: ptr<function, array<vec4<f32>, {{ACC}}>>, row0: u32, mb0: u32) {
  for (var r = 0u; r < R; r++) {
    let n = row0 + r;
    if (n >= params.nw) { break; }
    let b = load_bias(n);
    for (var i = 0u; i < MB; i++) {
      let m = mb0 + i;
      if (m >= params.M) { break; }
      y[params.y_base + m * params.N + params.n0 + n] = hsum((*acc)[i * R + r]) + b;
    }
  }
}
