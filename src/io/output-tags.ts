// The format tags that mark an output as ours (rule 1 of src/io/output.ts): the output kinds, the
// tag file of a directory, the format values inside files, and the checks that an existing
// directory or file carries the tag of a kind.

import { nodeIo, type NodeFs } from "./node-io.js";


export type DirKind = "index" | "model" | "adapter" | "checkpoint";
export type FileKind = "forward" | "trace" | "run-results" | "train-log" | "bench-results" | "bench-report" | "demo-tokenizer" | "gguf";
export type OutputKind = DirKind | FileKind;

const DIR_KINDS: readonly string[] = ["index", "model", "adapter", "checkpoint"];
export const isDirKind = (k: OutputKind): k is DirKind => DIR_KINDS.includes(k);

/** The tag file inside every directory we write. */
export const OUTPUT_TAG_FILE = "onegen-output.json";
const OUTPUT_TAG_FORMAT = "onegen-output";
/** Format values written inside file outputs (see the table at the top). */
export const FILE_FORMATS = {
  forward: "onegen-forward",
  trace: "onegen-trace",
  "run-results": "onegen-run",
  "train-log": "onegen-train-log",
  "bench-results": "onegen-bench",
  /** GGUF files (src/io/gguf.ts writers): the value of their first metadata entry, "onegen.format". */
  gguf: "onegen-gguf",
} as const;
/** The GGUF metadata key holding the tag (the file's first entry). */
export const GGUF_TAG_KEY = "onegen.format";
export const BENCH_REPORT_TAG = "<!-- onegen-bench-report -->";

/** The contents of OUTPUT_TAG_FILE for a directory of `kind`. */
export function outputTag(kind: DirKind): string {
  return JSON.stringify({ format: OUTPUT_TAG_FORMAT, kind, version: 1, writer: "onegen-webgpu" }) + "\n";
}

function parseJsonObject(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    const v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function readSmall(fs: NodeFs, p: string, max = 1 << 24): Promise<Uint8Array | null> {
  try {
    const st = await fs.lstat(p);
    if (!st.isFile() || st.size > max) return null;
    return await fs.readFile(p);
  } catch {
    return null;
  }
}

/** The kind named by a directory's tag file, or the legacy tags (index manifest, checkpoint state); null if none. */
export async function dirTag(dir: string): Promise<DirKind | null> {
  const { fs, path } = await nodeIo();
  const tag = await readSmall(fs, path.join(dir, OUTPUT_TAG_FILE), 1 << 16);
  if (tag) {
    const o = parseJsonObject(tag);
    if (o && o.format === OUTPUT_TAG_FORMAT && typeof o.kind === "string" && DIR_KINDS.includes(o.kind)) return o.kind as DirKind;
  }
  const manifest = await readSmall(fs, path.join(dir, "manifest.json"));
  if (manifest && parseJsonObject(manifest)?.format === "onegen-index") return "index";
  const state = await readSmall(fs, path.join(dir, "trainer_state.json"));
  if (state && parseJsonObject(state)?.format === "onegen-train-checkpoint") return "checkpoint";
  return null;
}

/** The first `n` bytes of a file. */
async function head(fs: NodeFs, p: string, n: number): Promise<Uint8Array> {
  const fh = await fs.open(p, "r");
  try {
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Whether the existing file `p` carries the tag of `kind` (see the table at the top). */
export async function fileIsOurs(p: string, kind: FileKind, incoming?: Uint8Array): Promise<boolean> {
  const { fs } = await nodeIo();
  const dec = (b: Uint8Array) => new TextDecoder().decode(b);
  try {
    switch (kind) {
      case "forward": {
        const h = await head(fs, p, 8);
        if (h.length < 8) return false;
        const n = Number(new DataView(h.buffer, h.byteOffset, 8).getBigUint64(0, true));
        if (n <= 0 || n > 1 << 24) return false;
        const hdr = parseJsonObject((await head(fs, p, 8 + n)).subarray(8));
        const meta = hdr?.__metadata__ as Record<string, unknown> | undefined;
        return meta?.format === FILE_FORMATS.forward;
      }
      case "trace":
      case "bench-results": {
        const text = dec(await head(fs, p, 4096));
        const re = new RegExp(`^\\s*\\{\\s*"format"\\s*:\\s*"${FILE_FORMATS[kind]}"`);
        if (re.test(text)) return true;
        if (kind === "trace") return false;
        // Results written before the tag: every field run.ts always wrote.
        const o = parseJsonObject((await readSmall(fs, p, 1 << 26)) ?? new Uint8Array());
        return o !== null && ["adapter", "commit", "date", "copyGBps"].every((k) => k in o) && Array.isArray(o.rows);
      }
      case "run-results":
      case "train-log": {
        // Every complete line in the first MiB is ours (the last line may be cut by a crash mid-append).
        const text = dec(await head(fs, p, 1 << 20));
        const lines = text.split("\n");
        lines.pop(); // incomplete (or empty after the final newline)
        const full = lines.filter((l) => l.trim() !== "");
        if (full.length === 0) return false;
        return full.every((l) => parseJsonObject(new TextEncoder().encode(l))?.format === FILE_FORMATS[kind]);
      }
      case "bench-report": {
        const text = dec(await head(fs, p, 4096));
        if ((text.startsWith("# ") || text.startsWith("<svg ")) && text.includes(`\n${BENCH_REPORT_TAG}\n`)) return true;
        return text.startsWith("# Benchmark results\n") || (text.startsWith("<svg ") && text.includes("onegen-webgpu benchmarks"));
      }
      case "gguf": {
        // magic "GGUF", version, two u64 counts, then the first key and its string value.
        const h = await head(fs, p, 4096);
        const want = new TextEncoder().encode(GGUF_TAG_KEY);
        const value = new TextEncoder().encode(FILE_FORMATS.gguf);
        if (h.length < 24 + 8 + want.length + 4 + 8 + value.length) return false;
        const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
        if (dv.getUint32(0, true) !== 0x46554747 || dv.getBigUint64(16, true) < 1n) return false;
        if (dv.getBigUint64(24, true) !== BigInt(want.length)) return false;
        if (!want.every((b, i) => h[32 + i] === b)) return false;
        let at = 32 + want.length;
        if (dv.getUint32(at, true) !== 8 || dv.getBigUint64(at + 4, true) !== BigInt(value.length)) return false;
        at += 12;
        return value.every((b, i) => h[at + i] === b);
      }
      case "demo-tokenizer": {
        if (!incoming) return false;
        const cur = await readSmall(fs, p, 1 << 28);
        return cur !== null && cur.length === incoming.length && cur.every((b, i) => b === incoming[i]);
      }
    }
  } catch {
    return false;
  }
}

export const TAG_DESCRIPTION: Record<OutputKind, string> = {
  index: `no manifest.json with "format": "onegen-index"`,
  model: `no ${OUTPUT_TAG_FILE} of kind "model"`,
  adapter: `no ${OUTPUT_TAG_FILE} of kind "adapter"`,
  checkpoint: `no trainer_state.json with "format": "onegen-train-checkpoint"`,
  forward: `no "format": "onegen-forward" in its safetensors metadata`,
  trace: `no top-level "format": "onegen-trace"`,
  "run-results": `its lines lack "format": "onegen-run"`,
  "train-log": `its lines lack "format": "onegen-train-log"`,
  "bench-results": `no "format": "onegen-bench"`,
  "bench-report": `no ${BENCH_REPORT_TAG} line near its start`,
  "demo-tokenizer": "its contents differ from the file to write",
  gguf: `no first metadata entry "${GGUF_TAG_KEY}" = "onegen-gguf"`,
};
