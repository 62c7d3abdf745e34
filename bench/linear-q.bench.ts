// Quantized linear (kernels/gemv_q.wgsl) against the float kernels on the same shapes, alternated
// round by round in one process: decode GEMV (M = 1) f16 `gemv` vs q8_0 / q4_0 `gemv_q`, and a
// prefill block (M = 64) f16 `matmul` vs `matmul_q`. GB/s counts the bytes each arm reads of W
// (f16: 2 per weight; q8_0 1.0625; q4_0 0.5625) plus x and y; extra.speedup is the ratio to the
// f16 arm's median. Each quantized kernel also runs as its BLOCKSUM experiment ("_bs": the scale
// applied once per block). Copy bandwidth is measured beside each shape (the machine's load drifts).
import type { GpuContext } from "../src/gpu/context.js";
import type { QuantDType, Tensor } from "../src/gpu/tensor.js";
import { launchLinear, resolveLinear } from "../src/ops/linear.js";
import { launchLinearQ, linearQLabel, resolveLinearQ } from "../src/ops/linear_q.js";
import { packQuantized, quantBytes, quantizeMatrix } from "../src/quant/formats.js";
import { Rng } from "../src/util/rng.js";
import { f32ArrayToF16 } from "../src/util/f16.js";
import { measureCopy, row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const rng = new Rng(17);
  const shapes: [number, number, number][] = env.quick
    ? [[1, 2048, 2048], [1, 5632, 2048], [64, 1024, 1024]]
    : [[1, 2048, 2048], [1, 5632, 2048], [1, 2048, 5632], [1, 4096, 4096], [1, 11008, 4096], [64, 2048, 2048]];
  const rounds = env.quick ? 3 : 5;
  for (const [M, N, K] of shapes) {
    const wf = rng.fillUniform(N * K);
    const x = ctx.upload(rng.fillUniform(M * K), [M, K], "f32", "bench.x");
    const y = ctx.empty([M, N], "f32", "bench.y");
    const w16 = ctx.upload(f32ArrayToF16(wf), [N, K], "f16", "bench.w16");
    const wq: Partial<Record<QuantDType, Tensor>> = {};
    for (const f of ["q8_0", "q4_0"] as const) wq[f] = ctx.upload(packQuantized(quantizeMatrix(wf, N, K, f)), [N, K], f, `bench.w${f}`);
    const f16Plan = resolveLinear(ctx, M, N, K, "f16");
    const arms = [
      { label: f16Plan.label, wBytes: N * K * 2, go: () => launchLinear(ctx, f16Plan.desc, x, w16, null, y, M, N, K), ms: [] as number[], mins: [] as number[], maxs: [] as number[] },
      ...(["q8_0", "q4_0"] as const).flatMap((f) => [false, true].map((blockSum) => {
        const p0 = resolveLinearQ(M, f);
        const p = { label: linearQLabel({ ...p0.desc, blockSum }), desc: { ...p0.desc, blockSum } };
        return { label: p.label, wBytes: quantBytes(N, K, f).total, go: () => launchLinearQ(ctx, p.desc, x, wq[f]!, null, y, M, N, K), ms: [] as number[], mins: [] as number[], maxs: [] as number[] };
      })),
    ];
    const reps = N * K * M >= 32e6 ? 1 : 4;
    const copy = await measureCopy(ctx, 32 << 20, 5);
    for (let r = 0; r < rounds; r++) {
      for (const arm of r % 2 === 0 ? arms : [...arms].reverse()) {
        const t = await timeGpu(ctx, arm.go, { warmup: r === 0 ? 1 : 0, samples: 3, reps });
        arm.ms.push(t.medianMs);
        arm.mins.push(t.minMs);
        arm.maxs.push(t.maxMs);
      }
    }
    const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
    const baseMs = med(arms[0]!.ms);
    for (const arm of arms) {
      const ms = med(arm.ms);
      const bytes = arm.wBytes + M * K * 4 + M * N * 4;
      const gbps = bytes / (ms / 1e3) / 1e9;
      const t = { medianMs: ms, minMs: Math.min(...arm.mins), maxMs: Math.max(...arm.maxs), samples: arm.ms.length * 3 };
      rows.push(row(env, { bench: "linear-q", variant: arm.label, shape: `A/B M=${M} N=${N} K=${K}`, bytes, flops: 2 * M * N * K, extra: { copyGBps: +copy.gbps.toFixed(2), speedup: +(baseMs / ms).toFixed(2) } }, t));
      env.log(`  A/B ${arm.label.padEnd(30)} M=${M} N=${N} K=${K}: ${ms.toFixed(2)} ms  ${gbps.toFixed(2)} GB/s of its bytes  ×${(baseMs / ms).toFixed(2)} vs f16 (copy ${copy.gbps.toFixed(1)} GB/s beside)`);
    }
    for (const t of [x, y, w16, wq.q8_0, wq.q4_0]) t?.dispose();
  }
  return rows;
}
