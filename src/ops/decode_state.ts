// GPU-side decode bookkeeping (kernels/decode_state.wgsl): the decode step's advance (the rows
// fed after a sampled token or a planned injection) and two logits rules, force-after and
// copy-input. They keep the decode loop free of host writes, so several steps share one submit.

import type { GpuContext } from "../gpu/context.js";
import type { KernelVariant } from "../gpu/kernels.js";
import type { Tensor } from "../gpu/tensor.js";
import { ShapeError } from "../errors.js";
import { expectDType, expectShape, Params } from "./common.js";
import { dispatchPlan, type DispatchPlan } from "./dispatch-plan.js";
import { expectStepState } from "./step-checks.js";
import { INJECTED_ID, STEP_COUNT, STEP_LAST, STEP_PENDING, STEP_ROWS } from "./step-state.js";
import { NONFINITE_ID } from "./sample.js";

const FORCE_WG = 256;
const ADVANCE_ROWS_WG = 64;

const FORCE: KernelVariant = {
  file: "decode_state",
  name: `force_after_wg${FORCE_WG}`,
  defines: { ADVANCE_ROWS: false, COPY: false, WG: FORCE_WG },
  bindings: ["read", "read", "read", "read_write", "uniform"],
};
const COPY: KernelVariant = {
  file: "decode_state",
  name: `copy_input_wg${FORCE_WG}`,
  defines: { ADVANCE_ROWS: false, COPY: true, WG: FORCE_WG },
  bindings: ["read", "read", "read", "read_write", "uniform"],
};

/** The decode step's advance (entry point advance_rows, see advanceRows). */
export const ADVANCE_ROWS: KernelVariant = {
  file: "decode_state",
  name: `decode_advance_rows_wg${ADVANCE_ROWS_WG}`,
  defines: { ADVANCE_ROWS: true, COPY: false, WG: ADVANCE_ROWS_WG },
  bindings: ["read", "read", "read_write", "read_write", "read_write", "read_write", "uniform"],
  entryPoint: "advance_rows",
};

/** "No id" in a copy-input table. */
export const COPY_NONE = 0xffffffff;

/**
 * Output constrained to the source ids with mention markup (entity linking): the generated ids,
 * with the markup removed, must spell the source. A source id with a leading space may also be
 * written as the lone-space id, then the mention opener, then its space-less twin (how
 * "a <MENTION>Name" tokenizes when the source says "a Name").
 */
export interface CopyInputRule {
  /** The source ids, in order. */
  source: readonly number[];
  /** Per source id: the id of the same text without its leading space, or COPY_NONE. */
  twins: readonly number[];
  /** The lone-space id, or COPY_NONE. */
  space: number;
  open: number;
  close: number;
  /** The query token written after `close` ([LK]) and the one after it ([_CONTINUE_]). */
  query: number;
  cont: number;
  /** Ids allowed once the whole source has been written outside a mention. */
  endIds: readonly number[];
}

/**
 * The table `copyInput` reads (source ids, their twins, the end ids), after checking every id of
 * `rule` against the vocabulary once (twins and space may be COPY_NONE).
 */
export function copyInputTable(rule: CopyInputRule, vocab: number): Uint32Array {
  if (rule.twins.length !== rule.source.length) throw new ShapeError(`copyInput: ${rule.twins.length} twins for ${rule.source.length} source ids`);
  const check = (what: string, id: number, none: boolean) => {
    if (none && id === COPY_NONE) return;
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ShapeError(`copyInput: ${what} id ${id} is outside the vocabulary (${vocab})`);
  };
  for (const id of rule.source) check("source", id, false);
  for (const id of rule.twins) check("twin", id, true);
  for (const id of rule.endIds) check("end", id, false);
  check("space", rule.space, true);
  for (const [what, id] of [["open", rule.open], ["close", rule.close], ["query", rule.query], ["cont", rule.cont]] as const) check(what, id, false);
  return Uint32Array.from([...rule.source, ...rule.twins, ...rule.endIds]);
}

/**
 * Masks `logits` (one row, in place) to the ids `rule` allows after context[start ..= last],
 * last = position[0] read on the GPU. `table` = copyInputTable(rule, V), which checked the ids.
 */
export async function copyInput(ctx: GpuContext, context: Tensor, table: Tensor, position: Tensor, logits: Tensor, start: number, rule: CopyInputRule): Promise<void> {
  expectDType(context, ["u32"], "copyInput", "context");
  expectDType(table, ["u32"], "copyInput", "table");
  expectDType(position, ["u32"], "copyInput", "position");
  expectDType(logits, ["f32"], "copyInput", "logits");
  const V = logits.shape[logits.shape.length - 1]!;
  if (logits.numel !== V) throw new ShapeError(`copyInput: logits ('${logits.label}') must hold one row, got [${logits.shape.join(", ")}]`);
  const n = rule.source.length;
  if (table.numel !== 2 * n + rule.endIds.length) throw new ShapeError(`copyInput: table ('${table.label}') holds ${table.numel} ids, the rule needs ${2 * n + rule.endIds.length}`);
  const k = await ctx.kernels.get(COPY);
  const p = new Params().u32(start).u32(n).u32(rule.endIds.length).u32(V).u32(rule.space).u32(rule.open).u32(rule.close).u32(rule.query).u32(rule.cont).f32(-Infinity);
  ctx.dispatch(k, [context, table, position, logits], p.bytes(), [1]);
}

/** CPU reference of copyInput: the allowed ids after `generated` (null: no constraint). */
export function copyInputAllowed(generated: readonly number[], rule: CopyInputRule): Set<number> | null {
  const { source, twins } = rule;
  const n = source.length;
  let i = 0;
  let half = false;
  let m = 0; // 0 outside, 1 opened, 2 inside, 3 closed, 4 after the query token
  for (const x of generated) {
    if (m === 3) {
      if (x !== rule.query) return null;
      m = 4;
    } else if (m === 4) {
      if (x !== rule.cont) return null;
      m = 0;
    } else if (x === rule.open && m === 0 && i < n) m = 1;
    else if (x === rule.close && m === 2) m = 3; // half is only ever set outside a mention
    else if (half) {
      if (x !== twins[i]) return null;
      i++;
      half = false;
      if (m === 1) m = 2;
    } else if (i < n && x === source[i]) {
      i++;
      if (m === 1) m = 2;
    } else if (i < n && m === 0 && x === rule.space && twins[i] !== COPY_NONE) half = true;
    else return null;
  }
  const ok = new Set<number>();
  if (m === 3) ok.add(rule.query);
  else if (m === 4) ok.add(rule.cont);
  else if (half) {
    ok.add(twins[i]!);
    if (m === 0) ok.add(rule.open);
  } else {
    if (i < n) {
      ok.add(source[i]!);
      if (m === 0 && twins[i] !== COPY_NONE) ok.add(rule.space);
      if (m === 0) ok.add(rule.open);
    }
    if (m === 2) ok.add(rule.close);
    if (m === 0 && i === n) for (const e of rule.endIds) ok.add(e);
  }
  ok.delete(COPY_NONE);
  return ok;
}

/**
 * With last = position[0] (read on the GPU): if context[last-n+1..=last] equals `pattern`, all
 * logits but `forcedId` become -inf (in place).
 */
export async function forceAfter(ctx: GpuContext, context: Tensor, pattern: Tensor, logits: Tensor, position: Tensor, forcedId: number): Promise<void> {
  expectDType(context, ["u32"], "forceAfter", "context");
  expectDType(position, ["u32"], "forceAfter", "position");
  expectDType(pattern, ["u32"], "forceAfter", "pattern");
  expectDType(logits, ["f32"], "forceAfter", "logits");
  const V = logits.shape[logits.shape.length - 1]!;
  if (logits.numel !== V) throw new ShapeError(`forceAfter: logits ('${logits.label}') must hold one row, got [${logits.shape.join(", ")}]`);
  if (forcedId >= V) throw new ShapeError(`forceAfter: forced id ${forcedId} is outside the vocabulary (${V})`);
  const k = await ctx.kernels.get(FORCE);
  ctx.dispatch(k, [context, pattern, position, logits], new Params().u32(0).u32(pattern.numel).u32(forcedId).u32(V).f32(-Infinity).bytes(), [1]);
}

export function forceAfterReference(context: ArrayLike<number>, pattern: ArrayLike<number>, logits: Float32Array, last: number, forcedId: number): Float32Array {
  const out = logits.slice();
  const n = pattern.length;
  if (n === 0 || last + 1 < n) return out;
  for (let i = 0; i < n; i++) if (context[last + 1 - n + i] !== pattern[i]) return out;
  for (let v = 0; v < out.length; v++) if (v !== forcedId) out[v] = -Infinity;
  return out;
}

// ------------------------------------------------------------------ the decode step's advance

export interface AdvanceRowsBuffers {
  /** u32 [1]: the id just sampled. */
  token: Tensor;
  /** u32 [maxRows]: a hook's planned injection ids (any u32 [maxRows] when no hook plans). */
  plan: Tensor;
  /** u32 [8]: the step state (read and written). */
  step: Tensor;
  /** u32 [maxRows]: the ids fed this step (written). */
  rows: Tensor;
  /** u32 [capacity]: every id in the cache (written at LAST + 1 .. LAST + T). */
  context: Tensor;
  /** u32: one word per step at history[stride·j] (the sampled id, or INJECTED_ID); words past its end are not written. */
  history: Tensor;
  /** History words per step (default 1). */
  stride?: number;
}

/**
 * Plans the decode step's advance (kernels/decode_state.wgsl, entry point advance_rows): with
 * j = step[COUNT], either the planned injection (PENDING = L > 0: T = min(L, maxRows) rows from
 * `plan`, history[stride·j] = INJECTED_ID, PENDING cleared) or the sampled token (T = 1,
 * NONFINITE_ID fed as id 0 but recorded unchanged in history); the rows are appended to `context`,
 * LAST += T, ROWS = T, COUNT = j + 1. One dispatch of one workgroup; encode() per token.
 */
export async function planAdvanceRows(ctx: GpuContext, b: AdvanceRowsBuffers): Promise<DispatchPlan> {
  const op = "advanceRows";
  const stride = b.stride ?? 1;
  for (const n of ["token", "plan", "step", "rows", "context", "history"] as const) expectDType(b[n], ["u32"], op, n);
  expectStepState(op, b.step);
  expectShape(b.token, [1], op, "token");
  if (b.rows.shape.length !== 1) throw new ShapeError(`${op}: rows ('${b.rows.label}') has shape [${b.rows.shape.join(", ")}], expected [maxRows]`);
  const maxRows = b.rows.shape[0]!;
  if (b.plan.numel < maxRows) throw new ShapeError(`${op}: plan ('${b.plan.label}') holds ${b.plan.numel} ids, fewer than maxRows ${maxRows} (rows '${b.rows.label}')`);
  if (!Number.isInteger(stride) || stride < 1) throw new ShapeError(`${op}: history stride ${stride} must be a positive integer`);
  const kernel = await ctx.kernels.get(ADVANCE_ROWS);
  const params = new Params().u32(b.context.numel).u32(stride).u32(maxRows).u32(0).bytes();
  return dispatchPlan(ctx, ADVANCE_ROWS.name, [{ kernel, resources: [b.token, b.plan, b.step, b.rows, b.context, b.history], params, workgroups: [1] }]);
}

/** One-shot (tests). */
export async function advanceRows(ctx: GpuContext, b: AdvanceRowsBuffers): Promise<void> {
  (await planAdvanceRows(ctx, b)).encode(ctx);
}

/** CPU reference of advanceRows: returns updated copies of step, rows, context and history. */
export function advanceRowsReference(
  s: { token: number; plan: ArrayLike<number>; step: Uint32Array; rows: Uint32Array; context: Uint32Array; history: Uint32Array },
  stride = 1,
): { step: Uint32Array; rows: Uint32Array; context: Uint32Array; history: Uint32Array } {
  const step = s.step.slice();
  const rows = s.rows.slice();
  const context = s.context.slice();
  const history = s.history.slice();
  const j = step[STEP_COUNT]!;
  const pending = step[STEP_PENDING]!;
  const last = step[STEP_LAST]!;
  const inject = pending > 0;
  const T = inject ? Math.min(pending, rows.length) : 1;
  // u32 arithmetic, as the kernel's (LAST = 0xffffffff before anything is fed wraps to 0)
  for (let t = 0; t < T; t++) {
    const raw = inject ? s.plan[t]! : s.token;
    const id = raw === NONFINITE_ID ? 0 : raw;
    rows[t] = id;
    const p = (last + 1 + t) >>> 0;
    if (p < context.length) context[p] = id;
  }
  const h = Math.imul(stride, j) >>> 0;
  if (h < history.length) history[h] = inject ? INJECTED_ID : s.token;
  step[STEP_LAST] = (last + T) >>> 0;
  step[STEP_ROWS] = T;
  step[STEP_COUNT] = j + 1;
  step[STEP_PENDING] = 0;
  return { step, rows, context, history };
}
