// Q8_0 / Q4_0 host formats (src/quant/formats.ts): ggml's reference rounding on hand-computed
// blocks, round-trip error bounds, the split-blocks layout and GGUF block bytes, refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../src/util/rng.js";
import { f16BitsToF32 } from "../src/util/f16.js";
import { UnsupportedError } from "../src/errors.js";
import { dequantizeMatrix, packQuantized, quantBytes, quantizeMatrix, toGgufBlocks, unpackQuantized } from "../src/quant/formats.js";
import { quantizeQ4_0, quantizeQ8_0 } from "../src/io/ggml-quants.js";

test("Q8_0 hand-computed block: d = amax/127 stored as f16, roundf half away from zero", () => {
  // amax 1 → d = f32(1/127) = 0.0078740157…, f16 0x2008 (2⁻⁷·(1 + 8/1024)); id = f32(1/d) = 127.
  // 0.5·127 = 63.5 → 64 and −63.5 → −64 (half away from zero, not to even); 0.25·127 = 31.75 → 32.
  const x = new Float32Array(32);
  x.set([1, -1, 0.5, -0.5, 0.25, 0, -0.001, 0.004]);
  const q = quantizeMatrix(x, 1, 32, "q8_0");
  assert.is(q.scales[0], 0x2008);
  const want = [127, -127, 64, -64, 32, 0, 0, 1];
  assert.equal([...new Int8Array(q.qs.buffer, 0, 8)], want);
  assert.equal([...new Int8Array(q.qs.buffer, 8, 24)], new Array(24).fill(0));
  const deq = dequantizeMatrix(q);
  assert.is(deq[0], 127 * f16BitsToF32(0x2008));
  assert.is(deq[3], -64 * f16BitsToF32(0x2008));
  // all-zero block: d = 0, id = 0, every q 0
  const z = quantizeMatrix(new Float32Array(64), 2, 32, "q8_0");
  assert.equal([...z.scales], [0, 0]);
  assert.ok(z.qs.every((b) => b === 0));
});

test("Q4_0 hand-computed blocks: d = max/−8 with max the signed value of largest |x| (first on ties), q = min(15, trunc(x/d + 8.5))", () => {
  // max −2 at j = 3 → d = 0.25 (f16 0x3400), id = 4: −2 → trunc(0.5) = 0; 2 → 16.5 → 15 (clamped);
  // 0 → 8; 0.3 → trunc(9.7) = 9; −0.3 → trunc(7.3) = 7; 0.125 → 9.0 → 9; −1.1 → trunc(4.1) = 4.
  const x = new Float32Array(32);
  x.set([0.3, -0.3, 0.125, -2, 2, -1.1]);
  x[16] = 1; // shares byte 0 with x[0]: high nibble trunc(4 + 8.5) = 12
  const q = quantizeMatrix(x, 1, 32, "q4_0");
  assert.is(q.scales[0], 0x3400);
  assert.is(q.qs[0], 9 | (12 << 4));
  assert.equal([...q.qs.subarray(1, 6)].map((b) => b & 15), [7, 9, 0, 15, 4]);
  assert.equal([...q.qs.subarray(1, 16)].map((b) => b >> 4), new Array(15).fill(8));
  const deq = dequantizeMatrix(q);
  assert.equal([...deq.subarray(0, 6)], [0.25, -0.25, 0.25, -2, 1.75, -1]);
  assert.is(deq[16], 1);
  // tie on |x|: the first (+2 at j = 1) wins, d = −0.25: +2 → q 0 (dequantizes to +2), −2 → 15 (1.75)
  const t = new Float32Array(32);
  t[1] = 2;
  t[3] = -2;
  const qt = quantizeMatrix(t, 1, 32, "q4_0");
  assert.is(f16BitsToF32(qt.scales[0]!), -0.25);
  assert.equal([...dequantizeMatrix(qt).subarray(0, 4)], [-0, 2, -0, -1.75]);
});

test("round trip: |w − deq(w)| within the format's bound per block; pack/unpack and GGUF blocks are the same bytes", () => {
  const rng = new Rng(1717);
  const N = 7;
  const K = 96;
  const w = rng.fillNormal(N * K, 0.05);
  for (const format of ["q8_0", "q4_0"] as const) {
    const q = quantizeMatrix(w, N, K, format, "w");
    const deq = dequantizeMatrix(q);
    for (let b = 0; b < (N * K) / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[b * 32 + j]!));
      // Q8_0: half a step (d = amax/127) plus 127 × the f16 rounding of d (≤ 2⁻¹¹·d);
      // Q4_0: a whole step (d = amax/8: the value of sign opposite to max clamps from 16 to 15) plus 8 × f16 rounding.
      const d = format === "q8_0" ? amax / 127 : amax / 8;
      const bound = format === "q8_0" ? d * (0.5 + 127 * 2 ** -11) : d * (1 + 8 * 2 ** -11);
      for (let j = 0; j < 32; j++) {
        const e = Math.abs(w[b * 32 + j]! - deq[b * 32 + j]!);
        assert.ok(e <= bound * (1 + 1e-6), `${format} block ${b} elem ${j}: error ${e} > bound ${bound}`);
      }
    }
    const { qsBytes, total } = quantBytes(N, K, format);
    assert.is(qsBytes, format === "q8_0" ? N * K : (N * K) / 2);
    const bytes = packQuantized(q);
    assert.is(bytes.byteLength, total);
    const back = unpackQuantized(bytes, N, K, format);
    assert.equal([...back.qs], [...q.qs]);
    assert.equal([...back.scales], [...q.scales]);
    const gguf = toGgufBlocks(q);
    const bb = format === "q8_0" ? 34 : 18;
    assert.is(gguf.byteLength, ((N * K) / 32) * bb);
    assert.is(gguf[bb]! | (gguf[bb + 1]! << 8), q.scales[1]); // block 1 starts with its f16 d
    assert.equal([...gguf.subarray(bb + 2, 2 * bb)], [...q.qs.subarray(bb - 2, 2 * (bb - 2))]);
  }
});

test("refusals: K not a multiple of 32, non-finite weights, scales past f16", () => {
  assert.throws(() => quantizeMatrix(new Float32Array(56 * 2), 2, 56, "q4_0", "'model.layers.0.mlp.up_proj.weight'"), (e: Error) => e instanceof UnsupportedError && /up_proj.*\[2, 56\].*multiple of 32/.test(e.message));
  const nan = new Float32Array(32);
  nan[5] = NaN;
  assert.throws(() => quantizeMatrix(nan, 1, 32, "q8_0", "'w'"), (e: Error) => e instanceof UnsupportedError && /'w': element 5 is NaN/.test(e.message));
  const huge = new Float32Array(32).fill(1e7);
  assert.throws(() => quantizeMatrix(huge, 1, 32, "q8_0", "'w'"), (e: Error) => e instanceof UnsupportedError && /'w'.*scale.*f16/.test(e.message));
});

test("the loader's blocks equal the GGUF writer's (src/io/ggml-quants.ts): bench/peer runs the same quantized bytes in llama.cpp", () => {
  // Random rows plus awkward blocks: all zero, ties of |max| with both signs, a lone value, halves.
  const N = 5, K = 96;
  const w = new Rng(17).fillNormal(N * K, 0.05);
  w.fill(0, 32, 64);
  w.set([0.3, -0.3, 0.3, -0.3], 64);
  w.fill(0, 96, 128);
  w[100] = -0.7;
  for (let j = 0; j < 32; j++) w[128 + j] = (j - 16) / 16;
  for (const [format, ref] of [["q8_0", quantizeQ8_0], ["q4_0", quantizeQ4_0]] as const) {
    assert.equal([...toGgufBlocks(quantizeMatrix(w, N, K, format))], [...ref(w)], format);
  }
});

test.run();
