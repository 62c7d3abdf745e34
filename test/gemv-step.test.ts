// gemv_step (fused decode GEMV: RMSNorm prologue, 1–3 matrices, store/residual/swiglu epilogues,
// rows from the step state / host / last row only): against gemvStepReference over awkward shapes
// (odd K and N, N not a multiple of a workgroup's rows), f16, f32, q8_0 and q4_0 W (quantized:
// K a multiple of 32, the reference on the exactly dequantized W), f32/f16 norm weights,
// biases none/f32/f16/per matrix, T = 1, 2, 5 from a step buffer, both NORM paths (x̂ in
// workgroup memory and inline), W windows above a forced binding limit, on the default and the
// browser-like device; then against the unfused composition of the existing ops; then refusals.
//
// Tolerance: test/linear.test.ts's (f32 rounding of a K-term sum in another order: atol
// 8·eps·K/3, rtol 2⁻²⁰), doubled with the norm prologue (|x̂| ≤ √3·|g| for x, g ~ U(−1, 1), and
// x̂ rounded to f32), and for swiglu scaled by 1 + 2·max|pre-activation| (silu(g)·u propagates
// both errors). Outputs are NaN-prefilled (store/swiglu): rows past T must stay NaN.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu, quantFormats } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { ShapeError, UnsupportedError, UsageError } from "../src/errors.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { gemvStep, gemvStepReference, planGemvStep, resolveGemvStep, type GemvStepEpilogue, type GemvStepNormPath } from "../src/ops/gemv-step.js";
import { STEP_COUNT, STEP_LAST, STEP_ROWS, STEP_WORDS } from "../src/ops/step-state.js";
import { bcastXL, gemvBcastUsable, linear, toTilesLayout } from "../src/ops/linear.js";
import { rmsnorm } from "../src/ops/rmsnorm.js";
import { swiglu } from "../src/ops/swiglu.js";
import { add } from "../src/ops/elementwise.js";
import { packQuantized, quantizeMatrix, type QuantizedMatrix } from "../src/quant/formats.js";
import { toQuantTiles } from "../src/quant/tiles.js";

const EPS32 = 2 ** -24;
function tolFor(K: number, norm: boolean, scale = 1) {
  return { atol: ((8 * EPS32 * K) / 3) * (norm ? 2 : 1) * scale + 1e-7, rtol: 2 ** -20 };
}

type WD = "f32" | "f16";
type QD = "q8_0" | "q4_0";
interface Case {
  K: number;
  /** Rows of each matrix (swiglu: [I, I]). */
  Ns: number[];
  wd: WD | QD;
  epi: GemvStepEpilogue;
  norm: "none" | WD;
  /** Concatenated f32/f16 bias, or one f32 tensor per matrix with the middle one (or the last) missing. */
  bias: "none" | WD | "parts";
  /** Rows of x (the capacity). */
  cap: number;
  /** Live rows. */
  T: number;
  mode: "step" | "host";
  lastRow?: boolean;
  normPath?: GemvStepNormPath;
  rows?: number;
  /** swiglu: the one-loop design (an A/B arm). */
  joint?: boolean;
  /** q8_0/q4_0: scale once per block (forced either way when given). */
  blockSum?: boolean;
  /** W transformed into the tiles layout with this many rows per tile (toTilesLayout). */
  tiles?: number;
  /** x̂ through subgroup broadcasts, forced (true, or with 1 / 2 x vec4s per lane) or off (false). */
  xBcast?: boolean | 1 | 2;
  /** x rows per W load for T > 1 (the BLOCKED arm), forced. */
  rowBlock?: number;
}

const rng = new Rng(1616);

function stepState(T: number): Uint32Array {
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_LAST] = T + 9;
  s[STEP_ROWS] = T;
  s[STEP_COUNT] = 3;
  return s;
}

function roundTo(wd: WD, a: Float32Array): { bits: Float32Array | Uint16Array; vals: Float32Array } {
  if (wd === "f32") return { bits: a, vals: a };
  const b = f32ArrayToF16(a);
  return { bits: b, vals: f16ArrayToF32(b) };
}

/** Runs one case; returns the plan's label. */
async function check(ctx: GpuContext, c: Case, what = ""): Promise<string> {
  const { K, Ns, wd, epi, cap, T } = c;
  const Nout = epi === "swiglu" ? Ns[0]! : Ns.reduce((a, b) => a + b, 0);
  const biasLen = epi === "swiglu" ? 2 * Ns[0]! : Nout;
  const owned: Tensor[] = [];
  const up = <T extends Tensor>(t: T) => (owned.push(t), t);
  const xh = rng.fillUniform(cap * K);
  const x = up(ctx.upload(xh, [cap, K], "f32", "x"));
  const wVals: (Float32Array | QuantizedMatrix)[] = [];
  const ws: Tensor[] = Ns.map((N, i) => {
    if (wd === "q8_0" || wd === "q4_0") {
      const q = quantizeMatrix(rng.fillUniform(N * K), N, K, wd, `w${i}`);
      wVals.push(q);
      // tiles: transformed on the host, as the loader does (src/quant/tiles.ts)
      if (c.tiles) return up(ctx.uploadTiles(toQuantTiles(q, c.tiles), [N, K], wd, c.tiles, `w${i}`));
      return up(ctx.upload(packQuantized(q), [N, K], wd, `w${i}`));
    }
    const r = roundTo(wd, rng.fillUniform(N * K));
    wVals.push(r.vals);
    return up(ctx.upload(r.bits, [N, K], wd, `w${i}`));
  });
  if (c.tiles && (wd === "f32" || wd === "f16")) {
    for (let i = 0; i < ws.length; i++) {
      const t = up(await toTilesLayout(ctx, ws[i]!, c.tiles));
      ws[i]!.dispose();
      ws[i] = t;
    }
  }
  let norm: { weight: Tensor; eps: number } | null = null;
  let gVals: Float32Array | null = null;
  if (c.norm !== "none") {
    const r = roundTo(c.norm, rng.fillUniform(K));
    gVals = r.vals;
    norm = { weight: up(ctx.upload(r.bits, [K], c.norm, "g")), eps: 1e-5 };
  }
  let bias: Tensor | (Tensor | null)[] | null = null;
  let bVals: Float32Array | null = null;
  if (c.bias === "f32" || c.bias === "f16") {
    const r = roundTo(c.bias, rng.fillUniform(biasLen));
    bVals = r.vals;
    bias = up(ctx.upload(r.bits, [biasLen], c.bias, "bias"));
  } else if (c.bias === "parts") {
    const lens = epi === "swiglu" ? [Ns[0]!, Ns[0]!] : Ns;
    const missing = lens.length === 3 ? 1 : lens.length - 1;
    bVals = new Float32Array(biasLen);
    let off = 0;
    bias = lens.map((n, i) => {
      const v = i === missing ? null : rng.fillUniform(n);
      if (v) bVals!.set(v, off);
      off += n;
      return v ? up(ctx.upload(v, [n], "f32", `bias${i}`)) : null;
    });
  }
  const yRows = c.lastRow ? 1 : cap;
  const y0 = epi === "residual" ? rng.fillUniform(yRows * Nout) : new Float32Array(yRows * Nout).fill(NaN);
  const y = up(ctx.upload(y0, [yRows, Nout], "f32", "y"));
  const step = c.mode === "step" ? up(ctx.upload(stepState(T), [STEP_WORDS], "u32", "step")) : null;
  const force = { ...(c.normPath !== undefined ? { normPath: c.normPath } : {}), ...(c.rows !== undefined ? { rows: c.rows } : {}), ...(c.joint ? { swigluJoint: true } : {}), ...(c.blockSum !== undefined ? { blockSum: c.blockSum } : {}), ...(c.xBcast !== undefined ? { xBcast: c.xBcast } : {}), ...(c.rowBlock !== undefined ? { rowBlock: c.rowBlock } : {}) };
  const label = await gemvStep(ctx, { x, w: ws, y, epilogue: epi, norm, bias, step, ...(c.mode === "host" ? { rows: T } : {}), lastRow: c.lastRow ?? false, force });
  const want = gemvStepReference({ x: xh, K, w: wVals, N: Ns, epilogue: epi, norm: gVals ? { weight: gVals, eps: 1e-5 } : null, bias: bVals, y: y0, T, lastRow: c.lastRow ?? false });
  let scale = 1;
  if (epi === "swiglu") {
    const pre = gemvStepReference({ x: xh, K, w: wVals, N: Ns, epilogue: "store", norm: gVals ? { weight: gVals, eps: 1e-5 } : null, bias: bVals, y: new Float32Array(cap * biasLen), T });
    scale = 1 + 2 * pre.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  }
  if (c.tiles) assert.match(label, /gemv_step_(f16|f32|q8_0|q4_0)_tiles/, `${label}: the tiles kernel`);
  const name = `${what}${label} K=${K} N=[${Ns.join(",")}] w=${wd} norm=${c.norm} bias=${c.bias} ${c.mode} T=${T}/${cap}${c.lastRow ? " last" : ""}`;
  assertClose(await y.read(), want, tolFor(K, c.norm !== "none", scale), name);
  for (const t of owned) t.dispose();
  return label;
}

test("single matrix, host rows: awkward N and K (vec and scalar K), f32/f16 W, norm none/f32/f16, bias none/f32/f16, store and residual", async () => {
  await forDevices({}, async (ctx) => {
    const nk: [number, number][] = [
      [1, 1],
      [3, 7],
      [17, 33],
      [65, 129],
      [257, 64], // N > one workgroup's 256 rows, not a multiple
      [33, 96],
      [31, 17],
      [100, 40],
    ];
    const norms = ["none", "f32", "f16"] as const;
    const biases = ["none", "f32", "f16"] as const;
    let i = 0;
    for (const wd of ["f32", "f16"] as const) {
      for (const [N, K] of nk) {
        for (const epi of ["store", "residual"] as const) {
          await check(ctx, { K, Ns: [N], wd, epi, norm: norms[i % 3]!, bias: biases[(i >> 1) % 3]!, cap: 3, T: 1 + (i % 3), mode: "host" });
          i++;
        }
      }
    }
  });
});

test("rows from the step state: T = 1, 2, 5 of 6 rows; q/k/v concatenated (3 and 2 matrices) with norm and biases, f16 and f32", async () => {
  await forDevices({}, async (ctx) => {
    for (const T of [1, 2, 5]) {
      await check(ctx, { K: 64, Ns: [48, 16, 16], wd: "f16", epi: "store", norm: "f16", bias: "parts", cap: 6, T, mode: "step" });
      await check(ctx, { K: 40, Ns: [300, 20, 33], wd: "f32", epi: "store", norm: "f32", bias: "f32", cap: 6, T, mode: "step" });
      await check(ctx, { K: 37, Ns: [9, 270], wd: "f16", epi: "residual", norm: "none", bias: "f16", cap: 6, T, mode: "step" });
      await check(ctx, { K: 33, Ns: [5, 7, 3], wd: "f32", epi: "store", norm: "f16", bias: "none", cap: 6, T, mode: "step" });
    }
  });
});

test("swiglu epilogue (gate, up): norm f32/f16, biases, odd I and K, T from the step state", async () => {
  await forDevices({}, async (ctx) => {
    await check(ctx, { K: 64, Ns: [77, 77], wd: "f16", epi: "swiglu", norm: "f32", bias: "none", cap: 4, T: 1, mode: "step" });
    await check(ctx, { K: 48, Ns: [300, 300], wd: "f32", epi: "swiglu", norm: "f16", bias: "f32", cap: 4, T: 2, mode: "step" });
    await check(ctx, { K: 35, Ns: [33, 33], wd: "f16", epi: "swiglu", norm: "none", bias: "parts", cap: 5, T: 5, mode: "step" });
    await check(ctx, { K: 19, Ns: [9, 9], wd: "f32", epi: "swiglu", norm: "f32", bias: "f16", cap: 3, T: 2, mode: "host" });
    // the one-loop design kept as a bench arm
    await check(ctx, { K: 64, Ns: [77, 77], wd: "f16", epi: "swiglu", norm: "f16", bias: "f32", cap: 4, T: 3, mode: "step", joint: true });
    await check(ctx, { K: 35, Ns: [33, 33], wd: "f32", epi: "swiglu", norm: "none", bias: "none", cap: 2, T: 1, mode: "host", joint: true, rows: 2 });
  });
});

test("last row only (lm_head path): from the step state and from host rows, with norm; y has one row", async () => {
  await forDevices({}, async (ctx) => {
    for (const T of [1, 2, 5]) await check(ctx, { K: 72, Ns: [131], wd: "f16", epi: "store", norm: "f16", bias: "none", cap: 6, T, mode: "step", lastRow: true });
    await check(ctx, { K: 21, Ns: [70], wd: "f32", epi: "store", norm: "f32", bias: "f32", cap: 4, T: 3, mode: "host", lastRow: true });
    await check(ctx, { K: 16, Ns: [12, 4, 4], wd: "f16", epi: "store", norm: "f32", bias: "none", cap: 4, T: 4, mode: "step", lastRow: true });
  });
});

test("every norm path forced (in-loop, x̂ in workgroup memory, prepass dispatch), other rows per invocation, T = 0 writes nothing", async () => {
  await forDevices({}, async (ctx) => {
    const names = { loop: /norm32i_step/, shared: /norm32s64_step/, prepass: /_prenorm\+gemv_step_f16_vec8_m3_store_step/ };
    for (const normPath of ["loop", "shared", "prepass"] as const) {
      const a = await check(ctx, { K: 64, Ns: [48, 16, 16], wd: "f16", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step", normPath });
      assert.match(a, names[normPath], `label ${a} names the norm path ${normPath}`);
      await check(ctx, { K: 27, Ns: [40, 40], wd: "f32", epi: "swiglu", norm: "f16", bias: "none", cap: 3, T: 3, mode: "host", normPath });
      await check(ctx, { K: 72, Ns: [100], wd: "f16", epi: "residual", norm: "f16", bias: "f16", cap: 2, T: 2, mode: "step", normPath, rows: 2 });
      await check(ctx, { K: 21, Ns: [33], wd: "f32", epi: "store", norm: "f32", bias: "none", cap: 5, T: 4, mode: "step", lastRow: true, normPath });
      await check(ctx, { K: 40, Ns: [20, 7], wd: "f16", epi: "store", norm: "f16", bias: "parts", cap: 5, T: 5, mode: "host", normPath });
    }
    await check(ctx, { K: 24, Ns: [10], wd: "f32", epi: "store", norm: "f32", bias: "none", cap: 2, T: 0, mode: "step" });
    await check(ctx, { K: 24, Ns: [10], wd: "f32", epi: "store", norm: "none", bias: "none", cap: 2, T: 0, mode: "host", lastRow: true });
  });
});

test("W windows above a forced 64 KiB binding limit (single matrix, f32 and f16, K even and odd, lastRow with norm)", async () => {
  const limit = 64 * 1024;
  await forDevices({ maxStorageBufferBindingSize: limit }, async (ctx) => {
    let windows = 0;
    const cases: Case[] = [
      { K: 255, Ns: [300], wd: "f32", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step" }, // 64-row windows
      { K: 255, Ns: [600], wd: "f16", epi: "residual", norm: "none", bias: "f16", cap: 2, T: 2, mode: "host" }, // 128-row windows
      { K: 1000, Ns: [300], wd: "f16", epi: "store", norm: "f16", bias: "none", cap: 4, T: 3, mode: "step", lastRow: true },
    ];
    for (const c of cases) {
      await check(ctx, c, `limit ${limit}: `);
      const x = ctx.empty([1, c.K], "f32", "x");
      const w = ctx.empty([c.Ns[0]!, c.K], c.wd, "w");
      const y = ctx.empty([1, c.Ns[0]!], "f32", "y");
      const plan = await planGemvStep(ctx, { x, w, y });
      windows += plan.dispatches;
      assert.ok(plan.dispatches > 1, `W [${c.Ns[0]}, ${c.K}] ${c.wd} is split (${plan.dispatches} dispatches)`);
      plan.dispose();
      for (const t of [x, w, y]) t.dispose();
    }
    assert.ok(windows >= 9);
  });
});

test("tiles layout (W transformed at load): single matrix with awkward N and K (K % 8 ≠ 0, K % 4 ≠ 0), qkv with biases, swiglu, lastRow, every norm path, T = 8 and 64 rows per tile", async () => {
  await forDevices({}, async (ctx) => {
    for (const tiles of [8, 64]) {
      await check(ctx, { K: 1, Ns: [1], wd: "f32", epi: "store", norm: "none", bias: "none", cap: 2, T: 1, mode: "host", tiles });
      await check(ctx, { K: 37, Ns: [131], wd: "f16", epi: "residual", norm: "f16", bias: "f32", cap: 3, T: 2, mode: "host", tiles });
      await check(ctx, { K: 36, Ns: [65], wd: "f16", epi: "store", norm: "f32", bias: "f16", cap: 2, T: 2, mode: "step", tiles });
      await check(ctx, { K: 33, Ns: [70], wd: "f32", epi: "store", norm: "f16", bias: "none", cap: 2, T: 1, mode: "step", tiles });
      await check(ctx, { K: 64, Ns: [48, 9, 16], wd: "f16", epi: "store", norm: "f16", bias: "parts", cap: 4, T: 3, mode: "step", tiles });
      await check(ctx, { K: 40, Ns: [33, 33], wd: "f32", epi: "swiglu", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step", tiles });
      await check(ctx, { K: 72, Ns: [200], wd: "f16", epi: "store", norm: "f16", bias: "none", cap: 5, T: 4, mode: "step", lastRow: true, tiles });
    }
    for (const normPath of ["loop", "shared", "prepass"] as const) {
      await check(ctx, { K: 44, Ns: [30, 10, 10], wd: "f16", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step", normPath, tiles: 8 });
      await check(ctx, { K: 27, Ns: [19, 19], wd: "f32", epi: "swiglu", norm: "f16", bias: "none", cap: 2, T: 2, mode: "host", normPath, tiles: 8 });
    }
    await check(ctx, { K: 35, Ns: [21, 21], wd: "f16", epi: "swiglu", norm: "none", bias: "none", cap: 2, T: 1, mode: "host", joint: true, rows: 3, tiles: 8 });
    await check(ctx, { K: 24, Ns: [10], wd: "f32", epi: "store", norm: "f32", bias: "none", cap: 2, T: 0, mode: "step", tiles: 8 });
  });
});

test("tiles layout: windows of whole tiles above a forced 64 KiB binding limit; mixing layouts and a forced wg are refused", async () => {
  const limit = 64 * 1024;
  await forDevices({ maxStorageBufferBindingSize: limit }, async (ctx) => {
    const cases: Case[] = [
      { K: 255, Ns: [300], wd: "f32", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step", tiles: 8 },
      { K: 1000, Ns: [300], wd: "f16", epi: "residual", norm: "f16", bias: "f16", cap: 2, T: 2, mode: "step", lastRow: false, tiles: 8 },
    ];
    for (const c of cases) {
      await check(ctx, c, `limit ${limit}: `);
      const x = ctx.empty([1, c.K], "f32", "x");
      const w0 = ctx.empty([c.Ns[0]!, c.K], c.wd as WD, "w");
      const w = await toTilesLayout(ctx, w0, 8);
      const y = ctx.empty([1, c.Ns[0]!], "f32", "y");
      const plan = await planGemvStep(ctx, { x, w, y });
      assert.ok(plan.dispatches > 1, `W [${c.Ns[0]}, ${c.K}] ${c.wd} in tiles is split (${plan.dispatches} dispatches)`);
      plan.dispose();
      const y3 = ctx.empty([1, 2 * c.Ns[0]!], "f32", "y3");
      await assertRejects(() => planGemvStep(ctx, { x, w: [w, w0], y: y3 }), UnsupportedError, [/w\[1\]/, /row-major/, /tiles of 8/, /one layout/], "mixed layouts");
      await assertRejects(() => planGemvStep(ctx, { x, w, y, force: { wg: 64 } }), UnsupportedError, [/tiles of 8/, /wg 64/], "forced wg");
      for (const t of [x, w0, w, y, y3]) t.dispose();
    }
  });
});

test("q8_0 / q4_0 W: the decode step's modes (qkv norm, o residual, gate/up swiglu norm, down residual, lm_head last row), N odd, T = 1, 2, 5 from the step state, biases", async () => {
  await forDevices({}, async (ctx) => {
    for (const wd of quantFormats("q4_0")) {
      for (const T of [1, 2, 5]) {
        const label = await check(ctx, { K: 96, Ns: [33, 11, 11], wd, epi: "store", norm: "f16", bias: "parts", cap: 6, T, mode: "step" });
        assert.match(label, new RegExp(`gemv_step_${wd}_vec4_m3_store`), label);
        await check(ctx, { K: 64, Ns: [300, 20, 7], wd, epi: "store", norm: "f32", bias: "f32", cap: 6, T, mode: "step" });
        await check(ctx, { K: 160, Ns: [65], wd, epi: "residual", norm: "none", bias: T === 2 ? "f16" : "none", cap: 6, T, mode: "step" });
        await check(ctx, { K: 32, Ns: [77, 77], wd, epi: "swiglu", norm: T === 5 ? "f32" : "f16", bias: T === 1 ? "parts" : "none", cap: 6, T, mode: "step" });
        await check(ctx, { K: 224, Ns: [33], wd, epi: "residual", norm: "none", bias: "f32", cap: 6, T, mode: "step" });
        await check(ctx, { K: 96, Ns: [131], wd, epi: "store", norm: "f16", bias: "none", cap: 6, T, mode: "step", lastRow: true });
      }
      // two matrices (k|v-like), host rows, other rows per invocation
      await check(ctx, { K: 64, Ns: [9, 257], wd, epi: "residual", norm: "none", bias: "f16", cap: 3, T: 3, mode: "host", rows: 3 });
      await check(ctx, { K: 32, Ns: [1], wd, epi: "store", norm: "f32", bias: "none", cap: 2, T: 1, mode: "host" });
    }
  });
});

test("q8_0 / q4_0 W: every norm path forced (loop, shared, prepass) on qkv, swiglu and lm_head; T = 0 writes nothing", async () => {
  await forDevices({}, async (ctx) => {
    for (const wd of quantFormats("q8_0")) {
      for (const normPath of ["loop", "shared", "prepass"] as const) {
        await check(ctx, { K: 96, Ns: [48, 16, 17], wd, epi: "store", norm: "f32", bias: "f32", cap: 5, T: 2, mode: "step", normPath });
        await check(ctx, { K: 64, Ns: [41, 41], wd, epi: "swiglu", norm: "f16", bias: "parts", cap: 5, T: 5, mode: "step", normPath });
        await check(ctx, { K: 128, Ns: [99], wd, epi: "store", norm: "f16", bias: "none", cap: 5, T: 3, mode: "step", lastRow: true, normPath });
      }
      await check(ctx, { K: 32, Ns: [10], wd, epi: "store", norm: "f32", bias: "none", cap: 2, T: 0, mode: "step" });
      // each block's sum scaled once (BLOCKSUM) and per weight chunk, both forced
      for (const blockSum of [true, false]) {
        const a = await check(ctx, { K: 96, Ns: [33, 11, 11], wd, epi: "store", norm: "f16", bias: "parts", cap: 5, T: 2, mode: "step", blockSum });
        assert.is(a.includes("_bs_"), blockSum, a);
        await check(ctx, { K: 64, Ns: [41, 41], wd, epi: "swiglu", norm: "f32", bias: "none", cap: 5, T: 5, mode: "step", blockSum, normPath: "prepass" });
        await check(ctx, { K: 160, Ns: [65], wd, epi: "residual", norm: "none", bias: "f32", cap: 3, T: 3, mode: "step", blockSum, rows: 3 });
        await check(ctx, { K: 96, Ns: [131], wd, epi: "store", norm: "f16", bias: "none", cap: 4, T: 4, mode: "step", lastRow: true, blockSum, normPath: "shared" });
      }
    }
  });
});

test("q8_0 / q4_0 W windows above a forced 64 KiB binding limit (quants and scales windows, bias windows, lastRow with norm)", async () => {
  const limit = 64 * 1024;
  await forDevices({ maxStorageBufferBindingSize: limit }, async (ctx) => {
    const cases: Case[] = [
      { K: 96, Ns: [1001], wd: "q8_0", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step" }, // 96 KiB of quants
      { K: 256, Ns: [601], wd: "q4_0", epi: "residual", norm: "none", bias: "f16", cap: 2, T: 2, mode: "host" }, // 75 KiB
      { K: 512, Ns: [263], wd: "q8_0", epi: "store", norm: "f16", bias: "none", cap: 4, T: 3, mode: "step", lastRow: true },
    ];
    for (const c of cases) {
      await check(ctx, c, `limit ${limit}: `);
      const x = ctx.empty([1, c.K], "f32", "x");
      const w = ctx.empty([c.Ns[0]!, c.K], c.wd, "w");
      const y = ctx.empty([1, c.Ns[0]!], "f32", "y");
      const plan = await planGemvStep(ctx, { x, w, y });
      assert.ok(plan.dispatches > 1, `W [${c.Ns[0]}, ${c.K}] ${c.wd} is split (${plan.dispatches} dispatches)`);
      plan.dispose();
      for (const t of [x, w, y]) t.dispose();
    }
  });
});

test("q8_0 / q4_0 W in the tiles layout: the decode step's modes, awkward N (odd, not a multiple of T) and K (32·odd, nb not a multiple of 8), every norm path, T = 8 and 64 rows per tile", async () => {
  await forDevices({}, async (ctx) => {
    for (const wd of quantFormats("q4_0")) {
      for (const tiles of [8, 64]) {
        {
          const T = tiles === 8 ? 3 : 1;
          const label = await check(ctx, { K: 96, Ns: [33, 11, 11], wd, epi: "store", norm: "f16", bias: "parts", cap: 4, T, mode: "step", tiles });
          assert.match(label, new RegExp(`gemv_step_${wd}_tiles_vec4_m3_store`), label);
          await check(ctx, { K: 576, Ns: [77], wd, epi: "residual", norm: "none", bias: "f32", cap: 4, T, mode: "step", tiles }); // nb = 18
          await check(ctx, { K: 32, Ns: [45, 45], wd, epi: "swiglu", norm: "f32", bias: T === 1 ? "parts" : "none", cap: 4, T, mode: "step", tiles });
          await check(ctx, { K: 288, Ns: [131], wd, epi: "store", norm: "f16", bias: "none", cap: 4, T, mode: "step", lastRow: true, tiles }); // nb = 9
        }
      }
      await check(ctx, { K: 256, Ns: [1], wd, epi: "store", norm: "none", bias: "none", cap: 2, T: 2, mode: "host", tiles: 8 });
      await check(ctx, { K: 64, Ns: [9, 257], wd, epi: "residual", norm: "none", bias: "f16", cap: 3, T: 3, mode: "host", rows: 3, tiles: 8 });
      for (const normPath of ["shared", "prepass"] as const) { // "loop" is the resolver's pick above
        await check(ctx, { K: 160, Ns: [48, 16, 17], wd, epi: "store", norm: "f32", bias: "f32", cap: 5, T: 2, mode: "step", normPath, tiles: 8 });
        await check(ctx, { K: 64, Ns: [41, 41], wd, epi: "swiglu", norm: "f16", bias: "parts", cap: 5, T: 5, mode: "step", normPath, tiles: 8 });
        await check(ctx, { K: 544, Ns: [99], wd, epi: "store", norm: "f16", bias: "none", cap: 5, T: 3, mode: "step", lastRow: true, normPath, tiles: 8 });
      }
      await check(ctx, { K: 32, Ns: [10], wd, epi: "store", norm: "f32", bias: "none", cap: 2, T: 0, mode: "step", tiles: 8 });
    }
  });
});

test("x̂ broadcast through the subgroup (xBcast) on tiles of 8: f16, f32, q8_0, q4_0; qkv with norm (f16/f32 g), residual, swiglu, lm_head last row, prepass norm, T from the step state, 1 and 2 x vec4s per lane; refusals", async () => {
  await forDevices({}, async (ctx, dev) => {
    if (!gemvBcastUsable(ctx)) {
      // a device without (≥ 4-lane) subgroups: forcing it is refused, naming the rule
      await assertRejects(() => resolveGemvStep(ctx, { K: 64, wDtype: "f16", mats: 1, epilogue: "store", norm: null, fromStep: true, lastRow: false, tilesT: 8 }, { xBcast: true }), UnsupportedError, [/x broadcast/, /subgroups/], `${dev}: no subgroups`);
      return;
    }
    const xls: (1 | 2)[] = bcastXL(ctx) === 1 ? [1, 2] : [2];
    let i = 0;
    for (const wd of ["f16", "f32", ...quantFormats("q4_0")] as const) {
      for (const xBcast of xls) {
        const T = 1 + (i % 3);
        const a = await check(ctx, { K: 96, Ns: [33, 11, 11], wd, epi: "store", norm: i % 2 ? "f32" : "f16", bias: "parts", cap: 4, T, mode: "step", tiles: 8, xBcast });
        assert.match(a, new RegExp(`_xb${xBcast}_`), `${a}: the broadcast kernel`);
        await check(ctx, { K: 576, Ns: [77], wd, epi: "residual", norm: "none", bias: "f32", cap: 4, T, mode: "step", tiles: 8, xBcast }); // nb = 18
        await check(ctx, { K: 32, Ns: [45, 45], wd, epi: "swiglu", norm: "f32", bias: "none", cap: 4, T, mode: "step", tiles: 8, xBcast });
        await check(ctx, { K: 288, Ns: [131], wd, epi: "store", norm: "f16", bias: "none", cap: 4, T, mode: "step", lastRow: true, tiles: 8, xBcast }); // nb = 9
        await check(ctx, { K: 64, Ns: [41, 41], wd, epi: "swiglu", norm: "f16", bias: "parts", cap: 5, T: 5, mode: "step", normPath: "prepass", tiles: 8, xBcast });
        await check(ctx, { K: 256, Ns: [1], wd, epi: "store", norm: "none", bias: "none", cap: 2, T: 2, mode: "host", tiles: 8, xBcast, rows: 3 });
        i++;
      }
    }
    const shape = { mats: 1 as const, epilogue: "store" as const, norm: null, fromStep: true, lastRow: false };
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, K: 48, wDtype: "f16", tilesT: 8 }, { xBcast: true }), UnsupportedError, [/x broadcast/, /multiple of 32/, /48/], "K = 48");
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, K: 64, wDtype: "f16", tilesT: 64 }, { xBcast: true }), UnsupportedError, [/x broadcast/, /tiles of 8/], "tiles of 64");
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, K: 64, wDtype: "f16" }, { xBcast: true }), UnsupportedError, [/x broadcast/, /tiles/], "row-major W");
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, norm: "f32", K: 64, wDtype: "f16", tilesT: 8 }, { xBcast: true, normPath: "shared" }), UnsupportedError, [/x broadcast/, /shared norm/], "shared norm");
  });
});

test("rows in blocks per W load (the forced rowBlock arm): rows and tiles layouts, f32/f16, in-loop norm, qkv, residual, swiglu with the x̂ broadcast, T = 1, 2, 5, 9 (blocks plus a last row); refusals", async () => {
  await forDevices({}, async (ctx) => {
    for (const T of [1, 2, 5, 9]) {
      const a = await check(ctx, { K: 40, Ns: [30, 9, 9], wd: "f32", epi: "store", norm: "f16", bias: "parts", cap: 10, T, mode: "step", rowBlock: 3, rows: 1 });
      assert.match(a, /_mb3_/, `${a}: the blocked kernel`);
      await check(ctx, { K: 37, Ns: [21], wd: "f16", epi: "residual", norm: "none", bias: "f16", cap: 10, T, mode: "host", rowBlock: 2, rows: 1 }); // vec 1
      await check(ctx, { K: 36, Ns: [19], wd: "f32", epi: "store", norm: "f32", bias: "none", cap: 10, T, mode: "step", tiles: 8, rowBlock: 2, rows: 1 }); // K % 8 ≠ 0 (kTail)
    }
    if (gemvBcastUsable(ctx)) {
      for (const T of [3, 7]) await check(ctx, { K: 64, Ns: [45, 45], wd: "f16", epi: "swiglu", norm: "f16", bias: "none", cap: 8, T, mode: "step", tiles: 8, xBcast: true, rowBlock: 2, rows: 1 });
    }
    const shape = { K: 64, wDtype: "f16" as const, mats: 1 as const, epilogue: "store" as const, norm: null, fromStep: true, lastRow: false };
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, wDtype: "q8_0" }, { rowBlock: 4 }), UnsupportedError, [/rowBlock/, /f32\/f16/], "q8_0");
    await assertRejects(() => resolveGemvStep(ctx, { ...shape, lastRow: true }, { rowBlock: 4 }), UnsupportedError, [/rowBlock/, /lastRow/], "last row");
    await assertRejects(() => resolveGemvStep(ctx, shape, { rowBlock: 9 }), UnsupportedError, [/rowBlock 9/, /2\.\.8/], "9 rows");
  });
});

test("q8_0 / q4_0 W in the tiles layout: windows of whole tiles above a forced 64 KiB binding limit; blockSum false is refused", async () => {
  const limit = 64 * 1024;
  await forDevices({ maxStorageBufferBindingSize: limit }, async (ctx) => {
    const cases: Case[] = [
      { K: 96, Ns: [1001], wd: "q8_0", epi: "store", norm: "f32", bias: "f32", cap: 3, T: 2, mode: "step", tiles: 8 },
      { K: 256, Ns: [601], wd: "q4_0", epi: "residual", norm: "none", bias: "f16", cap: 2, T: 2, mode: "host", tiles: 8 },
      { K: 512, Ns: [263], wd: "q8_0", epi: "store", norm: "f16", bias: "none", cap: 4, T: 3, mode: "step", lastRow: true, tiles: 64 },
    ];
    for (const c of cases) {
      await check(ctx, c, `limit ${limit}: `);
      const x = ctx.empty([1, c.K], "f32", "x");
      const w = ctx.emptyTiles([c.Ns[0]!, c.K], c.wd as QD, c.tiles!, "w");
      const y = ctx.empty([1, c.Ns[0]!], "f32", "y");
      const plan = await planGemvStep(ctx, { x, w, y });
      assert.ok(plan.dispatches > 1, `W [${c.Ns[0]}, ${c.K}] ${c.wd} in tiles is split (${plan.dispatches} dispatches)`);
      plan.dispose();
      await assertRejects(() => planGemvStep(ctx, { x, w, y, force: { blockSum: false } }), UnsupportedError, [/tiles layout/, /blockSum/], "blockSum false");
      for (const t of [x, w, y]) t.dispose();
    }
  });
});

test("q8_0 / q4_0 refusals: K not a multiple of 32 (naming the tensor), mixed quantized and float matrices, the joint swiglu arm", async () => {
  const ctx = await gpu();
  const wq = ctx.upload(packQuantized(quantizeMatrix(rng.fillUniform(16 * 64), 16, 64, "q8_0")), [16, 64], "q8_0", "wq");
  // a quantized tensor cannot hold K = 48 (checkQuantShape); the resolver refuses it on its own too
  await assertRejects(() => resolveGemvStep(ctx, { K: 48, wDtype: "q4_0", mats: 1, epilogue: "store", norm: null, fromStep: true, lastRow: false }), UnsupportedError, [/q4_0 weights need K a multiple of 32, got 48/], "K = 48");
  const x64 = ctx.empty([2, 64], "f32", "x64");
  await assertRejects(() => planGemvStep(ctx, { x: x64, w: [wq, ctx.empty([16, 64], "f16", "wf")], y: ctx.empty([2, 32], "f32", "y2") }), UnsupportedError, [/w\[1\] \('wf'\) is f16, w\[0\] is q8_0/], "mixed dtypes");
  await assertRejects(
    () => planGemvStep(ctx, { x: x64, w: [wq, wq], y: ctx.empty([2, 16], "f32", "y3"), epilogue: "swiglu", force: { swigluJoint: true } }),
    UnsupportedError,
    [/joint swiglu loop has no q8_0 form/],
    "joint arm",
  );
  for (const t of [wq, x64]) t.dispose();
});

/** Fused vs the unfused sequence of existing ops, on the same tensors. */
test("fused results equal the unfused composition: rmsnorm + 3 linears (qkv), linear + add (residual), rmsnorm + 2 linears + swiglu, rmsnorm + linear (lm_head, last row)", async () => {
  await forDevices({}, async (ctx) => {
    const T = 3;
    const D = 64;
    const I = 96;
    const eps = 1e-5;
    const mk = (shape: number[], dt: WD, label: string, lo = -1, hi = 1) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return ctx.upload(roundTo(dt, rng.fillUniform(n, lo, hi)).bits, shape, dt, label);
    };
    const x = mk([T, D], "f32", "x");
    const g = mk([D], "f16", "g", 0.5, 1.5);
    const wq = mk([D, D], "f16", "wq");
    const wk = mk([16, D], "f16", "wk");
    const wv = mk([16, D], "f16", "wv");
    const bq = mk([D], "f32", "bq");
    const bv = mk([16], "f32", "bv");
    const step = ctx.upload(stepState(T), [STEP_WORDS], "u32", "step");
    const h = await rmsnorm(ctx, x, g, eps);
    const tol = { atol: 2 * tolFor(I, true).atol, rtol: 2 ** -18 };
    // qkv
    const q = await linear(ctx, h, wq, { bias: bq });
    const k = await linear(ctx, h, wk);
    const v = await linear(ctx, h, wv, { bias: bv });
    const qkv = ctx.empty([T, D + 32], "f32", "qkv");
    await gemvStep(ctx, { x, w: [wq, wk, wv], y: qkv, norm: { weight: g, eps }, bias: [bq, null, bv], step });
    const [qh, kh, vh, fused] = await Promise.all([q.read(), k.read(), v.read(), qkv.read()]);
    const unfused = new Float32Array(T * (D + 32));
    for (let t = 0; t < T; t++) {
      unfused.set(qh.subarray(t * D, (t + 1) * D), t * (D + 32));
      unfused.set(kh.subarray(t * 16, (t + 1) * 16), t * (D + 32) + D);
      unfused.set(vh.subarray(t * 16, (t + 1) * 16), t * (D + 32) + D + 16);
    }
    assertClose(fused, unfused, tol, "qkv fused vs rmsnorm + 3 linears");
    // o projection + residual
    const att = mk([T, D], "f32", "att");
    const wo = mk([D, D], "f16", "wo");
    const resid = mk([T, D], "f32", "resid");
    const o = await linear(ctx, att, wo);
    const sum = await add(ctx, resid, o);
    await gemvStep(ctx, { x: att, w: wo, y: resid, epilogue: "residual", step });
    assertClose(await resid.read(), await sum.read(), tol, "o + residual fused vs linear + add");
    // gate/up + swiglu
    const wg = mk([I, D], "f16", "wg");
    const wu = mk([I, D], "f16", "wu");
    const gate = await linear(ctx, h, wg);
    const upv = await linear(ctx, h, wu);
    const act = await swiglu(ctx, gate, upv);
    const fusedAct = ctx.empty([T, I], "f32", "act");
    await gemvStep(ctx, { x, w: [wg, wu], y: fusedAct, epilogue: "swiglu", norm: { weight: g, eps }, step });
    assertClose(await fusedAct.read(), await act.read(), { atol: tol.atol * 10, rtol: 2 ** -16 }, "gate/up/swiglu fused vs rmsnorm + 2 linears + swiglu");
    // lm_head on the last row
    const wl = mk([200, D], "f16", "wl");
    const logitsAll = await linear(ctx, h, wl);
    const logits = ctx.empty([1, 200], "f32", "logits");
    await gemvStep(ctx, { x, w: wl, y: logits, norm: { weight: g, eps }, step, lastRow: true });
    assertClose(await logits.read(), (await logitsAll.read()).subarray((T - 1) * 200), tol, "lm_head fused (last row) vs rmsnorm + linear");
    for (const t of [x, g, wq, wk, wv, bq, bv, step, h, q, k, v, qkv, att, wo, resid, o, sum, wg, wu, gate, upv, act, fusedAct, wl, logitsAll, logits]) t.dispose();
  });
});

test("resolver: vector width from K and dtype; norm path by size on this device class, labelled; forced paths honoured", async () => {
  const ctx = await gpu();
  const shape = { K: 576, wDtype: "f16" as const, mats: 3 as const, epilogue: "store" as const, norm: "f16" as const, fromStep: true, lastRow: false };
  const small = resolveGemvStep(ctx, shape, {}, 960);
  assert.is(small.main.vec, 8);
  assert.is(resolveGemvStep(ctx, { ...shape, K: 577 }, {}, 960).main.vec, 1);
  assert.is(resolveGemvStep(ctx, { ...shape, wDtype: "f32" }, {}, 960).main.vec, 4);
  assert.is(small.normPath, "loop");
  assert.is(small.prenorm, null);
  const big = resolveGemvStep(ctx, { ...shape, mats: 1, lastRow: true }, {}, 49152);
  assert.is(big.normPath, ctx.adapter.isSoftware ? "prepass" : "loop", "lm_head-sized GEMV");
  if (big.prenorm) assert.is(big.main.norm, null, "the GEMV after a prepass has no norm");
  const shared = resolveGemvStep(ctx, shape, { normPath: "shared" }, 960);
  assert.ok(shared.main.xShared && shared.main.k === 576);
  assert.is(resolveGemvStep(ctx, shape, { normPath: "prepass" }, 960).prenorm?.norm, "f16");
  await assertRejects(() => resolveGemvStep(ctx, shape, { normPath: "bogus" as GemvStepNormPath }, 960), UsageError, [/unknown norm path 'bogus'/], "unknown path");
  await assertRejects(() => resolveGemvStep(ctx, { ...shape, norm: null }, { swigluJoint: true }, 960), UnsupportedError, [/swigluJoint/], "joint without swiglu");
});

test("a plan replays: encode() twice with a changed step state gives both results", async () => {
  const ctx = await gpu();
  const K = 40;
  const N = 50;
  const xh = rng.fillUniform(4 * K);
  const wh = rng.fillUniform(N * K);
  const x = ctx.upload(xh, [4, K], "f32", "x");
  const w = ctx.upload(wh, [N, K], "f32", "w");
  const y = ctx.upload(new Float32Array(4 * N).fill(NaN), [4, N], "f32", "y");
  const step = ctx.upload(stepState(1), [STEP_WORDS], "u32", "step");
  const plan = await planGemvStep(ctx, { x, w, y, step });
  plan.encode(ctx);
  const ref = (T: number, y0: Float32Array) => gemvStepReference({ x: xh, K, w: [wh], N: [N], epilogue: "store", y: y0, T });
  const first = ref(1, new Float32Array(4 * N).fill(NaN));
  assertClose(await y.read(), first, tolFor(K, false), "T = 1");
  ctx.write(step, stepState(4));
  plan.encode(ctx);
  assertClose(await y.read(), ref(4, first), tolFor(K, false), "T = 4 after replay");
  plan.dispose();
  for (const t of [x, w, y, step]) t.dispose();
});

test("refusals: shapes, dtypes, aliasing, swiglu arity, a multi-matrix W over the binding limit, a forced shared norm path over workgroup memory", async () => {
  const ctx = await gpu({ maxStorageBufferBindingSize: 64 * 1024 });
  const x = ctx.empty([2, 64], "f32", "x");
  const w = ctx.empty([32, 64], "f16", "w");
  const wBig = ctx.empty([1200, 64], "f16", "w-big"); // 150 KiB
  const y = ctx.empty([2, 32], "f32", "y");
  const y2 = ctx.empty([2, 1232], "f32", "y2");
  const step = ctx.empty([8], "u32", "step");
  await assertRejects(() => planGemvStep(ctx, { x, w: ctx.empty([32, 63], "f16", "w-k"), y }), ShapeError, [/w\[0\] \('w-k'\)/, /\[N ≥ 1, 64\]/], "K mismatch");
  await assertRejects(() => planGemvStep(ctx, { x, w, y: ctx.empty([2, 31], "f32", "y-n") }), ShapeError, [/y \('y-n'\)/, /\[2, 32\]/], "y shape");
  await assertRejects(() => planGemvStep(ctx, { x, w: [w, ctx.empty([32, 64], "f32", "w32")], y: ctx.empty([2, 64], "f32", "y64") }), UnsupportedError, [/share one dtype/], "mixed W dtypes");
  await assertRejects(() => planGemvStep(ctx, { x, w: [w, w, w], y: ctx.empty([2, 32], "f32", "ys"), epilogue: "swiglu" }), ShapeError, [/swiglu takes \[gate, up\]/], "swiglu arity");
  await assertRejects(() => planGemvStep(ctx, { x, w: [w, wBig], y: y2 }), UnsupportedError, [/w\[1\] \('w-big'/, /multi-matrix/], "multi-matrix over the limit");
  await assertRejects(() => planGemvStep(ctx, { x, w, y, step: ctx.empty([8], "f32", "step-f32") }), ShapeError, [/step/, /u32/], "step dtype");
  await assertRejects(() => planGemvStep(ctx, { x, w, y, step, rows: 1 }), UsageError, [/either step/], "step and rows");
  await assertRejects(() => planGemvStep(ctx, { x, w, y, rows: 3 }), UsageError, [/rows must be an integer in 0\.\.2/], "rows over capacity");
  await assertRejects(() => planGemvStep(ctx, { x, w, y, norm: { weight: ctx.empty([64], "f32", "g"), eps: NaN } }), UsageError, [/eps/], "eps");
  const wx = ctx.empty([64, 64], "f32", "wx");
  await assertRejects(() => planGemvStep(ctx, { x, w: wx, y: x }), ShapeError, [/shares its buffer/], "y aliases x");
  const xWide = ctx.empty([1, 8192], "f32", "x-wide");
  await assertRejects(
    () => planGemvStep(ctx, { x: xWide, w: ctx.empty([1, 8192], "f16", "w-wide"), y: ctx.empty([1, 1], "f32", "y1"), norm: { weight: ctx.empty([8192], "f32", "g-wide"), eps: 1e-5 }, force: { normPath: "shared" } }),
    UnsupportedError,
    [/workgroup memory/],
    "the shared norm path over the workgroup storage",
  );
  await assertRejects(() => planGemvStep(ctx, { x, w, y, force: { normPath: "loop" } }), UnsupportedError, [/norm prologue only/], "a norm path without norm");
});

test.run();
