// The stages of kernels/onegen_loop.wgsl against their CPU references in src/onegen/loop.ts, one
// stage at a time on hand-made state (the whole loop is checked end to end in
// test/onegen-loop.test.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { commit, commitReference, type LoopParams, type LoopState } from "../src/onegen/loop.js";

test("COMMIT equals commitReference: the planned ids after the query token, position and range moved (sliding window too), rows past capacity dropped, L = 0 a no-op", async () => {
  const ctx = await gpu();
  const capacity = 20;
  const planIds = Array.from({ length: 8 }, (_, i) => 100 + i);
  // [L, window, position of the query token]
  for (const [L, window, p] of [[5, 0, 6], [5, 4, 6], [1, 0, 0], [0, 0, 6], [0, 3, 9], [6, 0, 16]] as const) {
    const context = Array.from({ length: capacity }, (_, i) => i);
    const ranges: [number, number] = [window > 0 ? Math.max(0, p + 1 - window) : 0, p + 1];
    const t = {
      state: ctx.upload(Uint32Array.of(1, 0, 0, L, 0, 0, 0, 0), [8], "u32", "state"),
      planIds: ctx.upload(Uint32Array.from(planIds), [planIds.length], "u32", "plan_ids"),
      position: ctx.upload(Uint32Array.of(p), [1], "u32", "position"),
      ranges: ctx.upload(Uint32Array.from(ranges), [2], "u32", "ranges"),
      context: ctx.upload(Uint32Array.from(context), [capacity], "u32", "context"),
    };
    const s = { state: t.state, planIds: t.planIds } as LoopState; // COMMIT binds only these of the loop state
    const params: LoopParams = { queryId: 9, maxRetrievals: 5, nPrefix: 1, nSuffix: 1, lMax: planIds.length, capacity, window, slot: 0, maxDocTokens: 100 };
    await commit(ctx, s, t.position, t.ranges, t.context, params);
    ctx.submit();
    const want = commitReference({ retrievals: 1, offset: 0, count: Math.max(0, L - 2), length: L }, planIds, p, ranges, context, params);
    const what = `L ${L}, window ${window}, position ${p}`;
    assert.equal(Array.from(await t.context.read()), context, `${what}: context`);
    assert.is((await t.position.read())[0], want.position, `${what}: position`);
    assert.equal(Array.from(await t.ranges.read()), want.ranges, `${what}: ranges`);
    if (L === 0) assert.equal([want.position, ...want.ranges], [p, ...ranges], `${what}: no-op`);
    else assert.equal(context.slice(p + 1, Math.min(capacity, p + 1 + L)), planIds.slice(0, Math.min(L, capacity - p - 1)), `${what}: the reference writes the plan`);
    for (const x of Object.values(t)) x.dispose();
  }
});

test.run();
