// A Signal chat as signal-export (sigexport, which reads Signal Desktop's database) writes it: a folder per chat,
// named after the contact or group with all but its letters and digits left out ("Noah Williams" is NoahWilliams/,
// a second "Noah Williams" NoahWilliams2/), holding chat.md, index.html and data.json, which, its name
// notwithstanding, is JSON Lines, a message a line:
//   {"date": "2024-03-01T17:05:40.090000", "sender": "Me", "body": "Yes! 10am  ", "quote": "\n\n> Are we...\n\n",
//    "sticker": null, "reactions": [["NoahWilliams", "👍"]], "attachments": [{"name", "path", "missing_kind"}],
//    "deleted": false, "call": false, "missed": false}
// The user's messages are sent by "Me": no --me. The others' senders are named as their folders are, "No-Sender"
// where the export did not find who (null before version 3.9 for a contact without a name). The date is the
// computer's wall clock, without a time zone. Before version 3.9 "sticker" was the sticker's emoji ("" for none),
// and "deleted", "call" and "missed" were not written: a call was a message "Incoming call" or "Outgoing call" (from
// 3.8.4 its kind and end too: "Missed voice call", "Outgoing video call (accepted, 2m 5s)", "Incoming call (declined)"), and
// a message deleted for everyone one without text, as the app's notices (group changes, disappearing-message
// timers, safety numbers) always are. The quote of a reply and the reactions have fields of their own, never read.
import path from 'node:path';
import { ChatImportError, DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonLines, jsonObject, jsonString } from './chat_export';

const ME = 'Me';
// The folder of the user's own conversation, with themselves, since version 3.9 (earlier it was named after the user).
const NOTE_TO_SELF = 'NotetoSelf';
// A call as a message's text, before 3.9: the call's direction (or that it was missed), its kind ("voice", "video",
// "group") and how it ended, with the call's length when it was taken.
const OLD_CALL = /^(?:(?:Incoming|Outgoing) (?:[a-z]+ )?call(?: \((?:accepted, (?:\d+m )?\d+s|[a-z ]+)\))?|Missed (?:[a-z]+ )?call)$/;
// Where an @mention was: Signal keeps the mentioned person apart from the text, and the export leaves them out.
const MENTION = /\ufffc/g;
// Python's isoformat() of a time without a time zone: microseconds only when there are some.
const WALL_CLOCK = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?)\d*$/;
const LAYOUT = 'signal-export\'s data.json holds a message a line';
// A message of signal-export's chat.md, "[2024-03-01 17:05:40] Me: Yes! 10am  ", its text ended by two spaces and a
// blank line (before version 2.0, index.md: "[2021-10-15 17:05] Me: Yes! 10am  ", without seconds or the blank
// line): read as it is, its reactions, quotes and attachments would be taken for its text (and its dates for
// WhatsApp's).
const MARKDOWN_DATE = /\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] /;
const OLD_MARKDOWN_DATE = /\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}\] /;
const MARKDOWN_MESSAGE = new RegExp(`^(?:${MARKDOWN_DATE.source}|${OLD_MARKDOWN_DATE.source})[^\\n]*?: `);
// A message's end and the next message: an iPhone's WhatsApp export in a locale that writes dates so (Swedish)
// differs by its single line break.
const MARKDOWN_NEXT = new RegExp(`  \\n(?:\\n${MARKDOWN_DATE.source}|${OLD_MARKDOWN_DATE.source})`);
// What to do with a chat's markdown: signal-export wrote no data.json before version 2.0, and until 3.0 only when
// run with --json.
export const SIGNAL_MARKDOWN_ADVICE =
  'signal-export\'s chat.md (index.md before its version 2.0), whose messages\' text holds their reactions, quotes and attachments: import the data.json beside it, or the chat\'s folder; where there is none (signal-export before 3.0 wrote it only when run with --json, before 2.0 never), export the chats again with signal-export 3.0 or later (pip install -U signal-export), without --no-json';

// Whether the first line of a JSONL file is a message of signal-export's data.json.
export function looksLikeSignal(line: Record<string, unknown> | null): boolean {
  return line !== null && typeof line.date === 'string' && WALL_CLOCK.test(line.date) && 'sender' in line &&
    typeof line.body === 'string' && typeof line.quote === 'string' && Array.isArray(line.reactions) && Array.isArray(line.attachments);
}

// How much of a text tells signal-export's markdown.
export const MARKDOWN_HEAD = 4096;

// Whether a text is signal-export's chat.md, which data.json beside it holds as it was before being written out.
export function isSignalMarkdown(text: string): boolean {
  const head = text.slice(0, MARKDOWN_HEAD);
  return MARKDOWN_MESSAGE.test(head.trimStart()) && (MARKDOWN_NEXT.test(head) || text.endsWith('  \n\n'));
}

export function parseSignal(file: string, text: string): ExportedChat {
  const messages = jsonLines(file, text, LAYOUT).map(({ value, line }) => toMessage(file, value, line));
  const folder = path.basename(path.dirname(path.resolve(file)));
  return {
    format: 'signal',
    file,
    // The same chat exported again (to another folder) is one chat, their overlap kept once.
    key: `signal:${folder}`,
    title: folder,
    // The export does not say which chats are groups; the folder, which names the chat, is lost where data.json is
    // read alone (an upload to the server): a group is told by more than one other person writing in it.
    group: null,
    skip: folder === NOTE_TO_SELF ? 'saved messages' : null,
    myIds: NO_IDS,
    messages,
  };
}

function toMessage(file: string, value: unknown, line: number): ExportedMessage {
  const message = jsonObject(value);
  if (message === null || typeof message.date !== 'string' || typeof message.body !== 'string') {
    throw new ChatImportError(file, line, `not a message of signal-export's data.json: it has no "date" and "body"`);
  }
  const clock = WALL_CLOCK.exec(message.date);
  if (clock === null) throw new ChatImportError(file, line, `a date signal-export does not write: ${JSON.stringify(message.date)}`);
  const sender = jsonString(message.sender);
  const text = message.body.replace(MENTION, '');
  const spoken = text.trim();
  const attached = (Array.isArray(message.attachments) && message.attachments.length > 0) || (message.sticker !== null && message.sticker !== undefined && message.sticker !== '');
  const dropped: DropReason | null =
    message.deleted === true
      ? 'deleted'
      : (message.call === undefined ? OLD_CALL.test(spoken) : message.call === true)
        ? 'call'
        : spoken === ''
          ? (attached ? 'media' : 'system')
          : null;
  return { time: Date.parse(`${clock[1]}Z`), sender, senderIds: NO_IDS, mine: sender === ME, text, dropped, line };
}
