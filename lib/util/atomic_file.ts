// Every file dixie writes for the user (weights, checkpoints, configs, downloads) lands atomically:
// written to a temporary name beside the target, fsynced, then renamed over it, and the folder fsynced,
// so a crash or kill -9 leaves either the old file or the new one, never a torn one.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { isRunning, lockFolder } from './folder_lock';
import { readJsonObject } from './json_file';

// Unique to one write, so that two writes of one file at once (in one process or two) never share a temporary
// file; it is also created exclusively, below.
function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
}

// Removes the temporary files in `dir` of writes whose process is gone (killed before it could remove its own), but
// for those of a write killed between its renames, which are put in place first. The caller is the folder's one
// writer (bin/train holds the run folder's lock).
export function sweepTemporaryFiles(dir: string): void {
  finishRenames(dir);
  for (const name of fs.readdirSync(dir)) {
    const pid = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name)?.[1];
    if (pid !== undefined && !isRunning(Number(pid))) fs.rmSync(path.join(dir, name), { force: true });
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// A file system error with the file being written named: those of write and fsync (ENOSPC, EIO, EDQUOT) name
// none, and "no space left on device" alone does not say which of a run's files did not fit. Errors that name
// their file (open, rename) and others are returned as they are.
export function namingFile(target: string, err: unknown): unknown {
  const cause = err as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof cause.syscall !== 'string' || cause.path !== undefined) return err;
  return Object.assign(new Error(`${target}: ${err.message}`, { cause: err }), { code: cause.code, syscall: cause.syscall });
}

// A write that failed for want of room: a full disk, a full quota, or a file size limit.
export function isOutOfSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}

// A file to write: its target, and `fill`, which writes its bytes to an open file descriptor of the temporary file.
export interface FileToWrite {
  target: string;
  fill: (fd: number) => void | Promise<void>;
}

// Writes through `fill`, which receives an open file descriptor of the temporary file. Whatever fails, the
// temporary file goes and the target is left as it was.
export async function writeFileAtomic(target: string, fill: FileToWrite['fill']): Promise<void> {
  await writeFilesAtomic([{ target, fill }]);
}

// Files that are read together (a model's weights and its config) written so that a failure leaves all of them as
// they were: each is written to its temporary file and fsynced, and only when every one is written are they renamed
// into place, one after the other, and then the files of `remove` (those of what the others replace) deleted. Of
// several files (all in one folder), the folder is locked meanwhile (lockFolder), and the renames are first listed
// in the folder's RENAMES_FILE, so that a kill between two renames, which leaves new files beside old ones, is
// finished by the next load or save of the folder (finishInterruptedSave). A folder where one of them goes, which a
// rename cannot replace, is refused before anything is written.
export async function writeFilesAtomic(files: readonly FileToWrite[], remove: readonly string[] = []): Promise<void> {
  if (files.length === 1 && remove.length === 0) {
    await writeFilesIn(files, remove);
    return;
  }
  const dir = path.dirname(files[0].target);
  const elsewhere = [...files.map((f) => f.target), ...remove].find((file) => path.dirname(file) !== dir);
  if (elsewhere !== undefined) throw new Error(`writeFilesAtomic: ${elsewhere} is not in ${dir}, where the other files are written together`);
  const folder = files.find(({ target }) => fs.statSync(target, { throwIfNoEntry: false })?.isDirectory());
  if (folder !== undefined) {
    throw Object.assign(new Error(`${folder.target}: is a folder, where a file is to be written: nothing was written`), { code: 'EISDIR' });
  }
  const release = lockFolder(dir, 'a save');
  try {
    finishRenames(dir);
    await writeFilesIn(files, remove, dir);
  } finally {
    release();
  }
}

// The renames of a write of several files, listed in the folder before the first (RenamesJournal), until the last.
export const RENAMES_FILE = '.dixie-renames.json';

interface RenamesJournal {
  pid: number;                   // the writer's
  renames: [string, string][];   // temporary file -> its target, by their names in the folder
  remove: string[];
}

// With `journalIn`, the folder of every file, the renames are listed there first (RENAMES_FILE).
async function writeFilesIn(files: readonly FileToWrite[], remove: readonly string[], journalIn?: string): Promise<void> {
  const written: { temp: string; target: string }[] = [];
  let stoppedMidway = false;
  try {
    for (const { target, fill } of files) {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      const temp = tempNameFor(target);
      try {
        const fd = fs.openSync(temp, 'wx');
        written.push({ temp, target });
        try {
          await fill(fd);
          // On the thread pool: flushing a large file to disk takes a while, and the event loop runs meanwhile.
          await promisify(fs.fsync)(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        throw namingFile(target, err);
      }
    }
    if (journalIn !== undefined) {
      const journal: RenamesJournal = { pid: process.pid, renames: written.map(({ temp, target }) => [path.basename(temp), path.basename(target)]), remove: remove.map((file) => path.basename(file)) };
      await writeFilesIn([textToWrite(path.join(journalIn, RENAMES_FILE), `${JSON.stringify(journal)}\n`)], []);
    }
    for (const [i, { temp, target }] of written.entries()) {
      try {
        fs.renameSync(temp, target);
      } catch (err) {
        if (i === 0 || journalIn === undefined) throw err;
        // Undone now, the folder would hold old files beside new ones: the list of renames and the files not yet
        // renamed stay, for the next load or save of the folder to finish.
        stoppedMidway = true;
        throw new Error(`${(err as Error).message}: the save into ${journalIn} stopped between its renames, ${i} of ${written.length} done; the next load or save of the folder finishes them (${RENAMES_FILE})`, { cause: err });
      }
    }
  } catch (err) {
    if (stoppedMidway) throw err;
    for (const { temp } of written) fs.rmSync(temp, { force: true });
    if (journalIn !== undefined) fs.rmSync(path.join(journalIn, RENAMES_FILE), { force: true });
    throw err;
  }
  for (const file of remove) fs.rmSync(file, { force: true });
  fsyncDir(path.dirname(files[0].target));  // every file's (writeFilesAtomic writes several into one folder alone)
  // Once the renames are on disk: a journal that outlived them would be finished again, finding nothing to rename.
  if (journalIn !== undefined) fs.rmSync(path.join(journalIn, RENAMES_FILE));
}

// Finishes, in a folder about to be read, a write of several files that a kill stopped between two of its renames
// (writeFilesAtomic), so that the folder holds the new files alone; nothing where none was stopped.
// Another load finishing them at that moment (the ranks of one mpirun, two commands started together) is waited for,
// as it holds the lock only for its renames: LOAD_WAIT_MS at most.
const LOADER = 'the load';
const LOAD_WAIT_MS = 10_000;
export function finishInterruptedSave(dir: string): void {
  const until = Date.now() + LOAD_WAIT_MS;
  for (;;) {
    if (!fs.existsSync(path.join(dir, RENAMES_FILE))) return;
    let release: () => void;
    try {
      release = lockFolder(dir, LOADER);
    } catch (err) {
      if ((err as { code?: string; holder?: string }).holder !== LOADER || Date.now() > until) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      continue;
    }
    try {
      finishRenames(dir);
    } finally {
      release();
    }
    return;
  }
}

// Rolls forward the renames RENAMES_FILE lists: every temporary file in it was written whole before it was.
function finishRenames(dir: string): void {
  const file = path.join(dir, RENAMES_FILE);
  if (!fs.existsSync(file)) return;
  const journal = readJsonObject(file) as Partial<RenamesJournal>;
  const names = (list: unknown): list is string[] => Array.isArray(list) && list.every((name) => typeof name === 'string' && name === path.basename(name));
  if (!Array.isArray(journal.renames) || !journal.renames.every((pair) => names(pair) && pair.length === 2) || !names(journal.remove)) {
    throw new Error(`${file}: not a list of renames ("renames": [[temporary file, file]], "remove": [file]): finish or undo them by hand, then remove it`);
  }
  const finished: string[] = [];
  for (const [temp, target] of journal.renames) {
    if (!fs.existsSync(path.join(dir, temp))) continue;  // renamed before the kill
    fs.renameSync(path.join(dir, temp), path.join(dir, target));
    finished.push(target);
  }
  for (const name of journal.remove) fs.rmSync(path.join(dir, name), { force: true });
  fsyncDir(dir);
  fs.rmSync(file);
  const all = journal.renames.map(([, target]) => target).join(', ');
  console.warn(`warning: ${dir}: a save of ${all} by process ${journal.pid} was stopped midway, between its renames; it is finished (${finished.length === 0 ? 'nothing was left to rename' : `${finished.join(', ')} put in place`}), so the folder holds what that save wrote`);
}

// Moves a complete, fsynced file into place and makes the rename itself durable.
export function renameAtomic(temp: string, target: string): void {
  fs.renameSync(temp, target);
  fsyncDir(path.dirname(target));
}

export function textToWrite(target: string, text: string | Uint8Array): FileToWrite {
  return { target, fill: (fd) => writeAllSync(fd, typeof text === 'string' ? Buffer.from(text, 'utf8') : text) };
}

export async function writeTextAtomic(target: string, text: string | Uint8Array): Promise<void> {
  await writeFilesAtomic([textToWrite(target, text)]);
}

// Writes every byte of `bytes` at `position` (null: at the file's offset). One write() may write fewer bytes than
// asked when the disk or the file size limit is reached partway, and says so only by its count: the next
// write() is the one that fails, with the cause, and a caller that stopped at the first would keep a cut file.
export function writeAllSync(fd: number, bytes: Uint8Array, position: number | null = null): void {
  for (let done = 0; done < bytes.byteLength; ) {
    done += fs.writeSync(fd, bytes, done, bytes.byteLength - done, position === null ? null : position + done);
  }
}
