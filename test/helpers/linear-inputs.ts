// Random inputs of one linear() case, shared by the linear/gemv test files.
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/util/f16.js";
import type { Rng } from "../../src/util/rng.js";

/**
 * x [M, K] (f32), W [N, K] and an optional bias [N] in their storage dtype (f16 as bits), plus the
 * f32 values the reference sees (f16 rounding applied). Draws x, then W, then the bias from `rng`.
 */
export function linearInputs(rng: Rng, M: number, N: number, K: number, wd: "f32" | "f16", bias: "none" | "f32" | "f16") {
  const xh = rng.fillUniform(M * K);
  const wf = rng.fillUniform(N * K);
  const wBits = wd === "f16" ? f32ArrayToF16(wf) : null;
  const bf = bias === "none" ? null : rng.fillUniform(N);
  const bBits = bias === "f16" && bf ? f32ArrayToF16(bf) : null;
  return {
    xh,
    w: wBits ?? wf,
    wRef: wBits ? f16ArrayToF32(wBits) : wf,
    b: bf ? (bBits ?? bf) : null,
    bRef: bBits ? f16ArrayToF32(bBits) : bf,
  };
}
