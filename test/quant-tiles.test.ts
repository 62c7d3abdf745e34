// q8_0 / q4_0 weights in the tiles layout (src/gpu/tensor.ts TilesLayout, src/quant/tiles.ts):
//   - the host transform is a byte-exact permutation of the split-blocks arrays (round trip), and the
//     element reader that mirrors the kernels' addressing dequantizes to exactly dequantizeMatrix;
//   - the bytes on the GPU are what the host made (uploadTiles);
//   - linear (gemv_q / matmul_q TILES: prefill) against linearQReference, awkward N (odd, N < T,
//     N not a multiple of T) and K (nb = 1, 3, 9, 17: not a multiple of the 8-block groups), bias
//     none/f32/f16, windows of whole tiles above a forced binding limit;
//   - embedding gathers (the model fingerprint reads projection rows) equal the dequantized rows
//     exactly;
//   - a quantized model loaded with gemvLayout "tiles" vs "rows": same blocks, so logits equal up to
//     f32 summation order (prefill and captured decode), same greedy tokens, same fingerprint; the
//     memory plan counts the tiled bytes; a directory saved quantized loads into the same tiles.
// Tolerance of the linear checks: Σ u·x − 128·Σx (q8_0) and Σ n·x − 8·Σx (q4_0) per block in f32,
// then · d: a few times the rows kernel's 8·eps·K/3 bound (u ≤ 255 against |q| ≤ 127); a wrong byte,
// nibble or scale moves a term by ≥ |d·x| (≥ 1e-3 typically), far above.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { forDevices, gpu, quantFormats } from "./helpers/gpu.js";
import { assertClose } from "./helpers/check.js";
import { argmaxRow, FIXTURE_ROOT, relL2 } from "./helpers/golden.js";
import { modelFixture } from "./helpers/fixtures.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";
import type { GpuContext } from "../src/gpu/context.js";
import { tilesBytes, tilesLayout, type QuantDType, type Tensor } from "../src/gpu/tensor.js";
import { bcastXL, gemvBcastPreferred, gemvBcastUsable, linear } from "../src/ops/linear.js";
import { launchLinearQ, linearQReference, linearQXBcast, resolveLinearQ } from "../src/ops/linear_q.js";
import { UnsupportedError } from "../src/errors.js";
import { embedding } from "../src/ops/embedding.js";
import { dequantizeMatrix, quantizeMatrix } from "../src/quant/formats.js";
import { dequantizeQuantTiles, fromQuantTiles, toQuantTiles } from "../src/quant/tiles.js";
import { loadDecoder, type LoadedDecoder } from "../src/model/load.js";
import { Session, type GeneratedToken } from "../src/model/session.js";
import { modelFingerprint } from "../src/onegen/fingerprint.js";
import { quantizeModelDir } from "../src/model/save-quantized.js";
import { join } from "node:path";
import { scratchDir } from "./helpers/scratch.js";

const EPS32 = 2 ** -24;
const tolFor = (K: number) => ({ atol: 4 * EPS32 * K + 1e-7, rtol: 2 ** -20 });
const rng = new Rng(1717);
const FORMATS = ["q8_0", "q4_0"] as const;

/** The raw bytes of a tensor's buffer (tiles tensors refuse read()). */
async function rawBytes(ctx: GpuContext, t: Tensor): Promise<Uint8Array> {
  const raw = ctx.empty([t.byteLength / 4], "u32", "raw");
  ctx.copy(t.buffer, 0, raw.buffer, 0, t.byteLength);
  const u = (await raw.read()) as Uint32Array;
  raw.dispose();
  return new Uint8Array(u.buffer, u.byteOffset, t.byteLength).slice();
}

test("host transform: byte-exact round trip, the kernels' element reader equals dequantizeMatrix, sizes (N odd / < T / not a multiple of T; nb 1, 3, 9, 17)", () => {
  for (const format of FORMATS) {
    for (const [N, K] of [[1, 32], [7, 96], [9, 288], [33, 544], [64, 256], [130, 32]] as const) {
      for (const T of [1, 3, 8, 64]) {
        const q = quantizeMatrix(rng.fillUniform(N * K), N, K, format, "w");
        const bytes = toQuantTiles(q, T);
        const lay = tilesLayout(N, K, format, T);
        assert.is(bytes.byteLength, tilesBytes(lay));
        const nb = K / 32;
        assert.is(lay.kc, nb * (format === "q8_0" ? 2 : 1) + Math.ceil(nb / 8), "chunks per packed row");
        const back = fromQuantTiles(bytes, N, K, format, T);
        assert.ok(Buffer.from(back.qs).equals(Buffer.from(q.qs)), `${format} [${N}, ${K}] T=${T}: quants round trip`);
        assert.equal([...back.scales], [...q.scales], `${format} [${N}, ${K}] T=${T}: scales round trip`);
        assert.equal([...dequantizeQuantTiles(bytes, N, K, format, T)], [...dequantizeMatrix(q)], `${format} [${N}, ${K}] T=${T}: element reader`);
      }
    }
  }
});

/** One case through linear() (the resolver's kernel), or with the x broadcast forced to `xb` (0: off) through launchLinearQ. */
async function checkLinear(ctx: GpuContext, M: number, N: number, K: number, format: QuantDType, T: number, bias: "none" | "f32" | "f16", what = "", xb?: 0 | 1 | 2): Promise<string> {
  const xh = rng.fillUniform(M * K);
  const q = quantizeMatrix(rng.fillUniform(N * K), N, K, format, "w");
  const bf = bias === "none" ? null : rng.fillUniform(N);
  const bBits = bias === "f16" && bf ? f32ArrayToF16(bf) : null;
  const bRef = bBits ? f16ArrayToF32(bBits) : bf;
  const tiles = toQuantTiles(q, T);
  const x = ctx.upload(xh, [M, K], "f32", "x");
  const w = ctx.uploadTiles(tiles, [N, K], format, T, "w");
  assert.ok(Buffer.from(await rawBytes(ctx, w)).equals(Buffer.from(tiles)), "the GPU holds the host's tiles bytes");
  const b = bf ? ctx.upload(bBits ?? bf, [N], bias as "f32" | "f16", "bias") : undefined;
  const out = ctx.upload(new Float32Array(M * N).fill(NaN), [M, N], "f32", "y");
  const plan = resolveLinearQ(M, format, "auto", T, xb ?? linearQXBcast(ctx, T));
  const label = plan.label;
  if (xb === undefined) await linear(ctx, x, w, { bias: b, out });
  else await launchLinearQ(ctx, plan.desc, x, w, b ?? null, out, M, N, K);
  assertClose(await out.read(), linearQReference(xh, q, bRef, M), tolFor(K), `${what}${label} M=${M} N=${N} K=${K} T=${T} bias=${bias}`);
  for (const t of [x, w, b, out]) t?.dispose();
  return label;
}

test("linear on tiles (gemv_q / matmul_q TILES): M 1, 2, 5, 37 × awkward N and K, T 8 and 64, bias none/f32/f16", async () => {
  await forDevices({}, async (ctx) => {
    const shapes: [number, number][] = [[1, 32], [7, 96], [33, 288], [65, 544], [130, 32], [9, 256]];
    let i = 0;
    for (const format of FORMATS) {
      for (const M of [1, 2, 5, 37]) {
        for (const T of [8, 64]) {
          for (const [N, K] of shapes.filter((_, j) => (j + M + T) % 3 === 0)) { // two shapes per (M, T), all six over the T pair and M
            const label = await checkLinear(ctx, M, N, K, format, T, (["none", "f32", "f16"] as const)[i++ % 3]!);
            assert.match(label, new RegExp(`${M <= 2 ? "gemv" : "matmul"}_${format}_tiles`), label);
          }
        }
      }
    }
  });
});

test("linear on tiles of 8 with x broadcast through the subgroup (1 and 2 x vec4s per lane) and without: M 1, 2, 5, 37 × awkward N and K, bias; the resolver's pick per device", async () => {
  await forDevices({}, async (ctx, dev) => {
    const pick = linearQXBcast(ctx, 8);
    assert.is(pick, gemvBcastUsable(ctx) && gemvBcastPreferred(ctx) ? bcastXL(ctx) : 0, `${dev}: x broadcast where gemv_bcast is preferred`);
    assert.is(linearQXBcast(ctx, 64), 0, "tiles of 64: no broadcast");
    const xbs: (0 | 1 | 2)[] = !gemvBcastUsable(ctx) ? [0] : bcastXL(ctx) === 1 ? [1, 2, 0] : [2, 0];
    let i = 0;
    for (const format of quantFormats("q4_0")) {
      for (const xb of xbs) {
        for (const [M, N, K] of [[1, 33, 288], [2, 9, 96], [5, 65, 544], [37, 130, 32]] as const) {
          const label = await checkLinear(ctx, M, N, K, format, 8, (["none", "f32", "f16"] as const)[i++ % 3]!, `${dev} `, xb);
          assert.match(label, new RegExp(`^${M <= 2 ? "gemv" : "matmul"}_${format}_tiles${xb ? `_xb${xb}` : ""}_r`), label);
        }
      }
    }
    assert.throws(() => resolveLinearQ(5, "q4_0", "auto", 64, 1), (e: unknown) => e instanceof UnsupportedError && /x broadcast/.test(e.message) && /tiles of 64/.test(e.message));
  });
});

test("linear on tiles: windows of whole tiles above a forced 64 KiB binding limit", async () => {
  await forDevices({ maxStorageBufferBindingSize: 64 * 1024 }, async (ctx) => {
    await checkLinear(ctx, 1, 1001, 96, "q8_0", 8, "f32", "limit: ");
    await checkLinear(ctx, 37, 601, 256, "q4_0", 8, "f16", "limit: ");
    await checkLinear(ctx, 2, 263, 512, "q8_0", 64, "none", "limit: ");
  });
});

test("embedding gather from a tiles table equals the dequantized rows exactly (first, middle, last rows; windows)", async () => {
  for (const limit of [undefined, 64 * 1024]) {
    await forDevices(limit ? { maxStorageBufferBindingSize: limit } : {}, async (ctx) => {
      for (const format of FORMATS) {
        for (const [V, D, T] of [[9, 288, 8], [130, 544, 64], [1001, 96, 8]] as const) {
          const q = quantizeMatrix(rng.fillUniform(V * D), V, D, format, "table");
          const table = ctx.uploadTiles(toQuantTiles(q, T), [V, D], format, T, "table");
          const ids = [0, Math.floor(V / 2), V - 1, 1 % V];
          const out = await embedding(ctx, ids, table);
          const got = (await out.read()) as Float32Array;
          const deq = dequantizeMatrix(q);
          const want = new Float32Array(ids.length * D);
          ids.forEach((id, t) => want.set(deq.subarray(id * D, (id + 1) * D), t * D));
          assert.equal([...got], [...want], `${format} [${V}, ${D}] T=${T} limit=${limit ?? "default"}`);
          out.dispose();
          table.dispose();
        }
      }
    });
  }
});

/** Logits [T, V]: a prefill of `prefill` ids (linear → gemv_q/matmul_q), then one id at a time (the step path of Session.append). */
async function logitsOf(model: LoadedDecoder, ids: number[], prefill: number): Promise<Float32Array> {
  const V = model.decoder.vocabSize;
  const session = new Session(model.decoder, model.decoder.createCache(ids.length, "f32"));
  const out = new Float32Array(ids.length * V);
  try {
    let at = 0;
    for (const n of [prefill, ...Array(ids.length - prefill).fill(1)]) {
      const r = await session.append(ids.slice(at, at + n), { logits: "all" });
      out.set((await (r.logits as Tensor).read()) as Float32Array, at * V);
      r.logits?.dispose();
      at += n;
    }
  } finally {
    session.dispose();
  }
  return out;
}

async function greedy(m: LoadedDecoder, prompt: number[], n: number): Promise<number[]> {
  const s = new Session(m.decoder, m.decoder.createCache(prompt.length + n, "f32"));
  await s.append(prompt);
  const toks: GeneratedToken[] = [];
  for await (const t of s.generate({ maxNewTokens: n, stepsPerRead: 3 })) toks.push(t);
  s.dispose();
  return toks.map((t) => t.id);
}

const IDS = [5, 17, 99, 3, 250, 42, 7, 11, 123, 64, 1, 200];

test("quantized model, gemvLayout tiles vs rows: tiled projections, planned bytes, logits (prefill + decode) equal up to f32 order, same greedy tokens and fingerprint", async () => {
  const ctx = await gpu();
  const lines: string[] = [];
  for (const fixture of ["llama-gqa-f32", "qwen2-bias-tied-f16"]) {
    for (const format of FORMATS) {
      const rows = await loadDecoder(ctx, modelFixture(fixture), { noTokenizer: true, quantize: format, gemvLayout: "rows" });
      const tiles = await loadDecoder(ctx, modelFixture(fixture), { noTokenizer: true, quantize: format, gemvLayout: "tiles" });
      try {
        const T = tiles.decoder.weights.layers[0]!.q.layout?.T ?? 0;
        assert.ok(T > 0, `${fixture} ${format}: projections in tiles (${tiles.gemvLayout})`);
        let extra = 0;
        tiles.decoder.weights.layers.forEach((L, l) => {
          const R = rows.decoder.weights.layers[l]!;
          for (const f of ["q", "k", "v", "o", "gate", "up", "down"] as const) {
            const t = L[f] as Tensor;
            const r = R[f] as Tensor;
            assert.is(t.dtype, format);
            assert.is(t.layout?.T, T, t.label);
            assert.is(t.byteLength, tilesBytes(tilesLayout(t.shape[0]!, t.shape[1]!, format, T)), `${t.label}: tiled bytes`);
            extra += t.byteLength - r.byteLength;
          }
        });
        const lmDiff = tiles.decoder.weights.lmHead === tiles.decoder.weights.embed ? 0 : tiles.decoder.weights.lmHead.byteLength - rows.decoder.weights.lmHead.byteLength;
        assert.is(tiles.weightBytes - rows.weightBytes, extra + lmDiff, "the plan counts the tiled sizes");
        const V = rows.decoder.vocabSize;
        const a = await logitsOf(rows, IDS, 5);
        const b = await logitsOf(tiles, IDS, 5);
        const e = relL2(b, a, V);
        lines.push(`${fixture} ${format}: tiles vs rows logits rel L2 ${e.toExponential(2)} (T=${T})`);
        assert.ok(e < 1e-5, `${fixture} ${format}: rel L2 ${e}`);
        for (let t = 0; t < IDS.length; t++) assert.is(argmaxRow(b, t, V), argmaxRow(a, t, V), `${fixture} ${format}: argmax at ${t}`);
        assert.equal(await greedy(tiles, IDS.slice(0, 7), 6), await greedy(rows, IDS.slice(0, 7), 6), `${fixture} ${format}: greedy tokens`);
        assert.is((await modelFingerprint(tiles.decoder)).fingerprint, (await modelFingerprint(rows.decoder)).fingerprint, `${fixture} ${format}: fingerprint`);
      } finally {
        rows.dispose();
        tiles.dispose();
      }
    }
  }
  console.log(lines.join("\n"));
});

test("a directory saved quantized loads into the same tiles bytes as quantizing while loading", async () => {
  const ctx = await gpu();
  const tmp = scratchDir("qtiles");
  for (const format of FORMATS) {
    const out = join(tmp, format);
    await quantizeModelDir(join(FIXTURE_ROOT, "llama3-scaled-bf16-sharded"), out, format, { maxShardBytes: 100_000 });
    const onLoad = await loadDecoder(ctx, modelFixture("llama3-scaled-bf16-sharded"), { noTokenizer: true, quantize: format, gemvLayout: "tiles" });
    const stored = await loadDecoder(ctx, out, { noTokenizer: true, gemvLayout: "tiles" });
    try {
      assert.is(stored.weightBytes, onLoad.weightBytes, "planned bytes");
      const a = onLoad.decoder.weights.layers[1]!;
      const b = stored.decoder.weights.layers[1]!;
      for (const f of ["q", "down", "gate"] as const) {
        assert.ok((b[f] as Tensor).layout, `${f} in tiles`);
        assert.ok(Buffer.from(await rawBytes(ctx, b[f] as Tensor)).equals(Buffer.from(await rawBytes(ctx, a[f] as Tensor))), `${format} ${f}: bytes`);
      }
    } finally {
      onLoad.dispose();
      stored.dispose();
    }
  }
});

test.run();
