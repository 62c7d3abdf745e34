// Decode hooks: extra per-step work plugged into Session.generate's GPU decode loop (modelled on
// web-llm's LogitProcessor and transformers.js's LogitsProcessorList). The session calls a hook
// at fixed points of every decode step, all encoded into the same submit, with no host readback:
//
//   logits rules → sample into `token` → history[stride·j] = token → advance position/ranges/context
//   → hook.beforeForward(step)            (e.g. detect a query token, write its record word)
//   → forward(token) (hidden state kept when a hook asks for it)
//   → hook.afterForward(step, hidden)     (e.g. a gated search, a gated injection via step.inject)
//
// After the readback of a batch, hook.onToken(tok, record, j) runs on the host for every step in
// order: it can annotate the token, report ids it injected (the session appends them to its host
// mirror) and end generation.
//
// With no hook the step encodes exactly what plain decoding encodes. A hook that injects rows
// declares the worst case (maxInjectRows per injection, injectionsLeft()) so that the session
// never encodes a batch that might overflow the cache.

import type { GpuContext } from "../gpu/context.js";
import type { Tensor } from "../gpu/tensor.js";
import type { GeneratedToken } from "./session.js";

/** What a generated token can carry from a hook (see GeneratedToken.injected). */
export type Injected = { ids: number[]; document: string; start: number } | { refused: true };

/** One decode step as a hook sees it (GPU tensors of the session's decode state). */
export interface DecodeStep {
  ctx: GpuContext;
  /** Step number within this generate() call. */
  j: number;
  /** u32 [1]: the id sampled at this step (fed to the forward that follows). */
  token: Tensor;
  /** u32 [1]: its cache position (advanced before beforeForward). */
  position: Tensor;
  /** u32 [1, 2]: its attention range. */
  ranges: Tensor;
  /** u32 [capacity]: all context ids. */
  context: Tensor;
  /** f32 [1, V]: the logits the next step samples from. */
  logits: Tensor;
  /** u32: per step, the sampled id then the hooks' record words (stride words per step). */
  history: Tensor;
  /** Word index in `history` of this hook's record word for this step (-1 when recordWords is 0). */
  recordWord: number;
  /**
   * Encodes a forward of `rows` injected tokens on top of the cache, gated by flag[0] != 0 on
   * the GPU: its k/v land in the cache rows `rows.positions` names, and the logits of row
   * rows.lastRow[0] become the next step's logits. Rows are at most `rows.maxRows`.
   */
  inject(rows: InjectionRows): Promise<void>;
}

export interface InjectionRows {
  /** u32 [1]: run the injection when flag[0] != 0. */
  flag: Tensor;
  ids: Tensor;
  positions: Tensor;
  ranges: Tensor;
  /** u32 [1]: the row whose logits continue the decode. */
  lastRow: Tensor;
  maxRows: number;
}

export interface HookOutcome {
  /** Ids the hook injected after this token (already in the GPU cache). */
  injectedIds?: readonly number[];
  /** End generation after this token. */
  stop?: "context-full";
}

export interface DecodeHook {
  /** 1 when the hook keeps one u32 record word per step in the history (read back with the ids). */
  readonly recordWords: 0 | 1;
  /** The forward of the sampled token keeps its final-norm hidden state [1, D] for afterForward. */
  readonly needsHidden: boolean;
  /** Most rows one injection adds (0: the hook never injects). */
  readonly maxInjectRows: number;
  /** Injections still possible (bounds the worst case of a batch); only read when maxInjectRows > 0. */
  injectionsLeft?(): number;
  /** Called once per generate() before the first step, with the number of steps it may run. */
  begin?(steps: number): void | Promise<void>;
  beforeForward?(step: DecodeStep): Promise<void>;
  afterForward?(step: DecodeStep, hidden: Tensor | null): Promise<void>;
  /** Host side, after the readback, for every step in order; `record` is the hook's record word. */
  onToken?(tok: GeneratedToken, record: number, j: number): Promise<HookOutcome | void>;
  /** Called once when generate() ends (buffers can be released). */
  end?(): void;
}
