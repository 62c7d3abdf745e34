// Readable reports generated from a results JSON (bench/results/latest.json): a Markdown summary
// (one table per suite, the model-level tables, the quoted reference comparison) and a
// hand-written SVG chart (kernel bars of "ratio to copy bandwidth"; decode tok/s against the
// quoted reference lines). run.ts calls writeReport after every run;
// `node dist/bench/report.js [results.json]` regenerates X.md and X.svg beside X.json.
import { readFileSync } from "node:fs";
import { BENCH_REPORT_TAG, checkOutput, writeFileAtomic } from "../src/io/output.js";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { BenchRow } from "./harness.js";

/** The results file written by run.ts (fields a report uses; older files may lack the optional ones). */
export interface BenchResults {
  adapter: string;
  backend?: string;
  commit: string;
  date: string;
  quick: boolean;
  copyGBps: number;
  timingMethod: string;
  node?: string;
  /** os.loadavg() at the start and the end of the run (1, 5, 15 minutes). */
  loadAvg?: { start: number[]; end: number[] };
  cpus?: number;
  /** Wall seconds per suite. */
  suiteSeconds?: Record<string, number>;
  /** Suites that threw (their rows are absent). */
  failed?: { suite: string; message: string }[];
  rows: BenchRow[];
}

/** Parses and checks a results JSON (throws naming the file and the missing field). */
export function parseResults(text: string, file = "results.json"): BenchResults {
  const o = JSON.parse(text) as Record<string, unknown>;
  for (const k of ["adapter", "commit", "date", "copyGBps", "rows"]) {
    if (o[k] === undefined) throw new Error(`${file}: not a benchmark results file (field '${k}' is missing)`);
  }
  if (!Array.isArray(o.rows)) throw new Error(`${file}: 'rows' must be an array`);
  return o as unknown as BenchResults;
}

function num(v: number | undefined, digits = 3): string {
  if (v === undefined || !Number.isFinite(v)) return "-";
  if (Number.isInteger(v)) return String(v);
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 100) return v.toFixed(1);
  return String(Number(v.toPrecision(digits)));
}

function bytes(b: unknown): string {
  if (typeof b !== "number") return "-";
  if (b >= 2 ** 30) return `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (b >= 2 ** 20) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${b.toFixed(0)} B`;
}

function x(v: unknown): number | undefined {
  return typeof v === "number" ? v : undefined;
}

/** The reference FLOP rate: the roofline suite's "best" row, else the best GFLOP/s of any matmul row. */
export function flopRoofline(res: BenchResults): { gflops: number; from: string } | null {
  const best = res.rows.find((r) => r.bench === "roofline" && r.variant === "best");
  if (best?.gflops) return { gflops: best.gflops, from: best.shape };
  return null;
}

function groupBySuite(rows: BenchRow[]): Map<string, BenchRow[]> {
  const m = new Map<string, BenchRow[]>();
  for (const r of rows) {
    let list = m.get(r.bench);
    if (!list) m.set(r.bench, (list = []));
    list.push(r);
  }
  return m;
}

function extraText(e: BenchRow["extra"]): string {
  if (!e) return "";
  return Object.entries(e)
    .map(([k, v]) => `${k}=${typeof v === "number" ? num(v) : v}`)
    .join(", ");
}

function modelTables(rows: BenchRow[], res: BenchResults, flops: number | null): string[] {
  const out: string[] = [];
  const prefill = rows.filter((r) => r.variant === "prefill");
  const decode = rows.filter((r) => r.variant === "decode");
  if (prefill.length) {
    out.push(
      `**Prefill** (Session.append of a random prompt on an empty cache, logits of the last row)`,
      ``,
      `| model | prompt tokens | tok/s | median s | samples | GFLOP/s | × FLOP roofline |`,
      `|---|---:|---:|---:|---:|---:|---:|`,
      ...prefill.map((r) => {
        const e = r.extra ?? {};
        return `| ${String(e.model ?? r.shape)} | ${num(x(e.promptTokens))} | ${num(x(e.tokPerS))} | ${num(r.medianMs / 1e3)} | ${r.samples} | ${num(r.gflops)} | ${flops && r.gflops ? (r.gflops / flops).toFixed(2) : "-"} |`;
      }),
      ``,
    );
  }
  if (decode.length) {
    out.push(
      `**Decode** (Session.generate, greedy; median time per token over batches of stepsPerRead tokens; counters per token over the same batches)`,
      ``,
      `| model | shape | tok/s | ms/token (min–max) | × memory roofline | bytes read/token | GPU memory (weights + KV) | dispatches/token | host syncs/token | bytes read back/token | stepsPerRead |`,
      `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
      ...decode.map((r) => {
        const e = r.extra ?? {};
        return (
          `| ${String(e.model ?? "-")} | ${r.shape} | ${num(x(e.tokPerS))} | ${num(r.medianMs)} (${num(r.minMs)}–${num(r.maxMs)}) | ${r.ratioToCopy === undefined ? "-" : r.ratioToCopy.toFixed(3)} | ` +
          `${bytes(x(e.weightBytesPerToken)! + (x(e.kvReadBytesPerToken) ?? 0))} | ${bytes(e.gpuBytes)} (${bytes(e.weightBytes)} + ${bytes(e.kvCacheBytes)}) | ${num(x(e.dispatchesPerToken))} | ${num(x(e.hostSyncsPerToken))} | ${num(x(e.bytesReadBackPerToken))} | ${String(e.stepsPerRead ?? "-")} |`
        );
      }),
      ``,
      `Memory roofline: (weight bytes + K/V bytes read per token) ÷ copy bandwidth (${res.copyGBps.toFixed(2)} GB/s, read+write convention) ÷ measured time per token.`,
      ``,
    );
    const withRef = decode.filter((r) => r.extra?.refVulkanTokS !== undefined);
    if (withRef.length) {
      const src = String(withRef[0]!.extra!.refSource ?? "quoted reference");
      out.push(
        `**Decode vs quoted reference figures**: "ours" is measured here, in this run; the llama.cpp figures are quoted from ${src} and were not measured here.`,
        ``,
        `| model | ours tok/s (measured) | llama.cpp Vulkan/lavapipe (quoted) | ours ÷ it | target 1.5× Vulkan | ours ÷ target | llama.cpp CPU (quoted) | ours ÷ it | target CPU/2 | ours ÷ target |`,
        `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
        ...withRef.map((r) => {
          const e = r.extra!;
          const v = x(e.refVulkanTokS)!, c = x(e.refCpuTokS)!;
          return `| ${String(e.model)} | ${num(x(e.tokPerS))} | ${v} | ${num(x(e.ratioToRefVulkan))} | ${num(1.5 * v)} | ${num(x(e.ratioToTargetVulkan))} | ${c} | ${num(x(e.ratioToRefCpu))} | ${num(0.5 * c)} | ${num(x(e.ratioToTargetCpu))} |`;
        }),
        ``,
      );
    }
  }
  return out;
}

function timing(r: BenchRow | undefined): string {
  return r ? `${num(r.medianMs)} (${num(r.minMs)}–${num(r.maxMs)}, n=${r.samples})` : "-";
}

/** OneGen one-pass vs two-pass: one line per (context, index size, measure), the two arms side by side. */
function onegenTables(rows: BenchRow[]): string[] {
  const out: string[] = [];
  const arms = rows.filter((r) => r.variant === "one-pass" || r.variant === "two-pass");
  const key = (r: BenchRow) => `${String(r.extra?.measure)}|${String(r.extra?.context)}|${String(r.extra?.entries)}`;
  const cells = new Map<string, { one?: BenchRow; two?: BenchRow }>();
  for (const r of arms) {
    const c = cells.get(key(r)) ?? {};
    if (r.variant === "one-pass") c.one = r;
    else c.two = r;
    cells.set(key(r), c);
  }
  for (const [measure, title] of [
    ["hits", "**Time to hits** (wall time of a one-step generate() that feeds a forced query token, until the token is yielded with its hits)"],
    ["inject", "**Time to the first token after injection** (two-step generate() with injection, until the token after the injected document is yielded)"],
  ] as const) {
    const list = [...cells.values()].filter((c) => (c.one ?? c.two)!.extra?.measure === measure);
    if (!list.length) continue;
    const e0 = (list[0]!.one ?? list[0]!.two)!.extra ?? {};
    out.push(
      `${title}; model ${String(e0.model ?? "-")}, D=${String(e0.dim ?? "-")}, k=${String(e0.k ?? "-")}${measure === "inject" ? `, ${String(e0.injectTokens ?? "-")} injected ids` : ""}`,
      ``,
      `| context | index entries | one-pass ms (min–max, n) | two-pass ms (min–max, n) | speedup (two ÷ one) | top-1 agrees |`,
      `|---:|---:|---:|---:|---:|---|`,
      ...list.map((c) => {
        const e = (c.one ?? c.two)!.extra ?? {};
        return `| ${num(x(e.context))} | ${num(x(e.entries))} | ${timing(c.one)} | ${timing(c.two)} | ${x(e.speedup) === undefined ? "-" : `×${num(x(e.speedup))}`} | ${String(e.top1Agree ?? "-")} |`;
      }),
      ``,
    );
  }
  const comps = rows.filter((r) => r.extra?.component !== undefined);
  if (comps.length) {
    out.push(
      `**Search alone** (gpu-search: the fused top-k kernel the one-pass loop runs; cpu-search: the two-pass baseline's host search over its cached f32 copy)`,
      ``,
      `| component | shape | median ms | min–max ms | GB/s scanned | × copy |`,
      `|---|---|---:|---:|---:|---:|`,
      ...comps.map((r) => `| ${r.variant} | ${r.shape} | ${num(r.medianMs)} | ${num(r.minMs)}–${num(r.maxMs)} | ${num(r.gbps ?? x(r.extra?.hostGBps))} | ${r.ratioToCopy === undefined ? "- (host)" : r.ratioToCopy.toFixed(2)} |`),
      ``,
    );
  }
  return out;
}

function indexBuildTable(rows: BenchRow[], flops: number | null): string[] {
  return [
    `**Index build** (encodeDocuments into a new index; wall time of the call)`,
    ``,
    `| model | batch tokens | documents × tokens | entries | documents/s | tokens/s | entries/s | median s (min–max, n) | GFLOP/s | × FLOP |`,
    `|---|---:|---|---:|---:|---:|---:|---:|---:|---:|`,
    ...rows.map((r) => {
      const e = r.extra ?? {};
      return (
        `| ${String(e.model ?? "-")} | ${num(x(e.batchTokens))} | ${num(x(e.documents))} × ${num(x(e.tokensPerDocument))} | ${num(x(e.entries))} | ${num(x(e.docsPerS))} | ${num(x(e.tokensPerS))} | ${num(x(e.entriesPerS))} | ` +
        `${num(r.medianMs / 1e3)} (${num(r.minMs / 1e3)}–${num(r.maxMs / 1e3)}, n=${r.samples}) | ${num(r.gflops)} | ${flops && r.gflops ? (r.gflops / flops).toFixed(2) : "-"} |`
      );
    }),
    ``,
  ];
}

function trainTable(rows: BenchRow[], flops: number | null): string[] {
  return [
    `**Training step** (trainStep + AdamW.step + GPU wait; joint loss with a contrastive term; GFLOP/s estimated from the forward FLOPs × 3 full, × 2 LoRA)`,
    ``,
    `| model | mode | tokens/step | tok/s | s/step (min–max, n) | trainable params | GFLOP/s (est.) | × FLOP | weights | grads + optimizer | GPU memory held |`,
    `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
    ...rows.map((r) => {
      const e = r.extra ?? {};
      return (
        `| ${String(e.model ?? "-")} | ${r.variant} | ${num(x(e.tokens))} | ${num(x(e.tokPerS))} | ${num(r.medianMs / 1e3)} (${num(r.minMs / 1e3)}–${num(r.maxMs / 1e3)}, n=${r.samples}) | ` +
        `${num(x(e.trainableParams))} | ${num(r.gflops)} | ${flops && r.gflops ? (r.gflops / flops).toFixed(2) : "-"} | ${bytes(e.weightBytes)} | ${bytes(e.trainStateBytes)} | ${bytes(e.gpuBytes)} |`
      );
    }),
    ``,
  ];
}

export function renderMarkdown(res: BenchResults): string {
  const flops = flopRoofline(res);
  const load = res.loadAvg ? ` · load average (1/5/15 min) start ${res.loadAvg.start.map((v) => v.toFixed(2)).join("/")}, end ${res.loadAvg.end.map((v) => v.toFixed(2)).join("/")}${res.cpus ? ` on ${res.cpus} CPUs` : ""}` : "";
  const lines: string[] = [
    `# Benchmark results`,
    BENCH_REPORT_TAG, // the output tag (src/io/output.ts): a later run may replace this file
    ``,
    `Adapter: ${res.adapter}${res.backend ? ` (${res.backend})` : ""} · commit ${res.commit} · ${res.date} · mode ${res.quick ? "quick" : "full"}${res.node ? ` · node ${res.node}` : ""}${load}`,
    ``,
    `Timing: ${res.timingMethod}`,
    ``,
    `Rooflines: copy bandwidth ${res.copyGBps.toFixed(2)} GB/s (copyBufferToBuffer, read+write bytes) · reference FLOP rate ${flops ? `${flops.gflops.toFixed(2)} GFLOP/s (${flops.from})` : "not measured in this run"}`,
    ``,
    `"× copy" = GB/s ÷ copy bandwidth; "× FLOP" = GFLOP/s ÷ reference FLOP rate. Figures from a shared, loaded machine are noisy (see the load average).`,
    ``,
  ];
  if (res.failed?.length) {
    lines.push(`**Failed suites** (no rows): ${res.failed.map((f) => `${f.suite} (${f.message.split("\n")[0]!.trim()})`).join("; ")}`, ``);
  }
  if (res.suiteSeconds) {
    lines.push(`Suite wall times: ${Object.entries(res.suiteSeconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(", ")}`, ``);
  }
  for (const [suite, rows] of groupBySuite(res.rows)) {
    lines.push(`## ${suite}`, ``);
    if (suite === "model") {
      lines.push(...modelTables(rows, res, flops?.gflops ?? null));
      continue;
    }
    if (suite === "onegen") {
      lines.push(...onegenTables(rows));
      continue;
    }
    if (suite === "index-build") {
      lines.push(...indexBuildTable(rows, flops?.gflops ?? null));
      continue;
    }
    if (suite === "train") {
      lines.push(...trainTable(rows, flops?.gflops ?? null));
      continue;
    }
    const hasExtra = rows.some((r) => r.extra && Object.keys(r.extra).length > 0);
    lines.push(
      `| variant | shape | median ms | min–max ms | GFLOP/s | × FLOP | GB/s | × copy |${hasExtra ? " notes |" : ""}`,
      `|---|---|---:|---:|---:|---:|---:|---:|${hasExtra ? "---|" : ""}`,
      ...rows.map(
        (r) =>
          `| ${r.variant} | ${r.shape} | ${num(r.medianMs)} | ${num(r.minMs)}–${num(r.maxMs)} | ${num(r.gflops)} | ${flops && r.gflops ? (r.gflops / flops.gflops).toFixed(2) : "-"} | ${num(r.gbps)} | ${r.ratioToCopy === undefined ? "-" : r.ratioToCopy.toFixed(2)} |` +
          (hasExtra ? ` ${extraText(r.extra)} |` : ""),
      ),
      ``,
    );
  }
  return lines.join("\n");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** SVG: (1) bars of ratio to copy bandwidth per row that has one, (2) decode tok/s vs reference lines. */
export function renderSvg(res: BenchResults): string {
  const W = 1120;
  const labelW = 560;
  const barW = W - labelW - 90;
  const rowH = 16;
  const parts: string[] = [];
  let y = 24;
  const title = `onegen-webgpu benchmarks · ${res.adapter} · ${res.commit} · ${res.date.slice(0, 10)}${res.quick ? " · quick" : ""}`;
  parts.push(`<text x="10" y="${y}" font-size="14" font-weight="bold">${esc(title)}</text>`);
  y += 26;

  // Panel 1: ratio to copy bandwidth.
  const bars = res.rows.filter((r) => r.ratioToCopy !== undefined && Number.isFinite(r.ratioToCopy) && !(r.bench === "roofline" && r.variant === "best"));
  parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">Ratio to copy bandwidth (${res.copyGBps.toFixed(2)} GB/s); model decode rows: ratio to the memory roofline</text>`);
  y += 10;
  const maxRatio = Math.max(1, ...bars.map((r) => r.ratioToCopy!));
  const sx = (v: number) => labelW + (v / maxRatio) * barW;
  const top = y;
  for (const r of bars) {
    const v = r.ratioToCopy!;
    const color = r.bench === "copy" ? "#888" : r.bench === "model" ? "#d9822b" : "#3b7dd8";
    parts.push(`<text x="${labelW - 6}" y="${y + rowH - 4}" font-size="10" text-anchor="end">${esc((`${r.bench} · ${r.variant} · ${r.shape}`.length > 96 ? `${r.bench} · ${r.variant} · ${r.shape}`.slice(0, 95) + "…" : `${r.bench} · ${r.variant} · ${r.shape}`))}</text>`);
    parts.push(`<rect x="${labelW}" y="${y + 2}" width="${Math.max(0.5, sx(v) - labelW).toFixed(1)}" height="${rowH - 4}" fill="${color}"/>`);
    parts.push(`<text x="${(sx(v) + 4).toFixed(1)}" y="${y + rowH - 4}" font-size="10">${v < 0.01 ? v.toExponential(1) : v.toFixed(2)}</text>`);
    y += rowH;
  }
  parts.push(`<line x1="${sx(1).toFixed(1)}" y1="${top}" x2="${sx(1).toFixed(1)}" y2="${y}" stroke="#c00" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${sx(1).toFixed(1)}" y="${y + 12}" font-size="10" fill="#c00" text-anchor="middle">1.0 = copy bandwidth</text>`);
  y += 36;

  // Panel 2: decode tok/s with the quoted reference lines (each model on its own linear scale).
  const decode = res.rows.filter((r) => r.bench === "model" && r.variant === "decode");
  if (decode.length) {
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">Decode tokens/s, measured here (bars) vs quoted llama.cpp figures (lines; not measured here); one scale per row</text>`);
    y += 12;
    const rowH2 = 60;
    for (const r of decode) {
      const e = r.extra ?? {};
      const ours = x(e.tokPerS) ?? 1000 / r.medianMs;
      const refs: { label: string; v: number; color: string }[] = [];
      const vk = x(e.refVulkanTokS), cpu = x(e.refCpuTokS);
      if (vk !== undefined) refs.push({ label: `Vulkan ${vk}`, v: vk, color: "#7a3" }, { label: `1.5×Vulkan ${num(1.5 * vk)}`, v: 1.5 * vk, color: "#2a6" });
      if (cpu !== undefined) refs.push({ label: `CPU/2 ${num(cpu / 2)}`, v: cpu / 2, color: "#a4a" }, { label: `CPU ${cpu}`, v: cpu, color: "#737" });
      const roofTok = r.ratioToCopy ? ours / r.ratioToCopy : undefined;
      if (roofTok !== undefined) refs.push({ label: `memory roofline ${num(roofTok)}`, v: roofTok, color: "#c00" });
      const maxV = Math.max(ours, ...refs.map((f) => f.v)) * 1.05;
      const s2 = (v: number) => labelW + (v / maxV) * barW;
      parts.push(`<text x="${labelW - 6}" y="${y + 24}" font-size="11" text-anchor="end">${esc(`${String(e.model ?? r.shape)}: ${num(ours)} tok/s`)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y + 14}" width="${Math.max(0.5, s2(ours) - labelW).toFixed(1)}" height="14" fill="#d9822b"/>`);
      refs.forEach((f, i) => {
        const xx = s2(f.v).toFixed(1);
        parts.push(`<line x1="${xx}" y1="${y + 8}" x2="${xx}" y2="${y + 34}" stroke="${f.color}" stroke-width="2"/>`);
        parts.push(`<text x="${xx}" y="${y + 44 - (i % 2) * 38}" font-size="9" fill="${f.color}" text-anchor="middle">${esc(f.label)}</text>`);
      });
      y += rowH2;
    }
  }
  // Panel 3: OneGen speedup (two-pass ÷ one-pass), log scale.
  const speed = res.rows.filter((r) => r.bench === "onegen" && r.variant === "one-pass" && x(r.extra?.speedup) !== undefined);
  if (speed.length) {
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">OneGen: two-pass ÷ one-pass time (log scale; 1 = no gain)</text>`);
    y += 10;
    const maxS = Math.max(10, ...speed.map((r) => x(r.extra!.speedup)!));
    const lx = (v: number) => labelW + (Math.log10(Math.max(v, 0.1)) / Math.log10(maxS)) * barW;
    const top3 = y;
    for (const r of speed) {
      const v = x(r.extra!.speedup)!;
      const e = r.extra!;
      const label = `${e.measure === "hits" ? "hits" : "after injection"} · ctx ${String(e.context)} · N ${String(e.entries)}`;
      parts.push(`<text x="${labelW - 6}" y="${y + rowH - 4}" font-size="10" text-anchor="end">${esc(label)}</text>`);
      const x0 = lx(1), x1 = lx(v);
      parts.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y + 2}" width="${Math.max(0.5, Math.abs(x1 - x0)).toFixed(1)}" height="${rowH - 4}" fill="${e.measure === "hits" ? "#2a8" : "#a62"}"/>`);
      parts.push(`<text x="${(Math.max(x0, x1) + 4).toFixed(1)}" y="${y + rowH - 4}" font-size="10">×${num(v)}</text>`);
      y += rowH;
    }
    parts.push(`<line x1="${lx(1).toFixed(1)}" y1="${top3}" x2="${lx(1).toFixed(1)}" y2="${y}" stroke="#c00" stroke-dasharray="4 3"/>`);
    y += 20;
  }
  y += 10;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif">\n` +
    `${BENCH_REPORT_TAG}\n` +
    `<rect width="${W}" height="${y}" fill="white"/>\n` +
    parts.join("\n") +
    `\n</svg>\n`
  );
}

/** The report files beside X.json. */
export function reportPaths(jsonPath: string): { md: string; svg: string } {
  const base = jsonPath.replace(/\.json$/, "");
  return { md: `${base}.md`, svg: `${base}.svg` };
}

/** Refuses (UsageError) report paths that are not absent, empty or earlier reports (src/io/output.ts). */
export async function checkReportPaths(jsonPath: string): Promise<void> {
  const { md, svg } = reportPaths(jsonPath);
  for (const p of [md, svg]) await checkOutput({ flag: "report", path: p, kind: "bench-report" }, [{ flag: "results", path: jsonPath }]);
}

/** Writes X.md and X.svg beside X.json, atomically, only over earlier reports; returns their paths. */
export async function writeReport(res: BenchResults, jsonPath: string): Promise<{ md: string; svg: string }> {
  const { md, svg } = reportPaths(jsonPath);
  await checkReportPaths(jsonPath);
  await writeFileAtomic(md, "bench-report", renderMarkdown(res), { flag: "report" });
  await writeFileAtomic(svg, "bench-report", renderSvg(res), { flag: "report" });
  return { md, svg };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const file = resolve(process.argv[2] ?? fileURLToPath(new URL("../../bench/results/latest.json", import.meta.url)));
  (async () => {
    await checkReportPaths(file);
    const res = parseResults(readFileSync(file, "utf8"), file);
    const out = await writeReport(res, file);
    process.stdout.write(`wrote ${out.md}\nwrote ${out.svg}\n`);
  })().catch((e: Error) => {
    console.error(e.message);
    process.exitCode = 1;
  });
}
