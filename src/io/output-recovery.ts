// Recovery of what a crashed save left beside an output (rule 3 of src/io/output.ts): the names
// of temporaries and old copies (`.NAME.tmp-PID-RAND`, `.NAME.old-PID-RAND`, made by stamp()),
// restoring an old copy a swap left when NAME is missing, removing a dead writer's temporaries;
// anything that cannot be verified as ours is left in place and named in a note.

import { errCode, hasNodeFs, nodeIo, syncDir, type NodeFs, type NodeStats } from "./node-io.js";
import { dirTag } from "./output-tags.js";

export interface CheckOutputOptions {
  /** Receives notes of the recovery step (default: written to stderr). */
  onNote?: (line: string) => void;
}

const defaultNote = (line: string) => {
  const proc = (globalThis as { process?: { stderr?: { write(s: string): unknown } } }).process;
  proc?.stderr?.write(`onegen: ${line}\n`);
};


const TEMP_RE = /^\.(.+)\.(tmp|old)-(\d+)-([0-9a-z]+)$/;

export function stamp(): string {
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
