// Streamed text of one sequence: the generated ids decoded as a whole after every token (so
// multi-token characters and tokenizer spacing come out as in a one-shot decode), stop strings
// cut as OpenAI does (the output ends before the earliest stop, which is not returned), and
// only text that can no longer change released to the stream: a trailing U+FFFD (an incomplete
// UTF-8 sequence) and a tail that could still become a stop string are held back.

export class StreamText {
  /** Text released so far (what the client has). */
  private released = "";
  stopped = false;

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly stops: readonly string[],
  ) {}

  /** After a new token: the full text of `ids`; returns the new text to release and whether a stop string was hit. */
  push(ids: number[]): { delta: string; stop: boolean } {
    if (this.stopped) return { delta: "", stop: true };
    const text = this.decode(ids);
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      return { delta: this.release(text.slice(0, cut)), stop: true };
    }
    let end = text.length;
    while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
    end -= this.heldForStops(text.slice(0, end));
    return { delta: this.release(text.slice(0, Math.max(end, 0))), stop: false };
  }

  /** At the end (length, EOS): everything left. */
  finish(ids: number[]): string {
    if (this.stopped) return "";
    return this.release(this.decode(ids));
  }

  get text(): string {
    return this.released;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
  private heldForStops(text: string): number {
    let held = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > held; n--) {
        if (text.endsWith(s.slice(0, n))) {
          held = n;
          break;
        }
      }
    }
    return held;
  }

  private release(upTo: string): string {
    // Text already released never changes; a decode that rewrote it (rare tokenizer spacing
    // changes) releases only what extends it.
    if (!upTo.startsWith(this.released)) {
      if (upTo.length <= this.released.length) return "";
      const delta = upTo.slice(this.released.length);
      this.released = upTo;
      return delta;
    }
    const delta = upTo.slice(this.released.length);
    this.released = upTo;
    return delta;
  }
}
