import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertEqualArrays } from "./helpers/check.js";
import { advancePosition, advanceReference, forceAfter, forceAfterReference } from "../src/ops/decode_state.js";
import { Rng } from "../src/util/rng.js";

test("advancePosition matches its reference, with and without a sliding window", async () => {
  const ctx = await gpu();
  for (const window of [0, 4]) {
    const token = ctx.upload(Uint32Array.of(0), [1], "u32", "token");
    const position = ctx.upload(Uint32Array.of(2), [1], "u32", "position");
    const ranges = ctx.upload(Uint32Array.of(0, 3), [1, 2], "u32", "ranges");
    const context = ctx.upload(new Uint32Array(8).fill(0xdeadbeef), [8], "u32", "context");
    let ref = { position: 2, ranges: [0, 3] as [number, number] };
    const ctxRef = new Uint32Array(8).fill(0xdeadbeef);
    for (let step = 0; step < 7; step++) {
      ctx.write(token, Uint32Array.of(100 + step));
      await advancePosition(ctx, token, position, ranges, context, window);
      ref = advanceReference(ref.position, ref.ranges, window);
      if (ref.position < 8) ctxRef[ref.position] = 100 + step;
      assert.is((await position.read())[0], ref.position, `window ${window} step ${step}: position`);
      assertEqualArrays(await ranges.read(), ref.ranges, `window ${window} step ${step}: ranges`);
    }
    assertEqualArrays(await context.read(), ctxRef, `window ${window}: context (no write past its end)`);
  }
});

test("forceAfter fires exactly when the context ends with the pattern", async () => {
  const ctx = await gpu();
  const rng = new Rng(5);
  const V = 1001;
  const ids = [3, 9, 9, 4, 7, 9, 4];
  const context = ctx.upload(Uint32Array.from(ids), [ids.length], "u32", "context");
  for (const [pattern, last] of [[[9, 4], 3], [[9, 4], 6], [[9, 4], 4], [[3, 9, 9, 4], 3], [[4], 0], [[3, 9], 0], [[7, 9, 4, 1], 6]] as const) {
    const l0 = rng.fillUniform(V, -3, 3);
    const logits = ctx.upload(l0, [1, V], "f32", "logits");
    const pat = ctx.upload(Uint32Array.from(pattern), [pattern.length], "u32", "pattern");
    await forceAfter(ctx, context, pat, logits, ctx.upload(Uint32Array.of(last), [1], "u32", "position"), 500);
    const want = forceAfterReference(ids, pattern, l0, last, 500);
    assertEqualArrays(await logits.read(), want, `pattern [${pattern}] at last=${last}`);
  }
  // the reference fires on [9,4] ending at 3 and not at 4: make sure the test can tell
  assert.is(forceAfterReference(ids, [9, 4], new Float32Array(4), 3, 1)[0], -Infinity);
  assert.is(forceAfterReference(ids, [9, 4], new Float32Array(4), 4, 1)[0], 0);
});

test.run();
