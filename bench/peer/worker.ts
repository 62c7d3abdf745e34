// One arm of the peer comparison in its own process (bench/peer/run.ts forks it): loads the model
// once, runs an untimed warm-up, then answers "rep" messages with one timed prefill + greedy
// decode, until "exit". Arms: "ours" (Session from src/model on this runtime's GPU), "cpu" and
// "vulkan" (llama.cpp through node-llama-cpp). A process per arm keeps the Vulkan environment
// (set before llama.cpp's Vulkan backend loads) and each arm's memory apart.
//
// A rep, identical in every arm:
//   prefill  the prompt ids (P tokens, the same ids in every arm) on an empty cache, logits of the
//            last row only; timed until the device finished
//   decode   G greedy tokens after the prompt (ours: Session.generate, temperature 0,
//            stepsPerRead 4 = one readback per 4 tokens, the Session default; llama.cpp:
//            sequence.evaluate([next id]) with temperature 0 for G tokens); wall time / G
import { loadavg } from "node:os";
import { openDevice, describeContext } from "../../src/gpu/device.js";
import { loadDecoder } from "../../src/model/load.js";
import { Session } from "../../src/model/session.js";
import { loadLlama, type NodeLlamaCppPackage } from "./llama.js";
import type { QuantFormat } from "../../src/quant/formats.js";

export type Arm = "ours" | "cpu" | "vulkan";

export interface WorkerInit {
  arm: Arm;
  /** Our model directory (ours) or the GGUF file (llama.cpp). */
  model: string;
  prompt: number[];
  nextId: number;
  decode: number;
  threads: number;
  pkg: NodeLlamaCppPackage | null;
  /** Ours: quantize the projections while loading (the GGUF of the llama.cpp arms holds the same blocks). */
  quantize?: QuantFormat;
}

export interface RepResult {
  prefillMs: number;
  decodeMs: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** First greedy ids (determinism and cross-arm sanity, not compared: weights are random). */
  firstIds: number[];
  dispatchesPerToken?: number;
  loadAvg1: number;
}

export interface ArmInfo {
  arm: Arm;
  device: string;
  details: Record<string, unknown>;
  loadMs: number;
  warmupMs: number;
}

interface Runner {
  info: ArmInfo;
  rep(): Promise<RepResult>;
  close(): Promise<void>;
}

const now = () => performance.now();

async function ours(init: WorkerInit): Promise<Runner> {
  const t0 = now();
  const ctx = await openDevice();
  const capacity = init.prompt.length + init.decode + 16;
  const m = await loadDecoder(ctx, init.model, { contextLength: capacity, noTokenizer: true, gemvLayout: "auto", ...(init.quantize ? { quantize: init.quantize } : {}) }); // as the inference commands
  const session = Session.create(m.decoder, capacity);
  const loadMs = now() - t0;
  const G = init.decode;
  const rep = async (decode = G): Promise<RepResult> => {
    session.truncate(0);
    await ctx.sync();
    const a = now();
    await session.append(init.prompt);
    await ctx.sync();
    const b = now();
    const s0 = ctx.stats.dispatches;
    const ids: number[] = [];
    for await (const t of session.generate({ maxNewTokens: decode, temperature: 0, stepsPerRead: 4 })) ids.push(t.id);
    await ctx.sync();
    const c = now();
    if (ids.length !== decode) throw new Error(`ours: generate returned ${ids.length} tokens, expected ${decode} (${session.finishReason})`);
    return {
      prefillMs: b - a,
      decodeMs: c - b,
      prefillTokPerS: init.prompt.length / ((b - a) / 1e3),
      decodeTokPerS: decode / ((c - b) / 1e3),
      firstIds: ids.slice(0, 8),
      dispatchesPerToken: (ctx.stats.dispatches - s0) / decode,
      loadAvg1: loadavg()[0]!,
    };
  };
  const w0 = now();
  await rep(4);
  const warmupMs = now() - w0;
  const d = describeContext(ctx);
  return {
    info: { arm: "ours", device: ctx.adapter.description, details: { backend: d.backend, features: d.features, gemvLayout: m.gemvLayout, weightBytes: m.weightBytes, quantization: m.quantization, kvCacheDtype: session.cache.dtype }, loadMs, warmupMs },
    rep: () => rep(),
    close: async () => {
      session.dispose();
      m.dispose();
      ctx.destroy();
    },
  };
}

async function llamaCpp(init: WorkerInit): Promise<Runner> {
  if (!init.pkg) throw new Error("node-llama-cpp is not available");
  const backend = init.arm === "vulkan" ? "vulkan" : "cpu";
  const t0 = now();
  const { llama, info } = await loadLlama(init.pkg, backend, init.threads);
  const model = await llama.loadModel({ modelPath: init.model, gpuLayers: backend === "cpu" ? 0 : "max", useMmap: true });
  const P = init.prompt.length, G = init.decode;
  const context = await model.createContext({ contextSize: P + G + 64, batchSize: P, sequences: 1, threads: init.threads });
  const seq = context.getSequence();
  const loadMs = now() - t0;
  const rep = async (decode = G): Promise<RepResult> => {
    await seq.clearHistory();
    const a = now();
    await seq.evaluateWithoutGeneratingNewTokens(init.prompt);
    const b = now();
    const ids: number[] = [];
    if (decode > 0) {
      for await (const t of seq.evaluate([init.nextId], { temperature: 0, yieldEogToken: true })) {
        ids.push(t);
        if (ids.length >= decode) break;
      }
    }
    const c = now();
    if (seq.nextTokenIndex !== P + decode) throw new Error(`${init.arm}: the sequence holds ${seq.nextTokenIndex} tokens, expected ${P + decode}`);
    return { prefillMs: b - a, decodeMs: c - b, prefillTokPerS: P / ((b - a) / 1e3), decodeTokPerS: decode / ((c - b) / 1e3), firstIds: ids.slice(0, 8), loadAvg1: loadavg()[0]! };
  };
  const w0 = now();
  await rep(4);
  const warmupMs = now() - w0;
  return {
    info: {
      arm: init.arm,
      device: info.device,
      details: { ...info, gpuLayers: model.gpuLayers, modelType: model.typeDescription, context: { size: context.contextSize, batch: context.batchSize, flashAttention: context.flashAttention } },
      loadMs,
      warmupMs,
    },
    rep: () => rep(),
    close: async () => {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

type Msg = { cmd: "init"; init: WorkerInit } | { cmd: "rep" } | { cmd: "exit" };

let runner: Runner | null = null;
const send = (m: unknown) => process.send!(m);
process.on("message", (m: Msg) => {
  void (async () => {
    try {
      if (m.cmd === "init") {
        runner = m.init.arm === "ours" ? await ours(m.init) : await llamaCpp(m.init);
        send({ ok: true, info: runner.info });
      } else if (m.cmd === "rep") {
        send({ ok: true, rep: await runner!.rep() });
      } else {
        await runner?.close();
        send({ ok: true });
        process.exit(0);
      }
    } catch (e) {
      send({ ok: false, error: (e as Error).stack ?? String(e) });
    }
  })();
});
