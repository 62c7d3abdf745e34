// One format of the quantized-decode bench (bench/quant-7b.ts forks one process per format, so that
// each process's peak RSS is that format's alone): load the model directory with loadDecoder
// (dtype f16, or `quantize: q8_0 | q4_0` while loading), warm up, time greedy decode, and
// optionally run one OneGen entity linking through the normal task path (src/onegen/entity-linking.ts):
// a tiny index encoded by the same model at [SE] (encodeDocuments), then runEntityLinking on a text
// whose output is steered, since the weights are random, into `<MENTION>David</MENTION>[LK]` by
// forcing rules (as test/onegen-tasks.test.ts steers its untrained model); the [LK] triggers the
// in-loop search and the task's own rule forces [_CONTINUE_] after `</MENTION>[LK]`.
//
// Decode rep: truncate the session to empty, prefill the prompt ids (P tokens), then
// Session.generate(G + 1 tokens, temperature 0, stepsPerRead 4): the first token comes from the
// prefill's logits and each of the G others costs one decode forward, so tok/s = G / wall time
// (sampling, readbacks and host overhead included) and weight GB/s = decode bytes × tok/s.
import { loadavg } from "node:os";
import { openDevice, describeContext } from "../src/gpu/device.js";
import type { Tensor } from "../src/gpu/tensor.js";
import { loadDecoder } from "../src/model/load.js";
import { Session } from "../src/model/session.js";
import { encodeDocuments } from "../src/onegen/encode.js";
import { runEntityLinking } from "../src/onegen/entity-linking.js";
import { preparePrompt } from "../src/onegen/task-runner.js";
import { ONEGEN_ENTITY_LINKING } from "../src/onegen/defaults.js";
import type { QuantFormat } from "../src/quant/formats.js";

export type Format = "f16" | QuantFormat;

export interface QuantWorkerInit {
  format: Format;
  model: string;
  /** Prompt ids for the decode reps. */
  prompt: number[];
  /** Timed decode forwards per rep. */
  decode: number;
  reps: number;
  /** Run the entity-linking retrieval in this process. */
  entityLinking: boolean;
  /** Entity-linking prompt: OneGen's template (default) or the text alone. */
  elTemplate: "onegen" | "none";
}

export interface DecodeRep {
  ms: number;
  tokPerS: number;
  weightGBps: number;
  ids: number[];
  loadAvg1: number;
}

export interface EntityLinkingReport {
  documents: number;
  indexEntries: number;
  indexMs: number;
  promptTokens: number;
  runMs: number;
  annotated: string | null;
  /** Ids after the prompt (forced and generated). */
  generatedIds: number[];
  mentions: { mention: string | null; span: [number, number] | null; entity: string | null; score: number | null }[];
  retrievals: { position: number; source: string; hits: { id: string; fragment: number; score: number }[] }[];
  /** [_CONTINUE_] right after the generated [LK] (the task's forcing rule fired). */
  continueForced: boolean;
  mode: string;
}

export interface QuantWorkerResult {
  format: Format;
  adapter: string;
  backend: unknown;
  features: unknown;
  memoryBudget: unknown;
  quantization: string | null;
  loadMs: number;
  /** GPU bytes of all weights (quantized projections at their packed size). */
  weightBytes: number;
  /** Weight bytes one decode forward reads: layer matrices and norms, final norm, lm_head, one embedding row. */
  decodeBytes: number;
  warmupMs: number;
  reps: DecodeRep[];
  tokPerS: number;
  weightGBps: number;
  entityLinking: EntityLinkingReport | null;
  /** Process peak resident set (bytes): lavapipe's buffers are host memory, so this holds the weights. */
  peakRssBytes: number;
  rssAfterLoadBytes: number;
  loadAvg: { start: number[]; afterLoad: number[]; end: number[] };
}

const now = () => performance.now();
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The entity documents of the tiny index (OneGen's entity side: a description followed by [SE]). */
export const EL_DOCUMENTS = [
  { id: "Q_David_Beckham", text: "David Beckham is an English former professional footballer and the president of Inter Miami." },
  { id: "Q_Victoria_Beckham", text: "Victoria Beckham is an English fashion designer and former singer of the Spice Girls." },
  { id: "Q_David_Bowie", text: "David Bowie was an English singer, songwriter and actor." },
  { id: "Q_Brooklyn", text: "Brooklyn is a borough of New York City." },
];
export const EL_TEXT = "David and Victoria named their children Brooklyn, Romeo, Cruz, and Harper Seven.";
const EL_MENTION = "David";

export async function runFormat(init: QuantWorkerInit, log: (s: string) => void): Promise<QuantWorkerResult> {
  const la0 = loadavg();
  const t0 = now();
  const ctx = await openDevice();
  const cap = Math.max(init.prompt.length + init.decode + 8, 64);
  // The projections' layout as the CLI loads them (gemvLayout "auto": tiles on software adapters).
  const m = await loadDecoder(ctx, init.model, { dtype: "f16", gemvLayout: "auto", contextLength: init.entityLinking ? 512 : cap, ...(init.format !== "f16" ? { quantize: init.format } : {}) });
  await ctx.sync();
  const loadMs = now() - t0;
  const rssAfterLoad = process.memoryUsage().rss;
  const laLoad = loadavg();
  log(`${init.format}: loaded in ${(loadMs / 1e3).toFixed(1)} s (${(m.weightBytes / 1e9).toFixed(2)} GB of weights, ${m.quantization ?? "float"}, ${m.gemvLayout}), RSS ${(rssAfterLoad / 2 ** 30).toFixed(1)} GiB`);

  const w = m.decoder.weights;
  const c = m.config;
  const sum = (ts: (Tensor | null)[]) => ts.reduce((a, t) => a + (t ? t.byteLength : 0), 0);
  const decodeBytes =
    w.layers.reduce((a, L) => a + sum([L.inputNorm, L.q, L.k, L.v, L.o, L.postNorm, L.gate, L.up, L.down]), 0) + w.norm.byteLength + w.lmHead.byteLength + c.hiddenSize * (w.embed.byteLength / w.embed.numel);

  const session = Session.create(m.decoder, cap);
  const rep = async (G: number): Promise<DecodeRep> => {
    session.truncate(0);
    await session.append(init.prompt);
    await ctx.sync();
    const a = now();
    const ids: number[] = [];
    for await (const t of session.generate({ maxNewTokens: G + 1, temperature: 0, stepsPerRead: 4 })) ids.push(t.id);
    await ctx.sync();
    const ms = now() - a;
    if (ids.length !== G + 1) throw new Error(`${init.format}: generate returned ${ids.length} tokens, expected ${G + 1} (${session.finishReason})`);
    const tokPerS = G / (ms / 1e3);
    return { ms, tokPerS, weightGBps: (decodeBytes * tokPerS) / 1e9, ids, loadAvg1: loadavg()[0]! };
  };
  const w0 = now();
  await rep(2);
  const warmupMs = now() - w0;
  log(`${init.format}: warm-up (prefill ${init.prompt.length} + 3 tokens) ${(warmupMs / 1e3).toFixed(1)} s`);
  const reps: DecodeRep[] = [];
  for (let r = 0; r < init.reps; r++) {
    const x = await rep(init.decode);
    reps.push(x);
    log(`${init.format}: decode rep ${r + 1}/${init.reps}: ${x.tokPerS.toFixed(3)} tok/s, ${x.weightGBps.toFixed(2)} GB/s of weights (${(x.ms / 1e3).toFixed(1)} s for ${init.decode} forwards; load ${x.loadAvg1.toFixed(2)}); ids ${x.ids.join(",")}`);
  }
  session.dispose();

  let el: EntityLinkingReport | null = null;
  if (init.entityLinking) el = await entityLinking(m, init, log);

  const d = describeContext(ctx);
  const res: QuantWorkerResult = {
    format: init.format,
    adapter: ctx.adapter.description,
    backend: d.backend,
    features: d.features,
    memoryBudget: d.memoryBudget,
    quantization: m.quantization,
    loadMs,
    weightBytes: m.weightBytes,
    decodeBytes,
    warmupMs,
    reps,
    tokPerS: median(reps.map((x) => x.tokPerS)),
    weightGBps: median(reps.map((x) => x.weightGBps)),
    entityLinking: el,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    rssAfterLoadBytes: rssAfterLoad,
    loadAvg: { start: la0, afterLoad: laLoad, end: loadavg() },
  };
  m.dispose();
  ctx.destroy();
  return res;
}

async function entityLinking(m: Awaited<ReturnType<typeof loadDecoder>>, init: QuantWorkerInit, log: (s: string) => void): Promise<EntityLinkingReport> {
  const tk = m.tokenizer;
  if (!tk) throw new Error(`${init.model}: entity linking needs the model's tokenizer (tokenizer.json with [SE], [LK], [_CONTINUE_])`);
  const SE = tk.tokenToId(ONEGEN_ENTITY_LINKING.docToken);
  const LK = tk.tokenToId(ONEGEN_ENTITY_LINKING.queryToken);
  if (SE === undefined || LK === undefined) throw new Error(`${init.model}: the tokenizer lacks ${ONEGEN_ENTITY_LINKING.docToken} or ${ONEGEN_ENTITY_LINKING.queryToken}`);
  const ti = now();
  const index = await encodeDocuments(m.decoder, EL_DOCUMENTS, { docTokenId: SE, tokenizer: tk });
  const indexMs = now() - ti;
  log(`${init.format}: entity index of ${index.count} entries (${EL_DOCUMENTS.length} documents at [SE]) encoded in ${(indexMs / 1e3).toFixed(1)} s`);
  try {
    const template = init.elTemplate === "none" ? null : undefined;
    const opts = { ...(template === null ? { template: null } : {}) };
    const { prompt } = preparePrompt(m, { text: EL_TEXT }, ONEGEN_ENTITY_LINKING.inputTemplate, opts, "entity linking");
    // Steer the random model: after the prompt, write `<MENTION>David</MENTION>` then [LK]. Each rule's
    // pattern is the prompt's last 3 ids and the steered ids so far (unique, so no rule fires elsewhere).
    const steer = [...tk.encode(`<MENTION>${EL_MENTION}</MENTION>`, { addSpecialTokens: false }), LK];
    const tail = prompt.slice(-3);
    const forceAfter = steer.map((token, i) => ({ pattern: [...tail, ...steer.slice(0, i)], token }));
    const tr = now();
    const r = await runEntityLinking(m, index, { text: EL_TEXT }, { ...opts, k: 2, maxNewTokens: steer.length + 3, forceAfter });
    const runMs = now() - tr;
    const gen = r.ids.slice(r.promptIds.length);
    const at = gen.indexOf(LK);
    const cont = tk.tokenToId(ONEGEN_ENTITY_LINKING.continueToken)!;
    const report: EntityLinkingReport = {
      documents: EL_DOCUMENTS.length,
      indexEntries: index.count,
      indexMs,
      promptTokens: r.promptIds.length,
      runMs,
      annotated: r.annotated,
      generatedIds: gen,
      mentions: r.mentions.map((x) => ({ mention: x.mention, span: x.span, entity: x.entity, score: x.score })),
      retrievals: r.retrievals.map((x) => ({ position: x.position, source: x.source, hits: x.hits.map((h) => ({ id: h.id, fragment: h.fragment, score: h.score })) })),
      continueForced: at >= 0 && gen[at + 1] === cont,
      mode: r.mode,
    };
    log(`${init.format}: entity linking (${r.promptIds.length} prompt tokens) in ${(runMs / 1e3).toFixed(1)} s: ${JSON.stringify(r.annotated)}; mentions ${JSON.stringify(report.mentions)}`);
    return report;
  } finally {
    index.dispose();
  }
}

// Forked by bench/quant-7b.ts: one "run" message, one reply, exit.
if (process.send) {
  process.on("message", (msg: { init: QuantWorkerInit }) => {
    void (async () => {
      try {
        const res = await runFormat(msg.init, (s) => process.stdout.write(s + "\n"));
        process.send!({ ok: true, res }, () => process.exit(0));
      } catch (e) {
        process.send!({ ok: false, error: (e as Error).stack ?? String(e) }, () => process.exit(1));
      }
    })();
  });
}
