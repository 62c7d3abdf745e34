// gemv_bcast (y = x·Wᵀ + b for a few activation rows, x broadcast through the subgroup; serve's
// batched step): the kernel against linearReference over M = 1..17 (M-blocks of 4 and 8 with a
// guarded tail block), odd N and K (K not a multiple of the 8-element step or of the W chunk),
// f32 and f16 weights, row-major and tiles layouts, bias none/f32/f16, NaN-prefilled outputs;
// windows above a forced binding limit; the resolver's picks and its refusals. Tolerance as in
// test/linear.test.ts (same arithmetic: exact widening, f32 sums in another order).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { linearInputs } from "./helpers/linear-inputs.js";
import { Rng } from "../src/util/rng.js";
import { UnsupportedError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import { BCAST_MAX_M, GEMV_MAX_M, bcastXL, gemvBcastPreferred, gemvBcastUsable, launchLinear, linear, linearLabel, linearReference, resolveLinear, toTilesLayout, type LinearVariantName } from "../src/ops/linear.js";

const EPS32 = 2 ** -24;
const tolFor = (K: number) => ({ atol: (8 * EPS32 * K) / 3 + 1e-7, rtol: 2 ** -20 });
type WD = "f32" | "f16";
type BiasKind = "none" | WD;
const rng = new Rng(1919);

/** One case through linear() (W row-major, or in tiles of `tilesT` rows) against the reference; returns the label. */
async function check(ctx: GpuContext, M: number, N: number, K: number, wd: WD, bias: BiasKind, tilesT = 0, variant: LinearVariantName | "auto" = "gemv_bcast", what = "", xl2 = false): Promise<string> {
  const { xh, w: wData, wRef, b: bData, bRef } = linearInputs(rng, M, N, K, wd, bias);
  const x = ctx.upload(xh, [M, K], "f32", "x");
  const w0 = ctx.upload(wData, [N, K], wd, "w");
  const w = tilesT ? await toTilesLayout(ctx, w0, tilesT) : w0;
  if (tilesT) w0.dispose();
  const b = bData ? ctx.upload(bData, [N], bias as WD, "bias") : undefined;
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
  const plan = resolveLinear(ctx, M, N, K, wd, variant, false, tilesT);
  // xl2: the 4-lane-subgroup path (2 x elements per lane) forced on this device, whatever its subgroups.
  const desc = xl2 ? { ...plan.desc, xl: 2 as const } : plan.desc;
  const label = xl2 ? linearLabel(desc) : plan.label;
  if (xl2) await launchLinear(ctx, desc, x, w, b ?? null, out, M, N, K);
  else await linear(ctx, x, w, { bias: b, out, variant });
  assertClose(await out.read(), linearReference(xh, wRef, bRef, M, N, K), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} w=${wd} bias=${bias} ${tilesT ? `tiles${tilesT}` : "rows"}`);
  for (const t of [x, w, b, out]) t?.dispose();
  return label;
}

test("gemv_bcast vs linearReference: M ∈ {1,2,3,4,5,7,8,9,16,17} × odd N, K (K % 8 ≠ 0, K % 4 ≠ 0, K < 8) × f32/f16 × rows/tiles × bias none/f32/f16, on both device profiles, x loaded 1 or 2 elements per lane", async () => {
  await forDevices({}, async (ctx, dev) => {
    assert.ok(gemvBcastUsable(ctx), `${dev}: gemv_bcast runs on every adapter with subgroups of ≥ 4 lanes (this one: ${ctx.adapter.subgroupMinSize ?? "unknown"}+)`);
    const xl = bcastXL(ctx) === 2 ? "_xl2" : "";
    const nk: [number, number][] = [
      [37, 45], // K odd: rows read single elements, tiles a partial last chunk
      [33, 36], // K % 8 = 4: f16 rows unaligned, f32 rows a chunk pair with a clamped second chunk
      [65, 40], // K % 8 = 0: full chunks everywhere
      [9, 5], // K < 8: one partial step
      [71, 129],
    ];
    const biases: BiasKind[] = ["none", "f32", "f16"];
    let i = 0;
    for (const M of [1, 2, 3, 4, 5, 7, 8, 9, 16, 17]) {
      for (const wd of ["f32", "f16"] as const) {
        for (const tilesT of [0, 8]) {
          const [N, K] = nk[i % nk.length]!;
          const label = await check(ctx, M, N, K, wd, biases[i % 3]!, tilesT, "gemv_bcast", `${dev} `);
          const vec = tilesT || K % (wd === "f16" ? 8 : 4) === 0 ? (wd === "f16" ? 8 : 4) : 1;
          assert.match(label, new RegExp(`^gemv_bcast_${wd}_${tilesT ? "tiles8_" : ""}vec${vec}${xl}_r\\d+_mb${M <= 2 ? M : M <= 4 ? 4 : 8}_wg8$`), label);
          // The other x path on the same case (2 per lane where this device loads 1; on 4-lane subgroups both are xl 2).
          if (!xl && (M <= 4 || M === 9 || M === 17)) await check(ctx, M, N, K, wd, biases[(i + 1) % 3]!, tilesT, "gemv_bcast", `${dev} xl2 `, true);
          i++;
        }
      }
    }
  });
});

test("gemv_bcast on the 134M shape's projections: 8×2048×768 and 16×768×2048 f16, tiles and rows, with bias; prefill-sized M (67 and 131 rows: 9 and 17 M-blocks, the last partial)", async () => {
  const ctx = await gpu();
  await check(ctx, 8, 2048, 768, "f16", "f16", 8);
  await check(ctx, 16, 768, 2048, "f16", "f32", 0);
  await check(ctx, 67, 200, 576, "f16", "none", 8);
  await check(ctx, 131, 96, 72, "f16", "f16", 0);
});

test("gemv_bcast windows: W, x, y and bias above a forced 64 KiB binding limit (rows and tiles, f16 and f32)", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 64 * 1024 });
  for (const [M, N, K, wd, tilesT] of [
    [5, 300, 99, "f32", 0],
    [9, 700, 64, "f16", 8],
    [3, 90, 600, "f32", 8],
  ] as const) {
    const before = ctx.stats.dispatches;
    await check(ctx, M, N, K, wd, "f16", tilesT, "gemv_bcast", "windowed ");
    assert.ok(ctx.stats.dispatches - before > 1, `M=${M} N=${N} K=${K}: windowed`);
  }
});

test("resolver: auto picks gemv_bcast for GEMV_MAX_M < M (f32 W: M ≤ BCAST_MAX_M) where usable and measured faster; matmul above; refusals", async () => {
  const ctx = await gpu();
  const preferred = gemvBcastUsable(ctx) && gemvBcastPreferred(ctx);
  if (preferred) {
    assert.is(resolveLinear(ctx, GEMV_MAX_M + 1, 768, 768, "f16").label, "gemv_bcast_f16_vec8_r4_mb4_wg8");
    assert.is(resolveLinear(ctx, 8, 2048, 768, "f16", "auto", false, 8).label, "gemv_bcast_f16_tiles8_vec8_r4_mb8_wg8");
    assert.is(resolveLinear(ctx, BCAST_MAX_M, 768, 2049, "f32").label, "gemv_bcast_f32_vec1_r4_mb8_wg8");
    assert.is(resolveLinear(ctx, 512, 768, 768, "f16", "auto", false, 8).label, "gemv_bcast_f16_tiles8_vec8_r4_mb8_wg8", "prefill-sized M, f16 W");
  }
  assert.match(resolveLinear(ctx, BCAST_MAX_M + 1, 768, 768, "f32").label, /^matmul_/);
  if (!preferred) assert.match(resolveLinear(ctx, BCAST_MAX_M + 1, 768, 768, "f16").label, /^matmul_/);
  assert.match(resolveLinear(ctx, 8, 768, 768, "f16", "auto", false, 64).label, /^matmul_f16_tiles64/, "tiles of 64 rows: not gemv_bcast's layout");
  const noSub = await gpu({ disableFeatures: ["subgroups"] });
  assert.not.ok(gemvBcastUsable(noSub));
  assert.match(resolveLinear(noSub, 8, 768, 768, "f16").label, /^matmul_/, "no subgroups: matmul");
  const x = noSub.upload(rng.fillUniform(32), [2, 16], "f32", "x");
  const w = noSub.upload(rng.fillUniform(32), [2, 16], "f32", "w");
  await assertRejects(() => linear(noSub, x, w, { variant: "gemv_bcast" }), UnsupportedError, [/gemv_bcast/, /subgroups/], "gemv_bcast without subgroups");
  const y = ctx.empty([2, 2], "f32", "y");
  const x2 = ctx.upload(rng.fillUniform(32), [2, 16], "f32", "x");
  const w2 = ctx.upload(rng.fillUniform(32), [2, 16], "f32", "w");
  await assertRejects(() => launchLinear(ctx, { algo: "gemv_bcast", wDtype: "f32", vec: 8, rows: 4, mb: 4, wg: [8, 1] }, x2, w2, null, y, 2, 2, 16), UnsupportedError, [/gemv_bcast/, /chunks of 4/], "f32 in 8-element chunks");
  await assertRejects(() => launchLinear(ctx, { algo: "gemv_bcast", wDtype: "f32", vec: 4, rows: 4, mb: 4, wg: [64, 1] }, x2, w2, null, y, 2, 2, 16), UnsupportedError, [/workgroups of 8/], "another workgroup size");
  for (const t of [x, w, y, x2, w2]) t.dispose();
});

test.run();
