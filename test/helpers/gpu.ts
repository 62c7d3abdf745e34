// One shared GPU context per test process (device creation costs ~100 ms on lavapipe), plus
// contexts with special options. All are destroyed by scripts/run-tests.mjs after the run.
// There is deliberately no "skip if no GPU": CI installs the software GPU, and a missing adapter
// must fail the run.
import { openDevice, type OpenDeviceOptions } from "../../src/gpu/device.js";
import type { GpuContext } from "../../src/gpu/context.js";

const contexts = new Map<string, Promise<GpuContext>>();

export function gpu(options: OpenDeviceOptions = {}): Promise<GpuContext> {
  const key = JSON.stringify(options);
  let p = contexts.get(key);
  if (!p) contexts.set(key, (p = openDevice(options)));
  return p;
}

export async function destroyAllContexts(): Promise<void> {
  for (const p of contexts.values()) (await p.catch(() => null))?.destroy();
  contexts.clear();
}
