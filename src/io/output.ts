// Writing outputs without losing the user's data: the one module every writer goes through
// (its parts: output-check.ts, output-tags.ts, output-recovery.ts, node-io.ts; this file writes)
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
import { errCode, nodeIo, syncDir, type NodeFs, type NodePath } from "./node-io.js";
import { checkOutput, within, type InputPath } from "./output-check.js";
import { stamp, type CheckOutputOptions } from "./output-recovery.js";
import { fileIsOurs, OUTPUT_TAG_FILE, outputTag, type DirKind, type FileKind, type OutputKind } from "./output-tags.js";

export { nodeIo } from "./node-io.js";
export { checkOutput, checkOutputs, resolveReal, type InputPath } from "./output-check.js";
export { recoverIn, recoverOutput } from "./output-recovery.js";
export { dirTag, FILE_FORMATS, fileIsOurs, GGUF_TAG_KEY, BENCH_REPORT_TAG, OUTPUT_TAG_FILE, outputTag } from "./output-tags.js";

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

// ------------------------------------------------------------------ writing

/** A sink for one file being written (exclusively created; sync before close). */
interface FileSink {
  write(bytes: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
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
