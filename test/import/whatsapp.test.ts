// WhatsApp's "Export chat" text: Android and iOS lines, 12- and 24-hour clocks, locales' date orders, multi-line
// messages, the app's notices, media and deletions, direction marks; the fixtures imported line by line.
import path from 'node:path';
import t, { type Test } from 'tap';
import { ChatImportError } from '../../lib/import';
import { parseWhatsApp } from '../../lib/import/whatsapp';
import { type Imported, fixture, importFolder, importInto } from './helpers';

const iso = (time: number): string => new Date(time).toISOString().slice(0, 19);
// Jane Doe's import of an export of her chat with Mom, its lines given.
const importChatWithMom = (t: Test, lines: string[]): Promise<Imported> => importFolder(t, { 'WhatsApp Chat with Mom.txt': lines.join('\n') }, { me: ['Jane Doe'] });

t.test('Android, en-US: 12-hour clock, notices and media dropped, multi-line messages joined, captions kept', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'android-en-us')], { me: ['Jane Doe'] });
  t.same(files, {
    'mom.train': [
      "0|Mom|Happy New Year's Eve! 🎉 <EOM>",
      '0|Mom|Are you coming tomorrow? <EOM>',
      "1|Mom|Yes! I'll bring the cake <EOM>",
      '0|Mom|Lovely. Remember: - milk - eggs flour <EOM>',
      '1|Mom|On my way <EOM>',
      '0|Mom|Drive safe ok <EOM>',
      "0|Mom|Look who's here! <EOM>",
    ],
  });
  t.match(summary, { read: 12, kept: 7, sent: 2, dropped: { system: 2, media: 2, deleted: 1 }, formats: { whatsapp: 1 } });
});

t.test('Android, German: day first, 24-hour clock, CRLF line ends, German notices', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'android-de')], { me: ['Jane Doe'] });
  t.same(files, {
    'papa.train': ['0|Papa|Frohes neues Jahr! <EOM>', '1|Papa|Danke, dir auch 😊 <EOM>', '1|Papa|Wann kommst du? <EOM>', '0|Papa|Um 8 <EOM>'],
  });
  t.same(summary.dropped, { system: 1, media: 1, deleted: 1 });
});

t.test('iOS group chat: the group named by its folder, notices in its name, unsaved contacts "~ Sam"', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'WhatsApp Chat - Family')], { me: ['Jane Doe'] });
  t.same(files, {
    'family.train': [
      '0|Family|Welcome to the family chat! <EOM>',
      '1|Family|Haha, nice photo Dad <EOM>',
      '0|Family|Thanks! I took it this morning. <EOM>',
      '1|Family|Happy New Year everyone! 🥂 <EOM>',
      '0|Family|Happy new year!! <EOM>',
    ],
  });
  t.same(summary.dropped, { system: 4, media: 2, deleted: 1, call: 1 });
  const { files: none, summary: skipped } = await importInto(t.testdir(), [fixture('whatsapp', 'WhatsApp Chat - Family')], { me: ['Jane Doe'], groups: false });
  t.same(none, {});
  t.match(skipped.skipped, [{ title: 'Family', reason: 'group chat', messages: 13, senders: ['Dad', 'Mom', 'Sam'] }]);
});

t.test('iOS, en-US: dates that fit either order read month first, as they go forward; no title: the other person', async (t) => {
  const chat = parseWhatsApp('_chat.txt', (await import('node:fs')).readFileSync(fixture('whatsapp', 'ios-en-us', '_chat.txt'), 'utf8'));
  t.same(chat.messages.map((m) => iso(m.time)), ['2021-01-02T09:05:12', '2021-01-02T09:05:12', '2021-01-02T09:07:45', '2021-01-03T12:01:00', '2021-01-10T19:45:30', '2021-01-10T19:46:02', '2021-02-01T00:00:00']);
  t.same(chat.messages.map((m) => m.dropped), ['system', null, null, 'media', null, null, 'call']);
  const { files } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-en-us')], { me: ['jane doe'] });
  t.same(Object.keys(files), ['sam-lee.train']);
  t.equal(files['sam-lee.train'][0], '0|Sam Lee|Hey, are we still on for lunch? <EOM>');
});

t.test('iOS, Finnish: "klo" between date and time, dots in the time', async (t) => {
  const { files } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-fi')], { me: ['Jane Doe'] });
  t.same(files, { 'matti.train': ['0|Matti|Moi! Mitä kuuluu? <EOM>', '1|Matti|Hyvää, kiitos <EOM>'] });
});

t.test('Android, Russian: media, deletions, missed calls and a message not yet received dropped; a caption kept', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'android-ru')], { me: ['Jane Doe'] });
  t.same(files, {
    'мама.train': ['0|Мама|Привет! Как дела? <EOM>', '1|Мама|Всё хорошо, спасибо <EOM>', '1|Мама|Перезвоню вечером <EOM>', '0|Мама|Это наш кот <EOM>'],
  });
  t.same(summary.dropped, { system: 1, media: 1, deleted: 2, call: 2, unreadable: 1 });
});

t.test('Android, Czech: media, a file attached, deletions with their full stop, a missed call', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'android-cs')], { me: ['Jane Doe'] });
  t.same(files, { 'máma.train': ['0|Máma|Ahoj, jak se máš? <EOM>', '1|Máma|Dobře, díky <EOM>', '0|Máma|Zavolej mi <EOM>'] });
  t.same(summary.dropped, { system: 1, media: 2, deleted: 2, call: 1 });
});

t.test('iOS, Arabic: Arabic-Indic digits, right-to-left marks in the date, ص and م; the app\'s words open with a right-to-left mark', async (t) => {
  const file = fixture('whatsapp', 'ios-ar', 'WhatsApp Chat - ماما', '_chat.txt');
  const chat = parseWhatsApp(file, (await import('node:fs')).readFileSync(file, 'utf8'));
  t.same(chat.messages.map((m) => [iso(m.time), m.sender, m.dropped]), [
    ['2022-03-18T14:56:00', 'ماما', 'system'],
    ['2022-03-27T21:41:35', 'ماما', null],
    ['2022-03-27T21:41:55', 'ماما', 'system'],
    ['2022-03-27T21:43:10', 'Jane Doe', null],
    ['2022-03-27T21:50:54', 'Jane Doe', 'deleted'],
    ['2022-03-27T21:54:45', 'ماما', 'deleted'],
    ['2022-03-28T08:05:00', 'ماما', 'call'],
    ['2022-03-28T08:06:12', 'ماما', null],
  ]);
  const { files } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-ar')], { me: ['Jane Doe'] });
  t.same(files, { 'ماما.train': ['0|ماما|مرحبا حبيبتي <EOM>', '1|ماما|شكرا ماما <EOM>', '0|ماما|صباح الخير <EOM>'] });
  const late = '[٢٧\u200f/٣\u200f/٢٠٢٢، ٩:٤١:٣٥\u00a0م] ماما: مرحبا\n[٢٧\u200f/٣\u200f/٢٠٢٢، ١٣:٦٠:٠٠\u00a0م] ماما: مرحبا\n';
  t.throws(() => parseWhatsApp('_chat.txt', late), { name: 'ChatImportError', file: '_chat.txt', line: 2, message: /^_chat\.txt:2: a time that does not exist: / });
});

t.test('iOS, Vietnamese: the time before the date', async (t) => {
  const file = fixture('whatsapp', 'ios-vi', 'WhatsApp Chat - Mẹ', '_chat.txt');
  const chat = parseWhatsApp(file, (await import('node:fs')).readFileSync(file, 'utf8'));
  t.same(chat.messages.map((m) => [iso(m.time), m.dropped]), [
    ['2022-03-18T14:56:01', 'system'],
    ['2022-03-27T21:41:35', null],
    ['2022-03-27T21:41:55', 'system'],
    ['2022-03-27T21:42:10', null],
    ['2022-03-27T21:54:45', 'deleted'],
    ['2022-03-27T21:55:12', 'call'],
    ['2022-03-27T21:56:02', null],
  ]);
  const { files } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-vi')], { me: ['Jane Doe'] });
  t.same(files, { 'mẹ.train': ['0|Mẹ|Con ăn cơm chưa? <EOM>', '1|Mẹ|Con ăn rồi ạ <EOM>', '0|Mẹ|Ngủ ngon nhé <EOM>'] });
});

t.test('the lines of locales: date orders, clocks, separators, direction marks', async (t) => {
  const cases: [string, string, string, string][] = [
    ['31/12/2020, 22:15 - Mamá: Hola', '2020-12-31T22:15:00', 'Mamá', 'Hola'],
    ['31/12/20 22:15 - Mamá: Hola', '2020-12-31T22:15:00', 'Mamá', 'Hola'],
    ['2020-12-31, 10:15 PM - Mom: Hi', '2020-12-31T22:15:00', 'Mom', 'Hi'],
    ['[2020/12/31 22:15:03] Mom: Hi', '2020-12-31T22:15:03', 'Mom', 'Hi'],
    ['[31.12.20, 22:15:03] Mutti: Hallo!', '2020-12-31T22:15:03', 'Mutti', 'Hallo!'],
    ['31/12/2020 à 22:15 - Maman: Salut', '2020-12-31T22:15:00', 'Maman', 'Salut'],
    ['[12.3.2022 klo 14.08.18] Matti: Moi', '2022-03-12T14:08:18', 'Matti', 'Moi'],
    ['2020. 12. 31. 오후 10:15 - 엄마: 새해 복 많이 받아', '2020-12-31T22:15:00', '엄마', '새해 복 많이 받아'],
    ['13/06/18, 12:55 a. m. - Luz: hola', '2018-06-13T00:55:00', 'Luz', 'hola'],
    ['12/31/20, 12:05\u202fPM - Mom: Hi', '2020-12-31T12:05:00', 'Mom', 'Hi'],
    ['13.06.18 21.25.15: Anna: moi', '2018-06-13T21:25:15', 'Anna', 'moi'],
    ['\u200e[31/12/2020, 22:15:03] \u200e~\u202fSam: Hi \u200fthere', '2020-12-31T22:15:03', 'Sam', 'Hi \u200fthere'],
    ['[\u200f18\u200f/3\u200f/2022، 14:56:01] ماما: مرحبا', '2022-03-18T14:56:01', 'ماما', 'مرحبا'],
    ['[١٨\u200f/٣\u200f/٢٠٢٢، ٢:٥٦:٠١\u00a0ص] ماما: مرحبا', '2022-03-18T02:56:01', 'ماما', 'مرحبا'],
    ['[۱۸/۳/۲۰۲۲، ۱۴:۵۶:۰۱] مامان: سلام', '2022-03-18T14:56:01', 'مامان', 'سلام'],
    ['[14:56:01, 18/3/22] Mẹ: Chào con', '2022-03-18T14:56:01', 'Mẹ', 'Chào con'],
  ];
  for (const [line, time, sender, text] of cases) {
    const [message] = parseWhatsApp('chat.txt', `${line}\n`).messages;
    t.same({ time: iso(message.time), sender: message.sender, text: message.text, dropped: message.dropped }, { time, sender, text, dropped: null }, line);
  }
});

t.test('a date order no date decides: the one under which the chat goes forward, or --date-order', async (t) => {
  const text = ['1/2/21, 10:00 - A: one', '5/2/21, 10:00 - B: two', '1/3/21, 10:00 - A: three', ''].join('\n');
  t.same(parseWhatsApp('chat.txt', text).messages.map((m) => iso(m.time).slice(0, 10)), ['2021-02-01', '2021-02-05', '2021-03-01']);
  t.same(parseWhatsApp('chat.txt', text, 'mdy').messages.map((m) => iso(m.time).slice(0, 10)), ['2021-01-02', '2021-05-02', '2021-01-03']);
  t.throws(() => parseWhatsApp('chat.txt', '13/1/21, 10:00 - A: one\n', 'mdy'), { name: 'ChatImportError', file: 'chat.txt', line: 1, message: /^chat\.txt:1: a date that does not exist read as mdy \(13\/1\/21\); give the date order with --date-order$/ });
});

t.test('messages the app wrote: deleted and edited in several languages, a sender with nothing to say', async (t) => {
  const text = [
    '1/1/21, 10:00 - Mom: Se eliminó este mensaje.',
    '1/1/21, 10:01 - Mom: Ce message a été supprimé',
    '1/1/21, 10:02 - Mom: <Multimedia omitido>',
    '1/1/21, 10:03 - Mom: Fixed it <This message was edited>',
    '1/1/21, 10:04 - Mom:',
    '1/1/21, 10:05 - Mom added Dad',
    'and a line below a notice',
    '',
  ].join('\n');
  t.same(
    parseWhatsApp('chat.txt', text).messages.map((m) => [m.sender, m.text, m.dropped]),
    [['Mom', '', 'deleted'], ['Mom', '', 'deleted'], ['Mom', '', 'media'], ['Mom', 'Fixed it', null], ['Mom', '', null], ['', '', 'system']],
  );
});

t.test('media and deleted messages in the languages of the phones that export most, and any "<... omitted>"', async (t) => {
  const lines = [
    '04.03.2024, 18:20 - Мама: <Без медиафайлов>',
    '04.03.2024, 18:21 - Мама: Данное сообщение удалено',
    '04.03.2024, 18:22 - Annem: <Medya dahil edilmedi>',
    '04.03.2024, 18:23 - Annem: Bu mesaj silindi',
    '04.03.2024, 18:24 - Ibu: <Media tidak disertakan>',
    '04.03.2024, 18:25 - Ibu: Pesan ini telah dihapus',
    '04.03.2024, 18:26 - Mama: <Pominięto multimedia>',
    '04.03.2024, 18:27 - Mama: Ta wiadomość została usunięta',
    '04.03.2024, 18:28 - ماما: <تم استبعاد الوسائط>',
    '04.03.2024, 18:29 - ماما: تم حذف هذه الرسالة',
    '04.03.2024, 18:30 - Mom: <Video note omitted>',
    '04.03.2024, 18:31 - Mamá: <Sticker omitido>',
    '04.03.2024, 18:32 - Mom: <3 omitted nothing',
    '',
  ];
  t.same(
    parseWhatsApp('chat.txt', lines.join('\n')).messages.map((m) => m.dropped),
    ['media', 'deleted', 'media', 'deleted', 'media', 'deleted', 'media', 'deleted', 'media', 'deleted', 'media', 'media', null],
  );
});

t.test('Android placeholders, missed calls and messages not yet received in more languages; the same words within a message are kept', async (t) => {
  const lines: [string, string | null][] = [
    ['Мама: <Медіа пропущено>', 'media'],
    ['Мама: Це повідомлення було видалено', 'deleted'],
    ['Мама: Пропущений відеодзвінок', 'call'],
    ['엄마: <미디어 파일 제외됨>', 'media'],
    ['엄마: 이 메시지는 삭제되었습니다', 'deleted'],
    ['엄마: 부재중 전화', 'call'],
    ['妈妈: <省略影音内容>', 'media'],
    ['妈妈: IMG-20240304-WA0001.jpg (文件附件)', 'media'],
    ['妈妈: 未接语音通话', 'call'],
    ['Мама: IMG-20240304-WA0001.jpg (файл добавлен)', 'media'],
    ['엄마: IMG-20240304-WA0002.jpg (파일 첨부됨)', 'media'],
    ['Mamá: IMG-20240304-WA0003.jpg (archivo adjuntado)', 'media'],
    ['お母さん: IMG-20240304-WA0004.jpg (添付ファイル有り)', 'media'],
    ['Mẹ: IMG-20240304-WA0005.jpg (tệp đính kèm)', 'media'],
    ['Annem: IMG-20240304-WA0006.jpg (dosya ekli)', 'media'],
    ['媽媽: 此訊息已刪除。', 'deleted'],
    ['お母さん: このメッセージは削除されました', 'deleted'],
    ['お母さん: メッセージを待っています。しばらく時間がかかることがあります。', 'unreadable'],
    ['Mẹ: Bạn đã xoá tin nhắn này', 'deleted'],
    ['Mamá: Videollamada perdida', 'call'],
    ['Mamma: Chiamata vocale persa', 'call'],
    ['Maman: Appel vidéo manqué', 'call'],
    ['Mãe: Chamada de voz perdida', 'call'],
    ['Mutti: Warte auf diese Nachricht. Das kann einen Moment dauern.', 'unreadable'],
    ['Annem: Cevapsız sesli arama', 'call'],
    ['Ibu: Panggilan video tak terjawab', 'call'],
    ['Mama: U hebt dit bericht verwijderd', 'deleted'],
    ['ماما: أنت حذفت هذه الرسالة', 'deleted'],
    ['Mom: Missed voice call', 'call'],
    ['Mom: Missed voice call, call me back', null],
    ['Мама: Пропущенный аудиозвонок от папы', null],
  ];
  const text = lines.map(([line], i) => `04.03.24, 18:${String(10 + i).padStart(2, '0')} - ${line}\n`).join('');
  t.same(parseWhatsApp('chat.txt', text).messages.map((m) => m.dropped), lines.map(([, dropped]) => dropped));
});

t.test("iPhone: a document named before its placeholder is media; the same words typed are a message", async (t) => {
  const text = [
    '[3/4/24, 6:20:01 PM] Mom: report.pdf • 3 pages \u200edocument omitted',
    '[3/4/24, 6:20:02 PM] Mom: \u200ePhoto.pdf \u200edocument omitted',
    '[3/4/24, 6:21:01 PM] Jane Doe: my report document omitted a page',
    '[3/4/24, 6:21:02 PM] Jane Doe: report.pdf document omitted',
    '',
  ].join('\n');
  t.same(parseWhatsApp('_chat.txt', text).messages.map((m) => [m.text, m.dropped]), [['', 'media'], ['', 'media'], ['my report document omitted a page', null], ['report.pdf document omitted', null]]);
});

t.test('iPhone: a document after its name and a direction mark in the languages of the phones that export most, and with media', async (t) => {
  const documents = [
    'Template.docx \u200e<attached: 00000048-Template.docx>', 'Template.docx \u200eDokument weggelassen', 'Template.docx \u200edocumento omitido',
    'Template.docx \u200edocumento não revelado', 'Template.docx \u200edocument manquant', 'Template.docx \u200edocumento omesso',
    'Template.docx \u200eдокумент отсутствует', 'Template.docx \u200eдокумент пропущено', 'Template.docx \u200edokumen tidak disertakan',
    'Template.docx \u200edokument vynechán', 'Template.docx \u200fلم يتم إدراج المستند', 'Template.docx \u200eドキュメントは含まれていません',
    'Template.docx \u200eđã bỏ qua tài liệu', 'Template.docx \u200eडॉक्यूमेंट छो\u095cा गया', 'Resume.pdf • \u200e2 Seiten \u200eDokument weggelassen',
  ];
  const text = documents.map((line, i) => `[3/27/22, 21:${String(10 + i).padStart(2, '0')}:00] Dmitry S: ${line}\n`).join('');
  t.same(parseWhatsApp('_chat.txt', text).messages.map((m) => m.dropped), documents.map(() => 'media'));
  t.same(parseWhatsApp('_chat.txt', '[3/27/22, 21:10:00] Dmitry S: the Dokument weggelassen\n').messages.map((m) => m.dropped), [null], 'without the mark, words of a message');
});

t.test("an iPhone's placeholders open with a direction mark: the same words typed without it are messages, in every language", async (t) => {
  const words = ['document manquant', 'Cuộc gọi nhỡ', 'Missed voice call', 'document omitted', 'image omitted', 'This message was deleted.', 'Waiting for this message. This may take a while.'];
  const lines = [
    ...words.map((typed, i) => `[3/4/24, 6:2${i}:00 PM] Jane Doe: ${typed}`),
    ...words.map((placeholder, i) => `\u200e[3/4/24, 6:3${i}:00 PM] Mom: \u200e${placeholder}`),
    '[3/4/24, 6:40:00 PM] Mom: \u200e<Anhang: 00000016-PHOTO-2024-03-04-18-40-00.jpg>',
    '[3/4/24, 6:41:00 PM] Mom: \u200e<pièce jointe : 00000017-AUDIO-2024-03-04-18-41-00.opus>',
    '[3/4/24, 6:42:00 PM] Mom: See you at 7 \u200e<This message was edited>',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': [...words.map((typed) => `1|Mom|${typed} <EOM>`), '0|Mom|See you at 7 <EOM>'] });
  t.match(summary, { read: 17, kept: 8, dropped: { media: 5, call: 2, deleted: 1, unreadable: 1 } });
});

// Older iPhones wrote no direction mark before their words (a file without any), or the date without brackets and
// the placeholder in angle brackets, or a file of an export with media after its name.
t.test("an older iPhone's export: its placeholders without direction marks, in angle brackets, or after a file's name; a message that holds the same words is kept", async (t) => {
  const unmarked = [
    '[04.03.19, 18:20:00] Mom: image omitted',
    '[04.03.19, 18:20:01] Mom: video omitted',
    '[04.03.19, 18:20:02] Mom: document omitted',
    '[04.03.19, 18:20:03] Mom: This message was deleted.',
    '[04.03.19, 18:20:04] Mom: Missed voice call',
    '[04.03.19, 18:20:05] Mom: <attached: 00000016-PHOTO-2019-03-04-18-20-05.jpg>',
    '[04.03.19, 18:21:00] Jane Doe: nice image omitted',
    '[04.03.19, 18:21:01] Jane Doe: my report document omitted a page',
    '',
  ];
  const older = [
    '9/1/17, 6:42:27 PM: Mom: Rückzahlung China.pdf • \u200e1 page <\u200edocument omitted>',
    '9/1/17, 6:42:28 PM: Mom: <\u200eimage omitted>',
    '9/1/17, 6:43:00 PM: Mom: 2017-09-01-PHOTO-00004762.jpg <attached>',
    '9/1/17, 6:44:00 PM: Jane Doe: the document omitted> was wrong',
    '',
  ];
  const { files, summary } = await importFolder(t, { '_chat.txt': unmarked.join('\n'), 'WhatsApp Chat with Mom.txt': older.join('\n') }, { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['1|Mom|the document omitted> was wrong <EOM>', '', '1|Mom|nice image omitted <EOM>', '1|Mom|my report document omitted a page <EOM>'] });
  t.match(summary, { read: 12, kept: 3, dropped: { media: 7, deleted: 1, call: 1 } });
  // Where the export marks the app's words, the same words without a mark were typed.
  const marked = parseWhatsApp('_chat.txt', `\u200e[04.03.19, 18:19:00] Mom: \u200eMessages and calls are end-to-end encrypted.\n${unmarked.join('\n')}`);
  t.same(marked.messages.map((m) => m.dropped), ['system', null, null, null, null, null, 'media', null, null]);
});

// An older iPhone wrote the notice that opens every chat as a message of the chat's name, without a direction mark.
t.test("an older iPhone's notice that the chat is encrypted, in the phone's language, is the app's; a message that begins with its words is kept", async (t) => {
  const notices = [
    '[04.03.19, 18:19:00] Mom: Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them.',
    '[04.03.19, 18:19:01] Mom: Messages to this chat and calls are now secured with end-to-end encryption. Tap for more info.',
    '[04.03.19, 18:19:02] Mom: Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt. Niemand außerhalb dieses Chats kann sie lesen oder anhören, nicht einmal WhatsApp.',
    '[04.03.19, 18:19:03] Mom: Los mensajes y las llamadas están cifrados de extremo a extremo. Nadie fuera de este chat, ni siquiera WhatsApp, puede leerlos ni escucharlos.',
    '[04.03.19, 18:19:04] Mom: Les messages et les appels sont chiffrés de bout en bout. Aucun tiers, pas même WhatsApp, ne peut les lire ou les écouter.',
    '[04.03.19, 18:19:05] Mom: As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta e ficam somente entre você e os participantes desta conversa.',
    '[04.03.19, 18:19:06] Mom: Сообщения и звонки защищены сквозным шифрованием. Третьи лица, включая WhatsApp, не могут прочитать ваши сообщения или прослушать звонки.',
    '[04.03.19, 18:19:07] Mom: メッセージと通話はエンドツーエンド暗号化されています。チャットの参加者以外は、たとえWhatsAppでも読んだり聞いたりすることはできません。',
    '[04.03.19, 18:19:08] Mom: 메시지 및 전화는 종단간 암호화되어 안전합니다. 아무도 엿보거나 들을 수 없습니다.',
  ];
  const typed = ['[04.03.19, 18:20:00] Jane Doe: Messages and calls are end-to-end encrypted, right?', '[04.03.19, 18:20:01] Mom: yes', ''];
  const { files, summary } = await importFolder(t, { '_chat.txt': [...notices, ...typed].join('\n') }, { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['1|Mom|Messages and calls are end-to-end encrypted, right? <EOM>', '0|Mom|yes <EOM>'] });
  t.match(summary, { read: 11, kept: 2, dropped: { system: 9 } });
});

// An older iPhone wrote a group's notices without a direction mark, as messages of the group's name.
t.test("an older iPhone's group notices, messages of the group's name, are the app's in the phone's language; a person's messages of the same words are kept", async (t) => {
  const group = (notices: string[]) =>
    [...notices.map((notice, i) => `[04.03.19, 18:19:${String(i).padStart(2, '0')}] Family: ${notice}`), '[04.03.19, 18:20:00] Mom: Dad left early', '[04.03.19, 18:20:01] Jane Doe: Mom added Dad to the list', ''].join('\n');
  const english = ['Mom created group “Family”', 'Mom added you', 'Messages to this group are now secured with end-to-end encryption. Tap for more info.', 'Mom added Dad', 'Mom changed the subject to “Family 🏡”', "Mom changed this group's icon", 'Dad left'];
  const german = ['Mom hat die Gruppe „Family“ erstellt', 'Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt. Niemand außerhalb dieses Chats kann sie lesen oder anhören, nicht einmal WhatsApp.', 'Mom hat Dad hinzugefügt', 'Dad hat die Gruppe verlassen'];
  const spanish = ['Los mensajes y las llamadas están cifrados de extremo a extremo. Nadie fuera de este chat, ni siquiera WhatsApp, puede leerlos ni escucharlos.', 'Mom añadió a Dad', 'Mom cambió el asunto a “Familia”', 'Dad salió del grupo'];
  const japanese = ['メッセージと通話はエンドツーエンド暗号化されています。チャットの参加者以外は、たとえWhatsAppでも読んだり聞いたりすることはできません。', 'MomがDadを追加しました', 'Dadが退出しました'];
  // A one-to-one chat's notice is the other person's: their messages are theirs, whatever they say.
  const oneToOne = ['[04.03.19, 18:19:00] Mom: Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them.', '[04.03.19, 18:19:01] Mom: Dad left', '[04.03.19, 18:19:02] Mom: Grandma added Dad to the will', '[04.03.19, 18:19:03] Jane Doe: oh', ''];
  const languages = { english, german, spanish, japanese };
  const dir = t.testdir({
    ...Object.fromEntries(Object.entries(languages).map(([language, notices]) => [language, { 'WhatsApp Chat - Family': { '_chat.txt': group(notices) } }])),
    oneToOne: { 'WhatsApp Chat - Mom': { '_chat.txt': oneToOne.join('\n') } },
  });
  for (const [language, notices] of Object.entries(languages)) {
    const { files, summary } = await importInto(path.join(dir, `${language}-out`), [path.join(dir, language)], { me: ['Jane Doe'] });
    t.same(files, { 'family.train': ['0|Family|Dad left early <EOM>', '1|Family|Mom added Dad to the list <EOM>'] }, language);
    t.match(summary, { kept: 2, dropped: { system: notices.length } }, language);
  }
  const { files } = await importInto(path.join(dir, 'oneToOne-out'), [path.join(dir, 'oneToOne')], { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['0|Mom|Dad left <EOM>', '0|Mom|Grandma added Dad to the will <EOM>', '1|Mom|oh <EOM>'] });
});

t.test("an iPhone's photo, video or voice message after its caption: the caption kept, on one line or several; a document's name is no caption", async (t) => {
  const lines = [
    '[3/4/24, 6:20:00 PM] Mom: Xd \u200eimage omitted',
    '[3/4/24, 6:21:00 PM] Mom: Así quedan con el vivo rojo \u200e<adjunto: 00000056-PHOTO-2024-03-04-18-21-00.jpg>',
    '[3/4/24, 6:22:00 PM] Mom: the kids at the lake',
    'last summer \u200e<attached: 00000057-VIDEO-2024-03-04-18-22-00.mp4>',
    '[3/4/24, 6:23:00 PM] Mom: \u200e<attached: 00000058-AUDIO-2024-03-04-18-23-00.opus>',
    '[3/4/24, 6:24:00 PM] Mom: report.pdf \u2022 3 pages \u200e<attached: 00000059-report.pdf>',
    '[3/4/24, 6:25:00 PM] Jane Doe: nice image omitted',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': ['0|Mom|Xd <EOM>', '0|Mom|Así quedan con el vivo rojo <EOM>', '0|Mom|the kids at the lake last summer <EOM>', '1|Mom|nice image omitted <EOM>'] });
  t.match(summary, { read: 6, kept: 4, dropped: { media: 2 } });
});

// As real exports name them: a contact's card after the contact, a file as its sender named it.
t.test('Android: a file attached whose name holds spaces is media, its caption kept; the words in a message are kept', async (t) => {
  const lines = [
    '02/06/22, 10:52 am - Mom: Ade D.vcf (file attached)',
    '02/06/22, 10:53 am - Mom: 2 contacts.vcf (file attached)',
    '02/06/22, 10:54 am - Mom: Amarjeet Mam ( GH1🏢 ).vcf (file attached)',
    '02/06/22, 10:55 am - Mom: Trip plan final.pdf (file attached)',
    'the plan for June',
    '02/06/22, 10:56 am - Jane Doe: I sent Ade D.vcf (file attached) yesterday',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': ['0|Mom|the plan for June <EOM>', '1|Mom|I sent Ade D.vcf (file attached) yesterday <EOM>'] });
  t.match(summary, { read: 5, kept: 2, dropped: { media: 3 } });
});

t.test('Android: a file attached whose name has no extension is media, its caption kept; a message of words and "(file attached)" is kept', async (t) => {
  const lines = [
    '02/06/22, 10:52 am - Mom: DOC-20220602-WA0003 (file attached)',
    '02/06/22, 10:53 am - Mom: Contract (file attached)',
    'the one for June',
    '02/06/22, 10:54 am - Jane Doe: I sent it (file attached)',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': ['0|Mom|the one for June <EOM>', '1|Mom|I sent it (file attached) <EOM>'] });
  t.match(summary, { read: 3, kept: 2, dropped: { media: 1 } });
});

t.test("on Android the iPhone's placeholder words are messages; its own placeholders, written without a mark, are not", async (t) => {
  const lines = [
    '04.03.24, 18:20 - Jane Doe: image omitted',
    '04.03.24, 18:21 - Jane Doe: document manquant',
    '04.03.24, 18:22 - Mom: Missed voice call',
    '04.03.24, 18:23 - Mom: <Media omitted>',
    '04.03.24, 18:24 - Mom: This message was deleted',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': ['1|Mom|image omitted <EOM>', '1|Mom|document manquant <EOM>'] });
  t.match(summary, { read: 5, kept: 2, dropped: { call: 1, media: 1, deleted: 1 } });
});

t.test('a location Android shares, under its place\'s name and address, and a live location are media; a link typed in a message is kept', async (t) => {
  const lines = [
    '04.03.24, 18:20 - Mom: Helsinki Central Station',
    'Kaivokatu 1, Helsinki',
    'location: https://maps.google.com/?q=60.171000,24.941000',
    '04.03.24, 18:21 - Mom: location: https://maps.google.com/?q=60.167850494384766,24.952964782714844',
    '04.03.24, 18:22 - Mom: live location shared',
    '04.03.24, 18:23 - Jane Doe: the location: https://maps.google.com/?q=60.17,24.94 is wrong',
    '',
  ];
  const { files, summary } = await importChatWithMom(t, lines);
  t.same(files, { 'mom.train': ['1|Mom|the location: https://maps.google.com/?q=60.17,24.94 is wrong <EOM>'] });
  t.match(summary, { read: 4, kept: 1, dropped: { media: 3 } });
});


t.test("a place an iPhone shares: its name and address, two spaces, and its location after a direction mark, on one line or two, are media; the same words typed are a message", async (t) => {
  const lines = [
    '[3/4/24, 18:20:00] Mom: Big Ben, London SW1A 0AA, UK  \u200eLocation: https://maps.google.com/?q=51.5007,-0.1246',
    '[3/4/24, 18:20:01] Mom: Big Ben',
    'London SW1A 0AA, UK  \u200eLocation: https://maps.google.com/?q=51.5007,-0.1246',
    '[3/4/24, 18:21:00] Jane Doe: Big Ben  Location: https://maps.google.com/?q=51.5007,-0.1246',
    '',
  ];
  const { files, summary } = await importFolder(t, { '_chat.txt': `\u200e[3/4/24, 18:19:00] Mom: \u200eMessages and calls are end-to-end encrypted.\n${lines.join('\n')}` }, { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['1|Mom|Big Ben Location: https://maps.google.com/?q=51.5007,-0.1246 <EOM>'] });
  t.match(summary, { read: 4, kept: 1, dropped: { media: 2, system: 1 } });
});

// The lines of real exports (iPhone: English, German, Spanish, Portuguese, French; Android: Russian, Czech, Dutch).
t.test("a location an iPhone shares, after a direction mark, in the phone's language, and Android's in other languages than English; the same words typed on an iPhone are a message", async (t) => {
  const iPhone = [
    '[3/4/24, 18:20:00] Mom: \u200eLocation: https://maps.google.com/?q=51.5021457,-0.127398',
    '[3/4/24, 18:20:01] Mom: \u200eStandort: https://maps.google.com/?q=51.5021457,-0.127398',
    '[3/4/24, 18:20:02] Mom: \u200eUbicación: https://maps.google.com/?q=51.5021457,-0.127398',
    '[3/4/24, 18:20:03] Mom: \u200eLocalização: https://maps.google.com/?q=51.5021457,-0.127398',
    '[3/4/24, 18:20:04] Mom: \u200eLocalisation: https://maps.google.com/?q=51.5021457,-0.127398',
    '[3/4/24, 18:21:00] Jane Doe: location: https://maps.google.com/?q=60.17,24.94',
    '[3/4/24, 18:21:01] Jane Doe: Location: https://maps.google.com/?q=60.17,24.94',
    '',
  ];
  const { files, summary } = await importFolder(t, { '_chat.txt': `\u200e[3/4/24, 18:19:00] Mom: \u200eMessages and calls are end-to-end encrypted.\n${iPhone.join('\n')}` }, { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['1|Mom|location: https://maps.google.com/?q=60.17,24.94 <EOM>', '1|Mom|Location: https://maps.google.com/?q=60.17,24.94 <EOM>'] });
  t.match(summary, { read: 8, kept: 2, dropped: { media: 5, system: 1 } });
  const android = [
    '18.03.2022, 15:13 - Mom: местоположение: https://maps.google.com/?q=51.50214569326172,-0.1273979693651199',
    '18.03.22 15:14 - Mom: poloha: https://maps.google.com/?q=51.50214569326172,-0.1273979693651199',
    '18-03-2022 15:15 - Mom: locatie: https://maps.google.com/?q=51.50214569326172,-0.1273979693651199',
    '18.03.2022, 15:16 - Jane Doe: ok',
    '',
  ];
  t.same(parseWhatsApp('WhatsApp Chat with Mom.txt', android.join('\n')).messages.map((m) => m.dropped), ['media', 'media', 'media', null]);
});
t.test('placeholders of the app: a message not yet received, view-once media, polls, the German edited mark', async (t) => {
  const dir = t.testdir({
    'WhatsApp Chat with Mom.txt': [
      '1/13/21, 1:07 PM - Jane Doe: null',
      '1/13/21, 1:08 PM - Mom: POLL:',
      'Dinner?',
      'OPTION: Pizza (1 vote)',
      'OPTION: Sushi (0 votes)',
      '1/13/21, 1:09 PM - Mom: POLL: which one?',
      '1/13/21, 1:11 PM - Mom: Waiting for this message. This may take a while.',
      '1/13/21, 1:12 PM - Jane Doe: <View once voice message omitted>',
      '1/13/21, 1:13 PM - Jane Doe: Hallo <Diese Nachricht wurde bearbeitet>',
      '1/13/21, 1:14 PM - Mom: null and void',
      '',
    ].join('\n'),
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['0|Mom|POLL: which one? <EOM>', '1|Mom|Hallo <EOM>', '0|Mom|null and void <EOM>'] });
  t.match(summary, { read: 7, kept: 3, dropped: { media: 3, unreadable: 1 } });
});

t.test('the edited mark in the languages of the phones that export most, after a direction mark on an iPhone; Brazil\'s newer deletions and missed calls', async (t) => {
  const lines = [
    '19/11/2021 15:56 - Ana: dale, descansá <Se editó este mensaje.>',
    '19/11/2021 15:57 - Jane Doe: À demain <Ce message a été modifié>',
    '19/11/2021 15:58 - Ana: vou sim <Mensagem editada>',
    '19/11/2021 15:59 - Ana: Mensagem apagada',
    '22/11/2021 07:24 - Ana: Ligação de voz perdida',
    '22/11/2021 07:25 - Ana: Ligação de voz perdida? não vi',
    '',
  ];
  const { files, summary } = await importFolder(t, { 'WhatsApp Chat with Ana.txt': lines.join('\n'), 'WhatsApp Chat - Mario.txt': '[02/04/26, 13:03:45] Mario: testo finale \u200e<Questo messaggio è stato modificato>\n[02/04/26, 13:04:00] Jane Doe: ok\n' }, { me: ['Jane Doe'] });
  t.same(files, {
    'ana.train': ['0|Ana|dale, descansá <EOM>', '1|Ana|À demain <EOM>', '0|Ana|vou sim <EOM>', '0|Ana|Ligação de voz perdida? não vi <EOM>'],
    'mario.train': ['0|Mario|testo finale <EOM>', '1|Mario|ok <EOM>'],
  });
  t.match(summary, { read: 8, kept: 6, dropped: { deleted: 1, call: 1 } });
});

t.test('a group where one other member wrote: a group by its notices, left out with --no-groups', async (t) => {
  const exports = {
    'WhatsApp Chat with Family.txt': ['04/03/2024, 18:20 - Mom created group "Family"', '04/03/2024, 18:20 - Mom added you', '04/03/2024, 18:21 - Mom: dinner sunday?', '14/03/2024, 18:22 - Jane Doe: yes', ''].join('\n'),
    'WhatsApp Chat with Club.txt': ['[04/03/2024, 18:20:00] Club: \u200eYou were added', '[04/03/2024, 18:21:00] Ann: hi all', '[14/03/2024, 18:22:00] Jane Doe: hi Ann', ''].join('\n'),
    'WhatsApp Chat with Dad.txt': ['04/03/2024, 18:21 - Dad: I added you to my list', '14/03/2024, 18:22 - Jane Doe: ok', ''].join('\n'),
  };
  const { files, summary } = await importFolder(t, exports, { me: ['Jane Doe'], groups: false });
  t.same(files, { 'dad.train': ['0|Dad|I added you to my list <EOM>', '1|Dad|ok <EOM>'] });
  t.match(summary.skipped, [{ title: 'Club', reason: 'group chat', senders: ['Ann'] }, { title: 'Family', reason: 'group chat', senders: ['Mom'] }]);
  const { files: written } = await importFolder(t, exports, { me: ['Jane Doe'] });
  t.same(written['family.train'], ['0|Family|dinner sunday? <EOM>', '1|Family|yes <EOM>']);
});

t.test('a group by its notices in the languages of the phones that export most; a chat\'s other notices say nothing of it', async (t) => {
  const notices = [
    'Мама добавил(-а) вас', 'Мама создал(-а) группу "Семья"', 'Мама додав(-ла) вас', 'Mamá te añadió', 'Mamá creó el grupo "Familia"', 'Mãe adicionou você', 'Maman vous a ajouté',
    'Mamma ti ha aggiunto', 'Mama heeft u toegevoegd', 'U bent toegevoegd', 'Annem sizi ekledi', 'Eklendiniz', 'Ibu menambahkan Anda', 'Mama dodał(a) Cię', 'Máma vás přidal/a.',
    'ماما أضافك', 'تمت إضافتك', 'お母さんがあなたを追加しました', '엄마님이 “가족”그룹을 만들었습니다', '妈妈 添加了您', 'Mẹ đã thêm bạn', 'Bạn đã được thêm',
  ];
  for (const notice of notices) {
    const chat = parseWhatsApp('chat.txt', `04.03.24, 18:20 - ${notice}\n04.03.24, 18:21 - Mom: hi\n04.03.24, 18:22 - Jane: hello\n`);
    t.equal(chat.group, true, notice);
  }
  const alone = parseWhatsApp('chat.txt', '04.03.24, 18:20 - Your security code with Mom changed. Tap to learn more.\n04.03.24, 18:21 - Mom: hi\n04.03.24, 18:22 - Jane: hello\n');
  t.equal(alone.group, null);
});

t.test('a sender whose name holds ": " is the opening that begins their other messages too', async (t) => {
  const text = [
    '[3/4/24, 6:20:01 PM] Mom: hi',
    '[3/4/24, 6:21:01 PM] Work: Bob: I am in the group',
    '[3/4/24, 6:21:30 PM] Work: Bob: see you at 5',
    '[3/4/24, 6:22:01 PM] Mom: note: buy milk',
    '[3/4/24, 6:23:01 PM] Ann: Re: dinner: yes',
    '[3/4/24, 6:24:01 PM] Mom: ok',
    '',
  ].join('\n');
  t.same(parseWhatsApp('_chat.txt', text).messages.map((m) => [m.sender, m.text]), [
    ['Mom', 'hi'],
    ['Work: Bob', 'I am in the group'],
    ['Work: Bob', 'see you at 5'],
    ['Mom', 'note: buy milk'],
    ['Ann', 'Re: dinner: yes'],
    ['Mom', 'ok'],
  ]);
});

t.test('a group\'s notices that quote a name holding ": " are notices, not messages of a sender', async (t) => {
  const dir = t.testdir({
    'WhatsApp Chat with Fam.txt': [
      '12/31/20, 10:15 PM - Mom created group "Trip: Paris"',
      '12/31/20, 10:16 PM - Mom changed the subject from "Fam" to "Fam: 2021"',
      '12/31/20, 10:17 PM - Dad hat den Betreff von „Fam“ zu „Fam: 2022“ geändert',
      '12/31/20, 10:18 PM - Mom: "Paris" it is: see you there',
      '12/31/20, 10:19 PM - Dad: ok',
      '12/31/20, 10:20 PM - Jane: yes',
      '',
    ].join('\n'),
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['Jane'] });
  t.same(files, { 'fam.train': ['0|Fam|"Paris" it is: see you there <EOM>', '0|Fam|ok <EOM>', '1|Fam|yes <EOM>'] });
  t.match(summary, { read: 6, kept: 3, dropped: { system: 3 } });
});

t.test('a chat is named by its file\'s name in the languages of the phones that export most, and two exports of it are one chat', async (t) => {
  const group = '04.03.24, 18:20 - Ann: hi\n04.03.24, 18:21 - Bob: hello\n04.03.24, 18:22 - Jane Doe: hey\n';
  const names = [
    'Czat WhatsApp z Rodzina', 'Czat WhatsApp z Rodzina (1)', 'Aile ile WhatsApp Sohbeti', 'WhatsApp 与 家人 的对话', 'WhatsApp 與 家族群組 的對話', 'Чат WhatsApp с контактом Семья',
    'Чат WhatsApp с Друзья', 'دردشة واتساب مع العائلة', '家族とのWhatsAppチャット', '가족님과의 WhatsApp 대화', 'Trò chuyện WhatsApp với Gia đình', 'Бесіда WhatsApp з Родина',
    'Chat WhatsApp dengan Keluarga', 'Chat WhatsApp s uživatelem Rodina', 'WhatsApp-chat met Familie',
  ];
  const { summary } = await importFolder(t, Object.fromEntries(names.map((name) => [`${name}.txt`, group])), { me: ['Jane Doe'] });
  t.same(summary.audiences.map((a) => a.audience).sort(), ['Aile', 'Familie', 'Gia đình', 'Keluarga', 'Rodina', 'Rodzina', 'Друзья', 'Родина', 'Семья', 'العائلة', '家人', '家族', '家族群組', '가족'].sort());
  t.match(summary.dropped, { duplicate: 3 }, 'the second export of Rodzina is the first again');
});

t.test('a chat exported twice into one folder ("... (1).txt") is one chat, its overlap once; a chat of the same name elsewhere stays apart', async (t) => {
  const first = '12/31/20, 10:15 PM - Mom: Dinner?\n12/31/20, 10:16 PM - Jane: Yes\n';
  const second = `${first}1/1/21, 9:00 AM - Mom: Happy new year\n`;
  const dir = t.testdir({
    exports: { 'WhatsApp Chat with Mom.txt': first, 'WhatsApp Chat with Mom (1).txt': second },
    other: { 'WhatsApp Chat with Mom.txt': '1/2/21, 8:00 AM - Mom: Another Mom\n1/2/21, 8:01 AM - Jane: hi\n' },
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'exports'), path.join(dir, 'other')], { me: ['Jane'] });
  t.same(files, { 'mom.train': ['0|Mom|Dinner? <EOM>', '1|Mom|Yes <EOM>', '0|Mom|Happy new year <EOM>', '', '0|Mom|Another Mom <EOM>', '1|Mom|hi <EOM>'] });
  t.match(summary, { read: 7, kept: 5, dropped: { duplicate: 2 }, audiences: [{ audience: 'Mom', conversations: 2 }] });
});

t.test('the date order is one for all the WhatsApp exports of an import: a short export reads its dates as a longer one tells', async (t) => {
  const first = ['02/03/2024, 6:20 pm - Mom: hi', '03/03/2024, 6:21 pm - Jane Doe: hey', '05/03/2024, 7:00 pm - Mom: how are you', ''].join('\n');
  const second = `${first}20/03/2024, 8:00 pm - Jane Doe: fine\n`;
  const { files, summary } = await importFolder(t, { 'WhatsApp Chat with Mom.txt': first, 'WhatsApp Chat with Mom (1).txt': second }, { me: ['Jane Doe'] });
  t.same(files, { 'mom.train': ['0|Mom|hi <EOM>', '1|Mom|hey <EOM>', '0|Mom|how are you <EOM>', '1|Mom|fine <EOM>'] });
  t.match(summary, { read: 7, kept: 4, dropped: { duplicate: 3 }, warnings: [] });
});

t.test('another chat\'s date order says nothing of a chat\'s own: a German export beside two American ones of another chat', async (t) => {
  const sam = ['1/5/21, 9:05 AM - Sam: Hey, lunch on Friday?', '1/5/21, 9:07 AM - Jane Doe: Sure, see you then', '1/9/21, 6:00 PM - Sam: That was fun', '2/3/21, 8:15 PM - Jane Doe: Same time next month?', '2/3/21, 8:16 PM - Sam: Deal', ''];
  const { files } = await importFolder(t, {
    'WhatsApp Chat with Sam.txt': sam.join('\n'),
    'WhatsApp Chat with Sam (1).txt': [...sam.slice(3, 5), '2/7/21, 9:00 AM - Sam: Reminder: bring the book', ''].join('\n'),
    'WhatsApp Chat mit Papa.txt': '31.12.20, 22:15 - Papa: Frohes neues Jahr!\n13.01.21, 18:30 - Jane Doe: Danke\n',
  }, { me: ['Jane Doe'] });
  t.same(files['sam.train'], ['0|Sam|Hey, lunch on Friday? <EOM>', '1|Sam|Sure, see you then <EOM>', '0|Sam|That was fun <EOM>', '1|Sam|Same time next month? <EOM>', '0|Sam|Deal <EOM>', '0|Sam|Reminder: bring the book <EOM>'], 'month first, in order');
});

t.test('dates no export decides: read month first with the 12-hour clock, and a warning names the files and --date-order', async (t) => {
  const text = ['02/03/2024, 6:20 pm - Mom: hi', '02/03/2024, 6:21 pm - Jane Doe: hey', ''].join('\n');
  const dir = t.testdir({ 'WhatsApp Chat with Mom.txt': text, 'WhatsApp Chat with Dad.txt': '01/01/2024, 9:00 am - Dad: happy new year\n01/01/2024, 9:01 am - Jane Doe: you too\n' });
  const { summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['Jane Doe'] });
  t.match(summary.warnings, [/WhatsApp Chat with Mom\.txt: dates that read as well day first as month first .*read month first; if that is wrong, give the order with --date-order dmy$/]);
  t.notMatch(summary.warnings.join('\n'), /Dad/, 'dates whose day is their month read the same either way');
  const warnings: string[] = [];
  t.same(parseWhatsApp('chat.txt', text, 'dmy', warnings).messages.map((m) => iso(m.time)), ['2024-03-02T18:20:00', '2024-03-02T18:21:00']);
  t.same(warnings, [], 'none with --date-order');
});

t.test('not a WhatsApp export: the first line that is not a message', async (t) => {
  const error = t.throws(() => parseWhatsApp('notes.txt', '\nDear diary,\n1/1/21, 10:00 - A: hi\n')) as ChatImportError;
  t.match(error, { name: 'ChatImportError', file: 'notes.txt', line: 2, message: /^notes\.txt:2: not a WhatsApp export: a message line starts with its date and time/ });
});
