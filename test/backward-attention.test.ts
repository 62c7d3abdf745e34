import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { attentionBackward, attentionBackwardReference, kvAppendBackward, kvAppendBackwardReference } from "../src/train/ops/attention_backward.js";
import { attentionForward64 } from "../src/ops/attention.js";
import { attention, attentionReference, causalRanges, packedCausalRanges } from "../src/ops/attention.js";
import { dot64, numericGrad } from "../src/train/ops/gradcheck.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

// FD: softmax attention is smooth; with O(1) inputs, h = 1e-5 gives ≲ 1e-9 error: atol 1e-7, rtol 1e-6.
// GPU vs reference: f32 dots of hd ≤ 64, softmax sums of ≤ 40 keys and dk/dv sums over ≤ 40·group
// terms, values O(1): atol 2e-5, rtol 2e-4.
const FD_TOL = { atol: 1e-7, rtol: 1e-6 };
const GPU_TOL = { atol: 2e-5, rtol: 2e-4 };
const rng = new Rng(777);
const nanFilled = (n: number) => new Float32Array(n).fill(NaN);

test("attention backward: CPU reference equals finite differences (T=5, H=4, Hkv=2, hd=6, ranges with a window and an empty row)", () => {
  const dims = { T: 5, H: 4, Hkv: 2, S: 7, hd: 6 };
  const { T, H, Hkv, S, hd } = dims;
  const ranges = Uint32Array.from([2, 3, 2, 4, 3, 6, 5, 5, 0, 7]); // row 3: empty range
  const q = Float64Array.from(rng.fillNormal(T * H * hd));
  const k = Float64Array.from(rng.fillNormal(Hkv * S * hd));
  const v = Float64Array.from(rng.fillNormal(Hkv * S * hd));
  const r = Float64Array.from(rng.fillNormal(T * H * hd));
  const L = () => dot64(r, attentionForward64(q, k, v, ranges, dims));
  const ref = attentionBackwardReference(q, k, v, ranges, r, dims);
  assertClose(ref.dq, numericGrad(L, q), FD_TOL, "dq vs FD");
  assertClose(ref.dk, numericGrad(L, k), FD_TOL, "dk vs FD");
  assertClose(ref.dv, numericGrad(L, v), FD_TOL, "dv vs FD");
});

async function gpuCase(dims: { T: number; H: number; Hkv: number; S: number; hd: number }, ranges: Uint32Array, what: string): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array; q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array }> {
  const ctx = await gpu();
  const { T, H, Hkv, S, hd } = dims;
  const q = rng.fillNormal(T * H * hd), k = rng.fillNormal(Hkv * S * hd), v = rng.fillNormal(Hkv * S * hd), dout = rng.fillNormal(T * H * hd);
  const qT = ctx.upload(q, [T, H, hd], "f32", "q");
  const kT = ctx.upload(k, [Hkv, S, hd], "f32", "k");
  const vT = ctx.upload(v, [Hkv, S, hd], "f32", "v");
  const rT = ctx.upload(ranges, [T, 2], "u32", "ranges");
  const out = await attention(ctx, qT, kT, vT, rT, { variant: "prefill" }); // the real forward
  assertClose(await out.read(), attentionReference(q, k, v, ranges, dims), GPU_TOL, `${what}: forward`);
  const dq = ctx.upload(nanFilled(T * H * hd), [T, H, hd], "f32", "dq");
  const dk = ctx.upload(nanFilled(Hkv * S * hd), [Hkv, S, hd], "f32", "dk");
  const dv = ctx.upload(nanFilled(Hkv * S * hd), [Hkv, S, hd], "f32", "dv");
  await attentionBackward(ctx, qT, kT, vT, rT, out, ctx.upload(dout, [T, H, hd], "f32", "dout"), { dq, dk, dv });
  return { dq: await dq.read(), dk: await dk.read(), dv: await dv.read(), q, k, v, dout };
}

test("attention backward: GPU dq, dk, dv vs reference (GQA, causal, packed sequences, hd not a multiple of 4, NaN-prefilled)", async () => {
  const cases: [{ T: number; H: number; Hkv: number; S: number; hd: number }, Uint32Array, string][] = [
    [{ T: 5, H: 4, Hkv: 2, S: 5, hd: 6 }, causalRanges(5, 0), "causal T=5 H=4 Hkv=2 hd=6"],
    [{ T: 12, H: 6, Hkv: 2, S: 16, hd: 64 }, causalRanges(12, 4), "causal from p0=4, T=12 H=6 Hkv=2 hd=64"],
    [{ T: 9, H: 2, Hkv: 2, S: 9, hd: 3 }, packedCausalRanges([4, 5]), "packed [4,5] H=Hkv=2 hd=3"],
    [{ T: 40, H: 4, Hkv: 1, S: 40, hd: 16 }, causalRanges(40, 0), "causal T=40 H=4 Hkv=1 (MQA) hd=16"],
  ];
  for (const [dims, ranges, what] of cases) {
    const got = await gpuCase(dims, ranges, what);
    const ref = attentionBackwardReference(got.q, got.k, got.v, ranges, got.dout, dims);
    assertClose(got.dq, ref.dq, GPU_TOL, `${what}: dq`);
    assertClose(got.dk, ref.dk, GPU_TOL, `${what}: dk`);
    assertClose(got.dv, ref.dv, GPU_TOL, `${what}: dv`);
  }
});

test("attention backward: GPU gradients vs finite differences (T=4, H=4, Hkv=2, hd=6; one empty range, uncovered cache rows get 0)", async () => {
  const dims = { T: 4, H: 4, Hkv: 2, S: 6, hd: 6 };
  const ranges = Uint32Array.from([0, 1, 0, 2, 3, 3, 1, 4]);
  const got = await gpuCase(dims, ranges, "fd case");
  const q = Float64Array.from(got.q), k = Float64Array.from(got.k), v = Float64Array.from(got.v);
  const L = () => dot64(got.dout, attentionForward64(q, k, v, ranges, dims));
  const tol = { atol: 2e-5, rtol: 1e-4 };
  assertClose(got.dq, numericGrad(L, q), tol, "GPU dq vs FD");
  assertClose(got.dk, numericGrad(L, k), tol, "GPU dk vs FD");
  assertClose(got.dv, numericGrad(L, v), tol, "GPU dv vs FD");
  for (const j of [4, 5]) for (let d = 0; d < 6; d++) assert.is(got.dk[j * 6 + d], 0, "uncovered cache row: zero gradient");
});

test("kvAppend backward: gathers cache gradients to k/v rows (positions ≥ S → 0)", async () => {
  const ctx = await gpu();
  const [T, Hkv, S, hd] = [4, 2, 6, 5];
  const dkc = rng.fillNormal(Hkv * S * hd), dvc = rng.fillNormal(Hkv * S * hd);
  const pos = Uint32Array.from([3, 0, 9, 5]);
  const res = await kvAppendBackward(ctx, ctx.upload(dkc, [Hkv, S, hd], "f32", "dkc"), ctx.upload(dvc, [Hkv, S, hd], "f32", "dvc"), ctx.upload(pos, [T], "u32", "pos"));
  const ref = kvAppendBackwardReference(dkc, dvc, pos, Hkv, S, hd);
  assertClose(await res.dk.read(), ref.dk, { atol: 0, rtol: 0 }, "dk gather");
  assertClose(await res.dv.read(), ref.dv, { atol: 0, rtol: 0 }, "dv gather");
  await assertRejects(
    () => attentionBackward(ctx, ctx.empty([2, 3, 4], "f32", "q"), ctx.empty([2, 2, 4], "f32", "k"), ctx.empty([2, 2, 4], "f32", "v"), ctx.empty([2, 2], "u32", "r"), ctx.empty([2, 3, 4], "f32", "o"), ctx.empty([2, 3, 4], "f32", "d")),
    ShapeError,
    [/3 query heads/],
    "H not a multiple of Hkv",
  );
});

test.run();
