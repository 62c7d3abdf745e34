// Host cost of a decode step encoded op by op vs captured once and replayed (src/gpu/capture.ts).
// The step: greedy sample of the last logits → Decoder.forward of the sampled token at the last
// prompt position (all state GPU-resident, nothing read back; the position is not advanced, so
// every step attends to the same context; the live step, src/model/decode-step.ts, is timed through
// Session.generate by bench/model.bench.ts), on a synthetic checkpoint
// (bench/synthetic.ts: llama-134m; quick mode: tiny) and the bundled demo model. Per arm, per step:
//   encode ms   host time to encode the step into the batch: `await step()` (params packing, kernel
//               and bind-group lookups, pool traffic) vs `prog.replay()` (ctx.stats.replayEncodeMs
//               agrees with it, both are performance.now around the encoding), measured while the
//               GPU is idle (the K steps of the gpu measurement below); "busy": the same measured
//               in the wall loop, where the software GPU's threads compete for the CPU;
//   submit ms   host time of ctx.submit() after it (finish + queue.submit + the uniform arena write);
//   wall ms     K steps encoded and submitted one by one, then waited for: wall time / K (the row's
//               median; host work overlaps the GPU here, as in a decode loop);
//   gpu ms      K steps encoded into ONE batch, then submit → onSubmittedWorkDone / K (the GPU's
//               share, host encoding excluded; includes Dawn's submit-time work).
// Host times are kept per step and summarised by their median over all K × samples steps (and
// their minimum: on a shared machine preemption only adds time). Arms alternate sample by sample;
// both attend to the same context. Ratios are printed, never asserted.
import type { GpuContext } from "../src/gpu/context.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { sample } from "../src/ops/sample.js";
import { causalRangesFor } from "../src/model/session.js";
import { loadDecoder } from "../src/model/load.js";
import type { Decoder } from "../src/model/decoder.js";
import { buildSynthetic } from "./synthetic.js";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { row, type BenchEnv, type BenchRow } from "./harness.js";

type Arm = "encoded" | "replayed";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  if (env.quick) {
    rows.push(...(await benchModel(ctx, env, "tiny", await buildSynthetic(ctx, "tiny"), 4, 3)));
    return rows;
  }
  // The bundled demo model (0.9 M parameters: host encoding is most of its step) and the 134M shape.
  const demo = await loadDecoder(ctx, join(repoRoot, "demo", "model"), { dtype: "auto", noTokenizer: true });
  rows.push(...(await benchModel(ctx, env, "demo", demo, 16, 7)));
  rows.push(...(await benchModel(ctx, env, "llama-134m", await buildSynthetic(ctx, "llama-134m"), 8, 5)));
  return rows;
}

async function benchModel(ctx: GpuContext, env: BenchEnv, shape: string, m: { decoder: Decoder; dispose(): void }, K: number, samples: number): Promise<BenchRow[]> {
  const P = 64; // prompt length: the context each step attends to
  const dec = m.decoder;
  const V = dec.vocabSize;
  const cap = P;
  const cache = dec.createCache(cap);
  const keep: Tensor[] = [];
  const u32 = (data: ArrayLike<number> | Uint32Array, n: number, label: string, rows = 0) => {
    const t = ctx.upload(Uint32Array.from(data), rows ? [rows, n / rows] : [n], "u32", label);
    keep.push(t);
    return t;
  };
  // Prefill P ids once (rows 0..P-2 stay; every step rewrites row P-1 with the sampled id).
  const ids = u32(Array.from({ length: P }, (_, i) => (i * 7919) % V), P, "bench.ids");
  const pos = u32(Array.from({ length: P }, (_, i) => i), P, "bench.pos");
  const rng = u32(causalRangesFor(0, P), 2 * P, "bench.ranges", P);
  const lastRow = u32([P - 1], 1, "bench.lastRow");
  const logits = ctx.empty([1, V], "f32", "bench.logits");
  keep.push(logits);
  await dec.forward(cache, { ids, ropePositions: pos, cacheRows: pos, ranges: rng }, { logitsRows: lastRow, logitsOut: logits });
  const token = u32([0], 1, "bench.token");
  const position = u32([P - 1], 1, "bench.position");
  const ranges = u32(causalRangesFor(P - 1, 1), 2, "bench.ranges1", 1);
  const step = async () => {
    await sample(ctx, logits, token, { temperature: 0, seed: 0, step: position });
    await dec.forward(cache, { ids: token, ropePositions: position, cacheRows: position, ranges }, { logitsRows: "all", logitsOut: logits });
  };
  // Warm-up of the encoded path (pipelines, pool, bind-group cache), then the capture.
  for (let i = 0; i < 2; i++) await step();
  await ctx.sync();
  const d0 = ctx.stats.dispatches;
  await step();
  const dispatches = ctx.stats.dispatches - d0;
  await ctx.sync();
  const tc = performance.now();
  ctx.beginCapture(`decode-step.${shape}`);
  await step();
  const prog = ctx.endCapture();
  const captureMs = performance.now() - tc;
  prog.replay();
  await ctx.sync();

  const encodeArm = async (arm: Arm) => (arm === "encoded" ? step() : prog.replay());
  const res = new Map<Arm, { encode: number[]; busy: number[]; submit: number[]; wall: number[]; gpu: number[] }>();
  for (const a of ["encoded", "replayed"] as Arm[]) res.set(a, { encode: [], busy: [], submit: [], wall: [], gpu: [] });
  const stats0 = { replays: ctx.stats.replays, ms: ctx.stats.replayEncodeMs };
  for (let s = 0; s < samples; s++) {
    for (const arm of ["encoded", "replayed"] as Arm[]) {
      const r = res.get(arm)!;
      // wall: K steps, each encoded and submitted, then one wait
      await ctx.sync();
      const t0 = performance.now();
      for (let k = 0; k < K; k++) {
        const a = performance.now();
        await encodeArm(arm);
        const b = performance.now();
        ctx.submit();
        const c = performance.now();
        r.busy.push(b - a);
        r.submit.push(c - b);
      }
      await ctx.sync();
      r.wall.push((performance.now() - t0) / K);
      // gpu: K steps in one batch, timed from submit to done
      await ctx.sync();
      for (let k = 0; k < K; k++) {
        const e0 = performance.now();
        await encodeArm(arm);
        r.encode.push(performance.now() - e0);
      }
      const g0 = performance.now();
      await ctx.sync();
      r.gpu.push((performance.now() - g0) / K);
    }
  }
  const statsReplayMs = (ctx.stats.replayEncodeMs - stats0.ms) / (ctx.stats.replays - stats0.replays);
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  // On a shared machine preemption only adds time: the minimum is the better estimate of host cost.
  const min = (xs: number[]) => Math.min(...xs);
  const enc = res.get("encoded")!, rep = res.get("replayed")!;
  const ratioEncode = med(enc.encode) / med(rep.encode);
  // host work per step in the decode loop (the wall measurement): encode + submit
  const ratioHost = (med(enc.busy) + med(enc.submit)) / (med(rep.busy) + med(rep.submit));
  const ratioWall = med(enc.wall) / med(rep.wall);
  const label = `${shape} decode step (sample+forward), ctx ${P}, ${dispatches} dispatches`;
  env.log(
    `capture: ${label}: capture ${captureMs.toFixed(1)} ms once (${prog.bindGroupCount} bind groups, ${prog.uniformBytes} B params); ` +
      `encode ${med(enc.encode).toFixed(3)} → ${med(rep.encode).toFixed(3)} ms/step (×${ratioEncode.toFixed(1)} less; min ${min(enc.encode).toFixed(3)} → ${min(rep.encode).toFixed(3)}, ×${(min(enc.encode) / min(rep.encode)).toFixed(1)}), ` +
      `in the decode loop: encode ${med(enc.busy).toFixed(3)} → ${med(rep.busy).toFixed(3)} ms, encode+submit ${(med(enc.busy) + med(enc.submit)).toFixed(3)} → ${(med(rep.busy) + med(rep.submit)).toFixed(3)} ms (×${ratioHost.toFixed(1)}), wall ${med(enc.wall).toFixed(2)} → ${med(rep.wall).toFixed(2)} ms/step (×${ratioWall.toFixed(2)}), gpu ${med(enc.gpu).toFixed(2)} / ${med(rep.gpu).toFixed(2)} ms/step; ` +
      `ctx.stats: mean replay encode ${statsReplayMs.toFixed(3)} ms`,
  );
  const rows: BenchRow[] = [];
  for (const arm of ["encoded", "replayed"] as Arm[]) {
    const r = res.get(arm)!;
    const w = [...r.wall].sort((a, b) => a - b);
    rows.push(
      row(
        env,
        {
          bench: "capture",
          variant: arm,
          shape: label,
          extra: {
            encodeMs: med(r.encode),
            encodeMinMs: min(r.encode),
            encodeUsPerDispatch: (1000 * min(r.encode)) / (arm === "encoded" ? dispatches : prog.dispatches),
            encodeBusyMs: med(r.busy),
            submitMs: med(r.submit),
            gpuMs: med(r.gpu),
            dispatchesPerStep: arm === "encoded" ? dispatches : prog.dispatches,
            stepsPerSample: K,
            ...(arm === "replayed" ? { encodeRatio: ratioEncode, hostRatio: ratioHost, wallRatio: ratioWall, captureMs, statsEncodeMsPerReplay: statsReplayMs } : {}),
          },
        },
        { medianMs: med(w), minMs: w[0]!, maxMs: w[w.length - 1]!, samples: w.length },
      ),
    );
  }
  prog.dispose();
  for (const t of keep) t.dispose();
  cache.dispose();
  m.dispose();
  return rows;
}
