// Backward of the embedding gather (repeated ids, no float atomics) and the fused softmax
// cross-entropy over the vocabulary.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { embeddingBackward, embeddingBackwardReference } from "../src/train/ops/embedding_backward.js";
import { crossEntropy, crossEntropyReference, IGNORE_LABEL } from "../src/train/ops/cross_entropy.js";
import { embeddingReference } from "../src/ops/embedding.js";
import { dot64, numericGrad } from "../src/train/ops/gradcheck.js";
import { UsageError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

const rng = new Rng(31337);
const FD_TOL = { atol: 1e-7, rtol: 1e-6 };

test("embedding backward: reference vs FD of the gather; GPU vs reference with repeated ids, accumulate and overwrite", async () => {
  const ctx = await gpu();
  {
    const [V, D] = [6, 3];
    const ids = [2, 5, 2, 0, 2];
    const table = Float64Array.from(rng.fillNormal(V * D));
    const r = rng.fillNormal(ids.length * D);
    // The gather in float64 (embeddingReference's loop, kept unrounded).
    const gather = () => Float64Array.from({ length: ids.length * D }, (_, i) => table[ids[Math.floor(i / D)]! * D + (i % D)]!);
    assertClose(gather(), embeddingReference(ids, Float32Array.from(table), V, D).out, { atol: 1e-6, rtol: 1e-6 }, "float64 gather = forward reference");
    const L = () => dot64(r, gather());
    assertClose(embeddingBackwardReference(ids, r, new Float64Array(V * D), V, D), numericGrad(L, table), FD_TOL, "dTable vs FD");
  }
  // GPU: sums of ≤ 40 O(1) values in token order: atol 1e-5, rtol 1e-5.
  for (const [T, V, D] of [[5, 6, 3], [40, 7, 13], [64, 1000, 64], [1, 1, 1]] as [number, number, number][]) {
    const ids = Array.from({ length: T }, () => rng.int(V));
    const dOut = rng.fillNormal(T * D);
    const prev = rng.fillNormal(V * D);
    const dTable = ctx.upload(prev, [V, D], "f32", "dTable");
    await embeddingBackward(ctx, ids, ctx.upload(dOut, [T, D], "f32", "dOut"), dTable);
    assertClose(await dTable.read(), embeddingBackwardReference(ids, dOut, prev, V, D), { atol: 1e-5, rtol: 1e-5 }, `accumulate T=${T} V=${V} D=${D}`);
    const fresh = ctx.upload(new Float32Array(V * D).fill(NaN), [V, D], "f32", "dTable2");
    await embeddingBackward(ctx, ids, ctx.upload(dOut, [T, D], "f32", "dOut"), fresh, { accumulate: false });
    assertClose(await fresh.read(), embeddingBackwardReference(ids, dOut, new Float64Array(V * D), V, D), { atol: 1e-5, rtol: 1e-5 }, `overwrite T=${T} V=${V} D=${D}`);
  }
  await assertRejects(() => embeddingBackward(ctx, [3], ctx.empty([1, 2], "f32", "d"), ctx.empty([3, 2], "f32", "tbl")), UsageError, [/outside the table 'tbl'/], "host id ≥ V");
});

test("embedding backward: GPU ids ≥ V set the error bit; table windows over a 64 KiB limit", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  const [V, D] = [300, 100]; // 120,000 bytes → 2 windows
  const ids = Uint32Array.from([299, 0, 150, 299, 5000, 0, 160]);
  const T = ids.length;
  const dOut = rng.fillNormal(T * D);
  const errors = ctx.upload([0], [1], "u32", "errors");
  const dTable = ctx.upload(new Float32Array(V * D), [V, D], "f32", "dTable");
  await embeddingBackward(ctx, ctx.upload(ids, [T], "u32", "ids"), ctx.upload(dOut, [T, D], "f32", "dOut"), dTable, { errors });
  assertClose(await dTable.read(), embeddingBackwardReference(ids, dOut, new Float64Array(V * D), V, D), { atol: 1e-6, rtol: 1e-6 }, "windowed scatter");
  assert.is((await errors.read())[0], 1, "error bit for id 5000");
});

// CE: f32 logsumexp over V terms (each exp ≤ 3 + 2|x| ulp, sums relative ~V·2^-24 worst case):
// loss atol 1e-5 + rtol 1e-5 for V ≤ 5000; gradients are probabilities/n, atol 1e-6, rtol 1e-4.
test("cross-entropy: reference vs FD (T=4, V=11, a masked row); GPU loss, dlogits vs reference and FD", async () => {
  const ctx = await gpu();
  const [T, V] = [4, 11];
  const logits = Float64Array.from(rng.fillNormal(T * V).map((x) => 3 * x));
  const labels = [3, IGNORE_LABEL, 10, 0];
  const L = () => crossEntropyReference(logits, labels, T, V).loss;
  const ref = crossEntropyReference(logits, labels, T, V);
  assert.is(ref.count, 3);
  const fd = numericGrad(L, logits);
  assertClose(ref.dlogits, fd, FD_TOL, "dlogits vs FD");
  const lt = ctx.upload(logits, [T, V], "f32", "logits");
  const res = await crossEntropy(ctx, lt, labels);
  const loss = await res.loss.read();
  assertClose([loss[0]!, loss[1]!], [ref.loss, 3], { atol: 1e-5, rtol: 1e-5 }, "loss, count");
  assert.is(res.dlogits, lt, "in place by default");
  assertClose(await lt.read(), fd, { atol: 1e-6, rtol: 1e-4 }, "GPU dlogits vs FD");
});

test("cross-entropy: awkward V, large logits (stability), separate output, normalizer and scale, all rows masked", async () => {
  const ctx = await gpu();
  for (const [T, V] of [[3, 1], [5, 4099], [2, 32000]] as [number, number][]) {
    const logits = rng.fillNormal(T * V).map((x, i) => (i % 7 === 0 ? 80 + x : 10 * x)); // large values: exp overflows without max subtraction
    const labels = Array.from({ length: T }, (_, t) => (t === 1 ? IGNORE_LABEL : rng.int(V)));
    const opts = { normalizer: 7, scale: 0.5 };
    const ref = crossEntropyReference(logits, labels, T, V, opts);
    const grad = ctx.upload(new Float32Array(T * V).fill(NaN), [T, V], "f32", "grad");
    const lt = ctx.upload(logits, [T, V], "f32", "logits");
    const res = await crossEntropy(ctx, lt, ctx.upload(Uint32Array.from(labels), [T], "u32", "labels"), { grad, ...opts });
    const loss = await res.loss.read();
    const what = `T=${T} V=${V}`;
    assertClose([loss[0]!, loss[1]!, loss[3]!], [ref.loss, ref.count, 0.5 / 7], { atol: 1e-4, rtol: 1e-5 }, `${what}: loss`);
    const rows = await res.rowStats.read();
    assertClose(rows.filter((_, i) => i % 2 === 1), ref.rowLoss, { atol: 1e-4, rtol: 1e-5 }, `${what}: per-row loss`);
    assertClose(await grad.read(), ref.dlogits, { atol: 1e-6, rtol: 1e-4 }, `${what}: dlogits`);
    assertClose(await lt.read(), logits, { atol: 0, rtol: 0 }, `${what}: logits untouched with a separate grad`);
  }
  const none = await crossEntropy(ctx, ctx.upload(rng.fillNormal(6), [2, 3], "f32", "l"), [IGNORE_LABEL, IGNORE_LABEL]);
  const l = await none.loss.read();
  assertClose([l[0]!, l[1]!], [0, 0], { atol: 0, rtol: 0 }, "all masked: loss 0, count 0");
  assertClose(await none.dlogits!.read(), new Float32Array(6), { atol: 0, rtol: 0 }, "all masked: zero gradient");
  await assertRejects(() => crossEntropy(ctx, ctx.empty([1, 5], "f32", "l"), [5]), UsageError, [/label 5/], "label ≥ V from host");
});

test("cross-entropy: GPU label ≥ V gives NaN loss; row windows over a 64 KiB limit", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 65536 });
  const [T, V] = [9, 4000]; // 144,000 bytes → 3 windows
  const logits = rng.fillNormal(T * V);
  const labels = Array.from({ length: T }, (_, t) => (t % 4 === 2 ? IGNORE_LABEL : rng.int(V)));
  const ref = crossEntropyReference(logits, labels, T, V);
  const lt = ctx.upload(logits, [T, V], "f32", "logits");
  const res = await crossEntropy(ctx, lt, labels);
  assertClose([(await res.loss.read())[0]!], [ref.loss], { atol: 1e-5, rtol: 1e-5 }, "windowed loss");
  assertClose(await lt.read(), ref.dlogits, { atol: 1e-6, rtol: 1e-4 }, "windowed dlogits");
  const bad = await crossEntropy(ctx, ctx.upload(rng.fillNormal(6), [2, 3], "f32", "l"), ctx.upload([1, 3], [2], "u32", "labels"), { grad: "none" });
  assert.ok(Number.isNaN((await bad.loss.read())[0]), "NaN loss for a GPU label ≥ V");
});

test.run();
