// Writing outputs without losing the user's data: the one module every writer goes through
// (indexes, trained model directories, checkpoints, adapters, forward outputs, run results,
// traces, training logs, benchmark results, the demo tokenizer).
//
// Rules (issue 15):
//   1. Up front, before any work (checkOutput): the output path is resolved component by
//      component with realpath (symlinks and `..`; the part that does not exist yet is appended to
//      the realpath of its nearest existing ancestor) and must not be any input (same path or same
//      file), nor lie inside an input directory; a directory output that gets replaced must not
//      hold an input. Its directory must exist, be a directory and be writable. The target itself
//      must be absent, empty, or something this project wrote before, recognised by a FORMAT TAG
//      we write ourselves (never by a file name alone):
//        index        manifest.json parsed, "format": "onegen-index" (or the tag file below)
//        model        onegen-output.json {"format": "onegen-output", "kind": "model"}
//        adapter      onegen-output.json, kind "adapter"
//        checkpoint   trainer_state.json parsed, "format": "onegen-train-checkpoint" (or the tag file)
//        forward      safetensors header __metadata__.format = "onegen-forward"
//        trace        JSON whose first key is "format": "onegen-trace"
//        run-results  JSONL, every line an object with "format": "onegen-run"
//        train-log    JSONL, every line an object with "format": "onegen-train-log"
//        bench-results JSON with "format": "onegen-bench" (files written before the tag: the
//                     results fields adapter, commit, date, copyGBps, rows)
//        bench-report a line `<!-- onegen-bench-report -->` in the first 4 KiB of a Markdown report
//                     or an SVG (before the tag: a Markdown report opening "# Benchmark results",
//                     an SVG holding "onegen-webgpu benchmarks")
//        demo-tokenizer a file with exactly the bytes about to be written
//        gguf         a GGUF file whose first metadata entry is "onegen.format" = "onegen-gguf"
//      Every directory we write holds onegen-output.json naming its kind. A refusal is one line
//      naming the flag and the rule (UsageError, exit 2).
//   2. Atomic writes. A file goes to a fresh temporary sibling `.NAME.tmp-PID-RAND` (opened
//      exclusively), is fsync'd, renamed into place, and the parent directory fsync'd. A directory
//      is filled in a fresh sibling `.NAME.tmp-PID-RAND` (tag file first, every file fsync'd, the
//      directories fsync'd), then swapped: the old one renamed aside to `.NAME.old-PID-RAND`, the
//      new one renamed in, the parent fsync'd, the old one removed. Entries of the old directory
//      that the new one does not define and that the caller keeps (a training output's
//      checkpoints/, files the user put there) are hard-linked into the new one first.
//   3. Recovery (recoverOutput; run by checkOutput and by the loaders of our outputs: loadIndex,
//      loadDecoder, checkpoint resume). Between the two renames of a swap NAME is missing; a crash
//      there leaves `.NAME.old-…`, which is renamed back when NAME is missing and it carries our
//      tag. Temporaries of a crashed run (our name pattern, the PID in the name no longer alive,
//      for directories our tag or nothing inside) are removed; an old copy next to a present NAME
//      is removed once its writer is dead. Anything matching the pattern that cannot be verified
//      as ours is left alone and named in a message. Nothing else is ever deleted or overwritten.
//
// Test-only fault injection: with ONEGEN_TEST_CRASH_AT=POINT[@KIND][#N] the process kills itself
// with SIGKILL at that point of a save (POINT: tmp-partial, tmp-written, old-aside, new-in; KIND
// restricts it to one output kind; N: the N-th time the point is reached, default the first).
// test/crash-consistency.test.ts uses it.
//
// Node built-ins are imported lazily through variables so browser bundles stay clean.

import { UsageError } from "../errors.js";

// ------------------------------------------------------------------ Node modules

interface NodeStats {
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
  size: number;
  dev: number;
  ino: number;
  mode: number;
}
interface NodeFileHandle {
  write(b: Uint8Array | string): Promise<unknown>;
  read(b: Uint8Array, off: number, len: number, pos: number): Promise<{ bytesRead: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
  stat(): Promise<NodeStats>;
}
export interface NodeFs {
  open(p: string, flags: string, mode?: number): Promise<NodeFileHandle>;
  mkdir(p: string, o?: { recursive?: boolean }): Promise<string | undefined>;
  rename(a: string, b: string): Promise<void>;
  rm(p: string, o: { recursive: boolean; force: boolean }): Promise<void>;
  rmdir(p: string): Promise<void>;
  readdir(p: string): Promise<string[]>;
  stat(p: string): Promise<NodeStats>;
  lstat(p: string): Promise<NodeStats>;
  realpath(p: string): Promise<string>;
  access(p: string, mode: number): Promise<void>;
  readFile(p: string): Promise<Uint8Array>;
  link(a: string, b: string): Promise<void>;
  copyFile(a: string, b: string): Promise<void>;
  readlink(p: string): Promise<string>;
  symlink(target: string, p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  constants: { W_OK: number; X_OK: number };
}
interface NodePath {
  resolve(...p: string[]): string;
  dirname(p: string): string;
  basename(p: string): string;
  join(...p: string[]): string;
  isAbsolute(p: string): boolean;
  sep: string;
}

let modules: Promise<{ fs: NodeFs; path: NodePath }> | null = null;
/** node:fs/promises and node:path, imported on first use (variables, so browser bundlers leave them alone). */
export function nodeIo(): Promise<{ fs: NodeFs; path: NodePath }> {
  if (!modules) {
    const fsName = "node:fs/promises";
    const pathName = "node:path";
    modules = Promise.all([import(fsName), import(pathName)]).then(([fs, path]) => ({ fs: fs as NodeFs, path: path as NodePath }));
  }
  return modules;
}

/** True under Node or Deno (a filesystem to recover); false in browsers. */
function hasNodeFs(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}

const errCode = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;

// ------------------------------------------------------------------ kinds and tags

type DirKind = "index" | "model" | "adapter" | "checkpoint";
type FileKind = "forward" | "trace" | "run-results" | "train-log" | "bench-results" | "bench-report" | "demo-tokenizer" | "gguf";
type OutputKind = DirKind | FileKind;

const DIR_KINDS: readonly string[] = ["index", "model", "adapter", "checkpoint"];
const isDirKind = (k: OutputKind): k is DirKind => DIR_KINDS.includes(k);

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

const TAG_DESCRIPTION: Record<OutputKind, string> = {
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

// ------------------------------------------------------------------ fault injection (tests)

type CrashPoint = "tmp-partial" | "tmp-written" | "old-aside" | "new-in";

let crashCount = 0;
/** Test-only: ONEGEN_TEST_CRASH_AT=POINT[@KIND][#N] kills the process with SIGKILL the N-th time (default 1) it gets here. */
export function crashPoint(point: CrashPoint, kind: OutputKind): void {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined>; pid: number; kill(pid: number, sig: string): void } }).process;
  const want = proc?.env?.ONEGEN_TEST_CRASH_AT;
  if (!want || !proc) return;
  const m = /^([a-z-]+)(?:@([a-z-]+))?(?:#(\d+))?$/.exec(want);
  if (!m || m[1] !== point || (m[2] !== undefined && m[2] !== kind)) return;
  if (++crashCount === Number(m[3] ?? 1)) proc.kill(proc.pid, "SIGKILL");
}

// ------------------------------------------------------------------ paths

/**
 * The canonical absolute path: each existing component through realpath (symlinks, then `..`
 * relative to the real directory), the rest appended as given. A dangling symlink throws.
 */
export async function resolveReal(p: string): Promise<{ real: string; exists: boolean }> {
  const { fs, path } = await nodeIo();
  const abs = path.isAbsolute(p) ? p : `${process.cwd()}${path.sep}${p}`;
  const parts = abs.split(/[\\/]+/).filter((s) => s !== "");
  let cur = path.resolve("/");
  let exists = true;
  for (const part of parts) {
    if (part === ".") continue;
    if (part === "..") {
      cur = path.dirname(cur);
      continue;
    }
    const next = path.join(cur, part);
    if (exists) {
      try {
        await fs.lstat(next);
      } catch {
        exists = false;
        cur = next;
        continue;
      }
      try {
        cur = await fs.realpath(next);
      } catch {
        throw new UsageError(`'${p}' goes through a symlink to a missing path ('${next}')`);
      }
    } else cur = next;
  }
  return { real: cur, exists };
}

/** True when `inner` is `outer` or lies inside it (both canonical). */
function within(inner: string, outer: string, sep: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);
}

export interface InputPath {
  /** The flag that named it, e.g. "--model". */
  flag: string;
  path: string;
}

interface OutputTarget {
  /** The flag (or API argument) that names the output, e.g. "--out"; used in messages. */
  flag: string;
  path: string;
  kind: OutputKind;
}

interface CheckOutputOptions {
  /** Receives notes of the recovery step (default: written to stderr). */
  onNote?: (line: string) => void;
}

const defaultNote = (line: string) => {
  const proc = (globalThis as { process?: { stderr?: { write(s: string): unknown } } }).process;
  proc?.stderr?.write(`onegen: ${line}\n`);
};

/**
 * The up-front check of one output (see rule 1 at the top). Returns the canonical path to write
 * to. Throws UsageError, one line naming `out.flag` and the rule broken.
 */
export async function checkOutput(out: OutputTarget, inputs: readonly (InputPath | null | undefined)[] = [], opts: CheckOutputOptions = {}): Promise<string> {
  const { fs, path } = await nodeIo();
  const dirOut = isDirKind(out.kind);
  const what = `${out.flag} '${out.path}'`;
  const fail = (rule: string): never => {
    throw new UsageError(`${what} ${rule}`);
  };
  if (out.path === "") fail("is empty: give a path");
  let real: string;
  try {
    real = (await resolveReal(out.path)).real;
  } catch (e) {
    if (e instanceof UsageError) fail(e.message.replace(/^'[^']*' /, ""));
    throw e;
  }
  const shown = (r: string) => (path.resolve(out.path) === r ? "" : ` (→ '${r}')`);
  await recoverOutput(real, opts);
  let st: NodeStats | null = null;
  try {
    st = await fs.stat(real);
  } catch {
    st = null;
  }
  // Inputs.
  for (const inp of inputs) {
    if (!inp) continue;
    let ir: string;
    try {
      ir = (await resolveReal(inp.path)).real;
    } catch {
      continue; // a missing input is the input check's business
    }
    let ist: NodeStats | null = null;
    try {
      ist = await fs.stat(ir);
    } catch {
      ist = null;
    }
    const same = ir === real || (st !== null && ist !== null && st.dev === ist.dev && st.ino === ist.ino);
    if (same) fail(`is the ${inp.flag} input${shown(real)}: an output never overwrites an input`);
    if (ist?.isDirectory() && within(real, ir, path.sep)) fail(`lies inside the ${inp.flag} directory '${inp.path}': write outputs elsewhere`);
    if (within(ir, real, path.sep)) fail(`holds the ${inp.flag} input '${inp.path}'${shown(real)}: replacing it would delete the input`);
  }
  // The target.
  if (st) {
    if (dirOut && !st.isDirectory()) fail(`is a file${shown(real)}: a directory is needed`);
    if (!dirOut && st.isDirectory()) fail(`is a directory${shown(real)}: a file is needed`);
    if (!dirOut && !st.isFile()) fail(`is not a regular file${shown(real)}`);
    if (dirOut) {
      const names = await fs.readdir(real);
      if (names.length > 0) {
        const tag = await dirTag(real);
        if (tag !== out.kind) {
          fail(
            tag
              ? `is an onegen ${tag} directory, not ${out.kind === "index" ? "an" : "a"} ${out.kind} directory: refusing to replace it`
              : `is a non-empty directory that onegen did not write (${TAG_DESCRIPTION[out.kind]}): refusing to replace it; choose a new or empty directory`,
          );
        }
      }
    } else if (st.size > 0 && out.kind !== "demo-tokenizer" && !(await fileIsOurs(real, out.kind as FileKind))) {
      fail(`exists and is not an onegen ${out.kind} file (${TAG_DESCRIPTION[out.kind]}): refusing to overwrite it; choose a new path`);
    }
  }
  // Its directory.
  const parent = path.dirname(real);
  let pst: NodeStats;
  try {
    pst = await fs.stat(parent);
  } catch {
    return fail(`cannot be written: its directory '${parent}' does not exist`);
  }
  if (!pst.isDirectory()) fail(`cannot be written: '${parent}' is not a directory`);
  try {
    await fs.access(parent, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    fail(`cannot be written: no permission to write in '${parent}'`);
  }
  return real;
}

/** Several outputs of one command: each checked, and no two the same path. */
export async function checkOutputs(outs: readonly (OutputTarget | null | undefined)[], inputs: readonly (InputPath | null | undefined)[], opts: CheckOutputOptions = {}): Promise<string[]> {
  const { path } = await nodeIo();
  const given = outs.filter((o): o is OutputTarget => !!o);
  const reals: string[] = [];
  for (const o of given) reals.push(await checkOutput(o, inputs, opts));
  for (let i = 0; i < given.length; i++) {
    for (let j = 0; j < given.length; j++) {
      if (i === j) continue;
      if (reals[i] === reals[j] || (isDirKind(given[j]!.kind) && within(reals[i]!, reals[j]!, path.sep) && !isDirKind(given[i]!.kind))) {
        throw new UsageError(`${given[i]!.flag} '${given[i]!.path}' ${reals[i] === reals[j] ? "is the same path as" : "lies inside"} ${given[j]!.flag} '${given[j]!.path}': give each output its own path`);
      }
    }
  }
  return reals;
}

// ------------------------------------------------------------------ recovery

const TEMP_RE = /^\.(.+)\.(tmp|old)-(\d+)-([0-9a-z]+)$/;

function stamp(): string {
  const proc = (globalThis as { process?: { pid: number } }).process;
  return `${proc?.pid ?? 0}-${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
}

function alive(pid: number): boolean {
  const proc = (globalThis as { process?: { pid: number; kill(pid: number, sig: number): void } }).process;
  if (!proc) return true;
  if (pid === proc.pid) return true;
  try {
    proc.kill(pid, 0);
    return true;
  } catch (e) {
    return errCode(e) === "EPERM";
  }
}

async function isEmptyDir(fs: NodeFs, p: string): Promise<boolean> {
  try {
    return (await fs.readdir(p)).length === 0;
  } catch {
    return false;
  }
}

/**
 * Repairs what a crashed save may have left beside `target` (see rule 3 at the top). Returns the
 * notes (also passed to opts.onNote, default stderr): restorations and entries left in place.
 */
export async function recoverOutput(target: string, opts: CheckOutputOptions = {}): Promise<string[]> {
  if (!hasNodeFs()) return [];
  const { path } = await nodeIo();
  const abs = path.resolve(target);
  return recoverIn(path.dirname(abs), path.basename(abs), opts);
}

/** Recovery of every output in directory `dir` (e.g. a training output's checkpoints/), or of `only`. */
export async function recoverIn(dir: string, only?: string, opts: CheckOutputOptions = {}): Promise<string[]> {
  if (!hasNodeFs()) return [];
  const { fs, path } = await nodeIo();
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const notes: string[] = [];
  const note = (s: string) => {
    notes.push(s);
    (opts.onNote ?? defaultNote)(s);
  };
  const found = names.map((n) => ({ n, m: TEMP_RE.exec(n) })).filter((x) => x.m && (only === undefined || x.m[1] === only));
  // Temporaries first, then old copies (newest writer last so it wins a restoration).
  found.sort((a, b) => (a.m![2] === b.m![2] ? 0 : a.m![2] === "tmp" ? -1 : 1));
  for (const { n, m } of found) {
    const base = m![1]!;
    const kind = m![2]!;
    const pid = Number(m![3]);
    const p = path.join(dir, n);
    const target = path.join(dir, base);
    let st: NodeStats;
    try {
      st = await fs.lstat(p);
    } catch {
      continue;
    }
    const ours = st.isDirectory() ? (await dirTag(p)) !== null : st.isFile();
    if (kind === "tmp") {
      if (alive(pid)) continue; // another save in progress
      if (st.isFile() || (st.isDirectory() && (ours || (await isEmptyDir(fs, p))))) await fs.rm(p, { recursive: true, force: true });
      else note(`left '${p}' in place: it looks like a temporary of a crashed save but carries no onegen tag; remove it if it is not yours`);
      continue;
    }
    // An old copy renamed aside by a swap.
    let targetExists = true;
    try {
      await fs.lstat(target);
    } catch {
      targetExists = false;
    }
    if (!ours) {
      note(`left '${p}' in place: it looks like the previous copy of '${target}' from an interrupted save but carries no onegen tag`);
      continue;
    }
    if (!targetExists) {
      await fs.rename(p, target);
      await syncDir(fs, dir);
      note(`restored '${target}' from '${n}', left by a save interrupted while swapping directories`);
    } else if (!alive(pid)) {
      await fs.rm(p, { recursive: true, force: true });
    }
  }
  return notes;
}

// ------------------------------------------------------------------ writing

/** A sink for one file being written (exclusively created; sync before close). */
interface FileSink {
  write(bytes: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

async function syncDir(fs: NodeFs, dir: string): Promise<void> {
  // fsync of a directory makes its entries (new files, renames) durable (Linux, macOS).
  let fh: NodeFileHandle;
  try {
    fh = await fs.open(dir, "r");
  } catch {
    return; // Windows cannot open directories; its renames are durable on return
  }
  try {
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on directories; nothing more can be done
  } finally {
    await fh.close();
  }
}

async function openSink(fs: NodeFs, p: string): Promise<FileSink> {
  const fh = await fs.open(p, "wx", 0o644);
  return { write: async (b) => void (await fh.write(b)), sync: () => fh.sync(), close: () => fh.close() };
}

async function writeWhole(fs: NodeFs, p: string, data: Uint8Array | string): Promise<void> {
  const fh = await fs.open(p, "wx", 0o644);
  try {
    await fh.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

interface WriteFileOptions extends CheckOutputOptions {
  /** Names the output in messages (default "output file"). */
  flag?: string;
  inputs?: readonly (InputPath | null | undefined)[];
}

/**
 * Writes one file atomically (rule 2) after checking it (rule 1). `data`: the bytes, or a
 * function writing them into a sink. Returns the canonical path written.
 */
export async function writeFileAtomic(file: string, kind: FileKind, data: Uint8Array | string | ((sink: FileSink) => Promise<void>), opts: WriteFileOptions = {}): Promise<string> {
  const { fs, path } = await nodeIo();
  const target = await checkOutput({ flag: opts.flag ?? "output file", path: file, kind }, opts.inputs ?? [], opts);
  if (kind === "demo-tokenizer" && typeof data !== "function") {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let size = 0;
    try {
      size = (await fs.stat(target)).size;
    } catch {
      size = 0;
    }
    if (size > 0 && !(await fileIsOurs(target, kind, bytes))) throw new UsageError(`${opts.flag ?? "output file"} '${file}' exists with other contents: refusing to overwrite it; write the tokenizer into a new directory`);
  }
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${stamp()}`);
  try {
    if (typeof data === "function") {
      const sink = await openSink(fs, tmp);
      try {
        await data(sink);
        await sink.sync();
      } finally {
        await sink.close();
      }
    } else await writeWhole(fs, tmp, data);
    crashPoint("tmp-written", kind);
    await fs.rename(tmp, target);
  } catch (e) {
    await fs.rm(tmp, { force: true, recursive: false }).catch(() => undefined);
    throw e;
  }
  await syncDir(fs, path.dirname(target));
  crashPoint("new-in", kind);
  return target;
}

/** Appends text to an output file (checked up front by the caller), fsync'd. */
export async function appendToOutput(file: string, text: string): Promise<void> {
  const { fs } = await nodeIo();
  const fh = await fs.open(file, "a", 0o644);
  try {
    await fh.write(new TextEncoder().encode(text));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** What fills a directory being written: files are created exclusively and fsync'd. */
interface DirWriter {
  /** The temporary directory being filled. */
  readonly dir: string;
  writeFile(name: string, data: Uint8Array | string): Promise<void>;
  /** A sink for a file written in pieces; call sync() and close(). */
  open(name: string): Promise<FileSink>;
  /** A subdirectory (fsync'd before the swap). */
  mkdir(name: string): Promise<void>;
}

interface WriteDirOptions extends CheckOutputOptions {
  /** Names the output in messages (default "output directory"). */
  flag?: string;
  inputs?: readonly (InputPath | null | undefined)[];
  /**
   * Entries (top-level names) of the existing directory to carry into the new one, hard-linked
   * (copied where links fail), when the new one does not define them. Default: none.
   */
  keep?: (name: string, path: string) => boolean | Promise<boolean>;
}

async function linkTree(fs: NodeFs, path: NodePath, from: string, to: string): Promise<string[]> {
  const st = await fs.lstat(from);
  if (st.isDirectory()) {
    await fs.mkdir(to);
    const dirs = [to];
    for (const n of await fs.readdir(from)) dirs.push(...(await linkTree(fs, path, path.join(from, n), path.join(to, n))));
    return dirs;
  }
  if (st.isSymbolicLink()) await fs.symlink(await fs.readlink(from), to);
  else {
    try {
      await fs.link(from, to);
    } catch {
      await fs.copyFile(from, to);
    }
  }
  return [];
}

/**
 * Writes directory `dir` of `kind` atomically (rule 2) after checking it (rule 1): `fill` writes
 * the files into a fresh temporary sibling (which already holds the tag file), then the swap.
 * Returns the canonical path written.
 */
export async function writeDirAtomic(dir: string, kind: DirKind, fill: (w: DirWriter) => Promise<void>, opts: WriteDirOptions = {}): Promise<string> {
  const { fs, path } = await nodeIo();
  const target = await checkOutput({ flag: opts.flag ?? "output directory", path: dir, kind }, opts.inputs ?? [], opts);
  const parent = path.dirname(target);
  const base = path.basename(target);
  const s = stamp();
  const tmp = path.join(parent, `.${base}.tmp-${s}`);
  const old = path.join(parent, `.${base}.old-${s}`);
  let existing: string[] | null = null;
  try {
    existing = await fs.readdir(target);
  } catch {
    existing = null;
  }
  await fs.mkdir(tmp);
  const dirs = [tmp];
  try {
    await writeWhole(fs, path.join(tmp, OUTPUT_TAG_FILE), outputTag(kind));
    crashPoint("tmp-partial", kind);
    const inside = (name: string) => {
      const p = path.join(tmp, name);
      if (!within(path.resolve(p), tmp + path.sep, path.sep) || name === OUTPUT_TAG_FILE) throw new UsageError(`writeDirAtomic: bad file name '${name}'`);
      return p;
    };
    await fill({
      dir: tmp,
      writeFile: (name, data) => writeWhole(fs, inside(name), data),
      open: (name) => openSink(fs, inside(name)),
      mkdir: async (name) => {
        await fs.mkdir(inside(name));
        dirs.push(inside(name));
      },
    });
    if (existing && existing.length > 0 && opts.keep) {
      const defined = new Set(await fs.readdir(tmp));
      for (const n of existing) {
        if (defined.has(n)) continue;
        if (await opts.keep(n, path.join(target, n))) dirs.push(...(await linkTree(fs, path, path.join(target, n), path.join(tmp, n))));
      }
    }
    for (const d of dirs.reverse()) await syncDir(fs, d);
    crashPoint("tmp-written", kind);
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
  // Swap. An empty existing directory is replaced by the rename itself (POSIX rename(2) replaces
  // an empty directory atomically); where that fails (Windows) it is removed first.
  const replacing = existing !== null && existing.length > 0;
  if (existing !== null && !replacing) {
    try {
      await fs.rename(tmp, target);
    } catch {
      await fs.rmdir(target).catch(() => undefined);
    }
  }
  if (replacing) {
    await fs.rename(target, old);
    await syncDir(fs, parent);
    crashPoint("old-aside", kind);
  }
  try {
    if (existing === null || replacing || (await fs.lstat(tmp).then(() => true, () => false))) await fs.rename(tmp, target);
  } catch (e) {
    if (replacing) await fs.rename(old, target).catch(() => undefined);
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
  await syncDir(fs, parent);
  crashPoint("new-in", kind);
  if (replacing) await fs.rm(old, { recursive: true, force: true });
  return target;
}

/**
 * Makes sure directory `dir` exists as an output of `kind` (created with its tag when absent; an
 * empty directory gets the tag; one of ours is left as is), after checking it (rule 1).
 */
export async function ensureOutputDir(dir: string, kind: DirKind, opts: WriteDirOptions = {}): Promise<string> {
  const { fs } = await nodeIo();
  const target = await checkOutput({ flag: opts.flag ?? "output directory", path: dir, kind }, opts.inputs ?? [], opts);
  let names: string[] | null = null;
  try {
    names = await fs.readdir(target);
  } catch {
    names = null;
  }
  if (names === null || names.length === 0) return writeDirAtomic(target, kind, async () => undefined, opts);
  return target;
}

/** Creates subdirectory `name` of an output directory of ours (no error when it exists as a directory). */
export async function ensureSubdir(parent: string, name: string): Promise<string> {
  const { fs, path } = await nodeIo();
  const p = path.join(parent, name);
  try {
    await fs.mkdir(p);
    await syncDir(fs, parent);
  } catch (e) {
    if (errCode(e) !== "EEXIST") throw e;
    if (!(await fs.stat(p)).isDirectory()) throw new UsageError(`'${p}' exists and is not a directory`);
  }
  return p;
}
