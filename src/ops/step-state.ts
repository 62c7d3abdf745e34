export const STEP_WORDS = 8;
export const STEP_LAST = 0;
export const STEP_ROWS = 1;
export const STEP_COUNT = 2;
export const STEP_PENDING = 3;
export const INJECTED_ID = 0xfffffffe;
