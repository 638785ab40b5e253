// LINE's exported chat history: the English export (a byte-order mark, CRLF lines, a quoted message of several
// lines with a blank one and doubled quotes, stickers and photos, an unsent message, a call, 12-hour times), the
// Japanese one (午前/午後), groups told by the header, the newer English day line, and a line that is no message
// refused with file:line.
import path from 'node:path';
import t from 'tap';
import { looksLikeLine, parseLine } from '../../lib/import/line';
import { NOT_AN_EXPORT, fixture, importFolder, importInto } from './helpers';

t.test('the English export: the chat named by its header, quoted lines joined, media, calls and unsent messages dropped', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('line')], { me: ['Jane Doe'] });
  t.same(files, {
    'yuki.train': [
      '0|Yuki|Happy new year! <EOM>', '1|Yuki|Happy new year 🎍 <EOM>', '0|Yuki|Are you free on Saturday? We could go to the "onsen" <EOM>',
      "1|Yuki|Yes! Let's go <EOM>", '0|Yuki|Good morning <EOM>', '1|Yuki|Good night <EOM>',
    ],
  });
  t.same(summary.formats, { line: 1 });
  t.same(summary.dropped, { media: 2, call: 1, deleted: 1 });
  const chat = parseLine('x.txt', '[LINE] Chat history with Yuki\n\n2024/01/16(Tue)\n8:00 AM\tYuki\tGood morning\n8:02 PM\tJane\tGood night\n12:15 AM\tYuki\tlate\n');
  t.same(chat.messages.map((m) => [m.time, m.line]), [[Date.UTC(2024, 0, 16, 8, 0), 4], [Date.UTC(2024, 0, 16, 20, 2), 5], [Date.UTC(2024, 0, 16, 0, 15), 6]], 'times, 12 AM as midnight, and lines');
});

t.test('the Japanese export, groups by their header, and the newer English day line', async (t) => {
  const japanese = parseLine('ja.txt', '[LINE] 母とのトーク履歴\n保存日時：2024/01/20 21:03\n\n2024/01/15(月)\n午前10:23\t母\tあけましておめでとう\n午後1:05\t母\t[スタンプ]\n午後1:06\tJane\tメッセージの送信を取り消しました\n');
  t.same({ title: japanese.title, group: japanese.group }, { title: '母', group: false });
  t.same(japanese.messages.map((m) => [m.time, m.sender, m.dropped]), [
    [Date.UTC(2024, 0, 15, 10, 23), '母', null],
    [Date.UTC(2024, 0, 15, 13, 5), '母', 'media'],
    [Date.UTC(2024, 0, 15, 13, 6), 'Jane', 'deleted'],
  ]);
  t.same([parseLine('g.txt', '[LINE] 家族のトーク履歴\n').group, parseLine('g.txt', '[LINE] Chat history in Book Club\n').title], [true, 'Book Club']);
  const newer = parseLine('n.txt', '[LINE] Chat history in Book Club\nSaved on: 1/20/2024, 9:03 PM\n\nMon, 01/15/2024\n10:23 AM\tAna\tChapter 3 tonight?\n');
  t.same(newer.messages.map((m) => [m.time, m.text]), [[Date.UTC(2024, 0, 15, 10, 23), 'Chapter 3 tonight?']]);
});

t.test("an unsent message's notice is the whole text, the app's or after its sender's name: a message that ends in its words is kept", async (t) => {
  const chat = parseLine('x.txt', [
    '[LINE] Chat history with Yuki', '', '2024/01/15(Mon)',
    '11:04\tYuki\toops, I unsent a message', '11:05\t\tYuki unsent a message.', '11:06\tJane\tごめん、メッセージの送信を取り消しました',
    '11:07\tJane\tメッセージの送信を取り消しました', '11:08\tYuki\tYuki unsent a message.', '',
  ].join('\n'));
  t.same(chat.messages.map((m) => [m.text, m.dropped]), [
    ['oops, I unsent a message', null],
    ['Yuki unsent a message.', 'deleted'],
    ['ごめん、メッセージの送信を取り消しました', null],
    ['メッセージの送信を取り消しました', 'deleted'],
    ['Yuki unsent a message.', 'deleted'],
  ]);
});

t.test("the Thai export: its chat named by the header, its photos, videos, stickers and files dropped as media; a message in brackets is kept", async (t) => {
  const thai = parseLine('th.txt', '[LINE] ประวัติการสนทนากับ Yuki\n\n2024/01/15(จ.)\n10:23\tYuki\tสวัสดีปีใหม่\n10:24\tYuki\t[สติกเกอร์]\n10:25\tYuki\t[รูปภาพ]\n10:26\tYuki\t[วิดีโอ]\n10:27\tYuki\t[ไฟล์]\n10:28\tJane\t[สติกเกอร์] น่ารัก\n');
  t.equal(thai.title, 'Yuki');
  t.same(thai.messages.map((m) => m.dropped), [null, 'media', 'media', 'media', 'media', null]);
});

t.test('the newer English day line written day first, as a phone set so writes it: the day of the week tells the order', async (t) => {
  const text = [
    '[LINE] Chat history with Travel Friends', 'Saved on: 03/04/2026, 04:36PM', '',
    'Fri, 03/04/2026', '04:35PM\tAlex\tRamen tonight?', '04:36PM\tJane\tYes!', '',
    'Sun, 26/04/2026', '09:00AM\tAlex\tmorning', '',
  ].join('\n');
  const { files } = await importFolder(t, { 'chat.txt': text }, { me: ['Jane'] });
  t.same(files, { 'alex.train': ['0|Alex|Ramen tonight? <EOM>', '1|Alex|Yes! <EOM>', '0|Alex|morning <EOM>'] });
  t.same(parseLine('chat.txt', text).messages.map((m) => m.time), [Date.UTC(2026, 3, 3, 16, 35), Date.UTC(2026, 3, 3, 16, 36), Date.UTC(2026, 3, 26, 9, 0)]);
  t.same(parseLine('chat.txt', '[LINE] Chat history with Ana\n\nWed, 03/04/2026\n10:00\tAna\thi\n').messages.map((m) => m.time), [Date.UTC(2026, 2, 4, 10, 0)], 'month first where the day of the week says so');
});

t.test('messages under a day line in a form LINE does not write are refused with their file and line, not read as the header', async (t) => {
  const dir = t.testdir({ 'chat.txt': '[LINE] Chat history with Yuki\nSaved on: 2024/01/20 21:03\n\n15 janvier 2024\n10:23\tYuki\tHi\n' });
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'chat.txt')], { me: ['Jane'] }), {
    message: `${path.join(dir, 'chat.txt')}:5: a LINE message with no day line above it in a form LINE writes ("2024/01/15(Mon)", "Mon, 01/15/2024"): "10:23\\tYuki\\tHi"`,
  });
});

t.test('a line that is no message, after the first day, is refused with its file and line', async (t) => {
  const dir = t.testdir({ 'chat.txt': '[LINE] Chat history with Yuki\nSaved on: 2024/01/20 21:03\n\n2024/01/15(Mon)\n10:23\tYuki\tHi\n\nthis line is no message\n' });
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'chat.txt')], { me: ['Jane'] }), {
    message: `${path.join(dir, 'chat.txt')}:7: not a LINE message line (time, sender and text, tab-separated): "this line is no message"`,
  });
});

t.test('a group export without the header is told by its content when its first message is a long paragraph', (t) => {
  const paragraph = 'All the notes from the meeting. '.repeat(200);
  t.ok(looksLikeLine(`2024/01/15(Mon)\n10:23\tAna\t${paragraph}\n10:25\tJane\tthanks!\n`));
  t.end();
});

t.test('told by its content: a group export without the header is LINE; notes that open with a date are not', async (t) => {
  const { files, summary } = await importFolder(t, {
    'group.txt': '2024/01/15(Mon)\n10:23\tAna\tChapter 3 tonight?\n10:25\tJane\tyes!\n',
    'notes.txt': '2024/01/15\n10:00\tdentist\nbuy milk\n',
  }, { me: ['Jane'] });
  t.same(files, { 'ana.train': ['0|Ana|Chapter 3 tonight? <EOM>', '1|Ana|yes! <EOM>'] });
  t.match(summary.warnings, [NOT_AN_EXPORT]);
});
