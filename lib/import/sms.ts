// SMS Backup & Restore's XML backup (Android; sms-20201231221503.xml):
//   <smses count="2">
//     <sms address="+15551234567" date="1609452903000" type="1" body="Hi!" contact_name="Mom" ... />
//     <mms date="1609452903000" msg_box="2" address="+15551234567~+15557654321" contact_name="Mom, Dad" ...>
//       <parts><part ct="text/plain" text="Happy new year" ... /></parts>
//       <addrs><addr address="+15551234567" type="137" ... /></addrs>
//     </mms>
//   </smses>
// An SMS of type 1 (an MMS of msg_box 1) was received, 2 sent; the others (drafts, outbox, failed, queued) never
// went. The sender of a received MMS is its addr of type 137. The backup says which messages are the user's, so
// --me is not needed. Read in one pass by a scanner of tags and attributes: a phone's backup runs to hundreds of
// megabytes (MMS pictures are inline, in base64), too much for a DOM.
import { ExportedChat, ExportedMessage, ChatImportError, DETECT_HEAD, NO_IDS } from './chat_export';
import { lineAt, lineCounter } from '../util/lines';

const ATTRIBUTE = /\s+([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;
const TAG_END = /\s*(\/?)>/y;
const ENTITY = /&(?:#(\d+)|#x([0-9a-fA-F]+)|(amp|lt|gt|quot|apos));/g;
const NAMED_ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const FROM = '137';
const NO_NAME = new Set(['', 'null', '(Unknown)']);

type Attributes = Map<string, string>;
// A message as the backup tells it, before it joins its chat; `from` the sender's address ('' for the user's).
type SmsMessage = Omit<ExportedMessage, 'senderIds' | 'line'> & { from: string };

interface Tag {
  name: string;
  closing: boolean;
  selfClosing: boolean;
  attributes: Attributes;
  line: number;
}

interface Mms {
  attributes: Attributes;
  texts: string[];
  media: boolean;
  from: string;
  line: number;
}

export function looksLikeSms(text: string): boolean {
  // Each declaration and comment ends at its first "?>" or "-->": with a lazy [^]*? one could reach past it to a
  // later one, and a text of many (`<?a?>` 30 times) was tried in every way of grouping them, 2^n.
  return /^\s*(?:(?:<\?(?:[^?]|\?(?!>))*\?>|<!--(?:[^-]|-(?!->))*-->)\s*)*<smses[\s>]/.test(text.slice(0, DETECT_HEAD));
}

export function parseSms(file: string, text: string): ExportedChat[] {
  const chats = new Map<string, ExportedChat>();
  // The address attribute as written -> its chat: a thread's messages repeat it, so each form is resolved once.
  const chatOfAddress = new Map<string, ExportedChat>();
  const chatOf = (attributes: Attributes): ExportedChat => {
    const written = attributes.get('address') ?? '';
    let chat = chatOfAddress.get(written);
    if (chat) return chat;
    const addresses = written.split('~').map((a) => a.trim()).filter((a) => a !== '');
    const key = `sms:${addresses.map(addressKey).sort().join(',')}`;
    chat = chats.get(key);
    if (!chat) {
      const name = decodeEntities(attributes.get('contact_name') ?? '');
      const title = NO_NAME.has(name) ? addresses.join(', ') : name;
      chat = { format: 'sms', file, key, title, group: addresses.length > 1, skip: null, myIds: NO_IDS, messages: [] };
      chats.set(key, chat);
    }
    chatOfAddress.set(written, chat);
    return chat;
  };
  // A sender's name is the contact's, which a later backup may give where an earlier one had the number only: the
  // number, as every backup has it, tells the same sender's messages in two backups (train_output.ts).
  const add = (attributes: Attributes, { time, sender, mine, text, dropped, from }: SmsMessage, line: number): void => {
    const chat = chatOf(attributes);
    const senderIds = from === '' ? NO_IDS : [addressKey(from)];
    chat.messages.push({ time, sender: mine ? 'you' : sender || chat.title, senderIds, mine, text, dropped, line });
  };
  let mms: Mms | null = null;
  let root = false;
  let closed = false;
  for (const tag of tags(file, text)) {
    if (!root) {
      if (tag.name !== 'smses' || tag.closing) throw new ChatImportError(file, tag.line, `not an SMS Backup & Restore backup: it starts with <${tag.name}>, not <smses>`);
      root = true;
      continue;
    }
    if (tag.name === 'smses' && tag.closing) closed = true;
    else if (tag.name === 'sms' && !tag.closing) {
      const type = tag.attributes.get('type');
      const mine = type === '2';
      const from = mine ? '' : (tag.attributes.get('address') ?? '');
      add(tag.attributes, { time: timeOf(tag.attributes), sender: '', mine, text: decodeEntities(tag.attributes.get('body') ?? ''), dropped: type === '1' || mine ? null : 'not sent', from }, tag.line);
    } else if (tag.name === 'mms' && !tag.closing) {
      mms = { attributes: tag.attributes, texts: [], media: false, from: '', line: tag.line };
      if (tag.selfClosing) {
        add(mms.attributes, mmsMessage(mms), mms.line);
        mms = null;
      }
    } else if (mms && tag.name === 'part' && !tag.closing) {
      const type = tag.attributes.get('ct') ?? '';
      if (type === 'text/plain') mms.texts.push(decodeEntities(tag.attributes.get('text') ?? ''));
      else if (type !== 'application/smil') mms.media = true;
    } else if (mms && tag.name === 'addr' && !tag.closing && tag.attributes.get('type') === FROM) {
      mms.from = tag.attributes.get('address') ?? '';
    } else if (mms && tag.name === 'mms' && tag.closing) {
      add(mms.attributes, mmsMessage(mms), mms.line);
      mms = null;
    }
  }
  if (!root) throw new ChatImportError(file, null, 'not an SMS Backup & Restore backup: no <smses> element');
  if (!closed) throw new ChatImportError(file, lineAt(text, text.length), 'the XML stops before </smses>: the backup is truncated (an interrupted copy); copy it again');
  return [...chats.values()].map((chat) => ({ ...chat, messages: withoutTapbacks(chat.messages.sort((a, b) => a.time - b.time)) }));
}

// An iPhone's reaction (a tapback) to a message sent by SMS arrives as a text of its own quoting the message, in the
// reacting phone's language: Loved “See you at 7”, A aimé « À demain », Gefällt „Bis morgen“. Each opening here, then
// its closing quotation mark.
const TAPBACKS: readonly [opening: string, closing: string][] = [
  ...['Loved', 'Liked', 'Disliked', 'Laughed at', 'Emphasized', 'Questioned'].map((verb): [string, string] => [`${verb} “`, '”']),
  ...['heart', 'like', 'dislike', 'laugh', 'exclamation', 'question mark'].map((tapback): [string, string] => [`Removed a ${tapback} from “`, '”']),
  ['A aimé « ', ' »'],
  ['Gefällt „', '“'],
];

// A tapback is one where the words it quotes are an earlier message of the chat (its start, where the phone cut a
// long one short with "…"): the same words typed of anything else (Loved “Dune”) are a message, kept.
function withoutTapbacks(messages: ExportedMessage[]): ExportedMessage[] {
  const earlier = new Set<string>();
  let startsEarlier: ((prefix: string, before: number) => boolean) | undefined;
  messages.forEach((message, i) => {
    const quoted = tapbackQuote(message.text);
    // A cut quote is the start of its message: "…" alone quotes no start.
    const start = quoted !== null && quoted.endsWith('…') ? quoted.slice(0, -1) : '';
    if (message.dropped === null && quoted !== null && (earlier.has(quoted) || (start.trim() !== '' && (startsEarlier ??= earlierStarts(messages.map((m) => m.text)))(start, i)))) {
      message.dropped = 'reaction';
    }
    earlier.add(message.text);
  });
  return messages;
}

// Whether a text before the one at `before` begins with `prefix`. The texts that begin so are a run of them sorted,
// the least index of a run read from a sparse table: a chat of many cut quotes in n log n, not each against all.
function earlierStarts(texts: readonly string[]): (prefix: string, before: number) => boolean {
  const order = texts.map((_, i) => i).sort((a, b) => (texts[a] < texts[b] ? -1 : texts[a] > texts[b] ? 1 : a - b));
  const least: Int32Array[] = [Int32Array.from(order)];  // least[j][k]: the least index of order[k .. k + 2^j)
  for (let span = 1; span * 2 <= order.length; span *= 2) {
    const last = least[least.length - 1];
    least.push(Int32Array.from({ length: order.length - span * 2 + 1 }, (_, k) => Math.min(last[k], last[k + span])));
  }
  const firstWhere = (past: (text: string) => boolean): number => {
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (past(texts[order[mid]])) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  return (prefix, before) => {
    const from = firstWhere((text) => text >= prefix);
    const to = firstWhere((text) => text > prefix && !text.startsWith(prefix));
    if (from >= to) return false;
    const level = 31 - Math.clz32(to - from);
    return Math.min(least[level][from], least[level][to - (1 << level)]) < before;
  };
}

function tapbackQuote(text: string): string | null {
  const tapback = TAPBACKS.find(([opening, closing]) => text.length > opening.length + closing.length && text.startsWith(opening) && text.endsWith(closing));
  return tapback === undefined ? null : text.slice(tapback[0].length, text.length - tapback[1].length);
}

function mmsMessage(mms: Mms): SmsMessage {
  const box = mms.attributes.get('msg_box');
  const mine = box === '2';
  const text = mms.texts.join('\n');
  const dropped = box !== '1' && !mine ? 'not sent' : text.trim() === '' && mms.media ? 'media' : null;
  return { time: timeOf(mms.attributes), sender: mine ? '' : senderName(mms), mine, text, dropped, from: mine ? '' : mms.from };
}

// A received MMS's sender by name: the contact names of a group MMS are listed in the order of its addresses.
function senderName(mms: Mms): string {
  if (mms.from === '') return '';
  const addresses = (mms.attributes.get('address') ?? '').split('~');
  const names = decodeEntities(mms.attributes.get('contact_name') ?? '').split(', ');
  const index = addresses.findIndex((a) => addressKey(a) === addressKey(mms.from));
  return names.length === addresses.length && index >= 0 && !NO_NAME.has(names[index]) ? names[index] : mms.from;
}

function timeOf(attributes: Attributes): number {
  const time = Number(attributes.get('date'));
  return Number.isFinite(time) ? time : 0;
}

// A phone number as the same person's whatever its form: its last ten digits ("+1 (555) 123-4567" and
// "5551234567"; "+44 7700 900123" and "07700 900123"). Names of senders without a number stay as they are.
function addressKey(address: string): string {
  const digits = address.replace(/\D/g, '');
  return digits === '' ? address.toLowerCase() : digits.slice(-10);
}

function decodeEntities(value: string): string {
  if (!value.includes('&')) return value;
  // Character references one UTF-16 unit each, as the app writes an emoji (&#55357;&#56832;), join up again.
  return value.replace(ENTITY, (_, decimal: string | undefined, hex: string | undefined, named: string | undefined) => {
    if (named) return NAMED_ENTITIES[named];
    const code = decimal ? Number(decimal) : parseInt(hex as string, 16);
    return code <= 0xffff ? String.fromCharCode(code) : String.fromCodePoint(code);
  });
}

// The tags of an XML document in order; comments, processing instructions and text between tags skipped.
function* tags(file: string, text: string): Generator<Tag> {
  const lineOf = lineCounter(text);
  for (let at = text.indexOf('<'); at >= 0; at = text.indexOf('<', at)) {
    if (text.startsWith('<!--', at) || text.startsWith('<?', at) || text.startsWith('<!', at)) {
      const close = text.startsWith('<!--', at) ? '-->' : text.startsWith('<?', at) ? '?>' : '>';
      const end = text.indexOf(close, at);
      if (end < 0) break;
      at = end + close.length;
      continue;
    }
    const closing = text[at + 1] === '/';
    const nameMatch = /[A-Za-z_][\w.:-]*/y;
    nameMatch.lastIndex = at + (closing ? 2 : 1);
    const name = nameMatch.exec(text);
    if (!name) throw new ChatImportError(file, lineAt(text, at), 'not well-formed XML: "<" that opens no tag');
    const attributes: Attributes = new Map();
    let position = nameMatch.lastIndex;
    for (;;) {
      ATTRIBUTE.lastIndex = position;
      const attribute = ATTRIBUTE.exec(text);
      if (!attribute) break;
      attributes.set(attribute[1], attribute[2] ?? attribute[3]);
      position = ATTRIBUTE.lastIndex;
    }
    TAG_END.lastIndex = position;
    const end = TAG_END.exec(text);
    if (!end) {
      if (text.indexOf('>', position) < 0) break;
      throw new ChatImportError(file, lineAt(text, position), `not well-formed XML: a <${name[0]}> tag is broken`);
    }
    yield { name: name[0], closing, selfClosing: end[1] === '/', attributes, line: lineOf(at) };
    at = TAG_END.lastIndex;
  }
}
