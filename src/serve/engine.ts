// The batching engine of `onegen serve`: concurrent sequences share decode steps.
//
// One KV cache is divided into `maxBatch` slots of `slotTokens` rows (plus one slot for
// embeddings); a sequence owns a slot from the step it joins to the step it leaves (the lowest
// free slot first). Every forward places each token by a ForwardPlan (per-token RoPE position
// within its sequence, cache row inside its slot, attention range over its slot only), so one
// forward serves several sequences and reads the weights once for all of them.
// Two step designs (EngineOptions.stepMode):
//   captured (default): a step is a captured program (src/gpu/capture.ts) of width b, one row
//     per slot 0..b−1 (b = stepWidth: the highest busy slot + 1, rounded up to a power of two
//     above 8; one program per width, built on first use, over shared step buffers): the ids sampled at the previous step are copied on the GPU into
//     the input row of their slot, one Decoder.forward over the b rows (positions, cache rows and
//     ranges written by the host before the batch), logits [b, V], the greedy id of every row →
//     `next`; a sequence with temperature > 0 then draws from its own row (its seed, its step, as
//     Session.generate draws). Joining sequences' prompts are prefilled (one op-by-op forward over
//     all of them) just before the step they join, their first id sampled into their slot's
//     `next`, which that same step feeds. One readback per step: [inputs, sampled ids] (8·b
//     bytes): a joining sequence's first id is its input row. The next step is submitted before
//     that readback is awaited (one step in flight: the host streams step n's ids while the GPU
//     runs n + 1); a sequence ending by EOS or a stop string at n thus runs one wasted row at n + 1. A free slot below the highest busy
//     one (a hole) feeds its stale id at position 0 of its own slot; its output is ignored.
//   forward: the earlier design, kept as the benchmark's A/B arm: one Decoder.forward encoded op
//     by op over the tokens of every active sequence (a joining prompt rides along with the
//     others' decode tokens; bounded by `stepTokens`), logits at each sequence's last row,
//     sampled per sequence, B ids read back.
// Where the time goes (bench/serve.bench.ts, bench/batch-gemv.bench.ts, results in
// bench/results/2026-12-02-serve-step.md and 2026-12-02-gemv-bcast.md; lavapipe): the GPU work,
// ~90% of a step in either design, mostly the projections. For b ≤ 16 they run gemv_bcast
// (src/ops/linear.ts: each W chunk loaded once for up to 8 rows, x broadcast through the
// subgroup): an 8-row step's projections cost ×2.2 of a 1-row step's (×1.53 of the old 1-row
// GEMVs; matmul t4x8 before: ×3.0), and the engine at 8 streams gives ×2.8 the total tokens/s of
// the old kernels (×2.2 per CPU-second), ×4.8 of one stream in wall time (×2.7 per CPU-second;
// one stream itself ×1.6–1.8 faster). Weights stay row-major here (gemvLayout "rows"): the tiles
// layout measured slower at 8 streams (×0.72 wall, ×0.80 per CPU-second) though not at 1.
// Between steps the host checks EOS, stop strings and max_tokens, releases the text that can no
// longer change, frees the slots of finished or cancelled sequences and admits queued ones.
// Waiting sequences are bounded (maxQueue): past it submit() refuses with 429.
// A lost device (or any GPU error, after which the cache cannot be trusted) fails every sequence
// and makes the engine refuse all later work (onFatal).
// Embeddings (normalised final-norm hidden state at the document token, as the index builder
// embeds documents: src/onegen/encode.ts) run between steps in the embedding slot (exclusive():
// alone on the device, readback included).
// Retrieval requests as rows (SequenceParams.task, a RowTask; src/serve/retrieval.ts
// startRetrievalRow): a OneGen request decodes as a row of the captured step, beside plain
// sequences, its prompt prefilled into its slot like any joiner. What its Session run does in its
// own decode step (src/model/decode-step.ts, src/onegen/loop.ts) the engine does per row:
//   1. Logits rules and sampling: banned ids (undecodable) are masked on the row's logits and its
//      id taken again into next[slot] after the program (greedy, or drawn with its seed at the
//      Session run's sampler step: generated ids plus injections fed while decoding); forcing rules
//      (entity linking's [_CONTINUE_] after `</MENTION>[LK]`) are checked on the host against the
//      row's ids as each id is read back.
//   2. Query tokens are read from the step's readback. The step that fed a query token as the
//      row's input (the step in flight; for a joining or rejoining row's first id, which is that
//      step's input row in the readback, the step before it) computed its final-norm hidden state
//      already: row `slot` of the step's [b, D] rows before lm_head. A step that feeds a task row
//      with retrieval copies those rows, right after its program, into one of two buffers by its
//      serial's parity (stepHidden); the search runs between steps, the loop alone on the device
//      (runActions, before any later step is encoded, queue-ordered after the step in flight), so
//      the rows of both steps it may need are still there (checked by serial). It copies row
//      `slot` into a [1, D] buffer of its own (binding offset 0) for DocumentIndex.searchGpu (the
//      Session run's cosine top-k); one readback gives the hits. A query token no step fed takes
//      a one-row forward at its position instead, attending to the slot's rows: the row's last id
//      (max_tokens or a full slot stop it being fed; its k/v go to its own row), one read back
//      while an exclusive job ran before the next step was encoded (own row too, which the next
//      step rewrites). A joining prompt's query tokens (point 5) are searched on the prompt
//      prefill's own final-norm rows (kept for the purpose), as the Session run searches them.
//      stats.searchesFromStep, searchesFromPrefill and searchForwards count the three.
//   3. Injection (multi-hop QA) or a forced id: prefilled into the slot right after the query
//      token (one forward, like a joining prompt), the next id sampled into next[slot]; the ids
//      the step in flight sampled after the query token are dropped (Sequence.skipThrough; a row
//      is wasted only when the query token was a joiner's first id, fed by the step that read it
//      back), and the row rejoins the batch at the next step (its input row is that id, as a
//      joiner's first id). Cost per retrieval: between steps (the batch waits) a copy of one row,
//      the top-k search and its readback (a one-row forward too where no step fed the query
//      token); per step that feeds such a row a copy of its b·D final-norm floats; per injection
//      one prefill of its L ids. An injection that does not fit the slot is refused and ends the
//      row ("context-full"), as in the Session run (injectionFits).
//   4. A search alone (entity linking's [LK] without a forcing pattern) does not stop the row:
//      ids read back meanwhile wait in Sequence.deferred and follow the retrieval's event.
//   5. A prompt that holds query tokens or ends with a forcing pattern (OneGen's disambiguation
//      prompts) joins by joinTask, between steps: prefilled alone, each query token in it
//      searched on the prefill's row (source "prompt"), then the injection (a prompt ending with the query token) or
//      the forced id, as src/onegen/stream.ts starts a Session run.
// The row's events (token, retrieval, injection, done) are the Session run's, in its order;
// src/onegen/task-runner.ts TaskCollector turns them into the task's result. Its tokens equal the
// request alone (greedy ids of the batched forward equal the Session's on the tests' models;
// scores differ in the last bits: the forwards round differently). Not rows (retrieval.ts
// rowsRefusal; they take turns, below): copy-input and stop strings (tasks' options the server
// does not pass), a capacity other than the slot, and stepMode "forward".
// OneGen retrieval requests that are not rows (and all of them with the server's retrieval
// "turns") run on a Session of their own and take turns with the batch at step granularity (interleave()): whoever encodes holds the DeviceLock
// (src/serve/device-turns.ts, which says why encodings must not interleave: one open batch and
// one capture state per GpuContext, captures recorded across awaits); the loop lets go of it
// while it awaits a step's readback, a retrieval session while it awaits one of its readbacks
// (every `stepsPerRead` steps, GenerateOptions.turn). The queue thus runs batch step n + 1,
// then a group of the session's steps, then batch step n + 2…: plain streams keep producing
// tokens during a retrieval request (at the rate the shared device leaves them), and up to
// maxInterleaved retrieval requests progress together, each on its own KV cache (planned against
// the memory budget at start: checkEngineFits). A cancelled job leaves at once (its wait for the
// lock or for its readback rejects); a GPU error or lost device inside one fails the engine.

import type { GpuContext } from "../gpu/context.js";
import { Tensor } from "../gpu/tensor.js";
import type { CapturedProgram } from "../gpu/capture.js";
import type { Decoder, KVCache } from "../model/decoder.js";
import { DeviceLostError, GpuOutOfMemoryError, GpuValidationError, UsageError } from "../errors.js";
import type { DeviceTurn, FinishReason } from "../model/session.js";
import { kvCacheBytes } from "../model/config.js";
import { sample, planSample, maskLogits, NONFINITE_ID } from "../ops/sample.js";
import type { DispatchPlan } from "../ops/dispatch-plan.js";
import { embedding } from "../ops/embedding.js";
import { l2normRows } from "../ops/l2norm.js";
import { ApiError } from "./protocol.js";
import { StreamText } from "./text.js";
import { Abort, DeviceLock } from "./device-turns.js";
import type { DocumentIndex } from "../onegen/index.js";
import { injectionFits, injectionIds, type RetrievalHit } from "../onegen/loop.js";
import type { TaskEvent } from "../onegen/protocol.js";

export interface EngineOptions {
  /** Sequences decoded together (KV cache slots). */
  maxBatch: number;
  /** Rows of one slot: prompt + generated tokens of one sequence. */
  slotTokens: number;
  /** Sequences that may wait for a slot; past it submit() throws a 429. */
  maxQueue: number;
  /** Most tokens one step's forward may hold (further joining prompts wait a step); at least slotTokens + maxBatch. */
  stepTokens?: number;
  /** Ids that end a sequence (finish "stop"). */
  eosIds: readonly number[];
  /** Text of generated ids (special tokens skipped). */
  decode: (ids: number[]) => string;
  /** Called once when the engine fails for good (device lost, GPU error). */
  onFatal?: (e: Error) => void;
  /**
   * How decode steps run: "captured" (default): a captured step program per batch width, ids
   * sampled and fed on the GPU, one readback per step; "forward": the earlier design, one
   * Decoder.forward encoded op by op per step over every active sequence's tokens (kept as the
   * benchmark's A/B arm).
   */
  stepMode?: StepMode;
  /**
   * Interleaved jobs (interleave(): retrieval requests, each on its own Session) running at once;
   * further ones wait, at most maxQueue of them (429 past it). Default 1.
   */
  maxInterleaved?: number;
}

export type StepMode = "captured" | "forward";

export interface SequenceParams {
  prompt: readonly number[];
  temperature: number;
  topP?: number | undefined;
  topK?: number | undefined;
  seed: number;
  /** Most tokens to generate. */
  maxTokens: number;
  stop: readonly string[];
  /** Generate past the end-of-sequence ids. */
  ignoreEos?: boolean;
  /** A OneGen task run as a row of the batched step (captured mode; see RowTask). */
  task?: RowTask;
}

/**
 * A OneGen task decoded as a row of the batched step (see the file header, "Retrieval requests as
 * rows"): the rules of its Session run (src/onegen/task-runner.ts PreparedTask) in the form the
 * engine applies per row (src/serve/retrieval.ts rowsRefusal routes other requests to their own
 * Session).
 */
export interface RowTask {
  /** Ids never sampled (the model's undecodable ids). */
  bannedIds: readonly number[];
  /** After the row's ids end with `pattern`, its next id is `token` (entity linking's [_CONTINUE_]). */
  forceAfter: readonly { pattern: readonly number[]; token: number }[];
  /** In-loop retrieval; null (or an empty index): none. */
  retrieval: {
    index: DocumentIndex;
    queryTokenId: number;
    k: number;
    maxRetrievals: number;
    inject: { prefix: readonly number[]; suffix: readonly number[]; maxDocTokens?: number } | null;
  } | null;
  /** The run's events, in the order a Session run yields them (src/onegen/stream.ts), "done" last. */
  onEvent: (e: TaskEvent) => void;
}

export interface SequenceEvents {
  /** A sampled token and the text it released (possibly ""). */
  onToken?: (id: number, delta: string) => void;
  /** The sequence ended (finish "stop": EOS or a stop string; "length": max_tokens or its slot is full). */
  onEnd: (r: { finish: "stop" | "length"; completionTokens: number; text: string }) => void;
  /** The sequence failed (its request answers with this error). */
  onError: (e: ApiError) => void;
}

export interface SequenceHandle {
  /** Frees the sequence: removed from the queue at once, or from the batch before the next step. */
  cancel(): void;
}

/** An interleaved job (BatchEngine.interleave). */
export interface InterleavedJob<T> {
  /** The job's result; rejects with JobCancelled after cancel(), with a 503 ApiError when the engine fails or shuts down. */
  readonly done: Promise<T>;
  /** Stops the job at once: whatever it waits for (its turn, a readback) rejects, and it leaves the queue. */
  cancel(): void;
}

/** What an interleaved job's waits reject with after cancel(). */
export class JobCancelled extends Error {
  constructor() {
    super("the job was cancelled");
    this.name = "JobCancelled";
  }
}

interface InterleavedEntry {
  abort: Abort;
  start(): void;
  reject(e: unknown): void;
  /** Settles when the job ended, however. */
  settled: Promise<void>;
}

/**
 * The host-built rows of a forward over slotted KV caches (slot s holds cache rows s·R .. s·R + R):
 * per row its id, RoPE position p, cache row and attention range [lo, hi) over its own slot, with
 * the model's sliding window applied. One definition for the step, prefill and embedding paths.
 */
class SlotRows {
  readonly ids: Uint32Array;
  readonly pos: Uint32Array;
  readonly rows: Uint32Array;
  readonly ranges: Uint32Array;
  constructor(
    n: number,
    private readonly slotTokens: number,
    private readonly window: number,
  ) {
    this.ids = new Uint32Array(n);
    this.pos = new Uint32Array(n);
    this.rows = new Uint32Array(n);
    this.ranges = new Uint32Array(2 * n);
  }

  /** Row t: id fed at position p of slot `slot`. */
  put(t: number, slot: number, p: number, id = 0): void {
    const base = slot * this.slotTokens;
    const w = this.window;
    this.ids[t] = id;
    this.pos[t] = p;
    this.rows[t] = base + p;
    this.ranges[2 * t] = base + (w > 0 && p + 1 > w ? p + 1 - w : 0);
    this.ranges[2 * t + 1] = base + p + 1;
  }

  /** The plan Decoder.forward takes (uploaded; the caller disposes it). */
  upload(ctx: GpuContext, label: string): { ids: Tensor; ropePositions: Tensor; cacheRows: Tensor; ranges: Tensor } {
    const T = this.pos.length;
    return {
      ids: ctx.upload(this.ids, [T], "u32", `serve.${label}.ids`),
      ropePositions: ctx.upload(this.pos, [T], "u32", `serve.${label}.positions`),
      cacheRows: ctx.upload(this.rows, [T], "u32", `serve.${label}.rows`),
      ranges: ctx.upload(this.ranges, [T, 2], "u32", `serve.${label}.ranges`),
    };
  }
}

class Sequence implements SequenceHandle {
  slot = -1;
  /** Tokens of this sequence in its slot's cache rows. */
  fed = 0;
  /** Ids to feed at the next step (the prompt, then the last sampled id). */
  pending: number[];
  readonly generated: number[] = [];
  cancelled = false;
  done = false;
  /** Captured mode: ids sampled for it so far, including steps in flight. */
  sampled = 0;
  readonly text: StreamText;
  // Task rows (params.task) only:
  /** Every id of the row's cache positions (prompt, generated and forced, injected). */
  readonly ids: number[];
  /** Injected ids (they take positions but are not generated). */
  injected = 0;
  /** Injections fed during decoding: each took a step of the Session run (its sampler's step counter). */
  injectSteps = 0;
  /** Retrievals so far. */
  retrievals = 0;
  /** Work between steps that the last accepted id asks for (run by runActions before anything else is encoded). */
  action: RowAction | null = null;
  /** Ids sampled for the row by steps with serial ≤ this are dropped (an injection or a forced id replaces them). */
  skipThrough = -1;
  /** Ids accepted while a search-only action was pending, handled after it. */
  readonly deferred: number[] = [];
  /** The row's next step feeds an id sampled between steps (its input row is a new id, as a joiner's). */
  rejoin = false;
  /** Uploaded banned ids (task rows with some). */
  banned: Tensor | null = null;
  /** Task rows: the position each of the last two steps that fed the row fed it at (their final-norm rows are kept: BatchEngine.stepHidden). */
  readonly fedBy: { serial: number; position: number }[] = [];

  constructor(
    readonly engine: BatchEngine,
    readonly params: SequenceParams,
    readonly events: SequenceEvents,
    decode: (ids: number[]) => string,
  ) {
    this.pending = [...params.prompt];
    this.text = new StreamText(decode, params.stop);
    this.ids = params.task ? [...params.prompt] : [];
  }

  cancel(): void {
    if (this.done) return;
    this.cancelled = true;
    this.engine.wake();
  }
}

/** What a task row's last accepted id (a query token, or the end of a forcing pattern) asks for between steps. */
interface RowAction {
  /** Cache position of the id. */
  position: number;
  /** Search the index at its final-norm hidden state. */
  search: boolean;
  /** The id a forcing rule puts after it (when nothing is injected), or null. */
  force: number | null;
  /** The row ends after this (its last id was the query token: the retrieval is still reported). */
  end: FinishReason | null;
  /** The ids sampled after it by steps already encoded are dropped (an injection, a forced id or the end replaces them). */
  skips: boolean;
  /** The row joins this way (joinTask): its prompt holds query tokens or ends with a forcing pattern. */
  join?: boolean;
  /** Serial of the step that fed the id (its final-norm row at the row's slot is the id's hidden state), or null: no step fed it. */
  fedBy: number | null;
}

/** Work that runs alone between steps (embeddings, retrieval requests on their own session). */
interface ExclusiveJob {
  run: () => Promise<void>;
  /** Fails the job without running it (shutdown, GPU failure). */
  reject: (e: unknown) => void;
}

export interface EngineStats {
  steps: number;
  /** Tokens fed to forwards (prompts + decode). */
  tokensFed: number;
  /** Tokens sampled. */
  tokensGenerated: number;
  /** Largest number of sequences in one step. */
  maxBatchSeen: number;
  /** Host milliseconds spent encoding steps (from a step's start to its readback's submit). */
  hostMs: number;
  /** Milliseconds spent waiting for steps' readbacks (the GPU's work, and the map's latency). */
  waitMs: number;
  /** Turns interleaved jobs took (the first, and one after each of their readbacks). */
  turns: number;
  /** Task rows' searches at a query token a step fed: on that step's own final-norm row (no forward). */
  searchesFromStep: number;
  /** Task rows' searches at a query token of a joining prompt: on the prompt prefill's own final-norm row (no forward). */
  searchesFromPrefill: number;
  /** Task rows' searches that ran a one-row forward of the query token (neither a step nor a prefill fed it: a row's last id). */
  searchForwards: number;
  /** Milliseconds task rows' searches held the loop between steps (encoding, the GPU's work and the hits' readback). */
  searchMs: number;
}

/** GPU bytes of the engine's KV cache. */
export function engineCacheBytes(decoder: Pick<Decoder, "config">, maxBatch: number, slotTokens: number, dtypeBytes = 2): number {
  return kvCacheBytes(decoder.config, (maxBatch + 1) * slotTokens, dtypeBytes);
}

export class BatchEngine {
  readonly stats: EngineStats = { steps: 0, tokensFed: 0, tokensGenerated: 0, maxBatchSeen: 0, hostMs: 0, waitMs: 0, turns: 0, searchesFromStep: 0, searchesFromPrefill: 0, searchForwards: 0, searchMs: 0 };
  private readonly cache: KVCache;
  private readonly outIds: Tensor;
  private readonly scratch: Tensor;
  private readonly queue: Sequence[] = [];
  private readonly active: Sequence[] = [];
  private readonly freeSlots: number[];
  private readonly jobs: ExclusiveJob[] = [];
  /** Held while encoding: the loop's steps and interleaved jobs take turns (device-turns.ts). */
  private readonly lock = new DeviceLock();
  private readonly interleavedRunning = new Set<InterleavedEntry>();
  private readonly interleavedWaiting: InterleavedEntry[] = [];
  private readonly eos: Set<number>;
  private readonly stepTokens: number;
  private wakeUp: (() => void) | null = null;
  readonly stepMode: StepMode;
  /** Captured mode: the id sampled for each slot at the last step (u32 [maxBatch]), fed by the next. */
  private readonly next: Tensor | null = null;
  /** Captured mode: the step buffers ([maxBatch] rows; a program of width b binds their first b rows). */
  private readonly io: StepBuffers | null = null;
  /** Captured mode: the step program of each batch width, built on first use. */
  private readonly buckets = new Map<number, Bucket>();
  /**
   * Captured mode: the final-norm rows [maxBatch, D] of the last two steps that fed a task row
   * with retrieval (step n's in stepHidden[n & 1], n in stepHiddenSerial[n & 1]), copied out of
   * the program's rows right after its replay: a query token's search reads the row of the step
   * that fed it (the step in flight, or for a joining row's first id the one before it).
   */
  private readonly stepHidden: [Tensor, Tensor] | null = null;
  private readonly stepHiddenSerial = [-1, -1];
  /** Captured mode: the searched row [1, D] (its own buffer: binding offset 0). */
  private readonly queryRow: Tensor | null = null;
  private stopping = false;
  /** Captured mode: serial number of the last step encoded. */
  private serial = 0;
  private fatalError: Error | null = null;
  private readonly loop: Promise<void>;

  constructor(
    readonly decoder: Decoder,
    readonly opts: EngineOptions,
  ) {
    const ctx = decoder.ctx;
    const { maxBatch, slotTokens } = opts;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new UsageError(`serve engine: maxBatch must be a positive integer, got ${maxBatch}`);
    if (!Number.isInteger(slotTokens) || slotTokens < 2) throw new UsageError(`serve engine: slotTokens must be an integer ≥ 2, got ${slotTokens}`);
    // any one prompt fits beside a full batch's decode tokens, so a long prompt never starves
    this.stepTokens = Math.max(opts.stepTokens ?? 0, slotTokens + maxBatch);
    this.eos = new Set(opts.eosIds);
    this.cache = decoder.createCache((maxBatch + 1) * slotTokens);
    this.outIds = ctx.empty([maxBatch], "u32", "serve.ids");
    this.scratch = ctx.empty([1, decoder.vocabSize], "f32", "serve.row");
    this.freeSlots = Array.from({ length: maxBatch }, (_, i) => maxBatch - 1 - i);
    this.stepMode = opts.stepMode ?? "captured";
    if (this.stepMode !== "captured" && this.stepMode !== "forward") throw new UsageError(`serve engine: stepMode must be "captured" or "forward", got '${String(this.stepMode)}'`);
    if (this.stepMode === "captured") {
      this.next = ctx.empty([maxBatch], "u32", "serve.next");
      ctx.clear(this.next); // holes feed id 0 until a sequence takes their slot
      this.io = {
        ids: ctx.empty([maxBatch], "u32", "serve.step.ids"),
        pos: ctx.empty([maxBatch], "u32", "serve.step.positions"),
        rows: ctx.empty([maxBatch], "u32", "serve.step.rows"),
        ranges: ctx.empty([maxBatch, 2], "u32", "serve.step.ranges"),
        logits: ctx.empty([maxBatch, decoder.vocabSize], "f32", "serve.step.logits"),
        out: ctx.empty([2 * maxBatch], "u32", "serve.step.out"),
      };
      const D = decoder.hiddenSize;
      this.stepHidden = [ctx.empty([maxBatch, D], "f32", "serve.step.hidden.0"), ctx.empty([maxBatch, D], "f32", "serve.step.hidden.1")];
      this.queryRow = ctx.empty([1, D], "f32", "serve.query");
    }
    void decoder.ctx.device.lost.then((info) => {
      if (!ctx.isDestroyed) this.fail(new DeviceLostError(`GPU device lost: ${info.reason}: ${info.message}`));
    });
    this.loop = this.run();
  }

  get ctx(): GpuContext {
    return this.decoder.ctx;
  }
  /** Sequences waiting for a slot. */
  get queued(): number {
    return this.queue.length;
  }
  /** Sequences in the batch. */
  get running(): number {
    return this.active.length;
  }
  get fatal(): Error | null {
    return this.fatalError;
  }
  /** Interleaved jobs running, and waiting for their start. */
  get interleaved(): { running: number; waiting: number } {
    return { running: this.interleavedRunning.size, waiting: this.interleavedWaiting.length };
  }

  /**
   * Queues sequences (all or none). Throws 429 when the queue would pass maxQueue, 503 when the
   * engine is stopping or failed.
   */
  submit(params: readonly SequenceParams[], events: readonly SequenceEvents[]): SequenceHandle[] {
    this.refuseIfClosed();
    for (const p of params) {
      if (p.prompt.length === 0) throw new ApiError(400, "the prompt has no tokens", "invalid_request_error", "prompt");
      if (p.prompt.length >= this.opts.slotTokens) {
        throw new ApiError(400, `the prompt has ${p.prompt.length} tokens; this server's context holds ${this.opts.slotTokens} per sequence (prompt and completion)`, "invalid_request_error", "prompt", "context_length_exceeded");
      }
      if (p.task && this.stepMode !== "captured") throw new UsageError("serve engine: a task row needs the captured step");
    }
    // queued sequences take the free slots at the next step; the rest wait
    const waiting = Math.max(0, this.queue.length + params.length - this.freeSlots.length);
    if (waiting > this.opts.maxQueue) {
      throw new ApiError(429, `the server is busy: ${this.active.length} sequences running and ${this.queue.length} waiting (queue limit ${this.opts.maxQueue}); retry later`, "rate_limit_exceeded", null, "rate_limit_exceeded", {
        "Retry-After": "1",
      });
    }
    const seqs = params.map((p, i) => new Sequence(this, p, events[i]!, this.opts.decode));
    this.queue.push(...seqs);
    this.wake();
    return seqs;
  }

  /** The normalised hidden state at `row` of `ids` (run between steps). */
  embed(ids: readonly number[], row: number): Promise<Float32Array> {
    if (ids.length > this.opts.slotTokens) {
      return Promise.reject(new ApiError(400, `the input has ${ids.length} tokens, more than this server's context of ${this.opts.slotTokens}`, "invalid_request_error", "input", "context_length_exceeded"));
    }
    const copy = [...ids];
    return this.exclusive(() => this.runEmbedding(copy, row));
  }

  /**
   * Runs `fn` alone on the device between two steps (the batch and interleaved jobs wait):
   * short work (an embedding) that may await readbacks while it holds the device.
   * Bounded by maxQueue like sequences (429 past it).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.refuseIfClosed();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.jobs.length >= Math.max(1, this.opts.maxQueue)) {
      return Promise.reject(new ApiError(429, `the server is busy: ${this.jobs.length} requests waiting to run alone; retry later`, "rate_limit_exceeded", null, "rate_limit_exceeded", { "Retry-After": "1" }));
    }
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({
        run: async () => {
          try {
            resolve(await fn());
          } catch (e) {
            // a lost device surfaces here first: fail the engine too
            if (e instanceof DeviceLostError) throw e;
            reject(e);
          }
        },
        reject,
      });
      this.wake();
    });
  }

  /**
   * Runs `fn`, work with its own GPU state (a retrieval request's Session), taking turns with the
   * batch at step granularity: it holds the device (DeviceLock) while it runs, except while it
   * waits for a readback through `turn` (GenerateOptions.turn), when the batch's steps and other
   * jobs encode. At most maxInterleaved run at once (each holds its own cache: the server plans
   * their memory); past that they wait in order, at most maxQueue of them (429 beyond).
   * A GPU error or lost device inside `fn` fails the engine (their batches share the queue).
   */
  interleave<T>(fn: (turn: DeviceTurn) => Promise<T>): InterleavedJob<T> {
    this.refuseIfClosed();
    const max = Math.max(1, this.opts.maxInterleaved ?? 1);
    if (this.interleavedRunning.size >= max && this.interleavedWaiting.length >= Math.max(1, this.opts.maxQueue)) {
      throw new ApiError(429, `the server is busy: ${this.interleavedRunning.size} retrieval requests running and ${this.interleavedWaiting.length} waiting; retry later`, "rate_limit_exceeded", null, "rate_limit_exceeded", { "Retry-After": "1" });
    }
    const abort = new Abort();
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const done = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const entry: InterleavedEntry = {
      abort,
      start: () => void this.runInterleaved(entry, fn).then(resolve, reject),
      reject,
      settled: done.then(
        () => {},
        () => {},
      ),
    };
    if (this.interleavedRunning.size < max) {
      this.interleavedRunning.add(entry);
      entry.start();
    } else this.interleavedWaiting.push(entry);
    return {
      done,
      cancel: () => {
        const i = this.interleavedWaiting.indexOf(entry);
        if (i >= 0) {
          this.interleavedWaiting.splice(i, 1);
          reject(new JobCancelled());
        }
        abort.fire(new JobCancelled());
      },
    };
  }

  private async runInterleaved<T>(entry: InterleavedEntry, fn: (turn: DeviceTurn) => Promise<T>): Promise<T> {
    const { abort } = entry;
    let held = false;
    const turn: DeviceTurn = async (read) => {
      read.catch(() => {}); // an abort may leave it unawaited
      if (held) {
        held = false;
        this.lock.release();
      }
      const bytes = await abort.race(read);
      await this.lock.acquire(abort);
      held = true;
      this.stats.turns++;
      return bytes;
    };
    try {
      await this.lock.acquire(abort);
      held = true;
      this.stats.turns++;
      return await fn(turn);
    } catch (e) {
      if (abort.reason) throw abort.reason;
      if (e instanceof DeviceLostError || e instanceof GpuValidationError) {
        this.fail(e);
        throw new ApiError(503, `the server's GPU failed: ${e.message}`, "server_error", null, "device_lost");
      }
      throw e;
    } finally {
      if (held) this.lock.release();
      this.interleavedRunning.delete(entry);
      const next = this.interleavedWaiting.shift();
      if (next) {
        this.interleavedRunning.add(next);
        next.start();
      }
    }
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /**
   * Stops admitting work: queued sequences fail with 503; running ones finish within
   * `graceMs`, then are cancelled (their requests get a 503 error). Resolves when the loop ended.
   */
  async drain(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const s of this.queue.splice(0)) this.endWithError(s, new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down"));
    for (const j of this.jobs.splice(0)) j.reject(new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down"));
    for (const j of this.interleavedWaiting.splice(0)) j.reject(new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down"));
    const timer = setTimeout(() => {
      for (const s of this.active) if (!s.done) this.endWithError(s, new ApiError(503, "the server is shutting down; the sequence was cancelled", "server_error", null, "server_shutting_down"));
      for (const j of this.interleavedRunning) j.abort.fire(new ApiError(503, "the server is shutting down; the request was cancelled", "server_error", null, "server_shutting_down"));
      this.wake();
    }, graceMs);
    this.wake();
    try {
      await this.loop;
      // running interleaved jobs end within the grace too (they use the model the caller frees next)
      await Promise.all([...this.interleavedRunning].map((j) => j.settled));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Frees the cache and buffers (after drain). */
  dispose(): void {
    if (this.ctx.isDestroyed) return;
    for (const b of this.buckets.values()) disposeBucket(b);
    this.buckets.clear();
    this.cache.dispose();
    this.outIds.dispose();
    this.scratch.dispose();
    this.next?.dispose();
    if (this.io) for (const t of Object.values(this.io)) (t as Tensor).dispose();
    for (const t of [...(this.stepHidden ?? []), this.queryRow]) t?.dispose();
  }

  private refuseIfClosed(): void {
    if (this.fatalError) throw new ApiError(503, `the server's GPU failed: ${this.fatalError.message}`, "server_error", null, "device_lost");
    if (this.stopping) throw new ApiError(503, "the server is shutting down", "server_error", null, "server_shutting_down");
  }

  private fail(e: Error): void {
    if (this.fatalError) return;
    this.fatalError = e;
    const err = new ApiError(503, `the server's GPU failed: ${e.message}`, "server_error", null, "device_lost");
    for (const s of [...this.queue.splice(0), ...this.active]) this.endWithError(s, err);
    for (const j of this.jobs.splice(0)) j.reject(err);
    for (const j of this.interleavedWaiting.splice(0)) j.reject(err);
    for (const j of this.interleavedRunning) j.abort.fire(err);
    this.opts.onFatal?.(e);
    this.wake();
  }

  private endWithError(s: Sequence, e: ApiError): void {
    if (s.done) return;
    s.done = true;
    s.events.onError(e);
  }

  private async run(): Promise<void> {
    // captured mode: the step submitted but not yet read back
    let inflight: InFlight | null = null;
    for (;;) {
      this.retire();
      if (this.fatalError) return;
      if (this.stopping && !inflight && this.active.length === 0 && this.queue.length === 0 && this.jobs.length === 0) return;
      let job: ExclusiveJob | undefined;
      // the device is held while encoding (interleaved jobs encode while the loop awaits a readback)
      let locked = false;
      try {
        if (this.active.some((s) => s.action && !s.done && !s.cancelled)) {
          // task rows' work between steps, before anything else (queue-ordered after the step in flight)
          await this.lock.acquire();
          locked = true;
          await this.runActions();
          continue;
        }
        if (this.jobs.length) {
          if (inflight) {
            const f: InFlight = inflight;
            inflight = null;
            await this.processCaptured(f);
            continue;
          }
          job = this.jobs.shift()!;
          await this.lock.acquire();
          locked = true;
          await job.run();
          continue;
        }
        this.admit();
        if (this.stepMode === "forward") {
          if (this.active.length === 0) {
            await new Promise<void>((r) => (this.wakeUp = r));
            continue;
          }
          await this.lock.acquire();
          locked = true;
          if (!this.fatalError) await this.step();
          continue;
        }
        // (decided with no await since the checks above, so a wake() cannot be missed)
        if (!inflight && this.active.length === 0) {
          await new Promise<void>((r) => (this.wakeUp = r));
          continue;
        }
        await this.lock.acquire();
        locked = true;
        const submitted = this.fatalError ? null : await this.encodeCaptured();
        locked = false;
        this.lock.release();
        if (inflight) {
          const f: InFlight = inflight;
          inflight = null;
          await this.processCaptured(f);
        }
        inflight = submitted;
      } catch (e) {
        // After a GPU error the cache and the step's state cannot be trusted: stop serving.
        const err = e instanceof Error ? e : new Error(String(e));
        this.fail(err);
        job?.reject(new ApiError(503, `the server's GPU failed: ${err.message}`, "server_error", null, "device_lost"));
        return;
      } finally {
        if (locked) this.lock.release();
      }
    }
  }

  /** Removes finished and cancelled sequences, freeing their slots. */
  private retire(): void {
    for (let i = this.active.length - 1; i >= 0; i--) {
      const s = this.active[i]!;
      if (s.done || s.cancelled) {
        s.done = true;
        s.banned?.dispose();
        s.banned = null;
        this.active.splice(i, 1);
        this.freeSlots.push(s.slot);
      }
    }
    // the lowest free slot goes first (pop): the captured step's rows are slots 0..b−1
    this.freeSlots.sort((a, b) => b - a);
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.cancelled || this.queue[i]!.done) this.queue.splice(i, 1);
  }

  private admit(): void {
    let tokens = this.active.reduce((n, s) => n + s.pending.length, 0);
    while (this.queue.length && this.freeSlots.length) {
      const s = this.queue[0]!;
      if (this.active.length > 0 && tokens + s.pending.length > this.stepTokens) break;
      this.queue.shift();
      s.slot = this.freeSlots.pop()!;
      this.active.push(s);
      if (s.params.task && promptActs(s.params.prompt, s.params.task)) s.action = { position: -1, search: false, force: null, end: null, skips: false, join: true, fedBy: null };
      tokens += s.pending.length;
    }
  }

  private async step(): Promise<void> {
    const t0 = performance.now();
    const ctx = this.ctx;
    const batch = this.active;
    const B = batch.length;
    const T = batch.reduce((n, s) => n + s.pending.length, 0);
    const rows = new SlotRows(T, this.opts.slotTokens, this.decoder.config.slidingWindow ?? 0);
    const last = new Uint32Array(B);
    let t = 0;
    batch.forEach((s, b) => {
      for (const id of s.pending) rows.put(t++, s.slot, s.fed++, id);
      last[b] = t - 1;
      s.pending = [];
    });
    const plan = rows.upload(ctx, "step");
    const lastRows = ctx.upload(last, [B], "u32", "serve.step.last");
    let logits: Tensor | null = null;
    try {
      logits = (await this.decoder.forward(this.cache, plan, { logitsRows: lastRows })).logits!;
      const V = this.decoder.vocabSize;
      if (batch.some((s) => s.params.temperature === 0)) await sample(ctx, logits, this.outIds, { temperature: 0, seed: 0, step: 0 });
      for (const [b, s] of batch.entries()) {
        if (s.params.temperature === 0) continue;
        ctx.copy(logits.buffer, 4 * V * b, this.scratch.buffer, 0, 4 * V);
        await sample(ctx, this.scratch, this.outIds, {
          temperature: s.params.temperature,
          ...(s.params.topK !== undefined ? { topK: s.params.topK } : {}),
          ...(s.params.topP !== undefined ? { topP: s.params.topP } : {}),
          seed: s.params.seed,
          step: s.generated.length,
          outOffset: b,
        });
      }
    } finally {
      for (const x of [plan.ids, plan.ropePositions, plan.cacheRows, plan.ranges, lastRows, logits]) x?.dispose();
    }
    const t1 = performance.now();
    const bytes = await ctx.readBytes(this.outIds.buffer, 0, 4 * B);
    this.stats.hostMs += t1 - t0;
    this.stats.waitMs += performance.now() - t1;
    ctx.throwPendingErrors();
    const got = new Uint32Array(bytes.buffer, bytes.byteOffset, B);
    this.stats.steps++;
    this.stats.tokensFed += T;
    this.stats.tokensGenerated += B;
    this.stats.maxBatchSeen = Math.max(this.stats.maxBatchSeen, B);
    batch.forEach((s, b) => this.accept(s, got[b]!));
  }

  /**
   * Encodes and submits one step on the captured machinery (stepMode "captured"); its readback
   * is awaited by processCaptured, after the next step has been submitted (one step in flight
   * while the host handles the previous one's ids):
   *   1. joining sequences' prompts: one Decoder.forward over all of them into their slots, each
   *      one's first id sampled from its last row's logits into next[slot];
   *   2. the program of width b (rows = slots 0..b−1, b = stepWidth(highest fed slot + 1); slots
   *      are taken lowest first, so free slots in between, holes, are rare: a hole feeds its last
   *      id at position 0 of its own slot, and its sampled id is ignored):
   *      next → ids, forward of the b rows (positions, cache rows and attention ranges written by
   *      the host before the batch: 3 small writes, queue-ordered after the step in flight),
   *      logits [b, V], greedy ids of all rows → next; sequences with temperature > 0 then sample
   *      their own row (seed, step) into next; when a task row with retrieval is fed, the
   *      program's final-norm rows are copied into stepHidden (its searches read the row of the step
   *      that fed the query token: the file header, "Retrieval requests as rows", 2);
   *   3. one readback of [inputs, sampled] (8·b bytes): a joining sequence's first id is its input
   *      row, every sequence's next id its sampled row.
   * A sequence is fed only while the tokens already sampled for it (in flight included) leave it
   * below max_tokens and its slot: it never runs a step past its length. One that ends by EOS or a
   * stop string at step n is fed once more at n + 1 (encoded before n's ids are read); that row's
   * id is ignored, and its slot goes to a new sequence only at n + 2, which queue order keeps
   * clean (the new prompt's prefill rewrites the rows it reads). Returns null when no sequence
   * can be fed.
   */
  private async encodeCaptured(): Promise<InFlight | null> {
    const t0 = performance.now();
    const ctx = this.ctx;
    const next = this.next!;
    const R = this.opts.slotTokens;
    const window = this.decoder.config.slidingWindow ?? 0;
    const batch = this.active.filter((s) => !s.done && !s.cancelled && !s.action && s.sampled < s.params.maxTokens && s.params.prompt.length + s.injected + s.sampled < R);
    if (batch.length === 0) return null;
    const joiners = batch.filter((s) => s.fed === 0);
    const serial = ++this.serial;
    const top = batch.reduce((m, s) => Math.max(m, s.slot + 1), 0);
    const bk = await this.bucket(stepWidth(top, this.opts.maxBatch));
    const b = bk.b;
    // row = slot; a hole row (no sequence in its slot) reads position 0 of its own slot
    const rows = new SlotRows(b, R, window);
    for (let slot = 0; slot < b; slot++) rows.put(slot, slot, 0);
    // the row fed this step sits at position fed (a joiner: after its prompt)
    for (const s of batch) rows.put(s.slot, s.slot, s.fed === 0 ? s.params.prompt.length : s.fed);
    // host writes first: a write submits whatever is encoded before it
    ctx.write(bk.pos, rows.pos);
    ctx.write(bk.rows, rows.rows);
    ctx.write(bk.ranges, rows.ranges);
    let fed = batch.length;
    if (joiners.length) fed += await this.prefill(joiners);
    bk.program.replay();
    // the final-norm rows kept for task rows' searches at the ids this step feeds (see stepHidden)
    const searching = batch.filter((s) => {
      const r = s.params.task?.retrieval;
      return !!r && r.index.count > 0 && s.retrievals < r.maxRetrievals;
    });
    if (searching.length) {
      const ring = serial & 1;
      ctx.copy(bk.hidden.buffer, 0, this.stepHidden![ring]!.buffer, 0, 4 * this.decoder.hiddenSize * b);
      this.stepHiddenSerial[ring] = serial;
      for (const s of searching) {
        s.fedBy.push({ serial, position: rows.pos[s.slot]! });
        if (s.fedBy.length > 2) s.fedBy.shift();
      }
    }
    const V = this.decoder.vocabSize;
    const joining = new Set([...joiners, ...batch.filter((s) => s.rejoin)]);
    for (const s of batch) {
      if (s.params.task && (s.banned || s.params.temperature > 0)) {
        // a task row with banned ids or a temperature: its id again from its own (masked) row, at
        // the Session run's step (an injection fed during decoding took a step of its own)
        ctx.copy(bk.logits.buffer, 4 * V * s.slot, this.scratch.buffer, 0, 4 * V);
        await this.sampleScratch(s, s.sampled + (joining.has(s) ? 1 : 0) + s.injectSteps);
        continue;
      }
      if (s.params.temperature === 0) continue;
      ctx.copy(bk.logits.buffer, 4 * V * s.slot, this.scratch.buffer, 0, 4 * V);
      await sample(ctx, this.scratch, next, {
        temperature: s.params.temperature,
        ...(s.params.topK !== undefined ? { topK: s.params.topK } : {}),
        ...(s.params.topP !== undefined ? { topP: s.params.topP } : {}),
        seed: s.params.seed,
        step: s.sampled + (joining.has(s) ? 1 : 0),
        outOffset: s.slot,
      });
    }
    ctx.copy(bk.ids.buffer, 0, bk.out.buffer, 0, 4 * b);
    ctx.copy(next.buffer, 0, bk.out.buffer, 4 * b, 4 * b);
    // readBytes submits the batch before its first await; the next step may be encoded meanwhile
    const bytes = ctx.readBytes(bk.out.buffer, 0, 8 * b);
    bytes.catch(() => {}); // awaited by processCaptured; a failed engine may never await it
    for (const s of batch) {
      s.fed++;
      s.sampled += joining.has(s) ? 2 : 1;
      s.rejoin = false;
    }
    this.stats.hostMs += performance.now() - t0;
    this.stats.steps++;
    this.stats.tokensFed += fed;
    this.stats.maxBatchSeen = Math.max(this.stats.maxBatchSeen, batch.length);
    return { b, serial, rows: batch.map((s) => ({ s, joining: joining.has(s) })), bytes };
  }

  /** Reads a captured step's ids back and hands each sequence its token(s). */
  private async processCaptured(f: InFlight): Promise<void> {
    const t1 = performance.now();
    const bytes = await f.bytes;
    this.stats.waitMs += performance.now() - t1;
    this.ctx.throwPendingErrors();
    const got = new Uint32Array(bytes.buffer, bytes.byteOffset, 2 * f.b);
    for (const { s, joining } of f.rows) {
      if (joining) {
        this.stats.tokensGenerated++;
        this.accept(s, got[s.slot]!);
      }
      // a task row's ids sampled after an id that asked for an injection or a forced id are dropped
      if (f.serial <= s.skipThrough) continue;
      this.stats.tokensGenerated++;
      this.accept(s, got[f.b + s.slot]!);
    }
  }

  /**
   * Captured mode: the prompts of joining sequences in one forward (into their slots), each
   * one's first id sampled into next[slot]. Returns the tokens fed.
   */
  private async prefill(joiners: Sequence[]): Promise<number> {
    const ctx = this.ctx;
    const T = joiners.reduce((n, s) => n + s.params.prompt.length, 0);
    const rows = new SlotRows(T, this.opts.slotTokens, this.decoder.config.slidingWindow ?? 0);
    const last = new Uint32Array(joiners.length);
    let t = 0;
    joiners.forEach((s, j) => {
      for (const [p, id] of s.params.prompt.entries()) rows.put(t++, s.slot, p, id);
      last[j] = t - 1;
    });
    const plan = rows.upload(ctx, "prefill");
    const lastRows = ctx.upload(last, [joiners.length], "u32", "serve.prefill.last");
    let logits: Tensor | null = null;
    try {
      logits = (await this.decoder.forward(this.cache, plan, { logitsRows: lastRows })).logits!;
      const V = this.decoder.vocabSize;
      for (const [j, s] of joiners.entries()) {
        ctx.copy(logits.buffer, 4 * V * j, this.scratch.buffer, 0, 4 * V);
        const p = s.params;
        if (p.task?.bannedIds.length && !s.banned) s.banned = ctx.upload(Uint32Array.from(p.task.bannedIds), [p.task.bannedIds.length], "u32", "serve.banned");
        await this.sampleScratch(s, 0);
        s.fed = p.prompt.length;
        s.pending = [];
      }
    } finally {
      for (const x of [plan.ids, plan.ropePositions, plan.cacheRows, plan.ranges, lastRows, logits]) x?.dispose();
    }
    return T;
  }

  /** The step program of width `b` (rows = slots 0..b−1), captured on first use. */
  private async bucket(b: number): Promise<Bucket> {
    const have = this.buckets.get(b);
    if (have) return have;
    const ctx = this.ctx;
    const io = this.io!;
    // the first rows of the shared step buffers (views: binding offset 0, b rows)
    const rows = <T extends Tensor>(t: T, shape: number[]): T => new Tensor(ctx, shape, t.dtype, t.buffer, `${t.label}[0..${b})`, false) as T;
    const V = this.decoder.vocabSize;
    const bk = { b, ids: rows(io.ids, [b]), pos: rows(io.pos, [b]), rows: rows(io.rows, [b]), ranges: rows(io.ranges, [b, 2]), logits: rows(io.logits, [b, V]), out: rows(io.out, [2 * b]) };
    const next = this.next!;
    // planned outside the capture (a numeric step uploads its dummy step tensor on first use)
    const sampler = await planSample(ctx, bk.logits, next, { temperature: 0, seed: 0, step: 0 });
    let hidden: Tensor | null = null;
    try {
      const program = await ctx.captureProgram(`serve.step.b${b}`, async () => {
        ctx.copy(next.buffer, 0, bk.ids.buffer, 0, 4 * b);
        // the final-norm rows [b, D] stay the program's (pinned, never reused by other work)
        hidden = (await this.decoder.forward(this.cache, { ids: bk.ids, ropePositions: bk.pos, cacheRows: bk.rows, ranges: bk.ranges }, { logitsRows: "all", logitsOut: bk.logits, keepHidden: true })).hidden!;
        sampler.encode(ctx);
      });
      const made: Bucket = { ...bk, program, sampler, hidden: hidden! };
      this.buckets.set(b, made);
      return made;
    } catch (e) {
      sampler.dispose();
      (hidden as Tensor | null)?.dispose();
      throw e;
    }
  }

  /** Greedy (or the sequence's sampling at `step`) from the row in `scratch` into next[slot], its banned ids masked first. */
  private async sampleScratch(s: Sequence, step: number): Promise<void> {
    const p = s.params;
    if (s.banned) await maskLogits(this.ctx, this.scratch, s.banned);
    await sample(this.ctx, this.scratch, this.next!, {
      temperature: p.temperature,
      ...(p.temperature > 0 && p.topK !== undefined ? { topK: p.topK } : {}),
      ...(p.temperature > 0 && p.topP !== undefined ? { topP: p.topP } : {}),
      seed: p.seed,
      step,
      outOffset: s.slot,
    });
  }

  /** The id sampled for `s` at this step: stream it, and decide whether the sequence goes on. */
  private accept(s: Sequence, id: number): void {
    if (s.done || s.cancelled) return;
    if (id === NONFINITE_ID) {
      this.endWithError(s, new ApiError(500, `the logits for position ${s.fed} hold NaN or infinity (the model's activations overflowed); stopped after ${s.generated.length} generated token(s)`, "server_error", null, "non_finite_logits"));
      return;
    }
    if (s.params.task) {
      this.acceptTaskId(s, id, "generated");
      return;
    }
    s.generated.push(id);
    let finish: "stop" | "length" | null = null;
    let delta: string;
    if (this.eos.has(id) && !s.params.ignoreEos) {
      finish = "stop";
      delta = s.text.finish(s.generated);
    } else {
      const r = s.text.push(s.generated);
      delta = r.delta;
      if (r.stop) finish = "stop";
      else if (s.generated.length >= s.params.maxTokens || s.params.prompt.length + s.generated.length >= this.opts.slotTokens) {
        finish = "length";
        delta += s.text.finish(s.generated);
      }
    }
    s.events.onToken?.(id, delta);
    if (finish) {
      s.done = true;
      s.events.onEnd({ finish, completionTokens: s.generated.length, text: s.text.text });
      return;
    }
    s.pending = [id];
  }

  /**
   * A task row's next id (sampled by a step, or forced between steps): its token event, then what
   * it asks for, as the Session run decides at that token (src/model/session.ts, onegen/loop.ts):
   * a query token (retrievals left) is searched, and injects when the task does; an id that
   * completes a forcing pattern is followed by the forced id; the row ends at EOS, max_tokens
   * ("max-tokens") or a full slot ("context-full"), after the retrieval of a last query token.
   * Work between steps is left in s.action for runActions; the ids already sampled after this one
   * by steps in flight are dropped when that work replaces them (injection, forced id).
   */
  private acceptTaskId(s: Sequence, id: number, kind: "generated" | "forced"): void {
    const task = s.params.task!;
    if (s.action) {
      // sampled while a search of an earlier id is pending (no skip): its events follow the search's
      s.deferred.push(id);
      return;
    }
    s.generated.push(id);
    s.ids.push(id);
    const position = s.ids.length - 1;
    this.emit(s, { type: "token", id, position, kind });
    let end: FinishReason | null = null;
    if (this.eos.has(id) && !s.params.ignoreEos) end = "eos";
    else if (s.generated.length >= s.params.maxTokens) end = "max-tokens";
    else if (s.params.prompt.length + s.injected + s.generated.length >= this.opts.slotTokens) end = "context-full";
    const r = task.retrieval;
    const search = !!r && r.index.count > 0 && id === r.queryTokenId && s.retrievals < r.maxRetrievals;
    if (search) s.retrievals++;
    const force = end ? null : forcedAfter(s.ids, task.forceAfter);
    if (!search && force === null) {
      if (end) this.endTask(s, end);
      else s.pending = [id];
      return;
    }
    // an injection or a forced id replaces whatever the steps in flight sampled after this id
    const skips = force !== null || (search && !!r!.inject) || end !== null;
    // the step that fed the id (when one did: not a last id, nor a forced one) holds its hidden state
    const fedBy = search && kind === "generated" ? (s.fedBy.find((f) => f.position === position)?.serial ?? null) : null;
    s.action = { position, search, force, end, skips, fedBy };
    if (skips) {
      s.skipThrough = this.serial;
      s.deferred.length = 0;
    }
  }

  private emit(s: Sequence, e: TaskEvent): void {
    s.params.task!.onEvent(e);
  }

  private endTask(s: Sequence, finish: FinishReason): void {
    if (s.done) return;
    s.done = true;
    s.action = null;
    this.emit(s, { type: "done", finish, length: s.ids.length });
    s.events.onEnd({ finish: finish === "eos" || finish === "stop-string" ? "stop" : "length", completionTokens: s.generated.length, text: "" });
  }

  /**
   * Task rows' work between steps (the loop holds the device; the step in flight, which fed the
   * row's id, is queue-ordered before it): the search at the id's final-norm hidden state, the
   * injection or forced id prefilled into the row's slot right after it, the next id sampled into
   * next[slot] (the row's next step feeds it, as a joiner's first id).
   */
  private async runActions(): Promise<void> {
    for (const s of this.active) {
      const a = s.action;
      if (!a || s.done || s.cancelled) continue;
      s.action = null;
      if (a.join) {
        await this.joinTask(s);
        continue;
      }
      const task = s.params.task!;
      const r = task.retrieval;
      if (a.search && r) {
        // the step that fed the id holds its hidden state; an id no step fed (the row's last id)
        // takes a one-row forward that writes its own cache row
        const hits = await this.searchAt(s, a.position, r.index, r.k, a.fedBy !== null ? { step: a.fedBy } : "own");
        this.emit(s, { type: "retrieval", position: a.position, source: "generated", hits });
        if (r.inject && hits.length > 0) {
          const ids = this.injectHit(s, a.position, a.position + 1, r.index, r.inject, hits[0]!);
          if (!ids) continue;
          if (a.end) {
            this.endTask(s, a.end);
            continue;
          }
          s.injectSteps++;
          await this.prefillAfter(s, a.position + 1, ids, s.generated.length + s.injectSteps);
          continue;
        }
      }
      if (a.end) {
        this.endTask(s, a.end);
        continue;
      }
      if (a.force !== null) {
        await this.prefillAfter(s, a.position + 1, [a.force], s.generated.length + 1 + s.injectSteps);
        // the forced id is a written token of the row (its events, its end checks, its own rules)
        s.pending = [];
        this.acceptTaskId(s, a.force, "forced");
        continue;
      }
      // a search alone: the row went on in the batch meanwhile; the ids accepted since follow
      const later = s.deferred.splice(0);
      for (const [i, id] of later.entries()) {
        if (s.done || s.cancelled) break;
        const next = s.action as RowAction | null; // set by an earlier acceptTaskId of this loop
        if (next) {
          if (!next.skips) s.deferred.push(...later.slice(i));
          break;
        }
        this.acceptTaskId(s, id, "generated");
      }
    }
  }

  /**
   * A task row whose prompt acts (promptActs), joining as its Session run starts
   * (src/onegen/stream.ts): the prompt prefilled into its slot, each query token in it searched
   * (source "prompt", counted against maxRetrievals); a prompt that ends with a searched query
   * token gets its injection (when the task injects), one that ends with a forcing pattern its
   * forced id; then the row rejoins the batch like any.
   */
  private async joinTask(s: Sequence): Promise<void> {
    const task = s.params.task!;
    const prompt = s.params.prompt;
    const P = prompt.length;
    if (task.bannedIds.length && !s.banned) s.banned = this.ctx.upload(Uint32Array.from(task.bannedIds), [task.bannedIds.length], "u32", "serve.banned");
    const r = task.retrieval && task.retrieval.index.count > 0 ? task.retrieval : null;
    // The prompt's query tokens are searched on the prefill's own final-norm rows, as the Session run does (src/onegen/stream.ts).
    const hidden = await this.prefillAfter(s, 0, prompt, 0, r !== null && prompt.includes(r.queryTokenId));
    let last: { position: number; hits: RetrievalHit[] } | null = null;
    try {
      if (r) {
        for (let q = 0; q < P && s.retrievals < r.maxRetrievals; q++) {
          if (prompt[q] !== r.queryTokenId) continue;
          s.retrievals++;
          const hits = await this.searchAt(s, q, r.index, r.k, { rows: hidden!, row: q });
          this.emit(s, { type: "retrieval", position: q, source: "prompt", hits });
          last = { position: q, hits };
        }
      }
    } finally {
      hidden?.dispose();
    }
    if (r?.inject && last && last.position === P - 1 && last.hits.length > 0) {
      const ids = this.injectHit(s, last.position, P, r.index, r.inject, last.hits[0]!);
      if (!ids) return;
      await this.prefillAfter(s, P, ids, 0); // before decoding: no step of the Session run
      return;
    }
    const force = forcedAfter(s.ids, task.forceAfter);
    if (force !== null) {
      await this.prefillAfter(s, P, [force], 1);
      this.acceptTaskId(s, force, "forced");
    }
  }

  /**
   * The top hit's document as the ids injected after the query token at `position` (fed from
   * cache row `start`): appended to the row's ids and reported; null when they do not fit the
   * slot (the refusal reported, the row ended "context-full", as the Session run does).
   */
  private injectHit(s: Sequence, position: number, start: number, index: DocumentIndex, inject: NonNullable<RowTask["retrieval"]>["inject"] & object, hit: RetrievalHit): number[] | null {
    const ids = injectionIds(index, index.entry(hit.entry).document, inject);
    if (!injectionFits(position, ids.length, this.opts.slotTokens)) {
      this.emit(s, { type: "injection", position, refused: true });
      this.endTask(s, "context-full");
      return null;
    }
    s.ids.push(...ids);
    s.injected += ids.length;
    this.emit(s, { type: "injection", position, start, ids, document: hit.id });
    return ids;
  }

  /**
   * The index's cosine top-k (DocumentIndex.search, the Session run's search; one readback) at
   * the final-norm hidden state of the id at position `p` of `s`'s slot, taken from:
   *   { step: n }: step n fed the id (its input row at the row's slot): that step's own final-norm
   *     row (stepHidden; no forward). The search is encoded between steps by runActions, queue-
   *     ordered after step n (the step in flight, or, for a joining row's first id, the step
   *     before it) and before any later step is encoded, so stepHidden still holds step n's rows
   *     (checked by serial: otherwise a one-row forward of the id whose k/v go to the embedding
   *     slot, the row the step wrote staying as it was);
   *   { rows, row }: a prefill fed it (a joining prompt's query token, joinTask): row `row` of
   *     that prefill's final-norm rows [T, D] (no forward);
   *   "own": no step fed it (a row's last id): a one-row forward of the id whose k/v go to its own
   *     row of the slot and whose attention reads the slot's rows up to it.
   */
  private async searchAt(s: Sequence, p: number, index: DocumentIndex, k: number, from: { step: number } | { rows: Tensor; row: number } | "own"): Promise<RetrievalHit[]> {
    const t0 = performance.now();
    const ctx = this.ctx;
    let plan: ReturnType<SlotRows["upload"]> | null = null;
    let hidden: Tensor | null = null;
    try {
      let query: Tensor;
      const D = this.decoder.hiddenSize;
      if (typeof from === "object" && "rows" in from) {
        ctx.copy(from.rows.buffer, 4 * D * from.row, this.queryRow!.buffer, 0, 4 * D);
        query = this.queryRow!;
        this.stats.searchesFromPrefill++;
      } else if (typeof from === "object" && this.stepHiddenSerial[from.step & 1] === from.step) {
        ctx.copy(this.stepHidden![from.step & 1]!.buffer, 4 * D * s.slot, this.queryRow!.buffer, 0, 4 * D);
        query = this.queryRow!;
        this.stats.searchesFromStep++;
      } else {
        const R = this.opts.slotTokens;
        const rows = new SlotRows(1, R, this.decoder.config.slidingWindow ?? 0);
        rows.put(0, s.slot, p, s.ids[p]!);
        // a step fed the id but its rows are gone: the forward's k/v go to the embedding slot's first
        // row (the row the step wrote stays as it was written)
        if (from !== "own") rows.rows[0] = this.opts.maxBatch * R;
        plan = rows.upload(ctx, "search");
        hidden = (await this.decoder.forward(this.cache, plan, { logitsRows: "none", keepHidden: true })).hidden!;
        query = hidden;
        this.stats.searchForwards++;
      }
      const hits = await index.search(query, k); // the cosine top-k, ids and scores in one readback
      ctx.throwPendingErrors();
      return hits;
    } finally {
      for (const x of [plan?.ids, plan?.ropePositions, plan?.cacheRows, plan?.ranges, hidden]) x?.dispose();
      this.stats.searchMs += performance.now() - t0;
    }
  }

  /**
   * Prefills `ids` at positions p.. of `s`'s slot and samples the id after them into next[slot]
   * (at the Session run's sampler step `step`); the row rejoins the batch at the next step.
   * keepHidden: returns the prefill's final-norm rows [ids.length, D] (the caller disposes them).
   */
  private async prefillAfter(s: Sequence, p: number, ids: readonly number[], step: number, keepHidden = false): Promise<Tensor | null> {
    const ctx = this.ctx;
    const rows = new SlotRows(ids.length, this.opts.slotTokens, this.decoder.config.slidingWindow ?? 0);
    ids.forEach((id, t) => rows.put(t, s.slot, p + t, id));
    const plan = rows.upload(ctx, "inject");
    const last = ctx.upload(Uint32Array.of(ids.length - 1), [1], "u32", "serve.inject.last");
    let logits: Tensor | null = null;
    let hidden: Tensor | null = null;
    try {
      const out = await this.decoder.forward(this.cache, plan, { logitsRows: last, keepHidden });
      logits = out.logits!;
      hidden = out.hidden;
      ctx.copy(logits.buffer, 0, this.scratch.buffer, 0, 4 * this.decoder.vocabSize);
      await this.sampleScratch(s, step);
    } catch (e) {
      hidden?.dispose();
      throw e;
    } finally {
      for (const x of [plan.ids, plan.ropePositions, plan.cacheRows, plan.ranges, last, logits]) x?.dispose();
    }
    this.stats.tokensFed += ids.length;
    s.fedBy.length = 0; // the rows from p on are the prefill's now
    s.fed = p + ids.length;
    s.sampled = s.generated.length;
    s.rejoin = true;
    s.pending = [];
    return hidden;
  }

  private async runEmbedding(ids: number[], row: number): Promise<Float32Array> {
    const ctx = this.ctx;
    const T = ids.length;
    const rows = new SlotRows(T, this.opts.slotTokens, this.decoder.config.slidingWindow ?? 0);
    for (const [p, id] of ids.entries()) rows.put(p, this.opts.maxBatch, p, id); // the embedding slot
    const plan = rows.upload(ctx, "embed");
    const D = this.decoder.hiddenSize;
    let hidden: Tensor | null = null;
    let picked: Tensor | null = null;
    const out = ctx.empty([1, D], "f32", "serve.embedding");
    try {
      hidden = (await this.decoder.forward(this.cache, plan, { logitsRows: "none", keepHidden: true })).hidden!;
      picked = await embedding(ctx, [row], hidden);
      await l2normRows(ctx, picked, out);
      const v = await out.readF32();
      ctx.throwPendingErrors();
      if (v.some((x) => !Number.isFinite(x))) throw new ApiError(500, "the embedding holds NaN or infinity (the model's activations overflowed)", "server_error", null, "non_finite");
      return v;
    } finally {
      for (const x of [plan.ids, plan.ropePositions, plan.cacheRows, plan.ranges, hidden, picked, out]) x?.dispose();
    }
  }
}

/** Captured mode: a submitted step whose ids are not read back yet. */
interface InFlight {
  b: number;
  /** The step's serial number (Sequence.skipThrough). */
  serial: number;
  /** The sequences fed, and whether the step joined them (their first id is their input row). */
  rows: { s: Sequence; joining: boolean }[];
  bytes: Promise<Uint8Array>;
}

/** Captured mode: the step buffers, [maxBatch] rows each. */
interface StepBuffers {
  /** u32: this step's input ids (copied from `next` by the program). */
  ids: Tensor;
  /** u32: RoPE position of each row (host-written per step). */
  pos: Tensor;
  /** u32: cache row of each row. */
  rows: Tensor;
  /** u32 [·, 2]: cache rows each row attends to. */
  ranges: Tensor;
  /** f32 [·, V]. */
  logits: Tensor;
  /** u32 [2·maxBatch]: a step of width b reads back [inputs (b), sampled ids (b)]. */
  out: Tensor;
}

/** Captured mode: the step program of width b and its views of the step buffers' first b rows. */
interface Bucket extends StepBuffers {
  b: number;
  program: CapturedProgram;
  /** The greedy sampler the program encodes. */
  sampler: DispatchPlan;
  /** f32 [b, D]: the program's final-norm rows (the forward's, pinned by the program). */
  hidden: Tensor;
}

function disposeBucket(b: Bucket): void {
  b.program.dispose();
  b.sampler.dispose();
  b.hidden.dispose();
}

/**
 * GPU bytes of the captured step's buffers: logits [maxBatch, V] f32, eight u32 words per row (ids,
 * position, cache row, range, readback, next), the final-norm rows of two steps kept for searches
 * [2, maxBatch, D] f32 and the searched row [D] f32.
 */
export function engineStepBytes(decoder: Pick<Decoder, "config">, maxBatch: number): number {
  const D = decoder.config.hiddenSize;
  return maxBatch * (decoder.config.vocabSize * 4 + 8 * 4 + 2 * D * 4) + D * 4;
}

/**
 * Rows of the captured step when slots 0..top−1 hold the highest busy one: top itself up to 8;
 * above, the next power of two (at most maxBatch). Each width's program pins its own forward
 * temporaries (src/gpu/capture.ts), so widths are few: Σ widths ≤ 36 + 2·maxBatch rows, and a
 * step computes at most twice the rows in use (free rows are holes).
 */
export function stepWidth(top: number, maxBatch: number): number {
  if (top <= 8) return Math.min(top, maxBatch);
  let b = 16;
  while (b < top) b *= 2;
  return Math.min(b, maxBatch);
}

/**
 * Refuses an engine whose cache does not fit what is left of the GPU memory budget and its step
 * buffers (before allocating), with `interleaved` (the sessions of retrieval requests running at
 * once: their count and the bytes of each) planned beside them.
 */
export function checkEngineFits(ctx: GpuContext, decoder: Pick<Decoder, "config">, maxBatch: number, slotTokens: number, interleaved?: { count: number; bytesEach: number }): void {
  const cache = engineCacheBytes(decoder, maxBatch, slotTokens);
  const step = engineStepBytes(decoder, maxBatch);
  const sessions = interleaved ? interleaved.count * interleaved.bytesEach : 0;
  const bytes = cache + step + sessions;
  if (bytes > ctx.memoryAvailable) {
    const extra = interleaved ? ` and ${interleaved.count} retrieval session(s) of ${interleaved.bytesEach} bytes each` : "";
    throw new GpuOutOfMemoryError(
      `serve: the KV cache of ${maxBatch} + 1 slots × ${slotTokens} tokens (${cache} bytes) and the step buffers of ${maxBatch} rows (${step} bytes, the logits mostly)${extra} need ${bytes} bytes, more than the ${ctx.memoryAvailable} bytes left of the GPU memory budget (${ctx.memoryBudget.source})`,
      interleaved ? "lower --max-batch, --max-retrievals or --context, or raise --gpu-memory" : "lower --max-batch or --context, or raise --gpu-memory",
    );
  }
}

/** Whether a task row's prompt holds a query token (with retrieval) or ends with a forcing pattern: it then joins by joinTask. */
function promptActs(prompt: readonly number[], task: RowTask): boolean {
  const r = task.retrieval;
  if (r && r.index.count > 0 && r.maxRetrievals > 0 && prompt.includes(r.queryTokenId)) return true;
  return forcedAfter(prompt, task.forceAfter) !== null;
}

/** The id a forcing rule puts after `ids` (their last ids are its pattern), or null. */
export function forcedAfter(ids: readonly number[], rules: RowTask["forceAfter"]): number | null {
  for (const r of rules) {
    const n = r.pattern.length;
    if (n === 0 || ids.length < n) continue;
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = ids[ids.length - n + i] === r.pattern[i];
    if (ok) return r.token;
  }
  return null;
}
