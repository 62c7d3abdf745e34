// onegen_loop.wgsl: the OneGen retrieval step inside the captured GPU decode step, with no host
// readback between the query token and the continuation (references: detectReference,
// recordReference, resolveReference and planReference in src/onegen/loop.ts). The decode step is encoded once and
// replayed, so every stage finds the current step on the GPU: j = step[STEP_COUNT] − 1 (advance
// has run), the id fed at step j is history[stride·j], this hook's record word is
// history[stride·j + record]. Three entry points, one per stage:
//
//   DETECT  (1 invocation), after advance:
//     0 step: array<u32> read [8]; 1 state: array<u32> read_write; 2 history: array<u32> read_write;
//     3 params. A search happens when the id fed at step j is query_id and fewer than
//     max_retrievals searches ran: state[0] (the search flag) = 1, state[1] += 1, record = SEARCHED;
//     else state[0] = 0, record = 0. (A step that fed an injection has INJECTED_ID as its id.)
//   RECORD  (one workgroup, strided over k), after the search (which is gated by state[0]):
//     0 state r; 1 hits r [k]; 2 scores r [k]; 3 step r; 4 history rw; 5 params. When
//     state[0] != 0, the hits follow the record word in the step's history: words record + 1 + i
//     = hits[i], record + 1 + k + i = the bits of scores[i] (i < k), so they come back to the host
//     in the readback of the ids (recordReference).
//   RESOLVE (one workgroup, strided over the injected rows), after RECORD:
//     0 hits r [k]; 1 entry_table r [entries, 2] (document, fragment); 2 document_table r
//     [docs, 2] (token offset, token count); 3 doc_tokens r [total]; 4 step rw [8]; 5 state rw;
//     6 history rw; 7 plan rw [l_max]; 8 params.
//     With a search and a hit, L = n_prefix + min(count, max_doc_tokens) + n_suffix ids are planned
//     if p + L + 1 ≤ capacity (p = step[STEP_LAST], the query token's position: room for the ids
//     and one more token) and L ≤ l_max: plan[0..L) = prefix, document tokens, suffix;
//     step[STEP_PENDING] = L (the next step's advance feeds them); record |= L. Otherwise the
//     injection is refused: record |= OVERFLOW.
// state: [0] search flag, [1] searches so far, [2..7] 0, [8 ..) the prefix ids then the suffix ids.

#include step_state

struct Params {
  query_id: u32,
  max_retrievals: u32,
  n_prefix: u32,
  n_suffix: u32,
  l_max: u32,
  capacity: u32,
  stride: u32,          // history words per step
  record: u32,          // this hook's word within a step's record
  max_doc_tokens: u32,
  k: u32,
  _pad0: u32,
  _pad1: u32,
}

const SEARCHED: u32 = 0x80000000u;
const OVERFLOW: u32 = 0x40000000u;
const NO_ID: u32 = 0xffffffffu;
const WRAP: u32 = 8u;

#if DETECT
@group(0) @binding(0) var<storage, read> step: array<u32>;
@group(0) @binding(1) var<storage, read_write> state: array<u32>;
@group(0) @binding(2) var<storage, read_write> history: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(1)
fn main() {
  let j = step[STEP_COUNT] - 1u;
  let hit = history[params.stride * j] == params.query_id && state[1] < params.max_retrievals;
  state[0] = select(0u, 1u, hit);
  if (hit) { state[1] = state[1] + 1u; }
  history[params.stride * j + params.record] = select(0u, SEARCHED, hit);
}
#endif

#if RECORD
@group(0) @binding(0) var<storage, read> state: array<u32>;
@group(0) @binding(1) var<storage, read> hits: array<u32>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read> step: array<u32>;
@group(0) @binding(4) var<storage, read_write> history: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  if (state[0] == 0u) { return; }
  let base = params.stride * (step[STEP_COUNT] - 1u) + params.record + 1u;
  for (var i = lid; i < params.k; i += {{WG}}u) {
    history[base + i] = hits[i];
    history[base + params.k + i] = bitcast<u32>(scores[i]);
  }
}
#endif

#if RESOLVE
@group(0) @binding(0) var<storage, read> hits: array<u32>;
@group(0) @binding(1) var<storage, read> entry_table: array<u32>;
@group(0) @binding(2) var<storage, read> document_table: array<u32>;
@group(0) @binding(3) var<storage, read> doc_tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<u32>;
@group(0) @binding(6) var<storage, read_write> history: array<u32>;
@group(0) @binding(7) var<storage, read_write> plan: array<u32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  // Every invocation derives the same values from words nobody writes in this dispatch
  // (state[0], hits, the tables, step[STEP_LAST], step[STEP_COUNT]); invocation 0 alone writes
  // step[STEP_PENDING] and the record word.
  if (state[0] == 0u || hits[0] == NO_ID) { return; }
  let doc = entry_table[2u * hits[0]];
  let offset = document_table[2u * doc];
  let count = min(document_table[2u * doc + 1u], params.max_doc_tokens);
  let np = params.n_prefix;
  let l = np + count + params.n_suffix;
  let p = step[STEP_LAST];
  let slot = params.stride * (step[STEP_COUNT] - 1u) + params.record;
  if (l == 0u || l > params.l_max || p + l + 1u > params.capacity) {
    if (lid == 0u) { history[slot] = history[slot] | OVERFLOW; }
    return;
  }
  for (var i = lid; i < l; i += {{WG}}u) {
    var id: u32;
    if (i < np) { id = state[WRAP + i]; }
    else if (i < np + count) { id = doc_tokens[offset + i - np]; }
    else { id = state[WRAP + np + (i - np - count)]; }
    plan[i] = id;
  }
  if (lid == 0u) {
    step[STEP_PENDING] = l;
    history[slot] = history[slot] | l;
  }
}
#endif
