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
// Each is the whole text, so that a message that only begins so ("You left the group chat on read!") is kept: a
// notice that ends in a name ends in the app's full stop, and a missed call names its caller, one of the chat's
// participants ("You missed a call from Mom.", not "...from me yesterday").
const NOTICE_ACTION = new RegExp(
  `^(?:${[
    'named the group .+\\.',
    'removed the group name',
    'changed the group photo',
    'set the (?:quick reaction|emoji) to .+\\.',
    'changed the (?:chat )?theme(?: to .+\\.)?',
    'set the nickname for .+ to .+\\.',
    'set (?:his|her|their|your) own nickname to .+\\.',
    'set your nickname to .+\\.',
    'cleared the nickname for .+\\.',
    'cleared (?:his|her|their|your) own nickname',
    'left the group',
    'added .+ to the group',
    'removed .+ from the group',
    'created the group(?: .+\\.)?',
    'started (?:an?|the) (?:video |voice |audio )?(?:chat|call)',
    'started sharing (?:video|(?:his|her|their|your) screen)',
    'joined the (?:video|audio|voice) (?:chat|call)',
    'missed (?:a|your) (?:video )?call(?: from (?<caller>.+?)\\.)?',
  ].join('|')})\\.?$`,
  'i',
);
const NOTICE = /^(?:You are now connected on Messenger|The (?:video|audio|voice) chat ended)/i;
const REACTION = /^(?:Reacted .+ to your message|Liked a message)\s*$/i;
// What the download writes as the text of an attachment sent without one; a caption is the sender's words, kept.
const ATTACHMENT_NOTICE = / sent an attachment\.$/;

export function looksLikeMessenger(root: Record<string, unknown>): boolean {
  if (!Array.isArray(root.participants) || !Array.isArray(root.messages)) return false;
  const first = jsonObject(root.messages[0]);
  return first === null || 'sender_name' in first || 'senderName' in first;
}

export function parseMessenger(file: string, root: Record<string, unknown>): ExportedChat {
  const title = repairMojibake(jsonString(root.title) || jsonString(root.threadName));
  const participants = new Set((root.participants as unknown[]).map((p) => repairMojibake(jsonString(jsonObject(p)?.name) || jsonString(p))));
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
    messages: (root.messages as unknown[]).map((message) => toMessage(message, participants)).reverse().sort((a, b) => a.time - b.time),
  };
}

function toMessage(value: unknown, participants: ReadonlySet<string>): ExportedMessage {
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
          : message.type === 'Subscribe' || message.type === 'Unsubscribe' || isNotice(text, sender, participants)
            ? 'system'
            : REACTION.test(text)
              ? 'reaction'
              : (attached || message.share !== undefined) && (text === '' || ATTACHMENT_NOTICE.test(text))
                ? 'media'
                : null;
  return { time: Number.isFinite(time) ? time : 0, sender, senderIds: NO_IDS, mine: null, text, dropped, line: 0 };
}

function isNotice(text: string, sender: string, participants: ReadonlySet<string>): boolean {
  if (NOTICE.test(text)) return true;
  const actor = text.startsWith(`${sender} `) ? sender.length + 1 : text.startsWith('You ') ? 4 : -1;
  const action = actor >= 0 ? NOTICE_ACTION.exec(text.slice(actor).trimEnd()) : null;
  const caller = action?.groups?.caller;
  return action !== null && (caller === undefined || participants.has(caller));
}

// Text whose UTF-8 bytes were each escaped as a character (U+0000-U+00FF) made text again. A string with a
// character beyond U+00FF was not escaped so, and one whose bytes are not UTF-8 was never UTF-8: both stay.
export function repairMojibake(text: string): string {
  if (!/[\u0080-\u00ff]/.test(text) || /[^\u0000-\u00ff]/.test(text)) return text;
  const bytes = Buffer.from(text, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : text;
}
