import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices } from "./helpers/gpu.js";
import { assertEqualArrays, assertRejects } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { planSample, sample, sampleReference, sampleUniform01, NONFINITE_ID } from "../src/ops/sample.js";
import { ShapeError, UsageError } from "../src/errors.js";
import { STEP_COUNT } from "../src/ops/step-state.js";
import { Rng } from "../src/util/rng.js";

// With the step state bound as the step tensor and stepWord = STEP_COUNT, the draw uses
// step = step[STEP_COUNT] (+ stepAdd): for the same j it must pick what a numeric step j picks,
// and the reference with sampleUniform01(seed, j, row).

test("sample with the step state (stepWord STEP_COUNT): the RNG step is step[STEP_COUNT], ids equal the numeric-step variant and the reference", async () => {
  await forDevices({}, async (ctx, device) => {
    const rng = new Rng(41);
    const B = 3, V = 517;
    const state = ctx.upload(stepWords(99, 1, 0), [8], "u32", "step");
    const logits = rng.fillNormal(B * V, 2);
    const L = ctx.upload(logits, [B, V], "f32", "logits");
    const outState = ctx.upload(new Uint32Array(B), [B], "u32", "idsState");
    const outNum = ctx.upload(new Uint32Array(B), [B], "u32", "idsNum");
    const opts = { temperature: 1.3, topK: 50, topP: 0.9, seed: 1234 };
    const plan = await planSample(ctx, L, outState, { ...opts, step: state, stepWord: STEP_COUNT });
    let differs = 0;
    let prev: Uint32Array | null = null;
    for (const j of [0, 1, 2, 17, 4096]) {
      ctx.write(state, stepWords(99, 1, j)); // COUNT = j; the other words must not matter
      plan.encode(ctx);
      await sample(ctx, L, outNum, { ...opts, step: j });
      const got = await outState.read();
      assertEqualArrays(got, await outNum.read(), `[${device}] j=${j}: as step ${j}`);
      assertEqualArrays(got, sampleReference(logits, V, opts, (row) => sampleUniform01(opts.seed, j, row)), `[${device}] j=${j}: reference`);
      if (prev && got.some((x, i) => x !== prev![i])) differs++;
      prev = got.slice();
    }
    assert.ok(differs > 0, "the draws change with j (the variant does read COUNT)");
    // stepAdd is added to COUNT
    ctx.write(state, stepWords(0, 1, 5));
    await sample(ctx, L, outState, { ...opts, step: state, stepWord: STEP_COUNT, stepAdd: 3 });
    await sample(ctx, L, outNum, { ...opts, step: 8 });
    assertEqualArrays(await outState.read(), await outNum.read(), `[${device}] COUNT 5 + stepAdd 3 = step 8`);
    // non-finite rows still give NONFINITE_ID
    const bad = logits.slice();
    bad[V + 3] = NaN;
    ctx.write(L, bad);
    await sample(ctx, L, outState, { ...opts, step: state, stepWord: STEP_COUNT });
    assert.is((await outState.read())[1], NONFINITE_ID);
  });
});

test("sample: stepWord outside the step tensor, or with a numeric step, is refused", async () => {
  await forDevices({}, async (ctx) => {
    const L = ctx.upload(new Float32Array(4), [1, 4], "f32", "logits");
    await assertRejects(() => sample(ctx, L, ctx.empty([1], "u32", "ids"), { temperature: 1, seed: 1, step: ctx.empty([1], "u32", "st"), stepWord: STEP_COUNT }), ShapeError, [/step \('st'\) holds 1 words, stepWord 2/], "step tensor of one word");
    await assertRejects(() => sample(ctx, L, ctx.empty([1], "u32", "ids"), { temperature: 1, seed: 1, step: 3, stepWord: STEP_COUNT }), UsageError, [/stepWord applies to a tensor step/], "numeric step");
  });
});

test.run();
