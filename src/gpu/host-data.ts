// Host data ⇄ the bytes of a tensor's dtype: what write()/upload() send to the GPU (numbers
// converted, typed arrays of the dtype's own kind passed through) and the typed-array view read()
// returns (f16 as raw bits, quantized dtypes as their bytes).

import { ShapeError } from "../errors.js";
import { f32ArrayToF16 as float32ToF16 } from "../util/f16.js";
import { isQuantDType, type DType, type HostArray } from "./tensor.js";

/** Host data → the bytes of a dtype. Numbers are converted; typed arrays of the dtype's own kind pass through. */
export function toBytes(data: ArrayLike<number> | ArrayBufferView, dtype: DType, label: string): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    const ok =
      (dtype === "f32" && data instanceof Float32Array) ||
      (dtype === "f16" && data instanceof Uint16Array) ||
      (dtype === "u32" && data instanceof Uint32Array) ||
      (dtype === "i32" && data instanceof Int32Array) ||
      (isQuantDType(dtype) && data instanceof Uint8Array);
    if (ok) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (dtype === "f16" && data instanceof Float32Array) return new Uint8Array(float32ToF16(data).buffer);
    if (data instanceof DataView) throw new ShapeError(`upload to '${label}': pass a typed array, not a DataView`);
  }
  const arr = data as ArrayLike<number>;
  switch (dtype) {
    case "f32":
      return new Uint8Array(Float32Array.from(arr).buffer);
    case "f16":
      return new Uint8Array(float32ToF16(arr).buffer);
    case "u32":
      return new Uint8Array(Uint32Array.from(arr).buffer);
    case "i32":
      return new Uint8Array(Int32Array.from(arr).buffer);
    case "q8_0":
    case "q4_0":
      throw new ShapeError(`upload to '${label}': ${dtype} data is given as its bytes (a Uint8Array, src/quant/formats.ts packQuantized)`);
  }
}

/** The host array of a dtype over `bytes` (a readback of `numel` elements, `byteLength` bytes). */
export function hostArray<D extends DType>(buf: ArrayBufferLike, dtype: D, numel: number, byteLength: number): HostArray<D> {
  switch (dtype) {
    case "f32":
      return new Float32Array(buf, 0, numel) as HostArray<D>;
    case "f16":
      return new Uint16Array(buf, 0, numel) as HostArray<D>;
    case "u32":
      return new Uint32Array(buf, 0, numel) as HostArray<D>;
    case "q8_0":
    case "q4_0":
      return new Uint8Array(buf, 0, byteLength) as HostArray<D>;
    default:
      return new Int32Array(buf, 0, numel) as HostArray<D>;
  }
}
