// Direct messages in the archive of an X (Twitter) account: data/direct-messages.js (one-to-one) and
// data/direct-messages-group.js, each a JSON list behind a line of JavaScript:
//   window.YTD.direct_messages.part0 = [{"dmConversation": {"conversationId": "111-222", "messages": [
//     {"messageCreate": {"senderId": "222", "recipientId": "111", "text": "hey", "mediaUrls": [],
//                        "createdAt": "2023-01-01T12:00:00.000Z", ...}}, {"joinConversation": {...}}, ...]}}]
// People are known by account id only. data/account.js beside them says which account is the user's, so no --me
// is needed where it is there.
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, NO_IDS, jsonObject, jsonString, parseExportJson } from './chat_export';

const PREFIX = /^\s*window\.YTD\.(\w+)\.part\d+\s*=\s*/;
// The files of the direct messages in an archive: a large archive splits each into parts, direct-messages-part1.js
// (window.YTD.direct_messages.part1) and on, after direct-messages.js (part0).
export const X_DIRECT_MESSAGES = /^direct-messages(?:-group)?(?:-part\d+)?\.js$/i;
const CHATS = new Set(['direct_messages', 'direct_messages_group']);
// The short link X puts at the end of a message's text for its media.
const MEDIA_LINK = /\s*https:\/\/t\.co\/\w+\s*$/;

// The name of the archive file's data ("direct_messages"), or null when the text is no file of an X archive.
export function xArchiveKind(text: string): string | null {
  return PREFIX.exec(text.slice(0, 200))?.[1] ?? null;
}

export function xArchiveData(file: string, text: string): unknown {
  return parseExportJson(file, text.replace(PREFIX, ''));
}

export function isXDirectMessages(kind: string): boolean {
  return CHATS.has(kind);
}

// The user's account id, from the archive's account.js.
export function xAccountId(file: string, text: string): string | null {
  if (xArchiveKind(text) !== 'account') return null;
  const list = xArchiveData(file, text);
  const account = Array.isArray(list) ? jsonObject(jsonObject(list[0])?.account) : null;
  return jsonString(account?.accountId) || null;
}

export function parseXDirectMessages(file: string, kind: string, data: unknown, myId: string | null): ExportedChat[] {
  if (!Array.isArray(data)) throw new ChatImportError(file, null, `not an X archive's direct messages: ${kind} is not a list`);
  return data.map((value, index) => {
    const conversation = jsonObject(jsonObject(value)?.dmConversation);
    if (!conversation || !Array.isArray(conversation.messages)) throw new ChatImportError(file, null, `not an X archive's direct messages: entry ${index} has no dmConversation.messages`);
    const events = conversation.messages.map((event) => jsonObject(event) ?? {});
    const title = events.map((e) => jsonString(jsonObject(e.conversationNameUpdate)?.name)).find((name) => name !== '') ?? '';
    return {
      format: 'x' as const,
      file,
      key: `x:${jsonString(conversation.conversationId) || `${file}#${index}`}`,
      title,
      group: kind === 'direct_messages_group',
      skip: null,
      myIds: NO_IDS,
      // Newest first in the file.
      messages: events.map((e) => toMessage(e, myId)).sort((a, b) => a.time - b.time),
    };
  });
}

function toMessage(event: Record<string, unknown>, myId: string | null): ExportedMessage {
  const message = jsonObject(event.messageCreate);
  const body = message ?? jsonObject(Object.values(event)[0]) ?? {};
  const time = Date.parse(jsonString(body.createdAt));
  const sender = jsonString(body.senderId) || jsonString(body.initiatingUserId);
  const media = Array.isArray(message?.mediaUrls) && message.mediaUrls.length > 0;
  const text = readableText(message, media);
  const dropped: DropReason | null =
    !message
      ? 'system'
      : sender === '' || Number.isNaN(time)
        ? 'unreadable'
        : media && text.trim() === ''
          ? 'media'
          : null;
  return {
    time: Number.isNaN(time) ? 0 : time,
    sender,
    senderIds: sender === '' ? NO_IDS : [sender],
    mine: myId === null || sender === '' ? null : sender === myId,
    text,
    dropped,
    line: 0,
  };
}

// A message's text as its sender wrote it: links back to what they shortened (`urls`), without the link X adds for
// the media.
function readableText(message: Record<string, unknown> | null, media: boolean): string {
  let text = jsonString(message?.text);
  if (media) text = text.replace(MEDIA_LINK, '');
  for (const link of Array.isArray(message?.urls) ? message.urls : []) {
    const { url, expanded } = jsonObject(link) ?? {};
    if (typeof url === 'string' && typeof expanded === 'string' && url !== '') text = text.split(url).join(expanded);
  }
  return text;
}
