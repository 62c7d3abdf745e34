// Numeric comparison for kernel tests: |got - want| ≤ atol + rtol·|want| element-wise, NaN in
// `got` always fails (outputs are prefilled with NaN so a kernel that writes nothing fails).
// Failures name the case, the first bad index, got and want, and the count of bad elements.
import * as assert from "uvu/assert";

export interface Tolerance {
  atol: number;
  rtol: number;
}

export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what: string): void {
  if (got.length !== want.length) assert.unreachable(`${what}: length ${got.length}, expected ${want.length}`);
  let bad = 0;
  let first = -1;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const err = Math.abs(g - w);
    const ok = Number.isNaN(w) ? Number.isNaN(g) : !Number.isNaN(g) && (err <= tol.atol + tol.rtol * Math.abs(w) || g === w);
    if (!ok) {
      bad++;
      if (first < 0) first = i;
    }
    if (!Number.isNaN(err)) worst = Math.max(worst, err);
  }
  if (bad) {
    assert.unreachable(
      `${what}: ${bad}/${want.length} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); ` +
        `first at [${first}]: got ${got[first]}, want ${want[first]}; max abs err ${worst}`,
    );
  }
}

export function assertEqualArrays(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  if (got.length !== want.length) assert.unreachable(`${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      assert.unreachable(`${what}: first difference at [${i}]: got ${got[i]}, want ${want[i]}`);
    }
  }
}

/** Asserts that `fn` rejects with an error of class `cls` whose message matches every pattern. */
export async function assertRejects(fn: () => Promise<unknown> | unknown, cls: abstract new (...a: never[]) => Error, patterns: readonly RegExp[], what: string): Promise<Error> {
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (!err) assert.unreachable(`${what}: expected ${cls.name}, nothing was thrown`);
  if (!(err instanceof cls)) assert.unreachable(`${what}: expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  for (const p of patterns) {
    if (!p.test((err as Error).message)) assert.unreachable(`${what}: message does not match ${p}: ${(err as Error).message}`);
  }
  return err as Error;
}
