// Facebook Messenger's and Instagram's "Download your information" in JSON: a folder per chat
// (messages/inbox/mom_1234/) holding message_1.json, message_2.json..., parts of one conversation, newest first:
//   {"participants": [{"name": "Mom"}, ...], "messages": [{"sender_name", "timestamp_ms", "content", "photos", ...}],
//    "title": "Mom", "thread_path": "inbox/mom_1234"}
// Their strings are UTF-8 whose every byte was escaped as a character of its own ("\u00c3\u00a9" for "é"), which
// is repaired here. Messenger's end-to-end encrypted chats download in camelCase instead, read as well:
//   {"participants": ["Mom", ...], "threadName", "messages": [{"senderName", "timestamp", "text", "isUnsent", "media"}]}
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonObject, jsonString } from './chat_export';

const ATTACHMENTS = ['photos', 'videos', 'audio_files', 'gifs', 'files', 'sticker', 'media'];
// The app's notices, written as if their actor had sent them: "Mom named the group Family.", "You left the group."
const NOTICE_ACTION =
  /^(?:named the group|changed the group photo|set the emoji to|changed the (?:chat )?theme|set the nickname for|set (?:his|her|their|your) own nickname|set your nickname|cleared the nickname|left the group|added .+ to the group|removed .+ from the group|created the group|started (?:a|sharing) |joined the (?:video|audio|voice) (?:chat|call)|missed (?:a|your) (?:video )?call)/i;
const NOTICE = /^(?:You are now connected on Messenger|The (?:video|audio|voice) chat ended)/i;
const REACTION = /^(?:Reacted .+ to your message|Liked a message)\s*$/i;
const ATTACHMENT_NOTICE = / sent an attachment\.$/;

export function looksLikeMessenger(root: Record<string, unknown>): boolean {
  if (!Array.isArray(root.participants) || !Array.isArray(root.messages)) return false;
  const first = jsonObject(root.messages[0]);
  return first === null || 'sender_name' in first || 'senderName' in first;
}

export function parseMessenger(file: string, root: Record<string, unknown>): ExportedChat {
  const title = repairMojibake(jsonString(root.title) || jsonString(root.threadName));
  return {
    format: 'messenger',
    file,
    // The chat's folder is named for it (mom_10158...), in every part of a download split in several zips and in
    // every download of the account, so that those make one chat, their overlap marked duplicate.
    key: `messenger:${path.basename(path.dirname(path.resolve(file)))}\0${title}`,
    title,
    group: (root.participants as unknown[]).length > 2 || root.thread_type === 'RegularGroup',
    skip: null,
    myIds: NO_IDS,
    // Newest first in the file: reversed, then sorted, so that messages of the same millisecond keep their order.
    messages: (root.messages as unknown[]).map(toMessage).reverse().sort((a, b) => a.time - b.time),
  };
}

function toMessage(value: unknown): ExportedMessage {
  const message = jsonObject(value) ?? {};
  const sender = repairMojibake(jsonString(message.sender_name) || jsonString(message.senderName));
  const time = Number(message.timestamp_ms ?? message.timestamp);
  const text = repairMojibake(jsonString(message.content) || jsonString(message.text));
  const attached = ATTACHMENTS.some((field) => (Array.isArray(message[field]) ? (message[field] as unknown[]).length > 0 : message[field] !== undefined));
  const dropped: DropReason | null =
    sender === '' || !Number.isFinite(time)
      ? 'unreadable'
      : message.is_unsent === true || message.isUnsent === true
        ? 'deleted'
        : message.type === 'Call' || message.call_duration !== undefined
          ? 'call'
          : message.type === 'Subscribe' || message.type === 'Unsubscribe' || isNotice(text, sender)
            ? 'system'
            : REACTION.test(text)
              ? 'reaction'
              : attached || (message.share !== undefined && (text === '' || ATTACHMENT_NOTICE.test(text)))
                ? 'media'
                : null;
  return { time: Number.isFinite(time) ? time : 0, sender, senderIds: NO_IDS, mine: null, text, dropped, line: 0 };
}

function isNotice(text: string, sender: string): boolean {
  if (NOTICE.test(text)) return true;
  const actor = text.startsWith(`${sender} `) ? sender.length + 1 : text.startsWith('You ') ? 4 : -1;
  return actor >= 0 && NOTICE_ACTION.test(text.slice(actor));
}

// Text whose UTF-8 bytes were each escaped as a character (U+0000-U+00FF) made text again. A string with a
// character beyond U+00FF was not escaped so, and one whose bytes are not UTF-8 was never UTF-8: both stay.
export function repairMojibake(text: string): string {
  if (!/[\u0080-\u00ff]/.test(text) || /[^\u0000-\u00ff]/.test(text)) return text;
  const bytes = Buffer.from(text, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : text;
}
