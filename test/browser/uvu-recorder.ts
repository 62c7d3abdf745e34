// Stands in for "uvu" inside the browser test bundle (scripts/run-browser-tests.mjs aliases the
// test files' `import { test } from "uvu"` to this module). Every suite is a real uvu suite; each
// test body is wrapped so its outcome (pass/fail, failure message, milliseconds) reaches the page
// harness as one structured record, which uvu's own console output does not give.
import * as uvu from "uvu";

export interface TestRecord {
  suite: string;
  name: string;
  ok: boolean;
  ms: number;
  /** First line of the failure and the rest of its message; empty when ok. */
  error: string;
}

type Sink = { started(suite: string, name: string): void; finished(r: TestRecord): void };
let sink: Sink | null = null;

/** The harness installs the receiver of test records before any test file is loaded. */
export function setRecordSink(s: Sink): void {
  sink = s;
}

function message(e: unknown): string {
  if (e instanceof Error) {
    const extra = (e as { details?: unknown }).details;
    return `${e.name}: ${e.message}${typeof extra === "string" && extra ? `\n${extra}` : ""}`;
  }
  return String(e);
}

function wrap<T>(suiteName: string, t: uvu.Test<T>): uvu.Test<T> {
  const record = (name: string, body: uvu.Callback<T>): uvu.Callback<T> => async (ctx) => {
    sink?.started(suiteName, name);
    const t0 = performance.now();
    try {
      await body(ctx);
    } catch (e) {
      sink?.finished({ suite: suiteName, name, ok: false, ms: performance.now() - t0, error: message(e) });
      throw e;
    }
    sink?.finished({ suite: suiteName, name, ok: true, ms: performance.now() - t0, error: "" });
  };
  const wrapped = ((name: string, body: uvu.Callback<T>) => t(name, record(name, body))) as uvu.Test<T>;
  wrapped.only = (name, body) => t.only(name, record(name, body));
  wrapped.skip = t.skip;
  wrapped.before = t.before;
  wrapped.after = t.after;
  wrapped.run = t.run;
  return wrapped;
}

export function suite<T = Record<string, unknown>>(title = "", context?: T): uvu.Test<T> {
  return wrap(title, uvu.suite<T>(title, context));
}

export const test = suite();
export const exec = uvu.exec;
