// Skype's "Export your Skype data" (Conversations): a .tar holding messages.json, every chat of the account:
//   {"userId": "8:live:jane.doe", "exportDate": "2025-04-28T17:05", "conversations": [{
//     "id": "8:live:mom" (a one-to-one chat: the other person's id) or "19:...@thread.skype" (a group),
//     "displayName": "Mom" (the person, or the group's name), "threadProperties": null, or a group's
//       {"membercount", "topic", "members": "[\"8:live:jane.doe\", ...]"},
//     "MessageList": [{"id", "displayName": the sender's name or null, "originalarrivaltime": "2021-03-04T18:20:30.609Z",
//       "messagetype": "RichText", "content": "Yes &amp; see you<e_m ts=\"...\" ts_ms=\"...\" a=\"live:jane.doe\" t=\"61\"/>",
//       "conversationid", "from": "8:live:jane.doe", "properties": {"edittime"} or {"deletetime"} or null, ...}, ...]
//   }]}
// The messages are newest first. The export says who the user is (userId): no --me. Text is Skype's markup, HTML
// escaped: <quote> holds the message replied to, <e_m/> marks an edit, <ss> an emoticon (its text is what was
// typed, ":)"), <at> a mention, <a> a link. Ids carry a numeric prefix: 8: a person, 19: a group, 28: a bot,
// 48: one of Skype's own lists (48:calllogs).
import { parseDocument } from 'htmlparser2';
import { type AnyNode, isTag, isText } from 'domhandler';
import { ChatImportError, DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonObject, jsonString } from './chat_export';

const GROUP = '19:';
const BOT = '28:';
const SKYPE_LIST = '48:';
const CALL_LOG = '48:calllogs';
// Skype's sound test service, a one-to-one chat with an account that only answers calls.
const ECHO = '8:echo123';
const SPOKEN = new Set(['Text', 'RichText', 'RichText/Html']);
const CALLS = new Set(['Event/Call', 'RichText/ScheduledCallInvite']);
// Photos, files, voice and video messages, cards, locations, contacts, polls: Skype sends a caption as a message of
// its own, so none of these has text of its own.
const MEDIA = /^(?:RichText\/|Poll$)/;
const ENCRYPTED = 'EndToEndEncryption/EncryptedText';
// What is not the message: the message replied to, and the edit mark.
const UNSPOKEN_TAGS = new Set(['quote', 'e_m']);
// Older clients wrote an edit as this before the edited text.
const EDITED_PREFIX = /^Edited previous message: /;

export function looksLikeSkype(root: Record<string, unknown>): boolean {
  return typeof root.userId === 'string' && 'exportDate' in root && Array.isArray(root.conversations);
}

export function parseSkype(file: string, root: Record<string, unknown>): ExportedChat[] {
  if (!Array.isArray(root.conversations)) throw new ChatImportError(file, null, 'not a Skype export: no "conversations" list');
  const me = jsonString(root.userId);
  return root.conversations.map((value) => {
    const conversation = jsonObject(value) ?? {};
    const id = jsonString(conversation.id);
    const group = id.startsWith(GROUP);
    const title = jsonString(conversation.displayName) || jsonString(jsonObject(conversation.threadProperties)?.topic);
    const list = Array.isArray(conversation.MessageList) ? conversation.MessageList : [];
    // In a one-to-one chat the other person is named as the chat is, on every message.
    const other = group ? '' : title;
    const read = list.map((m) => readMessage(jsonObject(m) ?? {}, me, other));
    return {
      format: 'skype' as const,
      file,
      key: `skype:${id}`,
      title,
      group,
      skip: chatSkip(id),
      myIds: skypeIds(me),
      // Newest first in the file: reversed, then sorted, so that messages of the same millisecond keep their order.
      messages: lastEdits(read).reverse().sort((a, b) => a.time - b.time),
    };
  });
}

// Conversations that are no chat with people: Skype's own lists, bots, the sound test service.
function chatSkip(id: string): DropReason | null {
  if (id.startsWith(SKYPE_LIST)) return id === CALL_LOG ? 'call' : 'system';
  return id.startsWith(BOT) || id === ECHO ? 'bot chat' : null;
}

// An id as the export writes it (8:live:jane.doe) and as Skype shows it (live:jane.doe), for --me to give either.
function skypeIds(id: string): string[] {
  const shown = shownId(id);
  return shown === id ? [id] : [id, shown];
}

function shownId(id: string): string {
  return id.replace(/^\d+:/, '');
}

interface SkypeMessage {
  message: ExportedMessage;
  edited: { from: string; editTime: number } | null;
}

function readMessage(m: Record<string, unknown>, me: string, other: string): SkypeMessage {
  const from = jsonString(m.from);
  const properties = jsonObject(m.properties) ?? {};
  const type = jsonString(m.messagetype);
  const content = jsonString(m.content);
  const editMark = /<e_m\b[^>]*\bts_ms="(\d+)"/.exec(content);
  const editTime = Number(properties.edittime);
  const edited = editMark !== null || editTime > 0;
  const arrival = Date.parse(jsonString(m.originalarrivaltime));
  // A message edited is dated by its first version, as the app places it.
  const time = editMark ? Math.min(arrival, Number(editMark[1])) : arrival;
  const text = SPOKEN.has(type) ? plainText(content) : '';
  const sender = from === '' ? '' : other !== '' && shownId(from) !== shownId(me) ? other : jsonString(m.displayName) || shownId(from);
  const dropped: DropReason | null =
    sender === '' || Number.isNaN(time)
      ? 'unreadable'
      : from.startsWith(BOT)
        ? 'bot'
        : Number(properties.deletetime) > 0 || (edited && SPOKEN.has(type) && text === '')
          ? 'deleted'
          : SPOKEN.has(type)
            ? null
            : CALLS.has(type)
              ? 'call'
              : MEDIA.test(type)
                ? 'media'
                : type === ENCRYPTED
                  ? 'unreadable'
                  : 'system';
  return {
    message: { time: Number.isNaN(time) ? 0 : time, sender, senderIds: from === '' ? NO_IDS : skypeIds(from), mine: null, text, dropped, line: 0 },
    edited: edited ? { from, editTime: editTime > 0 ? editTime : arrival } : null,
  };
}

// An edited message may be in the export once for each of its versions, each marked edited and dated by the first
// (its edit mark's ts_ms): the last edit is kept, the earlier versions are dropped as the same message again.
function lastEdits(read: readonly SkypeMessage[]): ExportedMessage[] {
  const latest = new Map<string, SkypeMessage>();
  for (const version of read) {
    if (version.edited === null) continue;
    const key = `${version.edited.from}\0${version.message.time}`;
    const kept = latest.get(key);
    if (kept === undefined || (kept.edited?.editTime ?? 0) < version.edited.editTime) latest.set(key, version);
  }
  return read.map((version) => {
    if (version.edited === null || latest.get(`${version.edited.from}\0${version.message.time}`) === version) return version.message;
    return { ...version.message, dropped: 'duplicate' };
  });
}

// Skype's markup as the text it shows: entities decoded, a reply without the message it quotes, the edit mark
// gone, links, mentions and emoticons as their text.
function plainText(content: string): string {
  let text = '';
  const add = (nodes: readonly AnyNode[]): void => {
    for (const node of nodes) {
      if (isText(node)) text += node.data;
      else if (isTag(node) && !UNSPOKEN_TAGS.has(node.name)) {
        if (node.name === 'br') text += '\n';
        else add(node.children);
      }
    }
  };
  // <e_m .../> closes itself: without recognizeSelfClosing an HTML parser would take the text after it inside it.
  add(parseDocument(content, { recognizeSelfClosing: true }).children);
  return text.replace(EDITED_PREFIX, '').trim();
}
