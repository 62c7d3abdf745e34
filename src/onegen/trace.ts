// The trace of one OneGen run (`onegen run --trace FILE.json`): every id of the session in order,
// what produced each stretch of them, and every retrieval with the position of the query token
// whose final-norm hidden state was searched.
//
//   {"ids": [...],
//    "segments": [{"kind": "prompt"|"generated"|"forced"|"injected", "start", "end"}],   [start, end) in ids
//    "retrievals": [{"position": p, "hits": [{"id", "fragment", "score"}]}]}              ids[p] is the query token
//
// Segments cover ids exactly, in order, without gaps; neighbouring tokens of the same kind share one
// segment. "forced" = a forceAfter rule produced the token (its pattern precedes it, detected on the
// host); "injected" = a retrieved document wrapped in its prefix/suffix ids (in the loop on the GPU,
// or by the host after a prompt that ends with a query token). Retrievals are in position order.

import { UsageError } from "../errors.js";

export type SegmentKind = "prompt" | "generated" | "forced" | "injected";

export interface TraceSegment {
  kind: SegmentKind;
  start: number;
  end: number;
}

export interface TraceHit {
  id: string;
  fragment: number;
  score: number;
}

export interface TraceRetrieval {
  position: number;
  hits: TraceHit[];
}

export interface Trace {
  ids: number[];
  segments: TraceSegment[];
  retrievals: TraceRetrieval[];
}

/** Builds a Trace as ids arrive; consecutive ids of one kind are merged into one segment. */
export class TraceBuilder {
  private readonly ids: number[] = [];
  private readonly segments: TraceSegment[] = [];
  private readonly retrievals: TraceRetrieval[] = [];

  /** Appends ids of one kind (the next positions). */
  push(kind: SegmentKind, ids: readonly number[]): void {
    if (ids.length === 0) return;
    const start = this.ids.length;
    this.ids.push(...ids);
    const last = this.segments[this.segments.length - 1];
    if (last && last.kind === kind && last.end === start) last.end = this.ids.length;
    else this.segments.push({ kind, start, end: this.ids.length });
  }

  /** Records a retrieval at `position`, which must already hold the query token. */
  retrieval(position: number, hits: readonly TraceHit[]): void {
    if (!Number.isInteger(position) || position < 0 || position >= this.ids.length) {
      throw new UsageError(`trace: retrieval at position ${position}, but the trace holds ${this.ids.length} ids`);
    }
    this.retrievals.push({ position, hits: hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score })) });
  }

  get length(): number {
    return this.ids.length;
  }

  toJSON(): Trace {
    return {
      ids: [...this.ids],
      segments: this.segments.map((s) => ({ ...s })),
      retrievals: [...this.retrievals].sort((a, b) => a.position - b.position).map((r) => ({ position: r.position, hits: r.hits.map((h) => ({ ...h })) })),
    };
  }
}

/**
 * Checks a trace's internal consistency: segments cover ids in order without gaps or overlaps,
 * every retrieval position is in range, holds `queryTokenId` (when given) and is not inside an
 * injected segment, and positions increase. Returns the list of problems (empty = consistent).
 */
export function checkTrace(trace: Trace, queryTokenId?: number): string[] {
  const problems: string[] = [];
  let at = 0;
  for (const [i, s] of trace.segments.entries()) {
    if (s.start !== at) problems.push(`segment ${i} (${s.kind}) starts at ${s.start}, expected ${at}`);
    if (!(s.end > s.start)) problems.push(`segment ${i} (${s.kind}) is empty or reversed: [${s.start}, ${s.end})`);
    at = s.end;
  }
  if (at !== trace.ids.length) problems.push(`segments end at ${at}, the trace holds ${trace.ids.length} ids`);
  let prev = -1;
  for (const r of trace.retrievals) {
    if (r.position <= prev) problems.push(`retrieval positions are not increasing (${prev} then ${r.position})`);
    prev = r.position;
    if (r.position < 0 || r.position >= trace.ids.length) {
      problems.push(`retrieval at ${r.position} is outside the ids`);
      continue;
    }
    if (queryTokenId !== undefined && trace.ids[r.position] !== queryTokenId) {
      problems.push(`retrieval at ${r.position}: ids[${r.position}] is ${trace.ids[r.position]}, not the query token ${queryTokenId}`);
    }
    const seg = trace.segments.find((s) => s.start <= r.position && r.position < s.end);
    if (seg?.kind === "injected") problems.push(`retrieval at ${r.position} lies inside an injected segment`);
  }
  return problems;
}
