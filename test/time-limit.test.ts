// timeLimiter: synchronous work (a busy loop, a backtracking RegExp) is interrupted after the
// limit; results and errors of work that finishes pass through; nested calls keep their results.
// node-only: the limiter is node:vm reached through process.getBuiltinModule (browsers have none)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TimeLimitExceeded, timeLimiter } from "../src/util/time-limit.js";

test("Node has a limiter; results and errors pass through; nested calls return their own results", () => {
  const limit = timeLimiter();
  assert.ok(limit, "node:vm through process.getBuiltinModule");
  assert.is(limit!(() => 6 * 7, 1000), 42);
  assert.throws(() => limit!(() => { throw new RangeError("mine"); }, 1000), (e: Error) => e instanceof RangeError && e.message === "mine");
  assert.equal(limit!(() => [limit!(() => "inner", 1000), "outer"], 1000), ["inner", "outer"]);
});

test("a busy loop and a catastrophically backtracking RegExp are interrupted near the limit", () => {
  const limit = timeLimiter()!;
  for (const [what, fn] of [
    ["busy loop", () => { for (;;); }],
    ["(a+)+$ on 40 a's and !", () => ("a".repeat(40) + "!").match(/(a+)+$/gu)],
  ] as const) {
    const started = Date.now();
    assert.throws(() => limit(fn, 200), (e: Error) => e instanceof TimeLimitExceeded && e.limitMs === 200, what);
    const ms = Date.now() - started;
    assert.ok(ms >= 190 && ms < 200 + 1500, `${what}: interrupted after ${ms} ms`);
  }
  assert.equal("aaa".match(/a+/gu), ["aaa"], "RegExps work after an interrupted match");
  // an inner timeout inside an outer call does not end the outer one
  assert.is(limit(() => { try { limit(() => { for (;;); }, 50); } catch (e) { return e instanceof TimeLimitExceeded; } return false; }, 2000), true);
});

test.run();
