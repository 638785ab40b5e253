// README.md's quick start as the commands it gives, and a way to run them as a new user would: in a folder of
// their own (a sandbox that holds the clone's bin/ and examples/), bin/serve as a server to talk to.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const ROOT = path.resolve(__dirname, '..', '..', '..');
const QUICK_START = '## Quick start';

// A command as its block writes it, and the output block shown after it, if any.
export interface Step {
  argv: string[];
  shown: string | null;
}

// Words of a command line, with single and double quotes.
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

// The lines of the README's section whose heading starts with `title`.
export function readmeSection(title: string, readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')): string[] {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => l.startsWith(title));
  if (start < 0) throw new Error(`README.md has no "${title}" section`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

// A section's commands, in order (the quick start's by default): every indented block of it (a line ending in "\\"
// goes on on the next), each with the first fenced block after it and before the next command (what it prints).
export function readmeCommands(section = readmeSection(QUICK_START)): Step[] {
  const steps: Step[] = [];
  let command = '';
  for (let i = 0; i < section.length; i++) {
    const line = section[i];
    if (line.startsWith('```')) {
      const close = section.findIndex((l, j) => j > i && l.startsWith('```'));
      const last = steps[steps.length - 1];
      if (last && last.shown === null) last.shown = section.slice(i + 1, close).join('\n');
      i = close;
    } else if (line.startsWith('    ')) {
      command += line.trim();
      if (command.endsWith('\\')) command = `${command.slice(0, -1).trimEnd()} `;
      else {
        steps.push({ argv: words(command), shown: null });
        command = '';
      }
    }
  }
  return steps;
}

// A folder of the user's own, with the clone's commands and example data in it.
export function sandbox(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dixie-${prefix}-`));
  for (const name of ['bin', 'examples']) fs.symlinkSync(path.join(ROOT, name), path.join(dir, name), 'dir');
  return dir;
}

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

// Runs a command in `cwd` as a shell would (bin/train is a script with its own interpreter line).
export function run(cwd: string, argv: readonly string[], input = '', timeoutMs = 20 * 60_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input);
  });
}

export interface Serving {
  url: string;
  logs: Record<string, unknown>[];  // its JSON log lines so far
  stderr: () => string;
  stop: () => Promise<number | null>;
}

// Starts bin/serve as `argv` gives it, on a free port (a port is the machine's, not the README's), and resolves
// once it listens.
export function serve(cwd: string, argv: readonly string[]): Promise<Serving> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], [...argv.slice(1), '--port', '0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: Record<string, unknown>[] = [];
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((done) => child.on('close', done));
    exited.then((code) => reject(new Error(`bin/serve exited (${code}) before listening: ${stderr}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg !== 'listening') return;
      resolve({
        url: `http://127.0.0.1:${entry.port as number}`,
        logs,
        stderr: () => stderr,
        stop: () => {
          child.kill('SIGTERM');
          return exited;
        },
      });
    });
  });
}
