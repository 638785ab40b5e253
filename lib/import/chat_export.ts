// What every importer (whatsapp.ts, line.ts, kakaotalk.ts, telegram.ts and telegram_html.ts, messenger.ts, discord.ts,
// google_chat.ts, element.ts, slack.ts, snapchat.ts, signal.ts, skype.ts, x_archive.ts, sms.ts, imessage.ts, fine_tuning.ts) turns an
// app's export into: chats of messages with their time, their sender as the app names them, and their raw text, each
// message either kept or dropped with a reason. Deciding which sender is the user, the audience and the output is
// left to train_output.ts, so that every app's quirks stay in its importer and every rule of the output in one place.
import buffer, { isUtf8 } from 'node:buffer';
import { lineAt } from '../util/lines';
import type { WhatsAppDates } from './whatsapp';
import { isJsonObject } from '../util/json_object';

export const EXPORT_FORMATS = ['whatsapp', 'line', 'kakaotalk', 'telegram', 'messenger', 'discord', 'googlechat', 'element', 'slack', 'snapchat', 'signal', 'skype', 'x', 'sms', 'imessage', 'openai', 'sharegpt'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const FORMAT_NAMES: Readonly<Record<ExportFormat, string>> = {
  whatsapp: 'WhatsApp',
  line: 'LINE',
  kakaotalk: 'KakaoTalk',
  telegram: 'Telegram',
  messenger: 'Messenger',
  discord: 'Discord',
  googlechat: 'Google Chat',
  element: 'Element (Matrix)',
  slack: 'Slack',
  snapchat: 'Snapchat',
  signal: 'Signal',
  skype: 'Skype',
  x: 'X (Twitter)',
  sms: 'SMS Backup & Restore',
  imessage: 'Messages (macOS)',
  openai: 'OpenAI fine-tuning JSONL',
  sharegpt: 'ShareGPT',
};

// Why a message is not written, as the summary names it.
export type DropReason =
  | 'system'      // the app's own notices: encryption, joins and leaves, renames, pins
  | 'media'       // a photo, voice note, sticker, file... with no text of its own
  | 'deleted'     // deleted or unsent ("This message was deleted")
  | 'call'
  | 'bot'         // an app's or integration's post, not a person's
  | 'reaction'
  | 'forwarded'   // someone else's words
  | 'not sent'    // an SMS draft, failed or queued
  | 'empty'       // nothing left once cleaned
  | 'unreadable'  // an entry of the export without a time or a sender, or that the app could not decrypt
  | 'duplicate'   // already read from another file: the same chat exported twice, backups that overlap
  | 'system prompt'  // fine-tuning data's system (or developer) message: the chat format has no system role
  // Every message of a chat that is not written:
  | 'group chat'      // --no-groups
  | 'not your chat'   // --me names none of its senders
  | 'saved messages'  // notes to oneself: Telegram's Saved Messages, Signal's Note to Self
  | 'bot chat'
  // Every message of a conversation, or of a part of one, that --out FILE.jsonl leaves out:
  | 'unanswered';     // the audience wrote nothing in it: OpenAI's fine-tuning takes no example without an assistant message

export interface ExportedMessage {
  time: number;                    // ms since 1970; an export without a time zone gives its wall clock as if UTC
  sender: string;                  // as the app names the sender; '' for the app's notices
  // Other names --me may give the sender by: an account id, a username. The first, where the export has one, is the
  // sender's account id (or, for SMS, number), which stays when a name changes between two exports of a chat.
  senderIds: readonly string[];
  mine: boolean | null;            // when the export itself says who sent it (SMS, Messages); null: --me decides
  text: string;                    // as the export has it: line breaks, markup and all
  dropped: DropReason | null;
  line: number;                    // where it starts in the file (1-based), 0 where the format has no lines
}

export interface ExportedChat {
  format: ExportFormat;
  file: string;
  key: string;                     // the same conversation in several files (Messenger's message_1.json, _2...)
  title: string;                   // the chat's name in the app; '' when the export has none
  group: boolean | null;           // null: a group when more than one other person wrote
  skip: DropReason | null;         // a chat the app's export marks as not a conversation
  myIds: readonly string[];        // who the user is, when the export says (Telegram's account export)
  messages: ExportedMessage[];
  // WhatsApp's dates as written, until their order is decided for all the exports of the chat together and the
  // messages' times set (whatsapp.ts, datedWhatsApp)
  undated?: WhatsAppDates;
}

export const NO_IDS: readonly string[] = Object.freeze([]);

// A problem with one input, named by file and, where known, line.
export class ChatImportError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly reason: string,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${reason}`);
    this.name = 'ChatImportError';
  }
}

// Several problems at once: every input is read before anything is written, so that one run lists them all.
export class ChatImportErrors extends Error {
  constructor(readonly errors: readonly Error[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'ChatImportErrors';
  }
}

// Unicode's direction marks and embeddings: WhatsApp sets them around names, times and its own notices, and
// they are invisible in the text a model would learn.
const DIRECTION_MARKS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function withoutDirectionMarks(text: string): string {
  return text.replace(DIRECTION_MARKS, '');
}

// A name as --me, --audience-map and the apps are compared by: no direction marks, spaces collapsed, any case.
export function nameKey(name: string): string {
  return withoutDirectionMarks(name).normalize('NFC').replace(/\s+/g, ' ').trim().toLowerCase();
}

// How much of a text export's start tells which app wrote it: its first lines. Reading no further keeps the test cheap
// on a large file that is no export (a dataset bin/train is given) even where its lines are long (1.7 ms on one of
// 200 MB in four lines); it holds the 8 lines LINE's and KakaoTalk's tests read, whose messages may be a pasted
// paragraph each (WhatsApp takes 65,536 characters in one, LINE 10,000).
export const DETECT_HEAD = 1 << 20;

// The most bytes of an export read as text: a text export is read as one string, and V8's longest (about 512 MiB
// of characters) is what a byte of UTF-8 may make at most.
export const MAX_TEXT_BYTES = buffer.constants.MAX_STRING_LENGTH;

// The error for an export of `bytes` bytes over MAX_TEXT_BYTES, told before it is read (or unzipped) at all.
export function tooLargeError(file: string, bytes: number): ChatImportError {
  const mib = (n: number): string => `${Math.floor(n / 2 ** 20).toLocaleString('en-US')} MiB`;
  return new ChatImportError(file, null, `${bytes.toLocaleString('en-US')} bytes (${mib(bytes)}), more than the ${mib(MAX_TEXT_BYTES)} an export read as text may hold: export the chat in parts (a shorter time span), or leave its media out`);
}

// Why `encoding` names no text encoding; null when it names one.
export function unknownEncoding(encoding: string): string | null {
  try {
    new TextDecoder(encoding);
    return null;
  } catch {
    return `unknown encoding ${JSON.stringify(encoding)} (try utf-8, utf-16le, windows-1252, iso-8859-1)`;
  }
}

// An export's bytes as text: UTF-8 (a byte-order mark dropped), UTF-16 by its byte-order mark, or `encoding`.
// Text in another encoding is refused with the first line that is not UTF-8, rather than imported as mojibake.
export function decodeExport(file: string, bytes: Buffer, encoding?: string): string {
  if (bytes.length > MAX_TEXT_BYTES) throw tooLargeError(file, bytes.length);
  if (encoding) {
    const unknown = unknownEncoding(encoding);
    if (unknown !== null) throw new ChatImportError(file, null, unknown);
    return new TextDecoder(encoding).decode(bytes);
  }
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
  else if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder('utf-16le').decode(bytes);
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder('utf-16be').decode(bytes);
  if (isUtf8(bytes)) return bytes.toString('utf8');
  if (looksLikeUtf16(bytes)) throw new ChatImportError(file, null, 'not UTF-8: it looks like UTF-16 without a byte-order mark; give its encoding with --encoding utf-16le (or utf-16be)');
  throw new ChatImportError(file, firstNonUtf8Line(bytes), 'not UTF-8 text: the export is in another encoding; give it with --encoding (e.g. --encoding windows-1252)');
}

// Whether bytes are no text in any encoding (a photo or an archive named .txt): neither UTF-8 nor UTF-16, with a
// byte-order mark or without, and holding bytes that no text holds (zeros, control characters other than tabs,
// line ends and escapes) at the start.
export function isBinary(bytes: Buffer): boolean {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff) || isUtf8(bytes) || looksLikeUtf16(bytes)) return false;
  return bytes.subarray(0, TEXT_SAMPLE).some((b) => b < 0x09 || (b > 0x0d && b < 0x20 && b !== 0x1b));
}

// How much of a file tells text from bytes.
const TEXT_SAMPLE = 4096;

// UTF-16 without its byte-order mark: the zero high bytes of Latin text, a quarter or more of the bytes, on one side
// of the pairs (random bytes have zeros on both).
function looksLikeUtf16(bytes: Buffer): boolean {
  const zeros = [0, 0];
  const sample = bytes.subarray(0, TEXT_SAMPLE);
  sample.forEach((b, i) => {
    if (b === 0) zeros[i % 2]++;
  });
  const [most, least] = zeros[0] >= zeros[1] ? zeros : [zeros[1], zeros[0]];
  return most >= sample.length / 4 && least * 8 <= most;
}

// The number of the first line of `bytes` that is not UTF-8, from 1. A line feed byte is never part of a multi-byte
// UTF-8 character, so lines can be checked one by one.
export function firstNonUtf8Line(bytes: Buffer): number {
  let line = 1;
  for (let start = 0; start < bytes.length; line++) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    if (!isUtf8(bytes.subarray(start, end))) break;
    start = end + 1;
  }
  return line;
}

// The values of a JSONL file, a JSON value a line, each with its line (from 1), blank lines skipped. `layout` says
// what a line holds, for the error that names a line that is not JSON.
export function jsonLines(file: string, text: string, layout: string): { value: unknown; line: number }[] {
  const values: { value: unknown; line: number }[] = [];
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    try {
      values.push({ value: JSON.parse(line), line: index + 1 });
    } catch (err) {
      throw new ChatImportError(file, index + 1, `not valid JSON (${layout}): ${(err as Error).message}`);
    }
  }
  return values;
}

// JSON.parse with the failure placed at its line, and a cut-off file called what it most likely is.
export function parseExportJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const position = /at position (\d+)/.exec(message);
    const ended = /end of JSON input/.test(message);
    const offset = position ? Number(position[1]) : ended ? text.length : 0;
    const line = lineAt(text, offset);
    if (ended || offset >= text.trimEnd().length) throw new ChatImportError(file, line, 'the JSON stops in the middle: the export is truncated (an interrupted download or copy); export it again');
    throw new ChatImportError(file, line, `not valid JSON: ${message}`);
  }
}

// The fields of a JSON object, or null when the value is not one.
export function jsonObject(value: unknown): Record<string, unknown> | null {
  return isJsonObject(value) ? value : null;
}

export function jsonString(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
