// The decode step state: a u32[STEP_WORDS] buffer per session that the captured decode step reads
// and advances on the GPU (kernels/step_state.wgsl holds the same word indices for the kernels).
//   STEP_LAST     cache position of the newest id (the last row fed this step); word 0, so kernels
//                 that bind a "position [1]" can bind the step buffer itself
//   STEP_ROWS     T: rows the forward processes this step (1, or L when it feeds an injection)
//   STEP_COUNT    steps started in this generate() call (advance of step j reads j, writes j + 1)
//   STEP_PENDING  L of an injection a hook planned at this step (the next advance feeds it)
export const STEP_WORDS = 8;
export const STEP_LAST = 0;
export const STEP_ROWS = 1;
export const STEP_COUNT = 2;
export const STEP_PENDING = 3;
/** The history word of a step that fed an injection instead of a sampled token. */
export const INJECTED_ID = 0xfffffffe;
