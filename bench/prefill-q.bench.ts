// Quantized prefill in the tiles layout (what `--quantize` loads on software adapters): the
// resolver's matmul_q tiles kernel (kernels/gemv_q.wgsl, R rows × MB activation rows per
// invocation, vec4 accumulators, x through subgroup broadcasts where preferred) beside its
// register-tile variants and the f16 kernel the same M takes (gemv_bcast: scalar accumulators, W
// chunk shared by 8 rows), on the 134M shape's projections. The variants stay runnable here so a
// new device can be measured again: R×MB = 4×4 (the default), 2×8, 4×8, 1×16.
// M: PREFILL_Q_M (default 32; 8 with --quick). Timing: process CPU time per call (lavapipe's
// worker threads are in the process), arms alternated round by round, medians; extra.ofF16 = ÷
// the f16 arm's CPU time on the same shape (the resolver's f16 pick: gemv_bcast where subgroups
// allow it). Figures, never assertions.
import type { GpuContext } from "../src/gpu/context.js";
import { launchLinear, resolveLinear, toTilesLayout } from "../src/ops/linear.js";
import { launchLinearQ, linearQLabel, linearQXBcast, resolveLinearQ } from "../src/ops/linear_q.js";
import { quantizeMatrix } from "../src/quant/formats.js";
import { toQuantTiles } from "../src/quant/tiles.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

const T = 8;
/** (R, MB) register tiles tried beside the resolver's pick. */
const VARIANTS: readonly [number, number][] = [
  [2, 8],
  [4, 8],
  [1, 16],
];

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(3);
  const M = Number(process.env.PREFILL_Q_M ?? (env.quick ? 8 : 32));
  if (!Number.isInteger(M) || M < 1 || M > 4096) throw new Error(`prefill-q bench: PREFILL_Q_M must be an integer in [1, 4096], got '${process.env.PREFILL_Q_M}'`);
  const shapes: [string, number, number][] = env.quick
    ? [["768x768", 768, 768]]
    : [
        ["q/k/v/o 768x768", 768, 768],
        ["gate/up 2048x768", 2048, 768],
        ["down 768x2048", 768, 2048],
      ];
  const rounds = env.quick ? 2 : 5;
  const reps = env.quick ? 1 : 3;
  const xb = linearQXBcast(ctx, T);
  for (const [name, N, K] of shapes) {
    const wf = rng.fillUniform(N * K);
    const x = ctx.upload(rng.fillUniform(M * K), [M, K], "f32", "bench.x");
    const y = ctx.empty([M, N], "f32", "bench.y");
    const w16r = ctx.upload(f32ArrayToF16(wf), [N, K], "f16", "bench.w16");
    const w16 = await toTilesLayout(ctx, w16r, T);
    w16r.dispose();
    const fp = resolveLinear(ctx, M, N, K, "f16", "auto", false, T);
    type Arm = { label: string; go: () => Promise<void>; cpu: number[] };
    const arms: Arm[] = [{ label: fp.label, go: () => launchLinear(ctx, fp.desc, x, w16, null, y, M, N, K), cpu: [] }];
    const owned = [x, y, w16];
    for (const f of ["q8_0", "q4_0"] as const) {
      const wq = ctx.uploadTiles(toQuantTiles(quantizeMatrix(wf, N, K, f), T), [N, K], f, T, `bench.w${f}`);
      owned.push(wq);
      const base = resolveLinearQ(M, f, "auto", T, xb).desc;
      for (const [r, mb] of [[base.rows, base.mb] as [number, number], ...VARIANTS.filter(([vr, vm]) => vr !== base.rows || vm !== base.mb)]) {
        const desc = { ...base, rows: r, mb };
        arms.push({ label: linearQLabel(desc) + (r === base.rows && mb === base.mb ? " (resolver)" : ""), go: () => launchLinearQ(ctx, desc, x, wq, null, y, M, N, K), cpu: [] });
      }
    }
    for (const a of arms) {
      await a.go(); // compile, warm up
      await ctx.sync();
    }
    for (let round = 0; round < rounds; round++) {
      for (const a of round % 2 ? [...arms].reverse() : arms) {
        await ctx.sync();
        const c0 = process.cpuUsage();
        for (let i = 0; i < reps; i++) await a.go();
        await ctx.sync();
        const c = process.cpuUsage(c0);
        a.cpu.push((c.user + c.system) / 1000 / reps);
      }
    }
    const med = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
    const f16 = med(arms[0]!.cpu);
    for (const a of arms) {
      const c = med(a.cpu);
      const sorted = [...a.cpu].sort((p, q) => p - q);
      env.log(`prefill-q: M=${M} ${name}: ${a.label} ${c.toFixed(2)} CPU-ms (×${(c / f16).toFixed(2)} of f16)`);
      rows.push(row(env, { bench: "prefill-q", variant: a.label, shape: `M=${M} ${name}`, flops: 2 * M * N * K, extra: { cpuMs: c, ofF16: c / f16 } }, { medianMs: c, minMs: sorted[0]!, maxMs: sorted[sorted.length - 1]!, samples: sorted.length }));
    }
    for (const t of owned) t.dispose();
  }
  return rows;
}
