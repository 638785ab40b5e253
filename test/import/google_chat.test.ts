// Google Chat in Google Takeout: a direct message and a space, each messages.json beside its group_info.json (the
// space's name), the user named by e-mail address or name, or by the export's Users/User <id>/user_info.json
// without --me; deleted messages, bare attachments and bots' messages dropped; Takeout's English dates; the same
// from the Takeout zip.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { takeoutDate } from '../../lib/import/google_chat';
import { REPO, fixture, importInto, outputBytes } from './helpers';

const TAKEOUT_ZIP = path.join(REPO, 'test', 'fixtures', 'zips', 'takeout-20230401T120000Z-001.zip');

const EXPECTED = {
  'hiking-crew.train': ['0|Hiking crew|Trail for Sunday: Mount Tam loop, 10 km <EOM>', "0|Hiking crew|I'm in <EOM>", "1|Hiking crew|Me too, I'll bring snacks <EOM>"],
  'priya-shah.train': [
    '0|Priya Shah|Are we still on for lunch tomorrow? <EOM>', '1|Priya Shah|Yes! 12:30 at the usual place? <EOM>', '0|Priya Shah|Perfect, see you there <EOM>',
    '1|Priya Shah|Running 5 min late sorry! <EOM>',
  ],
};

t.test('a Takeout folder: a file per conversation, the space by its name, the user by e-mail address or name', async (t) => {
  for (const me of ['jane.doe@gmail.com', 'Jane Doe']) {
    const { files, summary } = await importInto(t.testdir(), [fixture('googlechat')], { me: [me] });
    t.same(files, EXPECTED, me);
    t.same(summary.formats, { googlechat: 2 }, 'group_info.json and user_info.json are read as companions, not chats');
    t.same(summary.dropped, { deleted: 1, media: 1, system: 1 });
    t.same(summary.warnings.filter((w) => /no chat export/.test(w)), [], 'and are not reported as files skipped');
  }
});

t.test('the Takeout zip as Google hands it out: the same, group_info.json read beside messages.json inside it', async (t) => {
  const { files } = await importInto(t.testdir(), [TAKEOUT_ZIP], { me: ['jane.doe@gmail.com'] });
  t.same(files, EXPECTED);
});

t.test("without --me, user_info.json says who the user is: the same bytes as with --me, from the folder, Google Chat's folder in it and the zip", async (t) => {
  const dir = t.testdir();
  const withMe = path.join(dir, 'with-me');
  await importInto(withMe, [fixture('googlechat')], { me: ['Jane Doe'] });
  t.same(Object.keys(outputBytes(withMe)), ['hiking-crew.train', 'priya-shah.train']);
  for (const [name, input] of [['takeout', fixture('googlechat')], ['google-chat', fixture('googlechat', 'Takeout', 'Google Chat')], ['zip', TAKEOUT_ZIP]]) {
    const out = path.join(dir, name);
    const { summary } = await importInto(out, [input]);
    t.same(outputBytes(out), outputBytes(withMe), name);
    t.same(summary.skipped, [], `${name}: no chat left out`);
  }
});

t.test('--me given wins over user_info.json: naming another member, their side is the one written as yours', async (t) => {
  for (const input of [fixture('googlechat'), TAKEOUT_ZIP]) {
    const { files } = await importInto(t.testdir(), [input], { me: ['priya.shah@gmail.com'] });
    t.same(files, {
      'hiking-crew.train': ['0|Hiking crew|Trail for Sunday: Mount Tam loop, 10 km <EOM>', "1|Hiking crew|I'm in <EOM>", "0|Hiking crew|Me too, I'll bring snacks <EOM>"],
      'jane-doe.train': [
        '1|Jane Doe|Are we still on for lunch tomorrow? <EOM>', '0|Jane Doe|Yes! 12:30 at the usual place? <EOM>', '1|Jane Doe|Perfect, see you there <EOM>',
        '0|Jane Doe|Running 5 min late sorry! <EOM>',
      ],
    }, path.basename(input));
  }
});

t.test('conversations without the Users folder: --me is asked for, the senders listed, as before', async (t) => {
  const dir = t.testdir();
  fs.cpSync(fixture('googlechat', 'Takeout', 'Google Chat', 'Groups'), path.join(dir, 'Groups'), { recursive: true });
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'Groups')]), {
    message: 'say which sender is you with --me "<your name>" (as the app shows it; repeat --me for several): the senders found, with their messages: Jane Doe (4), Priya Shah (4), Tom Baker (1)',
  });
  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'Groups')], { me: ['jane.doe@gmail.com'] });
  t.same(files, EXPECTED);
});

t.test("Takeout's dates: US English (a narrow space before AM and PM in newer exports), British English", async (t) => {
  t.equal(takeoutDate('Monday, March 6, 2023 at 9:15:02 AM UTC'), Date.UTC(2023, 2, 6, 9, 15, 2));
  t.equal(takeoutDate('Monday, March 6, 2023 at 1:05:10\u202fPM UTC'), Date.UTC(2023, 2, 6, 13, 5, 10));
  t.equal(takeoutDate('Sunday, January 1, 2023 at 12:00:00 AM UTC'), Date.UTC(2023, 0, 1, 0, 0, 0), '12 AM is midnight');
  t.equal(takeoutDate('Sunday, January 1, 2023 at 12:30:00 PM UTC'), Date.UTC(2023, 0, 1, 12, 30, 0), '12 PM is noon');
  t.equal(takeoutDate('Saturday, 1 April 2023 at 08:02:11 UTC'), Date.UTC(2023, 3, 1, 8, 2, 11));
  for (const text of ['Samstag, 1. April 2023 um 08:02:11 UTC', 'Monday, March 6, 2023 at 13:05:10 PM UTC', '2023-03-06T09:15:02Z']) t.ok(Number.isNaN(takeoutDate(text)), text);
  const dir = t.testdir({
    'DM x': { 'messages.json': JSON.stringify({ messages: [{ creator: { name: 'A', email: 'a@x' }, created_date: 'Samstag, 1. April 2023 um 08:02:11 UTC', text: 'hallo' }] }) },
  });
  await t.rejects(importInto(path.join(dir, 'out'), [path.join(dir, 'DM x', 'messages.json')], { me: ['A'] }), {
    message: /DM x\/messages\.json: messages\[0\]\.created_date "Samstag, 1\. April 2023 um 08:02:11 UTC" is not a date as Takeout writes them in English/,
  });
});
