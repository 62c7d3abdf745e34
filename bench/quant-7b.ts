// Quantized decode on a synthetic BF16 sharded checkpoint (issue 17, "Done when"): f16 vs Q8_0 vs
// Q4_0 of the SAME checkpoint, quantized while loading, in one run.
//
//   node dist/bench/quant-7b.js                       # quick: onegen-el-tiny (2 layers, D 256), all formats
//   node dist/bench/quant-7b.js --7b                  # OneGen-EntityLinking-Llama2-7B shape (13.5 GB BF16, 3 shards)
//       [--shape NAME] [--layers N] [--formats f16,q4_0,q8_0] [--rounds R] [--reps N] [--decode G]
//       [--prompt P] [--entity-linking q4_0,...|none] [--el-template onegen|none]
//       [--models-dir /tmp/onegen-quant-models] [--out bench/results] [--name BASE]
//
// The checkpoint: bench/peer/synth-hf.ts writes the shape as Hugging Face saves it (BF16,
// model-0000i-of-0000N.safetensors + model.safetensors.index.json, tokenizer.json with OneGen's
// [_CONTINUE_], [SE], [LK]), tensor by tensor (peak host memory ≈ the largest tensor), reused
// while synthetic.json matches. Then one process per format and round (bench/quant-7b-worker.ts):
// each loads the directory (BF16 → f16, or quantized per tensor on the host while loading), warms
// up, times greedy decode (--reps reps of G forwards after a P-token prefill), optionally runs one
// OneGen entity linking (index of 4 documents at [SE], a [LK] that triggers the in-loop search),
// reports its peak RSS and exits before the next format starts: one format in memory at a time.
// Rounds rotate the order of the formats (alternated arms). Figures: median tok/s per format over
// its reps and rounds, weight GB/s (bytes one forward reads × tok/s), ratios quantized / f16, the
// load average at every rep. Written to OUT/BASE.json and .md (tagged outputs, written atomically).
import { fork } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { loadavg } from "node:os";
import { benchOutputs, gitCommit, machineMeta } from "./harness.js";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "../src/cli/args.js";
import { UsageError } from "../src/errors.js";
import { BENCH_REPORT_TAG, FILE_FORMATS } from "../src/io/output.js";
import { parameterCount } from "../src/model/config.js";
import { SYNTHETIC_SHAPES, syntheticConfig, type SyntheticShapeName } from "./synthetic.js";
import { syntheticDirMatches, writeSyntheticModelDir, type SyntheticDirOptions } from "./peer/synth-hf.js";
import { promptIds } from "./peer/run.js";
import type { Format, QuantWorkerInit, QuantWorkerResult } from "./quant-7b-worker.js";

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = join(here, "..", "..");
const FORMATS: readonly Format[] = ["f16", "q8_0", "q4_0"];
const SHAPE_7B: SyntheticShapeName = "onegen-el-llama2-7b";

interface Options {
  shape: SyntheticShapeName;
  layers: number;
  formats: Format[];
  rounds: number;
  reps: number;
  decode: number;
  prompt: number;
  entityLinking: Format[];
  elTemplate: "onegen" | "none";
  shards: number;
  modelsDir: string;
  outDir: string;
  name: string | null;
}

function parse(argv: string[]): Options {
  const a = parseArgs(argv, { values: ["shape", "layers", "formats", "rounds", "reps", "decode", "prompt", "entity-linking", "el-template", "shards", "models-dir", "out", "name"], booleans: ["7b"] }, "quant-7b");
  const int = (k: string, d: number, lo: number, hi: number): number => {
    const v = a.flags.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new UsageError(`quant-7b: --${k} must be an integer in [${lo}, ${hi}], got '${v}'`);
    return n;
  };
  const big = a.bools.has("7b");
  const shape = (a.flags.get("shape") ?? (big ? SHAPE_7B : "onegen-el-tiny")) as SyntheticShapeName;
  if (!(shape in SYNTHETIC_SHAPES)) throw new UsageError(`quant-7b: --shape names no shape '${shape}' (shapes: ${Object.keys(SYNTHETIC_SHAPES).join(", ")})`);
  if (big && shape !== SHAPE_7B) throw new UsageError(`quant-7b: --7b is the shape ${SHAPE_7B}; give --shape or --7b, not both`);
  const list = (k: string, d: string, allowNone: boolean): Format[] => {
    const v = a.flags.get(k) ?? d;
    if (allowNone && v === "none") return [];
    const xs = v.split(",").filter(Boolean);
    for (const x of xs) if (!FORMATS.includes(x as Format)) throw new UsageError(`quant-7b: --${k} names no format '${x}' (formats: ${FORMATS.join(", ")}${allowNone ? ", or none" : ""})`);
    return xs as Format[];
  };
  const formats = list("formats", big ? "f16,q4_0" : FORMATS.join(","), false);
  const tmpl = a.flags.get("el-template") ?? "onegen";
  if (tmpl !== "onegen" && tmpl !== "none") throw new UsageError(`quant-7b: --el-template must be onegen or none, got '${tmpl}'`);
  return {
    shape,
    layers: int("layers", SYNTHETIC_SHAPES[shape].num_hidden_layers, 1, 256),
    formats,
    rounds: int("rounds", 1, 1, 100),
    reps: int("reps", big ? 1 : 3, 1, 100),
    decode: int("decode", big ? 4 : 16, 1, 4096),
    prompt: int("prompt", 8, 1, 4096),
    entityLinking: list("entity-linking", big ? "q4_0" : FORMATS.join(","), true),
    elTemplate: tmpl,
    shards: int("shards", 3, 1, 100),
    modelsDir: resolve(a.flags.get("models-dir") ?? "/tmp/onegen-quant-models"),
    outDir: resolve(a.flags.get("out") ?? join(repoRoot, "bench", "results")),
    name: a.flags.get("name") ?? null,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function runWorker(init: QuantWorkerInit): Promise<QuantWorkerResult> {
  return new Promise((res, rej) => {
    const child = fork(join(here, "quant-7b-worker.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" } });
    let done = false;
    child.on("message", (m: { ok: boolean; res?: QuantWorkerResult; error?: string }) => {
      done = true;
      if (m.ok) res(m.res!);
      else rej(new Error(m.error));
    });
    child.on("exit", (code, sig) => {
      if (!done) rej(new Error(`worker '${init.format}' exited (${sig ?? code}) before reporting`));
    });
    child.send({ init });
  });
}


interface FormatSummary {
  format: Format;
  runs: QuantWorkerResult[];
  errors: string[];
  tokPerS: number;
  weightGBps: number;
  loadMs: number;
  peakRssBytes: number;
}

function markdown(meta: Record<string, unknown>, o: Options, params: number, dirInfo: string, sums: FormatSummary[], ratios: Record<string, number>): string {
  const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "-");
  const gb = (x: number) => f(x / 1e9, 2);
  const la = meta.loadAvg as { start: number[]; end: number[] };
  const first = sums.flatMap((s) => s.runs)[0];
  const lines = [
    `# Quantized decode: ${o.shape}${o.layers !== SYNTHETIC_SHAPES[o.shape].num_hidden_layers ? ` cut to ${o.layers} layers` : ""}, f16 vs ${o.formats.filter((x) => x !== "f16").join(" vs ")}`,
    BENCH_REPORT_TAG,
    "",
    `Commit ${meta.commit} · ${meta.date} · ${meta.cpus} CPUs (${meta.cpuModel}), ${meta.memGiB} GiB · adapter ${first?.adapter ?? "-"} · load average (1/5/15 min) start ${la.start.map((x) => x.toFixed(2)).join("/")}, end ${la.end.map((x) => x.toFixed(2)).join("/")}`,
    "",
    `Checkpoint: ${dirInfo}; ${(params / 1e9).toFixed(2)} B parameters.`,
    "",
    `Method (bench/quant-7b.ts): one process per format and round (one format in memory at a time), ${o.rounds} round(s), order rotated each round; each process loads the same directory (BF16 → f16 weights, or the projections quantized per tensor on the host while loading: \`loadDecoder({ quantize })\`, the CLI's \`--quantize\`; projections in the layout the CLI picks, \`gemvLayout: "auto"\`: tiles on software adapters), warms up, then ${o.reps} rep(s) of ${o.decode} greedy decode forwards after a ${o.prompt}-token prefill (Session.generate, temperature 0, 4 steps per readback). tok/s = forwards / wall time; weight GB/s = bytes one forward reads (layer matrices + norms + lm_head + one embedding row) × tok/s. Peak RSS: the process's maxRSS (lavapipe's buffers are host memory, so it includes the weights).`,
    "",
    "| format | load s | weights GB | bytes / forward GB | decode tok/s (median) | per-rep tok/s | weight GB/s | peak RSS GiB | load avg at reps |",
    "|---|---:|---:|---:|---:|---|---:|---:|---|",
  ];
  for (const s of sums) {
    if (s.runs.length === 0) {
      lines.push(`| ${s.format} | - | - | - | - | ${s.errors.length ? `failed: ${s.errors.join("; ").replace(/\|/g, "/").slice(0, 300)}` : "not run yet"} | - | - | - |`);
      continue;
    }
    const r0 = s.runs[0]!;
    const reps = s.runs.flatMap((r) => r.reps);
    lines.push(
      `| ${s.format} | ${s.runs.map((r) => f(r.loadMs / 1e3, 1)).join(", ")} | ${gb(r0.weightBytes)} | ${gb(r0.decodeBytes)} | ${f(s.tokPerS, 3)} | ${reps.map((x) => f(x.tokPerS, 3)).join(", ")} | ${f(s.weightGBps)} | ${s.runs.map((r) => f(r.peakRssBytes / 2 ** 30, 1)).join(", ")} | ${reps.map((x) => f(x.loadAvg1)).join(", ")} |`,
    );
  }
  if (Object.keys(ratios).length) {
    lines.push("", "| ratio (same run) | value |", "|---|---:|");
    for (const [k, v] of Object.entries(ratios)) lines.push(`| ${k} | ${f(v)} |`);
  }
  const els = sums.flatMap((s) => s.runs.filter((r) => r.entityLinking).map((r) => [s.format, r.entityLinking!] as const));
  if (els.length) {
    lines.push("", "Entity linking through the OneGen task path (runEntityLinking; index of 4 entity documents encoded at [SE] by the same model; the random model steered by forcing rules into `<MENTION>David</MENTION>[LK]`, then the task's own rule forces [_CONTINUE_]):", "");
    lines.push("| format | index build s | prompt tokens | run s | annotated output | [LK] hits (id: score) | [_CONTINUE_] forced | mentions |", "|---|---:|---:|---:|---|---|---|---|");
    for (const [fmt, e] of els) {
      const hits = e.retrievals.map((r) => `@${r.position} ${r.source}: ${r.hits.map((h) => `${h.id}: ${h.score.toFixed(3)}`).join(", ")}`).join("; ");
      lines.push(`| ${fmt} | ${f(e.indexMs / 1e3, 1)} | ${e.promptTokens} | ${f(e.runMs / 1e3, 1)} | ${JSON.stringify(e.annotated).replace(/\|/g, "/")} | ${hits} | ${e.continueForced ? "yes" : "no"} | ${e.mentions.map((m) => `${m.mention} [${m.span?.join(", ") ?? "-"}] → ${m.entity}`).join("; ")} |`);
    }
  }
  lines.push("", "The weights are random: the annotated text and the hits show that the path runs (load, index, search, forcing), not linking quality; quality figures are in test/quant-*.test.ts and the model card.", "");
  return lines.join("\n");
}

async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  const log = (s: string) => process.stdout.write(s + "\n");
  const loadStart = loadavg();
  const commit = gitCommit(repoRoot);
  const date = new Date().toISOString();
  const layerTag = o.layers !== SYNTHETIC_SHAPES[o.shape].num_hidden_layers ? `-${o.layers}l` : "";
  const base = join(o.outDir, o.name ?? `${date.slice(0, 10)}-${commit}-quant-${o.shape}${layerTag}`);
  await benchOutputs.check(base);
  await mkdir(o.modelsDir, { recursive: true });
  const dirOpts: SyntheticDirOptions = { dtype: "BF16", shards: o.shards, layers: o.layers };
  const dir = join(o.modelsDir, `${o.shape}${layerTag}-bf16-${o.shards}shards`);
  if (!(await syntheticDirMatches(dir, o.shape, dirOpts))) {
    const t = performance.now();
    await writeSyntheticModelDir(dir, o.shape, repoRoot, dirOpts);
    log(`${o.shape}: wrote ${dir} in ${((performance.now() - t) / 1e3).toFixed(1)} s`);
  } else log(`${o.shape}: reusing ${dir}`);
  const c = syntheticConfig(o.shape, { layers: o.layers });
  const params = parameterCount(c);
  const dirInfo = `synthetic BF16 Hugging Face directory \`${dir}\` (bench/peer/synth-hf.ts: ${o.shards} safetensors shard(s)${o.shards > 1 ? " + model.safetensors.index.json" : ""}, tokenizer.json of Llama-2 + [_CONTINUE_], [SE], [LK]); ${c.numLayers} layers, hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}, ${c.numHeads} heads (${c.numKvHeads} kv), vocab ${c.vocabSize}`;
  const prompt = promptIds(o.prompt, 32000);

  const sums = new Map<Format, FormatSummary>(o.formats.map((fm) => [fm, { format: fm, runs: [], errors: [], tokPerS: NaN, weightGBps: NaN, loadMs: NaN, peakRssBytes: NaN }]));
  /** Summarizes what ran so far and (re)writes the results: a long run that stops keeps its figures. */
  const save = async (final: boolean): Promise<string> => {
    for (const s of sums.values()) {
      if (s.runs.length === 0) continue;
      const reps = s.runs.flatMap((r) => r.reps);
      s.tokPerS = median(reps.map((x) => x.tokPerS));
      s.weightGBps = median(reps.map((x) => x.weightGBps));
      s.loadMs = median(s.runs.map((r) => r.loadMs));
      s.peakRssBytes = Math.max(...s.runs.map((r) => r.peakRssBytes));
    }
    const ratios: Record<string, number> = {};
    const f16 = sums.get("f16");
    for (const q of ["q8_0", "q4_0"] as const) {
      const s = sums.get(q);
      if (f16 && s && f16.runs.length && s.runs.length) ratios[`decode tok/s ${q} / f16`] = s.tokPerS / f16.tokPerS;
    }
    const meta = {
      format: FILE_FORMATS["bench-results"],
      kind: "quant-decode",
      commit,
      date,
      ...machineMeta(loadStart),
      complete: final,
      settings: { ...o, method: "one process per format and round, order rotated per round; medians over reps and rounds" },
    };
    const json = JSON.stringify({ ...meta, model: { dir, params, dirInfo }, formats: [...sums.values()], ratios }, null, 2) + "\n";
    const md = markdown(meta, o, params, dirInfo, [...sums.values()], ratios) + (final ? "" : "\n(partial: the run had not finished when this was written)\n");
    await benchOutputs.write(base, json, md);
    return md;
  };
  for (let r = 0; r < o.rounds; r++) {
    const order = o.formats.map((_, i) => o.formats[(i + r) % o.formats.length]!);
    for (const fm of order) {
      log(`round ${r + 1}/${o.rounds}: ${fm} (load average ${loadavg().map((x) => x.toFixed(2)).join("/")})`);
      const init: QuantWorkerInit = { format: fm, model: dir, prompt, decode: o.decode, reps: o.reps, entityLinking: r === 0 && o.entityLinking.includes(fm), elTemplate: o.elTemplate };
      try {
        const res = await runWorker(init);
        sums.get(fm)!.runs.push(res);
        log(`${fm}: ${res.tokPerS.toFixed(3)} tok/s, ${res.weightGBps.toFixed(2)} GB/s, load ${(res.loadMs / 1e3).toFixed(1)} s, peak RSS ${(res.peakRssBytes / 2 ** 30).toFixed(1)} GiB`);
      } catch (e) {
        const line = (e as Error).message.split("\n").find((l) => l.trim()) ?? String(e);
        sums.get(fm)!.errors.push(line);
        log(`${fm}: FAILED: ${line}`);
      }
      await save(false);
    }
  }
  const md = await save(true);
  log(`\n${md}\nwrote ${base}.json, ${base}.md`);
  if ([...sums.values()].every((s) => s.runs.length === 0)) process.exitCode = 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  });
}
