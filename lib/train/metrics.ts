// A run's metrics log, checkpoint/<run_name>/metrics.jsonl: one JSON object a line, appended as training goes
// (an append-only log is the one file not rewritten atomically each time: a kill can at worst tear its last
// line, which readers skip). A resumed run first cuts the log back to its checkpoint's step, atomically, so
// the log always tells the history of the weights it sits beside.
import fs from 'node:fs';
import { namingFile, writeAllSync, writeTextAtomic } from '../util/atomic_file';

export interface TrainRecord {
  type: 'train';
  step: number;
  loss: number;
  avg: number;               // running average loss
  lr: number;
  grad_norm: number;
  tokens_per_s: number;      // of every rank, data-parallel
  time: number;              // seconds of training so far
  reduce_s?: number;         // data-parallel: seconds in the gradients' collectives, waits for the other ranks included
}

export interface ValRecord {
  type: 'val';
  step: number;
  loss: number;
  time: number;
}

export type MetricRecord = TrainRecord | ValRecord;

// The records of a log; a torn or unreadable line (a kill mid-append) is skipped.
export function readMetrics(file: string): MetricRecord[] {
  if (!fs.existsSync(file)) return [];
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw namingFile(file, err);  // a folder in its place says EISDIR, and no more
  }
  const records: MetricRecord[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const r = JSON.parse(line) as MetricRecord;
      if ((r.type === 'train' || r.type === 'val') && typeof r.step === 'number' && typeof r.loss === 'number') records.push(r);
    } catch {
      // a torn line
    }
  }
  return records;
}

export class MetricsLog {
  private fd: number;

  // Opens the log for appending; keepUpTo: the step the run resumes from (records after it are dropped),
  // null to start the log afresh.
  static async open(file: string, keepUpTo: number | null): Promise<MetricsLog> {
    const kept = keepUpTo === null ? [] : readMetrics(file).filter((r) => r.step <= keepUpTo);
    await writeTextAtomic(file, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    return new MetricsLog(file);
  }

  private constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'a');
  }

  append(record: MetricRecord): void {
    try {
      writeAllSync(this.fd, Buffer.from(`${JSON.stringify(record)}\n`, 'utf8'));
    } catch (err) {
      throw namingFile(this.file, err);
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
