// Slack's workspace export (Workspace settings > Import/Export Data > Export), a zip ("Acme Slack export Mar 1 2024 -
// Mar 31 2024.zip") holding, at its root, the workspace's listings:
//   users.json     [{"id": "U061JD2K4QF", "name": "jane.doe", "real_name", "is_bot", "deleted",
//                    "profile": {"real_name", "display_name", "email"}}]  (org_users.json from an Enterprise Grid org)
//   channels.json  public channels [{"id": "C061GEN0001", "name": "general", "members": [...]}], groups.json private
//                  ones; dms.json direct messages [{"id": "D061OMAR0JD", "members": [U1, U2]}] and mpims.json group
//                  ones [{"id", "name": "mpdm-jane.doe--omar.haddad-1", "members"}], where the plan exports them
//   integration_logs.json, canvases.json...: not read
// and a folder a conversation, named as its channel or group direct message (general/) or as its direct message's id
// (D061OMAR0JD/), holding a file a day:
//   2024-03-04.json  [{"type": "message", "user": "U061JD2K4QF", "text", "ts": "1709546400.000100", "subtype"?,
//                     "user_profile"?: {"real_name", "display_name", "name"}, "files"?, "bot_id"?, "thread_ts"?...}]
// The days of a conversation make one chat (its key). The export has no "me": --me names the user by id, username,
// name, display name or e-mail address.
import path from 'node:path';
import { ChatImportError, DropReason, ExportedChat, ExportedMessage, NO_IDS, decodeExport, jsonObject, jsonString, parseExportJson } from './chat_export';
import type { Companion, CompanionFile } from './detect';

// A message's time: seconds since 1970 and a fraction that makes it unique in its conversation.
const TS = /^(\d+)\.(\d+)$/;
// Subtypes of a person's own words: a /me message, a thread reply also sent to the channel, a file shared with a
// caption (older exports' file_share). Any other subtype is the app's notice: joins, leaves, topics, renames, pins...
const SPOKEN = new Set(['me_message', 'thread_broadcast', 'file_share']);
const DELETED = new Set(['tombstone', 'message_deleted']);
const CALL = new Set(['huddle_thread', 'sh_room_created']);
const BOT = new Set(['bot_message', 'slackbot_response']);
// Slackbot, which users.json lists as no bot.
const SLACKBOT = 'USLACKBOT';
// <!here>, <!channel>, <!everyone>: written as the app shows them, @here, whatever their label.
const EVERYONE = new Set(['here', 'channel', 'everyone']);
// Slack's markup in a message's text (<@U061JD2K4QF>, <#C061GEN0001|general>, <!here>, <https://x.y|label>), and the
// only characters it escapes.
const MARKUP = /<([@#!]?)([^<>|]*)(?:\|([^<>]*))?>|&(amp|lt|gt);/g;
const ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>' };

interface Person {
  name: string;                   // as messages name the sender: the real name, else the display name or username
  ids: readonly string[];         // what else --me may name them by
  bot: boolean;
}

interface Conversation {
  id: string;
  title: string;                  // a channel's #name; '' for direct messages, named by who wrote in them
  group: boolean;
}

export interface SlackWorkspace {
  people: ReadonlyMap<string, Person>;
  channels: ReadonlyMap<string, string>;             // a channel's id -> its name, for links to it
  conversations: ReadonlyMap<string, Conversation>;  // by the name of its folder
}

// A day of a conversation: a JSON list of messages, {"type": "message", "ts": "1709546400.000100", ...}.
export function looksLikeSlack(value: unknown): boolean {
  return Array.isArray(value) && value.some((entry) => {
    const message = jsonObject(entry);
    return message?.type === 'message' && TS.test(jsonString(message.ts));
  });
}

// The files beside a Slack export's users.json (users.json itself, channels.json, canvases.json...): read with the
// days of its conversations, not as exports of their own.
export function isSlackListing(value: unknown, companion: Companion): boolean {
  return !looksLikeSlack(value) && slackWorkspace(companion, '') !== null;
}

const workspaces = new WeakMap<CompanionFile, SlackWorkspace | null | ChatImportError>();

// The export's listings, by `folder` (its root: '' beside them, '../' from a conversation's folder): every file of
// an export finds the same users.json (detect.ts's companions being read once), so they are parsed once, and a
// problem with them is the same error for every file. null where there is no users.json, or one that is no list of
// Slack's members.
export function slackWorkspace(companion: Companion, folder: '' | '../'): SlackWorkspace | null {
  const users = companion(`${folder}users.json`) ?? companion(`${folder}org_users.json`);
  if (users === null) return null;
  if (!workspaces.has(users)) {
    try {
      workspaces.set(users, readWorkspace(users, (name) => companion(folder + name)));
    } catch (err) {
      if (!(err instanceof ChatImportError)) throw err;
      workspaces.set(users, err);
    }
  }
  const workspace = workspaces.get(users) ?? null;
  if (workspace instanceof ChatImportError) throw workspace;
  return workspace;
}

function readWorkspace(users: CompanionFile, companion: Companion): SlackWorkspace | null {
  const members = parseExportJson(users.file, decodeExport(users.file, users.bytes));
  if (!Array.isArray(members) || !members.every((m) => typeof jsonObject(m)?.id === 'string' && jsonObject(jsonObject(m)?.profile) !== null)) return null;
  const people = new Map<string, Person>();
  for (const member of members as Record<string, unknown>[]) {
    const profile = jsonObject(member.profile) ?? {};
    const id = member.id as string;
    people.set(id, toPerson(id, jsonString(profile.real_name) || jsonString(member.real_name), profile, jsonString(member.name), member.is_bot === true));
  }
  const channels = new Map<string, string>();
  const conversations = new Map<string, Conversation>();
  for (const channel of [...listing(companion('channels.json')), ...listing(companion('groups.json'))]) {
    const name = jsonString(channel.name);
    channels.set(jsonString(channel.id), name);
    conversations.set(name, { id: jsonString(channel.id), title: `#${name}`, group: true });
  }
  for (const mpim of listing(companion('mpims.json'))) conversations.set(jsonString(mpim.name), { id: jsonString(mpim.id), title: '', group: true });
  for (const dm of listing(companion('dms.json'))) conversations.set(jsonString(dm.id), { id: jsonString(dm.id), title: '', group: false });
  return { people, channels, conversations };
}

// A listing of conversations (channels.json...): [] where the export has none.
function listing(found: CompanionFile | null): Record<string, unknown>[] {
  if (found === null) return [];
  const value = parseExportJson(found.file, decodeExport(found.file, found.bytes));
  if (!Array.isArray(value)) throw new ChatImportError(found.file, null, 'not a listing of a Slack export: a JSON list of conversations ({"id", "name", "members"}) is expected');
  return value.map((entry) => jsonObject(entry) ?? {});
}

// A member as users.json or a message's user_profile has them.
function toPerson(id: string, realName: string, profile: Record<string, unknown>, username: string, bot: boolean): Person {
  const displayName = jsonString(profile.display_name);
  return {
    name: realName || displayName || username || id,
    ids: [...new Set([id, username, displayName, jsonString(profile.email)])].filter((name) => name !== ''),
    bot: bot || id === SLACKBOT,
  };
}

// `workspace`: the export's listings, null for a day's file read without them (its people then named as its
// messages' user_profile names them, and the conversation told a group by who wrote in it, which `warnings` says).
export function parseSlack(file: string, value: unknown, workspace: SlackWorkspace | null, warnings: string[]): ExportedChat {
  if (!Array.isArray(value)) throw new ChatImportError(file, null, 'not a day of a Slack export\'s conversation: a JSON list of messages ({"type": "message", "ts": "1709546400.000100", ...}) is expected');
  const messages = value.map((entry, index) => {
    const message = jsonObject(entry);
    if (message === null) throw new ChatImportError(file, null, `[${index}] is ${JSON.stringify(entry)}, not a message ({"type": "message", "ts", "user", "text"...})`);
    return message;
  });
  if (workspace === null) {
    const warning = `${path.dirname(file)}: no users.json of a Slack export beside this folder: people are named as its messages name them, and whether it is a channel or a direct message is told by who wrote in it`;
    if (!warnings.includes(warning)) warnings.push(warning);
  }
  // Who wrote in this day, as its messages name them: for people users.json does not list (someone of another
  // organization in a shared channel), or where there is no users.json.
  const profiles = new Map<string, Person>();
  for (const message of messages) {
    const profile = jsonObject(message.user_profile);
    const id = jsonString(message.user);
    if (profile !== null && id !== '') profiles.set(id, toPerson(id, jsonString(profile.real_name), profile, jsonString(profile.name), false));
  }
  const person = (id: string): Person | undefined => workspace?.people.get(id) ?? profiles.get(id);
  const folder = path.basename(path.dirname(path.resolve(file)));
  const conversation = workspace?.conversations.get(folder);
  return {
    format: 'slack',
    file,
    key: `slack:${conversation?.id ?? folder}`,
    title: conversation?.title ?? '',
    group: conversation?.group ?? null,
    skip: null,
    myIds: NO_IDS,
    // A thread's replies are in the day they were written, among the channel's messages: in time order with them.
    messages: messages.map((message, index) => toMessage(file, message, index, person, workspace)).sort((a, b) => a.time - b.time),
  };
}

function toMessage(file: string, message: Record<string, unknown>, index: number, person: (id: string) => Person | undefined, workspace: SlackWorkspace | null): ExportedMessage {
  if (message.ts === undefined) throw new ChatImportError(file, null, `[${index}] has no "ts": every message of a Slack export has its time ("1709546400.000100")`);
  const ts = TS.exec(jsonString(message.ts));
  if (ts === null) throw new ChatImportError(file, null, `[${index}].ts ${JSON.stringify(message.ts)} is not a time as Slack writes them ("1709546400.000100": seconds since 1970)`);
  const time = Number(ts[1]) * 1000 + Number(ts[2].slice(0, 3).padEnd(3, '0'));
  const subtype = jsonString(message.subtype);
  // A deleted message's placeholder ("This message was deleted.") is Slackbot's: who wrote the message is not known.
  const deleted = DELETED.has(subtype);
  const id = deleted ? '' : jsonString(message.user) || jsonString(message.bot_id);
  const author = person(id);
  const text = jsonString(message.text);
  const attached = ['files', 'attachments'].some((field) => Array.isArray(message[field]) && (message[field] as unknown[]).length > 0);
  const dropped: DropReason | null =
    deleted
      ? 'deleted'
      : id === ''
        ? 'unreadable'
        : CALL.has(subtype)
          ? 'call'
          : BOT.has(subtype) || jsonString(message.bot_id) !== '' || author?.bot === true
            ? 'bot'
            : subtype !== '' && !SPOKEN.has(subtype)
              ? 'system'
              // Older exports share a file as one "file", the text being the app's "<@U…|jane> uploaded a file: …".
              : (text.trim() === '' && attached) || message.file !== undefined
                ? 'media'
                : null;
  return { time, sender: author?.name ?? id, senderIds: author?.ids ?? NO_IDS, mine: null, text: plainText(text, person, workspace), dropped, line: 0 };
}

// A message's text as the app shows it: people and channels by name, links by their label (or address), @here.
function plainText(text: string, person: (id: string) => Person | undefined, workspace: SlackWorkspace | null): string {
  const unescape = (s: string): string => s.replace(/&(amp|lt|gt);/g, (_, entity: string) => ENTITIES[entity]);
  return text.replace(MARKUP, (_, kind: string | undefined, target: string | undefined, label: string | undefined, entity: string | undefined) => {
    if (entity !== undefined) return ENTITIES[entity];
    const shown = label === undefined ? undefined : unescape(label);
    const to = unescape(target ?? '');
    if (kind === '@') return `@${person(to)?.name ?? shown ?? to}`;
    if (kind === '#') return `#${workspace?.channels.get(to) ?? shown ?? to}`;
    if (kind === '!') return EVERYONE.has(to) ? `@${to}` : (shown ?? `@${to}`);
    return shown ?? to;
  });
}
