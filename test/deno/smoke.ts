// Deno smoke test: the library's compiled ESM (dist/src) opens a device through navigator.gpu
// and runs real kernels (f32 and, when available, f16). Run by scripts/run-tests.mjs:
//   deno run --allow-read --allow-env test/deno/smoke.ts
// Prints one line per check and a closing "deno: N passed, N failed".
import { openDevice, add, addReference, f32ArrayToF16, f16ArrayToF32, Rng } from "../../dist/src/index.js";

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

if (ctx.hasF16) {
  await check("add f16", async () => {
    const n = 1001;
    const x = f32ArrayToF16(rng.fillUniform(n)), y = f32ArrayToF16(rng.fillUniform(n));
    const out = await add(ctx, ctx.upload(x, [n], "f16"), ctx.upload(y, [n], "f16"));
    const got = f16ArrayToF32(await out.read() as Uint16Array);
    const want = f16ArrayToF32(addReference(x, y));
    for (let i = 0; i < n; i++) if (got[i] !== want[i]) throw new Error(`[${i}] got ${got[i]} want ${want[i]}`);
  });
}

ctx.destroy();
console.log(`deno: ${passed} passed, ${failed} failed`);
if (failed) Deno.exit(1);
