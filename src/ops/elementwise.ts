// Element-wise ops. add: out = a + b (the residual add), f32 or f16, any size: tensors larger
// than one storage binding are processed in windows, one dispatch each.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { DTYPE_BYTES } from "../gpu/tensor.js";
import { expectDType, expectShape, grid, Params, storeFeatures, storeType, type StoreType } from "./common.js";
import { f16BitsToF32, f32ToF16Bits } from "../util/f16.js";

/** Invocations per workgroup. 256 is the WebGPU default maximum and measured no slower on lavapipe than 64/128. */
const ADD_WG = 256;

/** The add kernel for a store type ("f16p": f16 as packed pairs, one invocation per word). */
export function addVariant(dtype: StoreType): KernelVariant {
  return {
    file: "elementwise",
    name: `add_${dtype}_wg${ADD_WG}`,
    defines: { F16: dtype === "f16", PACKED: dtype === "f16p", T: dtype === "f16p" ? "u32" : dtype, WG: ADD_WG },
    bindings: ["read", "read", "read_write", "uniform"],
    features: storeFeatures(dtype),
  };
}

/** out = a + b, element-wise. Shapes and dtypes must match. Returns `out` (allocated if absent). */
export async function add(ctx: GpuContext, a: Tensor, b: Tensor, out?: Tensor): Promise<Tensor> {
  const op = "add";
  expectDType(a, ["f32", "f16"], op, "a");
  expectDType(b, [a.dtype], op, "b");
  expectShape(b, a.shape, op, "b");
  if (out) {
    expectDType(out, [a.dtype], op, "out");
    expectShape(out, a.shape, op, "out");
  }
  const dtype = a.dtype as "f32" | "f16";
  const st = storeType(ctx, dtype);
  const kernel = await ctx.kernels.get(addVariant(st));
  const result = out ?? ctx.empty(a.shape, dtype, "add.out");
  const bytes = DTYPE_BYTES[dtype];
  for (const w of ctx.bindingWindows(a.numel, bytes, `add '${a.label}'`)) {
    const byteSize = w.rows * bytes;
    const win = (t: Tensor) => ({ tensor: t, byteOffset: w.byteOffset, byteSize });
    ctx.dispatch(kernel, [win(a), win(b), win(result)], new Params().u32(w.rows).bytes(), grid(ctx, Math.ceil((st === "f16p" ? Math.ceil(w.rows / 2) : w.rows) / ADD_WG)));
  }
  return result;
}

/** CPU reference of add. f16 inputs are given as bits and the result is rounded to f16 bits. */
export function addReference(a: Float32Array, b: Float32Array): Float32Array;
export function addReference(a: Uint16Array, b: Uint16Array): Uint16Array;
export function addReference(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): Float32Array | Uint16Array {
  if (a instanceof Uint16Array) {
    const out = new Uint16Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = f32ToF16Bits(f16BitsToF32(a[i]!) + f16BitsToF32(b[i]!));
    return out;
  }
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}
