const STEP_LAST: u32 = 0u;
const STEP_ROWS: u32 = 1u;
const STEP_COUNT: u32 = 2u;
const STEP_PENDING: u32 = 3u;
fn step_first_pos(last: u32, rows: u32) -> u32 { return last + 1u - rows; }
