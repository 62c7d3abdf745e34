// step_state.wgsl (include): the word indices of the decode step state, a u32[8] buffer per
// session that the captured decode step reads and advances on the GPU (host mirror and CPU
// reference: src/ops/step-state.ts). Row t (< T = step[STEP_ROWS]) of a step sits at cache
// position step_first_pos(step[STEP_LAST], T) + t.
const STEP_LAST: u32 = 0u;
const STEP_ROWS: u32 = 1u;
const STEP_COUNT: u32 = 2u;
const STEP_PENDING: u32 = 3u;

fn step_first_pos(last: u32, rows: u32) -> u32 {
  return last + 1u - rows;
}
