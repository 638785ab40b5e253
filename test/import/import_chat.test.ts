// importChats end to end: every app's fixture at once, audiences met in several apps in one file, the output the
// dataset checker accepts, the same bytes on every import, one combined file, renamed audiences, redaction, the
// summary, and bad input refused with file:line before anything is written.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { ChatChecker } from '../../lib/data/chat_check';
import { MAX_AUDIENCE_CHARS, isAudience, messageText, toAudience } from '../../lib/data/chat_format';
import { ChatImportErrors, formatImportSummary, importChats } from '../../lib/import';
import { EXPORTS, fixture, importInto, outputBytes, trainFiles, written } from './helpers';
import { WRITTEN_RECORD } from '../../lib/import/train_output';
import { LOCK_FILE } from '../../lib/util/folder_lock';

const ME = ['Jane Doe', 'jane_d'];

t.test('every export at once: a file per audience, conversations of one audience in time order, all well formed', async (t) => {
  const out = t.testdir();
  const { files, summary } = await importInto(out, [EXPORTS], { me: ME });
  t.same(Object.keys(files), [
    '15551234567.train', '15557654321.train', '2250000002.train', 'alex.train', 'assistant.train', 'bandpractice.train', 'beach-trip.train', 'book-club.train', 'climbing-club.train', 'coach.train',
    'family.train', 'game-night.train', 'general.train', 'grandma.train', 'hiking-crew.train', 'lena-fischer-omar-haddad.train', 'lena-fischer.train', 'marie-martin.train', 'matti.train', 'mia-rossi.train', 'mom-dad.train', 'mom-k.train', 'mom.train', 'máma.train', 'mẹ.train', 'noahwilliams.train', 'olivia-bennett.train', 'omar-haddad.train', 'papa.train', 'priya-shah.train', 'sam-lee-2.train',
    'sam-lee.train', 'ski-trip-2019.train', 'trail-runners.train', 'weekend-crew.train', 'yuki.train', 'мама.train', 'ماما.train', '등산-모임.train', '민지.train',
  ]);
  t.same(files['mom.train'], [
    "0|Mom|Happy New Year's Eve! 🎉 <EOM>", '0|Mom|Are you coming tomorrow? <EOM>', "1|Mom|Yes! I'll bring the cake <EOM>",
    '0|Mom|Lovely. Remember: - milk - eggs flour <EOM>', '1|Mom|On my way <EOM>', '0|Mom|Drive safe ok <EOM>', "0|Mom|Look who's here! <EOM>",
    '',
    '0|Mom|Happy new year sweetie! 😊 <EOM>', '1|Mom|Thanks Mom! & happy new year to Dad too <EOM>',
    '',
    '0|Mom|Dinner on Sunday? <EOM>', '1|Mom|Yes please! <EOM>',
  ], 'WhatsApp, then SMS, then Telegram, a blank line between conversations');
  t.same(summary.formats, { discord: 1, element: 3, googlechat: 2, imessage: 1, kakaotalk: 3, line: 1, messenger: 3, openai: 1, sharegpt: 1, signal: 2, skype: 1, slack: 5, sms: 1, snapchat: 1, telegram: 5, whatsapp: 9, x: 2 });
  t.match(summary, { read: 347, kept: 183, sent: 76 });
  t.match(summary.audiences.find((a) => a.audience === 'Mom'), { audience: 'Mom', conversations: 3, read: 17, kept: 11, sent: 4, file: path.join(out, 'mom.train') });
  const checker = new ChatChecker();
  for (const [name, lines] of Object.entries(files)) checker.add(name, `${lines.join('\n')}\n`);
  const check = checker.summary();
  t.same(check.issues, []);
  t.equal(check.messages, 183);
});

t.test('importing the same exports again gives the same bytes, whatever order they are named in', async (t) => {
  const dir = t.testdir();
  const first = path.join(dir, 'first');
  const second = path.join(dir, 'second');
  await importChats([EXPORTS], { out: first, me: ME });
  const inputs = fs.readdirSync(EXPORTS).map((name) => path.join(EXPORTS, name)).reverse();
  await importChats(inputs, { out: second, me: [...ME].reverse() });
  await importChats([EXPORTS], { out: first, me: ME });
  t.same(outputBytes(first), outputBytes(second));
  t.same(fs.readdirSync(first).filter((name) => name.startsWith('.') && name !== WRITTEN_RECORD), [], 'no temporary file left behind');
});

t.test('one combined file when --out names a .train file', async (t) => {
  const out = path.join(t.testdir(), 'all.train');
  const summary = await importChats([fixture('whatsapp', 'android-de'), fixture('whatsapp', 'ios-fi')], { out, me: ['Jane Doe'] });
  t.same(summary.files, [out]);
  t.same(fs.readFileSync(out, 'utf8').split('\n'), [
    '0|Papa|Frohes neues Jahr! <EOM>', '1|Papa|Danke, dir auch 😊 <EOM>', '1|Papa|Wann kommst du? <EOM>', '0|Papa|Um 8 <EOM>',
    '',
    '0|Matti|Moi! Mitä kuuluu? <EOM>', '1|Matti|Hyvää, kiitos <EOM>',
    '',
  ]);
});

t.test('--audience-map renames audiences (and files); a name that matches no chat is a warning', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('whatsapp', 'android-de'), fixture('messenger')], {
    me: ['Jane Doe'],
    audienceMap: { papa: 'dad', 'Marie Martin': 'marie', Nobody: 'x' },
  });
  t.same(Object.keys(files), ['dad.train', 'marie.train']);
  t.equal(files['dad.train'][0], '0|dad|Frohes neues Jahr! <EOM>');
  t.same(summary.warnings, ['--audience-map: no chat is called "Nobody"']);
  await t.rejects(importChats([fixture('whatsapp', 'android-de')], { out: t.testdir(), me: ['Jane Doe'], audienceMap: { Papa: 'a|b' } }), {
    message: /^--audience-map "Papa": audience must be 1 to 64 characters/,
  });
});

t.test('--redact replaces links, e-mail addresses and phone numbers, each kind on its own or all', async (t) => {
  const { files } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-en-us')], { me: ['Jane Doe'], redact: ['links', 'emails', 'phones'] });
  t.same(files['sam-lee.train'], [
    '0|Sam Lee|Hey, are we still on for lunch? <EOM>',
    '1|Sam Lee|Yes! 12:30 at the usual place <EOM>',
    '1|Sam Lee|Call me at [phone] or mail [email] <EOM>',
    '0|Sam Lee|See [link]. <EOM>',
  ]);
  const { files: linksOnly } = await importInto(t.testdir(), [fixture('whatsapp', 'ios-en-us')], { me: ['Jane Doe'], redact: ['links'] });
  t.equal(linksOnly['sam-lee.train'][2], '1|Sam Lee|Call me at +1 (555) 123-4567 or mail jane.doe@example.com <EOM>');
  t.equal(linksOnly['sam-lee.train'][3], '0|Sam Lee|See [link]. <EOM>');
  const dir = t.testdir({ 'chat.txt': '1/2/21, 10:00 - Jane: on 2021-01-02 we paid 1,250,000 at www.shop.example, call 555 123 4567\n1/2/21, 10:01 - Ann: ok\n' });
  const { files: dates } = await importInto(path.join(dir, 'out'), [path.join(dir, 'chat.txt')], { me: ['Jane'], redact: ['links', 'phones'] });
  t.equal(dates['ann.train'][0], '1|Ann|on 2021-01-02 we paid 1,250,000 at [link], call [phone] <EOM>', 'dates and amounts are no phone numbers');
});

t.test('--me: left out, it lists the senders; naming nobody, too; naming someone, chats without them are skipped', async (t) => {
  const out = t.testdir();
  await t.rejects(importChats([fixture('whatsapp')], { out }), {
    message: /^say which sender is you with --me "<your name>" .*: the senders found, with their messages: Jane Doe \(19\), Mom \(8\), Máma \(6\), Мама \(6\), Mẹ \(4\), Papa \(4\), Sam Lee \(4\), ماما \(4\), Dad \(3\), Sam \(2\), Matti \(1\)$/,
  });
  await t.rejects(importChats([fixture('whatsapp')], { out, me: ['Janet'] }), { message: /^--me "Janet" names none of the senders: the senders found/ });
  t.same(fs.readdirSync(out), [], 'nothing written');
  const { files, summary } = await importInto(out, [fixture('whatsapp', 'android-de'), fixture('discord')], { me: ['Jane Doe'] });
  t.same(Object.keys(files), ['papa.train']);
  t.match(summary.skipped, [{ reason: 'not your chat', senders: ['sam_lee', 'jane_d'] }]);
  t.match(summary.warnings, [/Direct Messages - sam_lee \[887766554433221100\]\.json: not imported: --me names none of its senders \(sam_lee, jane_d\)$/]);
  // Many chats without the user (a whole workspace's export): five named, the rest counted.
  const many = t.testdir(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`chat${i}.txt`, `1/2/21, 10:00 - ${i === 0 ? 'Jane' : `Ann ${i}`}: hi\n1/2/21, 10:01 - Bob ${i}: hello\n`])));
  const { summary: crowded } = await importInto(path.join(many, 'out'), [many], { me: ['Jane'] });
  t.equal(crowded.skipped.length, 7);
  t.same(crowded.warnings.filter((w) => w.includes('not imported')), [
    ...[1, 2, 3, 4, 5].map((i) => `${path.join(many, `chat${i}.txt`)}: not imported: --me names none of its senders (Ann ${i}, Bob ${i})`),
    '2 more chats not imported: --me names none of their senders',
  ]);
});

t.test('bad input: each problem with file:line, every file read first, nothing written', async (t) => {
  const telegram = fs.readFileSync(fixture('telegram', 'chat', 'result.json'), 'utf8');
  const dir = t.testdir({
    'truncated.json': telegram.slice(0, 1500),
    'latin1.txt': Buffer.from('31.12.20, 22:15 - Papa: Frohes Fest!\n31.12.20, 22:16 - Jane: Sch\xf6n!\n', 'latin1'),
    'notes.txt': 'Shopping list\n- milk\n',
    'chat.zip': Buffer.from('PK\x03\x04rest of a zip', 'latin1'),
    'not-json.json': '{"a": 1,}',
    out: { 'papa.train': 'left as it was\n' },
  });
  const inputs = ['truncated.json', 'latin1.txt', 'notes.txt', 'chat.zip', 'not-json.json'].map((name) => path.join(dir, name));
  const error = (await importChats([...inputs, fixture('whatsapp', 'android-de')], { out: path.join(dir, 'out'), me: ['Jane Doe'] }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.same(error.message.split('\n').map((line) => line.replace(dir + path.sep, '')), [
    'chat.zip: a zip archive cut short (no central directory at its end): an interrupted download or copy; get it again',
    'latin1.txt:2: not UTF-8 text: the export is in another encoding; give it with --encoding (e.g. --encoding windows-1252)',
    'not-json.json:1: not valid JSON: Expected double-quoted property name in JSON at position 8',
    'notes.txt:1: a file that begins "Shopping list", not a WhatsApp, LINE or KakaoTalk chat (.txt), a Telegram result.json or messages.html, a Messenger or Instagram message_N.json, a DiscordChatExporter .json, Google Chat\'s messages.json, Element\'s JSON export of a Matrix room, a day of a Slack export\'s conversation (general/2024-03-04.json), Snapchat\'s chat_history.json, signal-export\'s data.json of a Signal chat, Skype\'s messages.json (or the export\'s .tar), an X archive\'s direct-messages.js, an SMS Backup & Restore .xml, macOS Messages\' chat.db, or OpenAI\'s or ShareGPT\'s chat fine-tuning JSONL; if it is one, name its format with --format (whatsapp, line, kakaotalk, telegram, messenger, discord, googlechat, element, slack, snapchat, signal, skype, x, sms, imessage, openai, sharegpt)',
    'truncated.json:79: the JSON stops in the middle: the export is truncated (an interrupted download or copy); export it again',
  ]);
  t.same(fs.readdirSync(path.join(dir, 'out')), ['papa.train']);
  t.equal(fs.readFileSync(path.join(dir, 'out', 'papa.train'), 'utf8'), 'left as it was\n');

  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'latin1.txt')], { me: ['Jane'], encoding: 'latin1', force: true });
  t.same(files['papa.train'], ['0|Papa|Frohes Fest! <EOM>', '1|Papa|Schön! <EOM>']);
  await t.rejects(importChats([path.join(dir, 'notes.txt')], { out: path.join(dir, 'out'), format: 'telegram' }), { message: /notes\.txt:1: not valid JSON/ });
  await t.rejects(importChats([path.join(dir, 'missing')], { out: path.join(dir, 'out') }), { message: `${path.join(dir, 'missing')}: no such file or folder` });
});

t.test('an export made as web pages by Facebook or Instagram: the error says to export it again in JSON', async (t) => {
  const page = '<!DOCTYPE html>\n<html>\n <head><title>Marie Martin</title></head>\n <body><div class="_a706" role="main"></div></body>\n</html>\n';
  const dir = t.testdir({
    download: {
      your_facebook_activity: { messages: { inbox: { mariemartin_10158: { 'message_1.html': page } } } },
      your_instagram_activity: { messages: { inbox: { weekendcrew_17845: { 'message_1.html': page } } } },
    },
    out: {},
  });
  const folder = path.join(dir, 'download');
  const advice = 'an export made as web pages, which dixie reads only from Telegram Desktop (a chat\'s messages.html, messages2.html...): export it again in JSON (Facebook and Instagram: Download your information, format JSON; Element: Export chat, format JSON; signal-export: its data.json beside index.html, written unless run with --no-json)';
  await t.rejects(importChats([folder], { out: path.join(dir, 'out') }), { message: `${folder}: no .txt, .json, .jsonl, .xml, .db, .zip or .tar file in it; its 2 .html files are ${advice}` });
  const named = path.join(folder, 'your_facebook_activity', 'messages', 'inbox', 'mariemartin_10158', 'message_1.html');
  await t.rejects(importChats([named], { out: path.join(dir, 'out') }), { message: `${named}: ${advice}` });
  await t.rejects(importChats([fixture('telegram_html', 'ChatExport_2024-03-04')], { out: path.join(dir, 'out'), format: 'whatsapp' }), { message: /messages\.html: an export of Telegram, not of WhatsApp as --format whatsapp says: leave --format out/ }, 'read as another app\'s');
  t.same(fs.readdirSync(path.join(dir, 'out')), [], 'nothing written');
});

t.test('UTF-16 exports with a byte-order mark are read; without one, the error says which encoding to give', async (t) => {
  const text = '31.12.20, 22:15 - Papa: Frohes Fest!\r\n31.12.20, 22:16 - Jane: Schön!\r\n';
  const dir = t.testdir({
    'bom.txt': Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]),
    'nobom.txt': Buffer.from(text, 'utf16le'),
  });
  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'bom.txt')], { me: ['Jane'] });
  t.same(files['papa.train'], ['0|Papa|Frohes Fest! <EOM>', '1|Papa|Schön! <EOM>']);
  await t.rejects(importChats([path.join(dir, 'nobom.txt')], { out: path.join(dir, 'out'), me: ['Jane'] }), { message: /nobom\.txt: not UTF-8: it looks like UTF-16 without a byte-order mark; give its encoding with --encoding utf-16le/ });
});

t.test('in a folder, files that are no export are skipped with a warning; media files are not even read', async (t) => {
  const dir = t.testdir({
    'WhatsApp Chat with Papa.txt': fs.readFileSync(fixture('whatsapp', 'android-de', 'WhatsApp Chat mit Papa.txt')),
    'README.txt': 'This folder holds my exports.\n',
    'IMG-20210101-WA0003.jpg': 'not a picture',
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['Jane Doe'] });
  t.same(Object.keys(files), ['papa.train']);
  t.same(summary.warnings, [`skipped 1 file in the folders and zips that is no chat export: ${path.join(dir, 'README.txt')}`]);
});

t.test('the summary: totals, drops by reason, each audience and its file, chats left out, too little data', async (t) => {
  const out = t.testdir();
  const summary = await importChats([fixture('telegram', 'account'), fixture('whatsapp', 'android-en-us')], { out, me: ['Jane Doe'] });
  t.same(formatImportSummary(summary).split('\n'), [
    'import: 2 export files (Telegram 1, WhatsApp 1), 19 messages read, 12 kept (4 sent, 8 received), 7 dropped (system 3, media 2, deleted 1, saved messages 1)',
    `  Mom: 2 conversations, 14 read, 9 kept (3 sent), dropped media 2, system 2, deleted 1 -> ${path.join(out, 'mom.train')}`,
    `  Book Club: 1 conversation, 4 read, 3 kept (1 sent), dropped system 1 -> ${path.join(out, 'book-club.train')}`,
    `  not imported: "Saved Messages" (${fixture('telegram', 'account', 'result.json')}): saved messages, 1 message`,
    `wrote 2 files in ${out} (389 B)`,
    'warning: 389 B of chat is little: fine-tuning GPT-2 on less than about 2 MB overfits; import more chats',
  ]);
});

t.test('toAudience: any display name made an audience', async (t) => {
  t.equal(toAudience('  Mom | Dad \n'), 'Mom Dad');
  t.equal(toAudience('Team\u0000<EOM>Chat'), 'Team Chat');
  const long = `${'x'.repeat(MAX_AUDIENCE_CHARS - 1)}😀 and more`;
  t.equal(toAudience(long), 'x'.repeat(MAX_AUDIENCE_CHARS - 1), 'cut before half an emoji');
  t.ok(isAudience(toAudience(long)));
  t.equal(toAudience(' | '), '');
});

t.test("messageText's quick path for clean text changes nothing: the same as cleaning every text", async (t) => {
  const clean = (text: string): string => text.replace(/<\|endoftext\|>|<EOM>/gi, ' ').replace(/\|/g, ' ').replace(/\s+/g, ' ').trim();
  const pieces = fc.constantFrom(' ', '  ', '\n', '\r\n', '\t', '\u00a0', '\u202f', '|', '<EOM>', '<eom>', '<|endoftext|>', '<', 'a', 'é', '😀', 'word');
  fc.assert(fc.property(fc.array(fc.oneof(pieces, fc.string({ maxLength: 3 })), { maxLength: 12 }), (parts) => messageText(parts.join('')) === clean(parts.join(''))), { numRuns: 2000 });
  t.pass();
});

t.test('an export with no chat in it', async (t) => {
  const dir = t.testdir({ 'sms.xml': '<?xml version="1.0"?>\n<smses count="0">\n</smses>\n' });
  await t.rejects(importChats([path.join(dir, 'sms.xml')], { out: path.join(dir, 'out') }), { message: `no chat export among ${path.join(dir, 'sms.xml')}` });
  t.same(trainFiles(path.join(dir, 'out')), {});
});

t.test('the file the import writes is never read as an export: named, it is refused; beside the exports, passed over', async (t) => {
  const dir = t.testdir();
  fs.copyFileSync(fixture('openai', 'fine_tune.jsonl'), path.join(dir, 'fine_tune.jsonl'));
  const out = path.join(dir, 'chats.jsonl');
  const first = await importChats([dir], { out });
  const written = fs.readFileSync(out, 'utf8');
  const again = await importChats([dir], { out });
  t.equal(fs.readFileSync(out, 'utf8'), written, 'imported again, the same conversations, not each twice');
  t.same(again.examples, first.examples);
  await t.rejects(importChats([fixture('openai', 'fine_tune.jsonl'), out], { out }), { message: `${out}: is the file the import writes (--out): write the output to another file` });
  await t.rejects(importChats([out], { out: path.join(dir, '.', 'chats.jsonl') }), { message: /is the file the import writes/ }, 'however the path is written');
  t.equal(fs.readFileSync(out, 'utf8'), written, 'left as it was');
});

t.test('what an earlier import wrote is never left looking like this one\'s output', async (t) => {
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  await importChats([fixture('whatsapp', 'android-de'), fixture('whatsapp', 'ios-fi')], { out: data, me: ['Jane Doe'] });
  t.same(written(data), ['matti.train', 'papa.train']);
  const renamed = await importChats([fixture('whatsapp', 'android-de'), fixture('whatsapp', 'ios-fi')], { out: data, me: ['Jane Doe'], audienceMap: { Papa: 'dad' } });
  t.match(renamed.warnings, [`${data} also holds a .train file this import did not write: papa.train. Training on the folder trains on it too: delete it if it is not to be trained on`]);

  // One file is written whole, even with nothing in it: never an earlier import's examples under this one's summary.
  const jsonl = path.join(dir, 'chats.jsonl');
  fs.writeFileSync(jsonl, '{"messages": "an earlier import"}\n');
  fs.writeFileSync(path.join(dir, 'mine.jsonl'), `${JSON.stringify({ messages: [{ role: 'user', content: 'Anyone there?' }] })}\n`);
  const unanswered = await importChats([path.join(dir, 'mine.jsonl')], { out: jsonl, force: true });
  t.equal(unanswered.examples?.written, 0);
  t.equal(fs.readFileSync(jsonl, 'utf8'), '');
});

t.test('a folder where the import writes a file is named, and kept, even with --force', async (t) => {
  const dir = t.testdir({ 'all.train': { 'notes.txt': 'mine' } });
  const out = path.join(dir, 'all.train');
  for (const force of [false, true]) {
    await t.rejects(importChats([fixture('whatsapp', 'android-de')], { out, me: ['Jane Doe'], force }), {
      message: `nothing was written: ${out} is a folder, where the import writes a file: move it away, or write elsewhere with --out`,
    });
  }
  t.same(fs.readdirSync(out), ['notes.txt'], 'the folder as it was');
});

t.test("an import replaces what an import wrote, and nothing else unless forced: the user's own data keeps", async (t) => {
  const dir = t.testdir({ data: { 'papa.train': '1|Papa|my own words <EOM>\n' } });
  const data = path.join(dir, 'data');
  const exports = [fixture('whatsapp', 'android-de'), fixture('whatsapp', 'ios-fi')];
  await t.rejects(importChats(exports, { out: data, me: ['Jane Doe'] }), {
    message: `nothing was written: ${path.join(data, 'papa.train')} exists, and was not written by an import (or changed since): move it away, write elsewhere with --out, or give --force to replace it`,
  });
  t.same(fs.readdirSync(data), ['papa.train'], 'not even the files that were in no one\'s way');
  t.equal(fs.readFileSync(path.join(data, 'papa.train'), 'utf8'), '1|Papa|my own words <EOM>\n');
  // Moved away, the import writes; again (a newer export), it replaces its own files.
  fs.renameSync(path.join(data, 'papa.train'), path.join(dir, 'papa.train'));
  await importChats(exports, { out: data, me: ['Jane Doe'] });
  const first = outputBytes(data);
  fs.appendFileSync(path.join(data, 'matti.train'), '1|Matti|added by hand <EOM>\n');
  await t.rejects(importChats(exports, { out: data, me: ['Jane Doe'] }), { message: /matti\.train exists, and was not written by an import \(or changed since\)/ });
  await importChats(exports, { out: data, me: ['Jane Doe'], force: true });
  t.same(outputBytes(data), first, '--force replaces it');
  await importChats(exports, { out: data, me: ['Jane Doe'] });
  t.same(outputBytes(data), first, 'and the import its own again');
});

t.test('two imports into one folder at once: the second is refused naming the lock, and the record loses neither', async (t) => {
  const [mom, papa] = [fixture('whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt'), fixture('whatsapp', 'android-de', 'WhatsApp Chat mit Papa.txt')];
  // Newer exports of both, for later.
  const dir = t.testdir({
    newer: {
      'WhatsApp Chat with Mom.txt': `${fs.readFileSync(mom, 'utf8')}1/2/21, 9:00 AM - Mom: And one more\n`,
      'WhatsApp Chat mit Papa.txt': `${fs.readFileSync(papa, 'utf8')}14.01.21, 09:00 - Papa: Noch eins\n`,
    },
  });
  const data = path.join(dir, 'data');
  const imports = [{ file: mom, writes: 'mom.train' }, { file: papa, writes: 'papa.train' }];
  const results = await Promise.allSettled(imports.map(({ file }) => importChats([file], { out: data, me: ['Jane Doe'] })));
  const refused = results.flatMap((r, i) => (r.status === 'rejected' ? [{ ...imports[i], message: (r.reason as Error).message }] : []));
  t.equal(refused.length, 1, 'one import is refused');
  t.match(refused[0]?.message, `${data} is in use by this process (an import), which is writing there: an import is refused (run it again when that is done; the lock is ${path.join(data, LOCK_FILE)}`);
  t.same(written(data), imports.filter((i) => i.file !== refused[0]?.file).map((i) => i.writes), 'the other import wrote, the refused one nothing; no lock left');
  await importChats([refused[0].file], { out: data, me: ['Jane Doe'] });
  const record = JSON.parse(fs.readFileSync(path.join(data, WRITTEN_RECORD), 'utf8')) as Record<string, unknown>;
  t.same(Object.keys(record).sort(), ['mom.train', 'papa.train'], 'the record lists the files of both');
  // Each import replaces its own file unforced, as the record says an import wrote it.
  for (const name of ['WhatsApp Chat with Mom.txt', 'WhatsApp Chat mit Papa.txt']) await importChats([path.join(dir, 'newer', name)], { out: data, me: ['Jane Doe'] });
  const files = trainFiles(data);
  t.same([files['mom.train'].at(-1), files['papa.train'].at(-1)], ['0|Mom|And one more <EOM>', '0|Papa|Noch eins <EOM>']);
});

t.test("an error of the system's, such as a file too large to read, names the file", async (t) => {
  const dir = t.testdir();
  const big = path.join(dir, 'chat.txt');
  fs.closeSync(fs.openSync(big, 'w'));
  fs.truncateSync(big, 2 ** 31 + 1);  // sparse: no disk taken
  const failed = await importChats([dir], { out: path.join(dir, 'data'), me: ['Jane Doe'] }).catch((err: Error) => err);
  t.type(failed, ChatImportErrors);
  t.match((failed as Error).message, new RegExp(`^${big.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*2 GiB`));
});
