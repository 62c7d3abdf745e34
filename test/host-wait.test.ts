// Host waits (src/gpu/host-wait.ts): the pacer's estimate (first wait unpaced, average of observed
// waits, shrinking when the GPU finished during the sleep, keys kept apart, short waits unpaced),
// the context's default per backend and its option check, and readbacks that are paced giving the
// same bytes as unpaced ones.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { gpu } from "./helpers/gpu.js";
import { assertRejects } from "./helpers/check.js";
import { MIN_SEEN, MIN_SLEEP_MS, PACE_FRACTION, RECENT, WaitPacer } from "../src/gpu/host-wait.js";
import { openDevice } from "../src/gpu/device.js";
import { UnsupportedError } from "../src/errors.js";
import { Rng } from "../src/util/rng.js";

test("WaitPacer: a key waits unpaced until MIN_SEEN waits were observed (a first wait may include compiling); then PACE_FRACTION of the shortest of the last RECENT waits; keys apart; short sleeps not taken", () => {
  const p = new WaitPacer();
  assert.is(MIN_SEEN, 2);
  assert.is(p.sleepMs(40), 0, "first wait of a key");
  p.record(40, 2000);
  assert.is(p.sleepMs(40), 0, "one observation (compilation included) is not trusted");
  p.record(40, 100);
  assert.is(p.sleepMs(40), 100 * PACE_FRACTION);
  p.record(40, 60);
  assert.is(p.estimate(40), 60, "a shorter wait pulls the estimate down at once");
  p.record(40, 300);
  assert.is(p.estimate(40), 60, "a longer one does not raise it");
  for (let i = 0; i < RECENT; i++) p.record(40, 200);
  assert.is(p.estimate(40), 200, `after ${RECENT} longer waits the short one is forgotten`);
  assert.is(p.sleepMs(40), 200 * PACE_FRACTION);
  assert.is(p.sleepMs(41), 0, "another key has its own estimate");
  p.record(7, MIN_SLEEP_MS / PACE_FRACTION / 2);
  p.record(7, MIN_SLEEP_MS / PACE_FRACTION / 2);
  assert.is(p.sleepMs(7), 0, "sleeps under MIN_SLEEP_MS are not taken");
  p.record(0, 50);
  assert.is(p.sleepMs(0), 0, "key 0 (nothing encoded since the last wait) is never paced");
  p.record(9, NaN);
  assert.is(p.estimate(9), undefined, "a non-finite observation is ignored");
});

test("WaitPacer: a constant wait settles at a sleep of PACE_FRACTION of it; an overestimate decays; waits that vary under one key sleep for the shortest", () => {
  const p = new WaitPacer();
  const trueMs = 50;
  p.record(3, 400); // slow first waits (compilation, a loaded machine)
  p.record(3, 400);
  let slept = 0;
  for (let i = 0; i < 30; i++) {
    const s = p.sleepMs(3);
    slept = s;
    p.record(3, Math.max(s, trueMs) + 0.1); // the wait ends at the later of the sleep and the GPU
  }
  assert.ok(slept <= trueMs && slept >= trueMs * PACE_FRACTION * 0.9, `sleep ${slept} ms for a ${trueMs} ms wait`);
  const q = new WaitPacer();
  let over = 0;
  for (let i = 0; i < 40; i++) {
    const w = i % 3 === 0 ? 10 : 120; // a short prefill among long ones, one key
    const s = q.sleepMs(5);
    over = Math.max(over, s - w);
    q.record(5, Math.max(s, w));
  }
  assert.ok(over <= 10 * PACE_FRACTION, `oversleep at most ${over.toFixed(1)} ms past a 10 ms wait`);
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
