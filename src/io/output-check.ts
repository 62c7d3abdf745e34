// The up-front check of an output path (rule 1 of src/io/output.ts), before any work: resolved
// through symlinks and `..`, never an input nor inside one, its directory writable, and the target
// absent, empty, or carrying our tag of its kind. A refusal is one UsageError line naming the flag.

import { UsageError } from "../errors.js";
import { nodeIo, type NodeStats } from "./node-io.js";
import { dirTag, fileIsOurs, isDirKind, TAG_DESCRIPTION, type FileKind, type OutputKind } from "./output-tags.js";
import { recoverOutput, type CheckOutputOptions } from "./output-recovery.js";


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
export function within(inner: string, outer: string, sep: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);
}

export interface InputPath {
  /** The flag that named it, e.g. "--model". */
  flag: string;
  path: string;
}

export interface OutputTarget {
  /** The flag (or API argument) that names the output, e.g. "--out"; used in messages. */
  flag: string;
  path: string;
  kind: OutputKind;
}


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
