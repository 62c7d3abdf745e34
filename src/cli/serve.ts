// `onegen serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-batch N]
//  [--max-queue N] [--context N] [--max-tokens N] [--max-n N] [--max-body SIZE] [--model-name ID]
//  [--chat-template FILE] [--doc-token TOKEN] [--index NAME=DIR[,NAME=DIR…]] [--retrieval rows|turns] [--max-retrievals N] [--drain-seconds S] [--gpu-memory SIZE] [--dtype D]`
// An OpenAI-compatible HTTP server (src/serve/): concurrent requests share decode steps. Binds
// 127.0.0.1 unless --host says otherwise. The KV cache ((max-batch + 1) × context tokens) is
// planned with the weights against the GPU memory budget before loading. SIGTERM or SIGINT:
// stop accepting, let running sequences finish for --drain-seconds, cancel the rest, exit 0.
// A lost GPU device: in-flight requests get 503, the process exits 1. --index loads OneGen
// indexes that requests name in `onegen: {index, task, k, inject}` (planned with the weights, and
// --max-retrievals sessions of --context rows). --retrieval rows (default): a retrieval request
// decodes as a row of the batched step (src/serve/retrieval.ts rowsRefusal); with --retrieval
// turns each runs on its own session, taking turns with the batch's steps.
import { readFile } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { choiceFlag, numberFlag, parseArgs, sizeFlag } from "./args.js";
import { MODEL_FLAGS, unusedTensorsWarning } from "./model.js";
import { openDevice } from "../gpu/device.js";
import { loadDecoder } from "../model/load.js";
import { loadModelConfig } from "../model/checkpoint.js";
import { LoadError, UsageError } from "../errors.js";
import { kvCacheBytes } from "../model/config.js";
import { startServer } from "../serve/server.js";
import { engineStepBytes } from "../serve/engine.js";
import { createProgressBar } from "./progress.js";
import { indexGpuBytesOf, loadIndex } from "../onegen/index-files.js";
import { retrievalSessionBytes, type ServedIndex } from "../serve/retrieval.js";

/** --index NAME=DIR[,NAME=DIR…] */
function parseIndexFlag(v: string | undefined): { name: string; dir: string }[] {
  if (v === undefined) return [];
  const out: { name: string; dir: string }[] = [];
  for (const part of v.split(",")) {
    const m = /^([A-Za-z0-9_.-]+)=(.+)$/.exec(part.trim());
    if (!m) throw new UsageError(`serve: --index takes NAME=DIR[,NAME=DIR…] (names of letters, digits, _ . -), got '${part}'`);
    if (out.some((x) => x.name === m[1])) throw new UsageError(`serve: --index names '${m[1]}' twice`);
    out.push({ name: m[1]!, dir: m[2]! });
  }
  return out;
}

const USAGE =
  "usage: onegen serve --model DIR [--host H (default 127.0.0.1)] [--port N (default 8000; 0: any free port)] [--api-key KEY (or env ONEGEN_API_KEY)] " +
  "[--max-batch N (default 8)] [--max-queue N (default 64)] [--context N (tokens per sequence; default min(model, 2048))] [--max-tokens N] [--max-n N (default 4)] " +
  "[--max-body SIZE (default 1M)] [--model-name ID (default: the directory's name)] [--chat-template FILE] [--doc-token TOKEN|#ID (default [SE])] " +
  "[--index NAME=DIR[,NAME=DIR…] (OneGen indexes for the onegen extension)] [--retrieval rows|turns (retrieval requests as rows of the batched step, default; or each on its own session)] [--max-retrievals N (retrieval requests on their own sessions running at once; default 2)] [--drain-seconds S (default 10)] [--gpu-memory SIZE] [--dtype auto|f16|f32] [--quiet]";

export async function serveCommand(argv: string[]): Promise<number> {
  const args = parseArgs(
    argv,
    {
      values: [...MODEL_FLAGS, "host", "port", "api-key", "max-batch", "max-queue", "max-tokens", "max-n", "max-body", "model-name", "chat-template", "doc-token", "index", "retrieval", "max-retrievals", "drain-seconds"],
      booleans: ["help", "quiet"],
    },
    "serve",
  );
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const dir = args.flags.get("model");
  if (!dir) throw new UsageError("serve: --model DIR is required");
  const port = numberFlag(args, "port", "serve", { integer: true, min: 0, max: 65535 }) ?? 8000;
  const host = args.flags.get("host") ?? "127.0.0.1";
  if (host.trim() === "" || /[\s/]/.test(host)) throw new UsageError(`serve: --host must be a host name or IP address, got '${host}'`);
  // the environment keeps the key out of `ps`; the flag wins when both are given
  const apiKey = args.flags.get("api-key") ?? process.env.ONEGEN_API_KEY ?? null;
  if (apiKey !== null && apiKey.trim() === "") throw new UsageError(`serve: ${args.flags.has("api-key") ? "--api-key" : "ONEGEN_API_KEY"} must not be empty`);
  const maxBatch = numberFlag(args, "max-batch", "serve", { integer: true, min: 1, max: 256 }) ?? 8;
  const maxQueue = numberFlag(args, "max-queue", "serve", { integer: true, min: 0, max: 1_000_000 }) ?? 64;
  const maxN = numberFlag(args, "max-n", "serve", { integer: true, min: 1, max: 64 });
  const maxRetrievals = numberFlag(args, "max-retrievals", "serve", { integer: true, min: 1, max: 256 }) ?? 2;
  const retrieval = choiceFlag(args, "retrieval", ["rows", "turns"] as const, "serve") ?? "rows";
  const maxTokens = numberFlag(args, "max-tokens", "serve", { integer: true, min: 1 });
  const drainSeconds = numberFlag(args, "drain-seconds", "serve", { min: 0, max: 3600 }) ?? 10;
  const maxBody = sizeFlag(args, "max-body", "serve") ?? 1 << 20;
  if (maxBody < 1024) throw new UsageError(`serve: --max-body must be at least 1K, got ${maxBody} bytes`);
  const dtype = args.flags.get("dtype") ?? "auto";
  if (dtype !== "auto" && dtype !== "f16" && dtype !== "f32") throw new UsageError(`serve: --dtype must be auto, f16 or f32, got '${dtype}'`);
  const budget = sizeFlag(args, "gpu-memory", "serve");
  const config = await loadModelConfig(dir);
  const context = numberFlag(args, "context", "serve", { integer: true, min: 2 }) ?? Math.min(config.maxPositionEmbeddings, 2048);
  if (context > config.maxPositionEmbeddings) throw new UsageError(`serve: --context ${context} exceeds the model's context of ${config.maxPositionEmbeddings} positions (max_position_embeddings in '${dir}/config.json')`);
  if (maxTokens !== undefined && maxTokens > context) throw new UsageError(`serve: --max-tokens ${maxTokens} exceeds --context ${context}`);
  const templateFile = args.flags.get("chat-template");
  let chatTemplate: string | undefined;
  if (templateFile !== undefined) {
    try {
      chatTemplate = await readFile(templateFile, "utf8");
    } catch (e) {
      throw new LoadError(`--chat-template '${templateFile}' cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const indexSpecs = parseIndexFlag(args.flags.get("index"));
  const indexReserve: { what: string; bytes: number }[] = [];
  for (const { name, dir: d } of indexSpecs) indexReserve.push({ what: `index '${name}' (${d})`, bytes: await indexGpuBytesOf(d) });
  if (indexSpecs.length) indexReserve.push({ what: `${maxRetrievals} retrieval session(s) of ${context} tokens (--max-retrievals)`, bytes: maxRetrievals * retrievalSessionBytes(config, context) });
  const quiet = args.bools.has("quiet");
  const ctx = await openDevice(budget !== undefined ? { memoryBudgetBytes: budget } : {});
  try {
    const bar = quiet ? null : createProgressBar("loading");
    const model = await loadDecoder(ctx, dir, {
      dtype,
      // row-major, not "auto": on lavapipe the tiles layout is faster for one stream (×1.07–1.16) but
      // at 8 streams ×0.84–1.14 of row-major from run to run (bench/results/2026-12-03-serve-batching.md;
      // ×0.72 in 2026-12-02-gemv-bcast.md)
      gemvLayout: "rows",
      // the serving cache: (max-batch + 1) slots of --context rows, and the batched step's buffers, planned with the weights
      reserve: [
        { what: `KV cache (${maxBatch} + 1 slots × ${context} tokens)`, bytes: kvCacheBytes(config, (maxBatch + 1) * context, 2) },
        { what: `batched step buffers (${maxBatch} rows of logits)`, bytes: engineStepBytes({ config }, maxBatch) },
        ...indexReserve,
      ],
      ...(chatTemplate !== undefined ? { tokenizer: { chatTemplate } } : {}),
      ...(bar ? { onProgress: (p) => bar.update(p) } : {}),
    });
    bar?.done();
    const warn = unusedTensorsWarning("serve", dir, model.unusedTensors);
    if (warn) process.stderr.write(warn);
    const modelId = args.flags.get("model-name") ?? basename(resolve(dir));
    const indexes = new Map<string, ServedIndex>();
    for (const { name, dir: d } of indexSpecs) indexes.set(name, { name, index: await loadIndex(ctx, d, model.decoder) });
    let server;
    try {
      server = await startServer(model, {
        host,
        port,
        apiKey,
        modelId,
        maxBatch,
        maxQueue,
        contextTokens: context,
        ...(maxTokens !== undefined ? { maxTokens } : {}),
        ...(maxN !== undefined ? { maxN } : {}),
        maxBodyBytes: maxBody,
        ...(args.flags.has("doc-token") ? { docToken: args.flags.get("doc-token")! } : {}),
        indexes,
        maxRetrievals,
        retrieval,
        onInternalError: (e) => process.stderr.write(`onegen serve: internal error: ${(e as Error)?.stack ?? String(e)}\n`),
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === "EADDRINUSE") throw new LoadError(`serve: port ${port} on ${host} is in use`, "give another --port (0 picks a free one)");
      if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") throw new LoadError(`serve: cannot listen on --host '${host}': ${err.code}`);
      if (err.code === "EACCES") throw new LoadError(`serve: no permission to listen on port ${port}`, "use a port above 1023");
      throw e;
    }
    // the handlers are in place before the URL is printed: whoever reads it may signal at once
    const outcome = await new Promise<{ signal: string } | { failed: Error }>((done) => {
      const stop = (signal: string) => (): void => done({ signal });
      const onTerm = stop("SIGTERM");
      const onInt = stop("SIGINT");
      process.once("SIGTERM", onTerm);
      process.once("SIGINT", onInt);
      void server.failed.then((e) => {
        process.off("SIGTERM", onTerm);
        process.off("SIGINT", onInt);
        done({ failed: e });
      });
      process.stdout.write(
        `serving '${modelId}' at ${server.url}/v1 (max batch ${maxBatch}, ${context} tokens per sequence, queue ${maxQueue}${apiKey !== null ? ", API key required" : ""})\n`,
      );
    });
    if ("failed" in outcome) {
      process.stderr.write(`onegen serve: ${outcome.failed.message}; answering 503 and exiting\n`);
      await server.shutdown(0);
      return 1;
    }
    process.stdout.write(`${outcome.signal}: draining (up to ${drainSeconds} s)\n`);
    await server.shutdown(drainSeconds * 1000);
    process.stdout.write("stopped\n");
    return 0;
  } finally {
    ctx.destroy();
  }
}
