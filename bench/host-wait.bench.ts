// How the host waits for the GPU (src/gpu/host-wait.ts): decode of the synthetic Llama 134M shape
// (--quick: "tiny") with GpuContext.hostWait "spin" (await the GPU promise at once: Dawn's Node
// binding spins the main thread until it settles) against "paced" (sleep for most of the time the
// same work took before, then await), arms alternated round by round in one process.
// Per arm: wall ms per token (median over rounds) and the process's CPU ms per token
// (process.cpuUsage: the main thread and lavapipe's worker threads together), so the spin's cost
// shows twice: as CPU the GPU's threads could not use, and as wall time on a machine whose cores
// are all busy. extra.speedup = spin ms / arm ms. On adapters other than Node + Dawn both arms
// run, but only Dawn spins.
import type { GpuContext } from "../src/gpu/context.js";
import { HOST_WAIT_MODES, type HostWaitMode } from "../src/gpu/host-wait.js";
import { Session } from "../src/model/session.js";
import { Rng } from "../src/util/rng.js";
import { buildSynthetic } from "./synthetic.js";
import { row, type BenchEnv, type BenchRow, type Timing } from "./harness.js";

const STEPS_PER_READ = 4;

function median(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)]!, minMs: s[0]!, maxMs: s[s.length - 1]!, samples: s.length };
}

export async function bench(ctx: GpuContext, env: BenchEnv): Promise<BenchRow[]> {
  const name = env.quick ? "tiny" : "llama-134m";
  const rounds = env.quick ? 3 : 5;
  const spr = STEPS_PER_READ;
  const tokens = spr * (env.quick ? 4 : 8);
  const m = await buildSynthetic(ctx, name);
  const session = Session.create(m.decoder, 256);
  const rng = new Rng(77);
  const before = ctx.hostWait;
  const wall: Record<HostWaitMode, number[]> = { paced: [], spin: [] };
  const cpu: Record<HostWaitMode, number[]> = { paced: [], spin: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const mode of r % 2 === 0 ? HOST_WAIT_MODES : [...HOST_WAIT_MODES].reverse()) {
        ctx.hostWait = mode;
        session.truncate(0);
        await session.append(Array.from({ length: 32 }, () => rng.int(m.config.vocabSize)));
        for await (const _ of session.generate({ maxNewTokens: spr * 2, temperature: 0, stepsPerRead: spr })) void _; // warm-up (and the pacer's estimates)
        await ctx.sync();
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        let n = 0;
        for await (const _ of session.generate({ maxNewTokens: tokens, temperature: 0, stepsPerRead: spr })) n++;
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        wall[mode].push(ms / n);
        cpu[mode].push((c.user + c.system) / 1000 / n);
      }
    }
  } finally {
    ctx.hostWait = before;
    session.dispose();
    m.dispose();
  }
  const spinMs = median(wall.spin).medianMs;
  const spinCpu = median(cpu.spin).medianMs;
  const out: BenchRow[] = [];
  for (const mode of HOST_WAIT_MODES) {
    const t = median(wall[mode]);
    const cpuMs = median(cpu[mode]).medianMs;
    const r = row(env, { bench: "host-wait", variant: `decode hostWait ${mode}`, shape: `${name} ${tokens} tokens, stepsPerRead ${spr}` }, t);
    r.extra = { backend: ctx.adapter.backend, tokPerS: 1000 / t.medianMs, msPerToken: t.medianMs, cpuMsPerToken: cpuMs, speedup: spinMs / t.medianMs, cpuVsSpin: cpuMs / spinCpu, rounds, msRounds: wall[mode].map((v) => v.toFixed(1)).join(",") };
    out.push(r);
    env.log(`host-wait ${name} ${mode}: ${(1000 / t.medianMs).toFixed(2)} tok/s (×${(spinMs / t.medianMs).toFixed(2)} of spin), ${cpuMs.toFixed(1)} CPU-ms/token (×${(cpuMs / spinCpu).toFixed(2)} of spin); rounds ${wall[mode].map((v) => v.toFixed(0)).join(", ")} ms/token`);
  }
  return out;
}
