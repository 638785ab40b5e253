// From the chats the importers read to training data: which sender is the user (--me), who each conversation's
// audience is, which messages are written and how, the .train files, and the summary of it all.
//
// Output: per audience a file (data/mom.train) holding each conversation with that audience in time order, a
// blank line between conversations; or, when --out names a .train file, every conversation in that one file.
// Messages are lines of the chat format, written by chat_format.ts as the live chat's are. When --out names a .jsonl
// file, the same conversations in the same order go to OpenAI's chat fine-tuning JSONL instead, an example a line
// (fineTuningExamples).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SMALL_DATASET_BYTES } from '../data/chat_check';
import { SIDE, type ChatMessage, checkAudience, formatMessage, messageText, toAudience } from '../data/chat_format';
import { writeTextAtomic } from '../util/atomic_file';
import { lockFolder } from '../util/folder_lock';
import { DropReason, ExportFormat, ExportedChat, ExportedMessage, FORMAT_NAMES, nameKey, withoutDirectionMarks } from './chat_export';
import { contactName, type Contacts } from './contacts';
import { fineTuningLine } from './fine_tuning';
import { isJsonObject } from '../util/json_object';
import { formatBytes, plural } from '../util/format';

export const REDACT_KINDS = ['links', 'emails', 'phones'] as const;
export type RedactKind = (typeof REDACT_KINDS)[number];

// What --out names: a folder (a .train file per audience), one .train file, or one file of OpenAI's fine-tuning JSONL.
type OutputKind = 'folder' | 'train' | 'jsonl';

// Files --out could be taken to mean but that are written as neither: a folder named so would surprise.
const NOT_OUTPUT_EXTENSIONS = new Set(['.json', '.ndjson', '.txt', '.csv']);

export function outputKind(out: string): OutputKind {
  const extension = path.extname(out).toLowerCase();
  if (extension === '.train') return 'train';
  if (extension === '.jsonl') return 'jsonl';
  if (NOT_OUTPUT_EXTENSIONS.has(extension)) {
    throw new Error(`--out ${out}: give a folder (a .train file per audience), a file ending in .train (every conversation in one file) or in .jsonl (OpenAI's chat fine-tuning format), not a ${extension} file`);
  }
  return 'folder';
}

export interface OutputOptions {
  out: string;                                   // a folder, a .train file for one combined file, or a .jsonl file
  me: readonly string[];                         // the user's names or ids in the apps
  audienceMap: Readonly<Record<string, string>>; // a chat's name in the app (or its contact's) -> its audience
  contacts: Contacts;                            // names for the people an export knows by number or address
  groups: boolean;                               // false: group chats are left out
  redact: readonly RedactKind[];
}

type DropCounts = Partial<Record<DropReason, number>>;

// What became of messages.
interface MessageCounts {
  read: number;
  kept: number;
  sent: number;         // kept messages of the user's (side 1)
  dropped: DropCounts;
}

export interface AudienceSummary extends MessageCounts {
  audience: string;
  file: string | null;  // where its messages went; null when none was kept
  conversations: number;
}

// A conversation not written, and why.
export interface SkippedChat {
  file: string;
  title: string;
  reason: DropReason;
  messages: number;
  senders: string[];    // who wrote in it, most messages first
}

// What became of the conversations in OpenAI's fine-tuning JSONL.
interface ExampleCounts {
  written: number;     // examples, a line each
  split: number;       // conversations too long for one example, written as several
  unanswered: number;  // conversations, or parts of one, left out: the audience wrote nothing in them
}

export interface ChatImportSummary extends MessageCounts {
  formats: Partial<Record<ExportFormat, number>>;  // export files read, by app
  audiences: AudienceSummary[];  // most kept messages first
  skipped: SkippedChat[];
  warnings: string[];
  out: string;
  output: OutputKind;
  examples: ExampleCounts | null;  // null unless the output is JSONL
  files: string[];               // the files written
  bytes: number;                 // UTF-8 bytes written
}

export interface PlannedOutput {
  summary: ChatImportSummary;
  contents: Map<string, string>;  // file -> text
}

// Messages that are nobody's words (the app's notices, bots' posts, unreadable entries, duplicates, fine-tuning data's
// system prompts) do not tell who took part.
const NOT_SPOKEN = new Set<DropReason | null>(['system', 'bot', 'unreadable', 'duplicate', 'system prompt']);

// The chats without the user named one by one in the warnings.
const NOT_MINE_NAMED = 5;

interface KeptMessage extends Omit<ChatMessage, 'audience'> {
  time: number;
}

interface Conversation {
  chat: ExportedChat;
  audience: string;
  messages: KeptMessage[];
  firstTime: number;
}

// Everything the import writes, decided before anything is: an error here leaves every file as it was.
export function planOutput(chats: readonly ExportedChat[], options: OutputOptions): PlannedOutput {
  const me = new Set(options.me.map(nameKey).filter((name) => name !== ''));
  const audienceMap = new Map(Object.entries(options.audienceMap).map(([name, audience]) => [nameKey(name), mappedAudience(name, audience)]));
  const mappedNames = new Set<string>();
  const redact = redactor(options.redact);
  const output = outputKind(options.out);
  const summary: ChatImportSummary = {
    formats: {}, read: 0, kept: 0, sent: 0, dropped: {}, audiences: [], skipped: [], warnings: [], out: options.out, output,
    examples: output === 'jsonl' ? { written: 0, split: 0, unanswered: 0 } : null, files: [], bytes: 0,
  };
  const audiences = new Map<string, AudienceSummary>();
  const conversations: Conversation[] = [];
  const sendersSeen = new Map<string, number>();
  let needMe = 0;
  let foundMe = 0;
  let namedByContacts = 0;
  for (const format of new Map(chats.map((chat) => [chat.file, chat.format])).values()) summary.formats[format] = (summary.formats[format] ?? 0) + 1;

  for (const chat of mergeParts(chats)) {
    const isMine = mineTest(chat, me);
    let mine = 0;
    let decidedByMe = false;
    const others = new Map<string, number>();
    for (const message of chat.messages) {
      // A message of no known sender (an app's placeholder for a deleted one) tells no one took part either.
      if (NOT_SPOKEN.has(message.dropped) || message.sender === '') continue;
      if (message.mine === null) decidedByMe = true;
      if (isMine(message)) mine++;
      else others.set(message.sender, (others.get(message.sender) ?? 0) + 1);
    }
    const senders = [...others.entries()].sort((a, b) => b[1] - a[1] || compare(a[0], b[0])).map(([sender]) => sender);
    if (decidedByMe) {
      needMe++;
      if (mine > 0) foundMe++;
      for (const [sender, count] of others) sendersSeen.set(sender, (sendersSeen.get(sender) ?? 0) + count);
    }
    const group = chat.group ?? others.size > 1;
    const named = (address: string): string => contactName(options.contacts, address);
    const appName = group ? chat.title || senders.join(', ') : (senders[0] ?? chat.title);
    const name = group ? chat.title || senders.map(named).join(', ') : named(appName);
    if (name !== appName) namedByContacts++;
    const skip: DropReason | null = chat.skip ?? (group && !options.groups ? 'group chat' : decidedByMe && mine === 0 ? 'not your chat' : null);
    if (skip) {
      summary.skipped.push({ file: chat.file, title: chat.title || name, reason: skip, messages: chat.messages.length, senders });
      addCounts(summary, { read: chat.messages.length, kept: 0, sent: 0, dropped: { [skip]: chat.messages.length } });
      continue;
    }
    const key = [nameKey(appName), nameKey(name)].find((k) => audienceMap.has(k)) ?? nameKey(name);
    if (audienceMap.has(key)) mappedNames.add(key);
    const audience = audienceMap.get(key) ?? (toAudience(withoutDirectionMarks(name)) || 'unnamed');
    const counts: AudienceSummary = { audience, file: null, conversations: 1, read: chat.messages.length, kept: 0, sent: 0, dropped: {} };
    const messages: KeptMessage[] = [];
    let firstTime = Infinity;
    for (const message of chat.messages) {
      const text = message.dropped ? '' : messageText(redact(withoutDirectionMarks(message.text)));
      const reason = message.dropped ?? (text === '' ? 'empty' : null);
      if (reason) {
        counts.dropped[reason] = (counts.dropped[reason] ?? 0) + 1;
        continue;
      }
      const side = isMine(message) ? SIDE.you : SIDE.audience;
      messages.push({ side, text, time: message.time });
      counts.kept++;
      if (side === SIDE.you) counts.sent++;
      firstTime = Math.min(firstTime, message.time);
    }
    addCounts(summary, counts);
    const total = audiences.get(audience);
    if (total) {
      total.conversations++;
      addCounts(total, counts);
    } else audiences.set(audience, counts);
    if (messages.length > 0) conversations.push({ chat, audience, messages, firstTime });
  }

  if (needMe > 0 && foundMe === 0) throw new MeNotFoundError(options.me, sendersSeen);
  // An export of a whole workspace (Slack's) or account holds many chats of other people: the first are named, the
  // rest counted.
  const notMine = summary.skipped.filter((skipped) => skipped.reason === 'not your chat');
  for (const skipped of notMine.slice(0, NOT_MINE_NAMED)) {
    summary.warnings.push(`${skipped.file}: not imported: --me names none of its senders (${skipped.senders.slice(0, 5).join(', ')})`);
  }
  if (notMine.length > NOT_MINE_NAMED) summary.warnings.push(`${notMine.length - NOT_MINE_NAMED} more chats not imported: --me names none of their senders`);
  if (options.contacts.size > 0 && namedByContacts === 0) summary.warnings.push(`--contacts: none of its ${options.contacts.size} numbers and addresses is one of the chats'`);
  for (const name of Object.keys(options.audienceMap)) {
    if (!mappedNames.has(nameKey(name))) summary.warnings.push(`--audience-map: no chat is called ${JSON.stringify(name)}`);
  }
  const contents = outputFiles(conversations, audiences, summary);
  summary.audiences = [...audiences.values()].sort((a, b) => b.kept - a.kept || compare(a.audience, b.audience));
  summary.files = [...contents.keys()];
  summary.bytes = [...contents.values()].reduce((sum, text) => sum + Buffer.byteLength(text, 'utf8'), 0);
  return { summary, contents };
}

function mappedAudience(name: string, audience: string): string {
  try {
    return checkAudience(audience.trim());
  } catch (err) {
    throw new Error(`--audience-map ${JSON.stringify(name)}: ${(err as Error).message}`);
  }
}

// A folder of output that holds .train files this import does not write (an earlier import's, of chats since left out
// or renamed): each is named, for `bin/train --dataset <folder>` would train on it too.
export function notWrittenBeside(planned: PlannedOutput): string[] {
  const { out, output } = planned.summary;
  if (output !== 'folder' || !fs.existsSync(out)) return [];
  const others = fs.readdirSync(out).filter((name) => name.endsWith('.train') && !planned.contents.has(path.join(out, name))).sort(compare);
  if (others.length === 0) return [];
  const shown = others.slice(0, 5).join(', ') + (others.length > 5 ? `, and ${others.length - 5} more` : '');
  return [`${out} also holds ${others.length === 1 ? 'a .train file' : '.train files'} this import did not write: ${shown}. Training on the folder trains on ${others.length === 1 ? 'it' : 'them'} too: delete ${others.length === 1 ? 'it' : 'them'} if ${others.length === 1 ? 'it is' : 'they are'} not to be trained on`];
}

// Where an import records what it wrote in a folder: each file's name and its text's hash. A later import replaces
// a file it wrote (a newer export of the same chats), and never one it did not write, or that was changed since: a
// user's own training data may share the audience's name. While an import writes (and after one that failed or was
// killed midway), a file's entry holds two hashes: of the import's text it replaces and of the text replacing it.
export const WRITTEN_RECORD = '.import-chat.json';

type WrittenRecord = Record<string, string | string[]>;

function textHash(text: string | Buffer): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function writtenRecord(dir: string): WrittenRecord {
  try {
    const record: unknown = JSON.parse(fs.readFileSync(path.join(dir, WRITTEN_RECORD), 'utf8'));
    return isJsonObject(record) ? (record as WrittenRecord) : {};
  } catch {
    return {};  // none yet, or unreadable: no file counts as this tool's, so none is replaced without --force
  }
}

function recordedHashes(entry: unknown): string[] {
  return typeof entry === 'string' ? [entry] : Array.isArray(entry) ? entry.filter((hash): hash is string => typeof hash === 'string') : [];
}

// Writes the planned files, each atomically, after checking that none replaces a file an import did not write
// (unless `force`); nothing is written if one would. The record takes the new texts' hashes beside the ones they
// replace before the first file is written, and alone after the last: an import that fails or is killed between two
// files leaves each file it wrote, or kept, recorded as an import's, so that the next import replaces it unforced.
// The folder is locked throughout (lockFolder): an import into it at the same moment would read the record before
// this one writes it, and write it back without this one's files.
export async function writeOutput(planned: PlannedOutput, force = false): Promise<void> {
  const releases: (() => void)[] = [];
  try {
    for (const dir of new Set([...planned.contents.keys()].map((file) => path.dirname(file)))) releases.push(lockFolder(dir, 'an import'));
    await writeLocked(planned, force);
  } finally {
    for (const release of releases) release();
  }
}

async function writeLocked(planned: PlannedOutput, force: boolean): Promise<void> {
  const records = new Map<string, WrittenRecord>();
  const recordOf = (dir: string): WrittenRecord => {
    let record = records.get(dir);
    if (record === undefined) records.set(dir, (record = writtenRecord(dir)));
    return record;
  };
  const hashes = new Map([...planned.contents].map(([file, text]) => [file, textHash(text)]));
  const foreign: string[] = [];
  const importsOwn = new Map<string, string>();  // file -> the hash of the text an import wrote that it holds
  for (const [file, hash] of hashes) {
    if (!fs.existsSync(file)) continue;
    // Not even --force replaces a folder: it would go with everything in it.
    if (fs.statSync(file).isDirectory()) throw new Error(`nothing was written: ${file} is a folder, where the import writes a file: move it away, or write elsewhere with --out`);
    const held = textHash(fs.readFileSync(file));
    if (held === hash || recordedHashes(recordOf(path.dirname(file))[path.basename(file)]).includes(held)) importsOwn.set(file, held);
    else foreign.push(file);
  }
  if (foreign.length > 0 && !force) {
    const shown = foreign.slice(0, 5).join(', ') + (foreign.length > 5 ? `, and ${foreign.length - 5} more` : '');
    throw new Error(`nothing was written: ${shown} ${foreign.length === 1 ? 'exists, and was' : 'exist, and were'} not written by an import (or changed since): move ${foreign.length === 1 ? 'it' : 'them'} away, write elsewhere with --out, or give --force to replace ${foreign.length === 1 ? 'it' : 'them'}`);
  }
  const saveRecords = async (entry: (file: string, hash: string) => string | string[]): Promise<void> => {
    for (const [file, hash] of hashes) recordOf(path.dirname(file))[path.basename(file)] = entry(file, hash);
    for (const [dir, record] of records) await writeTextAtomic(path.join(dir, WRITTEN_RECORD), `${JSON.stringify(record, null, 1)}\n`);
  };
  await saveRecords((file, hash) => {
    const own = importsOwn.get(file);
    return own === undefined || own === hash ? hash : [own, hash];
  });
  for (const [file, text] of planned.contents) await writeTextAtomic(file, text);
  await saveRecords((_file, hash) => hash);
}

function addCounts(total: MessageCounts, counts: MessageCounts): void {
  total.read += counts.read;
  total.kept += counts.kept;
  total.sent += counts.sent;
  for (const [reason, n] of Object.entries(counts.dropped) as [DropReason, number][]) total.dropped[reason] = (total.dropped[reason] ?? 0) + n;
}

// Parts of one conversation (Messenger's message_1.json, message_2.json; the same SMS thread in two backups)
// joined in time order. A message that an earlier file already held (an export made twice, backups that
// overlap) is marked a duplicate; repeats within one file are real. A sender is told by their account id or number
// where the export gives one (senderIds), as their name may have changed between the files (a contact saved in
// the phone between two backups), and is then named everywhere as in the newest of their messages.
function mergeParts(chats: readonly ExportedChat[]): ExportedChat[] {
  const byKey = new Map<string, ExportedChat[]>();
  for (const chat of chats) {
    const parts = byKey.get(chat.key);
    if (parts) parts.push(chat);
    else byKey.set(chat.key, [chat]);
  }
  const senderOf = (message: ExportedMessage): string => message.senderIds[0] ?? message.sender;
  return [...byKey.values()].map((parts) => {
    if (parts.length === 1) return parts[0];
    const firstPart = new Map<string, number>();
    const messages: ExportedMessage[] = [];
    parts.forEach((part, index) => {
      for (const message of part.messages) {
        const key = `${message.time}\0${senderOf(message)}\0${message.text}`;
        const first = firstPart.get(key);
        if (first === undefined) firstPart.set(key, index);
        messages.push(first === undefined || first === index ? message : { ...message, dropped: 'duplicate' });
      }
    });
    messages.sort((a, b) => a.time - b.time);
    const newestName = new Map<string, string>();
    for (const message of messages) if (message.senderIds.length > 0 && message.sender !== '') newestName.set(senderOf(message), message.sender);
    const named = messages.map((message) => {
      const name = message.senderIds.length > 0 ? newestName.get(senderOf(message)) : undefined;
      return name === undefined || name === message.sender ? message : { ...message, sender: name };
    });
    // A part that knows the chat is a group (WhatsApp's export holding the notice of its creation) tells for all.
    return { ...parts[0], group: parts.some((part) => part.group === true) || parts[0].group, messages: named };
  });
}

// Whether a message is the user's: the export says so (SMS), or its sender is one --me names or the account the
// export belongs to (Telegram's account export, Google Chat's Takeout), by name or by id, in any case. --me wins:
// in a chat where it names someone the account is not, the account is no longer the user there. Where it names
// the account by another name, or nobody of the chat (--me given for another app's exports), both count.
function mineTest(chat: ExportedChat, me: ReadonlySet<string>): (message: ExportedMessage) => boolean {
  const account = new Set(chat.myIds.map(nameKey));
  const named = (names: ReadonlySet<string>, message: ExportedMessage): boolean =>
    names.has(nameKey(message.sender)) || message.senderIds.some((id) => names.has(nameKey(id)));
  const overruled = account.size > 0 && me.size > 0 &&
    chat.messages.some((m) => m.mine === null && !NOT_SPOKEN.has(m.dropped) && named(me, m) && !named(account, m));
  const names = account.size === 0 || overruled ? me : new Set([...me, ...account]);
  const known = new Map<string, boolean>();
  return (message) => {
    if (message.mine !== null) return message.mine;
    const key = message.senderIds.length === 0 ? message.sender : `${message.sender}\0${message.senderIds.join('\0')}`;
    let mine = known.get(key);
    if (mine === undefined) {
      mine = named(names, message);
      known.set(key, mine);
    }
    return mine;
  };
}

// The exports need to be told which sender is the user, and were not (or named nobody they hold): the senders
// found, for the user to pick from (the server's upload offers them as a choice).
export class MeNotFoundError extends Error {
  readonly senders: { name: string; messages: number }[];  // most messages first

  constructor(readonly me: readonly string[], senders: ReadonlyMap<string, number>) {
    const found = [...senders.entries()].sort((a, b) => b[1] - a[1] || compare(a[0], b[0])).map(([name, messages]) => ({ name, messages }));
    super('');
    this.name = 'MeNotFoundError';
    this.senders = found;
    this.message = me.length === 0
      ? `say which sender is you with --me "<your name>" (as the app shows it; repeat --me for several): ${this.sendersFound()}`
      : `--me ${me.map((m) => JSON.stringify(m)).join(' --me ')} names none of the senders: ${this.sendersFound()}`;
  }

  // "the senders found, with their messages: Mom (120), Jane (98)", the first 20 of them.
  sendersFound(): string {
    if (this.senders.length === 0) return 'no sender was found';
    const list = this.senders.slice(0, 20).map(({ name, messages }) => `${name} (${messages.toLocaleString('en-US')})`).join(', ');
    return `the senders found, with their messages: ${list}${this.senders.length > 20 ? `, and ${this.senders.length - 20} more` : ''}`;
  }
}

// The files and their text. Conversations go in order of their first message, so that the same exports give
// the same bytes whatever order they were named in; those of no time (fine-tuning data's) in the order of their keys,
// their files' and theirs in a file, so that JSONL this wrote is read back in the order it was written.
function outputFiles(conversations: Conversation[], audiences: Map<string, AudienceSummary>, summary: ChatImportSummary): Map<string, string> {
  conversations.sort((a, b) => a.firstTime - b.firstTime || compare(a.chat.key, b.chat.key));
  const { out, output } = summary;
  if (summary.examples !== null) {
    const examples = fineTuningExamples(conversations, audiences, summary, summary.examples);
    for (const audience of new Set(examples.map((example) => example.audience))) (audiences.get(audience) as AudienceSummary).file = out;
    // Written even when empty, so that the file never holds an earlier import's examples.
    return new Map([[out, examples.map((example) => `${example.line}\n`).join('')]]);
  }
  const contents = new Map<string, string>();
  const fileOf = output === 'train' ? () => out : fileNames(out, [...new Set(conversations.map((c) => c.audience))]);
  for (const conversation of conversations) {
    const file = fileOf(conversation.audience);
    const block = `${conversation.messages.map(({ side, text }) => formatMessage({ side, audience: conversation.audience, text })).join('\n')}\n`;
    const previous = contents.get(file);
    contents.set(file, previous === undefined ? block : `${previous}\n${block}`);
    (audiences.get(conversation.audience) as AudienceSummary).file = file;
  }
  if (output === 'train' && !contents.has(out)) contents.set(out, '');
  return contents;
}

// OpenAI's fine-tuning takes at most this many tokens of an example and truncates longer ones: the context of
// gpt-3.5-turbo, the least of the chat models it fine-tunes (gpt-4o's and gpt-4.1's examples take 65,536). A
// years-long chat as one example would be cut to its first weeks.
const EXAMPLE_TOKENS = 16_385;
// Tokens of a message besides its text: the chat template's role and delimiters.
const MESSAGE_TOKENS = 4;

// A message's tokens, counted from above: its UTF-8 bytes, a byte-level BPE's every token being at least a byte
// (OpenAI's tokenizers are; English runs about four bytes a token), so that no example is ever truncated.
function tokensAtMost(text: string): number {
  return Buffer.byteLength(text, 'utf8') + MESSAGE_TOKENS;
}

interface FineTuningExample {
  audience: string;
  line: string;
}

// The conversations as examples of OpenAI's chat fine-tuning: a conversation an example, or a conversation too long
// for one split into several (splitExample). Parts the audience wrote nothing in are left out, as OpenAI refuses an
// example without an assistant message, and their messages counted dropped.
function fineTuningExamples(conversations: readonly Conversation[], audiences: Map<string, AudienceSummary>, summary: ChatImportSummary, counts: ExampleCounts): FineTuningExample[] {
  const examples: FineTuningExample[] = [];
  for (const { audience, messages } of conversations) {
    const parts = splitExample(messages, EXAMPLE_TOKENS - tokensAtMost(`audience: ${audience}`));
    if (parts.length > 1) counts.split++;
    for (const part of parts) {
      if (part.some((message) => message.side === SIDE.audience)) {
        examples.push({ audience, line: fineTuningLine(audience, part) });
        continue;
      }
      counts.unanswered++;
      const unanswered: MessageCounts = { read: 0, kept: -part.length, sent: -part.length, dropped: { unanswered: part.length } };
      addCounts(summary, unanswered);
      addCounts(audiences.get(audience) as AudienceSummary, unanswered);
    }
  }
  counts.written = examples.length;
  return examples;
}

// A conversation cut into parts of at most `tokens` (tokensAtMost), each as long as fits, cut at the longest pause
// in its second half (the end of a day's talk rather than the middle of an exchange; the latest of equal ones, as
// fine-tuning data's messages have no times); a message too long for any part is a part alone.
function splitExample(messages: readonly KeptMessage[], tokens: number): KeptMessage[][] {
  const parts: KeptMessage[][] = [];
  const pause = (i: number): number => messages[i].time - messages[i - 1].time;
  for (let start = 0; start < messages.length; ) {
    let end = start + 1;
    for (let used = tokensAtMost(messages[start].text); end < messages.length; end++) {
      used += tokensAtMost(messages[end].text);
      if (used > tokens) break;
    }
    if (end === messages.length) {
      parts.push(messages.slice(start));
      break;
    }
    let cut = end;
    for (let i = end - 1; i > start + (end - start) / 2; i--) if (pause(i) > pause(cut)) cut = i;
    parts.push(messages.slice(start, cut));
    start = cut;
  }
  return parts;
}

// A file per audience, named after it: "Mom" -> mom.train. Names that would clash (on a file system that
// ignores case, too) get -2, -3..., given in the audiences' order.
function fileNames(folder: string, audiences: string[]): (audience: string) => string {
  const names = new Map<string, string>();
  const taken = new Set<string>();
  for (const audience of audiences.sort(compare)) {
    const base = audience.normalize('NFKC').toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'chat';
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
    taken.add(name);
    names.set(audience, path.join(folder, `${name}.train`));
  }
  return (audience) => names.get(audience) as string;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// What --redact replaces: the kinds asked for, each with a placeholder that says what was there.
const LINK = /\b(?:https?:\/\/|www\.)[^\s<>"]*[^\s<>".,;:!?)'\]]/giu;
const EMAIL = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.\p{L}{2,}/gu;
const PHONE = /(?<![\p{L}\p{N}+])\+?\(?\d[\d ().-]{5,}\d(?![\p{L}\p{N}])/gu;
// Runs of digits that are no phone number: dates and amounts.
const NOT_A_PHONE = /^(?:\d{1,4}([./-])\d{1,2}\1\d{1,4}|\d{1,3}(?:[.,]\d{3})+)$/;

function redactor(kinds: readonly RedactKind[]): (text: string) => string {
  if (kinds.length === 0) return (text) => text;
  const replacers: ((text: string) => string)[] = [];
  // E-mail addresses first: their domains would otherwise read as links.
  if (kinds.includes('emails')) replacers.push((text) => text.replace(EMAIL, '[email]'));
  if (kinds.includes('links')) replacers.push((text) => text.replace(LINK, '[link]'));
  if (kinds.includes('phones')) {
    replacers.push((text) =>
      text.replace(PHONE, (match) => {
        const digits = match.replace(/\D/g, '').length;
        return digits >= 7 && digits <= 15 && !NOT_A_PHONE.test(match) ? '[phone]' : match;
      }),
    );
  }
  return (text) => replacers.reduce((t, replace) => replace(t), text);
}

function dropList(dropped: DropCounts): string {
  return (Object.entries(dropped) as [DropReason, number][])
    .sort((a, b) => b[1] - a[1] || compare(a[0], b[0]))
    .map(([reason, n]) => `${reason} ${n.toLocaleString('en-US')}`)
    .join(', ');
}

// The summary a person reads at the end of an import.
export function formatImportSummary(s: ChatImportSummary): string {
  const out: string[] = [];
  const formats = (Object.entries(s.formats) as [ExportFormat, number][]).map(([format, n]) => `${FORMAT_NAMES[format]} ${n}`).join(', ');
  const exports = Object.values(s.formats).reduce((sum, n) => sum + n, 0);
  const droppedTotal = s.read - s.kept;
  out.push(
    `import: ${plural(exports, 'export file')} (${formats}), ${plural(s.read, 'message')} read, ${s.kept.toLocaleString('en-US')} kept ` +
      `(${s.sent.toLocaleString('en-US')} sent, ${(s.kept - s.sent).toLocaleString('en-US')} received), ${droppedTotal.toLocaleString('en-US')} dropped` +
      (droppedTotal > 0 ? ` (${dropList(s.dropped)})` : ''),
  );
  for (const a of s.audiences) {
    const dropped = a.read - a.kept > 0 ? `, dropped ${dropList(a.dropped)}` : '';
    out.push(`  ${a.audience}: ${plural(a.conversations, 'conversation')}, ${a.read.toLocaleString('en-US')} read, ${a.kept.toLocaleString('en-US')} kept (${a.sent.toLocaleString('en-US')} sent)${dropped}${a.file ? ` -> ${a.file}` : ''}`);
  }
  for (const k of s.skipped) out.push(`  not imported: ${JSON.stringify(k.title)} (${k.file}): ${k.reason}, ${plural(k.messages, 'message')}`);
  if (s.examples !== null) out.push(...exampleLines(s.examples, s.dropped.unanswered ?? 0));
  for (const warning of s.warnings) out.push(`warning: ${warning}`);
  const size = formatBytes(s.bytes);
  if (s.examples !== null) {
    out.push(`wrote ${plural(s.examples.written, 'example')} of OpenAI's chat fine-tuning format, a line each, to ${s.out} (${size})`);
    if (s.examples.written < MIN_EXAMPLES) out.push(`warning: OpenAI's fine-tuning takes a file of at least ${MIN_EXAMPLES} examples; import more chats`);
    return out.join('\n');
  }
  out.push(`wrote ${plural(s.files.length, 'file')} ${s.output === 'train' ? '' : `in ${s.out} `}(${size})`);
  if (s.bytes < SMALL_DATASET_BYTES) out.push(`warning: ${size} of chat is little: fine-tuning GPT-2 on less than about 2 MB overfits; import more chats`);
  return out.join('\n');
}

// The fewest examples OpenAI's fine-tuning takes in a file.
const MIN_EXAMPLES = 10;

function exampleLines(counts: ExampleCounts, unansweredMessages: number): string[] {
  const lines: string[] = [];
  if (counts.split > 0) {
    lines.push(`  split: ${plural(counts.split, 'conversation')} longer than an example may be (${EXAMPLE_TOKENS.toLocaleString('en-US')} tokens), each into several at its longest pauses`);
  }
  if (counts.unanswered > 0) {
    const what = counts.unanswered === 1 ? 'a conversation or part of one' : 'conversations or parts of them';
    lines.push(
      `  left out: ${plural(counts.unanswered, 'unanswered example')} (${plural(unansweredMessages, 'message')}), ${what} that the audience wrote nothing in: ` +
        "OpenAI's fine-tuning takes no example without an assistant message",
    );
  }
  return lines;
}
