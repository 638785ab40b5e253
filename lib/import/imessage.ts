// macOS Messages' own database, ~/Library/Messages/chat.db (iMessage, and SMS through a paired iPhone), read as it is
// with SQLite compiled to WebAssembly (sql.js: nothing to build). The tables and columns read:
//   message            ROWID, text, attributedBody, handle_id, is_from_me, date, item_type, associated_message_type,
//                      cache_has_attachments, and where the macOS has them date_retracted and error
//   handle             ROWID, id: a person's phone number or e-mail address
//   chat               ROWID, guid, chat_identifier, display_name, style (43: a group)
//   chat_message_join  chat_id, message_id;  chat_handle_join  chat_id, handle_id
// The database says which messages are the user's (is_from_me), so --me is not needed. It holds no contact names:
// a person is their number or address (--audience-map "+15551234567=mom" names them), a group its name or its
// members. Since macOS 13 the text of most messages is only in attributedBody, an NSAttributedString archived by
// NSArchiver (Apple's "typedstream"), from which the string is read. `date` counts from 2001-01-01 UTC, in
// nanoseconds since macOS 10.13 and in seconds before.
import fs from 'node:fs';
import initSqlJs, { type Database, type SqlValue } from 'sql.js';
import { ExportedChat, ExportedMessage, ChatImportError, DropReason, NO_IDS } from './chat_export';

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');
const TABLES = ['message', 'handle', 'chat', 'chat_message_join', 'chat_handle_join'];
const APPLE_EPOCH_MS = Date.UTC(2001, 0, 1);
const GROUP_STYLE = 43;
const ONE_TO_ONE_STYLE = 45;
// U+FFFC, the object replacement character, stands where a message's attachment goes in its text.
const ATTACHMENT = /\ufffc/g;

export function isSqlite(bytes: Buffer): boolean {
  return bytes.subarray(0, SQLITE_HEADER.length).equals(SQLITE_HEADER);
}

let sqlite: ReturnType<typeof initSqlJs> | undefined;

// The SQLite database `bytes` if it has Messages' tables, else null.
async function openMessages(file: string, bytes: Buffer): Promise<Database | null> {
  sqlite ??= initSqlJs();
  let db: Database;
  try {
    db = new (await sqlite).Database(bytes);
    const tables = new Set(rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'").map((r) => String(r[0])));
    if (TABLES.every((t) => tables.has(t))) return db;
  } catch (err) {
    throw new ChatImportError(file, null, `an SQLite database that does not open (${err instanceof Error ? err.message : String(err)}): copied while Messages was writing it, or cut short; quit Messages and copy chat.db again`);
  }
  db.close();
  return null;
}

function rows(db: Database, sql: string): SqlValue[][] {
  return db.exec(sql)[0]?.values ?? [];
}

// Messages' chats as exports, or null when the database is not Messages'. Newer messages may still be in the
// write-ahead log beside the file (chat.db-wal), which SQLite compiled to WebAssembly cannot read: `warnings` says so.
export async function parseMessagesDatabase(file: string, bytes: Buffer, warnings: string[]): Promise<ExportedChat[] | null> {
  const db = await openMessages(file, bytes);
  if (!db) return null;
  try {
    const wal = `${file}-wal`;
    if (fs.existsSync(wal) && fs.statSync(wal).size > 0) {
      warnings.push(`${wal}: the newest messages may be in this log, which is not read; quit Messages (it then moves them into ${file}) and import again`);
    }
    return readChats(file, db);
  } finally {
    db.close();
  }
}

function readChats(file: string, db: Database): ExportedChat[] {
  const columns = new Set(rows(db, 'PRAGMA table_info(message)').map((r) => String(r[1])));
  const optional = (column: string): string => (columns.has(column) ? `m.${column}` : '0');
  const members = new Map<number, string[]>();
  for (const [chat, id] of rows(db, 'SELECT j.chat_id, h.id FROM chat_handle_join j JOIN handle h ON h.ROWID = j.handle_id ORDER BY h.id')) {
    const list = members.get(Number(chat)) ?? [];
    list.push(String(id));
    members.set(Number(chat), list);
  }
  const chats = new Map<number, ExportedChat>();
  // A row at a time: a Mac's database runs to gigabytes, and its rows as one array would take several times that.
  const statement = db.prepare(`SELECT c.ROWID, c.guid, c.chat_identifier, c.display_name, c.style, m.ROWID, m.text, m.attributedBody,
      m.is_from_me, m.date, m.item_type, m.associated_message_type, m.cache_has_attachments, ${optional('date_retracted')},
      ${optional('error')}, h.id
    FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id JOIN message m ON m.ROWID = j.message_id
    LEFT JOIN handle h ON h.ROWID = m.handle_id
    ORDER BY c.ROWID, m.date, m.ROWID`);
  while (statement.step()) {
    const [chatId, guid, identifier, displayName, style, , text, body, fromMe, date, itemType, associated, attachments, retracted, error, handle] = statement.get();
    let chat = chats.get(Number(chatId));
    if (!chat) {
      const people = members.get(Number(chatId)) ?? [];
      const group = style === GROUP_STYLE ? true : style === ONE_TO_ONE_STYLE ? false : null;
      // An unnamed group is named by its members as the output names them (--contacts).
      const title = String(displayName ?? '') || (group ? '' : String(identifier ?? '') || people.join(', '));
      chat = { format: 'imessage', file, key: `imessage:${String(guid)}`, title, group, skip: null, myIds: NO_IDS, messages: [] };
      chats.set(Number(chatId), chat);
    }
    const mine = Number(fromMe) === 1;
    const raw = typeof text === 'string' && text !== '' ? text : body instanceof Uint8Array ? attributedString(body) : null;
    const time = appleTime(Number(date));
    const content = (raw ?? '').replace(ATTACHMENT, ' ').trim();
    const hasAttachment = Number(attachments) === 1 || (raw ?? '').includes('\ufffc');
    const dropped: DropReason | null =
      Number(itemType) !== 0 ? 'system'
      : Number(associated) !== 0 ? 'reaction'
      : Number(retracted) > 0 ? 'deleted'
      : mine && Number(error) !== 0 ? 'not sent'
      : time === null || (!mine && typeof handle !== 'string') ? 'unreadable'
      : content === '' && hasAttachment ? 'media'
      : null;
    const message: ExportedMessage = {
      time: time ?? 0, sender: mine ? 'you' : typeof handle === 'string' ? handle : '', senderIds: NO_IDS, mine, text: content, dropped, line: 0,
    };
    chat.messages.push(message);
  }
  statement.free();
  return [...chats.values()];
}

// ms since 1970 of a message.date: nanoseconds since 2001 (macOS 10.13 and later) or seconds (before); null if absent.
function appleTime(date: number): number | null {
  if (!Number.isFinite(date) || date <= 0) return null;
  return APPLE_EPOCH_MS + (date > 1e11 ? date / 1e6 : date * 1000);
}

const NSSTRING = Buffer.from('NSString', 'latin1');

// The string of an NSAttributedString archived in a typedstream: after the class name NSString, its version and
// type bytes, then '+' (a C string of bytes), its length (one byte below 0x80; 0x81 and a u16; 0x82 and a u32,
// little-endian) and its UTF-8 bytes. Null when the blob holds none.
export function attributedString(blob: Uint8Array): string | null {
  const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  const at = bytes.indexOf(NSSTRING);
  if (at < 0) return null;
  const plus = bytes.indexOf(0x2b, at + NSSTRING.length);
  if (plus < 0 || plus > at + NSSTRING.length + 8 || plus + 6 > bytes.length) return null;
  let start = plus + 2;
  let length = bytes[plus + 1];
  if (length === 0x81) {
    length = bytes.readUInt16LE(plus + 2);
    start = plus + 4;
  } else if (length === 0x82) {
    length = bytes.readUInt32LE(plus + 2);
    start = plus + 6;
  }
  if (start + length > bytes.length) return null;
  return bytes.toString('utf8', start, start + length);
}
