// Reading task results out of the model's output: the mentions an entity-linking output annotates
// (as text or ids), their spans in the input, and the answer between multi-hop QA's markers.

import { UsageError } from "../errors.js";

/** Text as Unicode code points (spans are code-point offsets, as Python's str indices). */
const codePoints = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0)!);
const fromCodePoints = (a: readonly number[]): string => String.fromCodePoint(...a);
const isSpaceCp = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 0x0b || c === 0x0c || c === 0xa0 || (c >= 0x2000 && c <= 0x200a) || c === 0x3000;

function indexOfSeq(hay: readonly number[], needle: readonly number[], from: number, to = hay.length): number {
  for (let i = Math.max(0, from); i + needle.length <= to; i++) {
    let j = 0;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}
function lastIndexOfSeq(hay: readonly number[], needle: readonly number[], from: number, to: number): number {
  for (let i = to - needle.length; i >= Math.max(0, from); i--) {
    let j = 0;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * Mentions annotated before query tokens. `units` is the output (code points of the annotated
 * text, or token ids), `queries` the unit offsets where each query token ([LK]) starts and its
 * length in units. For each query token, the stretch since the previous query token's end must
 * end with `close` (spaces allowed in between when `space` is given); the mention is what lies
 * between the last `open` before it and `close`, trimmed of spaces. Returns [start, end) in
 * `units` per query token, or null when it is not preceded by an annotated mention.
 */
export function extractMentionRanges(
  units: readonly number[],
  queries: readonly { start: number; length: number }[],
  open: readonly number[],
  close: readonly number[],
  space: ((u: number) => boolean) | null = null,
): ([number, number] | null)[] {
  let prevEnd = 0;
  return queries.map(({ start, length }) => {
    const from = prevEnd;
    prevEnd = start + length;
    let e = start;
    while (space && e > from && space(units[e - 1]!)) e--;
    const cs = e - close.length;
    if (cs < from || indexOfSeq(units, close, cs, e) !== cs) return null;
    const os = lastIndexOfSeq(units, open, from, cs);
    if (os < 0) return null;
    let a = os + open.length;
    let b = cs;
    while (space && a < b && space(units[a]!)) a++;
    while (space && b > a && space(units[b - 1]!)) b--;
    return [a, b];
  });
}

/**
 * Character spans [start, end) (code points) of mentions in the input text, searching forward
 * from the end of the previous mapped mention: first the exact text, then the text with every
 * run of whitespace matching any run of whitespace (tokenizers add or drop spaces). A mention
 * not found (or null/empty) maps to null and does not move the search position.
 */
export function mapMentionsToInput(input: string, mentions: readonly (string | null)[]): ([number, number] | null)[] {
  return mapUnits(codePoints(input), mentions.map((m) => (m === null ? null : codePoints(m))), isSpaceCp);
}

/** The same for token ids: spans are token offsets in `input`, exact matches only. */
export function mapMentionIdsToInput(input: readonly number[], mentions: readonly (readonly number[] | null)[]): ([number, number] | null)[] {
  return mapUnits(input, mentions, null);
}

function mapUnits(input: readonly number[], mentions: readonly (readonly number[] | null)[], space: ((u: number) => boolean) | null): ([number, number] | null)[] {
  // whitespace-collapsed view of the input: norm[i] ← input[at[i]]
  let norm: number[] = [];
  let at: number[] = [];
  if (space) {
    for (let i = 0; i < input.length; i++) {
      if (space(input[i]!)) {
        if (norm.length && norm[norm.length - 1] === 32) continue;
        norm.push(32);
      } else norm.push(input[i]!);
      at.push(i);
    }
  } else {
    norm = [...input];
    at = input.map((_, i) => i);
  }
  let cursor = 0;
  return mentions.map((m) => {
    if (!m || m.length === 0) return null;
    const i = indexOfSeq(input, m, cursor);
    if (i >= 0) {
      cursor = i + m.length;
      return [i, i + m.length];
    }
    if (!space) return null;
    const nm: number[] = [];
    for (const u of m) {
      if (space(u)) {
        if (nm.length && nm[nm.length - 1] !== 32) nm.push(32);
      } else nm.push(u);
    }
    while (nm.length && nm[nm.length - 1] === 32) nm.pop();
    if (nm.length === 0) return null;
    let from = 0;
    while (from < at.length && at[from]! < cursor) from++;
    const j = indexOfSeq(norm, nm, from);
    if (j < 0) return null;
    const span: [number, number] = [at[j]!, at[j + nm.length - 1]! + 1];
    cursor = span[1];
    return span;
  });
}

/**
 * Decodes ids and returns the text with the code-point offset where each token's text begins
 * (from the decodes of every prefix; offsets are clamped to be non-decreasing, for decoders whose
 * prefixes are not prefixes of the whole, e.g. split multi-byte characters).
 */
export function decodeWithOffsets(ids: readonly number[], decode: (ids: number[]) => string): { text: string; starts: number[] } {
  const text = decode([...ids]);
  const total = codePoints(text).length;
  const starts: number[] = [];
  let prev = 0;
  for (let i = 0; i < ids.length; i++) {
    const s = Math.min(total, Math.max(prev, codePoints(decode(ids.slice(0, i))).length));
    starts.push(s);
    prev = s;
  }
  return { text, starts };
}

export interface AnnotatedMention {
  /** Index in `ids` of the query token ([LK]). */
  index: number;
  /** The mention text (text mode) or null. */
  mention: string | null;
  /** The mention's ids (ids mode) or null. */
  mentionIds: number[] | null;
}

/**
 * Mentions of an entity-linking output given as ids: one per query token in `ids`. With `decode`,
 * the ids are decoded (special tokens kept) and the markers are text; without it, markers are
 * id sequences matched on the ids.
 */
export function annotatedMentions(
  ids: readonly number[],
  queryTokenId: number,
  markers: { open: string | readonly number[]; close: string | readonly number[] },
  decode: ((ids: number[]) => string) | null,
): AnnotatedMention[] {
  const qIdx: number[] = [];
  ids.forEach((t, i) => {
    if (t === queryTokenId) qIdx.push(i);
  });
  if (decode) {
    if (typeof markers.open !== "string" || typeof markers.close !== "string") throw new UsageError("annotatedMentions: with a decoder the markers must be text");
    const { text, starts } = decodeWithOffsets(ids, decode);
    const units = codePoints(text);
    const qLen = (i: number): number => (i + 1 < ids.length ? starts[i + 1]! : units.length) - starts[i]!;
    const ranges = extractMentionRanges(units, qIdx.map((i) => ({ start: starts[i]!, length: qLen(i) })), codePoints(markers.open), codePoints(markers.close), isSpaceCp);
    return qIdx.map((index, j) => ({ index, mention: ranges[j] ? fromCodePoints(units.slice(ranges[j]![0], ranges[j]![1])) : null, mentionIds: null }));
  }
  if (typeof markers.open === "string" || typeof markers.close === "string") throw new UsageError("annotatedMentions: without a decoder the markers must be ids");
  const ranges = extractMentionRanges(ids, qIdx.map((i) => ({ start: i, length: 1 })), markers.open, markers.close, null);
  return qIdx.map((index, j) => ({ index, mention: null, mentionIds: ranges[j] ? ids.slice(ranges[j]![0], ranges[j]![1]) : null }));
}

/** The text between the first complete `open`…`close` pair, or null (OneGen: <FINAL-ANSWER>(.*?)</FINAL-ANSWER>). */
export function extractAnswer(text: string, open: string, close: string): string | null {
  const a = text.indexOf(open);
  if (a < 0) return null;
  const b = text.indexOf(close, a + open.length);
  return b < 0 ? null : text.slice(a + open.length, b);
}

/** The same on ids: the ids between the first complete open…close id sequences, or null. */
export function extractAnswerIds(ids: readonly number[], open: readonly number[], close: readonly number[]): number[] | null {
  const a = indexOfSeq(ids, open, 0);
  if (a < 0) return null;
  const b = indexOfSeq(ids, close, a + open.length);
  return b < 0 ? null : ids.slice(a + open.length, b);
}
