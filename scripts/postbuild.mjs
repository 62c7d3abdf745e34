// After tsc: make the CLI executable and link it as node_modules/.bin/onegen, so that
// `npx onegen` works inside a clone as it does for users who install the package. Compiled test
// suites whose source is gone (a removed test file) are deleted, so the runner does not run them.
import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, unlinkSync, lstatSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist", "src", "cli.js");
if (!existsSync(cli)) throw new Error("dist/src/cli.js missing after tsc");
chmodSync(cli, 0o755);
const binDir = join(root, "node_modules", ".bin");
if (existsSync(join(root, "node_modules"))) {
  mkdirSync(binDir, { recursive: true });
  const link = join(binDir, "onegen");
  try {
    if (lstatSync(link)) unlinkSync(link);
  } catch {}
  symlinkSync("../../dist/src/cli.js", link);
}

const distTest = join(root, "dist", "test");
if (existsSync(distTest)) {
  for (const f of readdirSync(distTest)) {
    const m = /^(.*\.test)\.(js|js\.map|d\.ts)$/.exec(f);
    if (m && !existsSync(join(root, "test", `${m[1]}.ts`))) unlinkSync(join(distTest, f));
  }
}
