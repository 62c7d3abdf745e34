// Page side of the browser test run (scripts/run-browser-tests.mjs bundles this with the test
// files into one page). Reports, in order, through the function the runner exposes as
// window.__onegenReport (one JSON string per event): the WebGPU adapter (or its absence, a
// failure), each file that failed to load, each test's start and outcome, then "done".
// The files' uvu suites are queued as uvu's own CLI queues them (UVU_DEFER, one UVU_QUEUE group
// per file) and run here group by group, so every record names its file.
import { setRecordSink } from "./uvu-recorder.js";

type Report = (json: string) => Promise<void>;
type SuiteRun = () => Promise<[string | true, number, number, number]>; // [errors, passed, skipped, total]
type UvuGlobals = { UVU_QUEUE: unknown[][]; UVU_INDEX: number; UVU_DEFER: number; __onegenReport?: Report };

export interface AdapterReport {
  kind: "adapter";
  info: Record<string, unknown>;
  isFallbackAdapter: boolean | null;
  features: string[];
  limits: Record<string, number>;
}

export interface NoAdapterReport {
  kind: "no-adapter";
  error: string;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}${e.stack ? `\n${e.stack}` : ""}` : String(e);
}

async function describeAdapter(): Promise<AdapterReport | NoAdapterReport> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return { kind: "no-adapter", error: "navigator.gpu is undefined in the page: start Chromium with --enable-unsafe-webgpu (and serve the page from a secure context such as http://127.0.0.1)" };
  const adapter = await gpu.requestAdapter();
  if (!adapter) return { kind: "no-adapter", error: "navigator.gpu.requestAdapter() returned null: this Chromium has WebGPU but no adapter (needs --enable-unsafe-webgpu; SwiftShader is the CPU fallback)" };
  const info: Record<string, unknown> = {};
  for (const k of ["vendor", "architecture", "device", "description", "subgroupMinSize", "subgroupMaxSize"]) {
    const v = (adapter.info as unknown as Record<string, unknown>)[k];
    if (v !== undefined) info[k] = v;
  }
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  const fallback = (adapter.info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? null;
  return { kind: "adapter", info, isFallbackAdapter: fallback, features: [...adapter.features].map(String).sort(), limits };
}

/** Loads every test file (its suites queue themselves), then runs the queue file by file. */
export async function runInPage(files: ReadonlyArray<readonly [string, () => Promise<unknown>]>): Promise<void> {
  const g = globalThis as unknown as UvuGlobals;
  const report = g.__onegenReport;
  if (!report) throw new Error("window.__onegenReport is missing: open this page through scripts/run-browser-tests.mjs");
  const send = (ev: object): Promise<void> => report(JSON.stringify(ev));
  try {
    await send(await describeAdapter());
  } catch (e) {
    await send({ kind: "no-adapter", error: `requesting a WebGPU adapter threw: ${errorText(e)}` });
  }

  if (!g.UVU_DEFER) throw new Error("UVU_DEFER was not set before uvu loaded: the bundle must set it in its banner");
  files.forEach(([name], i) => (g.UVU_QUEUE[i] = [name]));
  for (const [i, [name, load]] of files.entries()) {
    g.UVU_INDEX = i;
    try {
      await load();
    } catch (e) {
      await send({ kind: "load-error", file: name, error: errorText(e) });
    }
  }

  let file = "";
  setRecordSink({
    started: (suite, name) => void send({ kind: "start", file, suite, name }),
    finished: (r) => void send({ kind: "test", file, ...r }),
  });
  for (const group of g.UVU_QUEUE.slice(0, files.length)) {
    file = String(group[0]);
    for (const run of group.slice(1) as SuiteRun[]) {
      const [, , skipped] = await run();
      if (skipped) await send({ kind: "skipped", file, count: skipped });
    }
  }
  await send({ kind: "done" });
}
