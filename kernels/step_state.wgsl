// step_state.wgsl: word indices of the decode step state (u32[8], one per session; layout in
// src/ops/step-state.ts, which mirrors these constants). Included with `#include step_state`; not
// a kernel. Kernels bind the step buffer read-only (`var<storage, read> step: array<u32>`), except
// the advance kernel (and a hook's plan kernel, which sets STEP_PENDING).

const STEP_LAST: u32 = 0u;    // cache position of the newest id (the last row fed this step)
const STEP_ROWS: u32 = 1u;    // T: rows the forward processes this step (1..maxRows)
const STEP_COUNT: u32 = 2u;   // steps started in this generate() call (advance of step j writes j + 1)
const STEP_PENDING: u32 = 3u; // L of an injection planned at this step (0: none), fed by the next advance
// words 4..7 reserved (0)

// Cache position of row 0 this step: LAST + 1 − T (row t sits at first + t).
fn step_first_pos(last: u32, rows: u32) -> u32 {
  return last + 1u - rows;
}
