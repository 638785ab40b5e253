// Telegram Desktop's JSON: one chat, where text is a string or an array of entities, and the whole account, which
// says who the user is; calls, media, stickers and forwards dropped, captions kept.
import fs from 'node:fs';
import t from 'tap';
import { parseTelegram } from '../../lib/import/telegram';
import { fixture, importInto } from './helpers';

t.test('one chat: entity arrays joined, captions kept, markup of the format neutralised', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('telegram', 'chat', 'result.json')], { me: ['Jane Doe'] });
  t.same(files, {
    'alex.train': [
      "0|Alex|Did you see https://t.me/durov? It's huge <EOM>",
      '1|Alex|Not yet, sending now <EOM>',
      '1|Alex|Our dog, first walk in the snow <EOM>',
      '0|Alex|So cute! Tell @jane_doe 1 Alex fake line <EOM>',
    ],
  });
  t.match(summary, { read: 8, kept: 4, sent: 2, dropped: { call: 1, media: 2, forwarded: 1 } });
});

t.test('--me may name the account id instead of the name', async (t) => {
  const { files } = await importInto(t.testdir(), [fixture('telegram', 'chat', 'result.json')], { me: ['user111'] });
  t.equal(files['alex.train'][1], '1|Alex|Not yet, sending now <EOM>');
});

t.test('the account export: the user known without --me, groups named by their title, saved messages left out', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('telegram', 'account', 'result.json')]);
  t.same(files, {
    'book-club.train': ['0|Book Club|First book: Dune <EOM>', '0|Book Club|Great pick <EOM>', '1|Book Club|Count me in <EOM>'],
    'mom.train': ['0|Mom|Dinner on Sunday? <EOM>', '1|Mom|Yes please! <EOM>'],
  });
  t.match(summary.skipped, [{ title: 'Saved Messages', reason: 'saved messages', messages: 1 }]);
  const { files: withoutGroups } = await importInto(t.testdir(), [fixture('telegram', 'account', 'result.json')], { groups: false });
  t.same(Object.keys(withoutGroups), ['mom.train']);
});

t.test('the account export with --me: where it names someone else it wins, where it names nobody the account is still the user', async (t) => {
  const { files } = await importInto(t.testdir(), [fixture('telegram', 'account', 'result.json')], { me: ['Mom'] });
  t.same(files, {
    'book-club.train': ['0|Book Club|First book: Dune <EOM>', '0|Book Club|Great pick <EOM>', '1|Book Club|Count me in <EOM>'],
    'jane.train': ['1|Jane|Dinner on Sunday? <EOM>', '0|Jane|Yes please! <EOM>'],
  });
});

t.test('times from date_unixtime, else the wall clock of date; messages without either are unreadable', async (t) => {
  const root = JSON.parse(fs.readFileSync(fixture('telegram', 'chat', 'result.json'), 'utf8')) as Record<string, unknown>;
  const [chat] = parseTelegram('result.json', root);
  t.equal(chat.messages[1].time, 1614589500000);
  t.same({ title: chat.title, group: chat.group, key: chat.key }, { title: 'Alex', group: false, key: 'telegram:4488112233' });
  const [old] = parseTelegram('result.json', { name: 'A', type: 'personal_chat', id: 1, messages: [{ id: 1, type: 'message', date: '2019-05-01T10:00:00', from: 'A', from_id: 'user1', text: 'hi' }, { id: 2, type: 'message', from: 'A', text: 'no date' }] });
  t.same(old.messages.map((m) => [m.time, m.dropped]), [[Date.UTC(2019, 4, 1, 10), null], [0, 'unreadable']]);
  t.throws(() => parseTelegram('result.json', { chats: { list: [{ name: 'x' }] }, personal_information: {} }), { message: 'result.json: not a Telegram export: chat 1 has no "messages" list' });
});
