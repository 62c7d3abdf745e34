// Finite-difference gradient checking in float64, for the backward ops here and the losses built
// on them. A vector-valued forward f is reduced to the scalar L = Σ_i r_i·f_i with a fixed random
// r; the analytic gradient of L is the op's backward with upstream gradient r.

/**
 * Central differences of the scalar `loss` with respect to every element of `x` (modified in
 * place and restored): g_i = (L(x + h·e_i) − L(x − h·e_i)) / 2h. Error O(h²·L''') + O(ε·|L|/h).
 */
export function numericGrad(loss: () => number, x: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const lp = loss();
    x[i] = x0 - h;
    const lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

/** Σ_i r_i·y_i in float64. */
export function dot64(r: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += r[i]! * y[i]!;
  return s;
}
