// Turns on the device for `onegen serve`: the batch loop (engine.ts) and each interleaved job (a
// retrieval request's own Session, retrieval.ts) encode GPU work only while they hold the
// DeviceLock, and let go of it while they wait for a readback, so their steps alternate.
//
// Why a lock at all: a GpuContext (src/gpu/context.ts) is one open command batch with one
// capture state, and encoding is async in places (a captured program is recorded across awaits
// for kernels: the engine's step program of a new batch width, a Session's decode-step program).
// Work encoded by someone else inside an open capture would be recorded into that program, and
// a host write or a readback inside it is refused. Outside captures, interleaved encoding is safe:
// the queue orders every submit, the buffer pool hands out a released buffer only to later
// commands (src/gpu/pool.ts), the uniform arena is flushed per submit, and each party works on its
// own buffers (the engine's slotted KV cache and step buffers, each Session's own cache and
// state); a readback awaited by one party does not hold up the others' encoding.
//
// Abort: a per-job signal (client gone, engine failed, shutdown) that rejects at once whatever
// the job waits for: the lock, or a readback of its own.

/** A reason to stop, fired once; `race` rejects with it as soon as it fires. */
export class Abort {
  reason: Error | null = null;
  private readonly listeners = new Set<(e: Error) => void>();

  fire(e: Error): void {
    if (this.reason) return;
    this.reason = e;
    for (const f of this.listeners) f(e);
    this.listeners.clear();
  }

  /** `p`, or a rejection with the reason as soon as the abort fires (first one wins). */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.reason) return Promise.reject(this.reason);
    return new Promise<T>((resolve, reject) => {
      const f = (e: Error) => reject(e);
      this.listeners.add(f);
      p.then(
        (v) => {
          this.listeners.delete(f);
          resolve(v);
        },
        (e: unknown) => {
          this.listeners.delete(f);
          reject(e);
        },
      );
    });
  }
}

/** A FIFO mutex: whoever holds it may encode on the device. */
export class DeviceLock {
  private held = false;
  private readonly waiting: (() => void)[] = [];

  get isHeld(): boolean {
    return this.held;
  }
  /** Parties waiting for the lock. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves once the caller holds the lock (FIFO); with `abort`, rejects (and leaves the queue) when it fires first. */
  async acquire(abort?: Abort): Promise<void> {
    if (abort?.reason) throw abort.reason;
    if (!this.held) {
      this.held = true;
      return;
    }
    let grant!: () => void;
    const granted = new Promise<void>((r) => (grant = r));
    this.waiting.push(grant);
    if (!abort) return granted;
    try {
      await abort.race(granted);
    } catch (e) {
      const i = this.waiting.indexOf(grant);
      if (i >= 0) this.waiting.splice(i, 1);
      else this.release(); // handed over just as the abort fired: pass it on
      throw e;
    }
  }

  /** Hands the lock to the next waiter, or frees it. */
  release(): void {
    if (!this.held) throw new Error("DeviceLock.release: the lock is not held");
    const next = this.waiting.shift();
    if (next) next();
    else this.held = false;
  }
}
