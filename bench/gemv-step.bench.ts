// gemv_step (kernels/gemv_step.wgsl): the fused decode GEMVs against the unfused sequences of
// existing ops they replace, A/B arms alternated round by round in one process, on the decode
// shapes (T = 1 row from a step state, f16 weights) of the Llama 134M model (D=576, I=1536, H=9,
// Hkv=3, hd=64, V=49152) and TinyLlama 1.1B (D=2048, I=5632, H=32, Hkv=4, hd=64, V=32000):
//   qkv:     rmsnorm + linear q + linear k + linear v      vs gemv_step(norm; q,k,v concatenated)
//   o:       linear + add                                   vs gemv_step(residual)
//   gate/up: rmsnorm + linear gate + linear up + swiglu     vs gemv_step(norm; swiglu)
//   down:    linear + add                                   vs gemv_step(residual)
//   lm_head: rmsnorm + linear                               vs gemv_step(norm; last row)
// Extra arms: each norm path forced (src/ops/gemv-step.ts GemvStepNormPath), and for qkv one
// matrix holding q,k,v concatenated (a bench-only copy), which measures the workgroup-uniform
// matrix switch (same rows, same work, no switch). Unfused linears use the resolver's choice
// without a tiled copy (gemv, the rows design); fused arms encode prepared plans. Each arm's
// figure is the median of its round medians; extra.speedup = unfused ms / arm ms.
// Quantized weights (benchQuant, run after the float groups): the fused GEMVs of one layer (and
// lm_head) with q8_0 and q4_0 W against the same fused GEMVs with f16 W, on the 134M shape only
// (quick mode too): extra.speedup = fused f16 ms / fused q ms; bytes = the weights' packed bytes.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { linear, toTilesLayout } from "../src/ops/linear.js";
import { rmsnorm } from "../src/ops/rmsnorm.js";
import { swiglu } from "../src/ops/swiglu.js";
import { add } from "../src/ops/elementwise.js";
import { planGemvStep, type GemvStepPlan } from "../src/ops/gemv-step.js";
import { STEP_ROWS, STEP_WORDS } from "../src/ops/step-state.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { packQuantized, quantizeMatrix, type QuantFormat } from "../src/quant/formats.js";
import { measureCopy, row, type BenchEnv, type BenchRow } from "./harness.js";
import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time (ms) consumed so far by this process's threads other than the main one, from /proc
 * (Linux; null elsewhere). With lavapipe that is the software GPU's compute workers (unnamed
 * threads; the "llvmpipe-N" ones stay idle for compute; Node's own helpers add ~10 ms per run);
 * the main thread, which encodes and busy-polls while waiting, is left out. On a machine shared
 * with other jobs wall time swings ±50% with the load; the CPU time the driver spends on a launch
 * much less, so the A/B below reports both (extra.cpuMs, extra.cpuSpeedup). On a hardware GPU the
 * figure is meaningless (printed, not used).
 */
function driverCpuMs(): number | null {
  try {
    let ticks = 0;
    const main = String(process.pid);
    for (const tid of readdirSync("/proc/self/task")) {
      if (tid === main) continue;
      const f = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
      ticks += Number(rest[11]) + Number(rest[12]); // utime (14), stime (15)
    }
    return ticks * 10; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

/** Wall and lavapipe CPU ms per launch of `encode`, over `reps` launches in one submit. */
async function sample(ctx: GpuContext, encode: () => Promise<void> | void, reps: number): Promise<{ wall: number; cpu: number | null }> {
  await ctx.sync();
  const c0 = driverCpuMs();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await encode();
  await ctx.sync();
  const wall = (performance.now() - t0) / reps;
  const c1 = driverCpuMs();
  return { wall, cpu: c0 === null || c1 === null ? null : (c1 - c0) / reps };
}

export interface ModelShape {
  name: string;
  D: number;
  I: number;
  H: number;
  Hkv: number;
  hd: number;
  V: number;
}
export const MODELS: ModelShape[] = [
  { name: "llama-134M", D: 576, I: 1536, H: 9, Hkv: 3, hd: 64, V: 49152 },
  { name: "tinyllama-1.1B", D: 2048, I: 5632, H: 32, Hkv: 4, hd: 64, V: 32000 },
];

export interface Arm {
  label: string;
  encode: () => Promise<void> | void;
  /** Counted in the per-layer sum as this side. */
  layer?: string;
}
export interface Group {
  what: string;
  /** Bytes of weights read (the figure GB/s is computed from). */
  bytes: number;
  /** Per arm, when the arms read different bytes (quantized weights). */
  armBytes?: number[];
  arms: Arm[];
  /** Live rows (default 1). */
  T?: number;
}

/** A maker of random tensors (u32 ones left uninitialised) that records each in `owned` for disposal. */
export function randomTensors(ctx: GpuContext, rng: Rng, owned: Tensor[]): (shape: number[], dtype: "f32" | "f16" | "u32", label: string, lo?: number, hi?: number) => Tensor {
  return (shape, dtype, label, lo = -1, hi = 1) => {
    const x = ctx.empty(shape, dtype, label);
    if (dtype !== "u32") fillRandom(ctx, x, rng, lo, hi);
    owned.push(x);
    return x;
  };
}

export function fillRandom(ctx: GpuContext, t: Tensor, rng: Rng, lo = -1, hi = 1): void {
  const block = Math.min(t.numel, 1 << 20);
  const data = rng.fillUniform(block, lo, hi);
  const src = t.dtype === "f16" ? f32ArrayToF16(data) : data;
  for (let off = 0; off < t.numel; off += block) ctx.write(t, src.subarray(0, Math.min(block, t.numel - off)), off);
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(1616);
  const models = env.quick ? MODELS.slice(0, 1) : MODELS;
  const rounds = env.quick ? 3 : 5;
  for (const m of models) {
    const { D, I, H, Hkv, hd, V } = m;
    const Nq = H * hd;
    const Nkv = Hkv * hd;
    const Nqkv = Nq + 2 * Nkv;
    const eps = 1e-5;
    const owned: Tensor[] = [];
    const t = randomTensors(ctx, rng, owned);
    const x = t([1, D], "f32", "x");
    const g = t([D], "f16", "g", 0.5, 1.5);
    const wq = t([Nq, D], "f16", "wq");
    const wk = t([Nkv, D], "f16", "wk");
    const wv = t([Nkv, D], "f16", "wv");
    const wqkv = t([Nqkv, D], "f16", "wqkv"); // bench-only: the switch-cost arm
    const wo = t([D, Nq], "f16", "wo");
    const wg = t([I, D], "f16", "wgate");
    const wu = t([I, D], "f16", "wup");
    const wd = t([D, I], "f16", "wdown");
    const wl = t([V, D], "f16", "wlm");
    const att = t([1, Nq], "f32", "att");
    const act = t([1, I], "f32", "act");
    const resid = t([1, D], "f32", "resid");
    const h = t([1, D], "f32", "h");
    const q = t([1, Nq], "f32", "q");
    const k = t([1, Nkv], "f32", "k");
    const v = t([1, Nkv], "f32", "v");
    const qkv = t([1, Nqkv], "f32", "qkv");
    const o = t([1, D], "f32", "o");
    const gate = t([1, I], "f32", "gate");
    const up = t([1, I], "f32", "up");
    const logits = t([1, V], "f32", "logits");
    const step = t([STEP_WORDS], "u32", "step");
    const s = new Uint32Array(STEP_WORDS);
    s[STEP_ROWS] = 1;
    ctx.write(step, s);
    const norm = { weight: g, eps };
    const plans: GemvStepPlan[] = [];
    const plan = async (spec: Parameters<typeof planGemvStep>[1]) => {
      const p = await planGemvStep(ctx, { step, ...spec });
      plans.push(p);
      return p;
    };
    const fused = (label: string, p: GemvStepPlan): Arm => ({ label: `${label} ${p.label}`, encode: () => p.encode(ctx), ...(label === "fused" ? { layer: "fused" as const } : {}) });
    const groups: Group[] = [
      {
        what: `qkv D=${D} N=${Nq}+${Nkv}+${Nkv}`,
        bytes: Nqkv * D * 2,
        arms: [
          {
            label: "unfused rmsnorm+3×linear",
            encode: async () => {
              await rmsnorm(ctx, x, g, eps, { out: h });
              await linear(ctx, h, wq, { out: q });
              await linear(ctx, h, wk, { out: k });
              await linear(ctx, h, wv, { out: v });
            },
          },
          fused("fused", await plan({ x, w: [wq, wk, wv], y: qkv, norm })),
          fused("norm loop", await plan({ x, w: [wq, wk, wv], y: qkv, norm, force: { normPath: "loop" } })),
          fused("norm prepass", await plan({ x, w: [wq, wk, wv], y: qkv, norm, force: { normPath: "prepass" } })),
          fused("norm shared", await plan({ x, w: [wq, wk, wv], y: qkv, norm, force: { normPath: "shared" } })),
          fused("one matrix (no switch)", await plan({ x, w: wqkv, y: qkv, norm })),
        ],
      },
      {
        what: `o+residual N=${D} K=${Nq}`,
        bytes: D * Nq * 2,
        arms: [
          {
            label: "unfused linear+add",
            encode: async () => {
              await linear(ctx, att, wo, { out: o });
              await add(ctx, resid, o, h);
            },
          },
          fused("fused", await plan({ x: att, w: wo, y: resid, epilogue: "residual" })),
        ],
      },
      {
        what: `gate/up+swiglu D=${D} I=${I}`,
        bytes: 2 * I * D * 2,
        arms: [
          {
            label: "unfused rmsnorm+2×linear+swiglu",
            encode: async () => {
              await rmsnorm(ctx, x, g, eps, { out: h });
              await linear(ctx, h, wg, { out: gate });
              await linear(ctx, h, wu, { out: up });
              await swiglu(ctx, gate, up, act);
            },
          },
          fused("fused", await plan({ x, w: [wg, wu], y: act, epilogue: "swiglu", norm })),
          fused("norm loop", await plan({ x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop" } })),
          fused("norm prepass", await plan({ x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "prepass" } })),
          fused("norm shared", await plan({ x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "shared" } })),
          fused("joint loop", await plan({ x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { swigluJoint: true } })),
        ],
      },
      {
        what: `down+residual N=${D} K=${I}`,
        bytes: D * I * 2,
        arms: [
          {
            label: "unfused linear+add",
            encode: async () => {
              await linear(ctx, act, wd, { out: o });
              await add(ctx, resid, o, h);
            },
          },
          fused("fused", await plan({ x: act, w: wd, y: resid, epilogue: "residual" })),
        ],
      },
      {
        what: `lm_head V=${V} D=${D}`,
        bytes: V * D * 2,
        arms: [
          {
            label: "unfused rmsnorm+linear",
            encode: async () => {
              await rmsnorm(ctx, x, g, eps, { out: h });
              await linear(ctx, h, wl, { out: logits });
            },
          },
          fused("fused", await plan({ x, w: wl, y: logits, norm, lastRow: true })),
          fused("norm loop", await plan({ x, w: wl, y: logits, norm, lastRow: true, force: { normPath: "loop" } })),
          fused("norm prepass", await plan({ x, w: wl, y: logits, norm, lastRow: true, force: { normPath: "prepass" } })),
        ],
      },
    ];
    const copy = await measureCopy(ctx, 32 << 20, 5);
    env.log(`  gemv_step ${m.name}: copy ${copy.gbps.toFixed(1)} GB/s beside`);
    const layerMs = await runGroups(ctx, env, m.name, groups, rounds, copy.gbps, rows, "unfused", "f16");
    const un = layerMs.get("unfused") ?? NaN;
    const fu = layerMs.get("fused") ?? NaN;
    const unCpu = layerMs.get("unfusedCpu") ?? NaN;
    const fuCpu = layerMs.get("fusedCpu") ?? NaN;
    env.log(`  ${m.name} one layer's GEMVs (sums of the group medians): wall unfused ${un.toFixed(2)} ms, fused ${fu.toFixed(2)} ms, ×${(un / fu).toFixed(2)}; driver CPU ${unCpu.toFixed(2)} vs ${fuCpu.toFixed(2)} ms, ×${(unCpu / fuCpu).toFixed(2)}`);
    rows.push(row(env, { bench: "gemv-step", variant: "fused layer (sum of group medians)", shape: `${m.name} layer T=1 f16`, extra: { unfusedMs: +un.toFixed(3), speedup: +(un / fu).toFixed(3), unfusedCpuMs: +unCpu.toFixed(3), fusedCpuMs: +fuCpu.toFixed(3), cpuSpeedup: +(unCpu / fuCpu).toFixed(3) } }, { medianMs: fu, minMs: fu, maxMs: fu, samples: 1 }));
    for (const p of plans) p.dispose();
    for (const x2 of owned) x2.dispose();
  }
  rows.push(...(await benchQuant(ctx, env)));
  rows.push(...(await benchInjectionRows(ctx, env)));
  return rows;
}

/**
 * Fused gemv_step with q8_0 / q4_0 W vs fused with f16 W (the decode step's five GEMVs, T = 1 from
 * a step state, resolver's choices) on the 134M shape; lm_head too (float by policy, measured for
 * the record). extra.speedup = f16 ms / arm ms.
 */
export async function benchQuant(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(1717);
  const m = MODELS[0]!;
  const { D, I, H, Hkv, hd, V } = m;
  const Nq = H * hd;
  const Nkv = Hkv * hd;
  const eps = 1e-5;
  const owned: Tensor[] = [];
  const f32 = (shape: number[], label: string, lo = -1, hi = 1): Tensor => {
    const x = ctx.empty(shape, "f32", label);
    fillRandom(ctx, x, rng, lo, hi);
    owned.push(x);
    return x;
  };
  const FORMATS = ["f16", "q8_0", "q4_0"] as const;
  type F = (typeof FORMATS)[number];
  // One random matrix per role, stored in each format.
  const mats = (N: number, K: number, label: string): Record<F, Tensor> => {
    const v = rng.fillUniform(N * K, -0.1, 0.1);
    const out = {} as Record<F, Tensor>;
    out.f16 = ctx.upload(f32ArrayToF16(v), [N, K], "f16", `${label}.f16`);
    for (const q of ["q8_0", "q4_0"] as QuantFormat[]) out[q] = ctx.upload(packQuantized(quantizeMatrix(v, N, K, q, label)), [N, K], q, `${label}.${q}`);
    owned.push(...Object.values(out));
    return out;
  };
  const x = f32([1, D], "x");
  const g = ctx.empty([D], "f16", "g");
  fillRandom(ctx, g, rng, 0.5, 1.5);
  owned.push(g);
  const step = ctx.empty([STEP_WORDS], "u32", "step");
  owned.push(step);
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_ROWS] = 1;
  ctx.write(step, s);
  const norm = { weight: g, eps };
  const wq = mats(Nq, D, "wq"), wk = mats(Nkv, D, "wk"), wv = mats(Nkv, D, "wv");
  const wo = mats(D, Nq, "wo"), wg = mats(I, D, "wgate"), wu = mats(I, D, "wup"), wd = mats(D, I, "wdown");
  const wl = mats(V, D, "wlm");
  const att = f32([1, Nq], "att"), act = f32([1, I], "act"), resid = f32([1, D], "resid");
  const qkv = f32([1, Nq + 2 * Nkv], "qkv"), logits = f32([1, V], "logits");
  const plans: GemvStepPlan[] = [];
  const arms = async (spec: (f: F) => Parameters<typeof planGemvStep>[1]): Promise<Arm[]> => {
    const out: Arm[] = [];
    for (const f of FORMATS) {
      for (const blockSum of f === "f16" ? [undefined] : [false, true]) {
        const sp = spec(f);
        const p = await planGemvStep(ctx, { step, ...sp, force: { ...sp.force, ...(blockSum !== undefined ? { blockSum } : {}) } });
        plans.push(p);
        const side = `${f}${blockSum ? " blocksum" : ""}`;
        out.push({ label: `fused ${side} ${p.label}`, encode: () => p.encode(ctx), layer: side });
      }
    }
    return out;
  };
  const bytesOf = (...ts: Record<F, Tensor>[]) => FORMATS.flatMap((f) => (f === "f16" ? [f] : [f, f])).map((f) => ts.reduce((a, t) => a + t[f].byteLength, 0));
  const groups: Group[] = [
    { what: `qkv D=${D} N=${Nq}+${Nkv}+${Nkv}`, bytes: 0, armBytes: bytesOf(wq, wk, wv), arms: await arms((f) => ({ x, w: [wq[f], wk[f], wv[f]], y: qkv, norm })) },
    { what: `o+residual N=${D} K=${Nq}`, bytes: 0, armBytes: bytesOf(wo), arms: await arms((f) => ({ x: att, w: wo[f], y: resid, epilogue: "residual" })) },
    { what: `gate/up+swiglu D=${D} I=${I}`, bytes: 0, armBytes: bytesOf(wg, wu), arms: await arms((f) => ({ x, w: [wg[f], wu[f]], y: act, epilogue: "swiglu", norm })) },
    { what: `down+residual N=${D} K=${I}`, bytes: 0, armBytes: bytesOf(wd), arms: await arms((f) => ({ x: act, w: wd[f], y: resid, epilogue: "residual" })) },
    { what: `lm_head V=${V} D=${D}`, bytes: 0, armBytes: bytesOf(wl), arms: await arms((f) => ({ x, w: wl[f], y: logits, norm, lastRow: true })) },
  ];
  for (const grp of groups) grp.bytes = grp.armBytes![0]!;
  const copy = await measureCopy(ctx, 32 << 20, 5);
  env.log(`  gemv_step quantized ${m.name}: copy ${copy.gbps.toFixed(1)} GB/s beside`);
  const layer = await runGroups(ctx, env, m.name, groups, env.quick ? 3 : 5, copy.gbps, rows, "f16", "f16|q8_0|q4_0");
  const f16 = layer.get("f16") ?? NaN;
  const f16Cpu = layer.get("f16Cpu") ?? NaN;
  for (const q of ["q8_0", "q8_0 blocksum", "q4_0", "q4_0 blocksum"]) {
    const ms = layer.get(q) ?? NaN;
    const cpu = layer.get(q + "Cpu") ?? NaN;
    env.log(`  ${m.name} one layer's fused GEMVs (sums of the group medians): wall f16 ${f16.toFixed(2)} ms, ${q} ${ms.toFixed(2)} ms, ×${(f16 / ms).toFixed(2)}; driver CPU ${f16Cpu.toFixed(2)} vs ${cpu.toFixed(2)} ms, ×${(f16Cpu / cpu).toFixed(2)}`);
    rows.push(row(env, { bench: "gemv-step", variant: `fused ${q} layer (sum of group medians)`, shape: `${m.name} layer T=1 ${q} vs f16`, extra: { f16Ms: +f16.toFixed(3), speedup: +(f16 / ms).toFixed(3), f16CpuMs: +f16Cpu.toFixed(3), cpuMs: +cpu.toFixed(3), cpuSpeedup: +(f16Cpu / cpu).toFixed(3) } }, { medianMs: ms, minMs: ms, maxMs: ms, samples: 1 }));
  }
  for (const p of plans) p.dispose();
  for (const t of owned) t.dispose();
  return rows;
}

/**
 * Measures groups of arms (arm 0 the baseline, alternated round by round), logs and appends rows;
 * returns per-layer sums of the group medians (lm_head excluded) keyed by side (baseSide for arm
 * 0, arm.layer for the others) and side + "Cpu".
 */
export async function runGroups(ctx: GpuContext, env: BenchEnv, model: string, groups: Group[], rounds: number, copyGBps: number, rows: BenchRow[], baseSide: string, dtype: string): Promise<Map<string, number>> {
  const layerMs = new Map<string, number>();
  for (const grp of groups) {
    // Launches per sample: enough for ~150 ms of driver CPU time (10 ms clock ticks), found by
    // growing the count on the slowest arm (also the pipelines' first use).
    let reps = 1;
    for (const arm of grp.arms) await sample(ctx, arm.encode, 1);
    for (;;) {
      let most = 0;
      for (const arm of grp.arms) {
        const w = await sample(ctx, arm.encode, reps);
        most = Math.max(most, (w.cpu ?? w.wall) * reps);
      }
      if (most >= 60 || reps >= 256) {
        reps = Math.max(1, Math.min(512, Math.ceil((reps * 150) / Math.max(most, 1))));
        break;
      }
      reps *= 4;
    }
    const stats = grp.arms.map(() => ({ walls: [] as number[], cpus: [] as number[] }));
    for (let r = 0; r < rounds; r++) {
      const order = grp.arms.map((_, i) => i);
      if (r % 2 === 1) order.reverse();
      for (const i of order) {
        const t = await sample(ctx, grp.arms[i]!.encode, reps);
        stats[i]!.walls.push(t.wall);
        if (t.cpu !== null) stats[i]!.cpus.push(t.cpu);
      }
    }
    const med = (a: number[]) => (a.length ? [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]! : NaN);
    const base = med(stats[0]!.walls);
    const baseCpu = med(stats[0]!.cpus);
    grp.arms.forEach((arm, i) => {
      const ms = med(stats[i]!.walls);
      const cpu = med(stats[i]!.cpus);
      const tm = { medianMs: ms, minMs: Math.min(...stats[i]!.walls), maxMs: Math.max(...stats[i]!.walls), samples: stats[i]!.walls.length };
      rows.push(
        row(env, {
          bench: "gemv-step",
          variant: arm.label,
          shape: `${model} ${grp.what} T=${grp.T ?? 1} ${dtype}`,
          bytes: grp.armBytes?.[i] ?? grp.bytes,
          extra: { speedup: +(base / ms).toFixed(3), cpuMs: +cpu.toFixed(4), cpuSpeedup: +(baseCpu / cpu).toFixed(3), reps, copyGBps: +copyGBps.toFixed(2), ofCopy: +((grp.armBytes?.[i] ?? grp.bytes) / (ms / 1e3) / 1e9 / copyGBps).toFixed(3) },
        }, tm),
      );
      env.log(`  ${model} ${grp.what.padEnd(34)} ${arm.label.padEnd(72)} wall ${ms.toFixed(3).padStart(8)} ms ×${(base / ms).toFixed(2)}  driver CPU ${cpu.toFixed(3).padStart(8)} ms ×${(baseCpu / cpu).toFixed(2)} vs ${baseSide}`);
      const side = i === 0 ? baseSide : arm.layer;
      if (!grp.what.startsWith("lm_head") && side) {
        layerMs.set(side, (layerMs.get(side) ?? 0) + ms);
        layerMs.set(side + "Cpu", (layerMs.get(side + "Cpu") ?? 0) + cpu);
      }
    });
  }
  return layerMs;
}

/**
 * T > 1 rows from the step state, as an injection's forward in the decode step runs them (the
 * demo's injections are 18–32 rows): the 134M shape's gate/up (norm, swiglu) and down (residual)
 * with f16 W, the per-row loop (every row walks W) against the forced row blocks (rowBlock 2 and 4,
 * kernels/gemv_step.wgsl BLOCKED), row-major and in tiles of 8 (the x broadcast on), beside what a
 * prefill of the same rows runs (rmsnorm, the resolver's linear for 26 rows on row-major W,
 * swiglu / add). extra.speedup = prefill ops ms / arm ms.
 */
async function benchInjectionRows(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const { name, D, I } = MODELS[0]!;
  const T = 26;
  const owned: Tensor[] = [];
  const t = randomTensors(ctx, new Rng(1626), owned);
  const x = t([T, D], "f32", "x");
  const g = t([D], "f16", "g", 0.5, 1.5);
  const wg = t([I, D], "f16", "wgate");
  const wu = t([I, D], "f16", "wup");
  const wd = t([D, I], "f16", "wdown");
  const h = t([T, D], "f32", "h");
  const gate = t([T, I], "f32", "gate");
  const up = t([T, I], "f32", "up");
  const act = t([T, I], "f32", "act");
  const resid = t([T, D], "f32", "resid");
  const o = t([T, D], "f32", "o");
  const step = t([STEP_WORDS], "u32", "step");
  const s = new Uint32Array(STEP_WORDS);
  s[STEP_ROWS] = T;
  ctx.write(step, s);
  const norm = { weight: g, eps: 1e-5 };
  // the same weights in the tiles layout the CLI loads on lavapipe (with the x broadcast by default)
  const [tg, tu, td] = [await toTilesLayout(ctx, wg, 8), await toTilesLayout(ctx, wu, 8), await toTilesLayout(ctx, wd, 8)];
  owned.push(tg, tu, td);
  const plans: GemvStepPlan[] = [];
  const arm = async (label: string, spec: Parameters<typeof planGemvStep>[1]): Promise<Arm> => {
    const p = await planGemvStep(ctx, { step, ...spec });
    plans.push(p);
    return { label: `${label} ${p.label}`, encode: () => p.encode(ctx) };
  };
  const groups: Group[] = [
    {
      what: `gate/up+swiglu D=${D} I=${I}`,
      bytes: 2 * I * D * 2,
      T,
      arms: [
        {
          label: "prefill ops rmsnorm+2×linear+swiglu",
          encode: async () => {
            await rmsnorm(ctx, x, g, 1e-5, { out: h });
            await linear(ctx, h, wg, { out: gate });
            await linear(ctx, h, wu, { out: up });
            await swiglu(ctx, gate, up, act);
          },
        },
        await arm("per row", { x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop", rowBlock: 0 } }),
        await arm("rowBlock 2", { x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop", rowBlock: 2 } }),
        await arm("rowBlock 4", { x, w: [wg, wu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop", rowBlock: 4 } }),
        await arm("tiles per row", { x, w: [tg, tu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop", rowBlock: 0 } }),
        await arm("tiles rowBlock 4", { x, w: [tg, tu], y: act, epilogue: "swiglu", norm, force: { normPath: "loop", rowBlock: 4 } }),
      ],
    },
    {
      what: `down+residual N=${D} K=${I}`,
      bytes: D * I * 2,
      T,
      arms: [
        {
          label: "prefill ops linear+add",
          encode: async () => {
            await linear(ctx, act, wd, { out: o });
            await add(ctx, resid, o, h);
          },
        },
        await arm("per row", { x: act, w: wd, y: resid, epilogue: "residual", force: { rowBlock: 0 } }),
        await arm("rowBlock 2", { x: act, w: wd, y: resid, epilogue: "residual", force: { rowBlock: 2 } }),
        await arm("rowBlock 4", { x: act, w: wd, y: resid, epilogue: "residual", force: { rowBlock: 4 } }),
        await arm("tiles per row", { x: act, w: td, y: resid, epilogue: "residual", force: { rowBlock: 0 } }),
        await arm("tiles rowBlock 4", { x: act, w: td, y: resid, epilogue: "residual", force: { rowBlock: 4 } }),
      ],
    },
  ];
  const copy = await measureCopy(ctx, 32 << 20, 5);
  await runGroups(ctx, env, name, groups, env.quick ? 3 : 5, copy.gbps, rows, "prefill ops", "f16");
  for (const p of plans) p.dispose();
  for (const x2 of owned) x2.dispose();
  return rows;
}
