// The demo model's training files (scripts/demo/training_files.mjs, step 3 of
// scripts/demo/train_demo.sh): built from the train split only (no dev/test sentence or question),
// every retrieval pair resolves in its database, the random-world multi-hop rows use invented
// names only, their injected paragraphs equal their stored documents and their answers can be
// copied from the last paragraph, and the stage files are the advertised concatenations.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { scratchDir } from "./helpers/scratch.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = join(ROOT, "demo", "data");
const DFR = "[Document Fragment Representation]";

interface Msg {
  role: string;
  content: string;
  positive?: (string | null)[];
  negative?: string[][];
}
interface Row {
  uid?: string;
  messages: Msg[];
}
const jsonl = <T>(text: string): T[] => text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as T);
const read = async (dir: string, f: string): Promise<string> => readFile(join(dir, f), "utf8");

let work = "";
test.before(async () => {
  work = scratchDir("training-files");
  await mkdir(join(work, "init"));
  // the demo tokenizer (the bundled model's is the one init_model.mjs writes)
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await copyFile(join(ROOT, "demo", "model", f), join(work, "init", f));
  await promisify(execFile)(process.execPath, [join(ROOT, "scripts", "demo", "training_files.mjs"), DATA, work, ROOT], { maxBuffer: 1 << 20 });
});
test.after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test("training files: nothing from the dev or test split; the stage files are the advertised concatenations", async () => {
  const heldOutTexts = new Set<string>();
  const heldOutQuestions = new Set<string>();
  for (const s of ["dev", "test"]) {
    for (const g of jsonl<{ text: string }>(await read(DATA, `el/gold_${s}.jsonl`))) heldOutTexts.add(g.text);
    for (const g of jsonl<{ question: string }>(await read(DATA, `mhqa/gold_${s}.jsonl`))) heldOutQuestions.add(g.question);
  }
  const prompts = (rows: Row[]) => rows.map((r) => r.messages[0]!.content);
  const elNames = jsonl<Row>(await read(work, "el-names.jsonl"));
  const worlds = [...jsonl<Row>(await read(work, "mh-worlds.jsonl")), ...jsonl<Row>(await read(work, "mh-worlds-b.jsonl"))];
  assert.is(elNames.length, 6000);
  assert.is(worlds.length, 6000);
  for (const p of prompts(elNames)) {
    const text = p.split("TEST TEXT:\n")[1]!.replace(/ \[\/INST\]$/, "");
    assert.not.ok(heldOutTexts.has(text), `held-out sentence in el-names: ${text}`);
  }
  for (const p of prompts(worlds)) {
    const q = p.split("Here is a question: ")[1]!;
    assert.not.ok(heldOutQuestions.has(q), `held-out question in mh-worlds: ${q}`);
  }
  const train = await read(work, "train.jsonl");
  const elNamesText = await read(work, "el-names.jsonl");
  assert.is(await read(work, "train-p3.jsonl"), train + elNamesText);
  const first2000 = elNamesText.split("\n").slice(0, 2000).join("\n") + "\n";
  assert.is(await read(work, "train-p5.jsonl"), train + first2000 + (await read(work, "mh-worlds.jsonl")));
  const next2000 = elNamesText.split("\n").slice(2000, 4000).join("\n") + "\n";
  assert.is(await read(work, "train-p6.jsonl"), train + next2000 + (await read(work, "mh-worlds-b.jsonl")));
  const db = await read(work, "db.jsonl");
  assert.ok((await read(work, "db-p5.jsonl")).startsWith(db), "db-p5.jsonl starts with db.jsonl");
  assert.ok((await read(work, "db-p6.jsonl")).startsWith(db), "db-p6.jsonl starts with db.jsonl");
});

for (const [rowsFile, dbFile, prefix, namesakes] of [["mh-worlds.jsonl", "db-p5.jsonl", "rw", false], ["mh-worlds-b.jsonl", "db-p6.jsonl", "rx", true]] as const) {
  test(`training files: ${rowsFile} uses invented names, resolves every pair in ${dbFile}, injects its stored documents, answers from the context`, async () => {
    const kb = JSON.parse(await read(DATA, "kb.json")) as { name: string }[];
    const realNames = new Set(kb.map((e) => e.name));
    const docs = new Map(jsonl<Row>(await read(work, dbFile)).map((r) => [r.uid!, r.messages[1]!.content]));
    const fragments = (uid: string): number => {
      const content = docs.get(uid);
      assert.ok(content !== undefined, `uid ${uid} is not in ${dbFile}`);
      return content!.split(DFR).length - 1;
    };
    const resolve = (u: string): string => {
      const dash = u.lastIndexOf("-");
      const uid = u.slice(0, dash);
      const f = Number(u.slice(dash + 1));
      assert.ok(Number.isInteger(f) && f >= 0 && f < fragments(uid), `${u}: no fragment ${f}`);
      return uid;
    };
    const subject = (content: string): string => /^(.+?) (is|was) /.exec(content)![1]!;
    let invented = 0;
    for (const [uid, content] of docs) {
      if (!uid.startsWith(prefix)) continue;
      invented++;
      assert.not.ok(realNames.has(subject(content)), `${uid}: invented document about the real name ${subject(content)}`);
    }
    assert.is(invented, 4 * 3000);
    const types = new Set<string>();
    let sameName = 0;
    for (const row of jsonl<Row>(await read(work, rowsFile))) {
      const a = row.messages[1]!;
      const paragraphs = [...a.content.matchAll(/<paragraph>(.*?)<\/paragraph>/g)].map((m) => m[1]!);
      assert.is(a.positive!.length, 2);
      assert.is(a.negative!.length, 2);
      assert.is(paragraphs.length, 2);
      a.positive!.forEach((p, k) => {
        const uid = resolve(p!);
        assert.is(paragraphs[k], docs.get(uid), "the paragraph after a retrieval is the positive's stored document");
        for (const n of a.negative![k]!) {
          const other = resolve(n);
          assert.is.not(other, uid, "a hard negative is another document");
          if (k === 1 && uid.startsWith(prefix) && subject(docs.get(other)!) === subject(docs.get(uid)!)) sameName++;
        }
      });
      const answer = /<FINAL-ANSWER>(.*?)<\/FINAL-ANSWER><\/s>$/.exec(a.content)![1]!;
      assert.ok(paragraphs[1]!.includes(answer), `answer ${answer} is in the second paragraph`);
      types.add(row.messages[0]!.content.split("Here is a question: ")[1]!.split(" ").slice(0, 3).join(" "));
    }
    assert.ok(types.size >= 5, `every question type appears (${[...types].join(" | ")})`);
    if (namesakes) assert.ok(sameName > 500, `namesake distractors present (${sameName} negatives)`);
    else assert.is(sameName, 0, "no namesake distractors");
  });
}

test.run();
