// Slack's workspace export: a channel, a direct message and a group direct message, each a folder of days that make
// one chat, named from users.json (or an Enterprise Grid org's org_users.json), channels.json, dms.json and mpims.json
// beside them; the user named by --me as id, username, e-mail address, name or display name; joins, pins, topics,
// bots, bare files, deleted messages and huddles dropped; Slack's markup made the text the app shows; the same from
// the export's zip; a day's file read without the listings; malformed days and listings refused with their file and
// field.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatImportErrors, importChats } from '../../lib/import';
import { parseSlack, slackWorkspace } from '../../lib/import/slack';
import { REPO, fixture, importInto, outputBytes } from './helpers';

const SLACK_ZIP = path.join(REPO, 'test', 'fixtures', 'zips', 'Acme Slack export Mar 4 2024 - Mar 6 2024.zip');

const EXPECTED = {
  'general.train': [
    '0|#general|Morning all! Standup notes: the doc, and the board is at https://acme.example/board <EOM>',
    '0|#general|@Jane Doe can you review the Q2 plan before Friday? <EOM>',
    '1|#general|Sure! R&D numbers first though <EOM>',
    '0|#general|@here lunch at 12:30? <3 the new place on 5th <EOM>',
    '1|#general|Count me in :tada: <EOM>',
    '0|#general|Thanks Jane! Draft is pinned in #general <EOM>',
    '0|#general|Slides from the offsite, 40 MB sorry <EOM>',
  ],
  'lena-fischer-omar-haddad.train': [
    '0|Lena Fischer, Omar Haddad|that was quick, thanks both <EOM>', '1|Lena Fischer, Omar Haddad|anytime <EOM>',
    '0|Lena Fischer, Omar Haddad|@Lena Fischer sending the recording now <EOM>',
  ],
  'omar-haddad.train': [
    '0|Omar Haddad|hey, got a minute? <EOM>', "1|Omar Haddad|sure, what's up? <EOM>",
    "0|Omar Haddad|can you cover my on-call Friday? I'll take yours next week & buy coffee ☕ <EOM>",
    '1|Omar Haddad|Done, swapped us in PagerDuty: https://acme.pagerduty.example/schedules/P1X2Y3Z <EOM>', '0|Omar Haddad|thanks!! :pray: <EOM>',
  ],
};

t.test('an export folder: a chat per conversation, its days one chat in time order, the user by id, username, e-mail address, name or display name', async (t) => {
  const dir = t.testdir();
  const first = await importInto(path.join(dir, 'id'), [fixture('slack')], { me: ['U061JD2K4QF'] });
  t.same(first.files, EXPECTED);
  t.same(first.summary.formats, { slack: 5 }, 'the days are read, users.json, channels.json, integration_logs.json... with them');
  t.same(first.summary.warnings, [], 'and are not reported as files skipped');
  t.match(first.summary, { read: 22, kept: 15, sent: 5, dropped: { system: 3, bot: 1, media: 1, deleted: 1, call: 1 } });
  t.match(first.summary.audiences, [
    { audience: '#general', conversations: 1, read: 12, kept: 7, sent: 2, dropped: { system: 3, bot: 1, media: 1 } },
    { audience: 'Omar Haddad', conversations: 1, read: 6, kept: 5, sent: 2, dropped: { deleted: 1 } },
    { audience: 'Lena Fischer, Omar Haddad', conversations: 1, read: 4, kept: 3, sent: 1, dropped: { call: 1 } },
  ]);
  for (const me of ['jane.doe', 'jane.doe@acme.example', 'Jane Doe', 'jane']) {
    await importInto(path.join(dir, me), [fixture('slack')], { me: [me] });
    t.same(outputBytes(path.join(dir, me)), outputBytes(path.join(dir, 'id')), me);
  }
});

t.test('without --me: the senders listed, as the export says nothing of who exported it', async (t) => {
  await t.rejects(importInto(t.testdir(), [fixture('slack')]), {
    message: 'say which sender is you with --me "<your name>" (as the app shows it; repeat --me for several): the senders found, with their messages: Lena Fischer (6), Omar Haddad (6), Jane Doe (5)',
  });
});

t.test('the zip as Slack hands it out imports as its folder; both at once, every message once', async (t) => {
  const dir = t.testdir();
  const zipped = await importInto(path.join(dir, 'zip'), [SLACK_ZIP], { me: ['jane.doe'] });
  t.same(zipped.files, EXPECTED);
  t.same(zipped.summary.warnings, []);
  const both = await importInto(path.join(dir, 'both'), [fixture('slack'), SLACK_ZIP], { me: ['jane.doe'] });
  t.same(both.files, EXPECTED);
  t.match(both.summary, { read: 44, kept: 15, dropped: { duplicate: 22 } });
});

t.test('--format slack reads the days of an export folder, and the listings beside them with them', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('slack')], { me: ['jane.doe'], format: 'slack' });
  t.same(files, EXPECTED);
  t.same(summary.formats, { slack: 5 });
});

t.test("an Enterprise Grid org's export, its members in org_users.json: the same", async (t) => {
  const dir = t.testdir();
  fs.cpSync(fixture('slack'), path.join(dir, 'export'), { recursive: true });
  fs.renameSync(path.join(dir, 'export', 'users.json'), path.join(dir, 'export', 'org_users.json'));
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'export')], { me: ['jane.doe@acme.example'] });
  t.same(files, EXPECTED);
  t.same(summary.warnings, []);
});

t.test("a conversation's folder without the listings: people named as its messages name them, with a warning", async (t) => {
  const dir = t.testdir();
  fs.cpSync(fixture('slack', 'general'), path.join(dir, 'general'), { recursive: true });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'general')], { me: ['jane.doe'] });
  t.same(files, {
    'lena-fischer-omar-haddad.train': EXPECTED['general.train'].map((line) => line.replace('|#general|', '|Lena Fischer, Omar Haddad|').replace('in #general', 'in #C061GEN0001')),
  }, 'a group by who wrote in it, named by them; a channel linked by its id');
  t.same(summary.warnings, [
    `${path.join(dir, 'general')}: no users.json of a Slack export beside this folder: people are named as its messages name them, and whether it is a channel or a direct message is told by who wrote in it`,
  ], 'once for the folder, not for each day');
});

t.test("Slack's markup as the app shows it, and what is dropped and why", async (t) => {
  const listings: Record<string, unknown> = {
    '../users.json': [
      { id: 'U1', name: 'ana', real_name: 'Ana Lima', profile: { real_name: 'Ana Lima', display_name: 'ana', email: 'ana@x.example' } },
      { id: 'U2', name: 'ci', is_bot: true, profile: { real_name: 'CI' } },
    ],
    '../channels.json': [{ id: 'C1', name: 'design', members: ['U1'] }],
  };
  const workspace = slackWorkspace((name) => (name in listings ? { file: name.slice(3), bytes: Buffer.from(JSON.stringify(listings[name])) } : null), '../');
  const message = (ts: string, fields: Record<string, unknown>) => ({ type: 'message', ts, user: 'U1', text: '', ...fields });
  const chat = parseSlack('design/2024-01-01.json', [
    message('1704103200.123456', { text: 'ping <@U1>, <@U9|bo> and <!subteam^S1|@design-team>: <!channel> &lt;b&gt;' }),
    message('1704103201.000100', { text: 'see <#C1> and <#C7|old-name>, <mailto:ana@x.example|ana@x.example>, <https://x.example/?a=1&amp;b=2>' }),
    message('1704103202.000100', { subtype: 'me_message', text: 'waves' }),
    message('1704103203.000100', { subtype: 'thread_broadcast', text: 'also in the channel', thread_ts: '1704103200.123456' }),
    message('1704103204.000100', { subtype: 'file_share', text: '<@U1|ana> uploaded a file: <https://x.example/f|plan.pdf>', file: { id: 'F1' } }),
    message('1704103205.000100', { user: 'U2', text: 'build passed' }),
    message('1704103206.000100', { bot_id: 'B1', text: 'posted by an app' }),
    message('1704103207.000100', { subtype: 'slackbot_response', user: 'USLACKBOT', text: 'The wifi password is on the wiki' }),
    message('1704103208.000100', { subtype: 'sh_room_created', text: '' }),
    message('1704103209.000100', { subtype: 'channel_purpose', text: '<@U1> set the channel purpose: pixels' }),
    message('1704103210.000100', { user: undefined, text: 'no one' }),
    message('1704103211.000100', { subtype: 'tombstone', user: 'USLACKBOT', text: 'This message was deleted.' }),
  ], workspace, []);
  t.same({ key: chat.key, title: chat.title, group: chat.group }, { key: 'slack:C1', title: '#design', group: true });
  t.equal(chat.messages[0].time, Date.UTC(2024, 0, 1, 10, 0, 0, 123), 'ts in milliseconds');
  t.same(chat.messages[0].senderIds, ['U1', 'ana', 'ana@x.example']);
  t.same(chat.messages.map((m) => [m.sender, m.dropped ?? m.text]), [
    ['Ana Lima', 'ping @Ana Lima, @bo and @design-team: @channel <b>'],
    ['Ana Lima', 'see #design and #old-name, ana@x.example, https://x.example/?a=1&b=2'],
    ['Ana Lima', 'waves'],
    ['Ana Lima', 'also in the channel'],
    ['Ana Lima', 'media'],
    ['CI', 'bot'],
    ['Ana Lima', 'bot'],
    ['USLACKBOT', 'bot'],
    ['Ana Lima', 'call'],
    ['Ana Lima', 'system'],
    ['', 'unreadable'],
    ['', 'deleted'],
  ]);
});

t.test('malformed input: each problem with its file and field, nothing written', async (t) => {
  const ok = { type: 'message', user: 'U061JD2K4QF', text: 'hi', ts: '1709542800.000100' };
  const dir = t.testdir({
    exports: {
      'users.json': fs.readFileSync(fixture('slack', 'users.json'), 'utf8'),
      D061OMAR0JD: { '2024-03-04.json': JSON.stringify([ok, 'hello']) },
      general: { '2024-03-04.json': JSON.stringify([ok, { type: 'message', user: 'U061JD2K4QF', text: 'when?' }]) },
      random: { '2024-03-04.json': JSON.stringify([ok, { ...ok, ts: 'yesterday' }]) },
    },
    listing: { 'users.json': fs.readFileSync(fixture('slack', 'users.json'), 'utf8'), 'channels.json': '{"channels": []}', general: { '2024-03-04.json': JSON.stringify([ok]) } },
    'day.json': JSON.stringify({ messages: [ok] }),
  });
  const error = (await importChats([path.join(dir, 'exports')], { out: path.join(dir, 'out'), me: ['jane.doe'] }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.same(error.message.split('\n').map((line) => line.replace(dir + path.sep, '')), [
    `${path.join('exports', 'D061OMAR0JD', '2024-03-04.json')}: [1] is "hello", not a message ({"type": "message", "ts", "user", "text"...})`,
    `${path.join('exports', 'general', '2024-03-04.json')}: [1] has no "ts": every message of a Slack export has its time ("1709546400.000100")`,
    `${path.join('exports', 'random', '2024-03-04.json')}: [1].ts "yesterday" is not a time as Slack writes them ("1709546400.000100": seconds since 1970)`,
  ]);
  t.notOk(fs.existsSync(path.join(dir, 'out')));
  const listing = (await importChats([path.join(dir, 'listing')], { out: path.join(dir, 'out'), me: ['jane.doe'] }).catch((e: unknown) => e)) as ChatImportErrors;
  t.same(listing.errors.map((e) => e.message), [
    `${path.join(dir, 'listing', 'channels.json')}: not a listing of a Slack export: a JSON list of conversations ({"id", "name", "members"}) is expected`,
  ], 'once, though every file of the export reads it');
  await t.rejects(importChats([path.join(dir, 'day.json')], { out: path.join(dir, 'out'), me: ['jane.doe'], format: 'slack' }), {
    message: `${path.join(dir, 'day.json')}: not a day of a Slack export's conversation: a JSON list of messages ({"type": "message", "ts": "1709546400.000100", ...}) is expected`,
  });
});
