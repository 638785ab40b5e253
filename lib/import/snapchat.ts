// Snapchat's "My Data" download, json/chat_history.json: a conversation per key (a friend's username, or a group's
// id), each a list of
//   {"From": "mom_k", "Media Type": "TEXT", "Created": "2023-05-01 12:34:56 UTC", "Content": "hey",
//    "Conversation Title": null (a group's name), "IsSender": false, "Created(microseconds)": 1682944496000000, ...}
// Older downloads held only the chats saved in the app, in two lists: {"Received Saved Chat History": [{"From",
// "Media Type", "Created", "Text"}], "Sent Saved Chat History": [{"To", ...}]}. Both say who sent what: no --me.
import { DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonObject, jsonString } from './chat_export';

const RECEIVED = 'Received Saved Chat History';
const SENT = 'Sent Saved Chat History';
// The user's own messages in the older lists name only the other person.
const ME = 'me';

export function looksLikeSnapchat(root: Record<string, unknown>): boolean {
  if (Array.isArray(root[RECEIVED]) || Array.isArray(root[SENT])) return true;
  const list = Object.values(root).find((l) => Array.isArray(l) && l.length > 0) as unknown[] | undefined;
  const first = list ? jsonObject(list[0]) : null;
  // snap_history.json beside it has the same lists, of snaps, without "Content".
  return first !== null && 'Media Type' in first && 'IsSender' in first && 'Content' in first;
}

export function parseSnapchat(file: string, root: Record<string, unknown>): ExportedChat[] {
  if (Array.isArray(root[RECEIVED]) || Array.isArray(root[SENT])) return savedChats(file, root);
  return Object.entries(root).map(([key, list]) => {
    const messages = Array.isArray(list) ? list.map((value) => jsonObject(value) ?? {}) : [];
    const title = messages.map((m) => jsonString(m['Conversation Title'])).find((t) => t !== '') ?? '';
    return {
      format: 'snapchat',
      file,
      key: `snapchat:${key}`,
      title,
      group: title !== '',
      skip: null,
      myIds: NO_IDS,
      messages: messages.map((m) => toMessage(m, jsonString(m.From), m.IsSender === true)).sort((a, b) => a.time - b.time),
    };
  });
}

// The older download: a conversation per person, of the messages received from them and sent to them.
function savedChats(file: string, root: Record<string, unknown>): ExportedChat[] {
  const byPerson = new Map<string, ExportedMessage[]>();
  for (const [list, mine] of [[root[RECEIVED], false], [root[SENT], true]] as const) {
    for (const value of Array.isArray(list) ? list : []) {
      const m = jsonObject(value) ?? {};
      const person = jsonString(mine ? m.To : m.From);
      const messages = byPerson.get(person) ?? [];
      messages.push(toMessage(m, mine ? ME : person, mine));
      byPerson.set(person, messages);
    }
  }
  return [...byPerson.entries()].map(([person, messages]) => ({
    format: 'snapchat' as const,
    file,
    key: `snapchat:${person}`,
    title: '',
    group: false,
    skip: null,
    myIds: NO_IDS,
    messages: messages.sort((a, b) => a.time - b.time),
  }));
}

function toMessage(m: Record<string, unknown>, sender: string, mine: boolean): ExportedMessage {
  const micros = Number(m['Created(microseconds)']);
  const time = Number.isFinite(micros) && micros > 0 ? Math.round(micros / 1000) : Date.parse(jsonString(m.Created).replace(' UTC', 'Z').replace(' ', 'T'));
  const text = jsonString(m.Content) || jsonString(m.Text);
  const type = jsonString(m['Media Type']);
  const dropped: DropReason | null =
    sender === '' || Number.isNaN(time)
      ? 'unreadable'
      : type.startsWith('STATUS')
        ? 'system'
        : type !== 'TEXT' && text.trim() === ''
          ? 'media'
          : null;
  return { time: Number.isNaN(time) ? 0 : time, sender, senderIds: NO_IDS, mine, text, dropped, line: 0 };
}
