// A bin command run as a user runs it, through its launcher in bin/, to its end.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BIN = path.join(__dirname, '..', '..', '..', 'bin');

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

// `timeout` (ms) ends a command that hangs before tap's own limit ends the whole file, so that the failure names it.
export function runCommand(name: string, args: readonly string[], { input = '', cwd, timeout = 300_000 }: { input?: string; cwd?: string; timeout?: number } = {}): CommandResult {
  const r = spawnSync(process.execPath, [path.join(BIN, name), ...args], { input, cwd, encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
