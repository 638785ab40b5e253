// Records kept a folder each, <dir>/<id>/<file> (fine-tuning jobs, batches), as a server reads them when it starts.
import fs from 'node:fs';
import path from 'node:path';
import type { Log } from './log';
import { sweepTemporaryFiles } from '../util/atomic_file';

// What a folder's record must be, and what its creation writes before it.
export interface RecordKind<T> {
  file: string;                                      // the record, in its folder
  what: string;                                      // "a batch", in the warnings
  isRecord: (value: unknown, id: string) => value is T;  // whether `value` (parsed JSON) is the record of the folder `id`
  writtenBefore: readonly string[];                  // the files a creation writes before the record
}

// Every record that reads as one. The temporary files of writes a kill stopped (of the record, or of a job's training
// run) are removed from each record's folder, which the server, holding the data folder's lock, is the one writer of.
// A folder that cannot be read or swept, or whose record is not one (cut short, not JSON, another's), is left out
// with a warning naming it and why, and left as it is: one broken folder must not keep the server from serving the
// others. A folder holding nothing but what a creation writes before its record is one a kill stopped before it was
// answered, which no client knows of: it is removed.
export function readRecords<T>(dir: string, kind: RecordKind<T>, log: Log): T[] {
  fs.mkdirSync(dir, { recursive: true });
  const found: T[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const folder = path.join(dir, entry.name);
    const file = path.join(folder, kind.file);
    try {
      sweepTemporaryFiles(folder);
      if (!fs.existsSync(file)) {
        const left = fs.readdirSync(folder);
        if (left.every((name) => kind.writtenBefore.includes(name))) {
          fs.rmSync(folder, { recursive: true });
          log('warn', `${kind.what} whose creation was stopped before its ${kind.file} was written, and never answered: its folder is removed`, { folder, files: left });
        } else {
          log('warn', `a folder without ${kind.file} is not ${kind.what}; it is left out, as it is`, { folder, files: left.slice(0, 10) });
        }
        continue;
      }
      const value: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (!kind.isRecord(value, entry.name)) throw new Error(`not ${kind.what} of id ${entry.name}`);
      found.push(value);
    } catch (err) {
      log('warn', `${kind.what} could not be read; it is left out, as it is`, { file, error: (err as Error).message });
    }
  }
  return found;
}
