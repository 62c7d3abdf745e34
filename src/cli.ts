#!/usr/bin/env node
// The `onegen` command line. Each subcommand lives in src/cli/<name>.ts (or a module it names) and
// returns an exit code: 0 success, 1 bad input or runtime failure, 2 usage. Every error is one line
// on stderr (src/cli/report-error.ts); `--debug` (before the command or among its options) adds the
// stack trace. The process exits by itself once the GPU device is destroyed (no process.exit on
// success); an uncaught exception or unhandled rejection prints one line and exits 1.
import { cliDebug } from "./cli/args.js";
import { closeProgressLine } from "./cli/progress.js";
import { formatError } from "./cli/report-error.js";

interface Command {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  device: {
    summary: "open the GPU device and print the adapter, features and limits it got (--json)",
    run: async (argv) => (await import("./cli/device.js")).deviceCommand(argv),
  },
  info: {
    summary: "describe a model directory: architecture, parameters, dtypes, GPU bytes, special tokens",
    run: async (argv) => (await import("./cli/info.js")).infoCommand(argv),
  },
  quantize: {
    summary: "write a copy of a model directory with its projection weights quantized (--format q8_0|q4_0); loads without re-quantizing",
    run: async (argv) => (await import("./cli/quantize.js")).quantizeCommand(argv),
  },
  forward: {
    summary: "run one forward pass and write logits and final-norm hidden states to a safetensors file",
    run: async (argv) => (await import("./cli/forward.js")).forwardCommand(argv),
  },
  generate: {
    summary: "generate text from a prompt or token ids (greedy or sampled; --json for ids and stats)",
    run: async (argv) => (await import("./cli/generate.js")).generateCommand(argv),
  },
  index: {
    summary: "build a OneGen document index from a JSONL file of documents (text or token ids)",
    run: async (argv) => (await import("./cli/index.js")).indexCommand(argv),
  },
  search: {
    summary: "search an index with the hidden state at the last position of a query (--json)",
    run: async (argv) => (await import("./cli/search.js")).searchCommand(argv),
  },
  run: {
    summary: "run a OneGen task (entity-linking | multihop-qa) with in-loop retrieval; --two-pass baseline; --trace",
    run: async (argv) => (await import("./cli/run.js")).runCommand(argv),
  },
  train: {
    summary: "fine-tune on OneGen train/db JSONL (full or --lora r): joint generation + retrieval loss, checkpoints, resume",
    run: async (argv) => (await import("./cli/train.js")).trainCommand(argv),
  },
  eval: {
    summary: "score a OneGen model on the demo's held-out split (EL micro-F1, MD F1, retrieval acc@1, multi-hop EM/F1) vs baselines",
    run: async (argv) => (await import("./cli/eval.js")).evalCommand(argv),
  },
  demo: {
    summary: "run the bundled demo model: entity linking and multi-hop QA on held-out examples (--input TEXT for your own)",
    run: async (argv) => (await import("./cli/demo.js")).demoCommand(argv),
  },
  web: {
    summary: "serve the demo page with the model, its indexes and data on 127.0.0.1 (--port N); Ctrl-C stops",
    run: async (argv) => (await import("./cli/web.js")).webCommand(argv),
  },
  serve: {
    summary: "an OpenAI-compatible HTTP server on 127.0.0.1 (completions, chat, embeddings; concurrent requests share decode steps)",
    run: async (argv) => (await import("./cli/serve.js")).serveCommand(argv),
  },
  bench: {
    summary: "run the benchmarks and write bench/results/ (--quick for small sizes, --only a,b)",
    run: async (argv) => {
      if (argv.includes("--help")) {
        process.stdout.write("usage: onegen bench [--quick] [--only a,b] [--out DIR]\n");
        return 0;
      }
      const specifier = "../bench/run.js"; // dist/bench/run.js, built beside dist/src
      const mod = (await import(specifier)) as typeof import("../bench/run.js");
      await mod.runBenchmarks(mod.parseBenchArgs(argv));
      return 0;
    },
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    "usage: onegen <command> [options]",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "onegen <command> --help for a command's options",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  // Global options before the command: --debug.
  let at = 0;
  while (argv[at] === "--debug") {
    cliDebug.enabled = true;
    at++;
  }
  const [name, ...rest] = argv.slice(at);
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name === undefined ? 2 : 0;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    const hint = name.startsWith("-") ? "options go after the command" : "see onegen --help for the commands";
    process.stderr.write(`onegen: unknown command '${name}' (${hint})\n`);
    return 2;
  }
  running = name;
  try {
    return await cmd.run(rest);
  } catch (e) {
    const { text, code } = formatError(e, name, cliDebug.enabled);
    closeProgressLine();
    process.stderr.write(text);
    return code;
  }
}

/** The command being run, for errors that escape it (callbacks, unhandled rejections). */
let running: string | null = null;

function fatal(e: unknown): void {
  const { text } = formatError(e, running, cliDebug.enabled);
  closeProgressLine();
  process.stderr.write(text);
  process.exit(1);
}

const entry = process.argv[1] ?? "";
if (/cli\.js$/.test(entry) || /[\\/]onegen$/.test(entry)) {
  process.on("uncaughtException", fatal);
  process.on("unhandledRejection", fatal);
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, fatal);
}
