// A loading progress bar on stderr. On a TTY it redraws one line ("\r"); otherwise it prints a
// line at every 10% so logs stay short. Fed by checkpoint.ts's LoadProgress callback.

import { type LoadProgress } from "../model/checkpoint.js";
import { formatBytes } from "../model/memory-plan.js";

export interface ProgressSink {
  write(s: string): void;
  isTTY?: boolean;
  columns?: number;
}

function stderrSink(): ProgressSink {
  const proc = (globalThis as { process?: { stderr?: { write(s: string): unknown; isTTY?: boolean; columns?: number } } }).process;
  const err = proc?.stderr;
  if (!err) return { write: () => undefined, isTTY: false };
  return { write: (s) => void err.write(s), isTTY: err.isTTY === true, columns: err.columns };
}

/** Whether a TTY bar is drawn and not yet ended: an error printed now must start a new line. */
let lineOpen = false;

/** Ends a TTY bar's line if one is open (called before an error message is printed). */
export function closeProgressLine(sink: ProgressSink = stderrSink()): void {
  if (lineOpen) sink.write("\n");
  lineOpen = false;
}

interface ProgressBar {
  update(p: LoadProgress): void;
  /** Ends the bar (a final newline on a TTY). */
  done(): void;
}

export function createProgressBar(label: string, sink: ProgressSink = stderrSink()): ProgressBar {
  const started = Date.now();
  let lastDecile = -1;
  let lastDraw = 0;
  let drawn = false;
  const line = (p: LoadProgress, width: number): string => {
    const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : p.tensorsTotal > 0 ? p.tensorsDone / p.tensorsTotal : 1;
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? p.bytesDone / secs : 0;
    const text = `${label} ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} ${p.tensorsDone}/${p.tensorsTotal} tensors ${rate > 0 ? `${formatBytes(rate)}/s` : ""}`;
    const barWidth = Math.max(10, Math.min(40, width - text.length - 4));
    const filled = Math.round(frac * barWidth);
    return `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${text}`;
  };
  return {
    update(p: LoadProgress): void {
      if (sink.isTTY) {
        const now = Date.now();
        if (now - lastDraw < 100 && p.tensorsDone < p.tensorsTotal) return;
        lastDraw = now;
        sink.write(`\r${line(p, sink.columns ?? 100)}\x1b[K`);
        drawn = true;
        lineOpen = true;
      } else {
        const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 1;
        const decile = Math.floor(frac * 10);
        if (decile > lastDecile && (decile < 10 || p.tensorsDone === p.tensorsTotal)) {
          lastDecile = decile;
          sink.write(`${line(p, 100)}\n`);
        }
      }
    },
    done(): void {
      if (sink.isTTY && drawn) sink.write("\n");
      if (sink.isTTY) lineOpen = false;
    },
  };
}
