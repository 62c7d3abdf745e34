// The demo model's tokenizer: a word-level tokenizer in Hugging Face tokenizers JSON form
// (tokenizer.json + tokenizer_config.json), built from the demo data's texts.
//
// - Pre-tokenizer: one regex split (Split, behavior Isolated) into words with their leading space
//   (" Paris"), single digits (" 1", "9"), single punctuation marks and runs of whitespace;
//   every piece of the corpus is one vocabulary entry (WordLevel), so a text made of known
//   pieces decodes back to itself exactly (decoder Fuse: pieces concatenated; no cleanup of
//   spaces). Unknown pieces become <unk>.
// - Added tokens (matched in the raw text before splitting, one id each): <pad> <s> </s> <unk>
//   and OneGen's tokens ([LK], [SE], [_CONTINUE_], [Question Representation],
//   [Document Fragment Representation], <MENTION>, </MENTION>, <paragraph>, </paragraph>,
//   <FINAL-ANSWER>, </FINAL-ANSWER>), all special, as OneGen's add_tokens(special_tokens=True).
// - No BOS/EOS added by encode (add_bos_token/add_eos_token false, OneGen's configs); </s> ends
//   every training target and is the model's EOS.
// Ids: the 4 base specials 0..3, OneGen's tokens 4..14, then the corpus pieces by descending
// frequency (ties in code-unit order), so the same corpus always gives the same ids.
import { parseJsonlObjects } from "../util/jsonl.js";
import { readdir, readFile, mkdir, stat } from "node:fs/promises";
import { fileIsOurs, writeFileAtomic } from "../io/output.js";
import { join } from "node:path";
import { LoadError, UsageError } from "../errors.js";
import { Tokenizer } from "../tokenizer.js";
import { ONEGEN_ENTITY_LINKING, ONEGEN_MULTIHOP_QA } from "../onegen/defaults.js";

const BASE_SPECIAL_TOKENS = { pad: "<pad>", bos: "<s>", eos: "</s>", unk: "<unk>" } as const;

/** OneGen's token conventions (src/onegen/defaults.ts), each one id. */
export const ONEGEN_TOKENS = [
  "[LK]",
  "[SE]",
  "[_CONTINUE_]",
  "[Question Representation]",
  "[Document Fragment Representation]",
  "<MENTION>",
  "</MENTION>",
  "<paragraph>",
  "</paragraph>",
  "<FINAL-ANSWER>",
  "</FINAL-ANSWER>",
] as const;

/** Words with their leading space, single digits, single punctuation marks, whitespace runs. */
const PRETOKENIZE_PATTERN = " ?[A-Za-z]+| ?[0-9]| ?[^\\sA-Za-z0-9]|\\s+(?!\\S)|\\s+";

export function allSpecialTokens(): string[] {
  return [BASE_SPECIAL_TOKENS.pad, BASE_SPECIAL_TOKENS.bos, BASE_SPECIAL_TOKENS.eos, BASE_SPECIAL_TOKENS.unk, ...ONEGEN_TOKENS];
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The pieces of a text as the tokenizer sees them: special tokens whole, the text between them
 * split by PRETOKENIZE_PATTERN (the reference for what tokenizer.json does).
 */
export function pretokenize(text: string): string[] {
  const specials = allSpecialTokens().sort((a, b) => b.length - a.length);
  const splitter = new RegExp(`(${specials.map(escapeRegex).join("|")})`);
  const piece = new RegExp(PRETOKENIZE_PATTERN, "g");
  const out: string[] = [];
  for (const section of text.split(splitter)) {
    if (section === "") continue;
    if (specials.includes(section)) {
      out.push(section);
      continue;
    }
    let covered = 0;
    for (const m of section.matchAll(piece)) {
      if (m.index !== covered) out.push(section.slice(covered, m.index)); // never happens for this pattern; kept as the Isolated split does
      out.push(m[0]);
      covered = m.index + m[0].length;
    }
    if (covered < section.length) out.push(section.slice(covered));
  }
  return out;
}

interface DemoTokenizerFiles {
  /** tokenizer.json contents. */
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json contents. */
  tokenizerConfig: Record<string, unknown>;
  /** Ids in all (the largest id + 1). */
  vocabSize: number;
}

interface BuildTokenizerOptions {
  /** Keep pieces seen at least this often (default 1: every piece of the corpus). */
  minCount?: number;
  /** model_max_length in tokenizer_config.json (default 1024). */
  modelMaxLength?: number;
}

/** Builds the word-level tokenizer whose vocabulary is every piece of `texts`. */
export function buildDemoTokenizer(texts: Iterable<string>, opts: BuildTokenizerOptions = {}): DemoTokenizerFiles {
  const minCount = opts.minCount ?? 1;
  const specials = allSpecialTokens();
  const counts = new Map<string, number>();
  for (const t of texts) for (const p of pretokenize(t)) if (!specials.includes(p)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const pieces = [...counts.entries()].filter(([, n]) => n >= minCount).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  pieces.forEach(([p], i) => (vocab[p] = specials.length + i));
  const added = specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "Split", pattern: { Regex: PRETOKENIZE_PATTERN }, behavior: "Isolated", invert: false },
    post_processor: null,
    decoder: { type: "Fuse" },
    model: { type: "WordLevel", vocab, unk_token: BASE_SPECIAL_TOKENS.unk },
  };
  const tokenizerConfig = {
    tokenizer_class: "PreTrainedTokenizerFast",
    add_bos_token: false,
    add_eos_token: false,
    bos_token: BASE_SPECIAL_TOKENS.bos,
    eos_token: BASE_SPECIAL_TOKENS.eos,
    unk_token: BASE_SPECIAL_TOKENS.unk,
    pad_token: BASE_SPECIAL_TOKENS.pad,
    additional_special_tokens: [...ONEGEN_TOKENS],
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength ?? 1024,
  };
  return { tokenizerJson, tokenizerConfig, vocabSize: specials.length + pieces.length };
}

/** String fields of the demo data files that hold text the model reads or writes. */
const TEXT_FIELDS = new Set(["content", "text", "question", "answer", "target", "annotated", "sub_question"]);

function collectTexts(v: unknown, out: string[]): void {
  if (Array.isArray(v)) for (const x of v) collectTexts(x, out);
  else if (typeof v === "object" && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === "string" && TEXT_FIELDS.has(k)) out.push(x);
      else collectTexts(x, out);
    }
  }
}

/**
 * Every text of the demo data folder (the .jsonl files under el/ and mhqa/: prompts, targets,
 * documents, gold sentences and questions) plus the OneGen task templates of src/onegen/defaults.ts.
 */
export async function demoCorpusTexts(dataDir: string): Promise<string[]> {
  const texts: string[] = [ONEGEN_ENTITY_LINKING.inputTemplate, ONEGEN_MULTIHOP_QA.inputTemplate, ONEGEN_MULTIHOP_QA.embedTemplate];
  let files = 0;
  for (const sub of ["el", "mhqa"]) {
    let names: string[];
    try {
      names = (await readdir(join(dataDir, sub))).filter((n) => n.endsWith(".jsonl")).sort();
    } catch (e) {
      throw new LoadError(`demo data folder '${dataDir}' has no '${sub}' folder (${(e as Error).message})`, "generate it with `node scripts/demo/make_data.mjs`");
    }
    for (const name of names) {
      const file = join(dataDir, sub, name);
      for (const row of parseJsonlObjects(await readFile(file, "utf8"), file)) collectTexts(row.value, texts);
      files++;
    }
  }
  if (files === 0) throw new LoadError(`demo data folder '${dataDir}' holds no .jsonl files`, "generate it with `node scripts/demo/make_data.mjs`");
  return texts;
}

/**
 * Builds the demo tokenizer from a data folder and writes tokenizer.json and
 * tokenizer_config.json into `outDir` (created if missing; its parent must exist). Checks that it
 * loads with src/tokenizer.ts and that every corpus text round-trips; throws otherwise. Each file
 * is written atomically (src/io/output.ts) and only where none is, or one with the same bytes:
 * another tokenizer in `outDir` is never overwritten (UsageError).
 */
export async function writeDemoTokenizer(dataDir: string, outDir: string, opts: BuildTokenizerOptions = {}): Promise<{ vocabSize: number; texts: number }> {
  const texts = await demoCorpusTexts(dataDir);
  const files = buildDemoTokenizer(texts, opts);
  const tok = new Tokenizer(files.tokenizerJson, files.tokenizerConfig, { name: "demo tokenizer" });
  if (tok.vocabSize !== files.vocabSize) throw new LoadError(`demo tokenizer: ${tok.vocabSize} ids after loading, ${files.vocabSize} built`);
  if ((opts.minCount ?? 1) <= 1) {
    for (const t of texts) {
      const back = tok.decode(tok.encode(t));
      if (back !== t) throw new LoadError(`demo tokenizer: ${JSON.stringify(t.slice(0, 80))} does not round-trip (got ${JSON.stringify(back.slice(0, 80))})`);
    }
  }
  await mkdir(outDir).catch((e: { code?: string }) => {
    if (e.code !== "EEXIST") throw e;
  });
  const out = [
    [join(outDir, "tokenizer.json"), JSON.stringify(files.tokenizerJson, null, 1) + "\n"],
    [join(outDir, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig, null, 1) + "\n"],
  ] as const;
  // Both checked before either is written.
  for (const [p, text] of out) {
    const size = await stat(p).then((st) => (st.isFile() ? st.size : -1), () => 0);
    if (size !== 0 && !(await fileIsOurs(p, "demo-tokenizer", new TextEncoder().encode(text)))) {
      throw new UsageError(`writeDemoTokenizer: '${p}' exists with other contents: refusing to overwrite it; write the tokenizer into a new directory`);
    }
  }
  for (const [p, text] of out) await writeFileAtomic(p, "demo-tokenizer", text, { flag: "writeDemoTokenizer: outDir" });
  return { vocabSize: files.vocabSize, texts: texts.length };
}
