// The demo runner without a file system: the data folder and the two indexes read over HTTP
// (src/web/static-server.ts serving demo/) give the same data and indexes as the local folders;
// a missing file is a LoadError naming its URL; indexes given as URLs are never rebuilt.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gpu } from "./helpers/gpu.js";
import { startStaticServer } from "../src/web/static-server.js";
import { loadDecoder } from "../src/model/load.js";
import { LoadError, UsageError } from "../src/errors.js";
import { loadDemoData, urlDemoFiles } from "../src/demo/data.js";
import { openDemoIndexes, urlDemoIndexDirs } from "../src/demo/indexes.js";
import { linkSentence } from "../src/demo/tasks.js";

const DEMO = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "demo");

test("demo data and indexes over HTTP equal the local ones; missing files and rebuilds are refused", async () => {
  const server = await startStaticServer({ mounts: { "/": DEMO } });
  try {
    const local = await loadDemoData(join(DEMO, "data"), "test");
    const remote = await loadDemoData(urlDemoFiles(server.url + "data/"), "test");
    assert.is(remote.dir, server.url + "data/");
    assert.equal({ ...remote, dir: "" }, { ...local, dir: "" }, "every file parsed alike");

    try {
      await loadDemoData(urlDemoFiles(server.url + "nowhere/"), "test");
      assert.unreachable("a missing data folder loads");
    } catch (e) {
      assert.instance(e, LoadError);
      assert.match((e as Error).message, new RegExp(`^cannot read '${server.url}nowhere/manifest\\.json': HTTP 404`));
    }

    const ctx = await gpu();
    const model = await loadDecoder(ctx, join(DEMO, "model"));
    try {
      const a = await openDemoIndexes(ctx, model, join(DEMO, "index"), local, { build: false });
      const b = await openDemoIndexes(ctx, model, urlDemoIndexDirs(server.url + "index/"), remote);
      try {
        assert.equal(b.how, { el: "loaded", mh: "loaded" });
        assert.is(b.el.count, a.el.count);
        assert.is(b.mh.count, a.mh.count);
        const text = local.elTest[1]!.text;
        const ra = await linkSentence(model, a, text);
        const rb = await linkSentence(model, b, text);
        assert.equal(rb.ids, ra.ids);
        assert.equal(rb.mentions, ra.mentions, "the same entities and scores");
      } finally {
        a.dispose();
        b.dispose();
      }
      try {
        await openDemoIndexes(ctx, model, urlDemoIndexDirs(server.url + "index/"), remote, { rebuild: true });
        assert.unreachable("an index over HTTP was rebuilt");
      } catch (e) {
        assert.instance(e, UsageError);
        assert.match((e as Error).message, /cannot rebuild the indexes at 'http:.*': saving needs a local folder/);
      }
    } finally {
      model.dispose();
    }
  } finally {
    await server.close();
  }
});

test.run();
