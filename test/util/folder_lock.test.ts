// A folder's lock: held by this process, another writer in it is refused naming the lock; one of this process's id
// but of an earlier start (a container restarted after a kill gives its process the same id) is taken over, as is one
// of a process that has ended but is not yet reaped; one of another machine is held, whether or not its process id
// runs here.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { LOCK_FILE, lockFolder } from '../../lib/util/folder_lock';

t.test("a lock this process holds refuses another writer of this process; one with this process's id but of an earlier start is taken over", async (t) => {
  const dir = t.testdir();
  const lock = path.join(dir, LOCK_FILE);
  const release = lockFolder(dir, 'an import');
  const { pid, started, host } = JSON.parse(fs.readFileSync(lock, 'utf8')) as { pid: number; started: number; host: string };
  t.equal(pid, process.pid, "the lock names this process's id");
  t.equal(host, os.hostname(), 'and this machine');
  t.throws(() => lockFolder(dir, 'a save'), { message: `${dir} is in use by this process (an import), which is writing there: a save is refused (run it again when that is done; the lock is ${lock}: remove it if that process is not dixie's)` });
  release();
  t.same(fs.readdirSync(dir), [], 'released: the lock is gone');

  // As a process of this id that started a minute before this one left it.
  fs.writeFileSync(lock, `${JSON.stringify({ pid: process.pid, started: started - 60_000, holder: 'a training run' })}\n`);
  const warnings: string[] = [];
  const again = lockFolder(dir, 'a save', (message) => warnings.push(message));
  t.same(warnings, [`${lock}: taken over from process ${process.pid} (a training run), which is no longer running (this process has its id now)`]);
  t.same(JSON.parse(fs.readFileSync(lock, 'utf8')), { pid: process.pid, started, host, holder: 'a save' }, "the lock is this save's");
  again();
  t.same(fs.readdirSync(dir), [], 'released');
});

t.test('a lock of a process that has ended but is not yet reaped (a zombie: an mpirun rank killed with its job) is taken over', { skip: !fs.existsSync('/proc/self/stat') && 'no /proc' }, async (t) => {
  const dir = t.testdir();
  const lock = path.join(dir, LOCK_FILE);
  // The shell's background child ends a second later, when the shell has been replaced by a sleep that never waits and
  // so never reaps it (a child that ended at once could be reaped by the shell before its exec).
  const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => parent.kill('SIGKILL'));
  const zombie = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (data: Buffer) => resolve(data.toString()))));
  const stateOf = (): string => {
    const stat = fs.readFileSync(`/proc/${zombie}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  };
  while (stateOf() !== 'Z') await new Promise((resolve) => setTimeout(resolve, 10));
  t.doesNotThrow(() => process.kill(zombie, 0), 'the zombie takes signals, as a running process does');
  fs.writeFileSync(lock, `${JSON.stringify({ pid: zombie, started: 0, holder: 'a training run' })}\n`);
  const warnings: string[] = [];
  const release = lockFolder(dir, 'a training run', (message) => warnings.push(message));
  t.same(warnings, [`${lock}: taken over from process ${zombie} (a training run), which is no longer running`]);
  release();
});

t.test("a lock of another machine (a run folder on a file system that the machines of an mpirun job share) is held, though its process id runs on no process here", async (t) => {
  const dir = t.testdir();
  const lock = path.join(dir, LOCK_FILE);
  const host = `${os.hostname()}-2`;
  const ended = spawnSync(process.execPath, ['-e', '']).pid;
  const text = `${JSON.stringify({ pid: ended, started: 0, host, holder: 'a training run' })}\n`;
  fs.writeFileSync(lock, text);
  const warnings: string[] = [];
  t.throws(() => lockFolder(dir, 'a training run', (message) => warnings.push(message)), {
    message: `${dir} is in use by process ${ended} of ${host} (a training run), which is writing there: a training run is refused (run it again when that is done; the lock is ${lock}: remove it if that process no longer runs on ${host}, or is not dixie's)`,
  });
  t.same(warnings, [], 'not taken over');
  t.equal(fs.readFileSync(lock, 'utf8'), text, "the lock is still the other machine's");
});
