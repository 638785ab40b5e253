// A folder as another process leaves it: its lock (lib/util/folder_lock.ts) held by one that is running, or a save of
// several files stopped by a kill between its renames.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type Test } from 'tap';
import { RENAMES_FILE } from '../../lib/util/atomic_file';
import { LOCK_FILE } from '../../lib/util/folder_lock';

export interface LockHolder {
  pid: number;
  stop: () => Promise<void>;  // ends the process, leaving its lock behind as a kill does
}

// `dir`'s lock, held by a process that runs until `stop` (or the test's end).
export async function holdLock(t: Test, dir: string, holder: string): Promise<LockHolder> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60_000)'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  const pid = child.pid as number;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.teardown(stop);
  writeLock(dir, pid, holder);
  return { pid, stop };
}

// `dir` as a save of `files` (name -> bytes) leaves it when killed (writeFilesAtomic) after putting `renamed` in place:
// the rest in their temporary files, named as its process named them, all listed with `remove` in the folder's
// RENAMES_FILE. The id of that process, which is gone.
export function killedBetweenRenames(dir: string, files: Readonly<Record<string, string | Buffer>>, renamed: readonly string[], remove: readonly string[]): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid;
  const renames = Object.keys(files).map((name) => [`.${name}.${pid}.${crypto.randomBytes(6).toString('hex')}.tmp`, name]);
  for (const [temp, name] of renames) fs.writeFileSync(path.join(dir, renamed.includes(name) ? name : temp), files[name]);
  fs.writeFileSync(path.join(dir, RENAMES_FILE), `${JSON.stringify({ pid, renames, remove })}\n`);
  return pid;
}

function writeLock(dir: string, pid: number, holder: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${JSON.stringify({ pid, holder })}\n`);
}
