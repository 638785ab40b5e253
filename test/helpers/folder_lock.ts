// A folder's lock (lib/util/folder_lock.ts) as another process leaves it: held by one that is running, or left by
// one that is gone.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Test } from 'tap';
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

// `dir`'s lock as a process that has exited left it; its pid.
export function leaveStaleLock(dir: string, holder: string): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid;
  writeLock(dir, pid, holder);
  return pid;
}

function writeLock(dir: string, pid: number, holder: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, LOCK_FILE), `${JSON.stringify({ pid, holder })}\n`);
}
