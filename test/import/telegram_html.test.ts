// Telegram Desktop's HTML export: a chat over two pages (test/fixtures/exports/telegram_html/, its markup as the app
// writes it, with the same chat's result.json beside) gives the bytes its JSON export gives; joined messages take
// their sender, forwarded ones, media without a caption, calls and the app's notices are dropped as in the JSON;
// zipped, one page named alone, pages past the ninth, groups, older pages without a time zone, the export "in HTML
// and JSON", and a date that cannot be read.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { importChats } from '../../lib/import';
import { parseTelegram } from '../../lib/import/telegram';
import { parseTelegramHtml } from '../../lib/import/telegram_html';
import { REPO, fixture, importInto } from './helpers';

const EXPORT = fixture('telegram_html', 'ChatExport_2024-03-04');
const JSON_EXPORT = fixture('telegram_html', 'json', 'result.json');

// A page laid out as the app lays it out, around the messages' markup.
function page(chat: string, history: string): string {
  return `<!DOCTYPE html>\n<html>\n <body onload="CheckLocation();">\n  <div class="page_wrap">\n   <div class="page_header">\n    <div class="content">\n     <div class="text bold">\n${chat}\n     </div>\n    </div>\n   </div>\n` +
    `   <div class="page_body chat_page">\n    <div class="history">\n${history}    </div>\n   </div>\n  </div>\n </body>\n</html>\n`;
}

// A message: its date's title, its sender (null: joined to the run of the one before) and its text's markup.
function message(title: string, from: string | null, text: string): string {
  const fromName = from === null ? '' : `       <div class="from_name">\n${from}\n       </div>\n`;
  return `     <div class="message default clearfix${from === null ? ' joined' : ''}" id="message1">\n      <div class="body">\n` +
    `       <div class="pull_right date details" title="${title}">\n00:00\n       </div>\n${fromName}       <div class="text">\n${text}\n       </div>\n      </div>\n     </div>\n`;
}

t.test('the HTML export over two pages gives the bytes of the JSON export of the same chat', async (t) => {
  const dir = t.testdir();
  const html = await importInto(path.join(dir, 'html'), [EXPORT], { me: ['Jane Doe'] });
  const json = await importInto(path.join(dir, 'json'), [JSON_EXPORT], { me: ['Jane Doe'] });
  t.same(html.files, {
    'mia-rossi.train': [
      '0|Mia Rossi|Hey Jane! Are we still on for Saturday? <EOM>',
      '0|Mia Rossi|I found a place: https://maps.example.com/trattoria <EOM>',
      "1|Mia Rossi|Yes!! 🎉 Can't wait <EOM>",
      '0|Mia Rossi|The terrace "La Pergola" & its view from the table <EOM>',
      '1|Mia Rossi|Looks amazing @mia_rossi 😍 <EOM>',
      '1|Mia Rossi|See you at 8 Bring cash 💶 ok? <EOM>',
      '0|Mia Rossi|Thanks for yesterday ❤️ <3 Tiramisù was the best <EOM>',
    ],
  });
  t.equal(fs.readFileSync(path.join(dir, 'html', 'mia-rossi.train'), 'utf8'), fs.readFileSync(path.join(dir, 'json', 'mia-rossi.train'), 'utf8'));
  t.match(html.summary, { read: 14, kept: 7, sent: 3, dropped: { system: 2, media: 3, forwarded: 1, call: 1 }, formats: { telegram: 2 } });
  t.same({ ...html.summary, formats: {}, audiences: [], out: '', files: [] }, { ...json.summary, formats: {}, audiences: [], out: '', files: [] }, 'the same counts, drop by drop');
  t.same(html.summary.warnings, [], 'the stylesheet and photos are not read');
});

t.test('a page read alone: joined messages take the sender before them, times are the JSON export\'s, lines are the page\'s', async (t) => {
  const [chat] = parseTelegram('result.json', JSON.parse(fs.readFileSync(JSON_EXPORT, 'utf8')) as Record<string, unknown>);
  const first = parseTelegramHtml('messages.html', fs.readFileSync(path.join(EXPORT, 'messages.html'), 'utf8'));
  if (!first) throw new Error('messages.html read as no Telegram page');
  t.same({ title: first.title, group: first.group, format: first.format }, { title: 'Mia Rossi', group: false, format: 'telegram' });
  t.same(first.messages.map((m) => [m.sender, m.dropped]), [
    ['', 'system'], ['Mia Rossi', null], ['Mia Rossi', null], ['Jane Doe', null], ['Jane Doe', 'media'],
    ['Mia Rossi', null], ['Mia Rossi', 'forwarded'], ['Jane Doe', null], ['Mia Rossi', 'call'],
  ]);
  t.same(first.messages.slice(1).map((m) => m.time), chat.messages.slice(1, 9).map((m) => m.time), 'the wall clock less the offset of its title');
  t.same(first.messages.map((m) => m.text).slice(3, 4), ["Yes!! 🎉\nCan't wait"], 'line breaks, entities and markup');
  t.same(first.messages.slice(0, 3).map((m) => m.line), [46, 54, 86]);
});

t.test('zipped, the export reads as its folder; one page named alone is read alone', async (t) => {
  const dir = t.testdir();
  const folder = await importInto(path.join(dir, 'folder'), [EXPORT], { me: ['Jane Doe'] });
  const zipped = await importInto(path.join(dir, 'zipped'), [path.join(REPO, 'test', 'fixtures', 'zips', 'ChatExport_2024-03-04.zip')], { me: ['Jane Doe'] });
  t.same(zipped.files, folder.files);
  const second = await importInto(path.join(dir, 'second'), [path.join(EXPORT, 'messages2.html')], { me: ['Jane Doe'] });
  t.same(second.files, { 'mia-rossi.train': ['1|Mia Rossi|See you at 8 Bring cash 💶 ok? <EOM>', '0|Mia Rossi|Thanks for yesterday ❤️ <3 Tiramisù was the best <EOM>'] });
  t.match(second.summary, { read: 5, dropped: { media: 2, system: 1 } });
});

t.test('pages in their order, messages10.html after messages9.html', async (t) => {
  const pages: Record<string, string> = {};
  // Every message at one time: only the pages' order orders them.
  for (let n = 1; n <= 11; n++) pages[n === 1 ? 'messages.html' : `messages${n}.html`] = page('Ana', message('05.01.2024 10:00:00 UTC+00:00', n % 2 ? 'Ana' : 'Jane', `page ${n}`));
  const dir = t.testdir({ ChatExport_2024: pages });
  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'ChatExport_2024')], { me: ['Jane'] });
  t.same(files['ana.train'].map((line) => line.replace(/^\d\|Ana\|| <EOM>$/g, '')), Array.from({ length: 11 }, (_, i) => `page ${i + 1}`));
});

t.test('groups, told by a title that names none of the senders; pages without a time zone; bots and voice chats', async (t) => {
  const voiceChat = '     <div class="message service" id="message7">\n      <div class="body details">\nAna started voice chat (312 seconds)\n      </div>\n     </div>\n';
  const group = parseTelegramHtml('messages.html', page('Book Club', [
    message('03.02.2021 12:01:00', 'Ana', 'First book: <strong>Dune</strong>'),
    message('03.02.2021 12:02:00', 'Ben via @gif', 'Great pick'),
    voiceChat,
    message('03.02.2021 12:40:00 UTC', 'Jane', 'Count me in'),
  ].join('')));
  t.same(group && { title: group.title, group: group.group }, { title: 'Book Club', group: true });
  t.same(group?.messages.map((m) => [m.time, m.sender, m.dropped]), [
    [Date.UTC(2021, 1, 3, 12, 1), 'Ana', null], [Date.UTC(2021, 1, 3, 12, 2), 'Ben', null], [Date.UTC(2021, 1, 3, 12, 2), 'Ana', 'call'], [Date.UTC(2021, 1, 3, 12, 40), 'Jane', null],
  ]);
  const dir = t.testdir({ 'Book Club': { 'messages.html': page('Book Club', message('03.02.2021 12:01:00 UTC-05:00', 'Ana', 'hi') + message('03.02.2021 12:02:00 UTC-05:00', 'Jane', 'hello')) } });
  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'Book Club')], { me: ['Jane'] });
  t.same(files, { 'book-club.train': ['0|Book Club|hi <EOM>', '1|Book Club|hello <EOM>'] }, 'two senders, neither the chat\'s name: a group');
  t.equal(parseTelegramHtml('messages.html', page('Ana', message('03.02.2021 12:01:00 UTC-05:00', 'Jane', 'hi')))?.messages[0].time, Date.UTC(2021, 1, 3, 17, 1));
  t.equal(parseTelegramHtml('messages.html', page('Ana', message('03.02.2021 12:01:00', 'Jane', 'hi')))?.group, null, 'one sender: --me decides');
});

t.test('an export made "in HTML and JSON" is read from its JSON only', async (t) => {
  const pageFile = fs.readFileSync(path.join(EXPORT, 'messages.html'));
  const json = fs.readFileSync(JSON_EXPORT);
  const dir = t.testdir({
    chat: { 'messages.html': pageFile, 'result.json': json },
    account: { 'result.json': json, chats: { chat_001: { 'messages.html': pageFile } } },
  });
  for (const folder of ['chat', 'account']) {
    const { summary } = await importInto(path.join(dir, `out-${folder}`), [path.join(dir, folder)], { me: ['Jane Doe'] });
    t.match(summary, { formats: { telegram: 1 }, read: 14 }, folder);
  }
});

t.test('a date that cannot be read stops the import at its file and line; a page of no chat is no Telegram export', async (t) => {
  const dir = t.testdir({ 'messages.html': page('Ana', message('03.02.2021 12:01:00 UTC+01:00', 'Ana', 'hi') + message('Feb 3, 2021', null, 'bye')) });
  await t.rejects(importChats([path.join(dir, 'messages.html')], { out: path.join(dir, 'out'), me: ['Jane'] }), {
    message: `${path.join(dir, 'messages.html')}:27: a message whose time cannot be read: its date's title is "Feb 3, 2021", not "dd.mm.yyyy hh:mm:ss UTC+hh:mm" as Telegram Desktop writes it`,
  });
  t.equal(parseTelegramHtml('export_results.html', '<!DOCTYPE html>\n<html><body><div class="page_wrap"><div class="page_body"><div class="personal_info clearfix"></div></div></div></body></html>\n'), null);
});

t.test('pages of two chats in one folder make two chats, each with its own senders; the pages of one chat still join', async (t) => {
  const dir = t.testdir({
    'mia.html': page('Mia Rossi', message('05.01.2024 10:00:00 UTC+00:00', 'Mia Rossi', 'pizza?') + message('05.01.2024 10:01:00 UTC+00:00', 'Jane Doe', 'yes')),
    'tom.html': page('Tom Lee', message('05.01.2024 11:00:00 UTC+00:00', 'Tom Lee', 'tennis?') + message('05.01.2024 11:01:00 UTC+00:00', 'Jane Doe', 'no')),
    'messages.html': page('Ana', message('05.01.2024 12:00:00 UTC+00:00', 'Ana', 'page one')),
    'messages2.html': page('Ana', message('05.01.2024 12:01:00 UTC+00:00', 'Jane Doe', 'page two')),
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), ['mia.html', 'tom.html', 'messages.html', 'messages2.html'].map((name) => path.join(dir, name)), { me: ['Jane Doe'] });
  t.same(files, {
    'ana.train': ['0|Ana|page one <EOM>', '1|Ana|page two <EOM>'],
    'mia-rossi.train': ['0|Mia Rossi|pizza? <EOM>', '1|Mia Rossi|yes <EOM>'],
    'tom-lee.train': ['0|Tom Lee|tennis? <EOM>', '1|Tom Lee|no <EOM>'],
  });
  t.same(summary.audiences.map((a) => [a.audience, a.conversations]).sort(), [['Ana', 1], ['Mia Rossi', 1], ['Tom Lee', 1]]);
});
