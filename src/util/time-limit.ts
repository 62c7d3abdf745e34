// Runs synchronous work under a wall-clock limit, so that computation driven by untrusted files
// (a model directory's tokenizer regular expressions, its chat template) cannot hang the process.
//
// How: node:vm's `timeout` makes V8 terminate whatever JavaScript runs inside the call, including
// a backtracking RegExp (irregexp checks for interrupts in its backtracking loops); the function
// runs in the caller's realm, vm only supplies the watchdog. Works in Node and Deno; browsers have
// no node:vm, so there timeLimiter() returns null and the caller says so (Tokenizer.timeLimited).
//
// Measured 2026-12-02 (Node 20.20, 2 shared EPYC cores) before choosing this:
// - `(a+)+$` on 40 × "a" + "!" is interrupted 1–6 ms after a 200 ms limit; RegExps keep working.
// - cost per call ~180 µs (a watchdog thread per call) vs 0.2 µs for a direct short match.
// - V8's `--enable-experimental-regexp-engine-on-excessive-backtracks` (linear engine after 50,000
//   backtracks) does not help: on Node 20 it never engages for the `u` flag, which every tokenizer
//   pattern carries, nor for lookaheads such as GPT-2's and Llama-3's `\s+(?!\S)`, so `(a+)+$`
//   with `gu` still hung. A pure RE2 engine (e.g. re2js) cannot express those lookaheads either
//   and its `\s` differs from JavaScript's, so it would change or refuse real tokenizers.

/** Thrown by a TimeLimiter when fn ran past the limit (the work was interrupted). */
export class TimeLimitExceeded extends Error {
  constructor(readonly limitMs: number) {
    super(`interrupted after ${limitMs} ms`);
    this.name = "TimeLimitExceeded";
  }
}

/** Runs fn (synchronous) and returns its result, or throws TimeLimitExceeded after ms. */
export type TimeLimiter = <T>(fn: () => T, ms: number) => T;

interface VmModule {
  createContext(sandbox: Record<string, unknown>): object;
  Script: new (code: string) => { runInContext(ctx: object, opts: { timeout: number }): unknown };
}

let cached: TimeLimiter | null | undefined;

/** A limiter backed by node:vm, or null where the runtime has none (browsers, Node < 20.16). */
export function timeLimiter(): TimeLimiter | null {
  if (cached !== undefined) return cached;
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const vm = proc?.getBuiltinModule?.("node:vm") as VmModule | undefined;
  if (!vm || typeof vm.createContext !== "function") return (cached = null);
  const slot: { fn: (() => unknown) | null; result: unknown } = { fn: null, result: undefined };
  const ctx = vm.createContext({ slot });
  const script = new vm.Script("slot.result = slot.fn()");
  cached = <T>(fn: () => T, ms: number): T => {
    const limit = Math.max(1, Math.ceil(ms));
    const outer = { fn: slot.fn, result: slot.result }; // re-entrant: a limited fn may call the limiter
    slot.fn = fn;
    try {
      script.runInContext(ctx, { timeout: limit });
      return slot.result as T;
    } catch (e) {
      if ((e as { code?: unknown } | null)?.code === "ERR_SCRIPT_EXECUTION_TIMEOUT") throw new TimeLimitExceeded(limit);
      throw e;
    } finally {
      slot.fn = outer.fn;
      slot.result = outer.result;
    }
  };
  return cached;
}
