// Signal chats as signal-export (sigexport, for Signal Desktop) writes them: a folder per chat with its data.json, a
// message a line, the user's messages sent by "Me" (no --me); chat.md beside it never read. The fixtures are the
// output of signal-export 3.9.0's own Message model (to_md and dict_str, as its main.py writes them), the lines of
// older versions (3.0 to 3.8: "sticker" the emoji, no "deleted", "call" nor "missed") as their create.py made them.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { importChats } from '../../lib/import';
import { firstJsonLine } from '../../lib/import/fine_tuning';
import { SIGNAL_MARKDOWN_ADVICE, isSignalMarkdown, looksLikeSignal, parseSignal } from '../../lib/import/signal';
import { EXPORTS, fixture, importInto } from './helpers';

t.test('a folder of chats: a file per chat, the user told by "Me", a group by more than one other person writing', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('signal')]);
  t.same(files, {
    'bandpractice.train': [
      '0|BandPractice|Rehearsal moved to Thursday 7pm <EOM>', '0|BandPractice|can you bring the spare cables? <EOM>',
      "1|BandPractice|Sure, I'll bring them <EOM>", '0|BandPractice|Thanks all 🎸 same time next week <EOM>',
    ],
    'noahwilliams.train': [
      '0|NoahWilliams|Are we still on for Saturday? <EOM>', '1|NoahWilliams|Yes! 10am at the trailhead <EOM>', '0|NoahWilliams|Running 10 min late, sorry <EOM>',
      '1|NoahWilliams|The view from the top <EOM>', '0|NoahWilliams|Great hike! Same time next month? <EOM>', '1|NoahWilliams|Definitely <EOM>',
    ],
  }, 'quotes and reactions left out, an @mention\'s placeholder gone, a caption kept without its photo');
  t.same(summary.formats, { signal: 2 }, 'data.json only: chat.md is not read');
  t.match(summary, { read: 18, kept: 10, sent: 4 });
  t.same(summary.dropped, { media: 3, call: 2, system: 2, deleted: 1 }, 'photos, a voice note and a sticker; calls; notices; a message deleted for everyone');
  const chats = [fixture('signal', 'BandPractice', 'data.json'), fixture('signal', 'NoahWilliams', 'data.json')].map((file) => parseSignal(file, fs.readFileSync(file, 'utf8')));
  t.same(chats[0].messages.map((m) => [m.sender, m.mine, m.dropped]).slice(0, 4), [['OmarHaddad', false, 'system'], ['LenaFischer', false, null], ['OmarHaddad', false, null], ['Me', true, null]]);
  t.equal(chats[1].messages[0].time, Date.UTC(2024, 2, 1, 17, 2, 11, 412), 'the wall clock, as if UTC');

  const noGroups = await importInto(t.testdir(), [fixture('signal')], { groups: false });
  t.same(Object.keys(noGroups.files), ['noahwilliams.train']);
  t.match(noGroups.summary.skipped, [{ title: 'BandPractice', reason: 'group chat', messages: 7 }]);
});

// Lines as signal-export 3.0 to 3.8 wrote them (from 3.8.4, with no sticker, "sticker": null).
const OLD = (date: string, sender: string | null, body: string, sticker: string | null = ''): string =>
  JSON.stringify({ date, sender, body: `${body}  `, quote: '', sticker, reactions: [], attachments: [] });

t.test('older exports: a call by its text, a sticker by its emoji, a sender without a name; a chat exported twice', async (t) => {
  const first = [
    OLD('2023-11-04T19:00:00', 'Aya', 'Dinner at 8?'), OLD('2023-11-04T19:01:30.250000', 'Me', 'Perfect'),
    OLD('2023-11-04T19:02:00', 'Aya', '', '😂'), OLD('2023-11-04T19:05:00', 'Aya', 'Incoming call'), OLD('2023-11-04T19:30:00', 'Aya', ''),
  ];
  const dir = t.testdir({
    old: { Aya: { 'data.json': `${first.join('\n')}\n` } },
    new: { Aya: { 'data.json': `${[...first.slice(1), OLD('2023-11-05T08:00:00', 'Me', 'Thanks for tonight')].join('\n')}\n` } },
    unnamed: { None: { 'data.json': `${OLD('2023-12-01T10:00:00', null, 'Hi, it is Sam from the climbing gym')}\n${OLD('2023-12-01T10:04:00', 'Me', 'Hey Sam!')}\n` } },
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), ['old', 'new', 'unnamed'].map((name) => path.join(dir, name)));
  t.same(files, {
    'aya.train': ['0|Aya|Dinner at 8? <EOM>', '1|Aya|Perfect <EOM>', '1|Aya|Thanks for tonight <EOM>'],
    'none.train': ['0|None|Hi, it is Sam from the climbing gym <EOM>', '1|None|Hey Sam! <EOM>'],
  });
  t.same(summary.dropped, { duplicate: 4, media: 1, call: 1, system: 1 }, 'the second export\'s overlap kept once');
});

t.test('3.8.4 to 3.8.6: a call by its text, with its kind and how it ended; since 3.9, by its field, the same words typed a message', async (t) => {
  const calls = [
    'Outgoing voice call (accepted, 2m 5s)', 'Incoming video call (accepted, 45s)', 'Incoming voice call (accepted)', 'Missed video call',
    'Incoming voice call (declined)', 'Outgoing call (unanswered)', 'Outgoing voice call (declined by recipient)', 'Incoming group call',
  ];
  const typed = (body: string): string =>
    JSON.stringify({ date: '2026-08-01T09:30:00', sender: 'Me', body: `${body}  `, quote: '', sticker: null, reactions: [], attachments: [], deleted: false, call: false, missed: false });
  const dir = t.testdir({
    Aya: {
      'data.json': [
        OLD('2026-05-01T10:00:00', 'Aya', 'Dinner at 8?', null),
        ...calls.map((call, i) => OLD(`2026-05-01T10:0${i + 1}:00`, i % 2 === 0 ? 'Me' : 'Aya', call, null)),
        OLD('2026-05-01T10:10:00', 'Me', 'Missed voice call, will ring back', null),
        typed('Missed voice call'),
        '',
      ].join('\n'),
    },
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'Aya')]);
  t.same(files, { 'aya.train': ['0|Aya|Dinner at 8? <EOM>', '1|Aya|Missed voice call, will ring back <EOM>', '1|Aya|Missed voice call <EOM>'] });
  t.same(summary.dropped, { call: calls.length });
});

t.test('since 3.9: a second contact of one name in NoahWilliams2/ is named as the first; Note to Self is skipped', async (t) => {
  const line = (sender: string, body: string): string =>
    JSON.stringify({ date: '2026-08-01T09:00:00', sender, body: `${body}  `, quote: '', sticker: null, reactions: [], attachments: [], deleted: false, call: false, missed: false });
  const dir = t.testdir({
    NoahWilliams2: { 'data.json': `${line('NoahWilliams', 'Hi, new number')}\n` },
    NotetoSelf: { 'data.json': `${line('Me', 'buy milk')}\n` },
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'NoahWilliams2'), path.join(dir, 'NotetoSelf')]);
  t.same(files, { 'noahwilliams.train': ['0|NoahWilliams|Hi, new number <EOM>'] });
  t.match(summary.skipped, [{ title: 'NotetoSelf', reason: 'saved messages', messages: 1 }]);
});

t.test('detected by content: no other app\'s export looks like signal-export\'s, and its chat.md is refused', async (t) => {
  const others = fs.readdirSync(EXPORTS, { recursive: true, encoding: 'utf8' })
    .map((name) => path.join(EXPORTS, name))
    .filter((file) => !file.startsWith(fixture('signal')) && /\.(txt|json|jsonl|xml|js|html)$/.test(file) && fs.statSync(file).isFile());
  t.ok(others.length > 40);
  t.same(others.filter((file) => {
    const text = fs.readFileSync(file, 'utf8');
    return looksLikeSignal(firstJsonLine(text)) || isSignalMarkdown(text);
  }), []);
  const markdown = fixture('signal', 'NoahWilliams', 'chat.md');
  await t.rejects(importChats([markdown], { out: t.testdir() }), {
    message: `${markdown}:1: ${SIGNAL_MARKDOWN_ADVICE}`,
  });
});

// signal-export 1.x wrote a chat's index.md ("[2021-10-15 17:05] Me: ..." a line) beside index.html and media/, and
// 2.x (and 3.x with --no-json) chat.md beside index.html: no data.json to read.
t.test('an export of signal-export before 3.0 (or run with --no-json), with no data.json: refused, naming the version to export with', async (t) => {
  const dir = t.testdir({
    v1: { NoahWilliams: { 'index.md': '[2021-10-15 17:05] NoahWilliams: Are we still on for Saturday?  \n[2021-10-15 17:06] Me: Yes!  \n', 'index.html': '<html><body></body></html>\n', media: {} } },
    v2: { NoahWilliams: { 'chat.md': '[2024-05-01 10:00:00] NoahWilliams: Are we still on for Saturday?  \n\n[2024-05-01 10:01:00] Me: Yes!  \n\n', 'index.html': '<html><body></body></html>\n' } },
  });
  for (const [input, markdown] of [['v1', 'v1/NoahWilliams/index.md'], ['v2', 'v2/NoahWilliams/chat.md'], ['v1/NoahWilliams', 'v1/NoahWilliams/index.md']]) {
    await t.rejects(importChats([path.join(dir, input)], { out: path.join(dir, 'out') }), { message: `${path.join(dir, markdown)}: ${SIGNAL_MARKDOWN_ADVICE}` }, input);
  }
  await t.rejects(importChats([path.join(dir, 'v1', 'NoahWilliams', 'index.md')], { out: path.join(dir, 'out') }), { message: `${path.join(dir, 'v1', 'NoahWilliams', 'index.md')}:1: ${SIGNAL_MARKDOWN_ADVICE}` });
  t.match(SIGNAL_MARKDOWN_ADVICE, /signal-export 3\.0 or later/);
  t.notOk(fs.existsSync(path.join(dir, 'out')), 'nothing written');
});

t.test('a broken data.json: the error names its file and line', async (t) => {
  const good = OLD('2023-11-04T19:00:00', 'Aya', 'Dinner at 8?');
  const dir = t.testdir({
    cut: { 'data.json': `${good}\n{"date": "2023-11-04T19:01:30", "sender": "Me", "bo` },
    other: { 'data.json': `${good}\n{"sender": "Me", "text": "hi"}\n` },
    date: { 'data.json': `${good}\n${OLD('04/11/2023 19:01', 'Me', 'hi')}\n` },
  });
  const error = (name: string): Promise<unknown> => importChats([path.join(dir, name, 'data.json')], { out: path.join(dir, 'out') }).catch((e: unknown) => e);
  t.match(await error('cut'), { message: /cut\/data\.json:2: not valid JSON \(signal-export's data\.json holds a message a line\): / });
  t.match(await error('other'), { message: /other\/data\.json:2: not a message of signal-export's data\.json: it has no "date" and "body"$/ });
  t.match(await error('date'), { message: /date\/data\.json:2: a date signal-export does not write: "04\/11\/2023 19:01"$/ });
  t.notOk(fs.existsSync(path.join(dir, 'out')), 'nothing written');
});
