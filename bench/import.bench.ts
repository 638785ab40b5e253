// bin/import-chat's speed: a 50 MB export of each layout that grows largest in practice (a WhatsApp chat, a LINE
// chat, a Telegram account export in JSON, a Telegram chat in HTML (the folder of its pages), an SMS Backup & Restore
// XML backup, Google Chat's messages.json from Takeout, a Mac's Messages database with half its texts only in
// attributedBody, as macOS 13 on stores them, Element's JSON export of a Matrix room, a Slack workspace export (the
// folder of a file a day a conversation)), generated from a fixed seed in the apps' real layouts with their media,
// notices and multi-line messages, imported into .train files in a temporary folder. Each figure is the best of
// several runs of importChats, reading, parsing and writing; beside the wall-clock time, the CPU time the process
// used, which other processes on a busy machine inflate less.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import initSqlJs from 'sql.js';
import { importChats } from '../lib/import';
import { importChatsOffThread } from '../lib/import/thread';
import { Rng } from '../lib/util/rng';
import { median } from './stats';

const TARGET_BYTES = 50_000_000;
const REPEATS = 3;
const WORDS = ['hey', 'ok', 'see', 'you', 'tomorrow', 'dinner', 'at', 'eight?', 'love', 'it', 'haha', 'the', 'cake', 'was', 'great',
  'call', 'me', 'when', 'home', 'sure', 'thanks!', 'where', 'are', 'we', 'going', 'Ça', 'va', 'très', 'bien', '😂', '❤️', '🎉', 'no', 'way', 'lol'];
const START = Date.UTC(2015, 0, 1);
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

function sentence(rng: Rng): string {
  const n = 2 + rng.below(14);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(WORDS[rng.below(WORDS.length)]);
  return words.join(' ');
}

// Messages of two people minutes apart: text, now and then on two lines, a media item, or something the import
// drops for another reason (a deleted message, a notice, a draft).
function* conversation(rng: Rng): Generator<{ time: number; mine: boolean; text: string; kind: 'text' | 'media' | 'other' }> {
  for (let time = START; ; ) {
    time += 20_000 + rng.below(600_000);
    const draw = rng.below(100);
    const kind = draw < 6 ? 'media' : draw < 8 ? 'other' : 'text';
    const text = draw >= 8 && draw < 14 ? `${sentence(rng)}\n${sentence(rng)}` : sentence(rng);
    yield { time, mine: rng.below(2) === 0, text, kind };
  }
}

function whatsApp(rng: Rng): string {
  const lines = ['1/1/15, 12:00\u202fAM - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them. Tap to learn more.'];
  let bytes = 0;
  for (const m of conversation(rng)) {
    const d = new Date(m.time);
    const hour = d.getUTCHours() % 12 || 12;
    const stamp = `${d.getUTCMonth() + 1}/${d.getUTCDate()}/${String(d.getUTCFullYear() % 100).padStart(2, '0')}, ${hour}:${String(d.getUTCMinutes()).padStart(2, '0')}\u202f${d.getUTCHours() < 12 ? 'AM' : 'PM'}`;
    const text = m.kind === 'media' ? '<Media omitted>' : m.kind === 'other' ? 'This message was deleted' : m.text;
    const line = `${stamp} - ${m.mine ? 'Jane Doe' : 'Mom'}: ${text}`;
    lines.push(line);
    bytes += Buffer.byteLength(line) + 1;
    if (bytes >= TARGET_BYTES) break;
  }
  return `${lines.join('\n')}\n`;
}

// LINE's English export: a day line when the day changes, then time, sender and text, tab-separated; a message of
// several lines in quotes.
function line(rng: Rng): string {
  const lines = ['\ufeff[LINE] Chat history with Mom', 'Saved on: 2024/01/20 21:03', ''];
  let bytes = 0;
  let day = '';
  for (const m of conversation(rng)) {
    const d = new Date(m.time);
    const two = (n: number): string => String(n).padStart(2, '0');
    const today = `${d.getUTCFullYear()}/${two(d.getUTCMonth() + 1)}/${two(d.getUTCDate())}(${DAYS[d.getUTCDay()].slice(0, 3)})`;
    if (today !== day) {
      if (day !== '') lines.push('');
      lines.push(today);
      day = today;
    }
    const text = m.kind === 'media' ? '[Photo]' : m.kind === 'other' ? '☎ Missed call' : m.text.includes('\n') ? `"${m.text}"` : m.text;
    const entry = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}\t${m.mine ? 'Jane Doe' : 'Mom'}\t${text}`;
    lines.push(entry);
    bytes += Buffer.byteLength(entry) + 1;
    if (bytes >= TARGET_BYTES) break;
  }
  return `${lines.join('\r\n')}\r\n`;
}

function telegram(rng: Rng): string {
  const messages: object[] = [];
  let id = 0;
  for (const m of conversation(rng)) {
    const from = m.mine ? { from: 'Jane Doe', from_id: 'user111' } : { from: 'Mom', from_id: 'user222' };
    const base = { id: ++id, type: 'message', date: new Date(m.time).toISOString().slice(0, 19), date_unixtime: String(m.time / 1000), ...from };
    messages.push(
      m.kind === 'media'
        ? { ...base, photo: '(File not included. Change data exporting settings to download.)', width: 1280, height: 960, text: '', text_entities: [] }
        : m.kind === 'other'
          ? { id, type: 'service', date: base.date, date_unixtime: base.date_unixtime, actor: from.from, actor_id: from.from_id, action: 'pin_message', message_id: id - 1, text: '', text_entities: [] }
          : { ...base, text: [m.text, { type: 'link', text: 'https://example.com' }], text_entities: [{ type: 'plain', text: m.text }, { type: 'link', text: 'https://example.com' }] },
    );
    if (messages.length === 100_000) break;
  }
  const account = (list: object[]): string =>
    JSON.stringify({ about: 'Here is the data you requested.', personal_information: { user_id: 111, first_name: 'Jane', last_name: 'Doe' }, chats: { about: '', list: [{ name: 'Mom', type: 'personal_chat', id: 222, messages: list }] } }, null, 1);
  // As many messages as make TARGET_BYTES, measured on the indented JSON the app writes.
  const sample = account(messages);
  return account(messages.slice(0, Math.floor((messages.length * TARGET_BYTES) / sample.length)));
}

// Telegram Desktop's HTML export of a chat: a folder of pages of a thousand messages, each page opening with the
// chat's name and a day's heading, a message joined to the run of the one before when the same person wrote it
// within minutes, markup indented on lines of their own as the app writes it.
function telegramHtml(rng: Rng): Record<string, string> {
  const pages: Record<string, string> = {};
  const head = '<!DOCTYPE html>\n<html>\n\n <head>\n\n  <meta charset="utf-8"/>\n<title>Exported Data</title>\n  <meta content="width=device-width, initial-scale=1.0" name="viewport"/>\n\n' +
    '  <link href="css/style.css" rel="stylesheet"/>\n\n  <script src="js/script.js" type="text/javascript">\n\n  </script>\n\n </head>\n\n <body onload="CheckLocation();">\n\n' +
    '  <div class="page_wrap">\n\n   <div class="page_header">\n\n    <div class="content">\n\n     <div class="text bold">\nMom\n     </div>\n\n    </div>\n\n   </div>\n\n' +
    '   <div class="page_body chat_page">\n\n    <div class="history">\n';
  const two = (n: number): string => String(n).padStart(2, '0');
  const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\n/g, '<br>');
  let page: string[] = [];
  let bytes = 0;
  let id = 0;
  let previous: { mine: boolean; time: number } | null = null;
  const endPage = (): void => {
    const name = Object.keys(pages).length === 0 ? 'messages.html' : `messages${Object.keys(pages).length + 1}.html`;
    pages[name] = `${head}${page.join('')}\n    </div>\n\n   </div>\n\n  </div>\n\n </body>\n\n</html>\n`;
    bytes += Buffer.byteLength(pages[name]);
    page = [];
    previous = null;
  };
  for (const m of conversation(rng)) {
    const d = new Date(m.time);
    if (previous === null || new Date(previous.time).getUTCDate() !== d.getUTCDate()) {
      page.push(`\n     <div class="message service" id="message-${++id}">\n\n      <div class="body details">\n${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}\n      </div>\n\n     </div>\n`);
    }
    const joined: boolean = previous !== null && previous.mine === m.mine && m.time - previous.time <= 900_000;
    const name = m.mine ? 'Jane Doe' : 'Mom';
    const title = `${two(d.getUTCDate())}.${two(d.getUTCMonth() + 1)}.${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} UTC+00:00`;
    const userpic = joined ? '' : `\n      <div class="pull_left userpic_wrap">\n\n       <div class="userpic userpic${m.mine ? 1 : 2}" style="width: 42px; height: 42px">\n\n        <div class="initials" style="line-height: 42px">\n${name[0]}\n        </div>\n\n       </div>\n\n      </div>\n`;
    const content = m.kind === 'media'
      ? `\n       <div class="media_wrap clearfix">\n\n        <a class="photo_wrap clearfix pull_left" href="photos/photo_${id}.jpg">\n\n         <img class="photo" src="photos/photo_${id}_thumb.jpg" style="width: 260px; height: 195px"/>\n\n        </a>\n\n       </div>\n`
      : `\n       <div class="text">\n${escape(m.text)} <a href="https://example.com">https://example.com</a>\n       </div>\n`;
    page.push(
      m.kind === 'other'
        ? `\n     <div class="message service" id="message${++id}">\n\n      <div class="body details">\n${name} pinned <a href="#go_to_message${id - 1}" onclick="return GoToMessage(${id - 1})">this message</a>\n      </div>\n\n     </div>\n`
        : `\n     <div class="message default clearfix${joined ? ' joined' : ''}" id="message${++id}">\n${userpic}\n      <div class="body">\n\n` +
          `       <div class="pull_right date details" title="${title}">\n${two(d.getUTCHours())}:${two(d.getUTCMinutes())}\n       </div>\n` +
          `${joined ? '' : `\n       <div class="from_name">\n${name}\n       </div>\n`}${content}\n      </div>\n\n     </div>\n`,
    );
    previous = m.kind === 'other' ? null : { mine: m.mine, time: m.time };
    if (page.length >= 1000) endPage();
    if (bytes >= TARGET_BYTES) break;
  }
  if (page.length > 0) endPage();
  return pages;
}

// Google Takeout's messages.json of one direct-message conversation: dates in US English, bare attachments,
// deleted messages.
function googleChat(rng: Rng): string {
  const jane = { name: 'Jane Doe', email: 'jane.doe@gmail.com', user_type: 'Human' };
  const mom = { name: 'Mom', email: 'mom@gmail.com', user_type: 'Human' };
  const messages: object[] = [];
  for (const m of conversation(rng)) {
    const d = new Date(m.time);
    const hour = d.getUTCHours() % 12 || 12;
    const two = (n: number): string => String(n).padStart(2, '0');
    const date = `${DAYS[d.getUTCDay()]}, ${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}, ${d.getUTCFullYear()} at ${hour}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}\u202f${d.getUTCHours() < 12 ? 'AM' : 'PM'} UTC`;
    const id = `4kpd0UAAAAE/${messages.length}/${messages.length}`;
    const base = { creator: m.mine ? jane : mom, created_date: date };
    messages.push(
      m.kind === 'media'
        ? { ...base, attached_files: [{ original_name: 'IMG_1234.jpg', export_name: 'File-IMG_1234.jpg' }], topic_id: String(messages.length), message_id: id }
        : m.kind === 'other'
          ? { ...base, deleted_date: date, deletion_metadata: { deletion_type: 'CREATOR' }, topic_id: String(messages.length), message_id: id }
          : { ...base, text: m.text, topic_id: String(messages.length), message_id: id },
    );
    if (messages.length === 200_000) break;
  }
  const file = (list: object[]): string => JSON.stringify({ messages: list }, null, 2);
  // As many messages as make TARGET_BYTES, measured on the indented JSON Takeout writes.
  const sample = file(messages);
  return file(messages.slice(0, Math.floor((messages.length * TARGET_BYTES) / sample.length)));
}

function sms(rng: Rng): string {
  const out = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>", '<smses count="0" type="full">'];
  let bytes = 0;
  const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/\n/g, '&#10;')
    .replace(/[\u{10000}-\u{10ffff}]/gu, (c) => `&#${c.charCodeAt(0)};&#${c.charCodeAt(1)};`);
  for (const m of conversation(rng)) {
    const line = m.kind === 'media'
      ? `  <mms date="${m.time}" msg_box="${m.mine ? 2 : 1}" address="+15551234567" contact_name="Mom"><parts><part seq="0" ct="image/jpeg" name="IMG.jpg" text="null" data="${'/9j/4AAQSkZJRg'.repeat(40)}" /></parts><addrs><addr address="+15551234567" type="137" charset="106" /></addrs></mms>`
      : `  <sms protocol="0" address="+15551234567" date="${m.time}" type="${m.kind === 'other' ? 3 : m.mine ? 2 : 1}" subject="null" body="${escape(m.text)}" toa="null" sc_toa="null" service_center="null" read="1" status="-1" locked="0" date_sent="0" readable_date="" contact_name="Mom" />`;
    out.push(line);
    bytes += line.length + 1;
    if (bytes >= TARGET_BYTES) break;
  }
  out.push('</smses>');
  return `${out.join('\n')}\n`;
}

// An id as Matrix and Slack make them: `length` letters and digits drawn from `rng`.
function randomId(rng: Rng, length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (let i = 0; i < length; i++) id += alphabet[rng.below(alphabet.length)];
  return id;
}

// Element's JSON export of a Matrix room of two (indented as Element writes it): the members' joins, then the
// messages, some replies (quoting what they answer, as Element wrote them until 2024), images (encrypted
// attachments, as in an encrypted room) and deleted messages.
function element(rng: Rng): string {
  const room = '!kXtLqwPvbnYzRsDcAe:example.org';
  const jane = '@jane:example.org';
  const lena = '@lena:example.org';
  const eventId = (): string => `$${randomId(rng, 43)}`;
  const join = (who: string, name: string, time: number): object => ({
    type: 'm.room.member', room_id: room, sender: who, content: { membership: 'join', displayname: name }, origin_server_ts: time, state_key: who, unsigned: {}, event_id: eventId(),
  });
  const events: object[] = [join(jane, 'Jane Doe', START - 120_000), join(lena, 'Lena Fischer', START - 60_000)];
  let previous: { id: string; sender: string; body: string } | null = null;
  for (const m of conversation(rng)) {
    const sender = m.mine ? jane : lena;
    const id = eventId();
    const base = { type: 'm.room.message', room_id: room, sender, origin_server_ts: m.time };
    if (m.kind === 'media') {
      const url = `mxc://example.org/${randomId(rng, 24)}`;
      events.push({
        ...base,
        content: {
          body: 'IMG_1234.jpg', msgtype: 'm.image', info: { mimetype: 'image/jpeg', size: 184213, w: 1200, h: 900 },
          file: { v: 'v2', url, mimetype: 'image/jpeg', iv: randomId(rng, 22), hashes: { sha256: randomId(rng, 43) }, key: { alg: 'A256CTR', ext: true, k: randomId(rng, 43), key_ops: ['encrypt', 'decrypt'], kty: 'oct' } },
        },
        unsigned: {}, event_id: id,
      });
    } else if (m.kind === 'other') {
      events.push({
        ...base, type: 'm.room.encrypted', content: {},
        unsigned: { redacted_because: { type: 'm.room.redaction', room_id: room, sender, content: {}, redacts: id, origin_server_ts: m.time + 30_000, unsigned: {}, event_id: eventId() } },
        event_id: id,
      });
    } else if (previous !== null && rng.below(10) === 0) {
      const answered = previous;
      const quoted = answered.body.split('\n').map((line, i) => (i === 0 ? `> <${answered.sender}> ${line}` : `> ${line}`)).join('\n');
      events.push({ ...base, content: { body: `${quoted}\n\n${m.text}`, msgtype: 'm.text', 'm.relates_to': { 'm.in_reply_to': { event_id: answered.id } } }, unsigned: {}, event_id: id });
    } else {
      events.push({ ...base, content: { body: m.text, msgtype: 'm.text' }, unsigned: {}, event_id: id });
    }
    if (m.kind === 'text') previous = { id, sender, body: m.text };
    if (events.length === 250_000) break;
  }
  const file = (list: object[]): string =>
    JSON.stringify({ room_name: 'Lena Fischer', room_creator: 'Jane Doe', topic: '', export_date: '2024/03/04', exported_by: 'Jane Doe', messages: list }, null, 2);
  // As many events as make TARGET_BYTES, measured on the indented JSON Element writes.
  const sample = file(events);
  return file(events.slice(0, Math.floor((events.length * TARGET_BYTES) / sample.length)));
}

// Slack's workspace export, unzipped: users.json, channels.json and dms.json beside a folder a conversation of a file
// a day, indented and with slashes escaped as Slack writes them. #general, where Jane talks with two others, and her
// direct messages with one of them, in threads now and then; files shared without a caption, and people joining and
// deleted messages (Slackbot's tombstones) that the import drops. Each message carries its rich-text blocks and its
// author's profile, as Slack's exports do.
function slack(rng: Rng): Record<string, string> {
  const team = 'T061ACME0';
  const people = [
    { id: 'U061JD2K4QF', name: 'jane.doe', real_name: 'Jane Doe', display_name: 'jane', first_name: 'Jane' },
    { id: 'U061OH7RMA2', name: 'omar.haddad', real_name: 'Omar Haddad', display_name: 'omar', first_name: 'Omar' },
    { id: 'U061LF3N8XB', name: 'lena.fischer', real_name: 'Lena Fischer', display_name: 'Lena F.', first_name: 'Lena' },
  ];
  const write = (value: unknown): string => JSON.stringify(value, null, 4).replace(/\//g, '\\/');
  const hex = (n: number): string => Array.from({ length: n }, () => rng.below(16).toString(16)).join('');
  const profile = (p: (typeof people)[number]): object => ({
    avatar_hash: p.id.slice(4).toLowerCase(), image_72: `https://secure.gravatar.com/avatar/${p.id.toLowerCase()}.jpg?s=72`, first_name: p.first_name,
    real_name: p.real_name, display_name: p.display_name, team, name: p.name, is_restricted: false, is_ultra_restricted: false,
  });
  const files: Record<string, string> = {
    'users.json': write(people.map((p) => ({
      id: p.id, team_id: team, name: p.name, deleted: false, real_name: p.real_name, tz: 'Europe/Berlin', tz_label: 'Central European Time', tz_offset: 3600,
      profile: { real_name: p.real_name, real_name_normalized: p.real_name, display_name: p.display_name, display_name_normalized: p.display_name, email: `${p.name}@acme.example`, first_name: p.first_name, team },
      is_admin: false, is_owner: false, is_bot: false, is_app_user: false, updated: 1420070400,
    }))),
    'channels.json': write([{ id: 'C061GEN0001', name: 'general', created: 1420070400, creator: people[0].id, is_archived: false, is_general: true, members: people.map((p) => p.id) }]),
    'dms.json': write([{ id: 'D061OMAR0JD', created: 1420070400, members: [people[0].id, people[1].id] }]),
  };
  const two = (n: number): string => String(n).padStart(2, '0');
  // Three fifths of the export the channel's, two the direct messages'.
  for (const [folder, share, others] of [['general', 0.6, [people[1], people[2]]], ['D061OMAR0JD', 0.4, [people[1]]]] as const) {
    let day = '';
    let messages: object[] = [];
    let bytes = 0;
    let thread: string | null = null;
    let seq = 0;
    for (const m of conversation(rng)) {
      const d = new Date(m.time);
      const today = `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`;
      if (today !== day) {
        if (messages.length > 0) {
          files[`${folder}/${day}.json`] = write(messages);
          bytes += Buffer.byteLength(files[`${folder}/${day}.json`]);
        }
        if (bytes >= TARGET_BYTES * share) break;
        day = today;
        messages = [];
      }
      const author = m.mine ? people[0] : others[rng.below(others.length)];
      const ts = `${Math.floor(m.time / 1000)}.${String(++seq % 1_000_000).padStart(6, '0')}`;
      // A thread is started now and then, and answered in for a few messages.
      if (thread !== null && rng.below(4) === 0) thread = null;
      else if (thread === null && rng.below(20) === 0) thread = ts;
      const common = { type: 'message', ts, ...(thread !== null ? { thread_ts: thread } : {}) };
      messages.push(
        m.kind === 'media'
          ? {
            ...common, subtype: 'file_share', text: '', user: author.id, user_profile: profile(author),
            files: [{ id: `F${hex(10).toUpperCase()}`, created: Math.floor(m.time / 1000), name: 'IMG_1234.jpg', title: 'IMG_1234.jpg', mimetype: 'image/jpeg', filetype: 'jpg', user: author.id, size: 184213, url_private: `https://files.slack.com/files-pri/${team}-F0/img_1234.jpg` }],
          }
          : m.kind === 'other'
            ? rng.below(2) === 0
              ? { ...common, subtype: 'channel_join', user: author.id, text: `<@${author.id}> has joined the channel` }
              : { ...common, subtype: 'tombstone', text: 'This message was deleted.', user: 'USLACKBOT', hidden: true }
            : {
              client_msg_id: `${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`, ...common, text: m.text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'), user: author.id,
              blocks: [{ type: 'rich_text', block_id: randomId(rng, 5), elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: m.text }] }] }],
              team, user_team: team, source_team: team, user_profile: profile(author),
            },
      );
    }
  }
  return files;
}

// An NSAttributedString archived as Messages' attributedBody holds it: the typedstream header and class chain, then
// the string ('+', its UTF-8 length, its bytes) and an attribute run.
function attributedBody(text: string): Uint8Array {
  const bytes = Buffer.from(text, 'utf8');
  const length = bytes.length < 0x80 ? Buffer.of(bytes.length) : Buffer.from([0x81, bytes.length & 0xff, bytes.length >> 8]);
  const head = '\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x12NSAttributedString\x00\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x08NSString\x01\x94\x84\x01+';
  return Buffer.concat([Buffer.from(head, 'latin1'), length, bytes, Buffer.from('\x86\x84\x02iI\x01', 'latin1'), length, Buffer.from('\x92\x86\x86', 'latin1')]);
}

async function messagesDatabase(rng: Rng): Promise<Buffer> {
  const db = new (await initSqlJs()).Database();
  db.run(`CREATE TABLE handle (ROWID INTEGER PRIMARY KEY, id TEXT);
    CREATE TABLE chat (ROWID INTEGER PRIMARY KEY, guid TEXT, chat_identifier TEXT, display_name TEXT, style INTEGER);
    CREATE TABLE message (ROWID INTEGER PRIMARY KEY, guid TEXT, text TEXT, attributedBody BLOB, handle_id INTEGER, is_from_me INTEGER,
      date INTEGER, item_type INTEGER DEFAULT 0, associated_message_type INTEGER DEFAULT 0, cache_has_attachments INTEGER DEFAULT 0,
      date_retracted INTEGER DEFAULT 0, error INTEGER DEFAULT 0);
    CREATE TABLE chat_message_join (chat_id INTEGER, message_id INTEGER, PRIMARY KEY (chat_id, message_id));
    CREATE TABLE chat_handle_join (chat_id INTEGER, handle_id INTEGER);
    INSERT INTO handle VALUES (1, '+15551234567');
    INSERT INTO chat VALUES (1, 'iMessage;-;+15551234567', '+15551234567', '', 45);
    INSERT INTO chat_handle_join VALUES (1, 1);`);
  const insert = db.prepare('INSERT INTO message (ROWID, guid, text, attributedBody, handle_id, is_from_me, date, item_type, cache_has_attachments) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)');
  const join = db.prepare('INSERT INTO chat_message_join VALUES (1, ?)');
  db.run('BEGIN');
  let id = 0, bytes = 0;
  for (const m of conversation(rng)) {
    const text = m.kind === 'media' ? '\ufffc' : m.text;
    const body = m.kind !== 'media' && id % 2 === 0 ? attributedBody(text) : null;
    insert.run([++id, `M${id}`, body ? null : text, body, m.mine ? 1 : 0, (m.time - Date.UTC(2001, 0, 1)) * 1e6, m.kind === 'other' ? 2 : 0, m.kind === 'media' ? 1 : 0]);
    join.run([id]);
    bytes += 80 + (body ? body.length : Buffer.byteLength(text));
    if (bytes >= TARGET_BYTES) break;
  }
  db.run('COMMIT');
  insert.free();
  join.free();
  const file = Buffer.from(db.export());
  db.close();
  return file;
}

// The server imports an uploaded export on a worker thread (importChatsOffThread): what that spares the requests in
// flight, as the longest the event loop went without running a 1 ms timer, beside the import on the event loop.
async function eventLoopStalls(input: string, dir: string): Promise<void> {
  console.log(`\nThe server's import of the ${(fs.statSync(input).size / 1e6).toFixed(1)} MB WhatsApp export (POST /v1/files), on the event loop and off it; best of ${REPEATS} runs each:\n`);
  console.log('| import | seconds | longest event-loop stall (ms) |');
  console.log('|---|---:|---:|');
  for (const [name, importer] of [['importChats, on the event loop', importChats], ['importChatsOffThread, as the server runs it', importChatsOffThread]] as const) {
    const seconds: number[] = [];
    const stalls: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      let last = performance.now();
      let stall = 0;
      const ticker = setInterval(() => {
        stall = Math.max(stall, performance.now() - last);
        last = performance.now();
      }, 1);
      const start = performance.now();
      await importer([input], { me: ['Jane Doe'], out: path.join(dir, 'stall.train') });
      seconds.push((performance.now() - start) / 1000);
      stalls.push(Math.max(stall, performance.now() - last));
      clearInterval(ticker);
    }
    console.log(`| ${name} | ${Math.min(...seconds).toFixed(2)} | ${Math.min(...stalls).toFixed(0)} |`);
  }
}

// bin/import-chat --out FILE.jsonl: the WhatsApp export written as OpenAI's fine-tuning JSONL instead of the chat
// format, and that JSONL read back into the chat format.
async function fineTuningJsonl(input: string, dir: string): Promise<void> {
  const jsonl = path.join(dir, 'chats.jsonl');
  console.log(`\nThe ${(fs.statSync(input).size / 1e6).toFixed(1)} MB WhatsApp export as OpenAI's fine-tuning JSONL (--out chats.jsonl), and read back; best of ${REPEATS} runs each:\n`);
  console.log('| import | seconds | written MB | examples (split conversations) |');
  console.log('|---|---:|---:|---:|');
  const runs: [string, string, string, string[]][] = [
    ['the export to .train', input, path.join(dir, 'chats.train'), ['Jane Doe']],
    ['the export to .jsonl', input, jsonl, ['Jane Doe']],
    ['that .jsonl back to .train', jsonl, path.join(dir, 'back.train'), []],
  ];
  for (const [name, from, out, me] of runs) {
    const seconds: number[] = [];
    let summary = null;
    for (let i = 0; i < REPEATS; i++) {
      const start = performance.now();
      summary = await importChats([from], { me, out });
      seconds.push((performance.now() - start) / 1000);
    }
    const s = summary as NonNullable<typeof summary>;
    const examples = s.examples === null ? '' : `${s.examples.written.toLocaleString('en-US')} (${s.examples.split})`;
    console.log(`| ${name} | ${Math.min(...seconds).toFixed(2)} | ${(s.bytes / 1e6).toFixed(1)} | ${examples} |`);
  }
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-import-bench-'));
  try {
    // An export is a file, or a folder of files by name.
    const exports: [string, string, string | Buffer | Record<string, string>][] = [
      ['WhatsApp (Android, 12-hour)', 'WhatsApp Chat with Mom.txt', whatsApp(new Rng(1))],
      ['LINE (English)', '[LINE] Chat with Mom.txt', line(new Rng(6))],
      ['Telegram account (JSON)', 'result.json', telegram(new Rng(2))],
      ['Telegram (HTML)', 'ChatExport_2015-01-01', telegramHtml(new Rng(7))],
      ['SMS Backup & Restore (XML)', 'sms-20210101000000.xml', sms(new Rng(3))],
      ['Google Chat (Takeout JSON)', 'messages.json', googleChat(new Rng(5))],
      ["Messages' chat.db (Mac)", 'chat.db', await messagesDatabase(new Rng(4))],
      ['Element (Matrix JSON)', 'matrix - Lena Fischer - Chat Export - 2024-03-04T18-20-11.512Z.json', element(new Rng(8))],
      ['Slack (workspace export)', 'Acme Slack export', slack(new Rng(9))],
    ];
    const loadAverage = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
    console.log(`${os.cpus().length} cores: ${os.cpus()[0].model}, load average ${loadAverage()}; best of ${REPEATS} runs each (median in brackets)\n`);
    console.log('| export | MB | messages read | kept | written MB | seconds | CPU seconds | MB/s |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, file, content] of exports) {
      const input = path.join(dir, file);
      let size = 0;
      if (typeof content === 'string' || Buffer.isBuffer(content)) {
        fs.writeFileSync(input, content);
        size = fs.statSync(input).size;
      } else {
        fs.mkdirSync(input);
        for (const [page, text] of Object.entries(content)) {
          fs.mkdirSync(path.dirname(path.join(input, page)), { recursive: true });
          fs.writeFileSync(path.join(input, page), text);
          size += Buffer.byteLength(text);
        }
      }
      const megabytes = size / 1e6;
      const seconds: number[] = [];
      const cpuSeconds: number[] = [];
      let summary = null;
      for (let i = 0; i < REPEATS; i++) {
        const out = path.join(dir, `out-${i}`);
        const start = process.hrtime.bigint();
        const cpu = process.cpuUsage();
        summary = await importChats([input], { me: ['Jane Doe'], out });
        const used = process.cpuUsage(cpu);
        seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
        cpuSeconds.push((used.user + used.system) / 1e6);
        fs.rmSync(out, { recursive: true, force: true });
      }
      const best = Math.min(...seconds);
      const s = summary as NonNullable<typeof summary>;
      console.log(`| ${name} | ${megabytes.toFixed(1)} | ${s.read.toLocaleString('en-US')} | ${s.kept.toLocaleString('en-US')} | ${(s.bytes / 1e6).toFixed(1)} | ${best.toFixed(2)} (${median(seconds).toFixed(2)}) | ${Math.min(...cpuSeconds).toFixed(2)} | ${(megabytes / best).toFixed(1)} |`);
      fs.rmSync(input, { recursive: true });
    }
    const whatsAppExport = path.join(dir, 'WhatsApp Chat with Mom.txt');
    fs.writeFileSync(whatsAppExport, whatsApp(new Rng(1)));
    await eventLoopStalls(whatsAppExport, dir);
    await fineTuningJsonl(whatsAppExport, dir);
    console.log(`\nload average after: ${loadAverage()}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
