// RMSNorm (plain and with the fused residual add), SwiGLU and the embedding gather: streaming
// kernels, reported as GB/s of bytes read + written against the device's copy bandwidth.
// The rmsnorm workgroup-size arms (64 vs 256) run alternately in the same process.
import type { GpuContext } from "../src/gpu/context.js";
import { storeType } from "../src/ops/common.js";
import { rmsnorm, rmsnormKernel, resolveRmsnorm } from "../src/ops/rmsnorm.js";
import { swiglu, swigluKernel, resolveSwiglu } from "../src/ops/swiglu.js";
import { embedding, embeddingKernel } from "../src/ops/embedding.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const samples = env.quick ? 3 : 7;
  const D = env.quick ? 2048 : 4096;
  const wdt = ctx.hasF16 ? "f16" : "f32";
  for (const T of env.quick ? [1, 64] : [1, 128, 512]) {
    const x = ctx.empty([T, D], "f32", "x");
    const r = ctx.empty([T, D], "f32", "r");
    const out = ctx.empty([T, D], "f32", "out");
    const w = ctx.empty([D], wdt, "w");
    for (const t of [x, r, w]) ctx.clear(t);
    for (const residual of [false, true]) {
      for (const wg of [64, 256]) {
        const opts = residual ? { residual: r, out, wg } : { out, wg };
        const tm = await timeGpu(ctx, () => rmsnorm(ctx, x, w, 1e-5, opts).then(() => undefined), { reps: 8, samples });
        const bytes = T * D * 4 * (residual ? 4 : 2) + D * (wdt === "f16" ? 2 : 4);
        const name = rmsnormKernel(resolveRmsnorm(D, storeType(ctx, wdt), opts, ctx.adapter.isSoftware)).name;
        rows.push(row(env, { bench: "norm", variant: name, shape: `T=${T} D=${D} w=${wdt}`, bytes }, tm));
      }
    }
    for (const t of [x, r, out, w]) t.dispose();
  }
  const F = env.quick ? 5632 : 14336;
  for (const T of env.quick ? [1, 64] : [1, 128, 512]) {
    const g = ctx.empty([T, F], "f32", "g");
    const u = ctx.empty([T, F], "f32", "u");
    const o = ctx.empty([T, F], "f32", "o");
    ctx.clear(g);
    ctx.clear(u);
    const tm = await timeGpu(ctx, () => swiglu(ctx, g, u, o).then(() => undefined), { reps: 8, samples });
    rows.push(row(env, { bench: "norm", variant: swigluKernel(resolveSwiglu(T * F)).name, shape: `swiglu T=${T} F=${F}`, bytes: 3 * T * F * 4 }, tm));
    for (const t of [g, u, o]) t.dispose();
  }
  const V = env.quick ? 32000 : 128256;
  const table = ctx.empty([V, D], wdt, "table");
  for (const T of [1, 64]) {
    const ids = ctx.upload(Array.from({ length: T }, (_, i) => (i * 7919) % V), [T], "u32", "ids");
    const out = ctx.empty([T, D], "f32", "emb");
    const tm = await timeGpu(ctx, () => embedding(ctx, ids, table, { out }).then(() => undefined), { reps: 8, samples });
    rows.push(row(env, { bench: "norm", variant: embeddingKernel(storeType(ctx, wdt)).name, shape: `embedding T=${T} V=${V} D=${D}`, bytes: T * D * ((wdt === "f16" ? 2 : 4) + 4) }, tm));
    ids.dispose();
    out.dispose();
  }
  table.dispose();
  return rows;
}
