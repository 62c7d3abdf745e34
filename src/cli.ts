#!/usr/bin/env node
// The `onegen` command line. Each subcommand lives in src/cli/<name>.ts (or a module it names) and
// returns an exit code: 0 success, 1 bad input or runtime failure (one-line error), 2 usage.
// The process exits by itself once the GPU device is destroyed (no process.exit on success).
import { OnegenError, UsageError } from "./errors.js";

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
  bench: {
    summary: "run the benchmarks and write bench/results/ (--quick for small sizes, --only a,b)",
    run: async (argv) => {
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
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`onegen: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`onegen ${name}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof OnegenError) {
      process.stderr.write(`onegen ${name}: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`onegen ${name}: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}

const entry = process.argv[1] ?? "";
if (/cli\.js$/.test(entry) || /[\\/]onegen$/.test(entry)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
