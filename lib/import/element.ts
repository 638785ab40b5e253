// Element's "Export chat" (Element Web and Desktop, a room's info > Export chat, format JSON) of a Matrix room: a file
// a room, `matrix - <room> - Chat Export - <date>.json`, or, with attachments, a zip of that name holding export.json
// beside the room's images/, files/...:
//   {"room_name": "Lena Fischer", "room_creator": "Jane Doe", "topic": "", "export_date": "2024/03/04",
//    "exported_by": "Jane Doe", "messages": [{"type": "m.room.message", "sender": "@lena:example.org",
//      "origin_server_ts": 1709283600000, "event_id", "room_id", "content": {"msgtype": "m.text", "body": "Hi!"},
//      "unsigned": {...}}, ...]}
// The messages are the room's Matrix events that Element draws in its timeline, as Element holds them: decrypted
// (one it could not decrypt is an m.room.message of msgtype m.bad.encrypted), an edited message with its last edit's
// content. Reactions and edits, which have no tile of their own, are not among them; a list that does hold them has
// them read as Matrix clients read them. `exported_by` names the user by display name (by Matrix id without one), so
// that no --me is needed; the members' m.room.member events name the senders.
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, NO_IDS, jsonObject, jsonString, nameKey } from './chat_export';

// The events that hold nothing but an attachment, a poll or a shared live location.
const MEDIA_EVENTS = new Set(['m.sticker', 'm.poll.start', 'org.matrix.msc3381.poll.start', 'm.beacon_info', 'org.matrix.msc3672.beacon_info']);
// Legacy calls (m.call.invite), and Element Call's state events.
const CALL_EVENTS = /^(?:m|org\.matrix\.msc3401)\.call(?:$|\.)/;
// Their body is the file's name, or, where `filename` names the file instead, a caption.
const MEDIA_MESSAGES = new Set(['m.image', 'm.file', 'm.video', 'm.audio', 'm.location']);
// m.emote is what the sender typed after /me, kept as their words (as Discord's actions are); m.notice is a bot's.
const SPOKEN_MESSAGES = new Set(['m.text', 'm.emote']);
// A reply's body opens with the message it answers, quoted, then a blank line: "> <@lena:example.org> Saturday?\n>
// more\n\nYes!" ("> * <@lena:example.org> waves" for an emote). Element stopped writing it in 2024, older replies keep it.
const REPLY_FALLBACK = /^> \*? ?<[^>\n]+>[^\n]*\n(?:>[^\n]*\n)*\n/;
const MATRIX_ID = /^@[^:\s]+:\S+$/;

export function looksLikeElement(root: Record<string, unknown>): boolean {
  if (!Array.isArray(root.messages) || !('exported_by' in root || 'room_name' in root)) return false;
  const first = jsonObject(root.messages[0]);
  return first === null || 'origin_server_ts' in first;
}

export function parseElement(file: string, root: Record<string, unknown>, warnings: string[]): ExportedChat {
  if (!Array.isArray(root.messages)) throw new ChatImportError(file, null, 'not an Element export: no "messages" list');
  const events = root.messages.map((value, index) => {
    const event = jsonObject(value);
    if (event === null || typeof event.type !== 'string') throw new ChatImportError(file, null, `messages[${index}] is not a Matrix event: no "type"`);
    return event;
  });
  const names = displayNames(events);
  const edits = lastEdits(events);
  // An edit (in an export whose list holds them) is its original's text, no message of its own.
  const messages = events.filter((event) => editedId(event) === null).map((event) => toMessage(event, names, edits));
  const undecrypted = events.filter(isUndecrypted).length;
  if (undecrypted > 0) {
    warnings.push(`${file}: ${undecrypted} message${undecrypted === 1 ? '' : 's'} that Element could not decrypt left out: export the room again from a session that reads them (verified, or with the key backup restored)`);
  }
  const roomId = events.map((event) => jsonString(event.room_id)).find((id) => id !== '');
  return {
    format: 'element',
    file,
    // The room, whatever its name: two exports of it (overlapping time ranges) make one chat, its overlap marked
    // duplicate.
    key: `element:${roomId ?? file}`,
    title: jsonString(root.room_name),
    group: members(events).size > 2,
    skip: null,
    myIds: exporterIds(jsonString(root.exported_by), names),
    messages,
  };
}

// Members' display names by Matrix id, the last their m.room.member events give (a rename changes every message's
// sender, so that a person is one sender, one audience). Members without one are their Matrix id, as Element shows them.
function displayNames(events: readonly Record<string, unknown>[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const event of events) {
    const name = event.type === 'm.room.member' ? jsonString(jsonObject(event.content)?.displayname).trim() : '';
    if (name !== '' && typeof event.state_key === 'string') names.set(event.state_key, name);
  }
  return names;
}

// Who took part: those who joined, and those who sent anything else than a notice of the room's state.
function members(events: readonly Record<string, unknown>[]): Set<string> {
  const ids = new Set<string>();
  for (const event of events) {
    if (event.type === 'm.room.member' && jsonObject(event.content)?.membership === 'join' && typeof event.state_key === 'string') ids.add(event.state_key);
    else if (event.state_key === undefined && jsonString(event.sender) !== '') ids.add(jsonString(event.sender));
  }
  return ids;
}

// The user by Matrix id, where `exported_by`, a display name, is the name of exactly one member: a display name may
// be another member's too.
function exporterIds(exportedBy: string, names: ReadonlyMap<string, string>): readonly string[] {
  if (exportedBy === '') return NO_IDS;
  if (MATRIX_ID.test(exportedBy)) return [exportedBy];
  const named = [...names].filter(([, name]) => nameKey(name) === nameKey(exportedBy)).map(([id]) => id);
  return named.length === 1 ? named : [exportedBy];
}

// The event an edit replaces, or null when it is none.
function editedId(event: Record<string, unknown>): string | null {
  const relation = jsonObject(jsonObject(event.content)?.['m.relates_to']);
  return relation?.rel_type === 'm.replace' && typeof relation.event_id === 'string' ? relation.event_id : null;
}

interface Edit {
  time: number;
  content: Record<string, unknown>;
}

// The last edit of each edited event by each sender, by editKey. Only its sender may edit a message: an edit by
// anyone else is ignored, as Matrix clients ignore it.
function lastEdits(events: readonly Record<string, unknown>[]): Map<string, Edit> {
  const edits = new Map<string, Edit>();
  for (const event of events) {
    const id = editedId(event);
    const content = jsonObject(jsonObject(event.content)?.['m.new_content']);
    const time = eventTime(event);
    if (id === null || content === null) continue;
    const key = editKey(id, jsonString(event.sender));
    if ((edits.get(key)?.time ?? -Infinity) <= time) edits.set(key, { time, content });
  }
  return edits;
}

function editKey(eventId: string, sender: string): string {
  return `${eventId}\0${sender}`;
}

function toMessage(event: Record<string, unknown>, names: ReadonlyMap<string, string>, edits: ReadonlyMap<string, Edit>): ExportedMessage {
  const id = jsonString(event.sender);
  const time = eventTime(event);
  const original = jsonObject(event.content) ?? {};
  const content = edits.get(editKey(jsonString(event.event_id), id))?.content ?? original;
  const body = jsonString(content.body);
  const isReply = jsonObject(jsonObject(original['m.relates_to'])?.['m.in_reply_to']) !== null;
  const text = isReply ? body.replace(REPLY_FALLBACK, '') : body;
  const caption = MEDIA_MESSAGES.has(jsonString(content.msgtype)) && typeof content.filename === 'string' && content.filename !== body ? text : '';
  const dropped = id === '' || Number.isNaN(time) ? 'unreadable' : dropReason(event, content, caption);
  return {
    time: Number.isNaN(time) ? 0 : time,
    sender: names.get(id) ?? id,
    senderIds: id === '' ? NO_IDS : [id],
    mine: null,
    text,
    dropped,
    line: 0,
  };
}

function eventTime(event: Record<string, unknown>): number {
  return typeof event.origin_server_ts === 'number' && Number.isFinite(event.origin_server_ts) ? event.origin_server_ts : NaN;
}

// Why an event of a sender and a time is not written: the room's state (joins, renames, encryption turned on...) and
// every event that is no one's words.
function dropReason(event: Record<string, unknown>, content: Record<string, unknown>, caption: string): DropReason | null {
  const type = jsonString(event.type);
  if (CALL_EVENTS.test(type)) return 'call';
  if (MEDIA_EVENTS.has(type)) return 'media';
  if (event.state_key !== undefined) return 'system';
  if (isRedacted(event)) return 'deleted';
  if (isUndecrypted(event)) return 'unreadable';
  if (type === 'm.reaction') return 'reaction';
  if (type !== 'm.room.message') return 'system';
  const msgtype = jsonString(content.msgtype);
  if (SPOKEN_MESSAGES.has(msgtype)) return null;
  if (MEDIA_MESSAGES.has(msgtype)) return caption.trim() === '' ? 'media' : null;
  return 'system';
}

// A message Element could not decrypt: the encrypted event as it came, or what Element puts in its place.
function isUndecrypted(event: Record<string, unknown>): boolean {
  if (isRedacted(event)) return false;
  return event.type === 'm.room.encrypted' || (event.type === 'm.room.message' && jsonObject(event.content)?.msgtype === 'm.bad.encrypted');
}

// Deleted: its content emptied, the redaction that did it kept beside.
function isRedacted(event: Record<string, unknown>): boolean {
  return jsonObject(jsonObject(event.unsigned)?.redacted_because) !== null;
}
