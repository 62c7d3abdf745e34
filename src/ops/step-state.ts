// The decode step state: a u32[STEP_WORDS] buffer, one per session, read by the step's kernels on
// the GPU (kernels/step_state.wgsl holds the same word indices for WGSL; keep them equal).
// Row t (0 ≤ t < T) of a step sits at cache position firstPos + t, firstPos = LAST + 1 − T
// (step_first_pos in kernels/step_state.wgsl).

/** Words in the step state buffer. */
export const STEP_WORDS = 8;
/** Cache position of the newest id (the last row fed this step). */
export const STEP_LAST = 0;
/** T: rows the forward processes this step (1..maxRows). */
export const STEP_ROWS = 1;
/** Steps started in this generate() call (the advance kernel of step j reads j, writes j + 1). */
export const STEP_COUNT = 2;
/** L of an injection a hook planned at this step (0: none); the next advance feeds it and clears it. */
export const STEP_PENDING = 3;

/** The history word of a step that fed an injection instead of a sampled token. */
export const INJECTED_ID = 0xfffffffe;
