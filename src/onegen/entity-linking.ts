// OneGen entity linking (defaults: src/onegen/defaults.ts): the model annotates mentions,
// `[_CONTINUE_]` is forced after `</MENTION>[LK]`, and each [LK] links its mention to the best
// index entry (no injection); optionally with copy-input constrained decoding.

import { UsageError } from "../errors.js";
import { COPY_NONE, type CopyInputRule } from "../ops/decode_state.js";
import type { RetrievalGenerateOptions } from "./loop.js";
import type { DocumentIndex } from "./index.js";
import { ONEGEN_ENTITY_LINKING } from "./defaults.js";
import { markerIdsOf, textMarker, tokenIdOf } from "./token-names.js";
import { annotatedMentions, mapMentionIdsToInput, mapMentionsToInput } from "./parse-output.js";
import { capacityFor, checkIndex, execute, preparePrompt, samplingOf, undecodableIds, type PreparedTask } from "./task-runner.js";
import type { EntityLinkingOptions, EntityLinkingResult, LinkedMention, TaskInput, TaskModel, TaskResult } from "./protocol.js";

/** The resolved token ids of an entity-linking run. */
export interface EntityLinkingTokens {
  query: number;
  cont: number;
  open: number[];
  close: number[];
  /** Forcing patterns (close marker as after text, and as standalone when different) + query. */
  patterns: number[][];
}

export function entityLinkingTokens(model: TaskModel, o: EntityLinkingOptions = {}): EntityLinkingTokens {
  const V = model.decoder.vocabSize;
  const d = ONEGEN_ENTITY_LINKING;
  const tk = model.tokenizer;
  const query = tokenIdOf(o.queryToken ?? d.queryToken, tk, V, "entity linking (query token)");
  const cont = tokenIdOf(o.continueToken ?? d.continueToken, tk, V, "entity linking (continue token)");
  const openRef = o.mentionOpen ?? d.mentionOpen;
  const closeRef = o.mentionClose ?? d.mentionClose;
  const open = markerIdsOf(openRef, tk, V, "entity linking (mention open)");
  const close = markerIdsOf(closeRef, tk, V, "entity linking (mention close)", "after-text");
  const patterns = [[...close, query]];
  const alone = markerIdsOf(closeRef, tk, V, "entity linking (mention close)", "standalone");
  if (alone.join() !== close.join()) patterns.push([...alone, query]);
  return { query, cont, open, close, patterns };
}

/** Leading-space markers of tokenizers: a plain space, SentencePiece's ▁, byte-level BPE's Ġ. */
const SPACE_MARKS = [" ", "\u2581", "\u0120"];

/**
 * The copy-input rule of an entity-linking run: the source ids (the input text tokenized alone, or
 * the given ids), each id's space-less twin (the token after a space mark, when the vocabulary has
 * it: how a word reads right after a mention opener), the lone-space id and the markup ids.
 */
export function copyInputRule(model: TaskModel, ids: readonly number[] | null, text: string | null, toks: EntityLinkingTokens, endIds: readonly number[]): CopyInputRule {
  const tk = model.tokenizer;
  if (toks.open.length !== 1 || toks.close.length !== 1) {
    throw new UsageError(`entity linking: copyInput needs single-token mention markers, got ${toks.open.length} and ${toks.close.length} ids`, "add the markers as tokens (onegen train --add-token)");
  }
  if (text !== null && !tk) throw new UsageError("entity linking: copyInput on text needs the model's tokenizer");
  const source = text !== null ? tk!.encode(text, { addSpecialTokens: false }) : [...ids!];
  if (source.length === 0) throw new UsageError("entity linking: copyInput: the input is empty");
  const twins = source.map((id) => {
    const piece = tk?.idToToken(id);
    const mark = piece !== undefined && piece.length > 1 ? SPACE_MARKS.find((m) => piece.startsWith(m)) : undefined;
    return mark === undefined ? COPY_NONE : tk!.tokenToId(piece!.slice(mark.length)) ?? COPY_NONE;
  });
  const space = tk ? SPACE_MARKS.map((m) => tk.tokenToId(m)).find((x) => x !== undefined) ?? COPY_NONE : COPY_NONE;
  return { source, twins, space, open: toks.open[0]!, close: toks.close[0]!, query: toks.query, cont: toks.cont, endIds: [...endIds] };
}

/**
 * OneGen entity linking: the model annotates mentions; `[_CONTINUE_]` is forced after
 * `</MENTION>[LK]`; each [LK] links its mention to the best index entry (no injection).
 */
export async function runEntityLinking(model: TaskModel, index: DocumentIndex, input: TaskInput, o: EntityLinkingOptions = {}): Promise<EntityLinkingResult> {
  const t = prepareEntityLinking(model, index, input, o);
  return t.finish(await execute(model, t.prompt, t.gen, t.capacity, o));
}

/** runEntityLinking before it runs (see PreparedTask): checked, its prompt and rules resolved. */
export function prepareEntityLinking(model: TaskModel, index: DocumentIndex, input: TaskInput, o: EntityLinkingOptions = {}): PreparedTask<EntityLinkingResult> {
  const what = "entity linking";
  checkIndex(model, index, what, o, "entity-linking");
  const toks = entityLinkingTokens(model, o);
  const { prompt, input: inp } = preparePrompt(model, input, ONEGEN_ENTITY_LINKING.inputTemplate, o, what);
  const maxNew = o.maxNewTokens ?? ONEGEN_ENTITY_LINKING.maxNewTokens;
  const tk = model.tokenizer;
  const decode = tk ? (ids: number[]) => tk.decode(ids) : undefined;
  const gen: RetrievalGenerateOptions = {
    ...samplingOf(o),
    maxNewTokens: maxNew,
    eosIds: o.eosIds ?? model.decoder.config.eosTokenIds,
    forceAfter: [...toks.patterns.map((pattern) => ({ pattern, token: toks.cont })), ...(o.forceAfter ?? [])],
    retrieval: { index, queryTokenId: toks.query, k: o.k ?? 1, ...(o.maxRetrievals !== undefined ? { maxRetrievals: o.maxRetrievals } : {}), inject: null },
    bannedIds: undecodableIds(model),
    ...(o.stepsPerRead !== undefined ? { stepsPerRead: o.stepsPerRead } : {}),
    ...(decode ? { decode } : {}),
    ...(o.copyInput ? { copyInput: copyInputRule(model, "text" in inp ? null : inp.ids, "text" in inp ? inp.text : null, toks, o.eosIds ?? model.decoder.config.eosTokenIds) } : {}),
  };
  const capacity = capacityFor(model, prompt.length, maxNew, 0, 0, o, what);
  return { prompt, gen, capacity, finish: ({ result }) => linkedResult(model, toks, inp, prompt, result, o) };
}

function linkedResult(model: TaskModel, toks: EntityLinkingTokens, inp: { text: string } | { ids: number[] }, prompt: number[], result: TaskResult, o: EntityLinkingOptions): EntityLinkingResult {
  const tk = model.tokenizer;
  const decode = tk ? (ids: number[]) => tk.decode(ids) : undefined;
  // Mentions of the generated part: one per generated query token.
  const gen0 = prompt.length;
  const written = result.ids.slice(gen0);
  const found = "text" in inp && tk
    ? annotatedMentions(written, toks.query, { open: textMarker(o.mentionOpen ?? ONEGEN_ENTITY_LINKING.mentionOpen, tk, model.decoder.vocabSize, "entity linking (mention open)"), close: textMarker(o.mentionClose ?? ONEGEN_ENTITY_LINKING.mentionClose, tk, model.decoder.vocabSize, "entity linking (mention close)") }, decode!)
    : annotatedMentions(written, toks.query, { open: toks.open, close: toks.close }, null);
  const spans = "text" in inp ? mapMentionsToInput(inp.text, found.map((m) => m.mention)) : mapMentionIdsToInput(inp.ids, found.map((m) => m.mentionIds));
  const byPos = new Map(result.retrievals.map((r) => [r.position, r]));
  const mentions: LinkedMention[] = found.map((m, j) => {
    const r = byPos.get(gen0 + m.index);
    const best = r?.hits[0];
    return { mention: m.mention, mentionIds: m.mentionIds, span: spans[j] ?? null, position: gen0 + m.index, entity: best?.id ?? null, fragment: best?.fragment ?? null, score: best?.score ?? null };
  });
  return {
    ...result,
    task: "entity-linking",
    annotated: tk ? tk.decode(written) : null,
    spanUnit: "text" in inp ? "char" : "token",
    mentions,
  };
}
