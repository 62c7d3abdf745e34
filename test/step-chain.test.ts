// The decode-step kernels chained as a step program uses them (plans built once, encoded per
// step, the step state the only thing that moves): advance → embed_rows → rope_kv →
// attention_step, with a planned injection, a sliding window and the cache end, against the
// references of the ops they replace (embedding, rope, kvAppend, attention over causal ranges).
// No projections: the embedding row of an id is used as its qkv row (D = (H + 2·Hkv)·hd).
import { test } from "uvu";
import { forDevices } from "./helpers/gpu.js";
import { assertClose, assertEqualArrays } from "./helpers/check.js";
import { stepWords } from "./helpers/step.js";
import { advanceRowsReference, planAdvanceRows } from "../src/ops/decode_state.js";
import { planEmbedRows } from "../src/ops/embed-rows.js";
import { planRopeKv } from "../src/ops/rope-kv.js";
import { planAttentionStep } from "../src/ops/attention-step.js";
import { embeddingReference } from "../src/ops/embedding.js";
import { ropeReference } from "../src/ops/rope.js";
import { attentionReference, kvAppendReference } from "../src/ops/attention.js";
import { causalRangesFor } from "../src/model/session.js";
import { STEP_LAST, STEP_PENDING, STEP_ROWS } from "../src/ops/step-state.js";
import { Rng } from "../src/util/rng.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../src/util/f16.js";

test("step chain: advance → embed_rows → rope_kv → attention_step over tokens and an injection match the unfused references", async () => {
  await forDevices({}, async (ctx, device) => {
    const rng = new Rng(51);
    const H = 6, Hkv = 2, hd = 8, V = 40, S = 12, maxRows = 4, window = 5;
    const W = (H + 2 * Hkv) * hd;
    const table = rng.fillUniform(V * W, -1, 1);
    const invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / Math.pow(10_000, (2 * i) / hd));
    const planIds = Uint32Array.of(7, 8, 9, 10);
    // GPU state
    const t = {
      token: ctx.upload([0], [1], "u32", "token"),
      plan: ctx.upload(planIds, [maxRows], "u32", "plan"),
      step: ctx.upload(stepWords(2, 3, 0, 0), [8], "u32", "step"), // a 3-token prompt at 0..2
      rows: ctx.upload(new Uint32Array(maxRows), [maxRows], "u32", "rows"),
      context: ctx.upload(new Uint32Array(S), [S], "u32", "context"),
      history: ctx.upload(new Uint32Array(16), [16], "u32", "history"),
    };
    const embed = ctx.upload(table, [V, W], "f32", "embed");
    const qkv = ctx.empty([maxRows, W], "f32", "qkv");
    const att = ctx.empty([maxRows, H * hd], "f32", "att");
    const kc = ctx.upload(new Uint16Array(Hkv * S * hd), [Hkv, S, hd], "f16", "kCache");
    const vc = ctx.upload(new Uint16Array(Hkv * S * hd), [Hkv, S, hd], "f16", "vCache");
    const inv = ctx.upload(invFreq, [hd / 2], "f32", "inv_freq");
    const plans = [
      await planAdvanceRows(ctx, { ...t }),
      await planEmbedRows(ctx, t.rows, embed, t.step, qkv),
      await planRopeKv(ctx, qkv, inv, kc, vc, t.step),
      await planAttentionStep(ctx, qkv, kc, vc, t.step, { out: att, window, splits: 2 }),
    ];
    // host mirror
    let ref: { step: Uint32Array; rows: Uint32Array; context: Uint32Array; history: Uint32Array } = { step: stepWords(2, 3, 0, 0), rows: new Uint32Array(maxRows), context: new Uint32Array(S), history: new Uint32Array(16) };
    let kRef = new Uint16Array(Hkv * S * hd), vRef = new Uint16Array(Hkv * S * hd);
    // the prompt's cache rows (ids 1, 2, 3 at 0..2), written by the same kernels as a 3-row step
    const script: [number, number][] = [[-1, 0], [11, 0], [12, 3], [13, 0], [14, 2], [15, 0], [16, 0]];
    for (const [i, [tok, pending]] of script.entries()) {
      if (tok < 0) {
        // prompt: rows 1, 2, 3 fed as an "injection" from LAST = −1
        ctx.write(t.plan, Uint32Array.of(1, 2, 3, 0));
        ctx.write(t.step, stepWords(0xffffffff, 0, 0, 3));
        ref.step = stepWords(0xffffffff, 0, 0, 3);
        planIds.set([1, 2, 3, 0]);
      } else {
        if (i === 2) {
          ctx.write(t.plan, Uint32Array.of(7, 8, 9, 10));
          planIds.set([7, 8, 9, 10]);
        }
        ctx.write(t.token, [tok]);
        if (pending) {
          const s = await t.step.read();
          s[STEP_PENDING] = pending;
          ctx.write(t.step, s);
          ref.step[STEP_PENDING] = pending;
        }
      }
      for (const p of plans) p.encode(ctx);
      ref = advanceRowsReference({ token: tok < 0 ? 0 : tok, plan: planIds, ...ref });
      const T = ref.step[STEP_ROWS]!;
      const last = ref.step[STEP_LAST]!;
      const p0 = last + 1 - T;
      const ids = Array.from(ref.rows.subarray(0, T));
      const x = embeddingReference(ids, table, V, W).out;
      const q = new Float32Array(T * H * hd), k = new Float32Array(T * Hkv * hd), v = new Float32Array(T * Hkv * hd);
      for (let r = 0; r < T; r++) {
        q.set(x.subarray(r * W, r * W + H * hd), r * H * hd);
        k.set(x.subarray(r * W + H * hd, r * W + (H + Hkv) * hd), r * Hkv * hd);
        v.set(x.subarray(r * W + (H + Hkv) * hd, (r + 1) * W), r * Hkv * hd);
      }
      const positions = Uint32Array.from({ length: T }, (_, r) => p0 + r);
      const qr = ropeReference(q, positions, invFreq, H, hd);
      // the kernel rounds its f32 rotation to f16; the reference rounds float64: compare decoded within one f16 ulp
      const caches = kvAppendReference(ropeReference(k, positions, invFreq, Hkv, hd), v, kRef, vRef, positions, { Hkv, S, hd });
      const what = `[${device}] step ${i} (token ${tok}, pending ${pending}, T=${T}, p0=${p0})`;
      const kGot = (await kc.read()) as Uint16Array;
      assertClose(f16ArrayToF32(kGot), f16ArrayToF32(caches.kCache), { atol: 4e-6, rtol: 1e-3 }, `${what}: kCache`);
      assertEqualArrays(await vc.read(), caches.vCache, `${what}: vCache`);
      // carry the GPU's own k cache forward (one-ulp differences must not accumulate into later checks)
      kRef = kGot.slice();
      vRef = caches.vCache;
      const want = attentionReference(qr, kRef, vRef, causalRangesFor(p0, T, window), { T, H, Hkv, S, hd });
      assertClose((await att.read()).subarray(0, T * H * hd), want, { atol: 2e-5, rtol: 1e-4 }, `${what}: attention`);
      assertEqualArrays(await t.context.read(), ref.context, `${what}: context`);
    }
    for (const p of plans) p.dispose();
  });
});

test.run();
