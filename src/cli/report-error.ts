// How the CLI reports an error: one line on stderr and an exit code, never a stack trace unless
// --debug asks for one.
// - UsageError: exit 2, with "see onegen CMD --help".
// - Other OnegenErrors (bad input, unsupported, GPU): exit 1, their message.
// - Node file-system errors escaping a command (ENOENT, EACCES, EISDIR, ENOTDIR, ENOSPC, …): exit 1,
//   "cannot open 'PATH': no such file or directory".
// - Anything else is a bug of ours: exit 1, "internal error: …" and how to get the stack.
import { OnegenError, UsageError } from "../errors.js";

/** What an errno code means, in words (the code itself follows in parentheses). */
const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "it is a directory",
  ENOTDIR: "a component of the path is not a directory",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EEXIST: "it already exists",
  ENOTEMPTY: "the directory is not empty",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  ENAMETOOLONG: "the name is too long",
  ELOOP: "too many levels of symbolic links",
  EXDEV: "source and target are on different file systems",
  EBUSY: "the resource is busy",
  EIO: "input/output error",
  EFBIG: "the file is too large",
  EINVAL: "invalid argument",
  EPIPE: "the reading end of the pipe was closed",
};

/** What a syscall was trying to do, as a verb phrase for "cannot … 'PATH'". */
const ACTIONS: Record<string, string> = {
  open: "open",
  read: "read",
  write: "write",
  stat: "access",
  lstat: "access",
  fstat: "access",
  access: "access",
  realpath: "resolve",
  readlink: "read the link",
  scandir: "list the directory",
  opendir: "list the directory",
  mkdir: "create the directory",
  mkdtemp: "create a temporary directory in",
  rmdir: "remove the directory",
  unlink: "delete",
  rm: "delete",
  rename: "rename",
  copyfile: "copy",
  symlink: "create the link",
  fsync: "flush",
  ftruncate: "truncate",
  close: "close",
  utime: "set the times of",
  chmod: "change the mode of",
};

interface SystemError {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
  message: string;
}

function isSystemError(e: unknown): e is SystemError {
  const x = e as { code?: unknown; syscall?: unknown } | null;
  return typeof x === "object" && x !== null && typeof x.code === "string" && /^E[A-Z0-9]+$/.test(x.code) && typeof x.syscall === "string";
}

/** Why a system call failed, in words and code: "no such file or directory (ENOENT)"; other errors: their message. */
export function systemErrorReason(e: unknown): string {
  if (!isSystemError(e)) return oneLine(e instanceof Error ? e.message : String(e));
  return `${REASONS[e.code] ?? e.message.replace(/^E[A-Z0-9]+:\s*/, "").replace(/,\s*\w+\s*'.*$/, "")} (${e.code})`;
}

/** A Node system error as one line naming the path: "cannot open 'x.jsonl': no such file or directory (ENOENT)". */
function systemErrorLine(e: SystemError): string {
  const reason = systemErrorReason(e);
  if (e.path === undefined) return `${e.syscall ?? "system call"} failed: ${reason}`;
  const action = ACTIONS[e.syscall ?? ""] ?? e.syscall ?? "use";
  const target = e.dest !== undefined ? `'${e.path}' to '${e.dest}'` : `'${e.path}'`;
  return `cannot ${action} ${target}: ${reason}`;
}

/** A message on one line: newlines (and the indentation after them) become "; ". */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, "; ").trim();
}

const DEBUG_HINT = " (run with --debug for the stack trace)";

interface ErrorReport {
  /** The message, one line, without "onegen CMD: " (the caller adds it). */
  line: string;
  /** The process exit code: 2 usage, 1 anything else. */
  code: 1 | 2;
  /** Whether the error is a bug of ours rather than a problem with the input. */
  internal: boolean;
}

/** Classifies an error thrown by a command; strips a leading "CMD: " that the caller prints itself. */
function reportError(e: unknown, command: string | null): ErrorReport {
  const strip = (m: string): string => (command !== null && m.startsWith(`${command}: `) ? m.slice(command.length + 2) : m);
  if (e instanceof UsageError) {
    const help = command !== null ? ` (see onegen ${command} --help)` : " (see onegen --help)";
    return { line: oneLine(strip(e.message)) + help, code: 2, internal: false };
  }
  if (e instanceof OnegenError) return { line: oneLine(strip(e.message)), code: 1, internal: false };
  if (isSystemError(e)) return { line: oneLine(systemErrorLine(e)), code: 1, internal: false };
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { line: `internal error: ${oneLine(what)}${DEBUG_HINT}`, code: 1, internal: true };
}

/** The full text to print: the one line, and with debug the stack (cause chain included). */
export function formatError(e: unknown, command: string | null, debug: boolean): { text: string; code: 1 | 2 } {
  const r = reportError(e, command);
  const line = debug && r.internal ? r.line.replace(DEBUG_HINT, "") : r.line;
  const head = `onegen${command !== null ? ` ${command}` : ""}: ${line}\n`;
  if (!debug) return { text: head, code: r.code };
  const stack = e instanceof Error && e.stack ? e.stack : String(e);
  return { text: head + stack + "\n", code: r.code };
}
