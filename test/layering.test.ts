// Layers point one way: a file under src/ imports only from its own top-level folder (or root
// file) and from folders of a lower layer, and the folders' import graph has no cycle. The layers
// (lowest first; a name is a folder under src/ or a root file src/NAME.ts):
//   errors → util, generated → gpu → io, quant → tokenizer, ops → model → onegen, train →
//   demo, serve, web → cli, index
// so src/gpu imports nothing above it and src/model never imports src/onegen. Import lines are read
// as text (static `import`/`export … from`, side-effect `import "…"`, dynamic `import("…")`).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const LAYERS: readonly (readonly string[])[] = [
  ["errors"],
  ["util", "generated"],
  ["gpu"],
  ["io", "quant"],
  ["tokenizer", "ops"],
  ["model"],
  ["onegen", "train"],
  ["demo", "serve", "web"],
  ["cli", "index"],
];
const RANK = new Map<string, number>(LAYERS.flatMap((names, i) => names.map((n) => [n, i] as const)));

/** The relative specifiers a TypeScript source imports (comments ignored). */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']/gm)) out.push(m[1]!);
  for (const m of code.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) out.push(m[1]!);
  for (const m of code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1]!);
  return out.filter((s) => s.startsWith("."));
}

/** The layer unit of a path relative to src/: its top-level folder, or a root file's name. */
function unit(rel: string): string {
  const parts = rel.split("/");
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.[jt]s$/, "");
}

/** Folder → folders it imports (with one importing file per edge), from { path under src/: source }. */
export function folderGraph(files: ReadonlyMap<string, string>): Map<string, Map<string, string>> {
  const g = new Map<string, Map<string, string>>();
  for (const [rel, source] of files) {
    const from = unit(rel);
    for (const spec of importSpecifiers(source)) {
      const target = normalize(join(dirname(rel), spec)).split(sep).join("/");
      if (target.startsWith("..")) continue; // outside src/ (none today)
      const to = unit(target);
      if (to === from) continue;
      if (!g.has(from)) g.set(from, new Map());
      if (!g.get(from)!.has(to)) g.get(from)!.set(to, `src/${rel} imports '${spec}'`);
    }
  }
  return g;
}

/** Upward imports (and imports of folders no layer names), then cycles, as one line each. */
export function layeringProblems(g: ReadonlyMap<string, ReadonlyMap<string, string>>): string[] {
  const problems: string[] = [];
  for (const [from, tos] of g) {
    for (const [to, where] of tos) {
      const a = RANK.get(from), b = RANK.get(to);
      if (a === undefined || b === undefined) problems.push(`${where}: '${a === undefined ? from : to}' is in no layer (add it to LAYERS in test/layering.test.ts)`);
      else if (b > a) problems.push(`${where}: ${from} (layer ${a}) imports ${to} (layer ${b}), a layer above it`);
    }
  }
  // Cycles: depth-first search, a back edge closes one.
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, "open");
    stack.push(n);
    for (const m of g.get(n)?.keys() ?? []) {
      if (state.get(m) === "open") problems.push(`import cycle: ${[...stack.slice(stack.indexOf(m)), m].join(" → ")} (${g.get(n)!.get(m)})`);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...g.keys()].sort()) if (!state.has(n)) visit(n);
  return problems;
}

function sources(): Map<string, string> {
  const src = join(ROOT, "src");
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts")) out.set(relative(src, p).split(sep).join("/"), readFileSync(p, "utf8"));
    }
  };
  walk(src);
  return out;
}

test("src/: no upward import between top-level folders, no import cycle", () => {
  const files = sources();
  assert.ok(files.size > 100, `read ${files.size} files under src/`);
  const g = folderGraph(files);
  // the reader sees the imports that must exist (a reader that finds nothing would pass anything)
  for (const [from, to] of [["model", "ops"], ["ops", "gpu"], ["onegen", "model"], ["cli", "onegen"]] as const) assert.ok(g.get(from)?.has(to), `${from} → ${to} found`);
  assert.equal(layeringProblems(g), []);
});

test("the layering check catches an upward import, an unknown folder and a cycle", () => {
  assert.equal(importSpecifiers('import { a } from "./a.js";\nimport type {\n  B,\n} from "../b.js";\nexport * from "./c.js";\n// import { x } from "./no.js";\nconst m = await import("./d.js");\nimport "./e.js";'), [
    "./a.js",
    "../b.js",
    "./c.js",
    "./e.js",
    "./d.js",
  ]);
  const g = folderGraph(new Map([["gpu/context.ts", 'import { linear } from "../ops/linear.js";'], ["model/session.ts", 'import { x } from "../onegen/loop.js";']]));
  assert.equal(layeringProblems(g), [
    "src/gpu/context.ts imports '../ops/linear.js': gpu (layer 2) imports ops (layer 4), a layer above it",
    "src/model/session.ts imports '../onegen/loop.js': model (layer 5) imports onegen (layer 6), a layer above it",
  ]);
  assert.match(layeringProblems(folderGraph(new Map([["newfolder/a.ts", 'import { e } from "../errors.js";']]))).join("\n"), /'newfolder' is in no layer/);
  const cyc = folderGraph(new Map([["io/a.ts", 'import { q } from "../quant/b.js";'], ["quant/b.ts", 'import { a } from "../io/a.js";']]));
  assert.equal(layeringProblems(cyc), ["import cycle: io → quant → io (src/quant/b.ts imports '../io/a.js')"]);
});

test.run();
