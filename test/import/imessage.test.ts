// macOS Messages' chat.db (test/fixtures/exports/imessage, made by make_chat_db.py there with Messages' schema):
// texts in the text column and in attributedBody's archived NSAttributedString, the user's side from is_from_me,
// tapbacks, group notices, unsent and failed messages and bare photos dropped, people named by number until
// --audience-map names them; and databases that are not Messages', cut short, or with a write-ahead log beside them.
import fs from 'node:fs';
import path from 'node:path';
import initSqlJs from 'sql.js';
import t from 'tap';
import { attributedString } from '../../lib/import/imessage';
import { fixture, importInto } from './helpers';

const CHAT_DB = fixture('imessage', 'chat.db');

t.test('a chat.db: a file per chat, the user\'s side told by the database itself, what is no message dropped', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [CHAT_DB]);
  t.same(files, {
    '15551234567.train': [
      '0|+15551234567|Are you coming for dinner Sunday? <EOM>',
      '1|+15551234567|Yes! Can I bring anything? 🍰 <EOM>',
      '0|+15551234567|Just yourself and maybe a pie <EOM>',
      '0|+15551234567|Look at this <EOM>',
    ],
    '15557654321.train': ['0|+15557654321|hey its sam, new number <EOM>', '1|+15557654321|Hi Sam! <EOM>'],
    'family.train': [`0|Family|${'x'.repeat(150)} long one from Dad <EOM>`, '0|Family|See you all Sunday <EOM>'],
  });
  t.match(summary, { formats: { imessage: 1 }, read: 13, kept: 8, sent: 2, dropped: { reaction: 1, media: 1, deleted: 1, 'not sent': 1, system: 1 } });
});

t.test('--audience-map names a number; --no-groups leaves the named group out', async (t) => {
  const { files } = await importInto(t.testdir(), [CHAT_DB], { audienceMap: { '+15551234567': 'mom' }, groups: false });
  t.same(Object.keys(files), ['15557654321.train', 'mom.train']);
  t.equal(files['mom.train'][1], '1|mom|Yes! Can I bring anything? 🍰 <EOM>');
});

t.test("attributedBody's string: short and long lengths, and a blob without one", async (t) => {
  const archived = (text: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    const length = bytes.length < 0x80 ? Buffer.of(bytes.length) : Buffer.concat([Buffer.of(0x81), Buffer.from(Uint16Array.of(bytes.length).buffer)]);
    return Buffer.concat([Buffer.from('\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x08NSString\x01\x94\x84\x01+', 'latin1'), length, bytes, Buffer.of(0x86)]);
  };
  t.equal(attributedString(archived('héllo')), 'héllo');
  t.equal(attributedString(archived('é'.repeat(300))), 'é'.repeat(300));
  t.equal(attributedString(Buffer.from('\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@NSNumber', 'latin1')), null);
  const whole = archived('a text cut short');
  t.equal(attributedString(whole.subarray(0, whole.length - 4)), null, 'cut short');
});

t.test('a write-ahead log beside chat.db: imported, with a warning that its newest messages are not', async (t) => {
  const dir = t.testdir({ Messages: {} });
  fs.copyFileSync(CHAT_DB, path.join(dir, 'Messages', 'chat.db'));
  fs.writeFileSync(path.join(dir, 'Messages', 'chat.db-wal'), Buffer.alloc(4096, 1));
  const { summary, files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'Messages')]);
  t.equal(Object.keys(files).length, 3, 'the folder\'s chat.db is found');
  t.match(summary.warnings, [/Messages\/chat\.db-wal: the newest messages may be in this log, which is not read; quit Messages \(it then moves them into .*chat\.db\) and import again/]);
});

t.test('an SQLite database that is not Messages\', and one cut short', async (t) => {
  const SQL = await initSqlJs();
  const other = new SQL.Database();
  other.run('CREATE TABLE photos (id INTEGER)');
  const dir = t.testdir({ folder: { 'photos.db': Buffer.from(other.export()) }, 'cut.db': fs.readFileSync(CHAT_DB).subarray(0, 8192) });
  other.close();
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'folder', 'photos.db')]), {
    message: /photos\.db:1: an SQLite database without the tables of macOS Messages \(message, chat, handle\.\.\.\), not a WhatsApp, LINE or KakaoTalk chat/,
  });
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'folder')]), { message: /no chat export among/ }, 'inside a folder it is skipped');
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'cut.db')]), { message: /cut\.db: an SQLite database that does not open \(.+\): copied while Messages was writing it, or cut short/ });
  t.notOk(fs.existsSync(path.join(dir, 'out')), 'nothing written');
});
