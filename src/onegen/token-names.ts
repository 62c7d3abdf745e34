// Token names of the task options: one token ("[LK]", "#32002", or an id) or a marker of several
// tokens ("</MENTION>", "#ID,#ID,…", or ids), resolved to ids against the tokenizer and the
// model's vocabulary; a bad name is a UsageError naming the option.

import type { Tokenizer } from "../tokenizer.js";
import { resolveTokenId } from "../tokenizer.js";
import { UsageError } from "../errors.js";

/** One token: a name known to the tokenizer ("[LK]"), "#ID" ("#32002"), or an id. */
export type TokenRef = string | number;
/** A marker (several tokens): text ("</MENTION>", tokenized), "#ID,#ID,…", or ids. */
export type MarkerRef = string | readonly number[];

export function tokenIdOf(ref: TokenRef, tokenizer: Tokenizer | null, vocabSize: number, what: string): number {
  const id = typeof ref === "number" ? ref : resolveTokenId(ref, tokenizer);
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new UsageError(`${what}: token ${JSON.stringify(ref)} is id ${id}, outside the vocabulary (0..${vocabSize - 1})`);
  return id;
}

const ID_LIST = /^\s*#\d+(\s*,\s*#\d+)*\s*$/;

/**
 * Ids of a marker. Text is tokenized without BOS/EOS: `standalone` as on its own (how it follows
 * an added token such as [LK]), `after-text` as it follows a word ("David</MENTION>": Llama-2
 * gives "</" there but "▁</" on its own); found as the tokens after those of "a".
 */
export function markerIdsOf(ref: MarkerRef, tokenizer: Tokenizer | null, vocabSize: number, what: string, where: "standalone" | "after-text" = "standalone"): number[] {
  let ids: number[];
  if (typeof ref !== "string") ids = [...ref];
  else if (ID_LIST.test(ref)) ids = ref.split(",").map((s) => Number(s.trim().slice(1)));
  else {
    if (!tokenizer) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} given as text, but the model has no tokenizer files: give its ids as '#ID,#ID,…'`);
    if (where === "standalone") ids = tokenizer.encode(ref, { addSpecialTokens: false });
    else {
      const head = tokenizer.encode("a", { addSpecialTokens: false });
      const all = tokenizer.encode("a" + ref, { addSpecialTokens: false });
      if (!head.every((t, i) => all[i] === t)) throw new UsageError(`${what}: cannot tokenize marker ${JSON.stringify(ref)} after text (it merges with the preceding word); give its ids as '#ID,#ID,…'`);
      ids = all.slice(head.length);
    }
  }
  if (ids.length === 0) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} has no tokens`);
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new UsageError(`${what}: marker ${JSON.stringify(ref)} holds id ${id}, outside the vocabulary (0..${vocabSize - 1})`);
  return ids;
}

/** A marker as text, for parsing decoded output: text as given; ids are decoded. */
export function textMarker(ref: MarkerRef, tk: Tokenizer, vocabSize: number, what: string): string {
  if (typeof ref === "string" && !ID_LIST.test(ref)) return ref;
  return tk.decode(markerIdsOf(ref, tk, vocabSize, what));
}
