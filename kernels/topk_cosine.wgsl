// topk_cosine.wgsl: fused top-k cosine search, two stages in one command buffer.
//   score(q, r) = dot(q̂, index[r]),  q̂ = q / ‖q‖ (q̂ = 0 for a zero query: every score is 0)
//   with QNORM: q = h ∘ g (h a raw pre-final-norm hidden row, g the final RMSNorm weight; the
//   norm's 1/rms factor is a positive scale, which cosine cancels)
//   result = the k best (score, id) pairs, best first; "better" = higher score, then lower id.
// Reference: cosineTopKReference in src/ops/search.ts (the tiled layout: tiledCopyReference in
// src/ops/tiled-copy.ts).
//
// Stage 1 (MERGE off): a window of index rows [firstRow, firstRow + rows) is bound; workgroup
//   (g, q) scans rows [g·rowsPerWg, min((g+1)·rowsPerWg, rows)) of it for query q and writes its
//   k best as group (q, groupBase + g) of the candidates buffer.
//   Two layouts of the index (the variant's "layout"):
//   rows  (TILED off): the index as stored, [N, D] row-major: invocation lid of a batch owns row
//         b + lid and walks its D elements, so neighbouring invocations read addresses D apart.
//   tiled (TILED on): a copy made once (cosineIndexPack: kernels/gemv_repack.wgsl, T rows per
//         tile, T a divisor of WG), lane-interleaved 16-byte chunks of CE elements (8 halves or 4 f32):
//         P[tile][c][lane] = index[tile·T + lane, c·CE .. c·CE + CE), zero past N and D;
//         a batch is WG·RB rows; invocation lid scores rows b + j·WG + lid (j < RB) in one walk
//         over c, loading each query chunk once for its RB rows; at every step the T invocations
//         of a tile read T consecutive chunks (T = 8: one llvmpipe SIMD group walks contiguous
//         memory). Windows of the copy start at multiples of WG rows (whole tiles).
// Stage 2 (MERGE on): workgroup q merges the groupsTotal groups of query q into the final k.
//
// Both stages run the same selection loop over batches of WG·RB items (RB per invocation, RB = 1
//   except in the tiled scan; each of the RB sub-rounds appends at most WG items):
//   an item is appended to a workgroup list of S slots (atomic counter) only if it is better
//   than the current k-th best (thr). When the list could overflow on the next batch it is
//   bitonic-sorted (S items, sentinel-padded), its first k become the new best, thr = item k−1.
//   Correct for any item order: a rejected item is worse than k items already held.
// NaN scores are never better than anything, so rows whose score is NaN are never returned.
// Empty slots are sentinels (score −inf, id 0xFFFFFFFF): when fewer than k rows exist, the
// output's tail holds sentinels.
// GATE: every workgroup of both stages first reads gate[0] and returns at once when it is 0, so a
//   gated-off search costs its (fixed-grid) dispatches' launch and nothing else, and leaves the
//   candidates and the outputs untouched.
//
// Bindings (group 0), stage 1:
//   0 query:  array<Q>            read        [Q, D] f32 (Q = f32, or vec4<f32> with VEC4; tiled: f32)
//   1 index:  array<R>            read        rows: [rows, D] window, R = f32|f16 (F16), vec4 with
//                                             VEC4, u32/vec2<u32> pairs with PACKED;
//                                             tiled: the packed tiles of this window, R = vec4<u32>
//                                             (WF16: 8 halves as pairs, no shader-f16) or vec4<f32>
//   2 cand:   array<vec2<u32>>    read_write  [Q, groupsTotal, k] (bitcast score, id)
//     DIRECT (the whole index is one workgroup's rows: one window, one group, so its k best are
//     the result and stage 2 is skipped): 2 ids array<u32> [Q, k], 3 scores array<f32> [Q, k]
//   B_GATE  gate:  array<u32>     read        [1] (GATE only)
//   B_NORM  normw: array<u32>     read        [D] f32 bits, or f16 packed pairs with GF16 (QNORM only)
//   B_PARAMS params: Params       uniform
// Stage 2:
//   0 cand:   array<vec2<u32>>    read        [Q, groupsTotal, k]
//   1 ids:    array<u32>          read_write  [Q, k]
//   2 scores: array<f32>          read_write  [Q, k]
//   B_GATE  gate: array<u32>      read        [1] (GATE only)
//   B_PARAMS params: Params       uniform
// Precision: dot products accumulate in f32 (four vec4 lanes summed at the end with VEC4 or
// TILED); f16 rows are widened to f32 exactly. ‖q‖² is a workgroup tree sum in f32.
// Constraints: k ≤ S − WG; D % 4 == 0 for VEC4 (rows layout); tiled: any D, WG % T == 0.
#include f16_enable
#if NEEDP
#include f16_packed
#endif

struct Params {
  rows: u32,        // stage 1: rows in this window; stage 2: groups per query (groupsTotal)
  D: u32,           // stage 1: row length in query units (D, or D / 4 with VEC4); tiled: D elements
  firstRow: u32,    // stage 1: global id of the window's first row
  rowsPerWg: u32,   // stage 1: rows scanned per workgroup (a multiple of WG)
  k: u32,
  groupsTotal: u32, // groups per query in the candidates buffer
  groupBase: u32,   // stage 1: group index of this dispatch's workgroup 0
  neg_inf: f32,     // −inf (WGSL constant expressions cannot hold infinities)
  kc: u32,          // tiled: chunks per packed row, ceil(D / CE)
}

const S: u32 = {{S}}u;          // slots in the workgroup list (power of two)
const WG: u32 = {{WG}}u;
const CE: u32 = {{CE}}u;        // tiled: elements per 16-byte chunk
const T: u32 = {{T}}u;          // tiled: rows per tile (WG is a multiple of T)
const RB: u32 = {{RB}}u;        // items per invocation per batch (tiled: R rows sharing query loads; else 1)
const NONE: u32 = 0xffffffffu;

#if MERGE
@group(0) @binding(0) var<storage, read> cand_in: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> out_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_scores: array<f32>;
#else
@group(0) @binding(0) var<storage, read> query: array<{{QV}}>;
@group(0) @binding(1) var<storage, read> index: array<{{RV}}>;
#if DIRECT
@group(0) @binding(2) var<storage, read_write> out_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out_scores: array<f32>;
#else
@group(0) @binding(2) var<storage, read_write> cand: array<vec2<u32>>;
#endif
#endif
#if GATE
@group(0) @binding({{B_GATE}}) var<storage, read> gate: array<u32>;
#endif
#if QNORM
@group(0) @binding({{B_NORM}}) var<storage, read> normw: array<u32>;
#endif
@group(0) @binding({{B_PARAMS}}) var<uniform> params: Params;

var<workgroup> sc: array<f32, S>;
var<workgroup> sid: array<u32, S>;
var<workgroup> count: atomic<u32>;
var<workgroup> fill: u32;
var<workgroup> red: array<f32, WG>;

fn better(as_: f32, ai: u32, bs: f32, bi: u32) -> bool {
  return as_ > bs || (as_ == bs && ai < bi);
}

#if !MERGE
// Element e of the norm weight g (QNORM), else 1.
fn gw(e: u32) -> f32 {
#if QNORM
#if GF16
  return f16p_at(normw[e >> 1u], e);
#else
  return bitcast<f32>(normw[e]);
#endif
#else
  return 1.0;
#endif
}

// Unit i (a scalar, or a vec4 with VEC4) of the query row starting at unit qb, times g (QNORM).
fn qload(qb: u32, i: u32) -> {{QV}} {
#if QNORM
#if VEC4
  let e = 4u * i;
  return query[qb + i] * vec4<f32>(gw(e), gw(e + 1u), gw(e + 2u), gw(e + 3u));
#else
  return query[qb + i] * gw(i);
#endif
#else
  return query[qb + i];
#endif
}
#endif

#if TILED
struct Chunk { lo: vec4<f32>, hi: vec4<f32> }

// Query elements c·CE .. c·CE + CE of the row starting at element qb (times g), 0 past D.
fn qchunk(qb: u32, c: u32) -> Chunk {
  let e0 = c * CE;
  if (e0 + CE <= params.D) {
#if WF16
    return Chunk(vec4<f32>(qload(qb, e0), qload(qb, e0 + 1u), qload(qb, e0 + 2u), qload(qb, e0 + 3u)),
                 vec4<f32>(qload(qb, e0 + 4u), qload(qb, e0 + 5u), qload(qb, e0 + 6u), qload(qb, e0 + 7u)));
#else
    return Chunk(vec4<f32>(qload(qb, e0), qload(qb, e0 + 1u), qload(qb, e0 + 2u), qload(qb, e0 + 3u)), vec4<f32>());
#endif
  }
  var v = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (var e = 0u; e < CE; e++) {
    if (e0 + e < params.D) { v[e] = qload(qb, e0 + e); }
  }
  return Chunk(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}
#endif

// Sorts slots [0, P) best-first (bitonic network), P = the smallest power of two ≥ max(n, k, 2),
// after padding slots [n, P) with sentinels; slots past P are not read before they are written
// again. (Sorting P instead of all S slots: the merge of a few groups and small scans sort 8–64
// slots instead of 1,024, 55 barrier stages → 6–21.)
fn sort_list(lid: u32, n: u32) {
  var P = 2u;
  while (P < max(n, params.k)) { P <<= 1u; }
  for (var j = lid; j < P; j += WG) {
    if (j >= n) { sc[j] = params.neg_inf; sid[j] = NONE; }
  }
  workgroupBarrier();
  for (var size = 2u; size <= P; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      for (var t = lid; t < P / 2u; t += WG) {
        let i = 2u * t - (t & (stride - 1u));
        let j = i + stride;
        let a_s = sc[i]; let a_i = sid[i];
        let b_s = sc[j]; let b_i = sid[j];
        let best_first = (i & size) == 0u;
        if (best_first == better(b_s, b_i, a_s, a_i)) {
          sc[i] = b_s; sid[i] = b_i;
          sc[j] = a_s; sid[j] = a_i;
        }
      }
      workgroupBarrier();
    }
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#if GATE
  // gate lives in a read-only binding: a uniform value, so this return keeps the barriers uniform.
  if (gate[0] == 0u) { return; }
#endif
  let k = params.k;
#if MERGE
  let q = wid.x;
  let first = q * params.groupsTotal * k;
  let end = first + params.rows * k;  // items of this query
  let start = first;
#else
  let q = wid.y;
  let g = wid.x;
  let start = g * params.rowsPerWg;
  let end = min(start + params.rowsPerWg, params.rows);
  // ‖q‖² by a tree sum; inv = 1/‖q‖, or 0 for a zero query.
  let qb = q * params.D;
  var ss = 0.0;
  for (var i = lid; i < params.D; i += WG) {
    let v = qload(qb, i);
#if VEC4
    ss += dot(v, v);
#else
    ss += v * v;
#endif
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let nrm2 = red[0];
  let inv = select(0.0, 1.0 / sqrt(nrm2), nrm2 > 0.0);
#endif
  if (lid == 0u) { atomicStore(&count, 0u); fill = 0u; }
  var thr_s = params.neg_inf;
  var thr_i = NONE;
  workgroupBarrier();
  var n = 0u;       // items in the list (uniform: read back with workgroupUniformLoad)
  for (var b = start; b < end; b += WG * RB) {
    // This invocation's RB items of the batch: b + j·WG + lid (scores in sv, ids in iv).
    var sv: array<f32, RB>;
    var iv: array<u32, RB>;
#if MERGE
    let c = cand_in[min(b + lid, end - 1u)];
    sv[0] = bitcast<f32>(c.x);
    iv[0] = c.y;
#else
#if TILED
    // Row r of the window sits at P[r / T][c][r % T]; RB rows share each query chunk load.
    var acc: array<vec4<f32>, RB>;
    var base: array<u32, RB>;
    for (var j = 0u; j < RB; j++) {
      let r = min(b + j * WG + lid, params.rows - 1u);
      base[j] = (r / T) * params.kc * T + r % T;
      iv[j] = params.firstRow + b + j * WG + lid;
      acc[j] = vec4<f32>(0.0);
    }
    for (var c = 0u; c < params.kc; c++) {
      let x = qchunk(qb, c);
      for (var j = 0u; j < RB; j++) {
        let p = index[base[j] + c * T];
#if WF16
        acc[j] = fma(vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y)), x.lo,
                     fma(vec4<f32>(unpack2x16float(p.z), unpack2x16float(p.w)), x.hi, acc[j]));
#else
        acc[j] = fma(p, x.lo, acc[j]);
#endif
      }
    }
    for (var j = 0u; j < RB; j++) {
      let a = acc[j];
      sv[j] = ((a.x + a.y) + (a.z + a.w)) * inv;
    }
#else
    let r = min(b + lid, end - 1u);
    iv[0] = params.firstRow + b + lid;
    let rb = r * params.D;
#if VEC4
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < params.D; i++) {
#if PACKED
      acc += qload(qb, i) * f16p_vec4(index[rb + i]);
#else
      acc += qload(qb, i) * vec4<f32>(index[rb + i]);
#endif
    }
    sv[0] = (acc.x + acc.y + acc.z + acc.w) * inv;
#else
    var acc = 0.0;
    for (var i = 0u; i < params.D; i++) {
#if PACKED
      acc += qload(qb, i) * f16p_at(index[(rb + i) >> 1u], rb + i);
#else
      acc += qload(qb, i) * f32(index[rb + i]);
#endif
    }
    sv[0] = acc * inv;
#endif
#endif
#endif
    for (var j = 0u; j < RB; j++) {
      if (n > S - WG) {
        sort_list(lid, n);
        n = k;
        thr_s = sc[k - 1u];
        thr_i = sid[k - 1u];
        if (lid == 0u) { atomicStore(&count, k); }
        workgroupBarrier();
      }
      let item = b + j * WG + lid;
      if (item < end && better(sv[j], iv[j], thr_s, thr_i)) {
        let slot = atomicAdd(&count, 1u);
        sc[slot] = sv[j];
        sid[slot] = iv[j];
      }
      workgroupBarrier();
      if (lid == 0u) { fill = atomicLoad(&count); }
      n = workgroupUniformLoad(&fill);
    }
  }
  sort_list(lid, n);
#if MERGE
  for (var j = lid; j < k; j += WG) {
    out_ids[q * k + j] = sid[j];
    out_scores[q * k + j] = sc[j];
  }
#else
#if DIRECT
  for (var j = lid; j < k; j += WG) {
    out_ids[q * k + j] = sid[j];
    out_scores[q * k + j] = sc[j];
  }
#else
  let dst = (q * params.groupsTotal + params.groupBase + g) * k;
  for (var j = lid; j < k; j += WG) {
    cand[dst + j] = vec2<u32>(bitcast<u32>(sc[j]), sid[j]);
  }
#endif
#endif
}
