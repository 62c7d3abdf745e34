// OneGen in-loop retrieval: a decode hook (src/model/hooks.ts) for Session.generate, the launchers
// for kernels/onegen_loop.wgsl, and their CPU references. The hook encodes once, into the captured
// decode step, work that runs at every step:
//   beforeForward: DETECT (was the id fed at this step the query token? record word ← SEARCHED)
//   [the session's forward of the step's rows, final-norm hidden state of the last row kept]
//   afterForward:  top-k search (every dispatch returns at once unless the search flag is set) →
//                  RECORD (hits into the step's history words) → RESOLVE (plan the injection: its ids into
//                  the session's plan buffer, L into the step state).
// The next step's advance feeds the planned rows instead of a sampled token: the injection is a
// forward of exactly L rows through the same dispatches as any step (their kernels read the row
// count on the GPU), and its last row's logits continue the decode.
// Everything stays on the GPU; the host learns what happened from the hook's per-step record words
// in the history buffer, read back with the ids (word 0 — bit 31: searched; bit 30: injection
// refused for lack of room; low bits: L — then the k hit entries and the k scores' bits).
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
/** Words of the loop state before the wrap ids (see kernels/onegen_loop.wgsl). */
const STATE_WRAP = 8;

export interface LoopParams {
  queryId: number;
  maxRetrievals: number;
  nPrefix: number;
  nSuffix: number;
  lMax: number;
  capacity: number;
  /** History words per step, and this hook's word within a step's record. */
  stride: number;
  record: number;
  maxDocTokens: number;
  k: number;
}

function stage(name: "DETECT" | "RECORD" | "RESOLVE", bindings: KernelVariant["bindings"]): KernelVariant {
  return {
    file: "onegen_loop",
    name: `onegen_${name.toLowerCase()}`,
    defines: { DETECT: name === "DETECT", RECORD: name === "RECORD", RESOLVE: name === "RESOLVE", WG: LOOP_WG },
    bindings,
  };
}
const DETECT = stage("DETECT", ["read", "read_write", "read_write", "uniform"]);
const RECORD = stage("RECORD", ["read", "read", "read", "read", "read_write", "uniform"]);
const RESOLVE = stage("RESOLVE", ["read", "read", "read", "read", "read_write", "read_write", "read_write", "read_write", "uniform"]);

function params(p: LoopParams): Uint8Array {
  return new Params()
    .u32(p.queryId).u32(p.maxRetrievals).u32(p.nPrefix).u32(p.nSuffix)
    .u32(p.lMax).u32(p.capacity).u32(p.stride).u32(p.record)
    .u32(p.maxDocTokens).u32(p.k).u32(0).u32(0)
    .bytes();
}

/** The loop's GPU state: [0] search flag, [1] searches so far, [8..) prefix ids then suffix ids. */
export function loopStateWords(prefix: readonly number[], suffix: readonly number[]): Uint32Array {
  const s = new Uint32Array(STATE_WRAP + prefix.length + suffix.length);
  s.set(prefix, STATE_WRAP);
  s.set(suffix, STATE_WRAP + prefix.length);
  return s;
}

export async function detect(ctx: GpuContext, step: Tensor, state: Tensor, history: Tensor, p: LoopParams): Promise<void> {
  expectDType(step, ["u32"], "onegen detect", "step");
  ctx.dispatch(await ctx.kernels.get(DETECT), [step, state, history], params(p), [1]);
}

export async function record(ctx: GpuContext, state: Tensor, hits: Tensor, scores: Tensor, step: Tensor, history: Tensor, p: LoopParams): Promise<void> {
  ctx.dispatch(await ctx.kernels.get(RECORD), [state, hits, scores, step, history], params(p), [1]);
}

export async function resolve(
  ctx: GpuContext,
  hits: Tensor,
  entryTable: Tensor,
  documentTable: Tensor,
  docTokens: Tensor,
  step: Tensor,
  state: Tensor,
  history: Tensor,
  plan: Tensor,
  p: LoopParams,
): Promise<void> {
  ctx.dispatch(await ctx.kernels.get(RESOLVE), [hits, entryTable, documentTable, docTokens, step, state, history, plan], params(p), [1]);
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

const NO_HIT = 0xffffffff;

/**
 * RECORD: the words a step that searched gets after its record word (offsets record + 1 ..): the k
 * hit entries, then the k scores as f32 bits. A step that did not search gets none (its words stay
 * as they were).
 */
export function recordReference(search: boolean, hits: ArrayLike<number>, scores: ArrayLike<number>, k: number): Uint32Array | null {
  if (!search) return null;
  const w = new Uint32Array(2 * k);
  w.set(Array.from({ length: k }, (_, i) => hits[i]!), 0);
  new Float32Array(w.buffer, 4 * k, k).set(Array.from({ length: k }, (_, i) => scores[i]!));
  return w;
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

/** The injected ids (the plan's first L rows). */
export function planReference(st: HostLoopState, docTokens: ArrayLike<number>, prefix: readonly number[], suffix: readonly number[]): number[] {
  if (st.length === 0) return [];
  return [...prefix, ...Array.from({ length: st.count }, (_, i) => docTokens[st.offset + i]!), ...suffix];
}

// ------------------------------------------------------------------ the decode hook

/** Per-generate() GPU state of OneGen in-loop retrieval (see InLoopRetrieval), as a decode hook. */
export class RetrievalHook implements DecodeHook {
  /** The record word, then the k hit entries and the k scores' bits (recordReference). */
  readonly recordWords: number;
  readonly needsHidden = true;
  readonly maxInjectRows: number;
  private readonly injecting: boolean;
  private readonly k: number;
  private readonly lMax: number;
  private readonly maxDocTokens: number;
  // GPU state, allocated by begin() for the steps of one generate() call
  private state!: Tensor;
  private hitIds!: Tensor;
  private hitScores!: Tensor;
  private readonly inject: NonNullable<InLoopRetrieval["inject"]>;
  private live = false;

  constructor(
    private readonly session: Session,
    private readonly spec: InLoopRetrieval,
  ) {
    const index = spec.index;
    this.k = Math.max(1, spec.k ?? 1);
    this.recordWords = 1 + 2 * this.k;
    this.injecting = !!spec.inject;
    const longestDoc = index.documents.reduce((m, d) => Math.max(m, index.documentTokens(d.id).length), 0);
    this.maxDocTokens = Math.min(spec.inject?.maxDocTokens ?? longestDoc, longestDoc);
    this.inject = { prefix: spec.inject?.prefix ?? [], suffix: spec.inject?.suffix ?? [], maxDocTokens: this.maxDocTokens };
    const { prefix, suffix } = this.inject;
    this.lMax = this.injecting ? Math.max(1, prefix.length + this.maxDocTokens + suffix.length) : 1;
    this.maxInjectRows = this.injecting ? this.lMax : 0;
  }

  private params(step: DecodeStep): LoopParams {
    const { prefix, suffix } = this.inject;
    return {
      queryId: this.spec.queryTokenId,
      maxRetrievals: Math.min(this.spec.maxRetrievals ?? 0xffffffff, 0xffffffff),
      nPrefix: prefix.length,
      nSuffix: suffix.length,
      lMax: this.lMax,
      capacity: step.capacity,
      stride: step.stride,
      record: step.recordOffset,
      maxDocTokens: this.maxDocTokens,
      k: this.k,
    };
  }

  async begin(steps: number): Promise<void> {
    if (this.live) throw new Error("RetrievalHook: begin() twice (one hook per generate() call)");
    // the search's own preparation (a layout copy of the index) must not land in the captured step
    await this.spec.index.prepareSearchGpu();
    const ctx = this.session.ctx;
    this.live = true;
    const words = loopStateWords(this.inject.prefix, this.inject.suffix);
    this.state = ctx.upload(words, [words.length], "u32", "onegen.state");
    this.hitIds = ctx.empty([1, this.k], "u32", "onegen.hits");
    this.hitScores = ctx.empty([1, this.k], "f32", "onegen.scores");
  }

  async beforeForward(step: DecodeStep): Promise<void> {
    await detect(step.ctx, step.step, this.state, step.history, this.params(step));
  }

  /** After the forward: the search (its dispatches return at once unless a query token was fed), its hits recorded, the injection planned. */
  async afterForward(step: DecodeStep, hidden: Tensor | null): Promise<void> {
    const ctx = step.ctx;
    const index = this.spec.index;
    const p = this.params(step);
    await index.searchGpu(hidden!, this.k, { outIds: this.hitIds, outScores: this.hitScores, gate: this.state });
    await record(ctx, this.state, this.hitIds, this.hitScores, step.step, step.history, p);
    if (!this.injecting) return;
    if (step.plan.numel < this.lMax) throw new Error(`RetrievalHook: the session's plan buffer holds ${step.plan.numel} rows, the hook needs ${this.lMax}`);
    await resolve(ctx, this.hitIds, index.entryTable, index.documentTable, index.tokens, step.step, this.state, step.history, step.plan, p);
  }

  async onToken(tok: RetrievalToken, record: number, _j: number, words: Uint32Array): Promise<HookOutcome | void> {
    if (!(record & RECORD_SEARCHED)) return;
    const hits = this.hitsOf(words);
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

  /** The hits of a step that searched, from its record words (see recordReference). */
  private hitsOf(words: Uint32Array): RetrievalHit[] {
    if (words.length !== this.recordWords) throw new Error(`RetrievalHook: ${words.length} record words, expected ${this.recordWords}`);
    const bits = words.slice(1 + this.k, 1 + 2 * this.k);
    const scores = new Float32Array(bits.buffer, bits.byteOffset, this.k);
    const hits: RetrievalHit[] = [];
    for (let i = 0; i < this.k; i++) {
      const e = words[1 + i]!;
      if (e === NO_HIT) break;
      const { id, fragment } = this.spec.index.entry(e);
      hits.push({ id, fragment, score: scores[i]!, entry: e });
    }
    return hits;
  }

  end(): void {
    if (!this.live) return;
    this.live = false;
    for (const t of [this.state, this.hitIds, this.hitScores]) t.dispose();
  }
}
