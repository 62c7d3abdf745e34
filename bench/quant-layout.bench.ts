// Decode speed per weight format and layout (issues 16/17): the synthetic Llama 134M shape (--quick:
// "tiny") decoded with its projections as f16 / q8_0 / q4_0 in the tiles layout (src/gpu/tensor.ts
// TilesLayout; quantized: src/quant/tiles.ts) and in the rows layout (row-major f16, split-blocks
// quantized), arms alternated round by round in one process (each round runs every arm once, the
// order rotated), as loadDecoder would lay them out: with tiles, lm_head in f16 tiles too; with rows,
// row-major. The same f16 weights are quantized on the host (quantizeMatrix: GGUF reference
// rounding) once per format, so q8_0/q4_0 rows and tiles hold the same blocks.
// extra.speedup = f16-tiles ms / arm ms; extra.vsQ4Rows = q4_0-rows ms / arm ms; extra.weightMB =
// the GPU bytes of the projections and lm_head the arm reads per token.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { Session } from "../src/model/session.js";
import { Decoder, type LayerWeights } from "../src/model/decoder.js";
import { gemvTiledShape, toTilesLayout } from "../src/ops/linear.js";
import { packQuantized, quantizeMatrix, type QuantFormat, type QuantizedMatrix } from "../src/quant/formats.js";
import { toQuantTiles } from "../src/quant/tiles.js";
import { f16ArrayToF32 } from "../src/util/f16.js";
import { Rng } from "../src/util/rng.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";
import { buildSynthetic } from "./synthetic.js";

type Format = "f16" | QuantFormat;
interface Arm {
  name: string;
  format: Format;
  layout: "rows" | "tiles";
}
const ARMS: readonly Arm[] = [
  { name: "f16 tiles", format: "f16", layout: "tiles" },
  { name: "q8_0 tiles", format: "q8_0", layout: "tiles" },
  { name: "q4_0 tiles", format: "q4_0", layout: "tiles" },
  { name: "q4_0 rows", format: "q4_0", layout: "rows" },
  { name: "q8_0 rows", format: "q8_0", layout: "rows" },
  { name: "f16 rows", format: "f16", layout: "rows" },
];
const PROJ = ["q", "k", "v", "o", "gate", "up", "down"] as const;

function median(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)]!, minMs: s[0]!, maxMs: s[s.length - 1]!, samples: s.length };
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rng = new Rng(1717);
  const m = await buildSynthetic(ctx, env.quick ? "tiny" : "llama-134m");
  const T = gemvTiledShape(ctx).T;
  const w = m.decoder.weights;
  const made: Tensor[] = [];
  const keep = <X extends Tensor>(t: X): X => (made.push(t), t);
  const sessions: Session[] = [];
  try {
    // Host copies of each projection quantized once per format (rows and tiles share the blocks).
    const quantized = new Map<string, QuantizedMatrix>();
    const quant = async (t: Tensor, format: QuantFormat): Promise<QuantizedMatrix> => {
      const key = `${t.label}:${format}`;
      let q = quantized.get(key);
      if (!q) {
        if (t.dtype !== "f16" && t.dtype !== "f32") throw new Error(`quant-layout: '${t.label}' is ${t.dtype}`);
        const vals = t.dtype === "f16" ? f16ArrayToF32((await t.read()) as Uint16Array) : ((await t.read()) as Float32Array);
        q = quantizeMatrix(vals, t.shape[0]!, t.shape[1]!, format, t.label);
        quantized.set(key, q);
      }
      return q;
    };
    const lay = async (t: Tensor, a: Arm): Promise<Tensor> => {
      if (a.format === "f16") return a.layout === "tiles" ? keep(await toTilesLayout(ctx, t, T)) : t;
      const q = await quant(t, a.format);
      const shape = t.shape as [number, number];
      return keep(a.layout === "tiles" ? ctx.uploadTiles(toQuantTiles(q, T), shape, a.format, T, t.label) : ctx.upload(packQuantized(q), shape, a.format, t.label));
    };
    const tiledHead = w.lmHead === w.embed ? w.lmHead : keep(await toTilesLayout(ctx, w.lmHead, T));
    const arms: { arm: Arm; session: Session; weightBytes: number }[] = [];
    for (const a of ARMS) {
      const layers: LayerWeights[] = [];
      let bytes = 0;
      for (const L of w.layers) {
        const n: LayerWeights = { ...L };
        for (const f of PROJ) {
          const t = await lay(L[f] as Tensor, a);
          (n as unknown as Record<string, Tensor>)[f] = t;
          bytes += t.byteLength;
        }
        layers.push(n);
      }
      const lmHead = a.layout === "tiles" ? tiledHead : w.lmHead;
      bytes += lmHead.byteLength;
      const session = Session.create(new Decoder(ctx, m.config, { ...w, layers, lmHead }), 160);
      sessions.push(session);
      arms.push({ arm: a, session, weightBytes: bytes });
      env.log(`  quant-layout: ${a.name} ready (${(bytes / 1e6).toFixed(1)} MB of projections + lm_head)`);
    }
    quantized.clear();
    const spr = 4;
    const tokens = spr * 3;
    const prompt = 64;
    const rounds = env.quick ? 3 : 5;
    const ms = arms.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < arms.length; j++) {
        const i = (j + r) % arms.length; // rotate the order every round
        const s = arms[i]!.session;
        s.truncate(0);
        await s.append(Array.from({ length: prompt }, () => rng.int(m.config.vocabSize)));
        for await (const _ of s.generate({ maxNewTokens: spr, temperature: 0, stepsPerRead: spr })) void _; // warm-up batch
        await ctx.sync();
        const t0 = performance.now();
        let n = 0;
        for await (const _ of s.generate({ maxNewTokens: tokens, temperature: 0, stepsPerRead: spr })) n++;
        ms[i]!.push((performance.now() - t0) / n);
      }
    }
    const med = ms.map((x) => median(x).medianMs);
    const f16Tiles = med[ARMS.findIndex((a) => a.name === "f16 tiles")]!;
    const q4Rows = med[ARMS.findIndex((a) => a.name === "q4_0 rows")]!;
    const out: BenchRow[] = [];
    const lines: string[] = [];
    arms.forEach(({ arm, weightBytes }, i) => {
      const t = median(ms[i]!);
      const r = row(env, { bench: "quant-layout", variant: `decode ${arm.name}${arm.layout === "tiles" ? ` T=${T}` : ""}`, shape: `${m.name} ctx≈${prompt + spr + tokens}`, bytes: weightBytes }, t);
      r.extra = { model: m.name, format: arm.format, layout: arm.layout, tokPerS: 1000 / t.medianMs, msPerToken: t.medianMs, speedup: f16Tiles / t.medianMs, vsQ4Rows: q4Rows / t.medianMs, weightMB: weightBytes / 1e6, rounds, msRounds: ms[i]!.map((v) => v.toFixed(1)).join(",") };
      out.push(r);
      lines.push(`${arm.name} ${(1000 / t.medianMs).toFixed(2)} tok/s (×${(f16Tiles / t.medianMs).toFixed(2)} of f16 tiles, ×${(q4Rows / t.medianMs).toFixed(2)} of q4_0 rows; ${(weightBytes / 1e6).toFixed(0)} MB)`);
    });
    env.log(`model ${m.name} decode by format and layout (${rounds} rotated rounds of ${tokens} tokens): ${lines.join("; ")}`);
    return out;
  } finally {
    for (const s of sessions) s.dispose();
    for (const t of made) t.dispose();
    m.dispose();
  }
}
