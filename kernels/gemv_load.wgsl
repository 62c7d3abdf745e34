// gemv_load.wgsl: the W and x chunk loads of the "rows" and "splitk" GEMV kernels (gemv,
// gemv_splitk), widened to f32 as Chunks (kernels/gemv_chunk.wgsl, which the kernel includes too).
// Included with `#include gemv_load`; not a kernel. Needs linear_io's bindings and Params and the
// defines WF16, VEC8, VEC4, NATIVE_F16. Reference: linearReference in src/ops/linear.ts.

// One VEC-wide chunk of W row `row`, chunk `c`, widened to f32 (kernels/gemv_chunk.wgsl).
fn load_w(row: u32, c: u32, cpr: u32) -> Chunk {
#if NATIVE_F16
  let i = (row * cpr + c) * 2u;
  return Chunk(vec4<f32>(w[i]), vec4<f32>(w[i + 1u]));
#else
#if WF16
#if VEC8
  return chunk_f16x8(w[row * cpr + c]);
#else
  let e = row * params.K + c;           // element index of a half
  return chunk_f16x1(w[e >> 1u], e);
#endif
#else
#if VEC4
  return chunk_f32x4(w[row * cpr + c]);
#else
  return chunk_f32x1(w[row * cpr + c]);
#endif
#endif
#endif
}

fn load_x(m: u32, c: u32, cpr: u32) -> Chunk {
#if VEC8
  let i = params.x_base + m * cpr * 2u + c * 2u;
  return Chunk(x[i], x[i + 1u]);
#else
#if VEC4
  return Chunk(x[params.x_base + m * cpr + c], vec4<f32>());
#else
  return Chunk(vec4<f32>(x[params.x_base + m * cpr + c], 0.0, 0.0, 0.0), vec4<f32>());
#endif
#endif
}

