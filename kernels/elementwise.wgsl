// elementwise.wgsl: out[i] = a[i] + b[i]  (residual add; reference: addReference in src/ops/elementwise.ts)
//
// Bindings (group 0), all one window of at most maxStorageBufferBindingSize bytes:
//   0 a:      array<T>  read        [n]
//   1 b:      array<T>  read        [n]
//   2 out:    array<T>  read_write  [n]   (may alias neither input)
//   3 params: Params    uniform
// Mapping: one invocation per element; workgroups on a 2-D grid (linear index = x + y·num_x),
// so n may exceed 65,535 × WG. T is f32, or f16 with F16 (summed in f32, rounded once on store).
// PACKED (f16 without shader-f16): T = u32 holding two f16 elements; one invocation per word
// (so no two invocations write one word); for odd n the last word's high half is the buffer's
// padding and is written 0.
#include f16_enable
#include f16_packed

struct Params {
  n: u32,      // elements in this window
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<{{T}}>;
@group(0) @binding(1) var<storage, read> b: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
#if PACKED
  if (2u * i >= params.n) { return; }
  let s = unpack2x16float(a[i]) + unpack2x16float(b[i]);
  out[i] = f16p_pair(s.x, select(0.0, s.y, 2u * i + 1u < params.n));
#else
  if (i >= params.n) { return; }
  out[i] = {{T}}(f32(a[i]) + f32(b[i]));
#endif
}
