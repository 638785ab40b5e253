// The files of OpenAI's Files API (routes/files.ts): training data uploaded for fine-tuning and the results the
// jobs write, batches' requests and the answers the batches write (batches.ts). One folder holds them, each file as its bytes (<id>.content) and its record, the API's file object
// (<id>.json). The record is written, atomically, only once the bytes are whole and on disk, and deleted first, so
// that a file listed always has its content; a crash leaves at most bytes without a record or a temporary file,
// and those are removed when a store opens the folder.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { looksLikeChat } from '../data/chat_format';
import { firstJsonLine } from '../import/fine_tuning';
import type { FineTuningConfig } from './config';
import { namingFile, renameAtomic, writeTextAtomic } from '../util/atomic_file';
import { readHead } from '../util/file_bytes';

export type FilePurpose = 'fine-tune' | 'fine-tune-results' | 'batch' | 'batch_output';
const FILE_PURPOSES: readonly FilePurpose[] = ['fine-tune', 'fine-tune-results', 'batch', 'batch_output'];

export interface StoredFile {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;     // Unix seconds
  filename: string;
  purpose: FilePurpose;
  status: 'processed';
  status_details: null;
  expires_at: null;       // kept until deleted
}

// A record as kept on disk: the file object, and its creation in milliseconds, which orders the files of one second.
interface FileRecord extends StoredFile {
  created_ms: number;
}

// A file being written, not yet in the store: its bytes go to `path`, then finish() or abandon(). A chat app's
// export is imported in `scratch`, a folder made when needed and removed with the pending file.
export interface PendingFile {
  readonly id: string;
  readonly path: string;
  readonly scratch: string;
}

// What a training file holds, by its first lines: OpenAI's (or ShareGPT's) fine-tuning JSONL, a conversation a line,
// or dixie's chat format, a message a line (what bin/import-chat writes), which a job trains on as it is.
export type TrainingDataKind = 'fine-tuning-jsonl' | 'chat';

export function trainingDataKind(head: string): TrainingDataKind {
  return firstJsonLine(head) === null && looksLikeChat(head) ? 'chat' : 'fine-tuning-jsonl';
}

// A file's first 64 KB tell what it holds.
export const KIND_HEAD_BYTES = 64 * 1024;

export function storedDataKind(file: string): TrainingDataKind {
  return trainingDataKind(readHead(file, KIND_HEAD_BYTES).toString('utf8'));
}

// The folder of a server's files, in its fine-tuning folder.
export function filesDir(config: FineTuningConfig): string {
  return path.join(config.dir, 'files');
}

const ID = /^file-[A-Za-z0-9]{24}$/;
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
// A temporary file of an id: an upload's own, its scratch folder, or writeTextAtomic's of a record.
const TEMP = /^\.(file-[A-Za-z0-9]{24})\..*\.tmp$/;
const CONTENT = /^(file-[A-Za-z0-9]{24})\.content$/;
const RECORD = /^(file-[A-Za-z0-9]{24})\.json$/;
const MAX_FILENAME = 255;

// 24 base62 characters drawn from `bytes`, each byte taken only below 248 (4 * 62) so that every character is as
// likely: random bytes for an upload; for a file made for something, a hash of what it is made for (madeForId).
function idFrom(bytes: (round: number) => Buffer): string {
  let id = 'file-';
  for (let round = 0; id.length < 5 + 24; round++) {
    for (const byte of bytes(round)) {
      if (byte < 248 && id.length < 5 + 24) id += ID_CHARS[byte % 62];
    }
  }
  return id;
}

const newId = (): string => idFrom(() => crypto.randomBytes(32));
const madeForId = (madeFor: string): string => idFrom((round) => crypto.createHash('sha256').update(`${madeFor}\0${round}`).digest());

// The name a client gave, as a name alone: no folders, no control characters, at most 255 characters.
export function cleanFilename(name: string): string {
  const base = (name.split(/[/\\]/).pop() ?? '').replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return base === '' ? 'file' : base.slice(0, MAX_FILENAME);
}

// Ids of the files this process is writing: a store opened over the same folder meanwhile (a server started again in
// the same process) must not take their bytes or temporary files for a crash's leftovers.
const writing = new Set<string>();

// Off the event loop: an upload of hundreds of megabytes can take seconds to reach the disk.
async function fsyncFile(file: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r+');
  try {
    await handle.sync();
  } catch (err) {
    throw namingFile(file, err);
  } finally {
    await handle.close();
  }
}

function isRecord(v: unknown, id: string): v is FileRecord {
  const r = v as Partial<FileRecord> | null;
  return typeof r === 'object' && r !== null && r.id === id && r.object === 'file' && Number.isSafeInteger(r.bytes) && Number.isSafeInteger(r.created_at)
    && Number.isFinite(r.created_ms) && typeof r.filename === 'string' && FILE_PURPOSES.includes(r.purpose as FilePurpose);
}

function fileObject(r: FileRecord): StoredFile {
  return { id: r.id, object: 'file', bytes: r.bytes, created_at: r.created_at, filename: r.filename, purpose: r.purpose, status: 'processed', status_details: null, expires_at: null };
}

export class FileStore {
  // Records once read, by id: a record never changes, it is only deleted (which each read checks).
  private readonly records = new Map<string, FileRecord>();

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.removeLeftovers();
  }

  get(id: string): StoredFile | null {
    const record = this.record(id);
    return record && fileObject(record);
  }

  contentPath(id: string): string {
    if (this.record(id) === null) throw new Error(`${this.dir}: no file ${JSON.stringify(id)}`);
    return this.content(id);
  }

  list(): StoredFile[] {
    const records: FileRecord[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const id = RECORD.exec(name)?.[1];
      const record = id === undefined ? null : this.record(id);
      if (record !== null) records.push(record);
    }
    return records.sort((a, b) => b.created_ms - a.created_ms || (a.id < b.id ? 1 : -1)).map(fileObject);
  }

  // A file to write into place: stream its bytes to `path`, then finish() it, or abandon() it.
  begin(id = newId()): PendingFile {
    writing.add(id);
    return { id, path: path.join(this.dir, `.${id}.upload.tmp`), scratch: path.join(this.dir, `.${id}.scratch.tmp`) };
  }

  // Puts a pending file's bytes, written and closed, in the store under its record.
  async finish(pending: PendingFile, filename: string, purpose: FilePurpose): Promise<StoredFile> {
    try {
      await fsyncFile(pending.path);
      const bytes = fs.statSync(pending.path).size;
      renameAtomic(pending.path, this.content(pending.id));
      fs.rmSync(pending.scratch, { recursive: true, force: true });
      const now = Date.now();
      const record: FileRecord = {
        id: pending.id, object: 'file', bytes, created_at: Math.floor(now / 1000), filename: cleanFilename(filename), purpose,
        status: 'processed', status_details: null, expires_at: null, created_ms: now,
      };
      await writeTextAtomic(this.recordPath(pending.id), `${JSON.stringify(record, null, 2)}\n`);
      this.records.set(pending.id, record);
      return fileObject(record);
    } catch (err) {
      this.abandon(pending);
      throw err;
    } finally {
      writing.delete(pending.id);
    }
  }

  // Removes what a pending file left; its stream must be closed (else the file could be created after).
  abandon(pending: PendingFile): void {
    fs.rmSync(pending.path, { force: true });
    fs.rmSync(pending.scratch, { recursive: true, force: true });
    if (!fs.existsSync(this.recordPath(pending.id))) fs.rmSync(this.content(pending.id), { force: true });
    writing.delete(pending.id);
  }

  // A file the server makes, `madeFor` naming what it is (a batch's output, a job's metrics), its bytes written to
  // the path `write` is given: its id derives from that name, so that a maker stopped by a crash after the file was
  // written, but before the maker recorded its id, finds it when it makes it again, rather than leave a copy that
  // nothing names.
  async make(madeFor: string, filename: string, purpose: FilePurpose, write: (file: string) => Promise<void>): Promise<StoredFile> {
    const id = madeForId(madeFor);
    const made = this.get(id);
    if (made !== null) return made;
    const pending = this.begin(id);
    try {
      await write(pending.path);
    } catch (err) {
      this.abandon(pending);
      throw err;
    }
    return this.finish(pending, filename, purpose);
  }

  // The record goes first: a crash between leaves bytes without a record, which the next start removes.
  async delete(id: string): Promise<boolean> {
    if (this.record(id) === null) return false;
    this.records.delete(id);
    try {
      fs.rmSync(this.recordPath(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;  // deleted meanwhile
      throw err;
    }
    fs.rmSync(this.content(id), { force: true });
    return true;
  }

  private content(id: string): string {
    return path.join(this.dir, `${id}.content`);
  }

  private recordPath(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  // The record of an id, checked for the shape of one: an id that is no store's (a path, "..") is never looked up.
  // A record whose bytes are gone, or that does not parse (edited by hand), is no file.
  private record(id: string): FileRecord | null {
    if (!ID.test(id)) return null;
    if (!fs.existsSync(this.recordPath(id)) || !fs.existsSync(this.content(id))) {
      this.records.delete(id);
      return null;
    }
    const known = this.records.get(id);
    if (known !== undefined) return known;
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(this.recordPath(id), 'utf8'));
    } catch {
      return null;
    }
    if (!isRecord(parsed, id)) return null;
    this.records.set(id, parsed);
    return parsed;
  }

  private removeLeftovers(): void {
    for (const name of fs.readdirSync(this.dir)) {
      const temp = TEMP.exec(name)?.[1];
      const bytes = CONTENT.exec(name)?.[1];
      if (temp !== undefined && !writing.has(temp)) fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
      else if (bytes !== undefined && !writing.has(bytes) && !fs.existsSync(this.recordPath(bytes))) fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }
}
