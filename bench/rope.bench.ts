// RoPE (in place over q or k rows) and the KV-cache append: both streaming kernels, reported as
// GB/s of bytes read + written against copy bandwidth. Shapes: one decode token and a 512-token
// prefill with Llama-7B heads (32 × 128) and TinyLlama k heads (4 × 64).
import type { GpuContext } from "../src/gpu/context.js";
import { storeType } from "../src/ops/common.js";
import { rope, ropeVariant } from "../src/ops/rope.js";
import { kvAppend, kvAppendVariant } from "../src/ops/attention.js";
import { row, timeGpu, type BenchEnv, type BenchRow } from "./harness.js";

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const cases = env.quick ? [{ T: 1, H: 32, hd: 128 }, { T: 64, H: 4, hd: 64 }] : [{ T: 1, H: 32, hd: 128 }, { T: 512, H: 32, hd: 128 }, { T: 512, H: 4, hd: 64 }];
  for (const { T, H, hd } of cases) {
    const x = ctx.empty([T, H, hd], "f32", "x");
    ctx.clear(x);
    const pos = ctx.upload(Uint32Array.from({ length: T }, (_, i) => 100 + i), [T], "u32", "positions");
    const inv = ctx.upload(Float32Array.from({ length: hd / 2 }, (_, i) => 10000 ** (-(2 * i) / hd)), [hd / 2], "f32", "inv_freq");
    const t = await timeGpu(ctx, () => rope(ctx, x, pos, inv), { reps: 4, samples: env.quick ? 3 : 7 });
    rows.push(row(env, { bench: "rope", variant: ropeVariant().name, shape: `T=${T} H=${H} hd=${hd}`, bytes: 2 * T * H * hd * 4 }, t));
    for (const cache of ["f16", "f32"] as const) {
      if (cache === "f16" && !ctx.hasF16) continue;
      const S = T + 128;
      const kc = ctx.empty([H, S, hd], cache, "kCache");
      const vc = ctx.empty([H, S, hd], cache, "vCache");
      const ta = await timeGpu(ctx, () => kvAppend(ctx, x, x, kc, vc, pos), { reps: 4, samples: env.quick ? 3 : 7 });
      const bytes = 2 * T * H * hd * (4 + (cache === "f16" ? 2 : 4));
      rows.push(row(env, { bench: "rope", variant: kvAppendVariant(storeType(ctx, cache)).name, shape: `kv_append T=${T} Hkv=${H} hd=${hd} ${cache}`, bytes }, ta));
      kc.dispose();
      vc.dispose();
    }
    x.dispose();
    pos.dispose();
    inv.dispose();
  }
  return rows;
}
