// Document token ids outside the model's vocabulary never reach the embedding gather on the GPU
// (which cannot refuse an id: it writes a zero row and sets a flag, see src/ops/embedding.ts):
// loadIndex with a decoder refuses such an index, and a run that injects refuses it before
// anything is generated; a run that does not inject (entity linking) is unaffected.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { modelFixture } from "./helpers/fixtures.js";
import { loadDecoder } from "../src/model/load.js";
import { LoadError, UsageError } from "../src/errors.js";
import { DocumentIndex } from "../src/onegen/index.js";
import { loadIndex, saveIndex } from "../src/onegen/index-files.js";
import { modelFingerprint } from "../src/onegen/fingerprint.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { runMultiHopQa } from "../src/onegen/multihop-qa.js";
import { Rng } from "../src/util/rng.js";
import { scratchDir } from "./helpers/scratch.js";

test("an index holding a token id ≥ V: refused by loadIndex (with the model) and by a run that injects; maxTokenId tracks it", async () => {
  const ctx = await gpu();
  const m = await loadDecoder(ctx, modelFixture("llama-gqa-f32"), { noTokenizer: true });
  const V = m.decoder.vocabSize;
  const D = m.decoder.hiddenSize;
  const rng = new Rng(5);
  const vec = () => Float32Array.from({ length: D }, () => rng.normal());
  const index = DocumentIndex.create(ctx, D, { dtype: "f32", model: await modelFingerprint(m.decoder) });
  assert.is(index.maxTokenId, -1, "no tokens yet");
  await index.addVectors("good", vec(), [20, 21, V - 1]);
  assert.is(index.maxTokenId, V - 1);
  await index.addVectors("bad", vec(), [20, V + 3, 22]);
  assert.is(index.maxTokenId, V + 3);

  const dir = scratchDir("injection-ids");
  try {
    await saveIndex(index, join(dir, "ix"));
    await assertRejects(() => loadIndex(ctx, join(dir, "ix"), m.decoder), LoadError, [/document 'bad'/, new RegExp(`token id ${V + 3}`), /vocabulary/], "loadIndex");
    const inspected = await loadIndex(ctx, join(dir, "ix"), null); // no model: nothing to check against
    assert.is(inspected.maxTokenId, V + 3, "maxTokenId of a loaded index");
    inspected.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const markers = { queryToken: 9, paragraphOpen: [303], paragraphClose: [304], answerOpen: [305], answerClose: [306] };
  await assertRejects(() => runMultiHopQa(m, index, { ids: [11, 40, 9] }, { ...markers, maxNewTokens: 2, cacheDtype: "f32" }), UsageError, [new RegExp(`token id ${V + 3}`), /vocabulary/, /injected/], "multi-hop QA");
  const el = await runEntityLinking(m, index, { ids: [11, 40, 9] }, { queryToken: 9, continueToken: 10, mentionOpen: [300], mentionClose: [301], maxNewTokens: 1, cacheDtype: "f32" });
  assert.is(el.retrievals.length, 1, "entity linking (no injection) runs on the same index");
  index.dispose();
});

test.run();
