// Telegram Desktop's JSON export (result.json): one chat ({"name", "type", "id", "messages"}), or the whole account
// ({"personal_information", "chats": {"list": [...]}, "left_chats": {"list": [...]}}), which also says who the
// user is. A message's "text" is a string, or an array of strings and entities ({"type": "link", "text": ...})
// whose texts make the message; "text_entities" repeats it, entities only.
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, NO_IDS, jsonObject, jsonString } from './chat_export';

// A message carrying any of these holds an attachment; its text, if any, is the caption.
const MEDIA_FIELDS = ['photo', 'file', 'media_type', 'sticker_emoji', 'poll', 'location_information', 'contact_information', 'game_title', 'place_name', 'invoice_information'];
const ONE_TO_ONE = new Set(['personal_chat', 'bot_chat']);

export function looksLikeTelegram(root: Record<string, unknown>): boolean {
  if (jsonObject(root.personal_information) || jsonObject(root.chats)) return true;
  const first = Array.isArray(root.messages) ? jsonObject(root.messages[0]) : null;
  return typeof root.type === 'string' && Array.isArray(root.messages) && (first === null || 'from_id' in first || 'actor_id' in first || first.type === 'message' || first.type === 'service');
}

export function parseTelegram(file: string, root: Record<string, unknown>): ExportedChat[] {
  const chatList = (field: unknown): unknown[] => {
    const list = jsonObject(field)?.list;
    return Array.isArray(list) ? list : [];
  };
  const account = jsonObject(root.personal_information);
  const chats = account || jsonObject(root.chats) ? [...chatList(root.chats), ...chatList(root.left_chats)] : [root];
  const myIds = account && account.user_id !== undefined ? [`user${String(account.user_id)}`] : NO_IDS;
  return chats.map((value, index) => {
    const chat = jsonObject(value);
    if (!chat || !Array.isArray(chat.messages)) throw new ChatImportError(file, null, `not a Telegram export: chat ${index + 1} has no "messages" list`);
    const type = jsonString(chat.type);
    const skip: DropReason | null = type === 'saved_messages' ? 'saved messages' : type === 'bot_chat' ? 'bot chat' : null;
    return {
      format: 'telegram' as const,
      file,
      key: `telegram:${String(chat.id ?? `${file}#${index}`)}`,
      title: jsonString(chat.name) || (type === 'saved_messages' ? 'Saved Messages' : ''),
      group: !ONE_TO_ONE.has(type),
      skip,
      myIds,
      messages: chat.messages.map(toMessage),
    };
  });
}

function toMessage(value: unknown): ExportedMessage {
  const message = jsonObject(value) ?? {};
  const unixSeconds = Number(message.date_unixtime);
  const time = message.date_unixtime !== undefined && Number.isFinite(unixSeconds) ? unixSeconds * 1000 : Date.parse(`${jsonString(message.date)}Z`);
  const service = message.type === 'service';
  const sender = jsonString(service ? message.actor : message.from) || (message.from === null ? 'Deleted Account' : '');
  const senderId = jsonString(service ? message.actor_id : message.from_id);
  const text = textOf(message.text);
  const dropped = telegramDropReason({
    readable: !Number.isNaN(time) && (service || sender !== ''),
    service,
    call: message.action === 'phone_call' || message.action === 'group_call',
    forwarded: message.forwarded_from !== undefined,
    media: MEDIA_FIELDS.some((field) => message[field] !== undefined),
    text,
  });
  return { time: Number.isNaN(time) ? 0 : time, sender, senderIds: senderId ? [senderId] : NO_IDS, mine: null, text, dropped, line: 0 };
}

// What a Telegram message is, as either export (this JSON, telegram_html.ts's pages) tells it.
export interface TelegramMessageKind {
  readable: boolean;   // it has a time, and a sender unless it is a notice
  service: boolean;    // the app's notice: a join, a pin, a call...
  call: boolean;
  forwarded: boolean;
  media: boolean;      // it holds an attachment, whose caption its text is
  text: string;
}

// Why a Telegram message is not written: one rule for both exports, so that the JSON and the HTML export of a chat
// give the same training data and the same counts.
export function telegramDropReason(m: TelegramMessageKind): DropReason | null {
  if (!m.readable) return 'unreadable';
  if (m.service) return m.call ? 'call' : 'system';
  if (m.forwarded) return 'forwarded';
  if (m.media && m.text.trim() === '') return 'media';
  return null;
}

function textOf(text: unknown): string {
  if (typeof text === 'string') return text;
  if (!Array.isArray(text)) return '';
  let joined = '';
  for (const part of text) joined += typeof part === 'string' ? part : jsonString(jsonObject(part)?.text);
  return joined;
}
