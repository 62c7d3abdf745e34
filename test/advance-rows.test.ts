import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { advanceRows, advanceRowsReference, planAdvanceRows } from "../src/ops/decode_state.js";
import { INJECTED_ID, STEP_COUNT, STEP_LAST, STEP_PENDING, STEP_ROWS } from "../src/ops/step-state.js";
import { NONFINITE_ID } from "../src/ops/sample.js";
import { ShapeError } from "../src/errors.js";

const POISON = 0xdeadbeef;

test("advanceRows: sampled tokens, a planned injection, NONFINITE_ID clamped in rows but kept in history, the capacity and history ends", async () => {
  await forDevices({}, async (ctx, device) => {
    const maxRows = 70; // more than one workgroup's 64 rows
    const capacity = 80;
    const stride = 2;
    const historyLen = 2 * 9 + 1; // step 9 would write word 18, step 10 (word 20) is past the end
    const token = ctx.upload([0], [1], "u32", "token");
    const plan = ctx.upload(Uint32Array.from({ length: maxRows }, (_, i) => 1000 + i), [maxRows], "u32", "plan");
    const planHost = Uint32Array.from({ length: maxRows }, (_, i) => 1000 + i);
    let ref: { step: Uint32Array; rows: Uint32Array; context: Uint32Array; history: Uint32Array } = {
      step: stepWords(9, 10, 0, 0),
      rows: new Uint32Array(maxRows).fill(POISON),
      context: new Uint32Array(capacity).fill(POISON),
      history: new Uint32Array(historyLen).fill(POISON),
    };
    const step = ctx.upload(ref.step, [8], "u32", "step");
    const rows = ctx.upload(ref.rows, [maxRows], "u32", "rows");
    const context = ctx.upload(ref.context, [capacity], "u32", "context");
    const history = ctx.upload(ref.history, [historyLen], "u32", "history");
    const adv = await planAdvanceRows(ctx, { token, plan, step, rows, context, history, stride });
    // a script of steps: [sampled token, injection length planned before the step (0: none)]
    const script: [number, number][] = [[5, 0], [NONFINITE_ID, 0], [7, 3], [8, 0], [9, maxRows + 5], [10, 0], [11, 1], [12, 0], [13, 0], [14, 0], [15, 0]];
    for (const [i, [tok, pending]] of script.entries()) {
      ctx.write(token, [tok]);
      if (pending > 0) {
        const s = (await step.read()).slice();
        s[STEP_PENDING] = pending;
        ctx.write(step, s);
        ref.step[STEP_PENDING] = pending;
      }
      adv.encode(ctx);
      ref = advanceRowsReference({ token: tok, plan: planHost, ...ref }, stride);
      const what = `[${device}] step ${i} (token ${tok}, pending ${pending})`;
      assertEqualArrays(await step.read(), ref.step, `${what}: step state`);
      assertEqualArrays(await rows.read(), ref.rows, `${what}: rows`);
      assertEqualArrays(await context.read(), ref.context, `${what}: context`);
      assertEqualArrays(await history.read(), ref.history, `${what}: history`);
    }
    // the reference itself, spot-checked against the contract
    assert.is(ref.history[2 * 1], NONFINITE_ID, "history keeps NONFINITE_ID");
    assert.is(ref.context[11], 0, "the non-finite step fed id 0");
    assert.is(ref.history[2 * 2], INJECTED_ID, "an injection step records INJECTED_ID");
    assert.is(ref.step[STEP_COUNT], script.length);
    assert.is(ref.step[STEP_ROWS], 1);
    assert.is(ref.step[STEP_LAST], 9 + 2 + 3 + 1 + maxRows + 1 + 1 + 4);
    assert.ok(ref.step[STEP_LAST]! >= capacity, "the script runs past the context's capacity (no write past its end)");
  });
});

test("advanceRows: argument errors", async () => {
  const ctx = await gpu();
  const u = (n: number, label: string) => ctx.empty([n], "u32", label);
  await assertRejects(() => advanceRows(ctx, { token: u(1, "token"), plan: u(3, "plan"), step: u(8, "step"), rows: u(4, "rows"), context: u(9, "context"), history: u(9, "history") }), ShapeError, [/plan \('plan'\) holds 3 ids, fewer than maxRows 4/], "short plan");
  await assertRejects(() => advanceRows(ctx, { token: u(1, "token"), plan: u(4, "plan"), step: u(2, "step"), rows: u(4, "rows"), context: u(9, "context"), history: u(9, "history") }), ShapeError, [/step \('step'\)/], "short step");
});

test.run();
