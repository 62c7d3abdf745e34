// The context's counters (ctx.stats): submits, dispatches, host readbacks and uploads, buffers
// created, replays. Tests assert on them (how many host syncs a loop performs); benches print them.

export interface RuntimeStats {
  submits: number;
  dispatches: number;
  /** Host readbacks (mapAsync of a staging buffer). */
  readbacks: number;
  bytesReadBack: number;
  /** Host → GPU writes (uploads; not counting the per-batch uniform arena). */
  uploads: number;
  /** GPUBuffers created over the context's life (pool, staging and arena). */
  buffersCreated: number;
  /** CapturedProgram.replay() calls (their dispatches are counted in `dispatches` too). */
  replays: number;
  /** Dispatches encoded by replays (per replay: replayDispatches / replays, or the program's `dispatches`). */
  replayDispatches: number;
  /** Cumulative host time spent encoding replays (performance.now around each replay's encoding), ms. */
  replayEncodeMs: number;
}

export function newRuntimeStats(): RuntimeStats {
  return { submits: 0, dispatches: 0, readbacks: 0, bytesReadBack: 0, uploads: 0, buffersCreated: 0, replays: 0, replayDispatches: 0, replayEncodeMs: 0 };
}
