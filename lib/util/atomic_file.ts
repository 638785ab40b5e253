// Every file dixie writes for the user (weights, checkpoints, configs, downloads) lands atomically:
// written to a temporary name beside the target, fsynced, then renamed over it, and the folder fsynced,
// so a crash or kill -9 leaves either the old file or the new one, never a torn one.
import fs from 'node:fs';
import path from 'node:path';

function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// Writes through `fill`, which receives an open file descriptor of the temporary file.
export async function writeFileAtomic(target: string, fill: (fd: number) => void | Promise<void>): Promise<void> {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const temp = tempNameFor(target);
  const fd = fs.openSync(temp, 'w');
  try {
    await fill(fd);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  renameAtomic(temp, target);
}

// Moves a complete, fsynced file into place and makes the rename itself durable.
export function renameAtomic(temp: string, target: string): void {
  fs.renameSync(temp, target);
  fsyncDir(path.dirname(target));
}

export async function writeTextAtomic(target: string, text: string | Uint8Array): Promise<void> {
  await writeFileAtomic(target, (fd) => {
    fs.writeSync(fd, typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
  });
}
