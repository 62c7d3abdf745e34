// Waiting for the GPU without spinning the host: the pacing of readbacks and syncs.
//
// Dawn's Node binding (the `webgpu` package) keeps a pending GPU promise (mapAsync,
// onSubmittedWorkDone) alive by scheduling ProcessEvents on the event loop again and again until
// it settles: the main thread spins for the whole wait. On a software GPU (lavapipe) that spin
// competes for the same cores as the GPU's worker threads: measured (../shared/GPU-NOTES.md) 19–39%
// of wall time spinning and 1.38× slower kernels on 2 cores; a perf profile of a 134M decode
// (2026-12-03) spent ~45% of the process's CPU samples in V8, libc malloc/free and Dawn's
// ProcessEvents callbacks, against ~48% in the shaders' JIT code.
//
// The pacer sleeps (a timer: no promise is pending, so nothing spins) for most of the time the same
// work took before, then awaits. Work is keyed by the number of dispatches encoded since the last
// completed wait: a decode loop's readbacks (every n steps, a fixed program) get the same key every
// time, so the estimate is that loop's own. Estimate: the observed wait (sleep included) averaged
// with the previous estimate; the sleep is PACE_FRACTION of it. If the GPU finishes during the
// sleep the observed wait equals the sleep and the estimate shrinks (×0.9 per wait) until the
// sleep ends before the GPU does again: at the fixed point the host spins for the last
// (1 − PACE_FRACTION) of the wait. A key seen for the first time sleeps 0. Waits shorter than
// MIN_SLEEP_MS are not paced (timer granularity ~1 ms).
//
// Where: "paced" by default on Node + Dawn only (GpuContext.hostWait); browsers and Deno do not spin
// (their promises settle from the runtime's own event sources) and use "spin", i.e. plain awaits.
// bench/host-wait.bench.ts measures the two against each other.

export type HostWaitMode = "paced" | "spin";
export const HOST_WAIT_MODES: readonly HostWaitMode[] = ["paced", "spin"];

/** Fraction of the estimated wait the host sleeps before it awaits the GPU promise. */
export const PACE_FRACTION = 0.8;
/** Estimated waits below this many ms are awaited at once. */
export const MIN_SLEEP_MS = 2;
/** Keys remembered; past it the table starts again (a loop's key comes back at its next wait). */
const MAX_KEYS = 256;

export class WaitPacer {
  private readonly estimates = new Map<number, number>();

  /** Milliseconds to sleep before awaiting work of this key (0: await at once). */
  sleepMs(key: number): number {
    const e = this.estimates.get(key);
    if (e === undefined || key <= 0) return 0;
    const s = e * PACE_FRACTION;
    return s >= MIN_SLEEP_MS ? s : 0;
  }

  /** Records that work of this key took `ms` from the start of the wait (sleep included) to settling. */
  record(key: number, ms: number): void {
    if (key <= 0 || !(ms >= 0)) return;
    const e = this.estimates.get(key);
    if (e === undefined && this.estimates.size >= MAX_KEYS) this.estimates.clear();
    this.estimates.set(key, e === undefined ? ms : 0.5 * e + 0.5 * ms);
  }

  /** The current estimate for a key (tests, benches). */
  estimate(key: number): number | undefined {
    return this.estimates.get(key);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
