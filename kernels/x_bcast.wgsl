// x_bcast.wgsl: 8 activation vec4s (32 elements) handed to every lane of a subgroup, each lane
// having loaded at most two of them (on llvmpipe every storage load is a per-lane gather,
// GPU-NOTES; a broadcast is a register shuffle). Included with `#include x_bcast` by kernels that
// walk K 32 elements at a time (gemv_step's and gemv_q's tiles paths, define XBCAST); not a kernel.
// Needs the 'subgroups' feature and subgroups of ≥ 8 lanes, or ≥ 4 with the define XL2.
//   lane i (i < 8) holds vec4 i in v0; XL2: lane i (i < 4) holds vec4 i in v0 and vec4 i + 4 in v1
//   (lanes 4.. of a wider subgroup load what lanes 0..3 do: use lane & 3 for the index).
// Call in uniform control flow.
enable subgroups;

fn bc8(v0: vec4<f32>, v1: vec4<f32>) -> array<vec4<f32>, 8> {
#if XL2
  return array<vec4<f32>, 8>(subgroupBroadcast(v0, 0u), subgroupBroadcast(v0, 1u), subgroupBroadcast(v0, 2u), subgroupBroadcast(v0, 3u),
                             subgroupBroadcast(v1, 0u), subgroupBroadcast(v1, 1u), subgroupBroadcast(v1, 2u), subgroupBroadcast(v1, 3u));
#else
  return array<vec4<f32>, 8>(subgroupBroadcast(v0, 0u), subgroupBroadcast(v0, 1u), subgroupBroadcast(v0, 2u), subgroupBroadcast(v0, 3u),
                             subgroupBroadcast(v0, 4u), subgroupBroadcast(v0, 5u), subgroupBroadcast(v0, 6u), subgroupBroadcast(v0, 7u));
#endif
}

// The x vec4 index this lane loads first within a 32-element step (its second, XL2: + 4).
fn bc_lane(sl: u32) -> u32 {
#if XL2
  return sl & 3u;
#else
  return sl;
#endif
}
