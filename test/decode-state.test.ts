import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertEqualArrays } from "./helpers/check.js";
import { COPY_NONE, copyInput, copyInputAllowed, copyInputTable, forceAfter, forceAfterReference, type CopyInputRule } from "../src/ops/decode_state.js";
import { Rng } from "../src/util/rng.js";

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

// A toy vocabulary for the copy-input rule: 2 = </s>, 11 = " ", 12 = <MENTION>, 13 = </MENTION>,
// 14 = [LK], 15 = [_CONTINUE_]; words " As"(40) " Anna"(41)/"Anna"(51) " Berg"(42) " left"(43) "."(44)
const RULE: CopyInputRule = { source: [40, 41, 42, 43, 44], twins: [50, 51, 52, 53, COPY_NONE], space: 11, open: 12, close: 13, query: 14, cont: 15, endIds: [2] };

test("copyInputAllowed (reference): the source with mention markup, the lone space + twin form, the end only at the end", () => {
  const allowed = (g: number[]) => {
    const a = copyInputAllowed(g, RULE);
    return a === null ? null : [...a].sort((x, y) => x - y);
  };
  assert.equal(allowed([]), [11, 12, 40]);
  assert.equal(allowed([40]), [11, 12, 41]);
  assert.equal(allowed([40, 11]), [12, 51], "after the lone space: the opener or the twin");
  assert.equal(allowed([40, 11, 12]), [51], "opened after a lone space: only the twin");
  assert.equal(allowed([40, 11, 12, 51]), [13, 42], "inside: the next source id or the closer");
  assert.equal(allowed([40, 11, 12, 51, 42]), [13, 43]);
  assert.equal(allowed([40, 11, 12, 51, 42, 13]), [14], "after the closer: the query token");
  assert.equal(allowed([40, 11, 12, 51, 42, 13, 14]), [15]);
  assert.equal(allowed([40, 11, 12, 51, 42, 13, 14, 15]), [11, 12, 43]);
  assert.equal(allowed([40, 41, 42, 43, 44]), [2], "the whole source written: the end id");
  assert.equal(allowed([40, 41, 42, 43, 12, 44]), [13], "a mention open at the end must close");
  assert.equal(allowed([40, 41, 42, 43, 11]), null, "no twin for '.': the lone space is foreign there, the rule stops");
  assert.equal(allowed([40, 99]), null, "a foreign id stops the rule");
  assert.equal(allowed([12, 40, 13, 14, 15, 41]), [11, 12, 42], "a mention at the very start");
});

test("copyInput on the GPU masks exactly the reference's complement, along random walks (incl. a foreign id)", async () => {
  const ctx = await gpu();
  const rng = new Rng(21);
  const V = 700;
  for (let walk = 0; walk < 6; walk++) {
    const n = 3 + rng.int(40);
    const source = Array.from({ length: n }, () => 20 + rng.int(V - 20));
    const twins = source.map(() => (rng.next() < 0.6 ? 20 + rng.int(V - 20) : COPY_NONE));
    const rule: CopyInputRule = { source, twins, space: 11, open: 12, close: 13, query: 14, cont: 15, endIds: walk % 2 ? [2, 3] : [2] };
    const start = 5 + rng.int(30);
    const capacity = start + 3 * n + 8;
    const ctxIds = new Uint32Array(capacity);
    for (let t = 0; t < start; t++) ctxIds[t] = rng.int(V);
    const context = ctx.upload(ctxIds, [capacity], "u32", "context");
    const table = ctx.upload(copyInputTable(rule, V), [2 * n + rule.endIds.length], "u32", "table");
    const generated: number[] = [];
    const foreignAt = walk === 5 ? 4 : -1;
    for (let step = 0; start + generated.length < capacity; step++) {
      const last = start + generated.length - 1;
      const l0 = rng.fillUniform(V, -3, 3);
      const logits = ctx.upload(l0, [1, V], "f32", "logits");
      await copyInput(ctx, context, table, ctx.upload(Uint32Array.of(last), [1], "u32", "position"), logits, start, rule);
      const ok = copyInputAllowed(generated, rule);
      const want = l0.map((x, v) => (ok === null || ok.has(v) ? x : -Infinity));
      assertEqualArrays(await logits.read(), want, `walk ${walk} step ${step}: after [${generated.join(",")}]`);
      if (ok !== null && ok.size === 0) break;
      const choices = ok === null ? [rng.int(V)] : [...ok];
      let next = choices[rng.int(choices.length)]!;
      if (step === foreignAt) next = 1; // an id the rule never allows
      if (rule.endIds.includes(next)) break;
      generated.push(next);
      ctx.write(context, Uint32Array.of(next), start + generated.length - 1);
    }
    assert.ok(generated.length >= n, `walk ${walk}: the walk wrote the source (${generated.length} ids for ${n})`);
  }
});

test.run();
