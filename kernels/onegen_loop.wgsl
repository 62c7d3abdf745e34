// onegen_loop.wgsl: the OneGen retrieval step inside the GPU decode loop, with no host readback
// between the query token and the continuation (references: detectReference, resolveReference,
// planReference, commitReference in src/onegen/loop.ts). Four kernels, one per stage, chosen by
// defines (DETECT, RESOLVE, PLAN, COMMIT; each has the one entry point `main`):
//
//   DETECT  (1 invocation), after sampling step j:
//     0 token: array<u32> read [1]; 1 state: array<u32> read_write [8]; 2 search_flag: array<u32>
//     read_write [1]; 3 history: array<u32> read_write (ids and record words); 4 params.
//     search_flag = (token == query_id && state[0] < max_retrievals); if set, state[0] += 1;
//     history[slot] = search_flag ? SEARCHED : 0 (slot: this step's record word).
//   RESOLVE (1 invocation), after the (gated) top-k search over the query token's hidden state:
//     0 search_flag r [1]; 1 hits r [k] (entry ids, best first); 2 entry_table r [entries, 2]
//     (document, fragment); 3 document_table r [docs, 2] (token offset, token count); 4 position r [1]
//     (position of the query token); 5 state rw [8]; 6 inject_flag rw [1]; 7 history rw; 8 params.
//     With a hit, L = n_prefix + min(count, max_doc_tokens) + n_suffix tokens are injected if
//     position + L + 1 ≤ capacity (room for them and one more token) and L ≤ l_max; otherwise the
//     injection is refused and history[slot] gets OVERFLOW. state[1..3] = (offset, count, L).
//   PLAN    (one workgroup, strided over l_max rows): the injection's forward plan.
//     0 state r; 1 doc_tokens r [total]; 2 wrap r [n_prefix + n_suffix] (prefix ids then suffix ids);
//     3 position r; 4 plan_ids rw [l_max]; 5 plan_pos rw [l_max]; 6 plan_ranges rw [l_max, 2];
//     7 last_row rw [1]; 8 params. Rows ≥ L are padding (id 0, positions past the end: their k/v
//     land in cache rows that later tokens overwrite and no range covers).
//   COMMIT  (one workgroup): context[p+1 .. p+L] = injected ids; position = p + L; the decode
//     range becomes [start, p + L + 1). 0 state r; 1 plan_ids r; 2 position rw; 3 ranges rw [2];
//     4 context rw [capacity]; 5 params.
// Positions and ranges follow the session's conventions (src/model/session.ts): ranges[t] =
// [max(0, pos+1-window), pos+1), window 0 = full causal attention.

struct Params {
  query_id: u32,
  max_retrievals: u32,
  n_prefix: u32,
  n_suffix: u32,
  l_max: u32,
  capacity: u32,
  window: u32,
  slot: u32,            // word of history holding this step's record (DETECT, RESOLVE)
  max_doc_tokens: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

const SEARCHED: u32 = 0x80000000u;
const OVERFLOW: u32 = 0x40000000u;
const NO_ID: u32 = 0xffffffffu;

fn range_start(end: u32, window: u32) -> u32 {
  return select(0u, end - window, window > 0u && end > window);
}

#if DETECT
@group(0) @binding(0) var<storage, read> token: array<u32>;
@group(0) @binding(1) var<storage, read_write> state: array<u32>;
@group(0) @binding(2) var<storage, read_write> search_flag: array<u32>;
@group(0) @binding(3) var<storage, read_write> history: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(1)
fn main() {
  let hit = token[0] == params.query_id && state[0] < params.max_retrievals;
  search_flag[0] = select(0u, 1u, hit);
  if (hit) { state[0] = state[0] + 1u; }
  history[params.slot] = select(0u, SEARCHED, hit);
}
#endif

#if RESOLVE
@group(0) @binding(0) var<storage, read> search_flag: array<u32>;
@group(0) @binding(1) var<storage, read> hits: array<u32>;
@group(0) @binding(2) var<storage, read> entry_table: array<u32>;
@group(0) @binding(3) var<storage, read> document_table: array<u32>;
@group(0) @binding(4) var<storage, read> position: array<u32>;
@group(0) @binding(5) var<storage, read_write> state: array<u32>;
@group(0) @binding(6) var<storage, read_write> inject_flag: array<u32>;
@group(0) @binding(7) var<storage, read_write> history: array<u32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(1)
fn main() {
  inject_flag[0] = 0u;
  state[3] = 0u;
  if (search_flag[0] == 0u || hits[0] == NO_ID) { return; }
  let doc = entry_table[2u * hits[0]];
  let offset = document_table[2u * doc];
  let count = min(document_table[2u * doc + 1u], params.max_doc_tokens);
  let l = params.n_prefix + count + params.n_suffix;
  let p = position[0];
  if (l == 0u || l > params.l_max || p + l + 1u > params.capacity) {
    history[params.slot] = history[params.slot] | OVERFLOW;
    return;
  }
  state[1] = offset;
  state[2] = count;
  state[3] = l;
  inject_flag[0] = 1u;
  history[params.slot] = history[params.slot] | l;
}
#endif

#if PLAN
@group(0) @binding(0) var<storage, read> state: array<u32>;
@group(0) @binding(1) var<storage, read> doc_tokens: array<u32>;
@group(0) @binding(2) var<storage, read> wrap: array<u32>;
@group(0) @binding(3) var<storage, read> position: array<u32>;
@group(0) @binding(4) var<storage, read_write> plan_ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> plan_pos: array<u32>;
@group(0) @binding(6) var<storage, read_write> plan_ranges: array<u32>;
@group(0) @binding(7) var<storage, read_write> last_row: array<u32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  let l = state[3];
  if (l == 0u) { return; }
  let offset = state[1];
  let count = state[2];
  let p = position[0];
  let np = params.n_prefix;
  for (var i = lid; i < params.l_max; i += {{WG}}u) {
    var id = 0u;
    if (i < np) { id = wrap[i]; }
    else if (i < np + count) { id = doc_tokens[offset + i - np]; }
    else if (i < l) { id = wrap[np + (i - np - count)]; }
    let pos = p + 1u + i;
    plan_ids[i] = id;
    plan_pos[i] = pos;
    plan_ranges[2u * i] = range_start(pos + 1u, params.window);
    plan_ranges[2u * i + 1u] = pos + 1u;
  }
  if (lid == 0u) { last_row[0] = l - 1u; }
}
#endif

#if COMMIT
@group(0) @binding(0) var<storage, read> state: array<u32>;
@group(0) @binding(1) var<storage, read> plan_ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> position: array<u32>;
@group(0) @binding(3) var<storage, read_write> ranges: array<u32>;
@group(0) @binding(4) var<storage, read_write> context: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  let l = state[3];
  let p = position[0];
  for (var i = lid; i < l; i += {{WG}}u) {
    if (p + 1u + i < params.capacity) { context[p + 1u + i] = plan_ids[i]; }
  }
  // every invocation has read position[0] before invocation 0 moves it
  storageBarrier();
  workgroupBarrier();
  if (lid == 0u && l > 0u) {
    let last = p + l;
    position[0] = last;
    ranges[0] = range_start(last + 1u, params.window);
    ranges[1] = last + 1u;
  }
}
#endif
