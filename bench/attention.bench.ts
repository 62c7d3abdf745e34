// Attention: decode (T = 1 over a long KV cache, split-K + combine) reported as GB/s of KV bytes
// read (each cache row of the range counted once, K and V), against copy bandwidth; causal
// prefill reported as GFLOP/s (4·H·hd per query-key pair: QK and PV). Shapes: Llama-7B-like heads
// (32 heads, hd 128) and TinyLlama (32 heads, 4 kv heads, hd 64). Variant = the resolver's label.
import type { GpuContext } from "../src/gpu/context.js";
import { attention, causalRanges, resolveAttention, type CacheDType } from "../src/ops/attention.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

interface Shape {
  name: string;
  H: number;
  Hkv: number;
  hd: number;
}
const LLAMA7B: Shape = { name: "llama7b", H: 32, Hkv: 32, hd: 128 };
const TINYLLAMA: Shape = { name: "tinyllama", H: 32, Hkv: 4, hd: 64 };

async function one(ctx: GpuContext, env: BenchEnv, s: Shape, cache: CacheDType, T: number, p0: number, samples: number): Promise<BenchRow> {
  const S = p0 + T;
  const q = ctx.empty([T, s.H, s.hd], "f32", "q");
  const kc = ctx.empty([s.Hkv, S, s.hd], cache, "kCache");
  const vc = ctx.empty([s.Hkv, S, s.hd], cache, "vCache");
  for (const t of [q, kc, vc]) ctx.clear(t);
  const ranges = ctx.upload(causalRanges(T, p0), [T, 2], "u32", "ranges");
  const out = ctx.empty([T, s.H, s.hd], "f32", "out");
  const plan = resolveAttention(ctx, { T, H: s.H, Hkv: s.Hkv, hd: s.hd, S, cache }, {});
  const t = await timeGpu(ctx, () => attention(ctx, q, kc, vc, ranges, { out }).then(() => undefined), { reps: T === 1 ? 4 : 1, samples });
  const keys = T * p0 + (T * (T + 1)) / 2; // Σ over rows of the range length
  const bytes = 2 * s.Hkv * S * s.hd * (cache === "f16" ? 2 : 4);
  const flops = 4 * s.H * s.hd * keys;
  for (const x of [q, kc, vc, ranges, out]) x.dispose();
  const shape = `${s.name} T=${T} ctx=${S} ${cache}`;
  return T === 1
    ? row(env, { bench: "attention", variant: plan.label, shape, bytes, flops }, t)
    : row(env, { bench: "attention", variant: plan.label, shape, flops }, t);
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const samples = env.quick ? 3 : 5;
  const caches: CacheDType[] = ctx.hasF16 ? ["f16", "f32"] : ["f32"];
  const contexts = env.quick ? [256, 1024] : [256, 1024, 4096];
  for (const cache of env.quick ? caches.slice(0, 1) : caches) {
    for (const s of [TINYLLAMA, LLAMA7B]) {
      for (const L of contexts) rows.push(await one(ctx, env, s, cache, 1, L - 1, samples));
    }
  }
  const prefills = env.quick ? [[TINYLLAMA, 64]] as const : ([[TINYLLAMA, 128], [TINYLLAMA, 512], [LLAMA7B, 128], [LLAMA7B, 512]] as const);
  for (const [s, T] of prefills) rows.push(await one(ctx, env, s, caches[0]!, T, 0, samples));
  return rows;
}
