// One writer at a time in a folder of the user's: two imports into one folder, two training runs into one run
// folder, two saves of a model into one folder each read what is there and write beside it, and at the same moment
// one's record, checkpoints or files would replace or mix with the other's. A writer holds the folder's lock file,
// created exclusively with its process id and machine; another writer is refused, told which process holds it. A lock
// left by a process of this machine that is gone (killed) is taken over, with a warning.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const LOCK_FILE = '.dixie.lock';

interface LockHolder {
  pid: number | null;  // null: a lock being created this moment, or one whose content is not dixie's
  started: number;     // when that process started (STARTED); NaN where the lock does not say
  host: string | null; // the machine it runs on (HOST); null where the lock does not say: this one's
  holder: string;
  text: string;
}

// When this process started (ms since the epoch), the same in each of its threads to a few milliseconds: a lock of
// this process's id but another start is a stale one, as a container restarted after a kill gives its process the
// same id as the last time.
const STARTED = Math.round(Date.now() - process.uptime() * 1000);
const SAME_START_MS = 1000;

// A folder on a file system that machines share (NFS: a run folder of a job across machines) is locked by processes of
// several machines, and a process id says whether a process runs only on its own machine: another machine's lock is
// held for as long as it is there.
const HOST = os.hostname();

// Whether process `pid` runs. A process that has ended but whose parent has not yet collected its status (a zombie:
// an mpirun rank killed with its job, for as long as its parent takes to reap it) takes signals yet runs no more.
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';  // someone else's
  }
  return !isZombie(pid);
}

// Linux's /proc/<pid>/stat says a process's state after its name in parentheses: Z, or X, for one that has ended.
// Elsewhere (no /proc) a process that takes signals is taken to run.
function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}

// Takes the lock of `dir` (made if it is not there) for `holder` ("an import", "a training run"), or throws naming
// the lock file and the process that holds it. Returns the function that releases it, which also removes the
// folders made for the lock where nothing was written in them: a run or an import that failed leaves no folder.
export function lockFolder(dir: string, holder: string, warn: (message: string) => void = (message) => console.warn(`warning: ${message}`)): () => void {
  const made = fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const release = (): void => {
    fs.rmSync(file, { force: true });
    if (made !== undefined) removeEmptyFolders(dir, made);
  };
  for (;;) {
    try {
      fs.writeFileSync(file, `${JSON.stringify({ pid: process.pid, started: STARTED, host: HOST, holder })}\n`, { flag: 'wx' });
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readLock(file);
    if (held === null) continue;  // released meanwhile
    const elsewhere = held.host !== null && held.host !== HOST;
    if (held.pid === null || elsewhere || (held.pid === process.pid ? Math.abs(held.started - STARTED) < SAME_START_MS : isRunning(held.pid))) {
      const who = held.pid === null ? 'another process' : elsewhere ? `process ${held.pid} of ${held.host} (${held.holder})` : held.pid === process.pid ? `this process (${held.holder})` : `process ${held.pid} (${held.holder})`;
      const remove = elsewhere ? `remove it if that process no longer runs on ${held.host}, or is not dixie's` : "remove it if that process is not dixie's";
      throw Object.assign(new Error(`${dir} is in use by ${who}, which is writing there: ${holder} is refused (run it again when that is done; the lock is ${file}: ${remove})`), { code: 'ELOCKED', holder: held.holder });
    }
    if (takeOver(file, held)) warn(`${file}: taken over from process ${held.pid} (${held.holder}), which is no longer running${held.pid === process.pid ? ' (this process has its id now)' : ''}`);
  }
}

// Removes `dir` and the folders above it up to `top`, each if it is empty.
function removeEmptyFolders(dir: string, top: string): void {
  for (let folder = path.resolve(dir); ; folder = path.dirname(folder)) {
    try {
      fs.rmdirSync(folder);
    } catch {
      return;  // not empty: something was written
    }
    if (folder === path.resolve(top)) return;
  }
}

// The lock's holder; null where there is no lock (released).
function readLock(file: string): LockHolder | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const { pid, started, host, holder } = JSON.parse(text) as { pid?: unknown; started?: unknown; host?: unknown; holder?: unknown };
    return {
      pid: Number.isInteger(pid) ? (pid as number) : null,
      started: typeof started === 'number' ? started : NaN,
      host: typeof host === 'string' ? host : null,
      holder: typeof holder === 'string' ? holder : 'unknown',
      text,
    };
  } catch {
    return { pid: null, started: NaN, host: null, holder: 'unknown', text };
  }
}

// Removes the lock of a process that is gone. It is moved aside first and looked at there: of two processes taking
// over one lock at once, the second would otherwise remove the lock the first has just made; moved aside, that one
// is seen not to be the stale lock, and put back. Whether this process removed the stale lock.
function takeOver(file: string, stale: LockHolder): boolean {
  const aside = `${file}.${process.pid}.stale`;
  try {
    fs.renameSync(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;  // taken over, or released, meanwhile
    throw err;
  }
  const moved = readLock(aside);
  try {
    if (moved?.text === stale.text) return true;
    fs.linkSync(aside, file);  // fails where yet another lock was made meanwhile: that one holds
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(aside, { force: true });
  }
}
