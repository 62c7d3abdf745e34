// Launchers for kernels/onegen_loop.wgsl, the retrieval step of the GPU decode loop, and their CPU
// references. The session (src/model/session.ts) encodes, per decode step:
//   detect → forward(token, hidden kept) → [gated by search_flag] top-k search → resolve →
//   plan → commit → [gated by inject_flag] forward(injected tokens) → logits of the last one.
// Everything stays on the GPU; the host learns what happened from the per-step record in the
// history buffer (bit 31: searched; bit 30: injection refused for lack of room; low bits: L).

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { expectDType, Params } from "../ops/common.js";

export const RECORD_SEARCHED = 0x80000000;
export const RECORD_OVERFLOW = 0x40000000;
export const RECORD_LENGTH_MASK = 0x3fffffff;
const LOOP_WG = 64;

export interface LoopParams {
  queryId: number;
  maxRetrievals: number;
  nPrefix: number;
  nSuffix: number;
  lMax: number;
  capacity: number;
  window: number;
  slot: number;
  maxDocTokens: number;
}

function stage(name: "DETECT" | "RESOLVE" | "PLAN" | "COMMIT", bindings: KernelVariant["bindings"]): KernelVariant {
  return {
    file: "onegen_loop",
    name: `onegen_${name.toLowerCase()}`,
    defines: { DETECT: name === "DETECT", RESOLVE: name === "RESOLVE", PLAN: name === "PLAN", COMMIT: name === "COMMIT", WG: LOOP_WG },
    bindings,
  };
}
const DETECT = stage("DETECT", ["read", "read_write", "read_write", "read_write", "uniform"]);
const RESOLVE = stage("RESOLVE", ["read", "read", "read", "read", "read", "read_write", "read_write", "read_write", "uniform"]);
const PLAN = stage("PLAN", ["read", "read", "read", "read", "read_write", "read_write", "read_write", "read_write", "uniform"]);
const COMMIT = stage("COMMIT", ["read", "read", "read_write", "read_write", "read_write", "uniform"]);

function params(p: LoopParams): Uint8Array {
  return new Params()
    .u32(p.queryId).u32(p.maxRetrievals).u32(p.nPrefix).u32(p.nSuffix)
    .u32(p.lMax).u32(p.capacity).u32(p.window).u32(p.slot)
    .u32(p.maxDocTokens).u32(0).u32(0).u32(0)
    .bytes();
}

export interface LoopState {
  /** u32 [8]: retrievals so far, doc token offset, doc token count, L. */
  state: Tensor;
  searchFlag: Tensor;
  injectFlag: Tensor;
  /** Injection plan (l_max rows). */
  planIds: Tensor;
  planPos: Tensor;
  planRanges: Tensor;
  lastRow: Tensor;
  /** prefix ids then suffix ids (at least one element). */
  wrap: Tensor;
}

export async function detect(ctx: GpuContext, token: Tensor, s: LoopState, history: Tensor, p: LoopParams): Promise<void> {
  expectDType(token, ["u32"], "onegen detect", "token");
  ctx.dispatch(await ctx.kernels.get(DETECT), [token, s.state, s.searchFlag, history], params(p), [1]);
}

export async function resolve(ctx: GpuContext, s: LoopState, hits: Tensor, entryTable: Tensor, documentTable: Tensor, position: Tensor, history: Tensor, p: LoopParams): Promise<void> {
  ctx.dispatch(await ctx.kernels.get(RESOLVE), [s.searchFlag, hits, entryTable, documentTable, position, s.state, s.injectFlag, history], params(p), [1]);
}

export async function plan(ctx: GpuContext, s: LoopState, docTokens: Tensor, position: Tensor, p: LoopParams): Promise<void> {
  ctx.dispatch(await ctx.kernels.get(PLAN), [s.state, docTokens, s.wrap, position, s.planIds, s.planPos, s.planRanges, s.lastRow], params(p), [1]);
}

export async function commit(ctx: GpuContext, s: LoopState, position: Tensor, ranges: Tensor, context: Tensor, p: LoopParams): Promise<void> {
  ctx.dispatch(await ctx.kernels.get(COMMIT), [s.state, s.planIds, position, ranges, context], params(p), [1]);
}

// ------------------------------------------------------------------ CPU references

export interface HostLoopState {
  retrievals: number;
  offset: number;
  count: number;
  length: number;
}

export function detectReference(token: number, st: HostLoopState, p: Pick<LoopParams, "queryId" | "maxRetrievals">): { search: boolean; record: number } {
  const search = token === p.queryId && st.retrievals < p.maxRetrievals;
  if (search) st.retrievals++;
  return { search, record: search ? RECORD_SEARCHED : 0 };
}

/** Returns the record bits it adds; updates st.offset/count/length (length 0 = no injection). */
export function resolveReference(
  search: boolean,
  bestEntry: number,
  entryTable: ArrayLike<number>,
  documentTable: ArrayLike<number>,
  position: number,
  st: HostLoopState,
  p: Pick<LoopParams, "nPrefix" | "nSuffix" | "lMax" | "capacity" | "maxDocTokens">,
): number {
  st.length = 0;
  if (!search || bestEntry === 0xffffffff) return 0;
  const doc = entryTable[2 * bestEntry]!;
  const offset = documentTable[2 * doc]!;
  const count = Math.min(documentTable[2 * doc + 1]!, p.maxDocTokens);
  const l = p.nPrefix + count + p.nSuffix;
  if (l === 0 || l > p.lMax || position + l + 1 > p.capacity) return RECORD_OVERFLOW;
  Object.assign(st, { offset, count, length: l });
  return l;
}

/** The injected ids (first L rows of the plan). */
export function planReference(st: HostLoopState, docTokens: ArrayLike<number>, prefix: readonly number[], suffix: readonly number[]): number[] {
  if (st.length === 0) return [];
  return [...prefix, ...Array.from({ length: st.count }, (_, i) => docTokens[st.offset + i]!), ...suffix];
}
