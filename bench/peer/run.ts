// The project's own comparison with llama.cpp on identical weights (issue 16 item 6):
//
//   ONEGEN_PEER_NODE_LLAMA_CPP=/path/to/node_modules/node-llama-cpp \
//   node dist/bench/peer/run.js [--shapes llama-134m,tinyllama-1.1b] [--arms ours,cpu,vulkan]
//       [--rounds 3] [--prefill 128] [--decode 32] [--threads 2] [--types F16,Q8_0,Q4_0]
//       [--models-dir /tmp/onegen-peer-models] [--out bench/results] [--sequential]
//
// Per shape: a synthetic F16 Hugging Face directory of that shape (bench/peer/synth-hf.ts, reused
// when it matches) and its GGUF (bench/peer/convert.ts, same weights, q/k rows permuted for
// llama.cpp's RoPE) in --models-dir; one process per arm (bench/peer/worker.ts) loads its model and
// warms up; then --rounds rounds, each running one rep per arm, arms alternated (the order rotates
// every round) so that the machine's load drifts over all arms alike. Figures: medians over the
// rounds of prefill tok/s (P prompt tokens on an empty cache) and decode tok/s (G greedy tokens),
// the ratios ours / llama.cpp CPU and ours / llama.cpp Vulkan, the load average at every rep, the
// adapters. Weight types (--types, run one after the other per shape, each with its own rounds):
// F16 as written; Q8_0 / Q4_0: ours loads the F16 directory with `quantize` (the projections
// quantized while loading, src/quant/policy.ts), llama.cpp reads a GGUF whose projections hold the
// same blocks (bench/peer/convert.ts --quantize projections: ggml's reference rounding of the same
// f16 values, token_embd and output F16 as ours keeps them); the runner checks that the blocks of
// one layer's q_proj are byte-identical before timing. Written to OUT/DATE-COMMIT-peer-SHAPES.json and .md (tagged outputs, written atomically).
// node-llama-cpp is not a dependency: without it (bench/peer/llama.ts) the run stops with one line,
// unless only the "ours" arm is asked for.
// --sequential (on by itself where two arms' weights would not fit in memory together, e.g. the 7B
// shape in F16 on 24 GiB): one arm in memory at a time, all its rounds, then the next arm; the
// arms are no longer interleaved, so the load average at every rep is what tells the runs apart.
// Weight GB/s: the bytes one forward reads (the arm's weights less the embedding table, plus one
// row of it) × decode tok/s.
import { fork, type ChildProcess } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { benchOutputs, gitCommit, machineMeta } from "../harness.js";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "../../src/cli/args.js";
import { UsageError } from "../../src/errors.js";
import { BENCH_REPORT_TAG, FILE_FORMATS, fileIsOurs } from "../../src/io/output.js";
import { SYNTHETIC_SHAPES, syntheticConfig, type SyntheticShapeName } from "../synthetic.js";
import { parameterCount } from "../../src/model/config.js";
import { convertToGguf, GGUF_OUT_TYPES, type GgufOutType } from "./convert.js";
import { findNodeLlamaCpp, type NodeLlamaCppPackage } from "./llama.js";
import { syntheticDirMatches, writeSyntheticModelDir } from "./synth-hf.js";
import type { Arm, ArmInfo, RepResult, WorkerInit } from "./worker.js";
import type { QuantFormat } from "../../src/quant/formats.js";
import { quantizeMatrix, toGgufBlocks } from "../../src/quant/formats.js";
import { openCheckpoint } from "../../src/model/checkpoint.js";
import { bytesAsArray, toF32 } from "../../src/io/safetensors.js";
import { GgufFile } from "../../src/io/gguf.js";
import { openFileSource } from "../../src/io/source.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench/peer
const repoRoot = join(here, "..", "..", "..");
const ARMS: readonly Arm[] = ["ours", "cpu", "vulkan"];
/** Weight types both runtimes run: F16, and the GGUF blocks our loader makes with --quantize. */
const RUN_TYPES: readonly GgufOutType[] = ["F16", "Q8_0", "Q4_0"];
const QUANT_OF: Partial<Record<GgufOutType, QuantFormat>> = { Q8_0: "q8_0", Q4_0: "q4_0" };

interface Options {
  shapes: SyntheticShapeName[];
  arms: Arm[];
  rounds: number;
  prefill: number;
  decode: number;
  threads: number;
  types: GgufOutType[];
  modelsDir: string;
  outDir: string;
  /** One arm in memory at a time (true / false as asked; undefined: decided per shape and type). */
  sequential?: boolean;
}

function parse(argv: string[]): Options {
  const a = parseArgs(argv, { values: ["shapes", "arms", "rounds", "prefill", "decode", "threads", "type", "types", "models-dir", "out"], booleans: ["sequential"] }, "peer");
  const int = (k: string, d: number, lo: number, hi: number): number => {
    const v = a.flags.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new UsageError(`peer: --${k} must be an integer in [${lo}, ${hi}], got '${v}'`);
    return n;
  };
  const shapes = (a.flags.get("shapes") ?? "llama-134m,tinyllama-1.1b").split(",").filter(Boolean);
  for (const s of shapes) if (!(s in SYNTHETIC_SHAPES)) throw new UsageError(`peer: --shapes names no shape '${s}' (shapes: ${Object.keys(SYNTHETIC_SHAPES).join(", ")})`);
  const arms = (a.flags.get("arms") ?? ARMS.join(",")).split(",").filter(Boolean);
  for (const x of arms) if (!ARMS.includes(x as Arm)) throw new UsageError(`peer: --arms names no arm '${x}' (arms: ${ARMS.join(", ")})`);
  if (a.flags.has("type") && a.flags.has("types")) throw new UsageError("peer: give --types (or its alias --type), not both");
  const types = (a.flags.get("types") ?? a.flags.get("type") ?? "F16").split(",").filter(Boolean) as GgufOutType[];
  for (const t of types) if (!RUN_TYPES.includes(t)) throw new UsageError(`peer: --types names '${t}': the comparison runs ${RUN_TYPES.join(", ")} (our runtime's weight formats; ${GGUF_OUT_TYPES.join(", ")} are written by convert.js)`);
  return {
    shapes: shapes as SyntheticShapeName[],
    arms: arms as Arm[],
    rounds: int("rounds", 3, 1, 100),
    prefill: int("prefill", 128, 2, 4096),
    decode: int("decode", 32, 4, 4096),
    threads: int("threads", Math.min(cpus().length, 4), 1, 256),
    types,
    modelsDir: resolve(a.flags.get("models-dir") ?? "/tmp/onegen-peer-models"),
    outDir: resolve(a.flags.get("out") ?? join(repoRoot, "bench", "results")),
    ...(a.bools.has("sequential") ? { sequential: true } : {}),
  };
}

/** Fixed prompt ids: BOS then LCG ids in [259, V) (past <unk>, <s>, </s> and the byte pieces). */
export function promptIds(n: number, vocab: number): number[] {
  const ids = [1];
  let x = 12345;
  while (ids.length < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids.push(259 + ((x >>> 8) % (vocab - 259)));
  }
  return ids;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

class Worker {
  private queue: ((m: { ok: boolean; error?: string } & Record<string, unknown>) => void)[] = [];
  private constructor(
    readonly arm: Arm,
    private readonly child: ChildProcess,
  ) {
    child.on("message", (m: { ok: boolean; error?: string } & Record<string, unknown>) => this.queue.shift()?.(m));
    child.on("exit", (code, sig) => {
      for (const q of this.queue.splice(0)) q({ ok: false, error: `worker '${arm}' exited (${sig ?? code})` });
    });
  }
  static start(arm: Arm): Worker {
    return new Worker(arm, fork(join(here, "worker.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" } }));
  }
  call<T>(msg: unknown): Promise<T> {
    return new Promise((res, rej) => {
      this.queue.push((m) => (m.ok ? res(m as T) : rej(new Error(`${this.arm}: ${m.error}`))));
      this.child.send(msg as object);
    });
  }
  async stop(): Promise<void> {
    try {
      await Promise.race([this.call({ cmd: "exit" }), new Promise((r) => setTimeout(r, 30_000))]);
    } catch {
      // exited already
    }
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

interface ShapeResult {
  shape: SyntheticShapeName;
  type: GgufOutType;
  params: number;
  modelDir: string;
  gguf: string;
  ggufBytes: number;
  arms: Record<string, { info: ArmInfo; reps: RepResult[]; prefillTokPerS: number; decodeTokPerS: number; weightBytes: number; bytesPerForward: number; weightGBps: number } | { error: string }>;
  ratios: Record<string, number>;
  /** Arms run one after the other (not interleaved): see --sequential. */
  sequential: boolean;
}

async function prepareModels(o: Options, shape: SyntheticShapeName, type: GgufOutType, log: (s: string) => void): Promise<{ dir: string; gguf: string }> {
  const dir = join(o.modelsDir, shape);
  // Quantized GGUFs hold our policy's blocks (projections only): a distinct name from convert.js's default (all matrices).
  const gguf = join(o.modelsDir, `${shape}.${type}${QUANT_OF[type] ? "-projections" : ""}.gguf`);
  if (!(await syntheticDirMatches(dir, shape, 1234))) {
    const t = performance.now();
    await writeSyntheticModelDir(dir, shape, repoRoot);
    log(`${shape}: wrote ${dir} in ${((performance.now() - t) / 1e3).toFixed(1)} s`);
  }
  const stale = !existsSync(gguf) || statSync(gguf).mtimeMs < statSync(join(dir, "model.safetensors")).mtimeMs || !(await fileIsOurs(gguf, "gguf"));
  if (o.arms.some((a) => a !== "ours") && stale) {
    const r = await convertToGguf(dir, gguf, { type, name: `onegen-synthetic-${shape}`, ...(QUANT_OF[type] ? { quantize: "projections" as const } : {}) });
    log(`${shape}: wrote ${gguf} (${(r.bytes / 2 ** 20).toFixed(0)} MiB, ${r.tensors} tensors, vocab ${r.vocab}) in ${(r.ms / 1e3).toFixed(1)} s`);
  }
  const q = QUANT_OF[type];
  if (q && existsSync(gguf)) await checkSameBlocks(dir, gguf, q, log);
  return { dir, gguf };
}

/**
 * The GGUF's blocks of layer 0's v_proj (no RoPE row permutation) and down_proj equal what our
 * loader makes of the same tensors (src/quant/formats.ts quantizeMatrix, GGUF block order): the two
 * arms run the same quantized weights. Throws otherwise.
 */
async function checkSameBlocks(dir: string, gguf: string, format: QuantFormat, log: (s: string) => void): Promise<void> {
  const g = await GgufFile.open(await openFileSource(gguf));
  const ckpt = await openCheckpoint(dir);
  try {
    for (const [hf, name] of [["model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"], ["model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"]] as const) {
      const t = ckpt.get(hf);
      const [N, K] = t.info.shape as [number, number];
      const ours = toGgufBlocks(quantizeMatrix(toF32(bytesAsArray(await t.file.readBytes(hf), t.info.dtype, hf), t.info.dtype), N, K, format, hf));
      const info = g.info(name);
      const theirs = await g.readBytes(name);
      if (info.type !== format.toUpperCase() || Buffer.compare(Buffer.from(ours), Buffer.from(theirs)) !== 0) throw new Error(`${gguf}: '${name}' (${info.type}) does not hold the ${format} blocks our loader makes of '${hf}'`);
    }
    log(`${gguf}: layer 0 v_proj / down_proj blocks byte-identical to our loader's ${format}`);
  } finally {
    await g.close();
    await ckpt.close();
  }
}

async function runShape(o: Options, shape: SyntheticShapeName, type: GgufOutType, pkg: NodeLlamaCppPackage | null, log: (s: string) => void): Promise<ShapeResult> {
  const { dir, gguf } = await prepareModels(o, shape, type, log);
  const c = syntheticConfig(shape);
  const prompt = promptIds(o.prefill, c.vocabSize);
  const nextId = promptIds(o.prefill + 1, c.vocabSize)[o.prefill]!;
  const res: ShapeResult = { shape, type, params: parameterCount(c), modelDir: dir, gguf, ggufBytes: existsSync(gguf) ? statSync(gguf).size : 0, arms: {}, ratios: {}, sequential: false };
  // One arm in memory at a time where two would not fit (weights estimated at the type's bytes per parameter).
  const estBytes = parameterCount(c) * (type === "F16" ? 2 : type === "Q8_0" ? 34 / 32 : 18 / 32);
  res.sequential = o.sequential ?? (o.arms.length > 1 && 2 * estBytes > 0.6 * totalmem());
  if (res.sequential && o.sequential === undefined) log(`${shape} ${type}: two arms' weights (~${((2 * estBytes) / 2 ** 30).toFixed(1)} GiB) exceed 0.6 of memory: one arm at a time`);
  const infos = new Map<Arm, ArmInfo>();
  const reps = new Map<Arm, RepResult[]>();
  const load = async (arm: Arm): Promise<Worker | null> => {
    const w = Worker.start(arm);
    const q = QUANT_OF[type];
    const init: WorkerInit = { arm, model: arm === "ours" ? dir : gguf, prompt, nextId, decode: o.decode, threads: o.threads, pkg, ...(arm === "ours" && q ? { quantize: q } : {}) };
    try {
      const r = await w.call<{ info: ArmInfo }>({ cmd: "init", init });
      infos.set(arm, r.info);
      reps.set(arm, []);
      log(`${shape} ${type} ${arm}: ${r.info.device}; loaded in ${(r.info.loadMs / 1e3).toFixed(1)} s, warm-up ${(r.info.warmupMs / 1e3).toFixed(1)} s`);
      return w;
    } catch (e) {
      res.arms[arm] = { error: (e as Error).message.split("\n")[0]! };
      log(`${shape} ${type} ${arm}: FAILED to load: ${(res.arms[arm] as { error: string }).error}`);
      await w.stop();
      return null;
    }
  };
  const rep = async (w: Worker, r: number): Promise<void> => {
    const { rep } = await w.call<{ rep: RepResult }>({ cmd: "rep" });
    reps.get(w.arm)!.push(rep);
    log(`${shape} ${type} round ${r + 1}/${o.rounds} ${w.arm}: prefill ${rep.prefillTokPerS.toFixed(1)} tok/s, decode ${rep.decodeTokPerS.toFixed(2)} tok/s (load ${rep.loadAvg1.toFixed(2)})`);
  };
  if (res.sequential) {
    for (const arm of o.arms) {
      const w = await load(arm);
      if (!w) continue;
      try {
        for (let r = 0; r < o.rounds; r++) await rep(w, r);
      } finally {
        await w.stop();
      }
    }
  } else {
    const workers: Worker[] = [];
    try {
      // Load and warm up one arm at a time (no arm's load overlaps another's timing).
      for (const arm of o.arms) {
        const w = await load(arm);
        if (w) workers.push(w);
      }
      for (let r = 0; r < o.rounds; r++) {
        const order = workers.map((_, i) => workers[(i + r) % workers.length]!);
        for (const w of order) await rep(w, r);
      }
    } finally {
      for (const w of workers) await w.stop();
    }
  }
  const embedBytes = c.vocabSize * c.hiddenSize * 2; // F16 in both arms
  for (const [arm, info] of infos) {
    const rs = reps.get(arm)!;
    const weightBytes = arm === "ours" ? Number((info.details as { weightBytes?: number }).weightBytes ?? NaN) : res.ggufBytes;
    const bytesPerForward = weightBytes - embedBytes + c.hiddenSize * 2;
    const decodeTokPerS = median(rs.map((x) => x.decodeTokPerS));
    res.arms[arm] = { info, reps: rs, prefillTokPerS: median(rs.map((x) => x.prefillTokPerS)), decodeTokPerS, weightBytes, bytesPerForward, weightGBps: (bytesPerForward * decodeTokPerS) / 1e9 };
  }
  const ours = res.arms.ours;
  for (const arm of ["cpu", "vulkan"] as const) {
    const other = res.arms[arm];
    if (ours && "info" in ours && other && "info" in other) {
      res.ratios[`decode ours/${arm}`] = ours.decodeTokPerS / other.decodeTokPerS;
      res.ratios[`prefill ours/${arm}`] = ours.prefillTokPerS / other.prefillTokPerS;
    }
  }
  return res;
}


const ARM_LABEL: Record<string, string> = { ours: "onegen-webgpu (ours)", cpu: "llama.cpp CPU", vulkan: "llama.cpp Vulkan" };

function markdown(meta: Record<string, unknown>, o: Options, shapes: ShapeResult[]): string {
  const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "-");
  const lines = [
    "# Peer comparison: onegen-webgpu beside llama.cpp on identical weights",
    BENCH_REPORT_TAG,
    "",
    `Commit ${meta.commit} · ${meta.date} · ${meta.cpus} CPUs (${meta.cpuModel}), ${meta.memGiB} GiB · load average (1/5/15 min) start ${(meta.loadAvg as { start: number[] }).start.map((x) => x.toFixed(2)).join("/")}, end ${(meta.loadAvg as { end: number[] }).end.map((x) => x.toFixed(2)).join("/")} · node-llama-cpp ${meta.nodeLlamaCpp ?? "-"}`,
    "",
    `Method (bench/peer/run.ts): synthetic F16 weights written once as a Hugging Face directory (ours) and as GGUF (llama.cpp); per weight type (${o.types.join(", ")}; Q8_0 / Q4_0: ours quantizes the projections while loading, the GGUF holds the same blocks, embeddings and lm_head F16 in both) one process per arm; ${o.rounds} rounds, arms alternated (except where marked: one arm in memory at a time, all its rounds, then the next); prefill ${o.prefill} tokens on an empty cache, decode ${o.decode} greedy tokens after it; medians over the rounds; llama.cpp with node-llama-cpp's defaults (threads ${o.threads}).`,
    "",
    "| shape | weights | arm | device | prefill tok/s | decode tok/s | per-rep decode tok/s | GB read / forward | weight GB/s | load avg at reps |",
    "|---|---|---|---|---:|---:|---|---:|---:|---|",
  ];
  for (const s of shapes) {
    for (const [arm, r] of Object.entries(s.arms)) {
      if ("error" in r) lines.push(`| ${s.shape} | ${s.type} | ${ARM_LABEL[arm]} | - | - | - | failed: ${r.error.replace(/\|/g, "/")} | - | - | - |`);
      else lines.push(`| ${s.shape} | ${s.type}${s.sequential ? " (arms one after the other)" : ""} | ${ARM_LABEL[arm]} | ${r.info.device.replace(/\|/g, "/")} | ${f(r.prefillTokPerS, 1)} | ${f(r.decodeTokPerS, r.decodeTokPerS < 1 ? 3 : 2)} | ${r.reps.map((x) => f(x.decodeTokPerS, x.decodeTokPerS < 1 ? 3 : 2)).join(", ")} | ${f(r.bytesPerForward / 1e9)} | ${f(r.weightGBps)} | ${r.reps.map((x) => f(x.loadAvg1)).join(", ")} |`);
    }
  }
  lines.push("", "| shape | weights | decode ours/CPU | decode ours/Vulkan | prefill ours/CPU | prefill ours/Vulkan |", "|---|---|---:|---:|---:|---:|");
  for (const s of shapes) lines.push(`| ${s.shape} | ${s.type} | ${f(s.ratios["decode ours/cpu"] ?? NaN)} | ${f(s.ratios["decode ours/vulkan"] ?? NaN)} | ${f(s.ratios["prefill ours/cpu"] ?? NaN)} | ${f(s.ratios["prefill ours/vulkan"] ?? NaN)} |`);
  lines.push("", "Targets (issue 16): decode ≥ 1.5× llama.cpp Vulkan and ≥ 0.5× llama.cpp CPU. Figures from a shared, loaded machine are noisy: read them with the load average.", "");
  return lines.join("\n");
}

async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  const log = (s: string) => process.stdout.write(s + "\n");
  let pkg: NodeLlamaCppPackage | null = null;
  if (o.arms.some((a) => a !== "ours")) {
    const found = findNodeLlamaCpp(repoRoot);
    if ("missing" in found) {
      console.error(`peer: ${found.missing}; or run only our arm with --arms ours`);
      process.exitCode = 1;
      return;
    }
    pkg = found.found;
  }
  const loadStart = loadavg();
  const commit = gitCommit(repoRoot);
  const date = new Date().toISOString();
  const typeTag = o.types.length === 1 && o.types[0] === "F16" ? "" : `-${o.types.join("+")}`;
  const base = join(o.outDir, `${date.slice(0, 10)}-${commit}-peer-${o.shapes.join("+")}${typeTag}`);
  await benchOutputs.check(base);
  await mkdir(o.modelsDir, { recursive: true });
  const shapes: ShapeResult[] = [];
  for (const s of o.shapes) for (const t of o.types) shapes.push(await runShape(o, s, t, pkg, log));
  const meta = {
    format: FILE_FORMATS["bench-results"],
    kind: "peer",
    commit,
    date,
    ...machineMeta(loadStart),
    nodeLlamaCpp: pkg?.version ?? null,
    settings: { ...o, method: "one process per arm, rounds alternate the arms; medians over rounds" },
  };
  const json = JSON.stringify({ ...meta, shapes }, null, 2) + "\n";
  await benchOutputs.write(base, json, markdown(meta, o, shapes));
  log(`\n${markdown(meta, o, shapes)}\nwrote ${base}.json, ${base}.md`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  });
}
