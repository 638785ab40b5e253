// Skype's "Export your Skype data": messages.json (in the export's .tar, or taken out of it), every conversation
// of the account; no --me, the export saying who the user is. The fixture's layout is the export's as Skyperious
// (which imports these exports) documents and reads it, and as the parsers of it published on GitHub type it:
// userId and exportDate beside conversations[] of id, displayName, version, properties, threadProperties (a group's
// members as a JSON string) and MessageList[], newest first, of id, displayName (null on some), originalarrivaltime,
// messagetype, version, content, conversationid, from, properties (edittime, deletetime) and
// amsreferences; the content's markup (<e_m/>, <quote> with <legacyquote>, <ss>, <at>, <URIObject>, <partlist>,
// <addmember>, <topicupdate>) as Skype's clients and Skyperious's examples write it.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatImportErrors, importChats } from '../../lib/import';
import { EXPORTS, REPO, fixture, importInto } from './helpers';
import { looksLikeDiscord } from '../../lib/import/discord';
import { looksLikeElement } from '../../lib/import/element';
import { looksLikeGoogleChat } from '../../lib/import/google_chat';
import { looksLikeMessenger } from '../../lib/import/messenger';
import { looksLikeSkype, parseSkype } from '../../lib/import/skype';
import { looksLikeSnapchat } from '../../lib/import/snapchat';
import { looksLikeTelegram } from '../../lib/import/telegram';
import { datasetFiles } from '../../lib/data/files';

const SKYPE_TAR = path.join(REPO, 'test', 'fixtures', 'tars', '8_live_jane.doe_export.tar');
const MESSAGES_JSON = fixture('skype', 'messages.json');

const OLIVIA = [
  '0|Olivia Bennett|Hi! Are we still on for Friday? <EOM>', "1|Olivia Bennett|Yes & I'll book the table :) <EOM>", '0|Olivia Bennett|Perfect, see you at 8 <EOM>',
  '1|Olivia Bennett|Try https://example.com/menu first <EOM>', "0|Olivia Bennett|Bring a jacket, it's cold <3 <EOM>",
];
const SKI_TRIP = ["0|Ski trip 2019|Who's driving? <EOM>", '1|Ski trip 2019|I can drive <EOM>', "0|Ski trip 2019|Jane Doe you're the best <EOM>"];

t.test('messages.json: a file per person and per group, in time order, without --me', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [MESSAGES_JSON]);
  t.same(files, { 'olivia-bennett.train': OLIVIA, 'ski-trip-2019.train': SKI_TRIP }, 'the markup made text: entities decoded, the quoted message, the edit mark and the emoticon tag gone, a link as its text');
  t.same(summary.formats, { skype: 1 });
  t.match(summary, { read: 19, kept: 8, sent: 3 });
  t.same(summary.dropped, { call: 3, media: 2, deleted: 1, system: 2, bot: 1, 'bot chat': 2 }, 'calls, a photo and a file, a deleted message, a join and a topic, a bot in the group; the concierge bot and the sound test service');
  t.same(summary.skipped.map((s) => [s.title, s.reason, s.messages]), [['calllogs', 'call', 1], ['Skype', 'bot chat', 1], ['Echo / Sound Test Service', 'bot chat', 1]]);
  t.same(summary.audiences.find((a) => a.audience === 'Olivia Bennett')?.dropped, { call: 2, media: 1, deleted: 1 });
  t.same(summary.audiences.find((a) => a.audience === 'Ski trip 2019')?.dropped, { system: 2, media: 1, bot: 1 });
});

t.test("the export's .tar imports as its messages.json, read where it is", async (t) => {
  const dir = t.testdir();
  const tarred = await importInto(path.join(dir, 'tar'), [SKYPE_TAR]);
  t.same(tarred.files, { 'olivia-bennett.train': OLIVIA, 'ski-trip-2019.train': SKI_TRIP });
  t.same(tarred.summary.formats, { skype: 1 });
  t.equal(tarred.summary.skipped[0].file, path.join(SKYPE_TAR, 'messages.json'), 'named under the tar');
  // Told by its content, not its name.
  const renamed = path.join(dir, 'skype-export');
  fs.copyFileSync(SKYPE_TAR, renamed);
  t.same((await importInto(path.join(dir, 'renamed'), [renamed])).files, tarred.files);
});

t.test('--me still wins: it may name the account by its id as Skype shows it', async (t) => {
  const { files } = await importInto(t.testdir(), [MESSAGES_JSON], { me: ['live:jane.doe'] });
  t.same(files['olivia-bennett.train'], OLIVIA);
  const olivia = await importInto(t.testdir(), [MESSAGES_JSON], { me: ['Olivia Bennett'] });
  t.same(olivia.files['ski-trip-2019.train'], ["0|Ski trip 2019|Who's driving? <EOM>", '0|Ski trip 2019|I can drive <EOM>', "1|Ski trip 2019|Jane Doe you're the best <EOM>"], 'in a chat where --me names another sender, theirs is your side');
});

t.test('an edited message as last edited, dated as first sent; one edited to nothing is deleted', async (t) => {
  const at = (ms: number): string => new Date(ms).toISOString();
  const message = (id: number, content: string, properties: Record<string, string> | null, from = '8:live:mom'): Record<string, unknown> => ({
    id: String(id), displayName: 'Mom', originalarrivaltime: at(id), messagetype: 'RichText', content, conversationid: '8:live:mom', from, properties, amsreferences: null,
  });
  const [chat] = parseSkype('messages.json', {
    userId: '8:live:jane.doe', exportDate: '2025-04-28T17:05',
    conversations: [{
      id: '8:live:mom', displayName: 'Mom', threadProperties: null,
      // Newest first; the edit's versions each marked with the first's time, the last one's (edittime) kept.
      MessageList: [
        message(1_600_000_300_000, 'Edited previous message: See you at 7<e_m ts="1600000300" ts_ms="1600000100000" a="live:mom" t="61"/>', { edittime: '1600000300000' }),
        message(1_600_000_200_000, '<e_m ts="1600000200" ts_ms="1600000200000" a="live:mom" t="61"/>', { edittime: '1600000250000' }),
        message(1_600_000_150_000, 'See you at 6<e_m ts="1600000150" ts_ms="1600000100000" a="live:mom" t="61"/>', { edittime: '1600000150000' }),
        message(1_600_000_000_000, 'Dinner <b>tonight</b>?<br>At home', null),
      ],
    }],
  });
  t.same(chat.messages.map((m) => [m.time, m.sender, m.text, m.dropped]), [
    [1_600_000_000_000, 'Mom', 'Dinner tonight?\nAt home', null],
    [1_600_000_100_000, 'Mom', 'See you at 6', 'duplicate'],
    [1_600_000_100_000, 'Mom', 'See you at 7', null],
    [1_600_000_200_000, 'Mom', '', 'deleted'],
  ]);
  t.same([chat.group, chat.key, chat.myIds], [false, 'skype:8:live:mom', ['8:live:jane.doe', 'live:jane.doe']]);
});

t.test("told by its content: no other app's JSON export is taken for Skype's, nor Skype's for another's", async (t) => {
  const skype = JSON.parse(fs.readFileSync(MESSAGES_JSON, 'utf8')) as Record<string, unknown>;
  t.ok(looksLikeSkype(skype));
  t.same([looksLikeTelegram, looksLikeMessenger, looksLikeDiscord, looksLikeGoogleChat, looksLikeSnapchat, looksLikeElement].filter((looksLike) => looksLike(skype)), []);
  const others = datasetFiles(EXPORTS).filter((file) => file.endsWith('.json') && file !== MESSAGES_JSON);
  t.ok(others.length >= 10);
  const takenForSkype = others.filter((file) => {
    let root: unknown;
    try {
      root = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      return false;  // JSON Lines (signal-export's data.json), never read as one JSON value
    }
    return typeof root === 'object' && root !== null && !Array.isArray(root) && looksLikeSkype(root as Record<string, unknown>);
  });
  t.same(takenForSkype, []);
});

t.test('a messages.json cut short, or not Skype\'s: an error naming the file, and nothing written', async (t) => {
  const text = fs.readFileSync(MESSAGES_JSON, 'utf8');
  const dir = t.testdir({ 'messages.json': text.slice(0, 2000), 'other.json': '{"userId": "8:live:jane.doe", "exportDate": "2025-04-28T17:05"}', out: {} });
  const cut = path.join(dir, 'messages.json');
  const error = (await importChats([cut], { out: path.join(dir, 'out') }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.match(error.message, new RegExp(`^${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: the JSON stops in the middle: the export is truncated`));
  const other = path.join(dir, 'other.json');
  await t.rejects(importChats([other], { out: path.join(dir, 'out'), format: 'skype' }), { message: `${other}: not a Skype export: no "conversations" list` });
  t.same(fs.readdirSync(path.join(dir, 'out')), []);
});
