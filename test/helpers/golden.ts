// Golden fixtures from scripts/golden/make_golden.py (independent float64 PyTorch reference).
// Read through ./fixtures.js: from disk in Node, over HTTP in the browser test page.
import { SafetensorsFile, toF32 } from "../../src/io/safetensors.js";
import { fixtureSource, localFixturePath, modelFixtureNames } from "./fixtures.js";

/** test/fixtures/models on disk (Node-only tests; browser-capable ones use modelFixture(name)). */
export const FIXTURE_ROOT = localFixturePath("models");

export function fixtureNames(): string[] {
  return modelFixtureNames();
}

export interface Golden {
  ids: number[];
  logits: Float32Array; // [T, V]
  hidden: Float32Array; // [T, D]
  vocab: number;
  hiddenSize: number;
}

export async function readGolden(name: string): Promise<Golden> {
  const f = await SafetensorsFile.open(await fixtureSource(`models/${name}/golden.safetensors`));
  try {
    const ids = await f.readTensor("ids");
    const logits = await f.readTensor("logits");
    const hidden = await f.readTensor("hidden");
    return {
      ids: Array.from(ids.data as Int32Array),
      logits: toF32(logits.data, logits.info.dtype),
      hidden: toF32(hidden.data, hidden.info.dtype),
      vocab: logits.info.shape[1]!,
      hiddenSize: hidden.info.shape[1]!,
    };
  } finally {
    await f.close();
  }
}

/** ‖got − want‖₂ / ‖want‖₂ over a row range [r0, r1) of a [rows, width] matrix. */
export function relL2(got: ArrayLike<number>, want: ArrayLike<number>, width: number, r0 = 0, r1 = want.length / width, gotRowOffset = r0): number {
  let num = 0;
  let den = 0;
  for (let r = r0; r < r1; r++) {
    for (let c = 0; c < width; c++) {
      const w = want[r * width + c]!;
      const g = got[(r - r0 + gotRowOffset) * width + c]!;
      num += (g - w) ** 2;
      den += w * w;
    }
  }
  return Math.sqrt(num / den);
}

export function argmaxRow(x: ArrayLike<number>, row: number, width: number): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < width; i++) {
    const v = x[row * width + i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}
