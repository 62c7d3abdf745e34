// Scratch directories for tests: made under the OS temp dir, removed when the test process exits
// (tests write only where they created; a run leaves nothing behind). ONEGEN_KEEP_SCRATCH=1 keeps
// them for a look after a failure.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made: string[] = [];

function removeAll(): void {
  if (process.env.ONEGEN_KEEP_SCRATCH === "1") return;
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A fresh empty directory `onegen-PREFIX-XXXXXX` in the temp dir, removed at process exit. */
export function scratchDir(prefix: string): string {
  if (made.length === 0) process.once("exit", removeAll);
  const dir = mkdtempSync(join(tmpdir(), `onegen-${prefix}-`));
  made.push(dir);
  return dir;
}
