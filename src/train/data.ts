// OneGen's training data, read directly: train.jsonl + db.jsonl (zjunlp/OneGen,
// src/onegen/dataset/dataset.py, tokenizer/tokenizer.py, dataset/data_collator.py), validated,
// tokenized, and collated into packed training batches (src/train/model.ts TrainBatch).
//
// train.jsonl, one sample per line:
//   {"messages": [{"role": "user", "content": "..."},
//                 {"role": "assistant", "content": "... [LK] ... [LK] ...",
//                  "positive": [["uid", ...] | "uid" | null, ...],   one entry per retrieval token
//                  "negative": [["uid", ...], ...]},                 one list per retrieval token
//                 ...]}
// db.jsonl, one document per line:
//   {"uid": "Q42", "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "... [SE]"}]}
//   or {"uid": "Q42", "text": "..."} (rendered with a document template, e.g. "{text}[SE]").
// Either may give "ids" (token ids) instead of "content"/"text": pre-tokenized, no tokenizer needed.
// A uid in positive/negative is a document uid (its first document-token occurrence) or
// "uid-N" (its N-th occurrence, 0-based), as OneGen's get_doc_id_for / get_sent_id_for.
//
// Tokenization (OneGen's DocumentTemplator + onegen_tokenize): every message is one segment,
// encoded separately without BOS/EOS. Prompt segments (system, user) carry no loss; assistant
// segments are trained except spans from a mask-start to its mask-end token inclusive (OneGen's
// injected <paragraph>…</paragraph>), and except the token right after a retrieval/document
// token in an assistant segment (OneGen masks that label). The retrieval tokens of assistant
// segments are the anchors; the document tokens of a document's non-prompt segments are its
// entries. Text documents are one context segment: entries, no loss.
//
// Collation (data_collator.py): per sample, up to nPosPerSample retrieval tokens that have a
// positive are picked (seeded), each with one of its positives; each such pair gets up to
// nNegPerPos of its listed negatives (never one of its own positives), topped up with random
// database entries when the list is short (OneGen does the same). A sample without a usable
// positive is a generation-only row. Sequences are packed in OneGen's order: generation rows,
// anchor rows, positive documents, negative documents (a document appears once per batch).

import { parseJsonlObjects } from "../util/jsonl.js";
import { LoadError, UsageError } from "../errors.js";
import { Rng } from "../util/rng.js";
import type { Tokenizer } from "../tokenizer.js";
import { IGNORE_LABEL, nextTokenLabels, type ContrastiveSpec } from "./losses.js";
import type { TrainBatch } from "./model.js";

/** What a segment contributes: "prompt" (no loss, no anchors), "output" (loss, anchors), "context" (no loss, entries). */
export type SegmentKind = "prompt" | "output" | "context";

/** A tokenized sequence: ids, which tokens are generation targets, and its retrieval/document token positions. */
export interface TokenizedSequence {
  ids: number[];
  /** 1 where the token is a generation target (its row's predecessor is trained to produce it). */
  target: Uint8Array;
  /** Positions of retrieval tokens (train samples) or document tokens (documents). */
  reprPositions: number[];
}

/** A database entry: document number and fragment (occurrence of the document token). */
export interface DocRef {
  doc: number;
  fragment: number;
  /** As written in the file. */
  uid: string;
}

export interface TrainSample {
  /** 1-based line in the train file. */
  line: number;
  seq: TokenizedSequence;
  /** Per retrieval token (in order): its positive entries (empty: no contrastive term). */
  positives: DocRef[][];
  /** Per retrieval token: its hard negatives. */
  negatives: DocRef[][];
}

export interface DbDocument {
  uid: string;
  line: number;
  seq: TokenizedSequence;
}

export interface DataSpec {
  /** Query-side retrieval token ids (OneGen's train repr_token, e.g. [LK]). */
  retrievalTokenIds: readonly number[];
  /** Document-side token ids (db repr_token, e.g. [SE]). */
  docTokenIds: readonly number[];
  /** [start, end] token ids of masked spans in assistant content, e.g. <paragraph>, </paragraph>. */
  maskSpans?: readonly (readonly [number, number])[];
  /** Longest sequence allowed (tokens); a longer sample or document is an error. */
  maxLength: number;
  /** For text ("content"/"text"); pre-tokenized data needs none. */
  tokenizer?: Tokenizer | null;
  /** Text documents: a string with {text} and {doc_token}, default "{text}{doc_token}" (unless the text holds one). */
  docTemplate?: string;
  /** The document token's text, for the template (default: the tokenizer's name of docTokenIds[0]). */
  docTokenName?: string;
  /** Vocabulary size: every id must be below it. */
  vocabSize: number;
  /** Documents' assistant segments are generation targets too (OneGen: yes). Default true. */
  docGeneration?: boolean;
}

export interface DataFiles {
  train: string;
  db: string;
}

interface RawMessage {
  role: "system" | "user" | "assistant";
  text: string | null;
  ids: number[] | null;
  positive: (string[] | null)[] | null;
  negative: string[][] | null;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseJsonLines(text: string, file: string): { line: number; value: Obj }[] {
  return parseJsonlObjects(text, file).map(({ line, value }) => ({ line, value: value as Obj }));
}

function parseIds(v: unknown, where: string, vocab: number): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isInteger(x) || x < 0)) throw new LoadError(`${where}: must be a list of non-negative integer token ids`);
  for (const x of v as number[]) if (x >= vocab) throw new LoadError(`${where}: token id ${x} is outside the vocabulary of ${vocab}`);
  return v as number[];
}

function uidList(v: unknown, where: string): string[] {
  if (!Array.isArray(v)) throw new LoadError(`${where}: must be a list of uids`);
  return v.map((u, k) => {
    if (typeof u === "string" || (typeof u === "number" && Number.isInteger(u))) return String(u);
    throw new LoadError(`${where}[${k}]: a uid must be a string or an integer, got ${JSON.stringify(u)}`);
  });
}

function parseMessages(o: Obj, where: string, vocab: number, withLists: boolean): RawMessage[] {
  if (!Array.isArray(o.messages) || o.messages.length === 0) throw new LoadError(`${where}: "messages" must be a non-empty list`);
  return o.messages.map((m: unknown, j: number) => {
    const w = `${where}: messages[${j}]`;
    if (!isObj(m)) throw new LoadError(`${w}: must be an object with "role" and "content"`);
    if (m.role !== "system" && m.role !== "user" && m.role !== "assistant") throw new LoadError(`${w}.role: must be system, user or assistant, got ${JSON.stringify(m.role)}`);
    const hasText = m.content !== undefined;
    const hasIds = m.ids !== undefined;
    if (hasText === hasIds) throw new LoadError(`${w}: give exactly one of "content" (text) or "ids" (token ids)`);
    if (hasText && typeof m.content !== "string") throw new LoadError(`${w}.content: must be a string`);
    let positive: (string[] | null)[] | null = null;
    let negative: string[][] | null = null;
    if (withLists && m.role === "assistant") {
      if (m.positive !== undefined) {
        if (!Array.isArray(m.positive)) throw new LoadError(`${w}.positive: must be a list with one entry per retrieval token`);
        positive = m.positive.map((p: unknown, k: number) => (p === null ? null : Array.isArray(p) ? uidList(p, `${w}.positive[${k}]`) : uidList([p], `${w}.positive[${k}]`)));
      }
      if (m.negative !== undefined) {
        if (!Array.isArray(m.negative)) throw new LoadError(`${w}.negative: must be a list with one uid list per retrieval token`);
        negative = m.negative.map((n: unknown, k: number) => (n === null ? [] : uidList(n, `${w}.negative[${k}]`)));
      }
    }
    return {
      role: m.role,
      text: hasText ? (m.content as string) : null,
      ids: hasIds ? parseIds(m.ids, `${w}.ids`, vocab) : null,
      positive,
      negative,
    };
  });
}

/** The spec's tokenizer, or a LoadError saying the text at `where` needs one. */
function needTokenizer(spec: DataSpec, where: string): Tokenizer {
  if (!spec.tokenizer) throw new LoadError(`${where}: text needs a tokenizer, but the model directory has none`, 'give token ids ("ids") instead of text, or add tokenizer.json to the model directory');
  return spec.tokenizer;
}

/**
 * Tokenizes segments (OneGen's onegen_tokenize): targets on output segments minus masked spans,
 * the token after a representation token in an output segment un-targeted, repr positions in
 * output/context segments.
 */
export function tokenizeSegments(segments: readonly { kind: SegmentKind; ids: readonly number[] }[], reprIds: readonly number[], spec: Pick<DataSpec, "maskSpans" | "maxLength">, where: string): TokenizedSequence {
  const repr = new Set(reprIds);
  const starts = new Map((spec.maskSpans ?? []).map(([s, e]) => [s, e]));
  const ids: number[] = [];
  const tgt: number[] = [];
  const kinds: SegmentKind[] = [];
  for (const [si, seg] of segments.entries()) {
    let closeId = -1;
    let openAt = -1;
    for (const id of seg.ids) {
      ids.push(id);
      kinds.push(seg.kind);
      if (seg.kind !== "output") {
        tgt.push(0);
        continue;
      }
      if (closeId < 0 && starts.has(id)) {
        closeId = starts.get(id)!;
        openAt = ids.length - 1;
      }
      tgt.push(closeId >= 0 ? 0 : 1);
      if (closeId >= 0 && id === closeId && ids.length - 1 > openAt) closeId = -1;
    }
    if (closeId >= 0) throw new LoadError(`${where}: messages[${si}]: a masked span opened by token ${ids[openAt]} at position ${openAt} is never closed by token ${closeId}`);
  }
  if (ids.length === 0) throw new LoadError(`${where}: the sample has no tokens`);
  if (ids.length > spec.maxLength) throw new LoadError(`${where}: ${ids.length} tokens, over the maximum length of ${spec.maxLength}`, "raise --max-length or shorten the sample");
  const reprPositions: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (!repr.has(ids[i]!) || kinds[i] === "prompt") continue;
    reprPositions.push(i);
    if (kinds[i] === "output" && i + 1 < ids.length) tgt[i + 1] = 0;
  }
  return { ids, target: Uint8Array.from(tgt), reprPositions };
}

function renderTemplate(template: string, text: string, docToken: string): string {
  return template.split("{text}").map((s) => s.split("{doc_token}").join(docToken)).join(text);
}

/** Parsed, tokenized and validated OneGen training data. */
export class TrainData {
  private readonly byUid = new Map<string, number>();

  private constructor(
    readonly samples: readonly TrainSample[],
    readonly docs: readonly DbDocument[],
    readonly files: DataFiles,
  ) {
    docs.forEach((d, i) => this.byUid.set(d.uid, i));
  }

  /** Parses train.jsonl and db.jsonl text; every error names the file, line and field. */
  static parse(trainText: string, dbText: string, spec: DataSpec, files: DataFiles = { train: "train.jsonl", db: "db.jsonl" }): TrainData {
    if (!Number.isInteger(spec.maxLength) || spec.maxLength < 1) throw new UsageError(`training data: the maximum length must be a positive integer, got ${spec.maxLength}`);
    if (spec.retrievalTokenIds.length === 0 || spec.docTokenIds.length === 0) throw new UsageError("training data: give at least one retrieval token and one document token");
    const encode = (text: string, where: string) => needTokenizer(spec, where).encode(text, { addSpecialTokens: false });
    // ---- database
    const docs: DbDocument[] = [];
    const seen = new Map<string, number>();
    for (const { line, value: o } of parseJsonLines(dbText, files.db)) {
      const where = `${files.db}:${line}`;
      const rawUid = o.uid ?? o.id;
      if (!(typeof rawUid === "string" && rawUid !== "") && !(typeof rawUid === "number" && Number.isInteger(rawUid))) throw new LoadError(`${where}: "uid" must be a non-empty string or an integer`);
      const uid = String(rawUid);
      if (seen.has(uid)) throw new LoadError(`${where}: uid '${uid}' is already used on line ${seen.get(uid)}`);
      seen.set(uid, line);
      let segments: { kind: SegmentKind; ids: number[] }[];
      if (o.messages !== undefined) {
        const docGen = spec.docGeneration ?? true;
        segments = parseMessages(o, where, spec.vocabSize, false).map((m, j) => ({
          kind: m.role === "assistant" ? (docGen ? "output" : "context") : "prompt",
          ids: m.ids ?? encode(m.text!, `${where}: messages[${j}].content`),
        }));
      } else if (o.text !== undefined || o.ids !== undefined) {
        if ((o.text !== undefined) === (o.ids !== undefined)) throw new LoadError(`${where}: give exactly one of "text" or "ids"`);
        let ids: number[];
        if (o.ids !== undefined) ids = parseIds(o.ids, `${where}: ids`, spec.vocabSize);
        else {
          if (typeof o.text !== "string") throw new LoadError(`${where}: "text" must be a string`);
          const tok = needTokenizer(spec, `${where}: text`);
          const name = spec.docTokenName ?? tok.idToToken(spec.docTokenIds[0]!);
          if (name === undefined) throw new LoadError(`${where}: the document token ${spec.docTokenIds[0]} has no name in the tokenizer`);
          const text = spec.docTemplate !== undefined ? renderTemplate(spec.docTemplate, o.text, name) : o.text.includes(name) ? o.text : o.text + name;
          ids = encode(text, `${where}: text`);
        }
        segments = [{ kind: "context", ids }];
      } else throw new LoadError(`${where}: a document needs "messages", "text" or "ids"`);
      const seq = tokenizeSegments(segments, spec.docTokenIds, spec, where);
      if (seq.reprPositions.length === 0) throw new LoadError(`${where}: document '${uid}' holds no document token (${spec.docTokenIds.join(", ")}) outside its prompt, so it has no entry to retrieve`);
      docs.push({ uid, line, seq });
    }
    if (docs.length === 0) throw new LoadError(`${files.db}: no documents`);
    const data = new TrainData([], docs, files);
    // ---- samples
    const samples: TrainSample[] = [];
    const rq = new Set(spec.retrievalTokenIds);
    for (const { line, value: o } of parseJsonLines(trainText, files.train)) {
      const where = `${files.train}:${line}`;
      const msgs = parseMessages(o, where, spec.vocabSize, true);
      const segments: { kind: SegmentKind; ids: number[] }[] = [];
      const positives: DocRef[][] = [];
      const negatives: DocRef[][] = [];
      msgs.forEach((m, j) => {
        const ids = m.ids ?? encode(m.text!, `${where}: messages[${j}].content`);
        segments.push({ kind: m.role === "assistant" ? "output" : "prompt", ids });
        if (m.role !== "assistant") return;
        const n = ids.filter((x) => rq.has(x)).length;
        const w = `${where}: messages[${j}]`;
        if (m.positive === null && n > 0) throw new LoadError(`${w}: ${n} retrieval token${n === 1 ? "" : "s"} but no "positive" list`, 'give one "positive" entry per retrieval token (null or [] for none)');
        const pos = m.positive ?? [];
        if (pos.length !== n) throw new LoadError(`${w}: ${n} retrieval token${n === 1 ? "" : "s"} in the content but ${pos.length} entries in "positive"`);
        const neg = m.negative ?? pos.map(() => []);
        if (neg.length !== n) throw new LoadError(`${w}: ${n} retrieval token${n === 1 ? "" : "s"} in the content but ${neg.length} lists in "negative"`);
        pos.forEach((p, k) => positives.push((p ?? []).map((u, q) => data.resolve(u, `${w}.positive[${k}]${p!.length > 1 ? `[${q}]` : ""}`))));
        neg.forEach((list, k) => negatives.push(list.map((u, q) => data.resolve(u, `${w}.negative[${k}][${q}]`))));
      });
      const seq = tokenizeSegments(segments, spec.retrievalTokenIds, spec, where);
      if (seq.reprPositions.length !== positives.length) {
        // A retrieval token outside assistant content is not an anchor; inside, counts already match.
        throw new LoadError(`${where}: ${seq.reprPositions.length} retrieval tokens found in assistant content, ${positives.length} positive entries`);
      }
      samples.push({ line, seq, positives, negatives });
    }
    if (samples.length === 0) throw new LoadError(`${files.train}: no samples`);
    return new TrainData(samples, docs, files);
  }

  /** Resolves a uid ("Q42" or "Q42-1") to a database entry; unknown ones are LoadErrors naming `where`. */
  resolve(uid: string, where: string): DocRef {
    const whole = this.byUid.get(uid);
    if (whole !== undefined) return { doc: whole, fragment: 0, uid };
    const m = /^(.*)-(\d+)$/.exec(uid);
    const doc = m ? this.byUid.get(m[1]!) : undefined;
    if (doc === undefined || !m) throw new LoadError(`${where}: unknown uid '${uid}': no document with this uid in ${this.files.db}`);
    const fragment = Number(m[2]);
    const n = this.docs[doc]!.seq.reprPositions.length;
    if (fragment >= n) throw new LoadError(`${where}: uid '${uid}' names entry ${fragment} of document '${m[1]}', which has ${n} (${this.files.db}:${this.docs[doc]!.line})`);
    return { doc, fragment, uid };
  }

  /** Entries (document, fragment) of the whole database, in order. */
  entries(): DocRef[] {
    const out: DocRef[] = [];
    this.docs.forEach((d, doc) => d.seq.reprPositions.forEach((_, fragment) => out.push({ doc, fragment, uid: fragment === 0 ? d.uid : `${d.uid}-${fragment}` })));
    return out;
  }
}

// ------------------------------------------------------------------ collation

export interface CollateOptions {
  /** Retrieval tokens per sample used as anchors (OneGen n_pos_per_sent). Default: all. */
  nPosPerSample?: number;
  /** Hard negatives per pair (OneGen n_neg_per_pos). Default 4. */
  nNegPerPos?: number;
  /** Top short negative lists up with random database entries (OneGen does). Default true. */
  randomNegatives?: boolean;
  kind?: "infonce" | "bpr";
  temperature?: number;
  inBatch?: boolean;
}

export interface CollatedBatch {
  batch: TrainBatch;
  /** Tokens T. */
  tokens: number;
  /** Unmasked generation rows. */
  genTokens: number;
  pairs: number;
  /** Sequences by role: generation-only samples, anchor samples, positive and negative documents. */
  rows: { generation: number; anchor: number; positive: number; negative: number };
}

const key = (r: DocRef): string => `${r.doc}/${r.fragment}`;

function sampleK<T>(items: readonly T[], k: number, rng: Rng): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, k);
}

/** Builds one packed batch from samples (indices into data.samples); rng drives every random choice. */
export function collate(data: TrainData, sampleIdx: readonly number[], rng: Rng, opts: CollateOptions = {}): CollatedBatch {
  const nNeg = opts.nNegPerPos ?? 4;
  const randomNeg = opts.randomNegatives ?? true;
  const entries = randomNeg ? data.entries() : [];
  type Pair = { sample: number; token: number; pos: DocRef; negs: DocRef[] };
  const genOnly: number[] = [];
  const anchors: { sample: number; pairs: Pair[] }[] = [];
  for (const s of sampleIdx) {
    const smp = data.samples[s];
    if (!smp) throw new UsageError(`collate: no sample ${s} (the data has ${data.samples.length})`);
    const usable = smp.positives.map((p, k) => (p.length > 0 ? k : -1)).filter((k) => k >= 0);
    if (usable.length === 0) {
      genOnly.push(s);
      continue;
    }
    const nPos = Math.min(usable.length, opts.nPosPerSample ?? usable.length);
    const picked = nPos < usable.length ? sampleK(usable, nPos, rng).sort((a, b) => a - b) : usable;
    const pairs = picked.map((k) => {
      const list = smp.positives[k]!;
      const pos = list[rng.int(list.length)]!;
      const own = new Set(list.map(key));
      const negs: DocRef[] = [];
      const taken = new Set<string>();
      for (const n of smp.negatives[k]!) {
        if (negs.length >= nNeg) break;
        if (own.has(key(n)) || taken.has(key(n))) continue;
        taken.add(key(n));
        negs.push(n);
      }
      // At most as many random draws as the entries can supply (nNeg may exceed them).
      for (let tries = 0; randomNeg && negs.length < nNeg && tries < 8 * Math.min(nNeg, entries.length) + 16; tries++) {
        const n = entries[rng.int(entries.length)]!;
        if (own.has(key(n)) || taken.has(key(n))) continue;
        taken.add(key(n));
        negs.push(n);
      }
      return { sample: s, token: k, pos, negs };
    });
    anchors.push({ sample: s, pairs });
  }
  // Sequences: generation, anchors, positive documents, negative documents.
  const ids: number[] = [];
  const target: number[] = [];
  const lengths: number[] = [];
  const push = (seq: TokenizedSequence, train: boolean): number => {
    const start = ids.length;
    ids.push(...seq.ids);
    for (const t of seq.target) target.push(train ? t : 0);
    lengths.push(seq.ids.length);
    return start;
  };
  for (const s of genOnly) push(data.samples[s]!.seq, true);
  const anchorStart = new Map<number, number>();
  for (const a of anchors) anchorStart.set(a.sample, push(data.samples[a.sample]!.seq, true));
  const docStart = new Map<number, number>();
  let nPosDocs = 0;
  let nNegDocs = 0;
  const allPairs = anchors.flatMap((a) => a.pairs);
  for (const p of allPairs) if (!docStart.has(p.pos.doc)) (docStart.set(p.pos.doc, push(data.docs[p.pos.doc]!.seq, true)), nPosDocs++);
  for (const p of allPairs) for (const n of p.negs) if (!docStart.has(n.doc)) (docStart.set(n.doc, push(data.docs[n.doc]!.seq, true)), nNegDocs++);
  // Contrastive spec: one doc row per distinct entry.
  const docRows: number[] = [];
  const entryIndex = new Map<string, number>();
  const entryOf = (r: DocRef): number => {
    let i = entryIndex.get(key(r));
    if (i === undefined) {
      i = docRows.length;
      docRows.push(docStart.get(r.doc)! + data.docs[r.doc]!.seq.reprPositions[r.fragment]!);
      entryIndex.set(key(r), i);
    }
    return i;
  };
  const pairs = allPairs.map((p) => ({
    anchor: anchorStart.get(p.sample)! + data.samples[p.sample]!.seq.reprPositions[p.token]!,
    positive: entryOf(p.pos),
    negatives: p.negs.map(entryOf),
  }));
  const labels = nextTokenLabels(ids, lengths, target, []);
  let genTokens = 0;
  for (const l of labels) if (l !== IGNORE_LABEL) genTokens++;
  const retrieval: ContrastiveSpec | undefined =
    pairs.length > 0
      ? { docs: docRows, pairs, kind: opts.kind ?? "infonce", temperature: opts.temperature ?? 0.05, inBatch: opts.inBatch ?? true }
      : undefined;
  return {
    batch: { ids, lengths, labels, ...(retrieval ? { retrieval } : {}) },
    tokens: ids.length,
    genTokens,
    pairs: pairs.length,
    rows: { generation: genOnly.length, anchor: anchors.length, positive: nPosDocs, negative: nNegDocs },
  };
}
