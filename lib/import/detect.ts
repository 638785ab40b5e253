// Which app an export file comes from, told by its content (never by its name, which users rename), and the
// file read by that app's importer.
import path from 'node:path';
import { EXPORT_FORMATS, ExportFormat, ExportedChat, ChatImportError, FORMAT_NAMES, decodeExport, isBinary, jsonObject, parseExportJson } from './chat_export';
import { looksLikeDiscord, parseDiscord } from './discord';
import { looksLikeElement, parseElement } from './element';
import { fineTuningFormat, firstJsonLine, isDocumentLine, isFineTuningFormat, jsonConversations, jsonlConversations, parseFineTuning } from './fine_tuning';
import { GOOGLE_CHAT_USER_INFO, isGoogleChatCompanion, looksLikeGoogleChat, parseGoogleChat } from './google_chat';
import { isSqlite, parseMessagesDatabase } from './imessage';
import { looksLikeKakaoTalk, parseKakaoTalk } from './kakaotalk';
import { looksLikeLine, parseLine } from './line';
import { isSlackListing, looksLikeSlack, parseSlack, slackWorkspace } from './slack';
import { looksLikeSnapchat, parseSnapchat } from './snapchat';
import { SIGNAL_MARKDOWN_ADVICE, isSignalMarkdown, looksLikeSignal, parseSignal } from './signal';
import { looksLikeSkype, parseSkype } from './skype';
import { isXDirectMessages, parseXDirectMessages, xAccountId, xArchiveData, xArchiveKind } from './x_archive';
import { looksLikeMessenger, parseMessenger } from './messenger';
import { looksLikeSms, parseSms } from './sms';
import { looksLikeTelegram, parseTelegram } from './telegram';
import { parseTelegramHtml } from './telegram_html';
import { looksLikeWhatsApp, readWhatsApp } from './whatsapp';

export interface ReadOptions {
  format?: ExportFormat;   // what the file is, when not detected
  encoding?: string;       // the text's encoding when not UTF-8 or UTF-16 with a byte-order mark
}

const KNOWN_EXPORTS =
  'a WhatsApp, LINE or KakaoTalk chat (.txt), a Telegram result.json or messages.html, a Messenger or Instagram message_N.json, a DiscordChatExporter .json, Google Chat\'s messages.json, Element\'s JSON export of a Matrix room, a day of a Slack export\'s conversation (general/2024-03-04.json), Snapchat\'s chat_history.json, signal-export\'s data.json of a Signal chat, Skype\'s messages.json (or the export\'s .tar), an X archive\'s direct-messages.js, an SMS Backup & Restore .xml, macOS Messages\' chat.db, or OpenAI\'s or ShareGPT\'s chat fine-tuning JSONL';

// What to do with web pages that are no chat of Telegram Desktop's HTML export: Facebook and Instagram make their
// downloads as web pages unless asked for JSON, and Element's Export chat does unless its format is set to JSON;
// signal-export writes a chat's index.html beside its data.json.
export const HTML_EXPORT_ADVICE =
  'an export made as web pages, which dixie reads only from Telegram Desktop (a chat\'s messages.html, messages2.html...): export it again in JSON (Facebook and Instagram: Download your information, format JSON; Element: Export chat, format JSON; signal-export: its data.json beside index.html, written unless run with --no-json)';

// A file that is no export dixie reads: an error when named on the command line, skipped inside a folder.
export class UnknownExportError extends ChatImportError {
  constructor(file: string, what: string) {
    super(file, 1, `${what}, not ${KNOWN_EXPORTS}; if it is one, name its format with --format (${EXPORT_FORMATS.join(', ')})`);
    this.name = 'UnknownExportError';
  }
}

// The chats of one export; what the user should know but that stops nothing goes to `warnings`.
// A file near the export, by its path from the export's folder: Google Chat's group_info.json beside messages.json,
// or its ../../Users/User */user_info.json, where `*` stands for any name within one folder (the first, in sorted
// order, that holds the rest); Slack's ../users.json. Its path as messages name it (under a zip's path for an entry
// of a zip) and its bytes; null when there is none.
export interface CompanionFile {
  file: string;
  bytes: Buffer;
}
export type Companion = (name: string) => CompanionFile | null;

// `file` names the export in messages; `bytes` are its content, read from disk or from a zip, as are its
// companions'.
export async function readExport(file: string, bytes: Buffer, options: ReadOptions = {}, warnings: string[] = [], companion: Companion = () => null): Promise<ExportedChat[]> {
  const forced = options.format;
  if (forced === undefined) return readAs(file, bytes, options, warnings, companion);
  // --format naming another app than the one whose export the file is reads no message of it, or fails on its
  // first line for a reason that does not say so: the app its content shows is named instead.
  const otherApp = async (): Promise<ChatImportError | null> => {
    const detected = await readAs(file, bytes, { ...options, format: undefined }, [], companion).then((chats) => chats[0]?.format ?? null, () => null);
    return detected === null || detected === forced ? null
      : new ChatImportError(file, null, `an export of ${FORMAT_NAMES[detected]}, not of ${FORMAT_NAMES[forced]} as --format ${forced} says: leave --format out, and each file's app is told from its content`);
  };
  let chats: ExportedChat[];
  try {
    chats = await readAs(file, bytes, options, warnings, companion);
  } catch (err) {
    throw (await otherApp()) ?? err;
  }
  const other = chats.some((chat) => chat.messages.length > 0) ? null : await otherApp();
  if (other !== null) throw other;
  return chats;
}

async function readAs(file: string, bytes: Buffer, options: ReadOptions, warnings: string[], companion: Companion): Promise<ExportedChat[]> {
  if (isSqlite(bytes)) {
    const chats = await parseMessagesDatabase(file, bytes, warnings);
    if (chats === null) throw new UnknownExportError(file, 'an SQLite database without the tables of macOS Messages (message, chat, handle...)');
    return chats;
  }
  if (options.format === 'imessage') throw new ChatImportError(file, null, 'not an SQLite database: Messages\' chat.db is one (~/Library/Messages/chat.db on a Mac)');
  // Archives are read uncompressed (index.ts): a .tar.gz would otherwise be taken for text in an unknown encoding.
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) throw new ChatImportError(file, null, 'compressed with gzip (.gz, .tgz): decompress it first, then import the .tar or the files it holds');
  // Skipped in a folder as other files that are no export are, where as text of an unknown encoding it stopped all.
  if (options.encoding === undefined && isBinary(bytes)) throw new UnknownExportError(file, 'a binary file, no text');
  const text = decodeExport(file, bytes, options.encoding);
  if (/^\s*<(!doctype html|html)\b/i.test(text.slice(0, 1024))) {
    const chat = options.format === undefined || options.format === 'telegram' ? parseTelegramHtml(file, text) : null;
    if (chat === null) throw new ChatImportError(file, null, HTML_EXPORT_ADVICE);
    return [chat];
  }
  const archiveKind = xArchiveKind(text);
  if (archiveKind !== null && (options.format === undefined || options.format === 'x')) {
    if (!isXDirectMessages(archiveKind)) throw new UnknownExportError(file, `an X archive's ${archiveKind}`);
    const account = companion('account.js');
    const myId = account === null ? null : xAccountId(account.file, account.bytes.toString('utf8'));
    return parseXDirectMessages(file, archiveKind, xArchiveData(file, text), myId);
  }
  if (options.format === 'x') throw new ChatImportError(file, 1, 'not a file of an X archive: its direct messages (data/direct-messages.js) begin "window.YTD.direct_messages"');
  if (options.format === undefined && isSignalMarkdown(text)) {
    throw new ChatImportError(file, 1, SIGNAL_MARKDOWN_ADVICE);
  }
  // A JSONL file's first line, by which fine-tuning data is told.
  const jsonLine = firstJsonLine(text);
  // WhatsApp's iOS lines open with "[", as JSON may: its date tells them apart.
  const format = options.format ??
    (looksLikeWhatsApp(text) ? 'whatsapp' : looksLikeSms(text) ? 'sms' : looksLikeLine(text) ? 'line' : looksLikeKakaoTalk(text) ? 'kakaotalk' : looksLikeSignal(jsonLine) ? 'signal' : fineTuningFormat(jsonLine));
  // Its times wait for the other WhatsApp exports of the import (index.ts).
  if (format === 'whatsapp') return [readWhatsApp(file, text)];
  if (format === 'line') return [parseLine(file, text)];
  if (format === 'kakaotalk') return [parseKakaoTalk(file, text)];
  if (format === 'sms') return parseSms(file, text);
  if (format === 'signal') return [parseSignal(file, text)];
  if (isFineTuningFormat(format) && jsonLine !== null) return parseFineTuning(file, jsonlConversations(file, text), format, warnings);
  if (format === null && isDocumentLine(jsonLine)) throw new UnknownExportError(file, 'JSONL of documents ({"text": ...} a line), which bin/train --dataset trains on as it is');
  const first = text.search(/\S/);
  if (format || text[first] === '{' || text[first] === '[') return readJsonExport(file, text, format ?? undefined, companion, warnings);
  const firstLine = text.slice(Math.max(first, 0)).split('\n', 1)[0].trim();
  throw new UnknownExportError(file, firstLine === '' ? 'an empty file' : `a file that begins ${JSON.stringify(firstLine.slice(0, 60))}`);
}

// The app whose JSON export a text is (a Telegram result.json, a Messenger message_1.json, a DiscordChatExporter
// .json, a day of a Slack conversation, signal-export's data.json...); null for any other text or JSON.
export function jsonExportFormat(text: string): ExportFormat | null {
  if (looksLikeSignal(firstJsonLine(text))) return 'signal';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (looksLikeSlack(value)) return 'slack';
  const root = jsonObject(value);
  return root === null ? null : detectJson(root);
}

function detectJson(root: Record<string, unknown>): ExportFormat | null {
  if (looksLikeTelegram(root)) return 'telegram';
  if (looksLikeMessenger(root)) return 'messenger';
  if (looksLikeDiscord(root)) return 'discord';
  if (looksLikeGoogleChat(root)) return 'googlechat';
  if (looksLikeSnapchat(root)) return 'snapchat';
  if (looksLikeSkype(root)) return 'skype';
  if (looksLikeElement(root)) return 'element';
  return null;
}

function readJsonExport(file: string, text: string, format: ExportFormat | undefined, companion: Companion, warnings: string[]): ExportedChat[] {
  const value = parseExportJson(file, text);
  // Fine-tuning data as one JSON value: ShareGPT's list of conversations, or a conversation written over lines.
  const fineTuning = format ?? fineTuningFormat(Array.isArray(value) ? value[0] : value);
  if (isFineTuningFormat(fineTuning)) return parseFineTuning(file, jsonConversations(value), fineTuning, warnings);
  if (format === 'slack' || (format === undefined && looksLikeSlack(value))) {
    return isSlackListing(value, companion) ? [] : [parseSlack(file, value, slackWorkspace(companion, '../'), warnings)];
  }
  const root = jsonObject(value);
  if (root !== null && format === undefined && isGoogleChatCompanion(root)) return [];
  const detected = format ?? (root === null ? null : detectJson(root));
  if (root === null || detected === null) {
    if (format === undefined && isSlackListing(value, companion)) return [];
    const keys = root === null ? 'a JSON list' : `JSON with ${Object.keys(root).slice(0, 5).map((k) => JSON.stringify(k)).join(', ') || 'no fields'}`;
    throw new UnknownExportError(file, keys);
  }
  if (detected === 'telegram') return parseTelegram(file, root);
  if (detected === 'messenger') {
    if (!looksLikeMessenger(root)) throw new ChatImportError(file, null, 'not a Messenger export: no "participants" and "messages" lists');
    return [parseMessenger(file, root)];
  }
  if (detected === 'snapchat') return parseSnapchat(file, root);
  if (detected === 'skype') return parseSkype(file, root);
  if (detected === 'element') return [parseElement(file, root, warnings)];
  if (detected === 'googlechat') {
    const companionJson = (name: string): Record<string, unknown> | null => {
      const found = companion(name);
      return found === null ? null : jsonObject(parseExportJson(found.file, found.bytes.toString('utf8')));
    };
    const groupInfo = companionJson('group_info.json');
    const userInfo = companionJson(GOOGLE_CHAT_USER_INFO);
    return [parseGoogleChat(file, path.basename(path.dirname(path.resolve(file))), root, groupInfo, userInfo)];
  }
  return [parseDiscord(file, root)];
}
