// Deno smoke test: the browser ESM bundle (dist/browser/onegen-webgpu.js, built by
// `npm run build:browser`: no Node built-ins, no bare imports) opens a device through
// navigator.gpu and runs real kernels (f32 and, when available, f16). Run by scripts/run-tests.mjs:
//   deno run --allow-read --allow-env test/deno/smoke.ts
// Prints one line per check and a closing "deno: N passed, N failed".
import { openDevice, add, addReference, f32ArrayToF16, f16ArrayToF32, Rng, loadDecoder, Session, SafetensorsFile, openFileSource, toF32, TrainModel, trainStep, AdamW, nextTokenLabels } from "../../dist/browser/onegen-webgpu.js";

let passed = 0;
let failed = 0;
async function check(name: string, fn: () => Promise<void>) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${(e as Error).stack ?? e}`);
  }
}

const ctx = await openDevice();
console.log(`adapter: ${ctx.adapter.description} (${ctx.adapter.backend}); f16 ${ctx.hasF16}, subgroups ${ctx.hasSubgroups}`);
const rng = new Rng(3);

await check("backend is navigator.gpu", async () => {
  if (ctx.adapter.backend !== "navigator.gpu") throw new Error(`backend ${ctx.adapter.backend}`);
});

await check("add f32 over a windowed size", async () => {
  const n = 70_001;
  const x = rng.fillUniform(n), y = rng.fillUniform(n);
  const out = await add(ctx, ctx.upload(x, [n], "f32"), ctx.upload(y, [n], "f32"));
  const got = await out.read();
  const want = addReference(x, y);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) throw new Error(`[${i}] got ${got[i]} want ${want[i]}`);
});

// f16 runs with or without shader-f16 (packed pairs without it): no condition on the feature.
await check(`add f16 (${ctx.hasF16 ? "native" : "packed pairs"})`, async () => {
  const n = 1001;
  const x = f32ArrayToF16(rng.fillUniform(n)), y = f32ArrayToF16(rng.fillUniform(n));
  const out = await add(ctx, ctx.upload(x, [n], "f16"), ctx.upload(y, [n], "f16"));
  const got = f16ArrayToF32(await out.read() as Uint16Array);
  const want = f16ArrayToF32(addReference(x, y));
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) throw new Error(`[${i}] got ${got[i]} want ${want[i]}`);
});

await check("decoder parity on a fixture (qwen2, f16 weights) without subgroups", async () => {
  const dir = new URL("../fixtures/models/qwen2-bias-tied-f16/", import.meta.url).pathname;
  const golden = await SafetensorsFile.open(await openFileSource(dir + "golden.safetensors"));
  const ids = Array.from((await golden.readTensor("ids")).data as Int32Array);
  const want = await golden.readTensor("logits");
  const wantLogits = toF32(want.data, want.info.dtype);
  await golden.close();
  const model = await loadDecoder(ctx, dir, { noTokenizer: true });
  const session = Session.create(model.decoder, ids.length);
  const out = await session.append(ids, { logits: "all" });
  const got = (await out.logits!.read()) as Float32Array;
  let num = 0, den = 0;
  for (let i = 0; i < wantLogits.length; i++) {
    num += (got[i]! - wantLogits[i]!) ** 2;
    den += wantLogits[i]! ** 2;
  }
  const rel = Math.sqrt(num / den);
  if (!(rel <= 5e-3)) throw new Error(`logits relative L2 ${rel}`);
  session.dispose();
  model.dispose();
});

await check("training steps (backward kernels, AdamW) lower the loss", async () => {
  const dir = new URL("../fixtures/models/llama-gqa-f32/", import.meta.url).pathname;
  const model = await loadDecoder(ctx, dir, { noTokenizer: true });
  const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % model.decoder.vocabSize);
  const labels = nextTokenLabels(ids, [ids.length], ids.map(() => true));
  const train = TrainModel.create(model.decoder, { mode: "lora", lora: { rank: 4, alpha: 8, seed: 1 } });
  const opt = await AdamW.create(ctx, train.params, { lr: 5e-3 });
  const losses: number[] = [];
  for (let s = 0; s < 6; s++) {
    const r = await trainStep(train, { ids, lengths: [ids.length], labels }, { lambdaGen: 1, lambdaRet: 0 });
    losses.push(r.lossGen);
    await opt.step();
  }
  opt.dispose();
  train.dispose();
  model.dispose();
  if (!(losses.every(Number.isFinite) && losses[5]! < losses[0]!)) throw new Error(`losses ${losses.join(", ")}`);
});

ctx.destroy();
console.log(`deno: ${passed} passed, ${failed} failed`);
if (failed) Deno.exit(1);
