// `onegen device [--json]`: what GPU this runtime gets here.
import { describeContext, openDevice } from "../gpu/device.js";
import { parseArgs } from "./args.js";

export async function deviceCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { booleans: ["json", "help"] }, "device");
  if (args.bools.has("help")) {
    process.stdout.write("usage: onegen device [--json]\n");
    return 0;
  }
  const ctx = await openDevice();
  try {
    const d = describeContext(ctx);
    if (args.bools.has("json")) process.stdout.write(JSON.stringify(d, null, 2) + "\n");
    else {
      process.stdout.write(`adapter:  ${String(d.adapter)}${d.software ? " (software)" : ""}\nbackend:  ${String(d.backend)}\nfeatures: ${(d.features as string[]).join(", ") || "none"}\nlimits:\n`);
      for (const [k, v] of Object.entries(d.limits as Record<string, number>)) process.stdout.write(`  ${k.padEnd(36)} ${v}\n`);
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}
