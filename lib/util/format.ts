// Sizes, durations and counts as the messages and progress lines people read write them.

// Decimal units, as downloads and file managers count: 1.5 kB, 250 MB.
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  // Bytes are whole, but a rate of them (bytes a second) need not be.
  return unit === 0 ? `${Math.round(n)} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

// Whole mebibytes, the unit of memory_budget_mb, which the memory messages quote back.
export function mb(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

// m:ss, or h:mm:ss from an hour; '--:--' when there is no estimate.
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function plural(n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
}
