// decode_state.wgsl: GPU-side bookkeeping of the decode step, so consecutive steps can be
// encoded into one submit without the host writing anything (references: advanceRowsReference,
// forceAfterReference and copyInputAllowed in src/ops/decode_state.ts). Three kernels in one
// file, chosen by defines (src/ops/decode_state.ts names the variants decode_advance_rows_wgN,
// force_after_wgN and copy_input_wgN):
//
// Neither ADVANCE_ROWS nor COPY: force_after (entry point `main`; one workgroup of WG
// invocations, strided over the vocabulary):
//   0 context:  array<u32>  read        [capacity]  ids fed so far (context[0..=last])
//   1 pattern:  array<u32>  read        [n]         the trigger sequence
//   2 position: array<u32>  read        [1]         last = position[0], the newest id's index
//   3 logits:   array<f32>  read_write  [V]         logits of the step that follows `last`
//   4 params:   Params      uniform     (n = params.b; forced id = params.c; V = params.d)
// `last` is read on the GPU so the rule sees injected text too (the host may not know it yet).
// If context[last-n+1 ..= last] == pattern, every logit except the forced id becomes -inf.
//
// COPY: copy_input (entry point `main`; one workgroup of WG invocations; invocation 0 replays
// the state machine, all then mask strided over the vocabulary): entity-linking output constrained to be
// the source text with mention markup (reference: copyInputAllowed in src/ops/decode_state.ts).
//   0 context:  array<u32>  read        [capacity]  ids fed so far; the generated ones start at params.start
//   1 table:    array<u32>  read        [2n + e]    source ids [n], their space-less twins [n]
//                                                    (NONE: none), end-of-sequence ids [e]
//   2 position: array<u32>  read        [1]         last = position[0]
//   3 logits:   array<f32>  read_write  [V]
//   4 params:   CopyParams  uniform
// Replaying context[start ..= last] gives (cursor i into the source, `half`: the lone space of
// source[i] was written, markup state m: 0 outside a mention, 1 just opened, 2 inside, 3 closed,
// 4 after the query token). Allowed next ids: m 3 → query; m 4 → continue; half → twin[i] (and
// open when m 0); else source[i] (i < n), the lone space when m 0 and twin[i] exists, open when
// m 0 and i < n, close when m 2, an end id when m 0 and i = n. An id outside these (written by
// another rule) ends the constraint: nothing is masked from then on.
//
// Entry point `advance_rows` (define ADVANCE_ROWS; one workgroup of WG invocations): the decode
// step's advance (reference: advanceRowsReference in src/ops/decode_state.ts). It runs after
// sampling step j and decides the rows the step feeds:
//   0 token:   array<u32>  read        [1]        id just sampled
//   1 plan:    array<u32>  read        [maxRows]  ids of an injection a hook planned (a dummy when none)
//   2 step:    array<u32>  read_write  [8]        step state (kernels/step_state.wgsl)
//   3 rows:    array<u32>  read_write  [maxRows]  ids fed this step
//   4 context: array<u32>  read_write  [capacity] every id in the cache
//   5 history: array<u32>  read_write  [≥ stride·steps]  one word per step at history[stride·j]
//   6 params:  RowsParams  uniform     (capacity, stride, maxRows)
//   j = step[COUNT]
//   PENDING > 0: T = min(PENDING, maxRows); rows[0..T) = plan[0..T); history[stride·j] = INJECTED_ID; PENDING = 0
//   else:        T = 1; rows[0] = token[0], NONFINITE_ID (0xffffffff) clamped to id 0 so the
//                forward stays harmless; history[stride·j] = token[0] unchanged (the host stops on it)
//   context[LAST+1+t] = rows[t] (positions < capacity); LAST += T; ROWS = T; COUNT = j + 1
//   (history beyond its length is not written).
// Every invocation reads the state, a storage barrier separates the reads from invocation 0's
// writes; rows and context are written strided over the workgroup.

struct Params {
  a: u32,
  b: u32,
  c: u32,
  d: u32,
  neg_inf: f32,  // -inf, given by the host (WGSL constant expressions cannot hold infinities)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

#if ADVANCE_ROWS
#include step_state

struct RowsParams {
  capacity: u32,
  stride: u32,    // history words per step
  max_rows: u32,
  _pad0: u32,
}

const NONFINITE_ID: u32 = 0xffffffffu;
const INJECTED_ID: u32 = 0xfffffffeu;

@group(0) @binding(0) var<storage, read> token: array<u32>;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read_write> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> context: array<u32>;
@group(0) @binding(5) var<storage, read_write> history: array<u32>;
@group(0) @binding(6) var<uniform> params: RowsParams;

@compute @workgroup_size({{WG}})
fn advance_rows(@builtin(local_invocation_index) lid: u32) {
  let j = step[STEP_COUNT];
  let pending = step[STEP_PENDING];
  let last = step[STEP_LAST];
  let tok = token[0];
  storageBarrier();
  let inject = pending > 0u;
  let T = select(1u, min(pending, params.max_rows), inject);
  for (var t = lid; t < T; t += {{WG}}u) {
    var id = select(tok, plan[t], inject);
    if (id == NONFINITE_ID) { id = 0u; }
    rows[t] = id;
    let p = last + 1u + t;
    if (p < params.capacity) { context[p] = id; }
  }
  if (lid == 0u) {
    let h = params.stride * j;
    if (h < arrayLength(&history)) { history[h] = select(tok, INJECTED_ID, inject); }
    step[STEP_LAST] = last + T;
    step[STEP_ROWS] = T;
    step[STEP_COUNT] = j + 1u;
    step[STEP_PENDING] = 0u;
  }
}
#else
#if COPY
@group(0) @binding(0) var<storage, read> context: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> position: array<u32>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;
@group(0) @binding(4) var<uniform> params: CopyParams;

struct CopyParams {
  start: u32,
  n: u32,
  e: u32,
  vocab: u32,
  space: u32,
  open: u32,
  close: u32,
  query: u32,
  cont: u32,
  neg_inf: f32,
  _pad0: u32,
  _pad1: u32,
}

const NONE: u32 = 0xffffffffu;
// allowed[0..4]: single ids (NONE = unused); allowed[4] = 1 when the end ids are allowed;
// allowed[5] = 1 when the constraint is off (a foreign id was written)
var<workgroup> allowed: array<u32, 6>;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    let n = params.n;
    var i = 0u;
    var half = false;
    var m = 0u;
    var off = false;
    let last = position[0];
    for (var t = params.start; t <= last && !off; t++) {
      let x = context[t];
      if (m == 3u) {
        if (x == params.query) { m = 4u; } else { off = true; }
      } else if (m == 4u) {
        if (x == params.cont) { m = 0u; } else { off = true; }
      } else if (x == params.open && m == 0u && i < n) {
        m = 1u;
      } else if (x == params.close && m == 2u) {   // half is only ever set outside a mention
        m = 3u;
      } else if (half) {
        if (x == table[n + i]) { i++; half = false; m = select(m, 2u, m == 1u); } else { off = true; }
      } else if (i < n && x == table[i]) {
        i++;
        m = select(m, 2u, m == 1u);
      } else if (i < n && m == 0u && x == params.space && table[n + i] != NONE) {
        half = true;
      } else {
        off = true;
      }
    }
    for (var k = 0u; k < 6u; k++) { allowed[k] = select(NONE, 0u, k >= 4u); }
    if (off) {
      allowed[5] = 1u;
    } else if (m == 3u) {
      allowed[0] = params.query;
    } else if (m == 4u) {
      allowed[0] = params.cont;
    } else if (half) {
      allowed[0] = table[n + i];
      if (m == 0u) { allowed[1] = params.open; }
    } else {
      if (i < n) {
        allowed[0] = table[i];
        if (m == 0u && table[n + i] != NONE) { allowed[1] = params.space; }
        if (m == 0u) { allowed[2] = params.open; }
      }
      if (m == 2u) { allowed[3] = params.close; }
      if (m == 0u && i == n) { allowed[4] = 1u; }
    }
  }
  workgroupBarrier();
  if (allowed[5] == 1u) { return; }
  for (var v = lid; v < params.vocab; v += {{WG}}u) {
    var ok = v == allowed[0] || v == allowed[1] || v == allowed[2] || v == allowed[3];
    if (allowed[4] == 1u) {
      for (var k = 0u; k < params.e; k++) { ok = ok || v == table[2u * params.n + k]; }
    }
    if (!ok) { logits[v] = params.neg_inf; }
  }
}
#else
@group(0) @binding(0) var<storage, read> context: array<u32>;
@group(0) @binding(1) var<storage, read> pattern: array<u32>;
@group(0) @binding(2) var<storage, read> position: array<u32>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  let last = position[0];
  let n = params.b;
  if (n == 0u || last + 1u < n) { return; }
  for (var i = 0u; i < n; i++) {
    if (context[last + 1u - n + i] != pattern[i]) { return; }
  }
  for (var v = lid; v < params.d; v += {{WG}}u) {
    if (v != params.c) { logits[v] = params.neg_inf; }
  }
}
#endif
#endif
