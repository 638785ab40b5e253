// Direct messages in an X (Twitter) archive: data/direct-messages.js and -group.js read, the user known from
// account.js beside them (or named by account id with --me), links given back their full address, the media link
// and the conversation's notices dropped, a group by its name; the archive's other files (tweets.js) not read.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { fixture, importInto } from './helpers';

const ME = '1180000000000000001';
const EXPECTED = {
  '2250000002.train': ['1|2250000002|Ramen tonight? <EOM>', '0|2250000002|this is the place https://example.com/ramen <EOM>', '1|2250000002|see you at 7 then <EOM>'],
  'game-night.train': ['1|Game night|Board games on Friday? <EOM>', '0|Game night|Count me in! <EOM>'],
};

t.test('an archive: its direct messages only, the user known from account.js', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('x')]);
  t.same(files, EXPECTED);
  t.same(summary.formats, { x: 2 });
  t.same(summary.dropped, { system: 2, media: 1 });
  t.same(summary.warnings.filter((w) => /no chat export/.test(w)), [], 'tweets.js and account.js are not read as exports');
  const named = await importInto(path.join(t.testdir(), 'named'), [fixture('x')], { audienceMap: { 2250000002: 'Kai' } });
  t.same(Object.keys(named.files), ['game-night.train', 'kai.train'], 'people are account ids, named with --audience-map');
});

t.test('without account.js, --me names the user by account id; any other file of the archive is refused by name', async (t) => {
  const dir = t.testdir({ 'direct-messages.js': fs.readFileSync(fixture('x', 'data', 'direct-messages.js')), out: {} });
  await t.rejects(importInto(path.join(dir, 'out'), [dir]), { message: /^say which sender is you with --me/ });
  const { files } = await importInto(path.join(dir, 'out'), [dir], { me: [ME] });
  t.same(files, { '2250000002.train': EXPECTED['2250000002.train'] });
  await t.rejects(importInto(path.join(dir, 'other'), [fixture('x', 'data', 'tweets.js')]), { message: /tweets\.js:1: an X archive's tweets, not a WhatsApp/ });
});

t.test("a large archive's further parts (direct-messages-part1.js) are read, a conversation's parts joined", async (t) => {
  const part = (n: number, text: string, createdAt: string): string => `window.YTD.direct_messages.part${n} = ${JSON.stringify([
    { dmConversation: { conversationId: `${ME}-2250000002`, messages: [{ messageCreate: { recipientId: ME, senderId: '2250000002', text, mediaUrls: [], urls: [], id: String(n), createdAt } }] } },
  ])}`;
  const dir = t.testdir({
    data: {
      'account.js': fs.readFileSync(fixture('x', 'data', 'account.js')),
      'direct-messages.js': part(0, 'first part', '2023-09-01T10:00:00.000Z'),
      'direct-messages-part1.js': part(1, 'second part', '2023-09-02T10:00:00.000Z'),
    },
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'data')]);
  t.same(files, { '2250000002.train': ['0|2250000002|first part <EOM>', '0|2250000002|second part <EOM>'] });
  t.same(summary.formats, { x: 2 });
});
