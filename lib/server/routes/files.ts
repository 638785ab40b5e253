// OpenAI's Files API over the fine-tuning folder's files (lib/server/files.ts): POST /v1/files (an upload, as
// multipart/form-data), GET /v1/files, GET and DELETE /v1/files/<id>, GET /v1/files/<id>/content. Training data
// (purpose "fine-tune") and a batch's requests (purpose "batch") are uploaded, and checked as they arrive, so that a
// mistake is told now rather than when a job or a batch starts: fine-tuning JSONL (OpenAI's chat format, or
// ShareGPT's) and the chat format by line, a batch's requests each (batches.ts); a chat app's export (WhatsApp's,
// Telegram's...) is imported as bin/import-chat imports it, and kept as the chat format. "fine-tune-results" files
// are the jobs' own, "batch_output" the batches'. Errors are thrown as HttpError for the app's handler to answer in
// OpenAI's shape.
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import express, { type Request, type Response } from 'express';
import { ChatImportError, ChatImportErrors, EXPORT_FORMATS, unknownEncoding, type ExportFormat } from '../../import/chat_export';
import { fineTuningFormat, firstJsonLine } from '../../import/fine_tuning';
import { importChatsOffThread } from '../../import/thread';
import { MeNotFoundError, type ChatImportSummary } from '../../import/train_output';
import { DATE_ORDERS, type DateOrder } from '../../import/whatsapp';
import { isTar } from '../../util/tar';
import { isZip } from '../../util/zip';
import type { ServerConfig } from '../config';
import { HttpError } from '../errors';
import { bad } from './api_common';
import { cursorPage } from './pages';
import { readBatchFile } from '../batches';
import { checkTrainingDataOffThread } from '../training_data';
import { cleanFilename, KIND_HEAD_BYTES, storedDataKind, trainingDataKind, type FileStore, type PendingFile, type StoredFile, type TrainingDataKind } from '../files';
import { quoted } from '../../util/quoted';
import { readHead } from '../../util/file_bytes';
import { namingFile } from '../../util/atomic_file';

// What may be uploaded; "fine-tune-results" files are written by the jobs, "batch_output" by the batches.
const UPLOAD_PURPOSES = ['fine-tune', 'batch'];
// dixie's own fields, for a chat app's export, each as bin/import-chat's flag of the same name: `me` (repeatable), the
// user's names in it; `format`, the app whose export it is where it is not recognised; `encoding`, its text's where
// not UTF-8; `date_order`, WhatsApp's dates' where they read either way. The fields given once have their value's
// check, the option importChats takes it as, and the pattern of a value as the importer's messages give one after the
// flag ("--date-order mdy"; for an encoding a name with a digit: utf-16le, windows-1252); the names of `me` are the
// user's, said by MeNotFoundError.
interface ExportField {
  flag: string;
  value?: {
    option: 'format' | 'encoding' | 'dateOrder';
    check: (value: string) => string | null;  // what is wrong with a value, or null
    named: string;
  };
}
const oneOf = (values: readonly string[]) => ({
  check: (value: string) => (values.includes(value) ? null : `must be one of ${values.join(', ')} (got ${quoted(value)})`),
  named: values.join('|'),
});
const EXPORT_FIELDS: Record<string, ExportField> = {
  me: { flag: '--me' },
  format: { flag: '--format', value: { option: 'format', ...oneOf(EXPORT_FORMATS) } },
  encoding: { flag: '--encoding', value: { option: 'encoding', check: unknownEncoding, named: '[\\w-]*\\d[\\w-]*' } },
  date_order: { flag: '--date-order', value: { option: 'dateOrder', ...oneOf(DATE_ORDERS) } },
};
const UPLOAD_FIELDS = ['file', 'purpose', ...Object.keys(EXPORT_FIELDS)];
const MAX_ME = 8;
const MAX_ME_LENGTH = 200;
// A multipart body's own bytes beside the file's (boundaries, part headers, the purpose): a body declared larger
// than the file limit by more than this is refused before it is read.
const MULTIPART_SLACK = 64 * 1024;
const MAX_LIST = 10_000;
const LIST_QUERY = ['purpose', 'limit', 'order', 'after'];
// An export with its photos is hundreds of megabytes, more than a home connection sends within request_timeout_s:
// an upload is given up when it stalls for request_timeout_s, or when it is slower than this on the whole.
const MIN_UPLOAD_BYTES_PER_S = 256 * 1024;

// How long an upload of the largest file may take at the slowest rate taken; Node's own limit on a request
// (app.ts) leaves it that long.
export function uploadTimeoutMs(config: ServerConfig): number {
  const maxFileBytes = config.fineTuning?.maxFileBytes ?? 0;
  return Math.max(config.requestTimeoutMs, Math.ceil((maxFileBytes + MULTIPART_SLACK) / MIN_UPLOAD_BYTES_PER_S) * 1000);
}

function notFound(id: string): never {
  throw new HttpError(404, `no file with id ${JSON.stringify(id)} (GET /v1/files lists them)`, { field: 'file_id' });
}

export function filesRouter(store: FileStore, config: ServerConfig): express.Router {
  const fineTuning = config.fineTuning;
  if (fineTuning === null) throw new Error('filesRouter: the config has fine-tuning off');
  const router = express.Router();

  router.post('/v1/files', async (req: Request, res: Response) => {
    const { maxFileBytes } = fineTuning;
    if (!req.is('multipart/form-data')) {
      throw new HttpError(415, 'send the upload as multipart/form-data with the fields "file" (the training data: a JSONL file, or a chat app\'s export) and "purpose" ("fine-tune", or "batch" for a batch\'s requests), as OpenAI\'s clients do');
    }
    if (Number(req.get('content-length')) > maxFileBytes + MULTIPART_SLACK) throw tooLarge(maxFileBytes);
    const pending = store.begin();
    try {
      const { purpose, filename, exported } = await receive(req, pending, maxFileBytes, { idleMs: config.requestTimeoutMs, totalMs: uploadTimeoutMs(config) });
      const exportField = exported.me.length > 0 ? 'me' : Object.entries(EXPORT_FIELDS).find(([, { value }]) => value !== undefined && exported[value.option] !== undefined)?.[0];
      if (filename === undefined) bad('file', 'is required: the training data, as a file part (a JSONL file of conversations, or a chat app\'s export)');
      if (purpose === undefined) bad('purpose', `is required: ${UPLOAD_PURPOSES.map((p) => `"${p}"`).join(', ')}`);
      if (purpose === 'batch') {
        if (exportField !== undefined) bad(exportField, 'is for a chat app\'s export, uploaded as training data (purpose "fine-tune")');
        await readBatchFile(pending.path, filename);
        res.json(await store.finish(pending, filename, 'batch'));
        return;
      }
      const kind = exported.format === undefined ? uploadKind(pending.path, filename) : 'export';
      if (kind === 'export') {
        const imported = await importExport(pending, filename, exported);
        res.json({ ...(await store.finish(pending, trainFilename(filename), 'fine-tune')), imported });
        return;
      }
      if (exportField !== undefined) bad(exportField, `is for a chat app's export${exportField === 'me' ? ', to say which of its senders is you' : ''}: ${filename} is ${kind === 'chat' ? 'in the chat format' : 'fine-tuning JSONL'}, which says who is who itself`);
      try {
        await checkTrainingDataOffThread(pending.path, filename);
      } catch (err) {
        if (err instanceof ChatImportError) throw new HttpError(400, `file: ${err.message}`, { field: 'file' });
        throw err;
      }
      res.json(await store.finish(pending, filename, 'fine-tune'));
    } catch (err) {
      store.abandon(pending);
      throw err;
    }
  });

  router.get('/v1/files', (req: Request, res: Response) => {
    const query = req.query as Record<string, unknown>;
    for (const key of Object.keys(query)) if (!LIST_QUERY.includes(key)) bad(key, `unsupported query parameter (supported: ${LIST_QUERY.join(', ')})`);
    const text = (key: string): string | undefined => {
      const v = query[key];
      if (v === undefined) return undefined;
      return typeof v === 'string' ? v : bad(key, 'must be given once, as a string');
    };
    const purpose = text('purpose');
    const order = text('order') ?? 'desc';
    if (order !== 'asc' && order !== 'desc') bad('order', `must be "asc" or "desc" (got ${quoted(order)})`);
    const files = store.list().filter((f) => purpose === undefined || f.purpose === purpose);
    if (order === 'asc') files.reverse();
    res.json(cursorPage(files, req.query, MAX_LIST, MAX_LIST));
  });

  router.get('/v1/files/:id', (req: Request, res: Response) => {
    const id = String(req.params.id);
    res.json(store.get(id) ?? notFound(id));
  });

  router.get('/v1/files/:id/content', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    const file = store.get(id) ?? notFound(id);
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(store.contentPath(id), 'r');
    } catch {
      notFound(id);  // deleted meanwhile
    }
    res.attachment(file.filename);
    res.set({ 'Content-Type': contentType(file, store.contentPath(id)), 'Content-Length': String(file.bytes) });
    try {
      await pipeline(handle.createReadStream(), res);
    } catch (err) {
      // A client that goes away before the end is no error of the server's.
      if (!res.headersSent) throw err;
    }
  });

  router.delete('/v1/files/:id', async (req: Request, res: Response) => {
    const id = String(req.params.id);
    if (!(await store.delete(id))) notFound(id);
    res.json({ id, object: 'file', deleted: true });
  });

  return router;
}

// Training data is UTF-8 JSONL or chat-format text (checked at upload), batches' files JSONL; the jobs' results are CSV.
function contentType(file: StoredFile, content: string): string {
  if (file.purpose === 'fine-tune') return storedDataKind(content) === 'chat' ? 'text/plain; charset=utf-8' : 'application/jsonl; charset=utf-8';
  if (file.purpose === 'batch' || file.purpose === 'batch_output') return 'application/jsonl; charset=utf-8';
  if (file.filename.toLowerCase().endsWith('.csv')) return 'text/csv; charset=utf-8';
  return 'application/octet-stream';
}

function tooLarge(maxFileBytes: number): HttpError {
  return new HttpError(413, `file: larger than the upload limit of ${maxFileBytes} bytes (${+(maxFileBytes / 1024 / 1024).toFixed(3)} MB: the server's fine_tuning.max_file_mb)`, { field: 'file' });
}

function unknownField(name: string): HttpError {
  if (name.startsWith('expires_after')) return new HttpError(400, 'expires_after: is not supported: files are kept until deleted', { field: 'expires_after' });
  return new HttpError(400, `${name}: unsupported field (supported: ${UPLOAD_FIELDS.join(', ')})`, { field: name });
}

function wrongPurpose(purpose: string): HttpError {
  const why = purpose === 'fine-tune-results' || purpose === 'batch_output' ? `: "${purpose}" files are written by the server` : ': training data for fine-tuning, or the requests of a batch';
  return new HttpError(400, `purpose: must be ${UPLOAD_PURPOSES.map((p) => `"${p}"`).join(' or ')} (got ${quoted(purpose)})${why}`, { field: 'purpose' });
}

// The fields of EXPORT_FIELDS, as importChats takes them.
interface ExportOptions {
  me: string[];
  format?: ExportFormat;
  encoding?: string;
  dateOrder?: DateOrder;
}

interface Upload {
  purpose?: string;
  filename?: string;
  exported: ExportOptions;
}

// Reads a multipart upload, the file streamed to `pending.path`; settles once that file is closed, so that it can be
// removed. A purpose sent before the file is checked at once; one sent after it, once the file has arrived. It is
// given up (408) when nothing arrives for `idleMs`, or when it is not all there after `totalMs`.
function receive(req: Request, pending: PendingFile, maxFileBytes: number, timeouts: { idleMs: number; totalMs: number }): Promise<Upload> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { files: 1, fileSize: maxFileBytes, fields: UPLOAD_FIELDS.length - 2 + MAX_ME, parts: UPLOAD_FIELDS.length + MAX_ME } });
  } catch (err) {
    return Promise.reject(new HttpError(400, `body: not multipart/form-data this server can read: ${(err as Error).message}`, { field: 'body' }));
  }
  return new Promise((resolve, reject) => {
    let purpose: string | undefined;
    let filename: string | undefined;
    const exported: ExportOptions = { me: [] };
    const { me } = exported;
    let error: unknown = null;
    let settled = false;
    let out: fs.WriteStream | null = null;
    let written: Promise<void> = Promise.resolve();
    const settle = () => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      clearTimeout(total);
      req.off('data', arrived);
      const done = () => (error === null ? resolve({ purpose, filename, exported }) : reject(error));
      written.then(done, (err: unknown) => {
        error ??= err;
        done();
      });
    };
    const fail = (err: unknown) => {
      if (settled || error !== null) return;
      error = err;
      req.unpipe(parser);
      // Stopped at the disk's end: busboy's file stream, destroyed, can count as ended, and the pipeline would
      // then wait for ever on a file that is never finished.
      out?.destroy();
      settle();
    };
    const stalled = () => fail(new HttpError(408, `the upload stalled: nothing arrived for ${timeouts.idleMs / 1000} s (the server's request_timeout_s)`));
    const idle = setTimeout(stalled, timeouts.idleMs);
    const total = setTimeout(() => fail(new HttpError(408, `the upload did not arrive within ${timeouts.totalMs / 1000} s (the time fine_tuning.max_file_mb takes at ${MIN_UPLOAD_BYTES_PER_S / 1024} KB/s)`)), timeouts.totalMs);
    const arrived = () => idle.refresh();
    req.on('data', arrived);

    parser.on('field', (name, value) => {
      if (name === 'purpose') {
        if (purpose !== undefined) fail(new HttpError(400, 'purpose: given twice', { field: 'purpose' }));
        else if (!UPLOAD_PURPOSES.includes(value)) fail(wrongPurpose(value));
        purpose = value;
      } else if (name === 'me') {
        if (value.trim() === '' || value.length > MAX_ME_LENGTH) fail(new HttpError(400, `me: must be a name of 1 to ${MAX_ME_LENGTH} characters, as the app shows it`, { field: 'me' }));
        else if (me.length === MAX_ME) fail(new HttpError(400, `me: given more than ${MAX_ME} times`, { field: 'me' }));
        me.push(value);
      } else if (Object.hasOwn(EXPORT_FIELDS, name) && EXPORT_FIELDS[name].value !== undefined) {
        const { option, check } = EXPORT_FIELDS[name].value;
        const wrong = check(value);
        if (exported[option] !== undefined) fail(new HttpError(400, `${name}: given twice`, { field: name }));
        else if (wrong !== null) fail(new HttpError(400, `${name}: ${wrong}`, { field: name }));
        Object.assign(exported, { [option]: value });
      } else if (name === 'file') fail(new HttpError(400, 'file: must be the file itself (a part with a filename), not a text field', { field: 'file' }));
      else fail(unknownField(name));
    });
    parser.on('file', (name, file, info) => {
      if (name !== 'file' || error !== null) {
        file.resume();
        fail(unknownField(name));  // no-op once failed
        return;
      }
      filename = info.filename ?? 'file';
      out = fs.createWriteStream(pending.path, { flags: 'wx' });
      file.on('limit', () => fail(tooLarge(maxFileBytes)));
      // The write's errors name no file; the log's line then does.
      written = pipeline(file, out).catch((err: unknown) => Promise.reject(namingFile(pending.path, err)));
      written.catch(fail);
    });
    parser.on('filesLimit', () => fail(new HttpError(400, 'file: give one file per upload', { field: 'file' })));
    parser.on('fieldsLimit', () => fail(new HttpError(400, `body: too many fields (an upload has ${UPLOAD_FIELDS.join(', ')})`, { field: 'body' })));
    parser.on('partsLimit', () => fail(new HttpError(400, `body: too many parts (an upload has ${UPLOAD_FIELDS.join(', ')})`, { field: 'body' })));
    parser.on('error', (err: unknown) => fail(new HttpError(400, `body: not valid multipart/form-data: ${(err as Error).message}`, { field: 'body' })));
    parser.on('close', settle);
    // A client gone before the end: nothing will be answered, but the file must go.
    req.on('error', fail);
    req.on('close', () => {
      if (!req.complete) fail(new HttpError(400, 'the upload was cut off before its end'));
    });
    req.pipe(parser);
  });
}

// What an upload holds: training data as it is (fine-tuning JSONL, the chat format) or a chat app's export, to import.
// A .jsonl file, and an empty one, is taken for training data, so that its mistakes are told by line rather than as
// "no chat export".
type UploadKind = TrainingDataKind | 'export';

function uploadKind(file: string, filename: string): UploadKind {
  const head = readHead(file, KIND_HEAD_BYTES);
  if (isZip(head) || isTar(head)) return 'export';
  const text = head.toString('utf8');
  const kind = trainingDataKind(text);
  if (kind === 'chat' || text.trim() === '' || filename.toLowerCase().endsWith('.jsonl')) return kind;
  return fineTuningFormat(firstJsonLine(text)) === null ? 'export' : kind;
}

// What the import of an export did, in the upload's answer beside the file object.
interface ImportedExport {
  formats: ChatImportSummary['formats'];  // export files read, by app
  messages: number;                       // kept
  sent: number;                           // of them, the user's
  dropped: ChatImportSummary['dropped'];
  audiences: { audience: string; messages: number; sent: number }[];
  warnings: string[];
  asks_for: string[];  // the fields the warnings name, to set at another upload where a guess was wrong
}

// A chat app's export, imported as bin/import-chat imports it (off the event loop), its chat-format text put in
// place of the upload's bytes. It keeps its name in the scratch folder: an export's name can name its chat
// (WhatsApp's "WhatsApp Chat - Mom.zip").
async function importExport(pending: PendingFile, filename: string, exported: ExportOptions): Promise<ImportedExport> {
  const uploads = path.join(pending.scratch, 'upload');
  const input = path.join(uploads, cleanFilename(filename));
  const out = path.join(pending.scratch, 'chats.train');
  fs.mkdirSync(uploads, { recursive: true });
  fs.renameSync(pending.path, input);
  const local = (message: string) => asUploadFields(message.split(`${uploads}${path.sep}`).join(''));
  const { me } = exported;
  let summary: ChatImportSummary;
  try {
    summary = await importChatsOffThread([input], { out, ...exported });
  } catch (err) {
    if (err instanceof MeNotFoundError) {
      const which = me.length === 0 ? 'say which of the senders is you, by the name the app shows' : `${me.map((m) => JSON.stringify(m)).join(', ')} names none of the senders`;
      throw new HttpError(400, `me: ${filename} is a chat app's export: ${which} (the field "me"): ${err.sendersFound()}`, { field: 'me', code: 'me_not_found', details: { senders: err.senders } });
    }
    if (err instanceof ChatImportError || err instanceof ChatImportErrors) {
      const { text, fields } = local(err.message);
      throw new HttpError(400, `file: ${text}`, { field: 'file', details: { asks_for: fields } });
    }
    throw err;
  }
  if (summary.kept === 0) bad('file', `${filename}: holds no message to train on (of ${summary.read} read, none was kept)`);
  fs.renameSync(out, pending.path);
  const warnings = summary.warnings.map(local);
  return {
    formats: summary.formats,
    messages: summary.kept,
    sent: summary.sent,
    dropped: summary.dropped,
    audiences: summary.audiences.filter((a) => a.kept > 0).map((a) => ({ audience: a.audience, messages: a.kept, sent: a.sent })),
    warnings: warnings.map((warning) => warning.text),
    asks_for: [...new Set(warnings.flatMap((warning) => warning.fields))],
  };
}

// The importer's words for an upload: its flags as the upload's fields, and a flag with its value as the field with
// its ("--date-order mdy": "date_order": "mdy"); and the fields named, which a client can offer to set.
function asUploadFields(message: string): { text: string; fields: string[] } {
  let text = message;
  const fields: string[] = [];
  for (const [field, { flag, value: given }] of Object.entries(EXPORT_FIELDS)) {
    const pattern = new RegExp(`${flag}\\b${given === undefined ? '' : `(?: (${given.named})\\b)?`}`, 'g');
    text = text.replace(pattern, (_, value?: string) => {
      if (!fields.includes(field)) fields.push(field);
      return value === undefined ? `the field "${field}"` : `"${field}": "${value}"`;
    });
  }
  return { text, fields };
}

// An imported export is kept under its name as the chat format's: "WhatsApp Chat - Mom.zip" as "WhatsApp Chat - Mom.train".
function trainFilename(filename: string): string {
  const name = cleanFilename(filename);
  const ext = path.extname(name);
  return `${ext === '' ? name : name.slice(0, -ext.length)}.train`;
}
