// gate.wgsl: turns a GPU-side condition into indirect dispatch arguments, so a block of already
// encoded dispatches runs or not without the host knowing the condition
// (reference: gateArgsReference in src/gpu/context.ts, whose beginGate launches it).
//
// Bindings (group 0):
//   0 flag:     array<u32>  read        [1]       run the gated block when flag[0] != 0
//   1 template: array<u32>  read        [3·n]     the block's workgroup counts (x, y, z) per dispatch
//   2 args:     array<u32>  read_write  [3·n]     indirect arguments the gated dispatches read
//   3 params:   Params      uniform
// Mapping: one invocation per dispatch of the block; it writes (x, y, z) or (0, 1, 1).

struct Params {
  n: u32,       // dispatches in the block
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> flag: array<u32>;
@group(0) @binding(1) var<storage, read> template_args: array<u32>;
@group(0) @binding(2) var<storage, read_write> args: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= params.n) { return; }
  let on = flag[0] != 0u;
  args[3u * i] = select(0u, template_args[3u * i], on);
  args[3u * i + 1u] = select(1u, template_args[3u * i + 1u], on);
  args[3u * i + 2u] = select(1u, template_args[3u * i + 2u], on);
}
