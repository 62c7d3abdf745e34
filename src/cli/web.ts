// `onegen web [--port N] [--host H] [--model DIR] [--index DIR] [--data DIR]`
// Serves the demo page (dist/web/, built by `npm run build`) and the model directory, the demo's
// indexes and its data folder beside it, with src/web/static-server.ts (GET/HEAD, Range, ETag;
// read-only), so the page loads them over HTTP:
//   /            → dist/web/ (index.html, demo.js, style.css)
//   /demo/model/ → --model DIR (default demo/model)
//   /demo/index/ → --index DIR (default demo/index; el/ and mhqa/ inside)
//   /demo/data/  → --data DIR (default demo/data)
// Prints the URL and serves until Ctrl-C (SIGINT) or SIGTERM, then closes the server and exits 0.
// Writes nothing. Binds 127.0.0.1 unless --host says otherwise (the page needs a secure context
// for WebGPU and the Cache API: 127.0.0.1/localhost, or https in front of another host).
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { numberFlag, parseArgs } from "./args.js";
import { LoadError, UsageError } from "../errors.js";
import { startStaticServer } from "../web/static-server.js";
import { DEFAULT_DEMO_DATA, DEFAULT_DEMO_INDEX, DEFAULT_DEMO_MODEL, DEMO_MODEL_HINT } from "./eval.js";

/** The built page (dist/src/cli/web.js → dist/web/). */
const WEB_ROOT = fileURLToPath(new URL("../../web/", import.meta.url));

const USAGE =
  "usage: onegen web [--port N (default 8080; 0: any free port)] [--host H (default 127.0.0.1)] [--model DIR (default demo/model)] [--index DIR (default demo/index)] [--data DIR (default demo/data)]";

async function requireDir(path: string, flag: string, what: string, hint?: string): Promise<void> {
  let isDir = false;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new LoadError(`${flag} '${path}' does not exist (${what})`, hint);
  }
  if (!isDir) throw new LoadError(`${flag} '${path}' is not a directory (${what})`, hint);
}

export async function webCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ["port", "host", "model", "index", "data"], booleans: ["help"] }, "web");
  if (args.bools.has("help")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const port = numberFlag(args, "port", "web", { integer: true, min: 0, max: 65535 }) ?? 8080;
  const host = args.flags.get("host") ?? "127.0.0.1";
  if (host.trim() === "" || /[\s/]/.test(host)) throw new UsageError(`web: --host must be a host name or IP address, got '${host}'`);
  const model = args.flags.get("model") ?? DEFAULT_DEMO_MODEL;
  const index = args.flags.get("index") ?? DEFAULT_DEMO_INDEX;
  const data = args.flags.get("data") ?? DEFAULT_DEMO_DATA;
  await requireDir(WEB_ROOT, "the page", "dist/web/", "run `npm run build` (it bundles the page into dist/web/)");
  await requireDir(model, "--model", "a model directory", args.flags.has("model") ? undefined : DEMO_MODEL_HINT);
  await requireDir(index, "--index", "the demo's indexes: el/ and mhqa/");
  await requireDir(data, "--data", "the demo's data folder");
  let server;
  try {
    server = await startStaticServer({ host, port, mounts: { "/": WEB_ROOT, "/demo/model/": model, "/demo/index/": index, "/demo/data/": data } });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "EADDRINUSE") throw new LoadError(`web: port ${port} on ${host} is in use`, "give another --port (0 picks a free one)");
    if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") throw new LoadError(`web: cannot listen on --host '${host}': ${err.code}`);
    if (err.code === "EACCES") throw new LoadError(`web: no permission to listen on port ${port}`, "use a port above 1023");
    throw e;
  }
  const shownUrl = host === "0.0.0.0" || host === "::" ? server.url.replace(host === "::" ? "[::]" : "0.0.0.0", "127.0.0.1") : server.url;
  // the handlers are in place before the URL is printed: whoever reads it may signal at once
  const stopped = new Promise<void>((done) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      done();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  process.stdout.write(`serving the demo page at ${shownUrl}\n  model ${model}\n  index ${index}\n  data  ${data}\n(Ctrl-C stops)\n`);
  await stopped;
  await server.close();
  process.stdout.write("stopped\n");
  return 0;
}
