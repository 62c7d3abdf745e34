import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays, assertRejects } from "./helpers/check.js";
import { rope, ropeReference } from "../src/ops/rope.js";
import { ShapeError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

/** HF default inv_freq in float32: 1 / theta^(2i/hd) (the scaled variants live in src/model/config.ts). */
function invFreqDefault(hd: number, theta: number): Float32Array {
  const out = new Float32Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) out[i] = 1 / Math.pow(theta, (2 * i) / hd);
  return out;
}

// sin/cos are the kernel's own polynomials on a quadrant-reduced angle (rope.wgsl), not the
// built-ins, so the same bound holds on SwiftShader (whose built-in sin/cos are less precise).
// Tolerance: the GPU's reduced angle differs from the f32 angle by ≲ 3e-7 rad (see rope.wgsl) and
// f32 sin/cos on [−π, π] are good to a few ulp on lavapipe; |x| ≤ 2, so |err| ≲ 2·(3e-7 + 2e-7)
// plus two f32 roundings of the result. Measured max error 4.0e-7 for positions ≤ 4e5 with the
// built-ins, 5.9e-7 with the polynomials (lavapipe, 2026-12-02, hd 128, |x| ≤ 2, positions 0–4e5)
// (and 6.8e-2 at 1e6, past the documented reduction range). atol 4e-6 leaves a 10× margin; WGSL itself bounds
// sin/cos only on [−π, π] (2^-11 absolute), which is why the kernel reduces the angle first.
const TOL = { atol: 4e-6, rtol: 0 };

test("rope: matches the reference over heads, head dims, positions up to 3e5 and several inv_freq arrays", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(42);
    const positionSets = [
      [0],
      [1, 2, 3, 4, 5, 6, 7],
      [4095, 0, 8191, 131071, 100_000, 300_000, 17],
      [4096, 32768, 32767, 65536, 16384],
    ];
    for (const hd of [2, 6, 64, 128]) {
      const llama3Like = invFreqDefault(hd, 500_000).map((f, i) => (i % 3 === 0 ? f / 8 : f)); // a non-monotone array
      const random = Float32Array.from({ length: hd / 2 }, () => rng.uniform(0, 1.5));
      for (const [name, invFreq] of [["theta1e4", invFreqDefault(hd, 10_000)], ["llama3like", llama3Like], ["random", random]] as const) {
        for (const pos of positionSets) {
          for (const nH of [1, 5]) {
            const T = pos.length;
            const x = rng.fillUniform(T * nH * hd, -2, 2);
            const positions = Uint32Array.from(pos);
            const xt = ctx.upload(x, [T, nH, hd], "f32", "x");
            await rope(ctx, xt, ctx.upload(positions, [T], "u32", "pos"), ctx.upload(invFreq, [hd / 2], "f32", "inv_freq"));
            assertClose(await xt.read(), ropeReference(x, positions, invFreq, nH, hd), TOL, `rope hd=${hd} nH=${nH} ${name} pos=[${pos.join(",")}]`);
            xt.dispose();
          }
        }
      }
    }
  });
});

test("rope: position 0 is the identity (bit-exact) and rows use their own positions", async () => {
  const ctx = await gpu();
  const rng = new Rng(3);
  const hd = 8;
  const nH = 3;
  const x = rng.fillUniform(2 * nH * hd);
  const xt = ctx.upload(x, [2, nH, hd], "f32", "x");
  await rope(ctx, xt, ctx.upload([0, 9], [2], "u32", "pos"), ctx.upload(invFreqDefault(hd, 10_000), [hd / 2], "f32", "inv_freq"));
  const got = await xt.read();
  assertEqualArrays(got.subarray(0, nH * hd), x.subarray(0, nH * hd), "row at position 0");
  // row 1 moved (the kernel wrote something), by the reference's amount
  assert.ok(got[nH * hd] !== x[nH * hd]);
});

test("rope: a longer prefill (T = 300, 4 heads, hd 64) with the GPU positions buffer", async () => {
  await forDevices({}, async (ctx) => {
    const rng = new Rng(5);
    const T = 300, nH = 4, hd = 64;
    const x = rng.fillNormal(T * nH * hd);
    const positions = Uint32Array.from({ length: T }, (_, t) => 1000 + t);
    const invFreq = invFreqDefault(hd, 10_000);
    const xt = ctx.upload(x, [T, nH, hd], "f32", "x");
    await rope(ctx, xt, ctx.upload(positions, [T], "u32", "pos"), ctx.upload(invFreq, [hd / 2], "f32", "inv_freq"));
    // |x| is normal here (max ≈ 4.5): scale the absolute tolerance with it
    assertClose(await xt.read(), ropeReference(x, positions, invFreq, nH, hd), { atol: 1e-5, rtol: 0 }, "rope T=300");
  });
});

test("rope: shape errors name the tensor", async () => {
  const ctx = await gpu();
  const x = ctx.empty([2, 1, 7], "f32", "odd_x");
  await assertRejects(() => rope(ctx, x, ctx.empty([2], "u32"), ctx.empty([3], "f32")), ShapeError, [/odd_x/, /even/], "odd head dim");
  const y = ctx.empty([2, 1, 8], "f32", "y");
  await assertRejects(() => rope(ctx, y, ctx.empty([3], "u32", "posx"), ctx.empty([4], "f32")), ShapeError, [/posx/, /\[2\]/], "positions length");
  await assertRejects(() => rope(ctx, y, ctx.empty([2], "u32"), ctx.empty([8], "f32", "freqs")), ShapeError, [/freqs/, /\[4\]/], "inv_freq length");
  await assertRejects(() => rope(ctx, y, ctx.empty([2], "i32", "posi"), ctx.empty([4], "f32")), ShapeError, [/posi/, /u32/], "positions dtype");
});

test.run();
