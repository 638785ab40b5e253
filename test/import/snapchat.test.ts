// Snapchat's "My Data" download: chat_history.json as it is now (a list per conversation, the sender marked) and
// as older downloads had it (the saved chats, received and sent); no --me needed; media, stickers and Snapchat's
// notices dropped; a group named by its title.
import t from 'tap';
import { parseSnapchat } from '../../lib/import/snapchat';
import { fixture, importInto } from './helpers';

t.test('chat_history.json: a file per conversation, in time order, without --me', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('snapchat')]);
  t.same(files, {
    'beach-trip.train': ['0|Beach trip|Beach on Saturday? <EOM>', "0|Beach trip|I'm in <EOM>", "1|Beach trip|Me too, I'll drive <EOM>"],
    'mom-k.train': ['0|mom_k|Leaving now, the traffic is terrible <EOM>', '1|mom_k|did you get home ok? <EOM>', '0|mom_k|Yes! Thanks for dinner <EOM>'],
  });
  t.same(summary.formats, { snapchat: 1 });
  t.same(summary.dropped, { media: 2, empty: 1, system: 1 });
});

t.test('an older download: the saved chats received and sent, a conversation per person', async (t) => {
  const chats = parseSnapchat('chat_history.json', {
    'Received Saved Chat History': [
      { From: 'mom_k', 'Media Type': 'TEXT', Created: '2019-02-12 20:01:05 UTC', Text: 'Home safe' },
      { From: 'alex_r', 'Media Type': 'MEDIA', Created: '2019-02-13 08:00:00 UTC', Text: '' },
    ],
    'Sent Saved Chat History': [{ To: 'mom_k', 'Media Type': 'TEXT', Created: '2019-02-12 20:00:00 UTC', Text: 'Text me when you are home' }],
  });
  t.same(chats.map((c) => [c.key, c.group, c.messages.map((m) => [m.time, m.sender, m.mine, m.text, m.dropped])]), [
    ['snapchat:mom_k', false, [[Date.UTC(2019, 1, 12, 20, 0, 0), 'me', true, 'Text me when you are home', null], [Date.UTC(2019, 1, 12, 20, 1, 5), 'mom_k', false, 'Home safe', null]]],
    ['snapchat:alex_r', false, [[Date.UTC(2019, 1, 13, 8), 'alex_r', false, '', 'media']]],
  ]);
});
