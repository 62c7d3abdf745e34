// Build step: the demo page. tsc has compiled web/*.ts to dist/web/*.js; this bundles
// dist/web/main.js (with the library) into dist/web/demo.js for browsers and copies the static
// files of web/ (index.html, style.css) beside it. `onegen web` serves dist/web/.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "web");
const entry = join(out, "main.js");
if (!existsSync(entry)) throw new Error("dist/web/main.js missing after tsc (is web/ in tsconfig.json's include?)");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [entry],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: join(out, "demo.js"),
  sourcemap: true,
  logLevel: "warning",
});
for (const f of readdirSync(join(root, "web"))) {
  if (f.endsWith(".html") || f.endsWith(".css")) copyFileSync(join(root, "web", f), join(out, f));
}
