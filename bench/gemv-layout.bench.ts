// The projection weights' layout (issue 16 item 3): gemv_step reading W row-major ("v1 rows", one
// invocation owns whole rows, neighbouring invocations read addresses K apart) against the same
// weights in the lane-interleaved tiles layout ("v2 tiles", src/gpu/tensor.ts TilesLayout: at each
// step neighbouring invocations read neighbouring 16-byte chunks), and tiles with x̂ broadcast
// through the subgroup ("v3 tiles xbcast", kernels/gemv_step.wgsl XBCAST: one x vec4 per lane per
// 32 elements instead of 8; where subgroups allow it), all kept runnable side by side so a new
// device can be measured again; the same two tiles arms with q4_0 weights (quant tiles) beside. Per model shape (Llama 134M, TinyLlama 1.1B): the decode
// step's five fused GEMVs (T = 1 from a step state, f16 W, the resolver's norm path), arms
// alternated round by round, with copyBufferToBuffer measured beside (extra.ofCopy = the GEMV's
// weight bytes per second / copy bandwidth; extra.speedup = rows ms / arm ms). Then the whole
// decode of the 134M shape, rows vs tiles alternated (bench/model.bench.ts decodeLayoutAB).
// --quick: the 134M GEMV shapes and the decode of the synthetic "tiny" shape only.
// The default per device class (decodeWeightLayout in src/ops/linear.ts) cites these figures.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { gemvBcastUsable, gemvTiledShape, toTilesLayout } from "../src/ops/linear.js";
import { quantizeMatrix } from "../src/quant/formats.js";
import { toQuantTiles } from "../src/quant/tiles.js";
import { planGemvStep, type GemvStepPlan } from "../src/ops/gemv-step.js";
import { STEP_ROWS, STEP_WORDS } from "../src/ops/step-state.js";
import { Session } from "../src/model/session.js";
import { Rng } from "../src/util/rng.js";
import { measureCopy, type BenchEnv, type BenchRow } from "./harness.js";
import { MODELS, randomTensors, runGroups, type Group } from "./gemv-step.bench.js";
import { buildSynthetic } from "./synthetic.js";
import { decodeLayoutAB } from "./model.bench.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(2016);
  const T = gemvTiledShape(ctx).T;
  const rounds = env.quick ? 3 : 5;
  for (const m of env.quick ? MODELS.slice(0, 1) : MODELS) {
    const { D, I, H, Hkv, hd, V } = m;
    const Nq = H * hd;
    const Nkv = Hkv * hd;
    const owned: Tensor[] = [];
    const t = randomTensors(ctx, rng, owned);
    // Each matrix row-major f16, in f16 tiles, and in q4_0 tiles (from the same values rounded to f16).
    const both = async (shape: [number, number], label: string): Promise<{ rows: Tensor; tiles: Tensor; q4: Tensor }> => {
      const r = t(shape, "f16", label);
      const u = await toTilesLayout(ctx, r, T);
      const vals = await r.readF32();
      const q = ctx.uploadTiles(toQuantTiles(quantizeMatrix(vals, shape[0], shape[1], "q4_0", label), T), shape, "q4_0", T, `${label}.q4`);
      owned.push(u, q);
      return { rows: r, tiles: u, q4: q };
    };
    const x = t([1, D], "f32", "x");
    const g = t([D], "f16", "g", 0.5, 1.5);
    const wq = await both([Nq, D], "wq"), wk = await both([Nkv, D], "wk"), wv = await both([Nkv, D], "wv");
    const wo = await both([D, Nq], "wo"), wg = await both([I, D], "wgate"), wu = await both([I, D], "wup"), wd = await both([D, I], "wdown");
    const wl = await both([V, D], "wlm");
    const att = t([1, Nq], "f32", "att"), act = t([1, I], "f32", "act"), resid = t([1, D], "f32", "resid");
    const qkv = t([1, Nq + 2 * Nkv], "f32", "qkv"), logits = t([1, V], "f32", "logits");
    const step = t([STEP_WORDS], "u32", "step");
    const s = new Uint32Array(STEP_WORDS);
    s[STEP_ROWS] = 1;
    ctx.write(step, s);
    const norm = { weight: g, eps: 1e-5 };
    const plans: GemvStepPlan[] = [];
    type L = "rows" | "tiles" | "q4";
    const bcast = gemvBcastUsable(ctx);
    const ARMS: { side: string; l: L; xBcast: boolean }[] = [
      { side: "rows", l: "rows", xBcast: false },
      { side: "tiles", l: "tiles", xBcast: false },
      ...(bcast ? [{ side: "tiles xbcast", l: "tiles" as L, xBcast: true }] : []),
      { side: "q4_0 tiles", l: "q4", xBcast: false },
      ...(bcast ? [{ side: "q4_0 tiles xbcast", l: "q4" as L, xBcast: true }] : []),
    ];
    const names: Record<string, string> = { rows: "v1 rows", tiles: "v2 tiles", "tiles xbcast": "v3 tiles xbcast" };
    const arms = async (spec: (l: L) => Parameters<typeof planGemvStep>[1]) => {
      const out = [];
      for (const a of ARMS) {
        const sp = spec(a.l);
        const p = await planGemvStep(ctx, { step, ...sp, force: { ...sp.force, xBcast: a.xBcast } });
        plans.push(p);
        out.push({ label: `${names[a.side] ?? a.side} ${p.label}`, encode: () => p.encode(ctx), layer: a.side });
      }
      return out;
    };
    const sizes = (...ws: { rows: Tensor; tiles: Tensor; q4: Tensor }[]) => ARMS.map((a) => ws.reduce((n, w) => n + w[a.l].byteLength, 0));
    const groups: Group[] = [
      { what: `qkv D=${D} N=${Nq}+${Nkv}+${Nkv}`, bytes: (Nq + 2 * Nkv) * D * 2, armBytes: sizes(wq, wk, wv), arms: await arms((l) => ({ x, w: [wq[l], wk[l], wv[l]], y: qkv, norm })) },
      { what: `o+residual N=${D} K=${Nq}`, bytes: D * Nq * 2, armBytes: sizes(wo), arms: await arms((l) => ({ x: att, w: wo[l], y: resid, epilogue: "residual" })) },
      { what: `gate/up+swiglu D=${D} I=${I}`, bytes: 2 * I * D * 2, armBytes: sizes(wg, wu), arms: await arms((l) => ({ x, w: [wg[l], wu[l]], y: act, epilogue: "swiglu", norm })) },
      { what: `down+residual N=${D} K=${I}`, bytes: D * I * 2, armBytes: sizes(wd), arms: await arms((l) => ({ x: act, w: wd[l], y: resid, epilogue: "residual" })) },
      { what: `lm_head V=${V} D=${D}`, bytes: V * D * 2, armBytes: sizes(wl), arms: await arms((l) => ({ x, w: wl[l], y: logits, norm, lastRow: true })) },
    ];
    const copy = await measureCopy(ctx, 32 << 20, 5);
    env.log(`  gemv_step layout ${m.name}: copy ${copy.gbps.toFixed(1)} GB/s beside, tiles of T=${T}`);
    const layer = await runGroups(ctx, env, m.name, groups, rounds, copy.gbps, rows, "rows", "f16 layout");
    const r = layer.get("rows") ?? NaN;
    env.log(`  ${m.name} one layer's fused GEMVs (sums of the group medians, ×: rows ms / arm ms): v1 rows ${r.toFixed(2)} ms` + ARMS.slice(1).map((a) => `, ${a.side} ${(layer.get(a.side) ?? NaN).toFixed(2)} ms ×${(r / (layer.get(a.side) ?? NaN)).toFixed(2)}`).join(""));
    for (const p of plans) p.dispose();
    for (const o of owned) o.dispose();
  }
  // The whole decode of the 134M shape (--quick: the tiny shape).
  const m = await buildSynthetic(ctx, env.quick ? "tiny" : "llama-134m");
  const session = Session.create(m.decoder, 160);
  try {
    rows.push(...(await decodeLayoutAB(ctx, env, m, session, 64, rng, env.quick ? 3 : 5)));
  } finally {
    session.dispose();
    m.dispose();
  }
  return rows;
}
