// Batches as OpenAI's Batch API has them (routes/batches.ts): a file of requests uploaded to /v1/files with purpose
// "batch", a JSON object a line, {"custom_id", "method": "POST", "url", "body"}, each answered by the server's own
// endpoint as if it had come over HTTP (the same validation, models, queues and errors: `Dispatch`), the answers
// written to an output file (purpose "batch_output") and the failures to an error file. A batch sends at most
// `concurrency` requests at a time, so that clients' requests keep the rest of the batch slots; one batch runs at a
// time, the others wait their turn.
// A batch is its folder, <fine_tuning.dir>/batches/<id>/: batch.json (the API's object, rewritten atomically at each
// change of status), input.jsonl (its requests, copied from the file at creation, so that deleting that file loses
// nothing), and answered.jsonl, a line per request answered, appended and synced as each comes: a server that stops
// goes on with its batches when it starts again, from the first request not answered.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { firstNonUtf8Line } from '../import/chat_export';
import type { FineTuningConfig } from './config';
import { nestedTooDeep, TOO_DEEP } from './body';
import { HttpError, withoutPaths } from './errors';
import type { FileStore } from './files';
import type { Log } from './log';
import { readRecords, type RecordKind } from './records';
import { writeFileAtomic, writeTextAtomic } from '../util/atomic_file';
import { writeFully } from '../formats/safetensors';
import { isJsonObject } from '../util/json_object';

// The endpoints a batch's requests may go to.
export const BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses'];
// OpenAI's only window; a batch here runs until it is done.
export const COMPLETION_WINDOW = '24h';
// OpenAI's limit: a batch's requests are held in memory while it runs.
const MAX_REQUESTS = 50_000;
const BATCH_FILE = 'batch.json';
const INPUT_FILE = 'input.jsonl';
const ANSWERED_FILE = 'answered.jsonl';
const BATCH_RECORD: RecordKind<Batch> = {
  file: BATCH_FILE,
  what: 'a batch',
  isRecord: (value, id): value is Batch => isJsonObject(value) && value.id === id && typeof value.status === 'string' && typeof value.created_at === 'number'
    && isJsonObject(value.request_counts),
  writtenBefore: [INPUT_FILE],
};

// One request of a batch's input, and its line in the file.
export interface BatchRequest {
  custom_id: string;
  method: 'POST';
  url: string;
  body: Record<string, unknown>;
  line: number;
}

// The requests of a batch's file, each checked (a mistake is a 400 naming the file's line and field): its custom_id
// given once in the file, its url one of BATCH_ENDPOINTS, its body a JSON object, not streamed; at most MAX_REQUESTS
// of them. Read a line at a time, so that a big file never holds up the server's other work for long.
export async function readBatchFile(file: string, filename: string): Promise<BatchRequest[]> {
  const requests: BatchRequest[] = [];
  const ids = new Map<string, number>();
  let line = 0;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const notUtf8 = (at: number): HttpError => new HttpError(400, `${filename}:${at}: not UTF-8 text: a batch's requests are JSON, a request a line`, { field: 'file' });
  async function* text(): AsyncGenerator<string> {
    let lineBreaks = 0;  // in the chunks before
    for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
      let decoded: string;
      try {
        decoded = decoder.decode(chunk, { stream: true });
      } catch {
        throw notUtf8(lineBreaks + firstNonUtf8Line(chunk));
      }
      for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) lineBreaks++;
      yield decoded;
    }
    try {
      yield decoder.decode();
    } catch {
      throw notUtf8(lineBreaks + 1);
    }
  }
  for await (const raw of readline.createInterface({ input: Readable.from(text()), crlfDelay: Infinity })) {
    line++;
    const request = readRequest(raw, line, filename, ids);
    if (request === null) continue;
    if (requests.length === MAX_REQUESTS) throw new HttpError(400, `${filename}:${line}: more than ${MAX_REQUESTS} requests, OpenAI's limit for a batch: split the file`, { field: 'file' });
    requests.push(request);
  }
  if (requests.length === 0) throw new HttpError(400, `${filename}: holds no request`, { field: 'file' });
  return requests;
}

// One line of a batch's file: its request, or null for a blank line. `ids`: the custom_ids of the lines before.
function readRequest(raw: string, line: number, filename: string, ids: Map<string, number>): BatchRequest | null {
  if (raw.trim() === '') return null;
  const fail = (field: string | null, why: string): never => {
    throw new HttpError(400, `${filename}:${line}: ${field === null ? '' : `${field}: `}${why}`, { field: 'file' });
  };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    fail(null, `not JSON (${(err as Error).message}): a batch's file holds a request a line, {"custom_id", "method": "POST", "url", "body"}`);
  }
  if (!isJsonObject(value)) return fail(null, 'must be a request, {"custom_id", "method": "POST", "url", "body"}');
  const { custom_id: id, method, url, body, ...rest } = value;
  for (const key of Object.keys(rest)) fail(key, 'unsupported field (supported: custom_id, method, url, body)');
  if (typeof id !== 'string' || id === '') return fail('custom_id', 'must be a string that names the request');
  const earlier = ids.get(id);
  if (earlier !== undefined) fail('custom_id', `${JSON.stringify(id)} names the request on line ${earlier} too: each must be unique`);
  if (method !== 'POST') fail('method', 'must be "POST"');
  if (typeof url !== 'string' || !BATCH_ENDPOINTS.includes(url)) return fail('url', `must be one of ${BATCH_ENDPOINTS.join(', ')}`);
  if (!isJsonObject(body)) return fail('body', 'must be the request\'s JSON object');
  if (body.stream === true) fail('body.stream', 'must not be true: a batch\'s answers are written whole');
  const deep = nestedTooDeep(body);
  if (deep !== null) fail(`body.${deep}`, TOO_DEEP);
  ids.set(id, line);
  return { custom_id: id, method: 'POST', url, body: body as Record<string, unknown>, line };
}

// Sends one request to the server's own endpoint: its status, its JSON answer, and its request id.
export type Dispatch = (url: string, body: Record<string, unknown>) => Promise<{ status: number; body: unknown; requestId: string }>;

type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

// Why a batch failed, as OpenAI's batch object says it.
interface BatchErrors {
  object: 'list';
  data: { code: string; message: string; param: null; line: null }[];
}

// The API's batch object.
export interface Batch {
  id: string;
  object: 'batch';
  endpoint: string;
  errors: BatchErrors | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: null;      // a batch runs until it is done
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}

// A request answered, as the output and error files write it.
interface Answered {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: unknown };
  error: null;
}

export interface BatchHost {
  files: FileStore;
  dispatch: Dispatch;
  concurrency: number;
  log: Log;
}

const now = (): number => Math.floor(Date.now() / 1000);
const succeeded = (a: Answered): boolean => a.response.status_code >= 200 && a.response.status_code < 300;

export class Batches {
  private readonly dir: string;
  private readonly batches = new Map<string, Batch>();
  private readonly waiting: string[] = [];
  private pumping: Promise<void> | null = null;
  private closed = false;

  constructor(config: FineTuningConfig, private readonly host: BatchHost) {
    this.dir = path.join(config.dir, 'batches');
  }

  // Reads the batches of earlier runs of the server; those not finished go on from their first request not answered.
  start(): void {
    const found = readRecords(this.dir, BATCH_RECORD, this.host.log);
    found.sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id));
    for (const batch of found) {
      this.batches.set(batch.id, batch);
      if (batch.status === 'in_progress' || batch.status === 'finalizing' || batch.status === 'cancelling') this.waiting.push(batch.id);
    }
    this.pump();
  }

  // A batch of the requests in `inputFileId`, each of which must go to `endpoint`.
  async create(inputFileId: string, endpoint: string, metadata: Record<string, string> | null): Promise<Batch> {
    if (this.closed) throw new HttpError(503, 'the server is shutting down');
    const file = this.host.files.get(inputFileId);
    if (file === null) throw new HttpError(400, `input_file_id: no file "${inputFileId}" (upload it to /v1/files with purpose "batch")`, { field: 'input_file_id', code: 'invalid_file' });
    if (file.purpose !== 'batch') throw new HttpError(400, `input_file_id: file "${inputFileId}" was uploaded with purpose "${file.purpose}", not "batch"`, { field: 'input_file_id', code: 'invalid_file' });
    const requests = await readBatchFile(this.host.files.contentPath(inputFileId), file.filename);
    const other = requests.find((r) => r.url !== endpoint);
    if (other) throw new HttpError(400, `input_file_id: ${file.filename}:${other.line} goes to ${other.url}, not to the batch's endpoint ${endpoint}`, { field: 'input_file_id' });
    const id = `batch_${crypto.randomBytes(12).toString('hex')}`;
    const batch: Batch = {
      id, object: 'batch', endpoint, errors: null, input_file_id: inputFileId, completion_window: COMPLETION_WINDOW, status: 'in_progress',
      output_file_id: null, error_file_id: null, created_at: now(), in_progress_at: now(), expires_at: null, finalizing_at: null,
      completed_at: null, failed_at: null, expired_at: null, cancelling_at: null, cancelled_at: null,
      request_counts: { total: requests.length, completed: 0, failed: 0 }, metadata,
    };
    fs.mkdirSync(this.folder(id));
    // Run only once on disk: a batch that could not be saved is answered as an error (507 where the disk is full), and
    // so must be no batch, its folder gone.
    try {
      await writeFileAtomic(path.join(this.folder(id), INPUT_FILE), async (fd) => {
        await pipeline(fs.createReadStream(this.host.files.contentPath(inputFileId)), fs.createWriteStream('', { fd, autoClose: false }));
      });
      await this.save(batch);
    } catch (err) {
      fs.rmSync(this.folder(id), { recursive: true, force: true });
      throw err;
    }
    this.batches.set(id, batch);
    this.waiting.push(id);
    this.pump();
    return batch;
  }

  get(id: string): Batch {
    const batch = this.batches.get(id);
    if (!batch) throw new HttpError(404, `no batch with id ${JSON.stringify(id)} (GET /v1/batches lists them)`, { field: 'batch_id' });
    return batch;
  }

  // Newest first.
  list(): Batch[] {
    return [...this.batches.values()].reverse();
  }

  // Sends no more of its requests; those in flight are answered, and the output file holds every answer.
  async cancel(id: string): Promise<Batch> {
    const batch = this.get(id);
    if (batch.status !== 'in_progress') throw new HttpError(409, `batch ${id} is ${batch.status}: only a batch in progress can be cancelled`, { field: 'batch_id' });
    batch.status = 'cancelling';
    batch.cancelling_at = now();
    await this.save(batch);
    // One waiting its turn is finished now; the one running stops sending, and finishes once its requests in flight are answered.
    const waiting = this.waiting.indexOf(id);
    if (waiting >= 0) {
      this.waiting.splice(waiting, 1);
      await this.runOrFail(batch);
    }
    return batch;
  }

  // Sends no more requests, so that the server can stop; the batches go on when it starts again.
  async close(): Promise<void> {
    this.closed = true;
    this.waiting.length = 0;
    await this.pumping;
  }

  private folder(id: string): string {
    return path.join(this.dir, id);
  }

  private save(batch: Batch): Promise<void> {
    return writeTextAtomic(path.join(this.folder(batch.id), BATCH_FILE), `${JSON.stringify(batch, null, 2)}\n`);
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = (async () => {
      for (let id = this.waiting.shift(); id !== undefined && !this.closed; id = this.waiting.shift()) {
        await this.runOrFail(this.get(id));
      }
    })().finally(() => {
      this.pumping = null;
    });
  }

  private async runOrFail(batch: Batch): Promise<void> {
    try {
      await this.run(batch);
    } catch (err) {
      if (this.closed) this.host.log('error', 'a batch stopped on an error; it goes on when the server starts again', { batch: batch.id, error: (err as Error).message });
      else await this.fail(batch, err as Error);
    }
  }

  // Sends the requests not yet answered, `concurrency` at a time, until they are all answered, the batch is
  // cancelled or the server stops; then writes its files.
  private async run(batch: Batch): Promise<void> {
    const requests = await readBatchFile(path.join(this.folder(batch.id), INPUT_FILE), INPUT_FILE);
    const answeredFile = path.join(this.folder(batch.id), ANSWERED_FILE);
    const answered = await readAnswered(answeredFile);
    const completed = [...answered.values()].filter((a) => a.succeeded).length;
    batch.request_counts = { total: requests.length, completed, failed: answered.size - completed };
    const queue = requests.filter((r) => !answered.has(r.custom_id));
    const out = await fs.promises.open(answeredFile, 'a');
    let end = (await out.stat()).size;
    // One answer written at a time, each a whole line, synced before the next is written.
    let writing = Promise.resolve();
    const keep = (answer: Answered): Promise<void> => (writing = writing.then(async () => {
      const line = Buffer.from(`${JSON.stringify(answer)}\n`);
      try {
        await out.appendFile(line);
        await out.sync();
      } catch (err) {
        // A full disk takes part of the line: cut off, so that the file a failed batch keeps is its whole answers.
        await out.truncate(end).catch(() => undefined);
        throw err;
      }
      answered.set(answer.custom_id, { succeeded: succeeded(answer), at: end, bytes: line.length });
      end += line.length;
      batch.request_counts[succeeded(answer) ? 'completed' : 'failed']++;
    }));
    try {
      const worker = async (): Promise<void> => {
        for (let request = queue.shift(); request !== undefined; request = queue.shift()) {
          if (this.closed || batch.status === 'cancelling') return;
          let response: Answered['response'];
          try {
            const { status, body, requestId } = await this.host.dispatch(request.url, request.body);
            response = { status_code: status, request_id: requestId, body };
          } catch (err) {
            response = { status_code: 500, request_id: '', body: { error: { message: `the request could not be sent: ${(err as Error).message}`, type: 'server_error' } } };
          }
          // A request cut short by the server stopping is sent again when it starts; any other answer is the request's.
          if (this.closed && response.status_code >= 500) return;
          await keep({ id: `batch_req_${crypto.randomBytes(12).toString('hex')}`, custom_id: request.custom_id, response, error: null });
        }
      };
      // Every worker settles before the file closes; the first failure (the disk's) is the batch's.
      const settled = await Promise.allSettled(Array.from({ length: Math.max(1, this.host.concurrency) }, worker));
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      await out.close();
    }
    if (this.closed) return;
    await this.finish(batch, requests, answered, answeredFile);
  }

  // A batch that cannot go on (its answers, or its files, cannot be written: a full disk) fails at once, saying why,
  // rather than showing in_progress until a restart; the answers written before stay in its folder (answered.jsonl).
  private async fail(batch: Batch, err: Error): Promise<void> {
    const { completed, failed } = batch.request_counts;
    const message = `the batch stopped after ${completed + failed} of its ${batch.request_counts.total} requests were answered: ${withoutPaths(err.message)}`;
    Object.assign(batch, { status: 'failed', failed_at: now(), errors: { object: 'list', data: [{ code: 'batch_failed', message, param: null, line: null }] } });
    this.host.log('error', 'batch failed', { batch: batch.id, error: err.message, ...batch.request_counts });
    try {
      await this.save(batch);
    } catch (saveErr) {
      this.host.log('error', 'a batch\'s failure could not be saved: it goes on when the server starts again', { batch: batch.id, error: (saveErr as Error).message });
    }
  }

  // The output file (the answers, in the input's order) and the error file (the requests that failed), copied line by
  // line from the answers kept, then the batch's last status.
  private async finish(batch: Batch, requests: readonly BatchRequest[], answered: ReadonlyMap<string, AnswerAt>, answeredFile: string): Promise<void> {
    const cancelled = batch.status === 'cancelling';
    batch.status = 'finalizing';
    batch.finalizing_at = now();
    await this.save(batch);
    const copy = (wanted: boolean) => async (file: string): Promise<void> => {
      const from = await fs.promises.open(answeredFile, 'r');
      const to = await fs.promises.open(file, 'wx');
      let line = Buffer.alloc(0);  // grown to the longest answer, not allocated for each
      try {
        for (const request of requests) {
          const answer = answered.get(request.custom_id);
          if (answer?.succeeded !== wanted) continue;
          if (line.length < answer.bytes) line = Buffer.alloc(answer.bytes);
          await from.read(line, 0, answer.bytes, answer.at);
          await writeFully(to.fd, line.subarray(0, answer.bytes));
        }
      } finally {
        await to.close();
        await from.close();
      }
    };
    const { completed, failed } = batch.request_counts;
    if (completed > 0) batch.output_file_id = (await this.host.files.make(`${batch.id} output`, `${batch.id}_output.jsonl`, 'batch_output', copy(true))).id;
    if (failed > 0) batch.error_file_id = (await this.host.files.make(`${batch.id} errors`, `${batch.id}_error.jsonl`, 'batch_output', copy(false))).id;
    batch.status = cancelled ? 'cancelled' : 'completed';
    if (cancelled) batch.cancelled_at = now();
    else batch.completed_at = now();
    await this.save(batch);
    this.host.log('info', `batch ${batch.status}`, { batch: batch.id, ...batch.request_counts });
  }
}

// Where a request's answer is in answered.jsonl, and whether it succeeded: the answers themselves stay on disk, for
// a batch's answers can run to gigabytes (embeddings).
interface AnswerAt {
  succeeded: boolean;
  at: number;     // its line's first byte
  bytes: number;  // its line's, the line break included
}

// The requests a batch has answered so far, read a line at a time. A line a crash cut short (its line break is the
// last byte written) is cut off: its request is sent again.
async function readAnswered(file: string): Promise<Map<string, AnswerAt>> {
  const answered = new Map<string, AnswerAt>();
  if (!fs.existsSync(file)) return answered;
  let lineStart = 0;  // in the file, of the line `partial` begins
  let partial: Buffer[] = [];
  for await (const chunk of fs.createReadStream(file) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let lf = chunk.indexOf(0x0a); lf >= 0; lf = chunk.indexOf(0x0a, from)) {
      const line = Buffer.concat([...partial, chunk.subarray(from, lf)]);
      partial = [];
      const answer = JSON.parse(line.toString('utf8')) as Answered;
      answered.set(answer.custom_id, { succeeded: succeeded(answer), at: lineStart, bytes: line.length + 1 });
      lineStart += line.length + 1;
      from = lf + 1;
    }
    if (from < chunk.length) partial.push(chunk.subarray(from));
  }
  if (partial.length > 0) await fs.promises.truncate(file, lineStart);
  return answered;
}
