// linear on block-quantized weights (q8_0, q4_0; src/ops/linear_q.ts, kernels/gemv_q.wgsl) against
// linearQReference (exact dequantization + f64 sums) over awkward shapes: M 1..5 and a prefill M,
// N odd, K multiples of 32 only (others refused naming the tensor), bias none/f32/f16, NaN-prefilled
// outputs, W/x/y windows above a forced binding limit, default and browser-like devices.
//
// Tolerance: the kernel dequantizes each weight exactly (q·d) before its f32 fma, so it differs from
// the f64 reference only by f32 summation order, as linear.test.ts's f16 weights: 8·eps·K/3 with
// |x| ≤ 1 and |w| ≲ 1 (weights here ~U(−1, 1), so scales ~1/127 and 1/8). A wrong nibble or
// byte order moves a term by ≥ |d·x| (≥ 1e-3 typically), far above that.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { ShapeError, UnsupportedError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { QuantDType } from "../src/gpu/tensor.js";
import { linear } from "../src/ops/linear.js";
import { launchLinearQ, linearQReference, resolveLinearQ } from "../src/ops/linear_q.js";
import { packQuantized, quantizeMatrix } from "../src/quant/formats.js";

const EPS32 = 2 ** -24;
const tolFor = (K: number) => ({ atol: (8 * EPS32 * K) / 3 + 1e-7, rtol: 2 ** -20 });
const rng = new Rng(3131);

interface Case {
  M: number;
  N: number;
  K: number;
  format: QuantDType;
  bias: "none" | "f32" | "f16";
  variant?: "gemv" | "matmul" | "auto";
}

async function check(ctx: GpuContext, c: Case, what = ""): Promise<string> {
  const { M, N, K, format } = c;
  const xh = rng.fillUniform(M * K);
  const q = quantizeMatrix(rng.fillUniform(N * K), N, K, format, "w");
  const bf = c.bias === "none" ? null : rng.fillUniform(N);
  const bBits = c.bias === "f16" && bf ? f32ArrayToF16(bf) : null;
  const bRef = bBits ? f16ArrayToF32(bBits) : bf;
  const x = ctx.upload(xh, [M, K], "f32", "x");
  const w = ctx.upload(packQuantized(q), [N, K], format, "w");
  const b = bf ? ctx.upload(bBits ?? bf, [N], c.bias as "f32" | "f16", "bias") : undefined;
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
  const variant = c.variant ?? "auto";
  const label = resolveLinearQ(M, format, variant).label;
  await linear(ctx, x, w, { bias: b, out, variant });
  assertClose(await out.read(), linearQReference(xh, q, bRef, M), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} bias=${c.bias}`);
  for (const t of [x, w, b, out]) t?.dispose();
  return label;
}

test("q8_0 and q4_0: M 1..5 and 37 × awkward N, K multiples of 32, bias none/f32/f16, both devices", async () => {
  await forDevices({}, async (ctx) => {
    const shapes: [number, number][] = [[1, 32], [3, 64], [33, 96], [65, 160], [127, 32], [5, 224]];
    let i = 0;
    for (const format of ["q8_0", "q4_0"] as const) {
      for (const M of [1, 2, 3, 5, 37]) {
        for (const [N, K] of shapes) {
          const bias = (["none", "f32", "f16"] as const)[i++ % 3]!;
          const label = await check(ctx, { M, N, K, format, bias });
          assert.ok(label.startsWith(M <= 2 ? `gemv_${format}` : `matmul_${format}`), label);
        }
      }
      // each tiling forced on the other's M
      await check(ctx, { M: 7, N: 19, K: 64, format, bias: "f16", variant: "gemv" });
      await check(ctx, { M: 1, N: 19, K: 64, format, bias: "none", variant: "matmul" });
    }
  });
});

test("BLOCKSUM experiment (bench A/B arm): gemv_q and matmul_q tilings, both formats, against the reference", async () => {
  await forDevices({}, async (ctx) => {
    for (const format of ["q8_0", "q4_0"] as const) {
      for (const [M, N, K] of [[1, 33, 96], [2, 65, 64], [5, 19, 224]] as const) {
        const xh = rng.fillUniform(M * K);
        const q = quantizeMatrix(rng.fillUniform(N * K), N, K, format, "w");
        const x = ctx.upload(xh, [M, K], "f32", "x");
        const w = ctx.upload(packQuantized(q), [N, K], format, "w");
        const y = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
        const desc = { ...resolveLinearQ(M, format).desc, blockSum: true };
        await launchLinearQ(ctx, desc, x, w, null, y, M, N, K);
        assertClose(await y.read(), linearQReference(xh, q, null, M), tolFor(K), `blocksum ${format} M=${M} N=${N} K=${K}`);
        for (const t of [x, w, y]) t.dispose();
      }
    }
  });
});

test("real-ish decode shape: 1×2048×2048 q4_0 and q8_0", async () => {
  const ctx = await gpu();
  for (const format of ["q4_0", "q8_0"] as const) await check(ctx, { M: 1, N: 2048, K: 2048, format, bias: "none" });
});

test("windows: W quants/scales, x and y above a forced 64 KiB binding limit; browser-like at 256 KiB", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 64 * 1024 });
  for (const format of ["q8_0", "q4_0"] as const) {
    for (const c of [
      { M: 1, N: 301, K: 1024, bias: "f16" }, // W quants 301 KiB (q8_0): several windows at unaligned rows
      { M: 3, N: 300, K: 800, bias: "f32" }, // q4_0 quants 117 KiB
      { M: 70, N: 97, K: 256, bias: "none" }, // x 70 KiB: M windows too
    ] as const) {
      const before = ctx.stats.dispatches;
      await check(ctx, { ...c, format }, "windowed ");
      assert.ok(ctx.stats.dispatches - before > 1, `${format} M=${c.M} N=${c.N} K=${c.K}: windowed`);
    }
  }
  await forDevices({ maxStorageBufferBindingSize: 256 * 1024 }, async (c2, name) => {
    if (name !== "browser-like") return;
    for (const format of ["q8_0", "q4_0"] as const) await check(c2, { M: 2, N: 333, K: 2080, format, bias: "f16" }, "browser-like windowed ");
  });
});

test("refusals: K not a multiple of 32 names the tensor; variants without a quantized kernel; whole-tensor writes", async () => {
  const ctx = await gpu();
  assert.throws(() => ctx.empty([8, 56], "q4_0", "model.layers.0.self_attn.q_proj.weight"), (e: Error) => e instanceof ShapeError && /q_proj\.weight.*\[8, 56\].*multiple of 32/.test(e.message));
  const x = ctx.upload(rng.fillUniform(32), [1, 32], "f32", "x");
  const w = ctx.upload(packQuantized(quantizeMatrix(rng.fillUniform(64), 2, 32, "q8_0")), [2, 32], "q8_0", "wq8");
  await assertRejects(() => linear(ctx, x, w, { variant: "gemv_splitk" }), UnsupportedError, [/gemv_splitk/, /q8_0/], "splitk on q8_0");
  assert.throws(() => ctx.write(w, new Uint8Array(10)), (e: Error) => e instanceof ShapeError && /wq8.*whole/.test(e.message));
  await assertRejects(() => w.readF32(), UnsupportedError, [/wq8/, /bytes/], "readF32 of q8_0");
  x.dispose();
  w.dispose();
});

test.run();
