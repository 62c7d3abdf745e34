// gemv_tiled (y = x·Wᵀ + b on a lane-interleaved tiled copy of W): the repack against its CPU
// reference (bit-exact), the kernel against linearReference over awkward shapes (N, K odd and not
// multiples of the tile or chunk; f32 and f16 weights; bias none/f32/f16; M 1..4), windows above a
// forced binding limit, the browser-like device (no shader-f16, 256-byte alignment), the
// resolver's labels and its refusals. Tolerance as in test/linear.test.ts (same arithmetic).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { browserLike, forDevices, gpu } from "./helpers/gpu.js";
import { assertClose, assertRejects } from "./helpers/check.js";
import { linearInputs } from "./helpers/linear-inputs.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import { ShapeError, UnsupportedError, UsageError } from "../src/errors.js";
import { modelFingerprint } from "../src/onegen/fingerprint.js";
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { TrainModel } from "../src/train/model.js";
import { modelFixture } from "./helpers/fixtures.js";
import { tiledCopyReference } from "../src/ops/tiled-copy.js";
import {
  bcastMaxM,
  BCAST_T,
  gemvBcastPreferred,
  gemvBcastUsable,
  gemvPackBytes,
  gemvPackOf,
  gemvTiledPreferred,
  gemvTiledShape,
  launchLinear,
  linear,
  linearReference,
  packGemvWeight,
  releaseGemvPack,
  resolveLinear,
  toTilesLayout,
  type LinearVariantName,
} from "../src/ops/linear.js";
import { embedding } from "../src/ops/embedding.js";

const EPS32 = 2 ** -24;
const tolFor = (K: number) => ({ atol: (8 * EPS32 * K) / 3 + 1e-7, rtol: 2 ** -20 });
type WD = "f32" | "f16";
type BiasKind = "none" | WD;
const rng = new Rng(1616);

/** One case through linear() with `variant` (default gemv_tiled) against the reference; returns the label. */
async function check(ctx: GpuContext, M: number, N: number, K: number, wd: WD, bias: BiasKind, variant: LinearVariantName | "auto" = "gemv_tiled", what = ""): Promise<string> {
  const { xh, w: wData, wRef, b: bData, bRef } = linearInputs(rng, M, N, K, wd, bias);
  const x = ctx.upload(xh, [M, K], "f32", "x");
  const w = ctx.upload(wData, [N, K], wd, "w");
  const b = bData ? ctx.upload(bData, [N], bias as WD, "bias") : undefined;
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
  if (variant === "auto") await packGemvWeight(ctx, w);
  const label = resolveLinear(ctx, M, N, K, wd, variant, true).label;
  await linear(ctx, x, w, { bias: b, out, variant });
  assertClose(await out.read(), linearReference(xh, wRef, bRef, M, N, K), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} w=${wd} bias=${bias}`);
  releaseGemvPack(w);
  for (const t of [x, w, b, out]) t?.dispose();
  return label;
}

test("repack: the tiled copy equals tiledCopyReference bit for bit (f32, f16; N, K ragged)", async () => {
  await forDevices({}, async (ctx, dev) => {
    for (const wd of ["f32", "f16"] as const) {
      for (const [N, K] of [[1, 1], [3, 7], [65, 13], [130, 17], [64, 16], [200, 9]] as const) {
        const wf = rng.fillUniform(N * K);
        const bits = wd === "f16" ? f32ArrayToF16(wf) : null;
        const w = ctx.upload(bits ?? wf, [N, K], wd, "w-repack");
        const pack = await packGemvWeight(ctx, w);
        assert.is(pack.tensor.byteLength, gemvPackBytes(N, K, wd, pack.T), `${dev} ${wd} ${N}x${K}: packed bytes`);
        const got = (await pack.tensor.read()) as Uint32Array;
        const ce = wd === "f16" ? 8 : 4;
        const raw = bits ? Array.from(bits) : Array.from(new Uint32Array(wf.buffer, wf.byteOffset, wf.length));
        const ref = tiledCopyReference(raw, N, K, ce, pack.T);
        const want = new Uint32Array(got.length);
        for (let i = 0; i < want.length; i++) want[i] = wd === "f16" ? (ref[2 * i]! | (ref[2 * i + 1]! << 16)) >>> 0 : ref[i]!;
        for (let i = 0; i < want.length; i++) {
          if (got[i] !== want[i]) assert.unreachable(`${dev} ${wd} ${N}x${K}: word ${i} got ${got[i]} want ${want[i]}`);
        }
        assert.ok(gemvPackOf(w) === pack && (await packGemvWeight(ctx, w)) === pack, "cached: made once");
        // another tile height replaces the copy (T = 64, the hardware GPUs' tile, checked here too)
        const p64 = await packGemvWeight(ctx, w, 64);
        const ref64 = tiledCopyReference(raw, N, K, ce, 64);
        const got64 = (await p64.tensor.read()) as Uint32Array;
        for (let i = 0; i < got64.length; i++) {
          const want64 = wd === "f16" ? (ref64[2 * i]! | (ref64[2 * i + 1]! << 16)) >>> 0 : ref64[i]!;
          if (got64[i] !== want64) assert.unreachable(`${dev} ${wd} ${N}x${K} T=64: word ${i} got ${got64[i]} want ${want64}`);
        }
        assert.ok(gemvPackOf(w) === p64 && pack.tensor.isDisposed, "the T=8 copy was released");
        releaseGemvPack(w);
        assert.is(gemvPackOf(w), undefined, "released");
        w.dispose();
      }
    }
  });
});

test("gemv_tiled vs linearReference: M 1..4 × awkward N, K × f32/f16 × bias none/f32/f16, on both device profiles", async () => {
  const nk: [number, number][] = [
    [1, 1],
    [3, 7],
    [17, 33],
    [63, 64],
    [65, 129],
    [127, 16],
    [129, 255],
    [33, 96],
    [5, 8],
    [31, 17],
    [64, 12],
    [257, 44],
  ];
  const biases: BiasKind[] = ["none", "f32", "f16"];
  await forDevices({}, async (ctx) => {
    let i = 0;
    for (const wd of ["f32", "f16"] as const) {
      for (const M of [1, 2, 3, 4]) {
        for (let j = 0; j < 3; j++, i++) {
          const [N, K] = nk[i % nk.length]!;
          const label = await check(ctx, M, N, K, wd, biases[i % 3]!);
          assert.ok(label.startsWith(`gemv_tiled_${wd}_`), label);
        }
      }
    }
  });
});

test("gemv_tiled on a real shape: 1×2048×2048 f16 and 2×5632×2048 f16 with bias", async () => {
  const ctx = await gpu();
  await check(ctx, 1, 2048, 2048, "f16", "none");
  await check(ctx, 2, 5632, 2048, "f16", "f16");
});

test("windows: the tiled copy above a forced 64 KiB binding limit, and the browser-like device under 256 KiB", async () => {
  const small = await gpu({ maxStorageBufferBindingSize: 64 * 1024 });
  for (const [M, N, K, wd, bias] of [
    [1, 400, 100, "f16", "f32"],
    [3, 701, 37, "f32", "f16"], // K odd, f32: x read as scalars
    [2, 1000, 120, "f16", "f16"],
  ] as const) {
    const before = small.stats.dispatches;
    await check(small, M, N, K, wd, bias, "gemv_tiled", "windowed ");
    const tileBytes = Math.ceil(K / (wd === "f16" ? 8 : 4)) * 16 * gemvTiledShape(small).T;
    assert.ok(Math.ceil(N / gemvTiledShape(small).T) * tileBytes > 64 * 1024, `M=${M} N=${N} K=${K}: the copy is larger than a binding`);
    assert.ok(small.stats.dispatches - before > 2, `M=${M} N=${N} K=${K}: windowed repack and GEMV`);
  }
  // a tile wider than one binding cannot be windowed: refused, naming the tensor
  const wideK = Math.ceil((64 * 1024) / (gemvTiledShape(small).T * 2)) + 8;
  const x = small.upload(rng.fillUniform(wideK), [1, wideK], "f32", "x");
  const w = small.empty([70, wideK], "f16", "w-wide-tile");
  await assertRejects(() => linear(small, x, w, { variant: "gemv_tiled" }), UnsupportedError, [/w-wide-tile/, /binding limit/], "tile over the limit");
  const web = await browserLike({ maxStorageBufferBindingSize: 256 * 1024 });
  for (const [M, N, K, wd, bias] of [
    [1, 300, 999, "f16", "f16"],
    [3, 300, 999, "f32", "f32"],
  ] as const) {
    await check(web, M, N, K, wd, bias, "gemv_tiled", "browser-like windowed ");
  }
});

test("resolver: auto picks gemv_tiled only for packed weights, M ≤ 2, on device classes where it measured faster (and gemv_bcast, which beat it, cannot run: no subgroups here)", async () => {
  const ctx = await gpu({ disableFeatures: ["subgroups"] });
  const tiledHere = ctx.adapter.isSoftware; // the device class where gemv_tiled measured faster
  const { T, R } = gemvTiledShape(ctx);
  assert.equal([T, R], tiledHere ? [8, 8] : [64, 4]);
  assert.is(resolveLinear(ctx, 1, 4096, 4096, "f16").label, "gemv_f16_vec8_r4_mb1_wg64", "no packed copy: gemv");
  assert.is(resolveLinear(ctx, 1, 4096, 4096, "f16", "auto", true).label, tiledHere ? "gemv_tiled_f16_vec8_r8_mb1_wg8" : "gemv_f16_vec8_r4_mb1_wg64");
  assert.is(resolveLinear(ctx, 2, 4096, 4096, "f32", "auto", true).label, tiledHere ? "gemv_tiled_f32_vec4_r8_mb2_wg8" : "gemv_f32_vec4_r4_mb2_wg64");
  assert.is(resolveLinear(ctx, 3, 4096, 4096, "f16", "auto", true).label, "matmul_f16_vec4_t4x8_wg64x1");
  assert.is(resolveLinear(ctx, 1, 100, 4099, "f16", "gemv_tiled").label, `gemv_tiled_f16_vec8_x1_r${R}_mb1_wg${T}`, "K % 4 ≠ 0: x as scalars");
  assert.is(resolveLinear(ctx, 1, 100, 4099, "f16", "gemv", true).label, "gemv_f16_vec1_r4_mb1_wg64", "gemv stays selectable by name");
  // auto through linear(): a packed weight takes gemv_tiled here and still matches the reference
  assert.is(await check(ctx, 1, 70, 40, "f16", "f16", "auto"), tiledHere ? "gemv_tiled_f16_vec8_r8_mb1_wg8" : "gemv_f16_vec8_r4_mb1_wg64");
});

test("refusals: the tiled kernel without a packed copy, a copy of another shape, wrong chunk widths", async () => {
  const ctx = await gpu();
  const x = ctx.upload(rng.fillUniform(16), [1, 16], "f32", "x");
  const w = ctx.upload(rng.fillUniform(32), [2, 16], "f32", "w-unpacked");
  const y = ctx.empty([1, 2], "f32", "y");
  const desc = resolveLinear(ctx, 1, 2, 16, "f32", "gemv_tiled").desc;
  await assertRejects(() => launchLinear(ctx, desc, x, w, null, y, 1, 2, 16), UnsupportedError, [/w-unpacked/, /packGemvWeight/], "no packed copy");
  await packGemvWeight(ctx, w);
  await assertRejects(() => launchLinear(ctx, desc, x.view([2, 8]), w.view([4, 8]), null, ctx.empty([2, 4], "f32", "y2"), 2, 4, 8), UnsupportedError, [/packGemvWeight/], "a view is another tensor: no copy");
  await assertRejects(() => launchLinear(ctx, { ...desc, vec: 8 }, x, w, null, y, 1, 2, 16), UnsupportedError, [/16-byte chunks/], "f32 with vec8");
  await assertRejects(() => packGemvWeight(ctx, ctx.empty([4], "f32", "w1d")), ShapeError, [/w1d/, /\[N, K\]/], "rank");
  releaseGemvPack(w);
});

/** W uploaded row-major, then replaced by its tiles (toTilesLayout), through linear() against the reference. */
async function checkTiles(ctx: GpuContext, M: number, N: number, K: number, wd: WD, bias: BiasKind, T: number, what = ""): Promise<string> {
  const { xh, w: wData, wRef, b: bData, bRef } = linearInputs(rng, M, N, K, wd, bias);
  const x = ctx.upload(xh, [M, K], "f32", "x");
  const w0 = ctx.upload(wData, [N, K], wd, "w");
  const w = await toTilesLayout(ctx, w0, T);
  w0.dispose();
  const b = bData ? ctx.upload(bData, [N], bias as WD, "bias") : undefined;
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
  const label = resolveLinear(ctx, M, N, K, wd, "auto", false, T).label;
  await linear(ctx, x, w, { bias: b, out });
  assertClose(await out.read(), linearReference(xh, wRef, bRef, M, N, K), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} w=${wd} bias=${bias} T=${T}`);
  // the embedding gather reads the same tiles (the model fingerprint samples projection rows)
  const ids = [0, N - 1, Math.floor(N / 2)];
  const rowsOut = await embedding(ctx, ids, w);
  const want = new Float32Array(ids.length * K);
  ids.forEach((id, t) => want.set(wRef.subarray(id * K, id * K + K), t * K));
  assert.equal(Array.from(await rowsOut.read()), Array.from(want), `${what}embedding rows of tiled W [${N}, ${K}] ${wd} T=${T}`);
  for (const t of [x, w, b, out, rowsOut]) t?.dispose();
  return label;
}

test("W in the tiles layout (load-time transform): bytes equal tiledCopyReference; linear() at M = 1, 2, 3, 5 (gemv_bcast on W itself where it runs, else gemv_tiled / matmul's TILES path) and M = 37 (matmul's TILES path), awkward N and K, f32/f16, biases, T = 8 and 64; the embedding gather", async () => {
  await forDevices({}, async (ctx, dev) => {
    for (const wd of ["f32", "f16"] as const) {
      const N = 13;
      const K = 11;
      const wf = rng.fillUniform(N * K);
      const bits = wd === "f16" ? f32ArrayToF16(wf) : null;
      const w0 = ctx.upload(bits ?? wf, [N, K], wd, "w-rows");
      const w = await toTilesLayout(ctx, w0, 8);
      assert.is(w.byteLength, gemvPackBytes(N, K, wd, 8));
      const got = new Uint32Array((await ctx.readBytes(w.buffer, 0, w.byteLength)).buffer);
      const raw = bits ? Array.from(bits) : Array.from(new Uint32Array(wf.buffer, wf.byteOffset, wf.length));
      const ref = tiledCopyReference(raw, N, K, wd === "f16" ? 8 : 4, 8);
      for (let i = 0; i < got.length; i++) {
        const want = wd === "f16" ? (ref[2 * i]! | (ref[2 * i + 1]! << 16)) >>> 0 : ref[i]!;
        if (got[i] !== want) assert.unreachable(`${dev} ${wd}: word ${i} got ${got[i]} want ${want}`);
      }
      assert.throws(() => w.view([N * K]), /tiles layout/);
      for (const t of [w0, w]) t.dispose();
    }
    const cases: [number, number, number, WD, BiasKind, number][] = [
      [1, 1, 1, "f32", "none", 8],
      [1, 65, 37, "f16", "f32", 8],
      [2, 17, 36, "f16", "f16", 8],
      [3, 70, 33, "f32", "f32", 8],
      [37, 129, 40, "f16", "none", 8],
      [5, 9, 19, "f16", "f16", 8],
      [1, 130, 72, "f16", "none", 64],
      [37, 67, 20, "f32", "f16", 64],
    ];
    for (const c of cases) {
      const label = await checkTiles(ctx, ...c);
      const bcast = gemvBcastUsable(ctx) && gemvBcastPreferred(ctx) && c[5] === BCAST_T && c[0] <= bcastMaxM(c[3]);
      assert.match(label, bcast ? /^gemv_bcast_f(16|32)_tiles8_/ : c[0] <= 2 ? /^gemv_tiled_/ : /^matmul_f(16|32)_tiles/, label);
    }
  });
});

test("W in the tiles layout above a forced 64 KiB binding limit: windows of whole tiles (gemv_tiled, matmul, embedding)", async () => {
  await forDevices({ maxStorageBufferBindingSize: 64 * 1024 }, async (ctx) => {
    await checkTiles(ctx, 1, 300, 255, "f32", "f32", 8, "limit: ");
    await checkTiles(ctx, 9, 300, 255, "f32", "f16", 8, "limit: ");
    await checkTiles(ctx, 6, 600, 100, "f16", "none", 8, "limit: ");
  });
});

test("loadDecoder gemvLayout 'tiles': projections and the untied lm_head replaced by their tiles (one copy, bytes as planned); prefill (matmul), forward decode (gemv_tiled) and the decode step (gemv_step) match the rows layout; fingerprint unchanged; training, saving and row-major readers refuse it in one line", async () => {
  for (const fixture of ["llama-gqa-f32", "llama-linear-ropeparams-f16"]) {
    const ctx = await gpu();
    const live0 = ctx.pool.stats.liveBytes;
    const tiled = await loadDecoder(ctx, modelFixture(fixture), { noTokenizer: true, gemvLayout: "tiles" });
    const liveTiled = ctx.pool.stats.liveBytes - live0;
    const rows = await loadDecoder(ctx, modelFixture(fixture), { noTokenizer: true, gemvLayout: "rows" });
    assert.is(rows.gemvLayout, "rows");
    assert.match(tiled.gemvLayout, /^tiles \(T=\d+, \d+ weights\)$/);
    const W = tiled.decoder.weights;
    const L0 = W.layers[0]!;
    for (const t of [L0.q, L0.k, L0.v, L0.o, L0.gate, L0.up, L0.down]) assert.ok(t.layout?.kind === "tiles", `${t.label} in tiles`);
    assert.is(W.embed.layout, null, "the embedding stays row-major");
    if (W.lmHead !== W.embed) assert.ok(W.lmHead.layout, "an untied lm_head in tiles");
    assert.is(gemvPackOf(L0.q), undefined, "no second copy");
    // weightBytes is what the weights hold on the GPU (the tiles' padding included)
    const held = [...new Set([W.embed, W.norm, W.lmHead, ...W.layers.flatMap((L) => Object.values(L).filter((t): t is Tensor => t !== null))])].reduce((a, t) => a + Math.ceil(t.byteLength / 4) * 4, 0);
    assert.is(tiled.weightBytes, held, "planned bytes = held bytes");
    assert.ok(liveTiled >= held, `live bytes after load ${liveTiled} ≥ held ${held}`);
    // prefill 5 tokens (matmul), then 2 forward steps (M = 1)
    const logits = async (m: LoadedDecoder): Promise<Float32Array[]> => {
      const s = new Session(m.decoder, m.decoder.createCache(24, "f32"));
      const got: Float32Array[] = [];
      for (const ids of [[5, 17, 99, 3, 250], [42], [7]]) {
        const out = await s.append(ids, { logits: "all" });
        got.push((await (out.logits as Tensor).read()) as Float32Array);
        out.logits?.dispose();
      }
      for await (const t of s.generate({ maxNewTokens: 6, temperature: 0 })) got.push(Float32Array.of(t.id));
      s.dispose();
      return got;
    };
    const a = await logits(tiled);
    const b = await logits(rows);
    for (let i = 0; i < a.length; i++) assertClose(a[i]!, b[i]!, { atol: 1e-5, rtol: 1e-5 }, `${fixture} output ${i}: tiles vs rows layout`);
    assert.is((await modelFingerprint(tiled.decoder)).fingerprint, (await modelFingerprint(rows.decoder)).fingerprint, "fingerprint independent of the layout");
    assert.throws(() => TrainModel.create(tiled.decoder, { mode: "full" }), (e: Error) => e instanceof ShapeError && /TrainModel/.test(e.message) && /tiles layout/.test(e.message) && /layout 'rows'/.test(e.message));
    await assertRejects(() => L0.q.read(), ShapeError, [/read/, /tiles layout/], "readback of a tiled weight");
    await assertRejects(() => linear(ctx, ctx.empty([1, L0.q.shape[1]!], "f32", "x"), L0.q, { variant: "gemv" }), UnsupportedError, [/gemv/, /tiles layout/], "a row-major kernel forced on tiles");
    tiled.dispose();
    rows.dispose();
  }
});

test("loadDecoder gemvLayout 'tiles': the memory plan counts the tiles and the transform's transient copy; over budget it is refused before upload", async () => {
  const ctx = await gpu({ memoryBudgetBytes: 1 << 30 });
  const first = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, gemvLayout: "rows" });
  ctx.memoryBudget = { bytes: ctx.pool.stats.liveBytes + first.weightBytes + 16, source: "test budget" };
  await assertRejects(() => loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, gemvLayout: "tiles" }), Error, [/transformed into tiles/, /test budget/], "tiles over budget (transient)");
  await assertRejects(() => loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true, gemvLayout: "tiled" as "tiles" }), UsageError, [/gemvLayout/, /tiled/], "unknown layout");
  first.dispose();
  ctx.memoryBudget = { bytes: 1 << 30, source: "given" };
});

test.run();
