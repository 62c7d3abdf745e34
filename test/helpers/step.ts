// Step-state helpers for the decode-step kernel tests (src/ops/step-state.ts layout).
import { STEP_COUNT, STEP_LAST, STEP_PENDING, STEP_ROWS, STEP_WORDS } from "../../src/ops/step-state.js";

/** A step state: LAST = last, ROWS = rows, COUNT = count, PENDING = pending, the reserved words 0. */
export function stepWords(last: number, rows: number, count = 0, pending = 0): Uint32Array {
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_LAST] = last;
  s[STEP_ROWS] = rows;
  s[STEP_COUNT] = count;
  s[STEP_PENDING] = pending;
  return s;
}
