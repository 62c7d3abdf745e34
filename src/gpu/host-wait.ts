// Waiting for the GPU without spinning the host: the pacing of readbacks and syncs.
//
// Dawn's Node binding (the `webgpu` package) keeps a pending GPU promise (mapAsync,
// onSubmittedWorkDone) alive by scheduling ProcessEvents on the event loop again and again until
// it settles: the main thread spins for the whole wait. On a software GPU (lavapipe) that spin
// competes for the same cores as the GPU's worker threads: measured (the project's GPU notes) 19–39%
// of wall time spinning and 1.38× slower kernels on 2 cores; a perf profile of a 134M decode
// (2026-12-03) spent ~45% of the process's CPU samples in V8, libc malloc/free and Dawn's
// ProcessEvents callbacks, against ~48% in the shaders' JIT code.
//
// The pacer sleeps (a timer: no promise is pending, so nothing spins) for part of the time the same
// work took before, then awaits. Work is keyed by the number of dispatches encoded since the last
// completed wait: a decode loop's readbacks (every n steps, a fixed program) get the same key every
// time, so the estimate is that loop's own. The same key can stand for work of different sizes (a
// prefill of 10 or 500 tokens encodes the same dispatches), and sleeping past the GPU's finish
// costs the whole overshoot, so the estimate is the SHORTEST of the key's last RECENT observed
// waits (sleep included) and the sleep PACE_FRACTION of it: a shorter piece of work pulls the
// estimate down at once, a longer one only spins for its excess. If the GPU finishes during the
// sleep, the observed wait equals the sleep and the next sleep is PACE_FRACTION of it, so an
// overestimate decays geometrically. A key with fewer than MIN_SEEN observed waits sleeps 0 (a
// key's first wait often includes compiling its pipelines: taken alone it made `onegen serve`'s
// engine sleep through a whole retrieval job's run), and so do sleeps under MIN_SLEEP_MS (timers
// fire ~1 ms late; a short spin costs little).
// Measured (bench/host-wait.bench.ts, 2026-12-03): 134M decode ×1.37 in wall time; an earlier
// version (a running average, sleeps from 2 ms) made the demo model's `eval` examples ×0.73
// slower: its waits are a few ms and vary with prompt length under one key.
// Where: "paced" by default on Node + Dawn only (GpuContext.hostWait); browsers and Deno do not spin
// (their promises settle from the runtime's own event sources) and use "spin", i.e. plain awaits.
// bench/host-wait.bench.ts measures the two against each other.

export type HostWaitMode = "paced" | "spin";
export const HOST_WAIT_MODES: readonly HostWaitMode[] = ["paced", "spin"];

/** Fraction of the estimated wait the host sleeps before it awaits the GPU promise. */
export const PACE_FRACTION = 0.8;
/** Sleeps shorter than this many ms are not taken (the wait is awaited at once). */
export const MIN_SLEEP_MS = 4;
/** Observed waits a key needs before its waits are paced. */
export const MIN_SEEN = 2;
/** Observed waits remembered per key; the estimate is their minimum. */
export const RECENT = 4;
/** Keys remembered; past it the table starts again (a loop's key comes back at its next wait). */
const MAX_KEYS = 256;

export class WaitPacer {
  private readonly recent = new Map<number, number[]>();

  /** Milliseconds to sleep before awaiting work of this key (0: await at once). */
  sleepMs(key: number): number {
    const r = this.recent.get(key);
    if (!r || r.length < MIN_SEEN || key <= 0) return 0;
    const e = Math.min(...r);
    const s = e * PACE_FRACTION;
    return s >= MIN_SLEEP_MS ? s : 0;
  }

  /** Records that work of this key took `ms` from the start of the wait (sleep included) to settling. */
  record(key: number, ms: number): void {
    if (key <= 0 || !Number.isFinite(ms) || ms < 0) return;
    let r = this.recent.get(key);
    if (!r) {
      if (this.recent.size >= MAX_KEYS) this.recent.clear();
      this.recent.set(key, (r = []));
    }
    r.push(ms);
    if (r.length > RECENT) r.shift();
  }

  /** The current estimate for a key: the shortest of its last RECENT observed waits (tests, benches). */
  estimate(key: number): number | undefined {
    const r = this.recent.get(key);
    return r && r.length > 0 ? Math.min(...r) : undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
