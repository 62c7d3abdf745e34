// Shared by the serve tests (test/serve*.test.ts): polling a condition the server's or engine's
// state reaches asynchronously, and request bodies with fields the `openai` client's types lack.

/** Resolves once `cond()` holds (polled every few ms); throws naming `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Extra body fields the client's types do not know (vLLM's ignore_eos, OneGen's `onegen`). */
export function body<T>(x: Record<string, unknown>): T {
  return x as unknown as T;
}
