// Loading a training dataset by load_dataset's rules (docs/compatibility.md): `--dataset` names files (see files.ts);
// the documents of text files (a text file is one, a CSV or JSONL file holds many: documents.ts) are read in order
// and joined with <|endoftext|> into chunks of at least `combine` characters, then encoded (what is left at the end,
// shorter, joins the last chunk); an .npz adds its arrays as chunks; a token file (bin/encode) is read in place. Text
// files are checked to be text (text_file.ts) and chat documents to be well formed (chat_check.ts) on the way.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { progressCallback } from '../download/progress';
import { END_OF_TEXT, EncoderPool, Tokenizer } from '../tokenizer';
import { concat, cutText, dealLanes } from '../tokenizer/parallel';
import { ChatChecker, ChatSummary, MalformedChatError } from './chat_check';
import { looksLikeChat } from './chat_format';
import { plural } from '../util/format';
import { DocumentFileKind, documentFileKind, fileDocuments } from './documents';
import { datasetFiles } from './files';
import { readNpz } from './npz';
import { readTextFile } from './text_file';
import { TokenFile, TokenSink, isTokenFile, writeTokenFile } from './token_file';
import { MemoryTokens, TokenSource, checkTokenIds } from './tokens';
import { isWithin } from '../util/paths';
import { shellWord } from '../util/shell_word';
import { FORMAT_NAMES } from '../import/chat_export';
import { looksLikeKakaoTalk } from '../import/kakaotalk';
import { looksLikeLine } from '../import/line';
import { looksLikeWhatsApp } from '../import/whatsapp';

export const DEFAULT_COMBINE = 50000;

// A dataset's size as bin/train and bin/encode report it.
export function describeTokens(tokens: number, chunks: number, files: number): string {
  return `${plural(tokens, 'token')} in ${plural(chunks, 'chunk')} from ${plural(files, 'file')}`;
}
// Text is encoded in batches of about this many characters (bounding the text held in memory at once when
// writing a token file), on worker threads unless a batch is under PARALLEL_MIN_CHARS, where starting the
// workers would cost more than they save.
const FLUSH_CHARS = 64 << 20;
const PARALLEL_MIN_CHARS = 1 << 20;
// Below this much text, encoding takes about a second on two cores: too short for a progress bar of its own.
const PROGRESS_MIN_BYTES = 32 << 20;
// Shared by ranks, text is dealt out in pieces of about this many characters, so that one large file spreads over
// them all.
const SHARE_PIECE_CHARS = 1 << 20;
// Tokens are handed between ranks in broadcasts of at most this many bytes: MPI counts in ints.
const SHARE_BROADCAST_BYTES = 1 << 28;

// Which text files go through the chat checker: those that look like chat (auto), all, or none (off: text that
// only looks like chat, a table of 1|2|3, say).
export const CHAT_CHECK_MODES = ['auto', 'all', 'off'] as const;
export type ChatCheckMode = (typeof CHAT_CHECK_MODES)[number];
// --chat_check, as bin/train and bin/encode describe it.
export const CHAT_CHECK_HELP = 'text files checked as chat logs (malformed lines stop it): auto, those whose first lines look like chat; all; off, none (for text that only looks like chat, a table of 1|2|3)';

export interface DatasetOptions {
  tokenizer: Tokenizer;
  combine?: number;         // default 50000 characters (UTF-16 code units)
  chatCheck?: ChatCheckMode;  // default auto
  threads?: number;         // encoding threads; default one per core
  // Encoding progress in bytes of the text files, as the workers finish their pieces (or of a token file, as its
  // ids are checked). Absent: over 32 MB, progress on stderr (a bar on a terminal, a line every 10 s in a log:
  // bin/train's encoding step); null: none.
  onProgress?: ((bytes: number, totalBytes: number) => void) | null;
  // The ranks of a data-parallel job loading the same dataset, which share its encoding.
  share?: EncodingShare;
}

// Ranks of a data-parallel job (lib/train/train.ts: encodingShare) that each read the dataset's text, encode a share of it and
// hand the others its tokens: each rank ends with the whole dataset in 1/size of the encoding time, where encoding
// all of it on every rank took as long on N machines as on one.
export interface EncodingShare {
  rank: number;
  size: number;
  // Throws on every rank unless each has rank 0's key for every entry (the vocabulary's fingerprint, the digest of the
  // text read up to here; `shown` says what each is, `name` what it is of, the flag to follow): ranks that encode
  // others' text, or with another vocabulary, would train on it, and the tokens they then share would hide that.
  agree(entries: { name: string; key: string; shown: string }[]): void;
  // Resolves once every rank has come here, waiting without spinning: on one machine, a rank done with its share
  // leaves its core to those still encoding (an MPI broadcast's wait spins).
  barrier(): Promise<void>;
  // Rank `root`'s bytes, on every rank.
  broadcast(data: Uint8Array, root: number): void;
}

export interface Dataset {
  source: TokenSource;
  files: string[];
  chat: ChatSummary | null;  // null when no file was checked
  warnings: string[];        // what is wrong with the files but does not stop training (invalid UTF-8, empty, a broken link)
}

interface DatasetPart {
  kind: DocumentFileKind | 'npz' | 'tokens';
  file: string;
}

// By content first: a token file is one whatever it is named (bin/encode data.txt data.npz writes one).
function classify(file: string): DatasetPart {
  if (isTokenFile(file)) return { kind: 'tokens', file };
  if (file.endsWith('.npz')) return { kind: 'npz', file };
  return { kind: documentFileKind(file), file };
}

// The progress callback for `totalBytes` of work under `options` (DatasetOptions.onProgress).
function progressOf(options: DatasetOptions, totalBytes: number, label: string): ((bytes: number, totalBytes: number) => void) | null {
  if (options.onProgress !== undefined) return options.onProgress;
  return totalBytes > PROGRESS_MIN_BYTES ? progressCallback(label) : null;
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
  const onProgress = progressOf(options, totalBytes, 'encoding');
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
  // The last text chunk stays open (not ended) until another begins, so that what is left at the end, shorter than
  // --combine, can join it (fold): alone it could be shorter than a training window, which is never drawn.
  let open = false;
  const endOpen = (): void => {
    if (open) sink.endChunk();
    open = false;
  };
  // The file the text read so far ends in, for the ranks' disagreement on it.
  let lastFile = '';
  const flush = async (fold = false): Promise<void> => {
    const texts = pending;
    const textBytes = pendingBytes;
    pending = [];
    pendingChars = 0;
    pendingBytes = 0;
    // Progress counts the text this rank encodes.
    const encode = async (some: string[]): Promise<Int32Array[]> => {
      const chars = some.reduce((sum, t) => sum + t.length, 0);
      if (chars < PARALLEL_MIN_CHARS || threads <= 1) return some.map((t) => tokenizer.encode(t, { allowSpecial: true }));
      pool ??= new EncoderPool({ threads, vocabDir: path.dirname(tokenizer.vocab.files.encoderPath) });
      return pool.encode(some, { allowSpecial: true, cutsAtWhitespace: tokenizer.cutsAtWhitespace, onProgress: (doneChars, totalChars) => report(encodedBytes + (textBytes * doneChars) / totalChars) });
    };
    const encoded = options.share && texts.length > 0 ? await encodeShared(texts, options.share, tokenizer, encode, lastFile) : await encode(texts);
    encodedBytes += textBytes;
    report(encodedBytes);
    encoded.forEach((tokens, i) => {
      // As if the text were joined with <|endoftext|> and encoded whole: a special token splits the text.
      if (fold && open && i === encoded.length - 1) sink.append([tokenizer.eotToken]);
      else endOpen();
      sink.append(tokens);
      open = true;
    });
  };
  try {
    for (const part of parts) {
      if (part.kind === 'npz') {
        await flush();
        endOpen();
        for (const array of readNpz(part.file)) {
          checkTokenIds(array.data, tokenizer.vocabSize, `${part.file}, array ${array.name}`);
          sink.append(array.data);
          sink.endChunk();
        }
        continue;
      }
      const { text, bytes: size, warnings: fileWarnings } = readTextFile(part.file);
      lastFile = part.file;
      if (chatCheck !== 'off' && part.kind === 'text') refuseChatExport(part.file, text);
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
    await flush(raw !== '');
    endOpen();
    report(totalBytes);
  } finally {
    await (pool as EncoderPool | null)?.close();
  }
  return bytes;
}

// The tokens of `texts` (the same on every rank: the text read up to `through`, a file), each rank encoding a
// contiguous share of it (cut where cutting leaves the tokens as they are: EncoderPool's cuts) and handing the others
// its tokens.
async function encodeShared(texts: string[], share: EncodingShare, tokenizer: Tokenizer, encode: (texts: string[]) => Promise<Int32Array[]>, through: string): Promise<Int32Array[]> {
  const digest = crypto.createHash('sha256');
  let chars = 0;
  for (const text of texts) {
    digest.update(`${text.length}\n`).update(text);
    chars += text.length;
  }
  const key = digest.digest('hex');
  // The vocabulary too: another one would encode other tokens, and one that cuts elsewhere (cutsAtWhitespace) other
  // pieces, so that the ranks' broadcasts would not match.
  const { fingerprint } = tokenizer.vocab;
  share.agree([
    { name: 'the vocabulary that encodes', key: fingerprint, shown: `${path.dirname(tokenizer.vocab.files.encoderPath)}, fingerprint ${fingerprint.slice(0, 12)}` },
    { name: 'the text of', key, shown: `${plural(chars, 'character')} of text up to the end of ${through}, digest ${key.slice(0, 12)}` },
  ]);
  const { cutsAtWhitespace } = tokenizer;
  // Text t is pieces [firstPiece[t], firstPiece[t + 1]).
  const pieces: string[] = [];
  const firstPiece: number[] = [];
  for (const text of texts) {
    firstPiece.push(pieces.length);
    pieces.push(...(cutsAtWhitespace ? cutText(text, SHARE_PIECE_CHARS) : [text]));
  }
  firstPiece.push(pieces.length);
  const lanes = dealLanes(pieces.map((p) => ({ chars: p.length })), share.size);
  const own = lanes[share.rank];
  const mine = await encode(pieces.slice(own.next, own.end));
  await share.barrier();
  const tokens = new Array<Int32Array>(pieces.length);
  lanes.forEach(({ next, end }, root) => {
    if (end === next) return;
    const counts = new Float64Array(end - next);
    if (root === share.rank) mine.forEach((t, i) => (counts[i] = t.length));
    share.broadcast(new Uint8Array(counts.buffer), root);
    const all = root === share.rank ? concat(mine) : new Int32Array(counts.reduce((sum, n) => sum + n, 0));
    const bytes = new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
    for (let at = 0; at < bytes.length; at += SHARE_BROADCAST_BYTES) share.broadcast(bytes.subarray(at, at + SHARE_BROADCAST_BYTES), root);
    let at = 0;
    counts.forEach((n, i) => {
      tokens[next + i] = all.subarray(at, at + n);
      at += n;
    });
  });
  return texts.map((_, t) => concat(tokens.slice(firstPiece[t], firstPiece[t + 1])));
}

// A messaging app's chat export trains as text without complaint, dates, names and all, into a model that writes
// export lines (or JSON): it has to be made chat training data first. The importers that tell JSON exports apart
// are loaded only for a file that begins as JSON does.
function refuseChatExport(file: string, text: string): void {
  const json = /^\s*[[{]/.test(text) ? (require('../import/detect') as typeof import('../import/detect')).jsonExportFormat(text) : null;
  const app = looksLikeWhatsApp(text) ? 'WhatsApp' : looksLikeLine(text) ? 'LINE' : looksLikeKakaoTalk(text) ? 'KakaoTalk' : json === null ? null : FORMAT_NAMES[json];
  if (app === null) return;
  throw new Error(
    `${file}: ${/^[AEIOU]/.test(app) ? 'an' : 'a'} ${app} chat export, not training data: make it chat training data with bin/import-chat ${shellWord(file)} --me "<your name>" --out data/, ` +
      'then train on data/ (--chat_check off trains on the export as plain text)',
  );
}

function parts(spec: string, warnings: string[]): DatasetPart[] {
  const all = datasetFiles(spec, warnings).map(classify);
  const tokenFiles = all.filter((p) => p.kind === 'tokens');
  if (tokenFiles.length > 0 && all.length > 1) {
    throw new Error(`dataset ${spec}: ${tokenFiles[0].file} is a token file; a token file must be the whole dataset (bin/encode all the files into one)`);
  }
  return all;
}

// The dataset `spec` names, ready to sample from. A token file must have been made with a vocabulary of the
// tokenizer's size; its ids are checked against that vocabulary, which training checks to be no bigger than the
// model's.
export async function loadDataset(spec: string, options: DatasetOptions): Promise<Dataset> {
  const warnings: string[] = [];
  const found = parts(spec, warnings);
  const files = found.map((p) => p.file);
  if (found[0].kind === 'tokens') {
    const source = new TokenFile(found[0].file);
    try {
      if (source.vocabSize !== options.tokenizer.vocabSize) {
        throw new Error(`${found[0].file}: encoded with a vocabulary of ${source.vocabSize} tokens, but the model's tokenizer has ${options.tokenizer.vocabSize}`);
      }
      source.checkTokenIds(progressOf(options, source.tokenCount * source.header.bytesPerToken, 'checking tokens'));
    } catch (err) {
      source.close();
      throw err;
    }
    return { source, files, chat: null, warnings };
  }
  const checker = (options.chatCheck ?? 'auto') === 'off' ? null : new ChatChecker();
  const chunks: Int32Array[] = [];
  let current: Int32Array[] = [];
  await produceChunks(found, options, checker, {
    append: (tokens) => current.push(Int32Array.from(tokens)),
    endChunk: () => {
      if (current.length === 0) return;
      chunks.push(concat(current));
      current = [];
    },
  }, warnings);
  const summary = checker?.summary() ?? null;
  return { source: new MemoryTokens(spec, chunks, options.tokenizer.vocabSize), files, chat: summary && summary.files > 0 ? summary : null, warnings };
}

export interface EncodeResult {
  files: string[];
  tokens: number;
  chunks: number;
  bytes: number;             // text read
  chat: ChatSummary | null;
  warnings: string[];        // as Dataset's
}

// bin/encode: the dataset `spec` names, encoded once into a token file at `target` (written atomically). The
// target may replace an earlier token file, never one of the dataset's files or anything else.
export async function encodeDataset(spec: string, target: string, options: DatasetOptions): Promise<EncodeResult> {
  const warnings: string[] = [];
  const found = parts(spec, warnings);
  if (found[0].kind === 'tokens') throw new Error(`${found[0].file} is already a token file`);
  const input = found.find((p) => isWithin(p.file, target));
  if (input) throw new Error(`${target}: the output would replace the dataset's file ${input.file}: write the token file elsewhere`);
  if (fs.existsSync(target) && !(fs.statSync(target).isFile() && isTokenFile(target))) {
    throw new Error(`${target}: exists and is not a token file, which encoding would replace: give the output a new name (or move ${target} away)`);
  }
  const checker = (options.chatCheck ?? 'auto') === 'off' ? null : new ChatChecker();
  let tokens = 0;
  let bytes = 0;
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
