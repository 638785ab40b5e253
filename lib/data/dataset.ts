// Loading a training dataset by load_dataset's rules (docs/compatibility.md): `--dataset` names files (see files.ts);
// the documents of text files (a text file is one, a CSV or JSONL file holds many: documents.ts) are read in order
// and joined with <|endoftext|> into chunks of at least `combine` characters, then encoded; an .npz adds its arrays
// as chunks; a token file (bin/encode) is read in place. Text files are checked to be text (text_file.ts) and chat
// documents to be well formed (chat_check.ts) on the way.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { progressCallback } from '../download/progress';
import { END_OF_TEXT, EncoderPool, Tokenizer } from '../tokenizer';
import { ChatChecker, ChatSummary, MalformedChatError } from './chat_check';
import { looksLikeChat } from './chat_format';
import { DocumentFileKind, documentFileKind, fileDocuments } from './documents';
import { datasetFiles } from './files';
import { readNpz } from './npz';
import { readTextFile } from './text_file';
import { TokenFile, TokenSink, isTokenFile, writeTokenFile } from './token_file';
import { MemoryTokens, TokenSource } from './tokens';

export const DEFAULT_COMBINE = 50000;
// Text is encoded in batches of about this many characters (bounding the text held in memory at once when
// writing a token file), on worker threads unless a batch is under PARALLEL_MIN_CHARS, where starting the
// workers would cost more than they save.
const FLUSH_CHARS = 64 << 20;
const PARALLEL_MIN_CHARS = 1 << 20;
// Below this much text, encoding takes about a second on two cores: too short for a progress bar of its own.
const PROGRESS_MIN_BYTES = 32 << 20;

// Which text files go through the chat checker: those that look like chat (auto), all, or none.
export type ChatCheckMode = 'auto' | 'all' | 'off';

export interface DatasetOptions {
  tokenizer: Tokenizer;
  combine?: number;         // default 50000 characters (UTF-16 code units)
  chatCheck?: ChatCheckMode;  // default auto
  threads?: number;         // encoding threads; default one per core
  log?: (line: string) => void;
  // Encoding progress in bytes of the text files, as the workers finish their pieces. Absent: over 32 MB of text,
  // progress on stderr (a bar on a terminal, a line every 10 s in a log: bin/train's encoding step); null: none.
  onProgress?: ((bytes: number, totalBytes: number) => void) | null;
}

export interface Dataset {
  source: TokenSource;
  files: string[];
  chat: ChatSummary | null;  // null when no file was checked
  warnings: string[];        // what is wrong with text files but does not stop training (invalid UTF-8, empty)
}

interface DatasetPart {
  kind: DocumentFileKind | 'npz' | 'tokens';
  file: string;
}

function classify(file: string): DatasetPart {
  if (file.endsWith('.npz')) return { kind: 'npz', file };
  if (isTokenFile(file)) return { kind: 'tokens', file };
  return { kind: documentFileKind(file), file };
}

// Feeds the dataset's chunks to `sink` in order: documents joined into chunks of >= combine characters and encoded
// (on every core), .npz arrays as they are. The one definition of a dataset's chunks, shared by training on
// text and bin/encode, so both see the same tokens.
// Returns the bytes of text read; what is wrong with the text files goes to `warnings`.
async function produceChunks(parts: DatasetPart[], options: DatasetOptions, checker: ChatChecker | null, sink: TokenSink, warnings: string[]): Promise<number> {
  const combine = options.combine ?? DEFAULT_COMBINE;
  const chatCheck = options.chatCheck ?? 'auto';
  const { tokenizer } = options;
  const threads = options.threads ?? os.availableParallelism();
  const totalBytes = parts.reduce((sum, p) => sum + (p.kind === 'npz' ? 0 : fs.statSync(p.file).size), 0);
  const onProgress = options.onProgress === undefined
    ? (totalBytes > PROGRESS_MIN_BYTES ? progressCallback('encoding') : null)
    : options.onProgress;
  let reported = -1;
  const report = (done: number): void => {
    const at = Math.min(Math.round(done), totalBytes);
    if (onProgress && totalBytes > 0 && at !== reported) onProgress(at, totalBytes);
    reported = at;
  };
  let pool: EncoderPool | null = null;
  let pending: string[] = [];
  let pendingChars = 0;
  let raw = '';
  let bytes = 0;
  // Bytes of text files read into `raw` and `pending`, and of those encoded.
  let rawBytes = 0;
  let pendingBytes = 0;
  let encodedBytes = 0;
  const flush = async (): Promise<void> => {
    const texts = pending;
    const textBytes = pendingBytes;
    const small = pendingChars < PARALLEL_MIN_CHARS || threads <= 1;
    pending = [];
    pendingChars = 0;
    pendingBytes = 0;
    if (!small) pool ??= new EncoderPool({ threads, vocabDir: path.dirname(tokenizer.vocab.files.encoderPath) });
    const encoded = small
      ? texts.map((t) => tokenizer.encode(t, { allowSpecial: true }))
      : await (pool as EncoderPool).encode(texts, { allowSpecial: true, onProgress: (doneChars, totalChars) => report(encodedBytes + (textBytes * doneChars) / totalChars) });
    encodedBytes += textBytes;
    report(encodedBytes);
    for (const tokens of encoded) {
      sink.append(tokens);
      sink.endChunk();
    }
  };
  try {
    for (const part of parts) {
      if (part.kind === 'npz') {
        await flush();
        for (const array of readNpz(part.file)) {
          sink.append(array.data);
          sink.endChunk();
        }
        continue;
      }
      const { text, bytes: size, warnings: fileWarnings } = readTextFile(part.file);
      // Not a token file: parts() makes one the whole dataset, read in place.
      const { documents, warnings: documentWarnings } = fileDocuments(part.file, part.kind as DocumentFileKind, text);
      bytes += size;
      rawBytes += size;
      warnings.push(...fileWarnings, ...documentWarnings);
      for (const document of documents) {
        if (checker && (chatCheck === 'all' || looksLikeChat(document.text))) checker.add(part.file, document.text, document);
        raw += document.text;
        if (raw.length >= combine) {
          pending.push(raw);
          pendingChars += raw.length;
          pendingBytes += rawBytes;
          raw = '';
          rawBytes = 0;
          if (pendingChars >= FLUSH_CHARS) await flush();
        } else {
          raw += END_OF_TEXT;
        }
      }
    }
    if (raw) pending.push(raw);
    pendingBytes += rawBytes;
    await flush();
    report(totalBytes);
  } finally {
    await (pool as EncoderPool | null)?.close();
  }
  return bytes;
}

function parts(spec: string): DatasetPart[] {
  const all = datasetFiles(spec).map(classify);
  const tokenFiles = all.filter((p) => p.kind === 'tokens');
  if (tokenFiles.length > 0 && all.length > 1) {
    throw new Error(`dataset ${spec}: ${tokenFiles[0].file} is a token file; a token file must be the whole dataset (bin/encode all the files into one)`);
  }
  return all;
}

// The dataset `spec` names, ready to sample from. A token file must have been made with a vocabulary of the
// tokenizer's size.
export async function loadDataset(spec: string, options: DatasetOptions): Promise<Dataset> {
  const found = parts(spec);
  const files = found.map((p) => p.file);
  if (found[0].kind === 'tokens') {
    const source = new TokenFile(found[0].file);
    if (source.vocabSize !== options.tokenizer.vocabSize) {
      source.close();
      throw new Error(`${found[0].file}: encoded with a vocabulary of ${source.vocabSize} tokens, but the model's tokenizer has ${options.tokenizer.vocabSize}`);
    }
    return { source, files, chat: null, warnings: [] };
  }
  const warnings: string[] = [];
  const checker = (options.chatCheck ?? 'auto') === 'off' ? null : new ChatChecker();
  const chunks: Int32Array[] = [];
  let current: Int32Array[] = [];
  await produceChunks(found, options, checker, {
    append: (tokens) => current.push(Int32Array.from(tokens)),
    endChunk: () => {
      if (current.length === 0) return;
      chunks.push(current.length === 1 ? current[0] : concat(current));
      current = [];
    },
  }, warnings);
  const summary = checker?.summary() ?? null;
  return { source: new MemoryTokens(spec, chunks, options.tokenizer.vocabSize), files, chat: summary && summary.files > 0 ? summary : null, warnings };
}

function concat(arrays: Int32Array[]): Int32Array {
  const out = new Int32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

export interface EncodeResult {
  files: string[];
  tokens: number;
  chunks: number;
  bytes: number;             // text read
  chat: ChatSummary | null;
  warnings: string[];        // as Dataset's
}

// bin/encode: the dataset `spec` names, encoded once into a token file at `target` (written atomically).
export async function encodeDataset(spec: string, target: string, options: DatasetOptions): Promise<EncodeResult> {
  const found = parts(spec);
  if (found[0].kind === 'tokens') throw new Error(`${found[0].file} is already a token file`);
  const checker = (options.chatCheck ?? 'auto') === 'off' ? null : new ChatChecker();
  let tokens = 0;
  let bytes = 0;
  const warnings: string[] = [];
  const header = await writeTokenFile(target, options.tokenizer, async (sink) => {
    bytes = await produceChunks(found, options, checker, {
      append: (t) => {
        tokens += t.length;
        sink.append(t);
      },
      endChunk: () => sink.endChunk(),
    }, warnings);
    // Malformed chat is refused before the file appears.
    const checked = checker?.summary();
    if (checked && checked.issues.length > 0) throw new MalformedChatError(checked, tokens);
  });
  const summary = checker?.summary() ?? null;
  return { files: found.map((p) => p.file), tokens: header.tokenCount, chunks: header.chunkCount, bytes, chat: summary && summary.files > 0 ? summary : null, warnings };
}
