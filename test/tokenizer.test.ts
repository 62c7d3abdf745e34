// Tokenizer: the real Llama-2 tokenizer with OneGen's added tokens, BOS/EOS rules, chat template,
// and model directories without tokenizer files.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LoadError, UsageError } from "../src/errors.js";
import { filesDir } from "../src/io/source.js";
import { Tokenizer, addTokensToTokenizerJson, loadTokenizer, parseIdList, resolveTokenId, tryLoadTokenizer } from "../src/tokenizer.js";
import { assertRejects } from "./helpers/check.js";
import { scratchDir } from "./helpers/scratch.js";

const LLAMA2 = "test/fixtures/llama2-tokenizer";
const ONEGEN_TOKENS = ["[_CONTINUE_]", "[SE]", "[LK]"];

// OneGen's entity-linking input template (config/eval_config/entity_linking/llama2_*.json) with a
// KORE50-style sentence, followed by the annotated model output OneGen trains on.
const EL_PROMPT =
  "[INST] You are good at mention detection. Identify and extract mentions of entities from the text. Please output the original text with annotations. " +
  "Here, the annotation for each mention should be formatted as `<MENTION>{{mention in text}}</MENTION>` when displayed. \n\nTEST TEXT:\n" +
  "David and Victoria named their children Brooklyn, Romeo, Cruz, and Harper Seven. [/INST]";
const EL_OUTPUT =
  "<MENTION>David</MENTION>[LK][_CONTINUE_] and <MENTION>Victoria</MENTION>[LK][_CONTINUE_] named their children " +
  "<MENTION>Brooklyn</MENTION>[LK][_CONTINUE_], Romeo, Cruz, and <MENTION>Harper Seven</MENTION>[LK][_CONTINUE_].";

let shared: Tokenizer | null = null;
async function onegenTokenizer(): Promise<Tokenizer> {
  return (shared ??= await loadTokenizer(LLAMA2, { addedTokens: ONEGEN_TOKENS }));
}

const count = (ids: readonly number[], id: number): number => ids.filter((x) => x === id).length;

test("Llama-2 tokenizer + OneGen tokens: ids 32000-32002, each an atomic single id in the entity-linking prompt", async () => {
  const tok = await onegenTokenizer();
  assert.equal([...tok.addedTokenIds], [32000, 32001, 32002]);
  assert.is(tok.tokenToId("[_CONTINUE_]"), 32000);
  assert.is(tok.tokenToId("[SE]"), 32001);
  assert.is(tok.tokenToId("[LK]"), 32002);
  assert.is(tok.vocabSize, 32003);
  assert.is(tok.idToToken(32002), "[LK]");

  const ids = tok.encode(EL_PROMPT + EL_OUTPUT);
  assert.is(ids[0], 1, "BOS first (add_bos_token: true)");
  assert.is(count(ids, 1), 1);
  assert.ok(ids[ids.length - 1] !== 2, "no EOS (add_eos_token: false)");
  assert.is(count(ids, 32002), 4, "each [LK] is one id");
  assert.is(count(ids, 32000), 4, "each [_CONTINUE_] is one id");
  // [LK] is always immediately followed by [_CONTINUE_] (OneGen's forcing rule depends on it)
  for (let i = 0; i < ids.length; i++) if (ids[i] === 32002) assert.is(ids[i + 1], 32000, `after [LK] at ${i}`);
  // no piece of an added token leaked into ordinary tokens
  for (const id of ids) {
    const t = tok.idToToken(id)!;
    if (id < 32000) assert.ok(!/LK|_CONTINUE_|\[SE/.test(t), `token ${id} '${t}' holds part of an added token`);
  }
  // the document side: "[SE]" after an entity description
  const doc = tok.encode("Harper Seven Beckham is the daughter of David and Victoria Beckham.[SE]", { addSpecialTokens: false });
  assert.is(doc[doc.length - 1], 32001);
  assert.is(count(doc, 32001), 1);
  // decoding gives the text back, with Llama-2's legacy "▁" after each added token (as transformers' fast tokenizer)
  assert.is(
    tok.decode(tok.encode(EL_OUTPUT, { addSpecialTokens: false })),
    "<MENTION>David</MENTION>[LK][_CONTINUE_]  and <MENTION>Victoria</MENTION>[LK][_CONTINUE_]  named their children " +
      "<MENTION>Brooklyn</MENTION>[LK][_CONTINUE_] , Romeo, Cruz, and <MENTION>Harper Seven</MENTION>[LK][_CONTINUE_] .",
  );
});

test("Llama-2 encodes like transformers: known ids, BOS handling, special-token skipping", async () => {
  const tok = await onegenTokenizer();
  assert.equal(tok.encode("Hello world"), [1, 15043, 3186]);
  assert.equal(tok.encode("Hello world", { addSpecialTokens: false }), [15043, 3186]);
  assert.is(tok.bosTokenId, 1);
  assert.is(tok.eosTokenId, 2);
  assert.equal(tok.encode("</s>", { addSpecialTokens: false }), [2], "special tokens in text are atomic");
  assert.is(tok.decode([1, 15043, 3186, 2]), "<s> Hello world</s>");
  assert.is(tok.decode([1, 15043, 3186, 32002, 2], { skipSpecialTokens: true }), "Hello world");
  assert.ok(tok.isSpecial(32002) && tok.isSpecial(1) && !tok.isSpecial(15043));
  assert.equal(tok.specialTokens().map((s) => s.id), [0, 1, 2, 32000, 32001, 32002]);
  assert.throws(() => tok.decode([40000]), (e: Error) => e instanceof UsageError && /40000/.test(e.message));
  assert.throws(() => tok.requireTokenId("[NOPE]"), (e: Error) => e instanceof LoadError && /\[NOPE\]/.test(e.message));
});

test("without add_bos_token in tokenizer_config, tokenizer.json's post-processor decides; add_eos_token adds EOS", () => {
  const json = JSON.parse(readFileSync(join(LLAMA2, "tokenizer.json"), "utf8")) as Record<string, unknown>;
  const config = JSON.parse(readFileSync(join(LLAMA2, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  const { add_bos_token: _b, add_eos_token: _e, ...rest } = config;
  const viaPost = new Tokenizer(json, rest);
  assert.is(viaPost.addBosToken, null);
  assert.equal(viaPost.encode("Hello world"), [1, 15043, 3186], "TemplateProcessing adds <s>");
  const noBos = new Tokenizer(json, { ...config, add_bos_token: false, add_eos_token: true });
  assert.equal(noBos.encode("Hello world"), [15043, 3186, 2]);
  assert.equal(noBos.encode("Hello world", { addSpecialTokens: false }), [15043, 3186]);
});

test("adding tokens: next free ids, existing tokens keep theirs, the input object is not modified", () => {
  const json = JSON.parse(readFileSync(join(LLAMA2, "tokenizer.json"), "utf8")) as Record<string, unknown>;
  const before = (json.added_tokens as unknown[]).length;
  const { json: out, ids } = addTokensToTokenizerJson(json, ["[SE]", "</s>", "▁the", { content: "[X]", special: false }, "[SE]"]);
  assert.equal(ids, [32000, 2, 278, 32001, 32000]);
  assert.is((json.added_tokens as unknown[]).length, before);
  const added = out.added_tokens as { id: number; content: string; special: boolean; normalized: boolean }[];
  assert.equal(added.slice(before).map((t) => [t.id, t.content, t.special, t.normalized]), [
    [32000, "[SE]", true, false],
    [32001, "[X]", false, false],
  ]);
});

test("chat template renders like transformers' apply_chat_template", async () => {
  const tok = await onegenTokenizer();
  const text = tok.applyChatTemplate([
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi there" },
    { role: "assistant", content: "Hello!" },
    { role: "user", content: "Who are you?" },
  ]);
  assert.is(text, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Who are you? [/INST]");
  const ids = tok.encode(text, { addSpecialTokens: false });
  assert.is(count(ids, 1), 2);
  assert.is(count(ids, 2), 1);
  assert.throws(() => tok.applyChatTemplate([{ role: "assistant", content: "x" }]), /alternate/);
  const plain = new Tokenizer(JSON.parse(readFileSync(join(LLAMA2, "tokenizer.json"), "utf8")), {});
  assert.throws(() => plain.applyChatTemplate([{ role: "user", content: "x" }]), (e: Error) => e instanceof LoadError && /no chat template/.test(e.message));
});

test("a model directory without tokenizer files: ids still work, text gives a clear error", async () => {
  const empty = scratchDir("notok");
  assert.is(await tryLoadTokenizer(empty), null);
  const err = await assertRejects(() => loadTokenizer(empty), LoadError, [/has no tokenizer\.json/, new RegExp(empty.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), /hint: give token ids/], "no tokenizer");
  assert.ok(err.message.includes("--ids"));
  assert.is(resolveTokenId("#32002", null), 32002);
  assert.throws(() => resolveTokenId("[LK]", null), (e: Error) => e instanceof UsageError && /#<id>/.test(e.message));
  assert.is(resolveTokenId("[LK]", await onegenTokenizer()), 32002);
  assert.equal(parseIdList("[1, 2,3 4]"), [1, 2, 3, 4]);
  assert.equal(parseIdList(""), []);
  assert.throws(() => parseIdList("1,-2"), (e: Error) => e instanceof UsageError && /-2/.test(e.message));
  // the same loader through browser-style File objects
  const files = ["tokenizer.json", "tokenizer_config.json"].map((n) => new File([readFileSync(join(LLAMA2, n))], n));
  const viaFiles = await loadTokenizer(filesDir(files, "picked"), { addedTokens: ONEGEN_TOKENS });
  assert.equal(viaFiles.encode("[LK]x", { addSpecialTokens: false })[0], 32002);
});

// Untrusted model directories: tokenizer.json's regular expressions and the chat template run
// under a time limit; a catastrophic pattern is refused in one line naming the file and the pattern.

const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A word-level tokenizer.json whose pre-tokenizer splits with `pattern`, optionally with a Replace normalizer. */
function regexTokenizerJson(pattern: string, vocab: readonly string[], normalizerRegex?: string): Record<string, unknown> {
  return {
    model: { type: "WordLevel", vocab: Object.fromEntries(["<unk>", ...vocab].map((w, i) => [w, i])), unk_token: "<unk>" },
    normalizer: normalizerRegex === undefined ? null : { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: normalizerRegex }, content: "" }] },
    pre_tokenizer: { type: "Split", pattern: { Regex: pattern }, behavior: "Isolated", invert: false },
    post_processor: null,
    decoder: { type: "Fuse" },
    added_tokens: [],
  };
}

function writeTokenizerDir(json: unknown, config: unknown = {}): string {
  const dir = scratchDir("tokre");
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  return dir;
}

test("GPT-2 and Llama-3 pre-tokenizer regexes (lookahead \\s+(?!\\S)) load and split as the Rust tokenizers do, under the time limit", async () => {
  // GPT-2: the space before a word stays with the word, so a run of two spaces leaves one alone.
  const gpt2Vocab = ["Hello", " world", "'s", " ", " x", " 42", "!!"];
  const gpt2 = await loadTokenizer(writeTokenizerDir(regexTokenizerJson(GPT2_PATTERN, gpt2Vocab)));
  assert.ok(gpt2.timeLimited, "Node has node:vm: the work is time-limited");
  assert.equal(gpt2.regexes.map((r) => r.where), ["pre_tokenizer"]);
  assert.equal(gpt2.encode("Hello world's  x 42!!"), [1, 2, 3, 4, 5, 6, 7]);
  // Llama-3: digits in groups of three, case-insensitive contractions, newlines kept apart.
  const l3Vocab = ["Hello", " world", "'S", "123", "45", "\n\n", " foo", ".", " "];
  const l3 = new Tokenizer(regexTokenizerJson(LLAMA3_PATTERN, l3Vocab), {});
  assert.equal(l3.encode("Hello world'S12345\n\n foo."), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.is(l3.decode([1, 2]), "Hello world");
  // the Llama-2 tokenizer (no Regex patterns) is not time-limited per call: nothing to bound.
  assert.equal((await onegenTokenizer()).regexes, []);
});

test("a tokenizer.json with a catastrophically backtracking regex is refused at load, in one line naming the file and the pattern", async () => {
  const dir = writeTokenizerDir(regexTokenizerJson(GPT2_PATTERN, ["a"], "(a+)+$"));
  const started = Date.now();
  const err = await assertRejects(() => loadTokenizer(dir, { timeLimit: { probeMs: 300 } }), LoadError, [new RegExp(join(dir, "tokenizer.json").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), /normalizer\.normalizers\[1\] \/\(a\+\)\+\$\//, /backtracks catastrophically/], "hostile normalizer");
  const ms = Date.now() - started;
  assert.ok(ms < 300 + 2000, `refused after ${ms} ms (limit 300 ms per pattern)`);
  assert.not.match(err.message, /\n/, "one line");
  // the same in a pre-tokenizer, built directly from the object
  assert.throws(() => new Tokenizer(regexTokenizerJson("(\\s+)+x", ["a"]), {}, { name: "hostile.json", timeLimit: { probeMs: 300 } }), (e: Error) => e instanceof LoadError && /^hostile\.json: regular expression pre_tokenizer \/\(\\s\+\)\+x\//.test(e.message));
});

test("a hostile regex the load probe misses is stopped by the per-call time limit, naming the pattern; other texts still encode", async () => {
  // Backtracks only on runs of "ж", a character the probes do not try.
  const tok = new Tokenizer(regexTokenizerJson("(ж+)+$|\\p{L}+", ["abc"]), {}, { name: "m/tokenizer.json", timeLimit: { baseMs: 300, msPer1000Chars: 0 } });
  assert.equal(tok.encode("abc"), [1]);
  const started = Date.now();
  assert.throws(() => tok.encode("ж".repeat(40) + "!"), (e: Error) => e instanceof LoadError && /^m\/tokenizer\.json: encoding 41 characters took over 300 ms: its regular expression pre_tokenizer \/\(ж\+\)\+\$\|\\p\{L\}\+\/ backtracks catastrophically/.test(e.message) && !e.message.includes("\n"));
  const ms = Date.now() - started;
  assert.ok(ms < 2 * 300 + 2000, `stopped after ${ms} ms (limit 300 ms, then the same again to find the pattern)`);
  assert.equal(tok.encode("abc"), [1], "the tokenizer still works after an interrupted call");
});

test("a chat template that loops for ages is stopped by the time limit with a LoadError", () => {
  const json = regexTokenizerJson(GPT2_PATTERN, ["a"]);
  const slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done";
  const tok = new Tokenizer(json, { chat_template: slow }, { name: "t/tokenizer.json", timeLimit: { baseMs: 300, msPer1000Chars: 0 } });
  const started = Date.now();
  assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "hi" }]), (e: Error) => e instanceof LoadError && /^t\/tokenizer\.json: the chat template ran for over 300 ms/.test(e.message));
  assert.ok(Date.now() - started < 300 + 2000);
  const quick = new Tokenizer(json, { chat_template: "{% for m in messages %}{{ m.content }}{% endfor %}" });
  assert.is(quick.applyChatTemplate([{ role: "user", content: "hi" }]), "hi");
});

test.run();
