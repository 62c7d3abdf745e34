// Tokenizer: the real Llama-2 tokenizer with OneGen's added tokens, BOS/EOS rules, chat template,
// and model directories without tokenizer files.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LoadError, UsageError } from "../src/errors.js";
import { filesDir } from "../src/io/source.js";
import { Tokenizer, addTokensToTokenizerJson, loadTokenizer, parseIdList, resolveTokenId, tryLoadTokenizer } from "../src/tokenizer.js";
import { assertRejects } from "./helpers/check.js";

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
  const empty = mkdtempSync(join(tmpdir(), "onegen-notok-"));
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

test.run();
