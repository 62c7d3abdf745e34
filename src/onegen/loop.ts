// OneGen in-loop retrieval: a decode hook (src/model/hooks.ts) for Session.generate, the launchers
// for kernels/onegen_loop.wgsl, and their CPU references. Per decode step the hook encodes:
//   beforeForward: detect (query token? record word ← SEARCHED)
//   [the session's forward of the token, hidden state kept]
//   afterForward:  [gated by search_flag] top-k search → resolve → plan → commit →
//                  [gated by inject_flag] forward(injected tokens) → logits of the last one.
// Everything stays on the GPU; the host learns what happened from the per-step record word in the
// history buffer (bit 31: searched; bit 30: injection refused for lack of room; low bits: L).
//
// The injection rule (what is injected for a hit, and whether it fits) is written once on the host
// (injectionIds, injectionFits: used by this hook, the two-pass baseline and the task runner);
// the WGSL RESOLVE/PLAN stages are its GPU form, checked against it by the tests.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { expectDType, Params } from "../ops/common.js";
import type { DecodeHook, DecodeStep, HookOutcome } from "../model/hooks.js";
import type { FinishReason, GeneratedToken, GenerateOptions, Session } from "../model/session.js";
import type { DocumentIndex } from "./index.js";

/**
 * OneGen retrieval inside the decode loop. When the token fed at a step is `queryTokenId`, the
 * same submit takes its final-norm hidden state, searches `index` (top-k cosine) and, with
 * `inject`, prefills the best entry's document wrapped in prefix/suffix ids on top of the cache,
 * continuing from the last injected token's logits. No host readback happens in between; the
 * host learns the hits from the small readback that follows. An injection that does not fit in
 * the context is refused on the GPU and ends generation with "context-full".
 */
export interface InLoopRetrieval {
  index: DocumentIndex;
  queryTokenId: number;
  /** Hits reported per retrieval (default 1). */
  k?: number;
  /** At most this many retrievals per generate() call (default unlimited). */
  maxRetrievals?: number;
  inject?: { prefix: readonly number[]; suffix: readonly number[]; maxDocTokens?: number } | null;
}

export interface RetrievalHit {
  /** Document id. */
  id: string;
  fragment: number;
  score: number;
  /** Index entry number. */
  entry: number;
}

/** A generated token with what its retrieval found. */
export interface RetrievalToken extends GeneratedToken {
  /** This token was a query token: what its hidden state retrieved (best first). */
  retrieval?: { position: number; hits: RetrievalHit[] };
}

export interface RetrievalGenerateOptions extends GenerateOptions {
  /** OneGen in-loop retrieval (see InLoopRetrieval); absent or an empty index: plain decoding. */
  retrieval?: InLoopRetrieval;
}

/** The ids injected for a hit on document `doc`: prefix + document tokens (clipped) + suffix. */
export function injectionIds(index: DocumentIndex, doc: number | string, inject: NonNullable<InLoopRetrieval["inject"]>): number[] {
  const toks = index.documentTokens(doc);
  const n = inject.maxDocTokens === undefined ? toks.length : Math.min(toks.length, inject.maxDocTokens);
  return [...inject.prefix, ...Array.from(toks.subarray(0, n)), ...inject.suffix];
}

/**
 * Whether an injection of `length` ids after a query token at `position` fits a session of
 * `capacity` (the injected ids and one more token must fit, L > 0).
 */
export function injectionFits(position: number, length: number, capacity: number): boolean {
  return length > 0 && position + length + 1 <= capacity;
}

/**
 * Session.generate with OneGen in-loop retrieval: the retrieval hook (RetrievalHook) appended to
 * `opts.hooks`. Yields GeneratedTokens with `retrieval` and `injected` filled in.
 */
export function generateOnePass(session: Session, opts: RetrievalGenerateOptions): AsyncGenerator<RetrievalToken, FinishReason> {
  const { retrieval, ...rest } = opts;
  if (!retrieval || retrieval.index.count === 0) return session.generate(rest);
  return session.generate({ ...rest, hooks: [...(opts.hooks ?? []), new RetrievalHook(session, retrieval)] });
}

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
  if (l > p.lMax || !injectionFits(position, l, p.capacity)) return RECORD_OVERFLOW;
  Object.assign(st, { offset, count, length: l });
  return l;
}

/** The injected ids (first L rows of the plan). */
export function planReference(st: HostLoopState, docTokens: ArrayLike<number>, prefix: readonly number[], suffix: readonly number[]): number[] {
  if (st.length === 0) return [];
  return [...prefix, ...Array.from({ length: st.count }, (_, i) => docTokens[st.offset + i]!), ...suffix];
}

/**
 * COMMIT: the L = st.length planned ids written into `context` after the query token at
 * `position` (rows at or past capacity dropped), the position moved to the last injected token
 * and the decode range to [start, position + L + 1); nothing changes when L = 0.
 */
export function commitReference(
  st: HostLoopState,
  planIds: ArrayLike<number>,
  position: number,
  ranges: readonly [number, number],
  context: number[] | Uint32Array,
  p: Pick<LoopParams, "capacity" | "window">,
): { position: number; ranges: [number, number] } {
  if (st.length === 0) return { position, ranges: [ranges[0], ranges[1]] };
  for (let i = 0; i < st.length; i++) if (position + 1 + i < p.capacity) context[position + 1 + i] = planIds[i]!;
  const end = position + st.length + 1;
  return { position: end - 1, ranges: [p.window > 0 && end > p.window ? end - p.window : 0, end] };
}

// ------------------------------------------------------------------ the decode hook

/** Per-generate() GPU state of OneGen in-loop retrieval (see InLoopRetrieval), as a decode hook. */
export class RetrievalHook implements DecodeHook {
  readonly recordWords = 1;
  readonly needsHidden = true;
  readonly maxInjectRows: number;
  private readonly injecting: boolean;
  private readonly k: number;
  private readonly params: LoopParams;
  private readonly lMax: number;
  // GPU state, allocated by begin() for the steps of one generate() call
  private st!: LoopState;
  private hitIds!: Tensor;
  private hitScores!: Tensor;
  private ringIds!: Tensor;
  private ringScores!: Tensor;
  private readonly inject: NonNullable<InLoopRetrieval["inject"]>;
  private retrievals = 0;
  private live = false;
  private searchDispatches = 1024;

  constructor(
    private readonly session: Session,
    private readonly spec: InLoopRetrieval,
  ) {
    const index = spec.index;
    this.k = Math.max(1, spec.k ?? 1);
    this.injecting = !!spec.inject;
    const longestDoc = index.documents.reduce((m, d) => Math.max(m, index.documentTokens(d.id).length), 0);
    const maxDocTokens = Math.min(spec.inject?.maxDocTokens ?? longestDoc, longestDoc);
    this.inject = { prefix: spec.inject?.prefix ?? [], suffix: spec.inject?.suffix ?? [], maxDocTokens };
    const { prefix, suffix } = this.inject;
    const lMax = this.injecting ? Math.max(1, prefix.length + maxDocTokens + suffix.length) : 1;
    this.maxInjectRows = this.injecting ? lMax : 0;
    this.params = {
      queryId: spec.queryTokenId,
      maxRetrievals: Math.min(spec.maxRetrievals ?? 0xffffffff, 0xffffffff),
      nPrefix: prefix.length,
      nSuffix: suffix.length,
      lMax,
      capacity: session.capacity,
      window: session.window,
      slot: 0,
      maxDocTokens,
    };
    this.lMax = lMax;
  }

  begin(steps: number): void {
    if (this.live) throw new Error("RetrievalHook: begin() twice (one hook per generate() call)");
    const ctx = this.session.ctx;
    const { prefix, suffix } = this.inject;
    const lMax = this.lMax;
    this.retrievals = 0;
    this.searchDispatches = 1024;
    this.live = true;
    this.st = {
      state: ctx.upload(new Uint32Array(8), [8], "u32", "onegen.state"),
      searchFlag: ctx.upload(Uint32Array.of(0), [1], "u32", "onegen.search_flag"),
      injectFlag: ctx.upload(Uint32Array.of(0), [1], "u32", "onegen.inject_flag"),
      planIds: ctx.empty([lMax], "u32", "onegen.plan_ids"),
      planPos: ctx.empty([lMax], "u32", "onegen.plan_pos"),
      planRanges: ctx.empty([lMax, 2], "u32", "onegen.plan_ranges"),
      lastRow: ctx.empty([1], "u32", "onegen.last_row"),
      wrap: ctx.upload(Uint32Array.from([...prefix, ...suffix, 0]), [prefix.length + suffix.length + 1], "u32", "onegen.wrap"),
    };
    this.hitIds = ctx.empty([1, this.k], "u32", "onegen.hits");
    this.hitScores = ctx.empty([1, this.k], "f32", "onegen.scores");
    const slots = Math.max(1, steps);
    this.ringIds = ctx.empty([slots, this.k], "u32", "onegen.hit_ring");
    this.ringScores = ctx.empty([slots, this.k], "f32", "onegen.score_ring");
  }

  injectionsLeft(): number {
    return Math.max(0, this.params.maxRetrievals - this.retrievals);
  }

  private p(step: DecodeStep): LoopParams {
    return { ...this.params, slot: step.recordWord };
  }

  async beforeForward(step: DecodeStep): Promise<void> {
    await detect(step.ctx, step.token, this.st, step.history, this.p(step));
  }

  /** After the token's forward: gated search over its hidden state, then the gated injection. */
  async afterForward(step: DecodeStep, hidden: Tensor | null): Promise<void> {
    const ctx = step.ctx;
    const index = this.spec.index;
    const j = step.j;
    // the gate's argument block is sized by the search's dispatches (learned at the first step)
    await ctx.beginGate(this.st.searchFlag, "onegen.search", this.searchDispatches);
    await index.searchGpu(hidden!, this.k, { outIds: this.hitIds, outScores: this.hitScores });
    this.searchDispatches = Math.max(1, ctx.endGate());
    ctx.copy(this.hitIds.buffer, 0, this.ringIds.buffer, 4 * this.k * j, 4 * this.k);
    ctx.copy(this.hitScores.buffer, 0, this.ringScores.buffer, 4 * this.k * j, 4 * this.k);
    if (!this.injecting) return;
    const p = this.p(step);
    await resolve(ctx, this.st, this.hitIds, index.entryTable, index.documentTable, step.position, step.history, p);
    await plan(ctx, this.st, index.tokens, step.position, p);
    await commit(ctx, this.st, step.position, step.ranges, step.context, p);
    await step.inject({ flag: this.st.injectFlag, ids: this.st.planIds, positions: this.st.planPos, ranges: this.st.planRanges, lastRow: this.st.lastRow, maxRows: this.maxInjectRows });
  }

  async onToken(tok: RetrievalToken, record: number, j: number): Promise<HookOutcome | void> {
    if (!(record & RECORD_SEARCHED)) return;
    this.retrievals++;
    const hits = await this.readHits(j);
    tok.retrieval = { position: tok.position, hits };
    if (record & RECORD_OVERFLOW) {
      tok.injected = { refused: true };
      return { stop: "context-full" };
    }
    const length = record & RECORD_LENGTH_MASK;
    if (length === 0 || hits.length === 0) return;
    const ids = injectionIds(this.spec.index, this.spec.index.entry(hits[0]!.entry).document, this.inject);
    if (ids.length !== length) throw new Error(`in-loop injection: GPU injected ${length} tokens, the host expects ${ids.length}`);
    tok.injected = { ids, document: hits[0]!.id, start: tok.position + 1 };
    return { injectedIds: ids };
  }

  private async readHits(j: number): Promise<RetrievalHit[]> {
    const ctx = this.session.ctx;
    const ids = new Uint32Array((await ctx.readBytes(this.ringIds.buffer, 4 * this.k * j, 4 * this.k)).buffer);
    const scores = new Float32Array((await ctx.readBytes(this.ringScores.buffer, 4 * this.k * j, 4 * this.k)).buffer);
    const hits: RetrievalHit[] = [];
    for (let i = 0; i < this.k; i++) {
      const e = ids[i]!;
      if (e === 0xffffffff) break;
      const { id, fragment } = this.spec.index.entry(e);
      hits.push({ id, fragment, score: scores[i]!, entry: e });
    }
    return hits;
  }

  end(): void {
    if (!this.live) return;
    this.live = false;
    for (const t of Object.values(this.st)) t.dispose();
    for (const t of [this.hitIds, this.hitScores, this.ringIds, this.ringScores]) t.dispose();
  }
}
