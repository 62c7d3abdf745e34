// A generation session: one sequence on one KV cache. The host mirrors the ids in the cache
// (`ids`) and its length; the GPU holds everything else.
//
// append(ids): a prefill of new ids on top of the cache (the prompt, or injected text mid-run).
// generate(): the decode loop. Per step, all on the GPU and encoded without host writes:
//   logits processors → sample into `token` → history[j] = token → advance position/ranges/context
//   → forward(token) → logits for the next step; decode hooks (hooks.ts) add their work before and
//   after that forward (none: exactly this).
// The host reads back only the sampled ids, `readEvery` steps at a time (4 bytes per step), to
// stream tokens and check EOS / stop strings. Steps past a stop within the last batch are wasted
// work and are cut from the session (truncate), never returned. The id NONFINITE_ID (the step's
// logits held NaN/+inf) ends generation with a NonFiniteError naming the position.

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { NonFiniteError, ShapeError, UsageError } from "../errors.js";
import { Decoder, type ForwardOutputs, type KVCache } from "./decoder.js";
import { advancePosition, copyInput, copyInputTable, forceAfter, type CopyInputRule } from "../ops/decode_state.js";
import { sample, maskLogits, NONFINITE_ID } from "../ops/sample.js";
import type { DecodeHook, DecodeStep, Injected, InjectionRows } from "./hooks.js";

export interface SamplingOptions {
  /** 0 = greedy (argmax, lowest id on ties). */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Stop after any of these ids (the id is returned and stays in the cache). */
  eosIds?: readonly number[];
  /** Stop when the decoded text of the generated ids contains one of these (needs `decode`). */
  stopStrings?: readonly string[];
  /** Ids that are never sampled. */
  bannedIds?: readonly number[];
  /** Logits processors: after the context ends with `pattern`, the next id is `token`. */
  forceAfter?: readonly { pattern: readonly number[]; token: number }[];
  /** Constrained decoding: the generated ids must spell these source ids with mention markup (see CopyInputRule). */
  copyInput?: CopyInputRule;
  /** Cache row where the constrained output begins (default: the first id this call generates). */
  copyInputFrom?: number;
  /** Decode steps encoded per submit and per readback (default 4). */
  stepsPerRead?: number;
  /** Turns ids into text for stop strings and streamed text. */
  decode?: (ids: number[]) => string;
  /**
   * Decode hooks (see hooks.ts), called in order at fixed points of every step; OneGen's in-loop
   * retrieval is one (src/onegen/loop.ts). None: the step is plain decoding.
   */
  hooks?: readonly DecodeHook[];
}

export interface GeneratedToken {
  id: number;
  /** Cache position of this token. */
  position: number;
  /** Text of all generated ids so far (when `decode` is given). */
  text?: string;
  /** Ids a hook injected after this token (e.g. a retrieved document), or refused for lack of room. */
  injected?: Injected;
}

export type FinishReason = "eos" | "stop-string" | "max-tokens" | "context-full";

export interface AppendOptions {
  /** Logits to compute: "last" (kept for the next generate step), "all" rows, or "none". */
  logits?: "last" | "all" | "none";
  keepHidden?: boolean;
}

export class Session {
  /** Ids in the cache, in order (host mirror). */
  readonly ids: number[] = [];
  finishReason: FinishReason | null = null;
  readonly timings = { prefillTokens: 0, prefillMs: 0, decodeTokens: 0, decodeMs: 0 };
  private lastLogits: Tensor;
  private hasLogits = false;
  /** How many of `ids` have their k/v in the cache (all, or all but the last sampled one). */
  private fed = 0;
  // GPU decode state (u32): current token, its position, the attention range, all context ids.
  private readonly token: Tensor;
  private readonly position: Tensor;
  private readonly ranges: Tensor;
  private readonly context: Tensor;

  constructor(
    readonly decoder: Decoder,
    readonly cache: KVCache,
  ) {
    const ctx = decoder.ctx;
    this.lastLogits = ctx.empty([1, decoder.vocabSize], "f32", "session.logits");
    this.token = ctx.empty([1], "u32", "session.token");
    this.position = ctx.empty([1], "u32", "session.position");
    this.ranges = ctx.empty([1, 2], "u32", "session.ranges");
    this.context = ctx.empty([cache.capacity], "u32", "session.context");
  }

  static create(decoder: Decoder, capacity: number): Session {
    return new Session(decoder, decoder.createCache(capacity));
  }

  /** GPU decode state (decode hooks see it through DecodeStep). */
  get tokenTensor(): Tensor {
    return this.token;
  }
  get positionTensor(): Tensor {
    return this.position;
  }
  get rangesTensor(): Tensor {
    return this.ranges;
  }
  get contextTensor(): Tensor {
    return this.context;
  }
  get logitsTensor(): Tensor {
    return this.lastLogits;
  }

  /** Sliding-window span (Mistral-style), 0 = full causal attention. */
  get window(): number {
    return this.decoder.config.slidingWindow ?? 0;
  }

  get ctx(): GpuContext {
    return this.decoder.ctx;
  }
  get length(): number {
    return this.ids.length;
  }
  get capacity(): number {
    return this.cache.capacity;
  }

  /**
   * Prefill `ids` on top of the cache (after any id already in the session but not yet in the
   * cache: the last token a generate() call sampled). Returns the requested outputs for the
   * tokens fed by this call (caller disposes them).
   */
  async append(ids: readonly number[], opts: AppendOptions = {}): Promise<ForwardOutputs> {
    const ctx = this.ctx;
    const V = this.decoder.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError(`token id ${id} is out of the vocabulary (0..${V - 1})`);
    }
    const p = this.fed;
    const feed = [...this.ids.slice(p), ...ids];
    const T = feed.length;
    if (T === 0) throw new UsageError("append: no ids given");
    if (p + T > this.capacity) {
      throw new UsageError(`${ids.length} tokens at position ${this.length} exceed the context of ${this.capacity} tokens`, "use a larger context or a shorter input");
    }
    const t0 = performance.now();
    const idsT = ctx.upload(Uint32Array.from(feed), [T], "u32", "append.ids");
    const pos = ctx.upload(Uint32Array.from({ length: T }, (_, i) => p + i), [T], "u32", "append.positions");
    const ranges = ctx.upload(causalRangesFor(p, T, this.window), [T, 2], "u32", "append.ranges");
    ctx.write(this.context, Uint32Array.from(feed), p);
    const want = opts.logits ?? "last";
    let rows: Tensor | "all" | "none" = want === "all" ? "all" : "none";
    let lastRow: Tensor | null = null;
    if (want === "last") rows = lastRow = ctx.upload(Uint32Array.of(T - 1), [1], "u32", "append.lastRow");
    const out = await this.decoder.forward(this.cache, { ids: idsT, ropePositions: pos, cacheRows: pos, ranges }, {
      logitsRows: rows,
      keepHidden: opts.keepHidden ?? false,
      logitsOut: want === "last" ? this.lastLogits : undefined,
    });
    idsT.dispose();
    pos.dispose();
    ranges.dispose();
    lastRow?.dispose();
    this.ids.push(...ids);
    this.fed = this.ids.length;
    ctx.submit();
    this.hasLogits = want === "last";
    this.timings.prefillTokens += T;
    this.timings.prefillMs += performance.now() - t0; // encode time; completion is awaited by the first read
    return want === "last" ? { hidden: out.hidden, logits: null } : out;
  }

  /** Drops cache entries from position `n` on (the next append or generate continues from n). */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.length) throw new UsageError(`truncate(${n}): the session holds ${this.length} tokens`);
    this.ids.length = n;
    this.fed = Math.min(this.fed, n);
    this.hasLogits = false;
  }

  /** The logits that the next generated token is sampled from ([1, V]); valid after append(). */
  get nextLogits(): Tensor {
    if (!this.hasLogits) throw new UsageError("no logits for the next token: append() ids first");
    return this.lastLogits;
  }

  /** Streams generated tokens; see the file header for what runs where. */
  async *generate(opts: GenerateOptions): AsyncGenerator<GeneratedToken, FinishReason> {
    const ctx = this.ctx;
    if (!this.hasLogits) {
      if (this.length === 0) throw new UsageError("generate: the session is empty; append a prompt first");
      // The next token's logits are those of the last id: (re)feed it.
      this.fed = Math.min(this.fed, this.length - 1);
      await this.append([]);
    }
    const maxNew = opts.maxNewTokens;
    if (!Number.isInteger(maxNew) || maxNew < 0) throw new UsageError(`maxNewTokens must be a non-negative integer, got ${maxNew}`);
    const temperature = opts.temperature ?? 0;
    const seed = opts.seed ?? 0;
    const stepsPerRead = Math.max(1, opts.stepsPerRead ?? 4);
    const eos = new Set(opts.eosIds ?? []);
    const stops = opts.stopStrings ?? [];
    if (stops.length && !opts.decode) throw new UsageError("stop strings need a tokenizer (decode)");

    const V = this.decoder.vocabSize;
    const banned = opts.bannedIds?.length ? ctx.upload(Uint32Array.from(opts.bannedIds), [opts.bannedIds.length], "u32", "generate.banned") : null;
    const forced = (opts.forceAfter ?? []).map((f) => {
      if (f.token < 0 || f.token >= V) throw new UsageError(`forced token ${f.token} is out of the vocabulary`);
      return { pattern: ctx.upload(Uint32Array.from(f.pattern), [f.pattern.length], "u32", "generate.pattern"), token: f.token };
    });
    const copyRule = opts.copyInput ?? null;
    const copyFrom = opts.copyInputFrom ?? this.length;
    if (copyRule && (!Number.isInteger(copyFrom) || copyFrom < 0 || copyFrom > this.length)) throw new UsageError(`copyInputFrom ${copyFrom} must lie in [0, ${this.length}] (the cache holds ${this.length} ids)`);
    const copyIds = copyRule ? copyInputTable(copyRule, V) : null;
    const copyTable = copyIds ? ctx.upload(copyIds, [copyIds.length], "u32", "generate.copy") : null;
    // Every step puts at least one token into the cache (an injection more), so the free rows bound
    // the steps: buffers are sized by them, never by a caller's maxNewTokens alone.
    const steps = Math.min(maxNew, this.capacity - this.length);
    const hooks = opts.hooks ?? [];
    const injecting = hooks.some((h) => h.maxInjectRows > 0);
    const keepHidden = hooks.some((h) => h.needsHidden);
    // history[stride·j] = id sampled at step j, then one record word per hook that keeps one
    const recordAt: number[] = [];
    let stride = 1;
    for (const h of hooks) recordAt.push(h.recordWords ? stride++ : -1);
    const history = ctx.empty([stride * Math.max(1, steps)], "u32", "generate.history");
    if (stride > 1) ctx.clear(history);
    // GPU decode state: the last fed token sits at position length-1.
    ctx.write(this.position, Uint32Array.of(this.length - 1));
    ctx.write(this.ranges, causalRangesFor(this.length - 1, 1, this.window));
    const inject = (rows: InjectionRows) => this.injectRows(rows);

    const startLength = this.length;
    const generated: number[] = [];
    let finish: FinishReason = steps < maxNew ? "context-full" : "max-tokens";
    const t0 = performance.now();
    let encoded = 0;
    let fedDuringGenerate = 0;
    try {
      for (const h of hooks) await h.begin?.(steps);
      while (encoded < steps) {
        const room = this.capacity - this.length;
        if (room <= 0) {
          finish = "context-full";
          break;
        }
        // With injection the host cannot know positions inside a batch: when a full batch with an
        // injection at every remaining chance might not fit, go step by step.
        let worst = stepsPerRead;
        for (const h of hooks) if (h.maxInjectRows > 0) worst += Math.min(stepsPerRead, h.injectionsLeft?.() ?? stepsPerRead) * h.maxInjectRows;
        const batch = Math.min(stepsPerRead, steps - encoded, injecting ? (room >= worst ? stepsPerRead : 1) : room);
        for (let b = 0; b < batch; b++) {
          const j = encoded + b;
          if (banned) await maskLogits(ctx, this.lastLogits, banned);
          if (copyTable) await copyInput(ctx, this.context, copyTable, this.position, this.lastLogits, copyFrom, copyRule!);
          for (const f of forced) await forceAfter(ctx, this.context, f.pattern, this.lastLogits, this.position, f.token);
          await sample(ctx, this.lastLogits, this.token, { temperature, topK: opts.topK, topP: opts.topP, seed, step: j });
          ctx.copy(this.token.buffer, 0, history.buffer, 4 * stride * j, 4);
          await advancePosition(ctx, this.token, this.position, this.ranges, this.context, this.window);
          if (hooks.length || j + 1 < steps) {
            // feed the sampled token: its logits are the next step's (and its hidden state a hook's)
            const step = (i: number): DecodeStep => ({
              ctx, j, token: this.token, position: this.position, ranges: this.ranges, context: this.context,
              logits: this.lastLogits, history, recordWord: recordAt[i]! >= 0 ? stride * j + recordAt[i]! : -1, inject,
            });
            for (const [i, h] of hooks.entries()) await h.beforeForward?.(step(i));
            const out = await this.decoder.forward(this.cache, { ids: this.token, ropePositions: this.position, cacheRows: this.position, ranges: this.ranges }, {
              logitsRows: "all",
              logitsOut: this.lastLogits,
              keepHidden,
            });
            for (const [i, h] of hooks.entries()) await h.afterForward?.(step(i), out.hidden);
            out.hidden?.dispose();
          }
          ctx.submit();
        }
        const bytes = await ctx.readBytes(history.buffer, 4 * stride * encoded, 4 * stride * batch);
        const got = new Uint32Array(bytes.buffer, bytes.byteOffset, stride * batch);
        let stop: FinishReason | null = null;
        for (let b = 0; b < batch; b++) {
          const j = encoded + b;
          const id = got[stride * b]!;
          if (id === NONFINITE_ID) {
            throw new NonFiniteError(
              `the logits for position ${this.ids.length} hold NaN or infinity (the model's activations overflowed); stopped after ${generated.length} generated token(s)`,
            );
          }
          generated.push(id);
          this.ids.push(id);
          if (hooks.length || j + 1 < steps) fedDuringGenerate++;
          const tok: GeneratedToken = { id, position: this.ids.length - 1 };
          for (const [i, h] of hooks.entries()) {
            const r = await h.onToken?.(tok, recordAt[i]! >= 0 ? got[stride * b + recordAt[i]!]! : 0, j);
            if (!r) continue;
            if (r.injectedIds?.length) {
              this.ids.push(...r.injectedIds);
              fedDuringGenerate += r.injectedIds.length;
            }
            if (r.stop) stop = r.stop;
          }
          if (opts.decode) tok.text = opts.decode(generated);
          yield tok;
          if (stop) break;
          if (eos.has(id)) stop = "eos";
          else if (tok.text !== undefined && stops.some((s) => tok.text!.includes(s))) stop = "stop-string";
          if (stop) break;
        }
        encoded += batch;
        if (stop) {
          finish = stop;
          break;
        }
      }
    } finally {
      history.dispose();
      banned?.dispose();
      copyTable?.dispose();
      for (const f of forced) f.pattern.dispose();
      for (const h of hooks) h.end?.();
      this.timings.decodeTokens += generated.length;
      this.timings.decodeMs += performance.now() - t0;
      // Steps past a stop (or an error, or the caller leaving early) are dropped: the cache keeps
      // only what `ids` holds.
      this.fed = Math.min(startLength + fedDuringGenerate, this.length);
      // lastLogits belong to the last fed token only when nothing after it was encoded.
      this.hasLogits = false;
    }
    this.finishReason = finish;
    return finish;
  }

  /** A hook's gated injection (DecodeStep.inject): forward of the planned rows on top of the cache. */
  private async injectRows(rows: InjectionRows): Promise<void> {
    const ctx = this.ctx;
    const T = rows.ids.shape[0]!;
    if (T > rows.maxRows) throw new UsageError(`injection: ${T} planned rows, more than maxRows ${rows.maxRows}`);
    // The gate's argument block is sized by the dispatches this forward encoded last time (the same
    // shapes encode the same dispatches), so a step where the flag is off writes ~70 words, not 4096.
    await ctx.beginGate(rows.flag, "decode.inject", this.injectDispatches.get(T) ?? 4096);
    let ok = false;
    try {
      await this.decoder.forward(this.cache, { ids: rows.ids, ropePositions: rows.positions, cacheRows: rows.positions, ranges: rows.ranges }, {
        logitsRows: rows.lastRow,
        logitsOut: this.lastLogits,
      });
      ok = true;
    } finally {
      const n = ctx.endGate();
      if (ok) this.injectDispatches.set(T, Math.max(1, n));
    }
  }
  /** Dispatches of an injection forward of T rows (learned from its first encoding). */
  private readonly injectDispatches = new Map<number, number>();

  dispose(): void {
    this.cache.dispose();
    for (const t of [this.lastLogits, this.token, this.position, this.ranges, this.context]) t.dispose();
  }
}

/** Greedy/sampled generation convenience: append the prompt, collect up to maxNewTokens. */
export async function generateIds(session: Session, prompt: readonly number[], opts: GenerateOptions): Promise<{ ids: number[]; finish: FinishReason }> {
  if (prompt.length) await session.append(prompt);
  const ids: number[] = [];
  const it = session.generate(opts);
  for (;;) {
    const r = await it.next();
    if (r.done) return { ids, finish: r.value };
    ids.push(r.value.id);
  }
}

export function checkPromptFits(promptLength: number, capacity: number): void {
  if (promptLength > capacity) throw new ShapeError(`the prompt has ${promptLength} tokens, more than the context of ${capacity}`);
}

/** Attention ranges [T, 2] for T tokens at positions p.. of one sequence: [max(0, q+1-window), q+1). */
export function causalRangesFor(p: number, T: number, window = 0): Uint32Array {
  const r = new Uint32Array(2 * T);
  for (let t = 0; t < T; t++) {
    const end = p + t + 1;
    r[2 * t] = window > 0 && end > window ? end - window : 0;
    r[2 * t + 1] = end;
  }
  return r;
}
