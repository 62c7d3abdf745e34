// Tokenizer from a Hugging Face model directory: tokenizer.json + tokenizer_config.json through
// @huggingface/tokenizers, chat templates through @huggingface/jinja.
//
// - Added tokens (tokenizer.json "added_tokens") are matched atomically before normalization.
//   Extra tokens (OneGen's [_CONTINUE_], [SE], [LK]) are appended to "added_tokens" with the next
//   free ids before the tokenizer is built, as transformers' add_tokens(special_tokens=True) does.
// - BOS/EOS: when tokenizer_config.json sets add_bos_token / add_eos_token (Llama, Mistral),
//   those decide, as in transformers' LlamaTokenizerFast; otherwise tokenizer.json's
//   post-processor decides (Llama 3, Qwen2).
// - Token ids never need a tokenizer: commands given ids work on a model directory without
//   tokenizer files; loadTokenizer() throws a clear LoadError only when text is needed.
// - Untrusted model directories: tokenizer.json's regular expressions ({"Regex": …} patterns of
//   normalizers, pre-tokenizers, decoders) run on JavaScript's backtracking engine, so a crafted
//   one such as `(a+)+$` could hang the process. Each is probed at load (strings that make
//   nested quantifiers backtrack) and every encode/decode of a tokenizer that has any, and every
//   chat-template rendering, runs under a time limit (src/util/time-limit.ts): a LoadError that
//   names the file and the pattern, never a hang. Tokenizers without Regex patterns (Llama-2's,
//   SentencePiece-style) run directly.

import * as hf from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { LoadError, UsageError } from "./errors.js";
import { joinName, readJson, toModelDir, type ModelDir } from "./io/source.js";
import { TimeLimitExceeded, timeLimiter, type TimeLimiter } from "./util/time-limit.js";

const HfTokenizer = hf.Tokenizer;
type HfTokenizer = hf.Tokenizer;
// The library's Split pre-tokenizer compiles a {"Regex": …} pattern exactly as every component
// does (create_pattern); its typings re-export it through a path TypeScript does not resolve here,
// so it is typed by hand (the runtime export exists in @huggingface/tokenizers 0.2).
interface SplitPreTokenizerLike {
  pre_tokenize_text(text: string): string[];
}
const SplitPreTokenizer = (hf as unknown as { SplitPreTokenizer: new (config: { type: "Split"; pattern: { Regex: string }; behavior: "Isolated"; invert: boolean }) => SplitPreTokenizerLike }).SplitPreTokenizer;

export interface AddedTokenSpec {
  content: string;
  /** Special tokens are skipped by decode({skipSpecialTokens: true}). Default true. */
  special?: boolean;
  /** Whether the token is matched after normalization. Default false (matched in the raw text). */
  normalized?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  singleWord?: boolean;
}

export interface ChatMessage {
  role: string;
  content: string;
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A token field of tokenizer_config.json: a string or an AddedToken-like {content}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (isObj(v) && typeof v.content === "string") return v.content;
  return null;
}

interface RawAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/**
 * Appends tokens to a tokenizer.json object's added_tokens (a copy is returned), ids continuing
 * after the largest id in the vocabulary and the added tokens. Tokens already present keep their
 * ids. Returns the new object and each token's id.
 */
export function addTokensToTokenizerJson(tokenizerJson: unknown, tokens: readonly (string | AddedTokenSpec)[]): { json: Json; ids: number[] } {
  if (!isObj(tokenizerJson)) throw new LoadError("tokenizer.json must be a JSON object");
  const model = tokenizerJson.model;
  if (!isObj(model)) throw new LoadError("tokenizer.json has no 'model' object");
  const added: RawAddedToken[] = Array.isArray(tokenizerJson.added_tokens) ? [...(tokenizerJson.added_tokens as RawAddedToken[])] : [];
  const known = new Map<string, number>();
  let next = 0;
  const vocab = model.vocab;
  if (isObj(vocab)) {
    for (const [tok, id] of Object.entries(vocab)) {
      if (typeof id === "number") {
        known.set(tok, id);
        next = Math.max(next, id + 1);
      }
    }
  } else if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...], ids are positions.
    vocab.forEach((entry, id) => {
      if (Array.isArray(entry) && typeof entry[0] === "string") known.set(entry[0], id);
    });
    next = vocab.length;
  } else throw new LoadError("tokenizer.json's model has no vocab");
  for (const t of added) {
    known.set(t.content, t.id);
    next = Math.max(next, t.id + 1);
  }
  const ids: number[] = [];
  for (const tok of tokens) {
    const spec: AddedTokenSpec = typeof tok === "string" ? { content: tok } : tok;
    if (spec.content === "") throw new UsageError("cannot add an empty token");
    const have = known.get(spec.content);
    if (have !== undefined) {
      ids.push(have);
      continue;
    }
    const id = next++;
    added.push({
      id,
      content: spec.content,
      single_word: spec.singleWord ?? false,
      lstrip: spec.lstrip ?? false,
      rstrip: spec.rstrip ?? false,
      normalized: spec.normalized ?? false,
      special: spec.special ?? true,
    });
    known.set(spec.content, id);
    ids.push(id);
  }
  return { json: { ...tokenizerJson, added_tokens: added }, ids };
}

export interface TokenizerOptions {
  /** Tokens to add (in order, new ids after the vocabulary), e.g. ["[_CONTINUE_]", "[SE]", "[LK]"]. */
  addedTokens?: readonly (string | AddedTokenSpec)[];
  /** Shown in errors. */
  name?: string;
  /** A chat template that overrides tokenizer_config's (or chat_template.jinja). */
  chatTemplate?: string;
  /** Time limits for work driven by the tokenizer files (defaults: DEFAULT_TIME_LIMIT). */
  timeLimit?: Partial<TokenizerTimeLimit>;
}

/**
 * Wall-clock limits, in milliseconds, for work whose cost the tokenizer files control. A call on
 * a text of n characters may take baseMs + msPer1000Chars · n / 1000; each Regex pattern's load
 * probe may take probeMs. Legitimate tokenization runs at ~1 µs per character, 50× below the limit.
 */
export interface TokenizerTimeLimit {
  baseMs: number;
  msPer1000Chars: number;
  probeMs: number;
}
export const DEFAULT_TIME_LIMIT: TokenizerTimeLimit = { baseMs: 1000, msPer1000Chars: 50, probeMs: 1000 };

/** A {"Regex": source} pattern of tokenizer.json and where it sits (e.g. "pre_tokenizer.pretokenizers[0]"). */
export interface TokenizerRegex {
  where: string;
  source: string;
}

/** Every {"Regex": …} pattern in a tokenizer.json object (the vocabulary and added tokens hold none). */
export function tokenizerRegexes(tokenizerJson: unknown): TokenizerRegex[] {
  const out: TokenizerRegex[] = [];
  const walk = (v: unknown, where: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`));
    else if (isObj(v)) {
      if (isObj(v.pattern) && typeof v.pattern.Regex === "string") out.push({ where, source: v.pattern.Regex });
      for (const [k, x] of Object.entries(v)) if (k !== "pattern") walk(x, where === "" ? k : `${where}.${k}`);
    }
  };
  if (isObj(tokenizerJson)) for (const [k, v] of Object.entries(tokenizerJson)) if (k !== "model" && k !== "added_tokens") walk(v, k);
  return out;
}

/** A pattern for a one-line message: /source/ cut to 120 characters. */
function showRegex(r: TokenizerRegex): string {
  const src = r.source.length > 120 ? `${r.source.slice(0, 117)}...` : r.source;
  return `${r.where} /${src}/`;
}

/**
 * Strings that make nested or overlapping quantifiers backtrack: a long run of one character (or
 * a two-character cycle) followed by one that ends every match attempt. 2,048 characters make an
 * exponential pattern run for ages and a cubic one for seconds, while a sound pattern handles all
 * of them in a few milliseconds. A probe can only find what it tries; the per-call time limit is
 * the guarantee.
 */
function probeStrings(): string[] {
  const n = 2048;
  const runs = ["a", "A", "z", "1", "0", " ", "\n", "\t", "\r", "'", ".", ",", "-", "_", "!", "é", "▁", "Ġ", "\u00a0", "<", "你"];
  const out: string[] = [];
  for (const c of runs) for (const end of ["!", "a", "\u0000"]) if (end !== c) out.push(c.repeat(n) + end);
  for (const pair of ["a ", "a1", "ab", " \n", "a.", "1,"]) out.push(pair.repeat(n / 2) + "!", pair.repeat(n / 2) + "\u0000");
  return out;
}

export class Tokenizer {
  private readonly tok: HfTokenizer;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** From tokenizer_config (null: tokenizer.json's post-processor decides). */
  readonly addBosToken: boolean | null;
  readonly addEosToken: boolean | null;
  /** Ids of the tokens added through options.addedTokens, in order. */
  readonly addedTokenIds: readonly number[];
  readonly chatTemplate: string | null;
  /** The {"Regex": …} patterns of tokenizer.json (their running time is bounded, see timeLimited). */
  readonly regexes: readonly TokenizerRegex[];
  /** Whether work driven by the files runs under a time limit (false only where the runtime has no node:vm, i.e. browsers). */
  readonly timeLimited: boolean;
  private readonly config: Json;
  private readonly specialIds: Set<number>;
  private readonly name: string;
  private readonly limits: TokenizerTimeLimit;
  private readonly limiter: TimeLimiter | null;

  constructor(tokenizerJson: unknown, tokenizerConfig: unknown, options: TokenizerOptions = {}) {
    const name = options.name ?? "tokenizer";
    const config: Json = tokenizerConfig === null || tokenizerConfig === undefined ? {} : isObj(tokenizerConfig) ? tokenizerConfig : {};
    if (tokenizerConfig !== null && tokenizerConfig !== undefined && !isObj(tokenizerConfig)) throw new LoadError(`${name}: tokenizer_config.json must be a JSON object`);
    const { json, ids } = addTokensToTokenizerJson(tokenizerJson, options.addedTokens ?? []);
    try {
      this.tok = new HfTokenizer(json, config);
    } catch (e) {
      throw new LoadError(`${name}: cannot build the tokenizer from tokenizer.json: ${(e as Error).message}`);
    }
    this.config = config;
    this.name = name;
    this.addedTokenIds = ids;
    this.limits = { ...DEFAULT_TIME_LIMIT, ...options.timeLimit };
    this.limiter = timeLimiter();
    this.timeLimited = this.limiter !== null;
    this.regexes = tokenizerRegexes(json);
    this.probeRegexes();
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    this.bosTokenId = this.bosToken !== null ? (this.tok.token_to_id(this.bosToken) ?? null) : null;
    this.eosTokenId = this.eosToken !== null ? (this.tok.token_to_id(this.eosToken) ?? null) : null;
    this.addBosToken = typeof config.add_bos_token === "boolean" ? config.add_bos_token : null;
    this.addEosToken = typeof config.add_eos_token === "boolean" ? config.add_eos_token : null;
    if (this.addBosToken && this.bosTokenId === null) throw new LoadError(`${name}: add_bos_token is set but bos_token ${JSON.stringify(config.bos_token)} is not in the vocabulary`);
    if (this.addEosToken && this.eosTokenId === null) throw new LoadError(`${name}: add_eos_token is set but eos_token ${JSON.stringify(config.eos_token)} is not in the vocabulary`);
    this.specialIds = new Set([...this.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    this.chatTemplate = options.chatTemplate ?? pickChatTemplate(config.chat_template);
  }

  /** Loads tokenizer.json + tokenizer_config.json (+ chat_template.jinja) from a model directory. */
  static async fromDir(dirOrPath: string | ModelDir, options: TokenizerOptions = {}): Promise<Tokenizer> {
    const dir = await toModelDir(dirOrPath);
    if (!(await dir.exists("tokenizer.json"))) {
      throw new LoadError(
        `model directory '${dir.name}' has no tokenizer.json, so text cannot be encoded or decoded`,
        "give token ids instead of text (e.g. --ids), or copy tokenizer.json and tokenizer_config.json into the directory",
      );
    }
    const json = await readJson(dir, "tokenizer.json");
    const config = (await dir.exists("tokenizer_config.json")) ? await readJson(dir, "tokenizer_config.json") : {};
    let chatTemplate = options.chatTemplate;
    if (chatTemplate === undefined && (await dir.exists("chat_template.jinja"))) chatTemplate = await dir.readText("chat_template.jinja");
    return new Tokenizer(json, config, { ...options, name: options.name ?? joinName(dir.name, "tokenizer.json"), ...(chatTemplate !== undefined ? { chatTemplate } : {}) });
  }

  /** Token ids for text. addSpecialTokens (default true) adds BOS/EOS as the tokenizer config says. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const add = options.addSpecialTokens ?? true;
    if (this.addBosToken === null && this.addEosToken === null) {
      return this.limitRegexWork("encoding", text.length, () => this.tok.encode(text, { add_special_tokens: add }).ids, text);
    }
    const ids = this.limitRegexWork("encoding", text.length, () => this.tok.encode(text, { add_special_tokens: false }).ids, text);
    if (!add) return ids;
    if (this.addBosToken && this.bosTokenId !== null) ids.unshift(this.bosTokenId);
    if (this.addEosToken && this.eosTokenId !== null) ids.push(this.eosTokenId);
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || this.tok.id_to_token(id) === undefined) throw new UsageError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
    }
    // Decoded text is at most a few dozen characters per id: 16 per id sizes the limit.
    return this.limitRegexWork("decoding", 16 * ids.length, () => this.tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }), null);
  }

  /** Time limit for work on `chars` characters (milliseconds). */
  private limitMs(chars: number): number {
    return this.limits.baseMs + (this.limits.msPer1000Chars * chars) / 1000;
  }

  /**
   * Runs fn under the time limit when tokenizer.json has Regex patterns (else directly). On a
   * timeout, finds which pattern backtracks on `text` (each alone, under the same limit) and
   * throws a LoadError naming the file and the pattern.
   */
  private limitRegexWork<T>(what: string, chars: number, fn: () => T, text: string | null): T {
    if (this.regexes.length === 0 || this.limiter === null) return fn();
    const ms = this.limitMs(chars);
    try {
      return this.limiter(fn, ms);
    } catch (e) {
      if (!(e instanceof TimeLimitExceeded)) throw e;
      const culprit = text === null ? undefined : this.regexes.find((r) => this.regexTimesOut(r, [text], ms));
      const head = `${this.name}: ${what} ${chars} characters took over ${Math.round(ms)} ms`;
      if (culprit) throw new LoadError(`${head}: its regular expression ${showRegex(culprit)} backtracks catastrophically; do not use this tokenizer.json`);
      throw new LoadError(
        `${head}, the limit for a tokenizer with regular expressions (${this.regexes.map(showRegex).join(", ")}); none is slow alone on this text`,
        "if the machine is merely overloaded, raise the limit (TokenizerOptions.timeLimit)",
      );
    }
  }

  /** Whether the pattern, compiled as the library compiles it, runs past ms on any of the texts. */
  private regexTimesOut(r: TokenizerRegex, texts: readonly string[], ms: number): boolean {
    const limiter = this.limiter;
    if (limiter === null) return false;
    const split = new SplitPreTokenizer({ type: "Split", pattern: { Regex: r.source }, behavior: "Isolated", invert: false });
    try {
      limiter(() => {
        for (const t of texts) split.pre_tokenize_text(t);
      }, ms);
      return false;
    } catch (e) {
      if (e instanceof TimeLimitExceeded) return true;
      throw new LoadError(`${this.name}: regular expression ${showRegex(r)} cannot run: ${(e as Error).message}`);
    }
  }

  /** At load: refuses a tokenizer.json with a pattern that backtracks catastrophically on a probe. */
  private probeRegexes(): void {
    if (this.limiter === null || this.regexes.length === 0) return;
    const probes = probeStrings();
    for (const r of this.regexes) {
      if (this.regexTimesOut(r, probes, this.limits.probeMs)) {
        throw new LoadError(`${this.name}: regular expression ${showRegex(r)} backtracks catastrophically (over ${this.limits.probeMs} ms on ${probes[0]!.length}-character probe strings); do not use this tokenizer.json`);
      }
    }
  }

  /** The id of a token string (e.g. "[LK]", "</s>"), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }
  /** Like tokenToId, throwing a LoadError naming the token when it is unknown. */
  requireTokenId(token: string): number {
    const id = this.tok.token_to_id(token);
    if (id === undefined) throw new LoadError(`token '${token}' is not in the tokenizer's vocabulary`);
    return id;
  }
  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
  /** Number of ids (vocabulary plus added tokens: the largest id + 1). */
  get vocabSize(): number {
    let max = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > max) max = id;
    return max + 1;
  }
  /** Special tokens (added tokens marked special), by id. */
  specialTokens(): { id: number; content: string }[] {
    return [...this.tok.get_added_tokens_decoder()]
      .filter(([, t]) => t.special)
      .map(([id, t]) => ({ id, content: t.content }))
      .sort((a, b) => a.id - b.id);
  }

  /** Renders the chat template (transformers' apply_chat_template(tokenize=False)). */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> } = {}): string {
    if (this.chatTemplate === null) throw new LoadError("this tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    const vars: Record<string, unknown> = {};
    for (const k of ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
      const c = tokenContent(this.config[k]);
      if (c !== null) vars[k] = c;
    }
    const extra = this.config.additional_special_tokens;
    if (Array.isArray(extra)) vars.additional_special_tokens = extra.map(tokenContent).filter((x) => x !== null);
    let template: Template;
    try {
      template = new Template(this.chatTemplate);
    } catch (e) {
      throw new LoadError(`the chat template does not parse: ${(e as Error).message}`);
    }
    const render = (): string => template.render({ ...vars, ...options.extra, messages: messages.map((m) => ({ ...m })), add_generation_prompt: options.addGenerationPrompt ?? false });
    // The template is code from the model directory (loops, string repetition): bounded like the regexes.
    if (this.limiter === null) return render();
    const chars = messages.reduce((n, m) => n + m.content.length, 0) + this.chatTemplate.length;
    const ms = this.limitMs(chars);
    try {
      return this.limiter(render, ms);
    } catch (e) {
      if (e instanceof TimeLimitExceeded) throw new LoadError(`${this.name}: the chat template ran for over ${Math.round(ms)} ms on ${messages.length} messages; do not use this template`);
      throw e;
    }
  }
}

function pickChatTemplate(v: unknown): string | null {
  if (typeof v === "string") return v;
  // Several named templates: [{name, template}]; "default" is what transformers uses.
  if (Array.isArray(v)) {
    const named = v.filter((x): x is { name: string; template: string } => isObj(x) && typeof x.name === "string" && typeof x.template === "string");
    return (named.find((x) => x.name === "default") ?? named[0])?.template ?? null;
  }
  return null;
}

/** Loads the tokenizer of a model directory; a directory without tokenizer.json throws a LoadError with a hint. */
export function loadTokenizer(dirOrPath: string | ModelDir, options: TokenizerOptions = {}): Promise<Tokenizer> {
  return Tokenizer.fromDir(dirOrPath, options);
}

/** The tokenizer if the directory has tokenizer.json, else null (for commands that work on ids). */
export async function tryLoadTokenizer(dirOrPath: string | ModelDir, options: TokenizerOptions = {}): Promise<Tokenizer | null> {
  const dir = await toModelDir(dirOrPath);
  return (await dir.exists("tokenizer.json")) ? Tokenizer.fromDir(dir, options) : null;
}

/**
 * Resolves a token given by name ("[LK]") or id ("#32002") to an id. Ids need no tokenizer;
 * a name without a tokenizer is a UsageError saying to give the id.
 */
export function resolveTokenId(token: string, tokenizer: Tokenizer | null): number {
  const m = /^#(\d+)$/.exec(token);
  if (m) return Number(m[1]);
  if (!tokenizer) throw new UsageError(`token '${token}' given by name, but the model has no tokenizer files: give its id as '#<id>'`);
  return tokenizer.requireTokenId(token);
}

/** Parses "1,2,3" or "[1, 2, 3]" into token ids. */
export function parseIdList(text: string): number[] {
  const s = text.trim().replace(/^\[/, "").replace(/\]$/, "");
  if (s.trim() === "") return [];
  return s.split(/[\s,]+/).filter((x) => x !== "").map((x) => {
    if (!/^\d+$/.test(x)) throw new UsageError(`'${x}' in the id list is not a non-negative integer`);
    return Number(x);
  });
}
