// The static server of the demo page and browser tests: GET/HEAD, Range (206/416), confinement
// to its roots (.., symlinks, dot-files), read-only methods, and the model files read through it
// by the library's HTTP source.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseRange, startStaticServer } from "../src/web/static-server.js";
import { httpSource } from "../src/io/source.js";
import { scratchDir } from "./helpers/scratch.js";

const dir = scratchDir("static");
const root = join(dir, "root");
mkdirSync(join(root, "sub"), { recursive: true });
const body = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 255);
writeFileSync(join(root, "data.bin"), body);
writeFileSync(join(root, "index.html"), "<p>hi</p>");
writeFileSync(join(root, ".secret"), "no");
writeFileSync(join(dir, "outside.txt"), "outside");
symlinkSync(join(dir, "outside.txt"), join(root, "sub", "escape.txt"));

test("parseRange: forms, clamping, unsatisfiable ranges", () => {
  assert.equal(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
  assert.equal(parseRange("bytes=90-", 100), { start: 90, end: 99 });
  assert.equal(parseRange("bytes=-10", 100), { start: 90, end: 99 });
  assert.equal(parseRange("bytes=95-500", 100), { start: 95, end: 99 });
  assert.is(parseRange("bytes=100-", 100), null);
  assert.is(parseRange("bytes=5-2", 100), null);
  assert.is(parseRange("bytes=-0", 100), null);
  assert.is(parseRange("bytes=0-1,4-5", 100), null);
  assert.is(parseRange("items=0-1", 100), null);
});

test("GET, HEAD, Range and refusals", async () => {
  const s = await startStaticServer({ mounts: { "/": root } });
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const index = await fetch(s.url);
    assert.is(index.status, 200);
    assert.is(await index.text(), "<p>hi</p>");
    const head = await fetch(s.url + "data.bin", { method: "HEAD" });
    assert.is(head.status, 200);
    assert.is(head.headers.get("content-length"), "1000");
    assert.is(head.headers.get("accept-ranges"), "bytes");
    const part = await fetch(s.url + "data.bin", { headers: { Range: "bytes=10-19" } });
    assert.is(part.status, 206);
    assert.is(part.headers.get("content-range"), "bytes 10-19/1000");
    assert.equal(new Uint8Array(await part.arrayBuffer()), body.slice(10, 20));
    const bad = await fetch(s.url + "data.bin", { headers: { Range: "bytes=2000-" } });
    assert.is(bad.status, 416);
    await bad.arrayBuffer();
    for (const p of [".secret", "sub/escape.txt", "..%2Foutside.txt", "%2e%2e/outside.txt", "missing", "sub/"]) {
      const r = await fetch(s.url + p);
      assert.is(r.status, 404, p);
      await r.arrayBuffer();
    }
    const post = await fetch(s.url + "data.bin", { method: "POST", body: "x" });
    assert.is(post.status, 405);
    await post.arrayBuffer();
    // The library's HTTP source reads model files through it with Range requests.
    const src = await httpSource(s.url + "data.bin");
    assert.is(src.size, 1000);
    assert.equal(await src.read(500, 17), body.slice(500, 517));
  } finally {
    await s.close();
  }
});

test.run();
