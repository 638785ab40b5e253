// The documents of a dataset's text file, each trained on as a text file is (dataset.ts: joined with <|endoftext|>,
// checked as chat when it is chat). The kind is told by the file's extension:
//   .csv             gpt-2-simple's: a document per row, its first column; the first row is the header, skipped as
//                    gpt-2-simple skips it. RFC 4180: quoted fields, "" for a quote, line breaks inside quotes.
//   .jsonl, .ndjson  Hugging Face datasets': a JSON object a line, its "text" field a document; blank lines skipped.
//   anything else    one document, the whole file.
// Files are read whole, as text files are; a CSV or JSONL file that cannot be read stops the run with file:line.
import path from 'node:path';
import { CsvError, parse } from 'csv-parse/sync';
import type { InfoRecord } from 'csv-parse/sync';
import { lineCounter } from '../util/lines';
import { isJsonObject } from '../util/json_object';

export type DocumentFileKind = 'text' | 'csv' | 'jsonl';

// Where a document's lines are in its file, for the chat checker's file:line.
export interface DocumentPlace {
  line: number;       // the file's line the document starts on (1-based)
  // The document's line breaks are the file's (a text file, a CSV field), or escaped in JSON, all of it on one line.
  ownLines: boolean;
}

interface TextDocument extends DocumentPlace {
  text: string;
}

export const WHOLE_FILE: DocumentPlace = { line: 1, ownLines: true };

// The file's line of a document's `line` (1-based).
export function fileLine(place: DocumentPlace, line: number): number {
  return place.ownLines ? place.line + line - 1 : place.line;
}

export function documentFileKind(file: string): DocumentFileKind {
  const extension = path.extname(file).toLowerCase();
  if (extension === '.csv') return 'csv';
  if (extension === '.jsonl' || extension === '.ndjson') return 'jsonl';
  return 'text';
}

export interface FileDocuments {
  documents: TextDocument[];
  warnings: string[];   // as readTextFile's: "file: what"
}

// The documents of `text`, the content of `file` (readTextFile's). Blank documents (a row whose first column is
// empty, a line whose "text" is) teach nothing and are left out, with a warning.
export function fileDocuments(file: string, kind: DocumentFileKind, text: string): FileDocuments {
  if (kind === 'text') return { documents: [{ text, ...WHOLE_FILE }], warnings: [] };
  const all = kind === 'csv' ? csvDocuments(file, text) : jsonlDocuments(file, text);
  const documents = all.filter((d) => d.text.trim() !== '');
  const warnings: string[] = [];
  const blank = all.length - documents.length;
  const [unit, field] = kind === 'csv' ? ['row', 'first column'] : ['line', '"text"'];
  if (blank > 0) warnings.push(`${file}: ${blank} ${unit}${blank === 1 ? '' : 's'} whose ${field} is empty, not trained on`);
  if (all.length === 0 && text.trim() !== '') warnings.push(`${file}: no documents${kind === 'csv' ? ' (only the header row)' : ''}, nothing to train on`);
  return { documents, warnings };
}

// The first byte at or after `offset` that is no line break: where a record starts, blank lines skipped.
function recordStart(data: Buffer, offset: number): number {
  while (offset < data.length && (data[offset] === 0x0a || data[offset] === 0x0d)) offset++;
  return offset;
}

function csvDocuments(file: string, text: string): TextDocument[] {
  // Parsed as bytes so that csv-parse's offsets (it counts bytes) place each row on its line.
  const data = Buffer.from(text, 'utf8');
  const lineOf = lineCounter(data);
  let rows: { record: string[]; info: InfoRecord }[];
  try {
    // csv-parse types `info` records as bare rows. Rows may have any number of columns, and a quote inside an
    // unquoted field is a quote, as Python's csv module (gpt-2-simple's) reads them; a line ends in \r\n, \n or \r.
    rows = parse(data, { info: true, relax_column_count: true, relax_quotes: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n', '\r'] }) as unknown as typeof rows;
  } catch (err) {
    if (!(err instanceof CsvError)) throw err;
    // The row that failed starts where the last good one ended.
    const line = lineOf(recordStart(data, Number(err.bytes_records ?? 0)));
    if (err.code === 'CSV_QUOTE_NOT_CLOSED') throw new Error(`${file}:${line}: a quoted field of the row that starts here is never closed (a quote inside quotes is written "")`);
    throw new Error(`${file}:${line}: not CSV: ${err.message}`);
  }
  const documents: TextDocument[] = [];
  let end = 0;
  for (const { record, info } of rows) {
    const line = lineOf(recordStart(data, end));
    end = info.bytes;
    // The header row, which gpt-2-simple skips whatever it holds.
    if (info.records === 1) continue;
    documents.push({ text: record[0] ?? '', line, ownLines: true });
  }
  return documents;
}

function jsonlDocuments(file: string, text: string): TextDocument[] {
  const documents: TextDocument[] = [];
  const lines = text.split('\n');
  for (const [index, written] of lines.entries()) {
    if (written.trim() === '') continue;
    const line = index + 1;
    let value: unknown;
    try {
      value = JSON.parse(written);
    } catch (err) {
      throw new Error(`${file}:${line}: not JSON (a JSONL file holds a JSON object a line): ${(err as Error).message}`);
    }
    const object = isJsonObject(value) ? value : null;
    if (typeof object?.text === 'string') {
      documents.push({ text: object.text, line, ownLines: false });
      continue;
    }
    const chat = object === null ? null : CHAT_FINE_TUNING.find(({ field }) => Array.isArray(object[field]));
    if (chat) {
      throw new Error(`${file}:${line}: a conversation in ${chat.format} ("${chat.field}"), not a document: make it chat training data with bin/import-chat ${file}, then train on the .train files it writes`);
    }
    const got = object === null ? (Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value) : 'text' in object ? 'an object whose "text" is no string' : 'an object without "text"';
    throw new Error(`${file}:${line}: each line must be a JSON object whose "text" field is a string (a document), got ${got}`);
  }
  return documents;
}

// The chat fine-tuning formats that bin/import-chat reads, by the field that holds a conversation's messages.
const CHAT_FINE_TUNING: readonly { field: string; format: string }[] = [
  { field: 'messages', format: "OpenAI's chat fine-tuning format" },
  { field: 'conversations', format: "ShareGPT's format" },
];
