// Records kept a folder each, <dir>/<id>/<file> (fine-tuning jobs, batches), as a server reads them when it starts.
import fs from 'node:fs';
import path from 'node:path';
import type { Log } from './log';
import { sweepTemporaryFiles } from '../util/atomic_file';

// Every record that reads as JSON; one that does not is left out, with a warning that names it and `what` it is.
// The temporary files of writes a kill stopped (of the record, or of a job's training run) are removed from each
// record's folder, which the server, holding the data folder's lock, is the one writer of.
export function readRecords<T>(dir: string, file: string, what: string, log: Log): T[] {
  fs.mkdirSync(dir, { recursive: true });
  const found: T[] = [];
  for (const name of fs.readdirSync(dir)) {
    const record = path.join(dir, name, file);
    if (!fs.existsSync(record)) continue;
    sweepTemporaryFiles(path.join(dir, name));
    try {
      found.push(JSON.parse(fs.readFileSync(record, 'utf8')) as T);
    } catch (err) {
      log('warn', `${what} could not be read; it is left out`, { file: record, error: (err as Error).message });
    }
  }
  return found;
}
