// Host waits (src/gpu/host-wait.ts): the pacer's estimate (first wait unpaced, average of observed
// waits, shrinking when the GPU finished during the sleep, keys kept apart, short waits unpaced),
// the context's default per backend and its option check, and readbacks that are paced giving the
// same bytes as unpaced ones.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { MIN_SLEEP_MS, PACE_FRACTION, WaitPacer } from "../src/gpu/host-wait.js";
import { openDevice } from "../src/gpu/device.js";
import { UnsupportedError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

test("WaitPacer: a new key waits unpaced; then PACE_FRACTION of the running average; keys apart; short waits unpaced", () => {
  const p = new WaitPacer();
  assert.is(p.sleepMs(40), 0, "first wait of a key");
  p.record(40, 100);
  assert.is(p.sleepMs(40), 100 * PACE_FRACTION);
  p.record(40, 60);
  assert.is(p.estimate(40), 80, "average of the estimate and the observed wait");
  assert.is(p.sleepMs(40), 80 * PACE_FRACTION);
  assert.is(p.sleepMs(41), 0, "another key has its own estimate");
  p.record(7, MIN_SLEEP_MS / PACE_FRACTION / 2);
  assert.is(p.sleepMs(7), 0, "estimated waits under MIN_SLEEP_MS are not paced");
  p.record(0, 50);
  assert.is(p.sleepMs(0), 0, "key 0 (nothing encoded since the last wait) is never paced");
  p.record(9, NaN);
  assert.is(p.estimate(9), undefined, "a non-finite observation is ignored");
});

test("WaitPacer: when the GPU finishes during the sleep, the estimate shrinks to the true wait's neighbourhood and stays above PACE_FRACTION of it", () => {
  const p = new WaitPacer();
  const trueMs = 50;
  p.record(3, 400); // a slow first wait (compilation, a loaded machine)
  for (let i = 0; i < 60; i++) {
    const s = p.sleepMs(3);
    p.record(3, Math.max(s, trueMs) + 0.1); // the wait ends at the later of the sleep and the GPU
  }
  const s = p.sleepMs(3);
  assert.ok(s < trueMs && s > trueMs * PACE_FRACTION * 0.9, `sleep ${s} ms for a ${trueMs} ms wait`);
});

test("hostWait: 'paced' by default on Node + Dawn, 'spin' elsewhere; an unknown mode is refused before a device is opened; paced readbacks return the same bytes", async () => {
  const ctx = await gpu();
  assert.is(ctx.hostWait, ctx.adapter.backend === "node-dawn" ? "paced" : "spin");
  await assertRejects(() => openDevice({ hostWait: "nap" as never }), UnsupportedError, [/hostWait/, /paced, spin/, /nap/], "unknown hostWait");
  const rng = new Rng(5);
  const data = rng.fillUniform(4099);
  const t = ctx.upload(data, [4099], "f32", "t");
  const before = ctx.hostWait;
  try {
    for (const mode of ["paced", "spin", "paced", "paced"] as const) {
      ctx.hostWait = mode;
      assert.equal(Array.from(await t.read()), Array.from(data), `${mode} readback`);
      await ctx.sync();
    }
  } finally {
    ctx.hostWait = before;
    t.dispose();
  }
});

test.run();
