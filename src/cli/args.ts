// Minimal, strict flag parsing for the CLI: `--name value`, `--name=value`, boolean `--flag`.
// Unknown flags and words no flag takes (an unquoted `--prompt Marwick is a city` leaves "is a
// city" over) are usage errors (exit 2), never ignored: no command takes positional arguments.
// `--debug` is accepted by every command (the CLI then prints stack traces).
import { UsageError } from "../errors.js";
import { parseByteSize } from "../gpu/budget.js";
import { F32_MAX } from "../model/config.js";

interface FlagSpec {
  /** Flags that take a value. */
  values?: readonly string[];
  /** Flags without a value. */
  booleans?: readonly string[];
}

export interface ParsedArgs {
  flags: Map<string, string>;
  bools: Set<string>;
}

/** Set when any command's arguments hold --debug (read by the CLI's error printer). */
export const cliDebug = { enabled: false };

/** A word for a message: quoted when it has spaces or is empty. */
function shown(s: string): string {
  return /^[^\s'"]+$/.test(s) ? s : JSON.stringify(s);
}

export function parseArgs(argv: readonly string[], spec: FlagSpec, command: string): ParsedArgs {
  const values = new Set(spec.values ?? []);
  const booleans = new Set([...(spec.booleans ?? []), "debug"]);
  const out: ParsedArgs = { flags: new Map(), bools: new Set() };
  // --debug first, so that an error about an earlier argument still gets its stack trace.
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--debug") cliDebug.enabled = true;
    else if (a.startsWith("--") && !a.includes("=") && values.has(a.slice(2))) i++; // skip its value
  }
  let lastValueFlag: { name: string; value: string; at: number } | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) {
      if (/^-[A-Za-z]/.test(a)) throw new UsageError(`${command}: unknown option ${a} (options are spelled --name)`);
      // Words after a flag's value: most likely an unquoted value with spaces.
      const words: string[] = [];
      for (let k = i; k < argv.length && !argv[k]!.startsWith("--"); k++) words.push(argv[k]!);
      if (lastValueFlag && lastValueFlag.at === i - 1) {
        const whole = [lastValueFlag.value, ...words].join(" ");
        throw new UsageError(`${command}: stray word '${a}' after --${lastValueFlag.name} ${shown(lastValueFlag.value)}: ${command} takes no positional arguments; quote a value that has spaces: --${lastValueFlag.name} ${JSON.stringify(whole)}`);
      }
      throw new UsageError(`${command}: stray word '${a}': ${command} takes no positional arguments; options are --name VALUE, and a value that has spaces needs quotes`);
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (booleans.has(name)) {
      if (eq > 0) throw new UsageError(`${command}: --${name} takes no value`);
      out.bools.add(name);
      if (name === "debug") cliDebug.enabled = true;
    } else if (values.has(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`${command}: --${name} needs a value`);
      out.flags.set(name, v);
      lastValueFlag = { name, value: v, at: i };
    } else {
      throw new UsageError(`${command}: unknown option --${name}`);
    }
  }
  return out;
}

/** A flag that takes one of `choices` (undefined when absent). */
export function choiceFlag<T extends string>(args: ParsedArgs, name: string, choices: readonly T[], command: string): T | undefined {
  const raw = args.flags.get(name);
  if (raw === undefined) return undefined;
  if (!(choices as readonly string[]).includes(raw)) throw new UsageError(`${command}: --${name} must be one of ${choices.join(", ")}, got '${raw}'`);
  return raw as T;
}

export function numberFlag(args: ParsedArgs, name: string, command: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  const raw = args.flags.get(name);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || (opts.integer && !Number.isSafeInteger(v))) {
    throw new UsageError(`${command}: --${name} must be ${opts.integer ? "an integer" : "a number"}, got '${raw}'`);
  }
  // Real-valued flags reach the kernels as f32: one that overflows it would become infinite.
  if (!opts.integer && Math.abs(v) > F32_MAX) throw new UsageError(`${command}: --${name} is ${v}, which overflows f32 (largest ${F32_MAX.toPrecision(5)}); the kernels compute in f32`);
  if (!opts.integer && v !== 0 && Math.fround(v) === 0) throw new UsageError(`${command}: --${name} is ${v}, which is 0 in f32; the kernels compute in f32`);
  if (opts.min !== undefined && v < opts.min) throw new UsageError(`${command}: --${name} must be ≥ ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new UsageError(`${command}: --${name} must be ≤ ${opts.max}, got ${v}`);
  return v;
}

/** A byte size flag ("8G", "512MiB", "1073741824"); undefined when absent. */
export function sizeFlag(args: ParsedArgs, name: string, command: string): number | undefined {
  const raw = args.flags.get(name);
  if (raw === undefined) return undefined;
  const v = parseByteSize(raw);
  if (v === null) throw new UsageError(`${command}: --${name} must be a size such as 8G, 512M or a byte count, got '${raw}'`);
  return v;
}
