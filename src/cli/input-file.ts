// Reads a text file named by a command-line flag; failure is a one-line LoadError naming the flag,
// the path and the reason: "cannot read --docs 'x.jsonl': no such file or directory (ENOENT)".
import { readFile } from "node:fs/promises";
import { LoadError } from "../errors.js";
import { systemErrorReason } from "./report-error.js";

export async function readInputFile(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new LoadError(`cannot read ${flag} '${path}': ${systemErrorReason(e)}`);
  }
}
