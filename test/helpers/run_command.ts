// A bin command run as a user runs it, through its launcher in bin/, to its end.
import { spawn, spawnSync } from 'node:child_process';
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

// The same, started without waiting for it: to run two commands at once.
export function startCommand(name: string, args: readonly string[], { cwd }: { cwd?: string } = {}): Promise<CommandResult> {
  const child = spawn(process.execPath, [path.join(BIN, name), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
