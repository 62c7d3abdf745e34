// Decode hooks: extra per-step work plugged into Session.generate's captured decode step (modelled
// on web-llm's LogitProcessor and transformers.js's LogitsProcessorList). The decode step is built
// once per generate() call into a fixed list of dispatches (src/model/decode-step.ts) and replayed
// at every step, so a hook ENCODES ITS WORK ONCE, when the step is built; what it encoded then runs
// at every step, with no host work and no host readback:
//
//   logits rules → sample into `token` → advance (rows fed this step: the token, or the L rows of an
//   injection a hook planned at the previous step; history record; context; step state)
//   → hook.beforeForward(step)   (e.g. detect a query token, write the hook's record word)
//   → forward of the T live rows (T = step[STEP_ROWS], read on the GPU)
//   → hook.afterForward(step, hidden)   (e.g. a search gated on the GPU; plan an injection: write
//     its ids into step.plan and L into step[STEP_PENDING]; the next step feeds them)
//
// Kernels of a hook find the current step on the GPU: after advance, step[STEP_COUNT] − 1 is the
// step index j, and the hook's record word is history[stride·j + recordOffset].
//
// After the readback of a batch, hook.onToken(tok, record, j) runs on the host for every generated
// token in order: it can annotate the token, report ids it injected (the session appends them to
// its host mirror) and end generation. Steps that fed an injection produce no token.
//
// With no hook the step encodes exactly what plain decoding encodes. A hook that injects declares
// its largest injection (maxInjectRows: the step's row buffers are sized by it) and plans only
// injections that fit the cache with one more token (src/onegen/loop.ts: injectionFits).

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import type { GeneratedToken } from "./session.js";

/** What a generated token can carry from a hook (see GeneratedToken.injected). */
export type Injected = { ids: number[]; document: string; start: number } | { refused: true };

/** The decode step as a hook sees it when the step is built (GPU tensors of the session's decode state). */
export interface DecodeStep {
  ctx: GpuContext;
  /** u32 [STEP_WORDS]: the step state (src/ops/step-state.ts): newest position, rows, step count, pending injection. */
  step: Tensor;
  /** u32 [1]: the id sampled at this step. */
  token: Tensor;
  /** u32 [maxRows]: the ids fed this step (the first step[STEP_ROWS] are live). */
  rows: Tensor;
  /** u32 [capacity]: all context ids. */
  context: Tensor;
  /** f32 [1, V]: the logits the next step samples from. */
  logits: Tensor;
  /** u32: per step, the id fed (or INJECTED_ID) then the hooks' record words (stride words per step). */
  history: Tensor;
  /** Words per step in `history`. */
  stride: number;
  /** This hook's first word within a step's record (-1 when recordWords is 0). */
  recordOffset: number;
  /** Steps `history` holds (rings a hook keeps per step need as many slots). */
  maxSteps: number;
  /** u32 [maxInjectRows]: where an injecting hook writes the ids the next step feeds (a dummy [1] when no hook injects). */
  plan: Tensor;
  /** Session capacity (cache rows) and sliding window (0: full causal). */
  capacity: number;
  window: number;
}

export interface HookOutcome {
  /** Ids the hook injected after this token (the next step feeds them into the cache). */
  injectedIds?: readonly number[];
  /** End generation after this token. */
  stop?: "context-full";
}

export interface DecodeHook {
  /**
   * u32 words the hook keeps per step in the history (0: none). They come back to the host in the
   * same readback as the ids, so whatever a hook reports per step (e.g. a search's hits) costs no
   * readback of its own.
   */
  readonly recordWords: number;
  /** The forward keeps the final-norm hidden state of the last live row ([1, D]) for afterForward. */
  readonly needsHidden: boolean;
  /** Most rows one injection adds (0: the hook never injects). */
  readonly maxInjectRows: number;
  /** Called once per generate() before the step is built, with the number of steps it may run. */
  begin?(steps: number): void | Promise<void>;
  /** Encodes (once) work that runs at every step after advance, before the forward. */
  beforeForward?(step: DecodeStep): Promise<void>;
  /** Encodes (once) work that runs at every step after the forward; `hidden` is [1, D] or null. */
  afterForward?(step: DecodeStep, hidden: Tensor | null): Promise<void>;
  /**
   * Host side, after the readback, for every generated token in order: `record` is the hook's first
   * record word of step j, `words` all its recordWords words of that step (empty when it keeps none).
   */
  onToken?(tok: GeneratedToken, record: number, j: number, words: Uint32Array): Promise<HookOutcome | void>;
  /** Called once when generate() ends (buffers can be released). */
  end?(): void;
}
