// A disk that fills up, in this process: the files `isFull` picks open /dev/full in their place, for the rest of
// test t, so that their writes fail with the kernel's own "no space left" (ENOSPC).
import fs from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';

// For a test's `skip` option, where the kernel has no /dev/full.
export const NO_DEV_FULL = !fs.existsSync('/dev/full') && 'no /dev/full';

export function diskFull(t: Test, isFull: (file: string) => boolean): void {
  const open = fs.openSync;
  t.capture(fs, 'openSync', (file: fs.PathLike, ...rest: unknown[]) => (isFull(String(file)) ? open('/dev/full', 'w') : (open as (...a: unknown[]) => number)(file, ...rest)));
}

// The temporary file of an atomic write to `target` (lib/util/atomic_file.ts).
export function isTemporaryOf(target: string): (file: string) => boolean {
  return (file) => file.startsWith(path.join(path.dirname(target), `.${path.basename(target)}.`));
}
