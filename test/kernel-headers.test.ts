// Every kernel's header (kernels/*.wgsl) names its CPU reference, "NAME in src/FILE.ts", and that
// function exists in that file; entry points a header names exist in the WGSL. Shared snippets
// ("not a kernel", pulled in with #include) are held to the same rule only for the references
// they name.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const KERNELS = join(ROOT, "kernels");

/** The leading comment block of a WGSL file, "//" stripped, lines joined by spaces. */
function header(wgsl: string): string {
  const lines: string[] = [];
  for (const line of wgsl.split("\n")) {
    if (!line.startsWith("//")) break;
    lines.push(line.slice(2).trim());
  }
  return lines.join(" ");
}

/** [names, file] for each "reference(s): A, B and C in src/x.ts" of a header. */
function references(text: string): [string[], string][] {
  const out: [string[], string][] = [];
  for (const m of text.matchAll(/[Rr]eferences?:?\s+((?:[A-Za-z_]\w*(?:,\s*|\s+and\s+)?)+?)\s+in\s+(src\/[\w/.-]+\.ts)/g)) {
    out.push([m[1]!.split(/,\s*|\s+and\s+/).filter(Boolean), m[2]!]);
  }
  return out;
}

const files = readdirSync(KERNELS).filter((f) => f.endsWith(".wgsl")).sort();

test("every kernel header names a CPU reference that exists in the named file", () => {
  assert.ok(files.length > 20, `kernels found: ${files.length}`);
  const problems: string[] = [];
  for (const f of files) {
    const wgsl = readFileSync(join(KERNELS, f), "utf8");
    const text = header(wgsl);
    const refs = references(text);
    if (refs.length === 0 && !/not a kernel/.test(text)) problems.push(`${f}: the header names no CPU reference ("reference: NAME in src/FILE.ts")`);
    for (const [names, file] of refs) {
      let src: string;
      try {
        src = readFileSync(join(ROOT, file), "utf8");
      } catch {
        problems.push(`${f}: names ${file}, which does not exist`);
        continue;
      }
      for (const name of names) {
        if (!new RegExp(`export (async )?function\\*? ${name}\\b|export const ${name}\\b`).test(src)) problems.push(`${f}: names ${name} in ${file}, which does not define it`);
      }
    }
  }
  assert.equal(problems, []);
});

test("entry points a kernel header names exist in the WGSL", () => {
  const problems: string[] = [];
  for (const f of files) {
    const wgsl = readFileSync(join(KERNELS, f), "utf8");
    for (const m of header(wgsl).matchAll(/[Ee]ntry points?\s+`(\w+)`/g)) {
      if (!new RegExp(`@compute[^\\n]*\\n\\s*fn ${m[1]}\\(`).test(wgsl)) problems.push(`${f}: names entry point '${m[1]}', which it does not have`);
    }
  }
  assert.equal(problems, []);
});

test("the reference check catches a missing function, a missing file and a header without a reference", () => {
  assert.equal(references("(reference: gateReference in src/gpu/gate.ts)"), [[["gateReference"], "src/gpu/gate.ts"]]);
  assert.equal(references("(references: detectReference, resolveReference, planReference and commitReference in src/onegen/loop.ts)"), [
    [["detectReference", "resolveReference", "planReference", "commitReference"], "src/onegen/loop.ts"],
  ]);
  assert.equal(references("a kernel whose header says nothing of a reference"), []);
});

test.run();
