// Report generation (bench/report.ts) from a small hand-made results file: no GPU, no timings.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { flopRoofline, parseResults, renderMarkdown, renderSvg, writeReport, type BenchResults } from "../bench/report.js";
import { scratchDir } from "./helpers/scratch.js";

const RESULTS: BenchResults = {
  adapter: "test <adapter> & co",
  backend: "node-dawn",
  commit: "abc1234",
  date: "2026-11-24T10:00:00.000Z",
  quick: false,
  copyGBps: 10,
  timingMethod: "wall-sync",
  loadAvg: { start: [1.5, 1, 0.5], end: [2, 1.25, 0.75] },
  cpus: 2,
  rows: [
    { bench: "copy", variant: "copyBufferToBuffer", shape: "64 MiB", medianMs: 13.4, minMs: 13, maxMs: 14, samples: 7, gbps: 10, ratioToCopy: 1 },
    { bench: "linear", variant: "gemv_f16_vec8_r4_mb1_wg64", shape: "M=1 N=4096 K=4096 f16", medianMs: 8, minMs: 7.5, maxMs: 9, samples: 5, gflops: 4.19, gbps: 4.2, ratioToCopy: 0.42 },
    { bench: "roofline", variant: "matmul_f16_vec4_t4x8_wg64x1", shape: "M=N=K=1024 f16", medianMs: 400, minMs: 390, maxMs: 420, samples: 5, gflops: 5.37 },
    { bench: "roofline", variant: "best", shape: "matmul_f16_vec4_t4x8_wg64x1 M=N=K=1024 f16", medianMs: 400, minMs: 390, maxMs: 420, samples: 5, gflops: 5.37 },
    { bench: "model", variant: "prefill", shape: "llama-134m T=128", medianMs: 4000, minMs: 3900, maxMs: 4100, samples: 3, gflops: 2.685, extra: { model: "llama-134m", tokPerS: 32, promptTokens: 128 } },
    {
      bench: "model",
      variant: "decode",
      shape: "llama-134m ctx≈150",
      medianMs: 80,
      minMs: 75,
      maxMs: 90,
      samples: 6,
      gbps: 3.4,
      ratioToCopy: 0.34,
      extra: {
        model: "llama-134m",
        tokPerS: 12.5,
        weightBytesPerToken: 268e6,
        kvReadBytesPerToken: 5e6,
        weightBytes: 268e6,
        kvCacheBytes: 10e6,
        gpuBytes: 290e6,
        dispatchesPerToken: 150,
        hostSyncsPerToken: 0.25,
        bytesReadBackPerToken: 4,
        stepsPerRead: 4,
        refSource: "quoted",
        refVulkanTokS: 6.8,
        refCpuTokS: 47,
        ratioToRefVulkan: 12.5 / 6.8,
        ratioToTargetVulkan: 12.5 / 10.2,
        ratioToRefCpu: 12.5 / 47,
        ratioToTargetCpu: 12.5 / 23.5,
      },
    },
  ],
};

test("markdown: header, one section per suite, model tables with the quoted references labelled", () => {
  const md = renderMarkdown(RESULTS);
  assert.ok(md.includes("commit abc1234"), "commit");
  assert.ok(md.includes("load average (1/5/15 min) start 1.50/1.00/0.50"), "load average");
  assert.ok(md.includes("reference FLOP rate 5.37 GFLOP/s"), "FLOP roofline");
  for (const s of ["## copy", "## linear", "## roofline", "## model"]) assert.ok(md.includes(s), s);
  assert.ok(md.includes("| gemv_f16_vec8_r4_mb1_wg64 | M=1 N=4096 K=4096 f16 | 8 | 7.5–9 | 4.19 | 0.78 | 4.2 | 0.42 |"), "linear row with × FLOP");
  assert.ok(md.includes("| llama-134m | 128 | 32 |"), "prefill row");
  assert.ok(md.includes("| 12.5 | 80 (75–90) | 0.340 |"), "decode row with roofline ratio");
  assert.ok(/\| llama-134m \| 12\.5 \| 6\.8 \| 1\.84 \| 10\.2 \| 1\.23 \| 47 \| 0\.266 \| 23\.5 \| 0\.532 \|/.test(md), "reference comparison row");
  assert.ok(md.includes("not measured here"), "quoted figures are labelled");
});

test("svg: well-formed root, one bar per row with a copy ratio, escaped labels, reference lines", () => {
  const svg = renderSvg(RESULTS);
  assert.ok(svg.startsWith("<svg ") && svg.trimEnd().endsWith("</svg>"));
  assert.ok(svg.includes("test &lt;adapter&gt; &amp; co"), "escaped adapter");
  assert.not.ok(svg.includes("<adapter>"));
  const bars = svg.match(/fill="#(888|3b7dd8|d9822b)"/g) ?? [];
  // copy, linear, model decode bars in panel 1 + the decode bar of panel 2
  assert.is(bars.length, 4);
  for (const label of ["Vulkan 6.8", "1.5×Vulkan 10.2", "CPU/2 23.5", "CPU 47", "memory roofline 36.8"]) assert.ok(svg.includes(label), label);
  // every opened element is closed or self-closed
  const opens = (svg.match(/<(svg|text)\b/g) ?? []).length;
  const closes = (svg.match(/<\/(svg|text)>/g) ?? []).length;
  assert.is(opens, closes);
});

test("parseResults rejects a file that is not a results file; flopRoofline is null without the roofline suite", () => {
  assert.throws(() => parseResults(JSON.stringify({ rows: [] }), "x.json"), /x\.json: .*'adapter' is missing/);
  assert.is(flopRoofline({ ...RESULTS, rows: RESULTS.rows.filter((r) => r.bench !== "roofline") }), null);
  assert.ok(renderMarkdown({ ...RESULTS, rows: [] }).includes("not measured in this run"));
});

test("writeReport writes X.md and X.svg beside X.json", async () => {
  const dir = scratchDir("bench-report");
  try {
    const out = await writeReport(parseResults(JSON.stringify(RESULTS)), join(dir, "run1.json"));
    assert.is(out.md, join(dir, "run1.md"));
    assert.is(out.svg, join(dir, "run1.svg"));
    assert.ok(readFileSync(out.md, "utf8").startsWith("# Benchmark results"));
    assert.ok(readFileSync(out.svg, "utf8").startsWith("<svg "));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
