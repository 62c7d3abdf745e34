// A generation session: one sequence on one KV cache. The host mirrors the ids in the cache
// (`ids`) and its length; the GPU holds everything else.
//
// append(ids): a prefill of new ids on top of the cache (the prompt, or injected text mid-run).
// generate(): the decode loop. The step (src/model/decode-step.ts: logits rules → sample →
//   advance → forward of the step's rows → logits for the next step; decode hooks, hooks.ts, add
//   their work before and after that forward) is built once per call and replayed per token, all
//   on the GPU with no host writes. A step either feeds the sampled token or, after a hook planned
//   an injection, the injected ids (that step yields no token).
// The host reads back only the history words, `stepsPerRead` steps at a time (4 bytes per step), to
// stream tokens and check EOS / stop strings. Steps past a stop within the last batch are wasted
// work and are cut from the session (truncate), never returned. While a readback is awaited the
// session encodes nothing: with `turn` (GenerateOptions) a caller that shares the device lets its
// other work encode then (onegen serve interleaves retrieval sessions with the batch this way).
// The id NONFINITE_ID (the step's logits held NaN/+inf) ends generation with a NonFiniteError
// naming the position.

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import { NonFiniteError, ShapeError, UsageError } from "../errors.js";
import { Decoder, type ForwardOutputs, type KVCache } from "./decoder.js";
import { copyInputTable, type CopyInputRule } from "../ops/decode_state.js";
import { NONFINITE_ID } from "../ops/sample.js";
import { INJECTED_ID, STEP_WORDS } from "../ops/step-state.js";
import type { DecodeHook, Injected } from "./hooks.js";
import { DecodeStepProgram } from "./decode-step.js";

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
  /**
   * Called with each readback the decode loop waits for (one per `stepsPerRead` steps); resolves
   * with its bytes once this session may encode again. A caller sharing the device with other
   * work (src/serve/engine.ts) lets that work encode meanwhile, so its steps and this session's
   * alternate; rejecting ends generate() as an error does (nothing of the group is kept).
   * Absent: the readback is awaited directly.
   */
  turn?: DeviceTurn;
}

/** See GenerateOptions.turn. */
export type DeviceTurn = (readback: Promise<Uint8Array>) => Promise<Uint8Array>;

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
  /**
   * Prefill and decode totals. decodeMs is wall time of generate() calls; encodeMs the host time
   * spent encoding and submitting replayed decode steps (`steps` of them) within it.
   */
  readonly timings = { prefillTokens: 0, prefillMs: 0, decodeTokens: 0, decodeMs: 0, encodeMs: 0, steps: 0 };
  private lastLogits: Tensor;
  private hasLogits = false;
  /** How many of `ids` have their k/v in the cache (all, or all but the last sampled one). */
  private fed = 0;
  // GPU decode state (u32): the step state (src/ops/step-state.ts), the sampled id, all context ids.
  private readonly step: Tensor;
  private readonly token: Tensor;
  private readonly context: Tensor;

  constructor(
    readonly decoder: Decoder,
    readonly cache: KVCache,
  ) {
    const ctx = decoder.ctx;
    this.lastLogits = ctx.empty([1, decoder.vocabSize], "f32", "session.logits");
    this.token = ctx.empty([1], "u32", "session.token");
    this.step = ctx.empty([STEP_WORDS], "u32", "session.step");
    this.context = ctx.empty([cache.capacity], "u32", "session.context");
  }

  static create(decoder: Decoder, capacity: number): Session {
    return new Session(decoder, decoder.createCache(capacity));
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
    const copyRule = opts.copyInput ?? null;
    const copyFrom = opts.copyInputFrom ?? this.length;
    if (copyRule && (!Number.isInteger(copyFrom) || copyFrom < 0 || copyFrom > this.length)) throw new UsageError(`copyInputFrom ${copyFrom} must lie in [0, ${this.length}] (the cache holds ${this.length} ids)`);
    for (const f of opts.forceAfter ?? []) if (f.token < 0 || f.token >= V) throw new UsageError(`forced token ${f.token} is out of the vocabulary`);
    const hooks = opts.hooks ?? [];
    const injecting = hooks.some((h) => h.maxInjectRows > 0);
    // Every step puts at least one row into the cache, so the free rows bound the steps (a step
    // that feeds an injection yields no token): buffers are sized by them, never by maxNewTokens alone.
    const room0 = this.capacity - this.length;
    const maxSteps = Math.min(room0, injecting ? 2 * maxNew : maxNew);
    if (maxNew === 0 || room0 <= 0) {
      this.finishReason = maxNew === 0 ? "max-tokens" : "context-full";
      return this.finishReason;
    }
    const banned = opts.bannedIds?.length ? ctx.upload(Uint32Array.from(opts.bannedIds), [opts.bannedIds.length], "u32", "generate.banned") : null;
    const forced = (opts.forceAfter ?? []).map((f) => ({ pattern: ctx.upload(Uint32Array.from(f.pattern), [f.pattern.length], "u32", "generate.pattern"), token: f.token }));
    const copyIds = copyRule ? copyInputTable(copyRule, V) : null;
    const copyTable = copyIds ? ctx.upload(copyIds, [copyIds.length], "u32", "generate.copy") : null;
    // history[stride·j] = id fed at step j (or INJECTED_ID), then each hook's recordWords words
    const recordAt: number[] = [];
    let stride = 1;
    for (const h of hooks) {
      if (!Number.isInteger(h.recordWords) || h.recordWords < 0) throw new Error(`decode hook: recordWords must be a non-negative integer, got ${h.recordWords}`);
      recordAt.push(h.recordWords ? stride : -1);
      stride += h.recordWords;
    }
    const history = ctx.empty([stride * maxSteps], "u32", "generate.history");
    if (stride > 1) ctx.clear(history);
    // GPU decode state: the last fed id sits at position length-1; no step has run.
    ctx.write(this.step, Uint32Array.of(this.length - 1, 1, 0, 0, 0, 0, 0, 0));

    const startLength = this.length;
    const generated: number[] = [];
    let finish: FinishReason = "max-tokens";
    const t0 = performance.now();
    let program: DecodeStepProgram | null = null;
    let encoded = 0; // steps encoded
    let fedRows = 0; // rows the encoded steps fed into the cache (known up to the last readback)
    let lastFedKnown = this.length - 1; // position of the newest row in the cache, as of the last readback
    let pendingRows = 0; // an injection announced by a hook whose feeding step is not encoded yet
    try {
      for (const h of hooks) await h.begin?.(maxSteps);
      program = await DecodeStepProgram.build({
        decoder: this.decoder,
        cache: this.cache,
        state: { step: this.step, token: this.token, context: this.context, logits: this.lastLogits, history, stride, maxSteps },
        rules: { banned, copy: copyTable ? { table: copyTable, from: copyFrom, rule: copyRule! } : null, forced },
        sampling: { temperature, topK: opts.topK, topP: opts.topP, seed },
        hooks,
        recordOffsets: recordAt,
        window: this.window,
      });
      this.stepDispatches = program.dispatches;
      while (generated.length < maxNew) {
        const room = this.capacity - 1 - lastFedKnown - pendingRows;
        if (room <= 0 || encoded >= maxSteps) {
          finish = "context-full";
          break;
        }
        // Every step adds at least one row, so `room` bounds a batch. An injection adds more rows than
        // the host can know inside a batch: the GPU plans one only if it fits with one more token
        // (injectionFits), and the cache, context and attention kernels never write past the
        // capacity; a token that would sit past it is dropped below and ends generation with
        // "context-full" (work wasted only in the last batch before the context is full).
        const want = maxNew - generated.length + (pendingRows > 0 ? 1 : 0);
        const batch = Math.min(stepsPerRead, want, maxSteps - encoded, room);
        const te = performance.now();
        const forwardRan: boolean[] = [];
        for (let b = 0; b < batch; b++) {
          // Without hooks (so without injection steps), the forward of the very last token would be wasted work.
          const forward = hooks.length > 0 || generated.length + b + 1 < maxNew;
          program.replay(forward);
          forwardRan.push(forward);
          ctx.submit();
        }
        this.timings.encodeMs += performance.now() - te;
        this.timings.steps += batch;
        const read = ctx.readBytes(history.buffer, 4 * stride * encoded, 4 * stride * batch);
        if (opts.turn) read.catch(() => {}); // a turn that rejects first leaves the read unawaited
        const bytes = await (opts.turn ? opts.turn(read) : read);
        const got = new Uint32Array(bytes.buffer, bytes.byteOffset, stride * batch);
        let stop: FinishReason | null = null;
        for (let b = 0; b < batch; b++) {
          const j = encoded + b;
          const id = got[stride * b]!;
          if (id === INJECTED_ID) {
            // this step fed the injection the previous token's hook announced
            fedRows += pendingRows;
            lastFedKnown += pendingRows;
            pendingRows = 0;
            continue;
          }
          if (id === NONFINITE_ID) {
            throw new NonFiniteError(
              `the logits for position ${this.ids.length} hold NaN or infinity (the model's activations overflowed); stopped after ${generated.length} generated token(s)`,
            );
          }
          if (lastFedKnown + 1 >= this.capacity) {
            // sampled after an injection filled the context: it has no cache row
            stop = "context-full";
            break;
          }
          generated.push(id);
          this.ids.push(id);
          if (forwardRan[b]) fedRows++;
          lastFedKnown++;
          const tok: GeneratedToken = { id, position: this.ids.length - 1 };
          for (const [i, h] of hooks.entries()) {
            const at = stride * b + recordAt[i]!;
            const words = recordAt[i]! >= 0 ? got.subarray(at, at + h.recordWords) : new Uint32Array(0);
            const r = await h.onToken?.(tok, words[0] ?? 0, j, words);
            if (!r) continue;
            if (r.injectedIds?.length) {
              this.ids.push(...r.injectedIds);
              pendingRows = r.injectedIds.length;
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
      if (finish === "max-tokens" && generated.length < maxNew) finish = "context-full";
    } finally {
      program?.dispose();
      history.dispose();
      banned?.dispose();
      copyTable?.dispose();
      for (const f of forced) f.pattern.dispose();
      for (const h of hooks) h.end?.();
      this.timings.decodeTokens += generated.length;
      this.timings.decodeMs += performance.now() - t0;
      // Steps past a stop (or an error, or the caller leaving early) are dropped: the cache keeps
      // only what `ids` holds, and only the rows whose forward ran (an injection announced at the
      // last token but not yet fed is fed again by the next append or generate).
      this.fed = Math.min(startLength + fedRows, this.length);
      // lastLogits belong to the last fed token only when nothing after it was encoded.
      this.hasLogits = false;
    }
    this.finishReason = finish;
    return finish;
  }

  /** Dispatches one replayed decode step holds (the last generate() call's step program). */
  stepDispatches = 0;

  dispose(): void {
    this.cache.dispose();
    for (const t of [this.lastLogits, this.token, this.step, this.context]) t.dispose();
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
