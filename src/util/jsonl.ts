// JSON Lines: one JSON object per line, blank lines skipped. Errors name the file and line and
// use the caller's error class (UsageError for command-line inputs, LoadError for data files).
import { LoadError } from "../errors.js";

interface JsonlRow {
  /** 1-based line number. */
  line: number;
  /** "file:line", for error messages. */
  where: string;
  value: Record<string, unknown>;
}

export function parseJsonlObjects(text: string, file: string, makeError: (message: string) => Error = (m) => new LoadError(m)): JsonlRow[] {
  const rows: JsonlRow[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw makeError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw makeError(`${where}: expected a JSON object, got ${Array.isArray(v) ? "an array" : v === null ? "null" : typeof v}`);
    rows.push({ line: i + 1, where, value: v as Record<string, unknown> });
  });
  return rows;
}
