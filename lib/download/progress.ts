// A byte progress bar with speed and ETA. On a terminal it redraws one line; elsewhere (logs, CI) it prints
// a plain line now and then, so long work shows it is alive without flooding the output.
import { formatBytes, formatDuration } from '../util/format';

const BAR_WIDTH = 24;

// One line: label, percent, bar, done / total, speed, ETA (total null: size unknown, no bar or ETA).
export function formatProgress(label: string, done: number, total: number | null, bytesPerSecond: number): string {
  const speed = `${formatBytes(bytesPerSecond)}/s`;
  if (total === null || total <= 0) return `${label}  ${formatBytes(done)}  ${speed}`;
  const fraction = Math.min(1, done / total);
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
  const eta = bytesPerSecond > 0 ? (total - done) / bytesPerSecond : Infinity;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  return `${label} ${percent} [${bar}] ${formatBytes(done)} / ${formatBytes(total)}  ${speed}  ETA ${formatDuration(eta)}`;
}

export interface ProgressSink {
  isTTY?: boolean;
  write(text: string): unknown;
}

export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private lastLogged = 0;
  private done: number;

  // startAt: bytes already there (a resumed download); the speed counts only what this run moves.
  constructor(private readonly label: string, private readonly total: number | null, private readonly startAt = 0,
    private readonly sink: ProgressSink = process.stderr) {
    this.done = startAt;
  }

  update(done: number): void {
    this.done = done;
    const now = Date.now();
    if (this.sink.isTTY) {
      if (now - this.lastDraw >= 100) {
        this.lastDraw = now;
        this.sink.write(`\r${this.line(now)}\x1b[K`);
      }
    } else if (now - this.lastLogged >= 10_000) {
      this.lastLogged = now;
      this.sink.write(`${this.line(now)}\n`);
    }
  }

  finish(): void {
    const line = this.line(Date.now());
    this.sink.write(this.sink.isTTY ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  private line(now: number): string {
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    return formatProgress(this.label, this.done, this.total, (this.done - this.startAt) / seconds);
  }
}

// An onProgress(bytes, totalBytes) callback that draws a bar, made at the first call, when the total is known.
export function progressCallback(label: string): (bytes: number, totalBytes: number) => void {
  let bar: ProgressBar | null = null;
  return (bytes, totalBytes) => {
    bar ??= new ProgressBar(label, totalBytes);
    bar.update(bytes);
    if (bytes === totalBytes) bar.finish();
  };
}
