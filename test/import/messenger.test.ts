// Facebook Messenger and Instagram JSON: the escaped UTF-8 ("\u00c3\u00a9") repaired, message_1.json and
// message_2.json joined into one conversation in time order, notices, reactions, calls, media and unsent
// messages dropped, group chats named by their title.
import path from 'node:path';
import t from 'tap';
import { parseMessenger, repairMojibake } from '../../lib/import/messenger';
import { fixture, importInto } from './helpers';

t.test('Messenger: mojibake repaired, the parts of a chat in time order', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('messenger')], { me: ['Jane Doe'] });
  t.same(files, {
    'marie-martin.train': [
      '1|Marie Martin|Ça va ? <EOM>',
      '0|Marie Martin|Très bien, et toi ? On se voit demain ? <EOM>',
      '0|Marie Martin|C’est génial 😀 <EOM>',
      '1|Marie Martin|Regarde ça : https://www.youtube.com/watch?v=dQw4w9WgXcQ <EOM>',
      '1|Marie Martin|Bien sûr, à demain ! <EOM>',
    ],
  });
  t.match(summary, { read: 10, kept: 5, sent: 3, dropped: { system: 1, media: 1, call: 1, deleted: 1, reaction: 1 }, formats: { messenger: 2 } });
});

t.test('Instagram group: the title is the audience; likes and shared posts dropped', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('instagram')], { me: ['Jane Doe'] });
  t.same(files, { 'weekend-crew.train': ["1|Weekend crew|Who's in for Saturday? <EOM>", '0|Weekend crew|Me! 🙋 <EOM>', '0|Weekend crew|Moi aussi ! <EOM>'] });
  t.same(summary.dropped, { reaction: 1, media: 1 });
});

t.test('repairing mojibake: only text that is escaped UTF-8 through and through', async (t) => {
  t.equal(repairMojibake('Chlo\u00c3\u00a9 \u00f0\u009f\u0098\u0080'), 'Chloé 😀');
  t.equal(repairMojibake('Chloé'), 'Chloé', 'é alone is no UTF-8 byte sequence');
  t.equal(repairMojibake('Ã© 😀'), 'Ã© 😀', 'a character beyond U+00FF: not escaped bytes');
  t.equal(repairMojibake('plain'), 'plain');
});

t.test("the end-to-end encrypted chats' download: camelCase fields", async (t) => {
  const chat = parseMessenger('inbox/sam/message_1.json', {
    participants: ['Sam', 'Jane Doe'],
    threadName: 'Sam',
    messages: [
      { isUnsent: false, media: [], reactions: [], senderName: 'Sam', text: 'Hi there', timestamp: 1700000001000, type: 'text' },
      { isUnsent: false, media: [{ uri: 'media/1.jpg' }], reactions: [], senderName: 'Jane Doe', text: '', timestamp: 1700000000000, type: 'media' },
    ],
  });
  t.same(chat.messages.map((m) => [m.time, m.sender, m.text, m.dropped]), [[1700000000000, 'Jane Doe', '', 'media'], [1700000001000, 'Sam', 'Hi there', null]]);
  t.same({ title: chat.title, group: chat.group }, { title: 'Sam', group: false });
});

t.test("the app's notices are whole sentences: messages that only begin like one are written", async (t) => {
  const notices = ['You started a video chat.', 'Jane named the group Family.', 'You left the group.', 'Jane added Dad to the group.', 'You missed a call from Mom.', 'You started an audio call', 'Mom started an audio call', 'The video chat ended.', 'You are now connected on Messenger'];
  const messages = ['You started a fire in my heart', 'You missed a call from me yesterday', 'You left the group chat on read!', 'Mom named the group chat after the dog? lol', 'The video chat ended early, my wifi died'];
  const texts = [...notices, ...messages];
  const download = {
    participants: [{ name: 'Mom' }, { name: 'Jane' }],
    title: 'Mom',
    // Newest first, as the download lists them.
    messages: texts.map((content, i) => ({ sender_name: i % 2 ? 'Jane' : 'Mom', timestamp_ms: 1_600_000_000_000 + i * 1000, content })).reverse(),
  };
  const dir = t.testdir({ inbox: { mom_123: { 'message_1.json': JSON.stringify(download) } } });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'inbox')], { me: ['Jane'] });
  t.same(files, { 'mom.train': ['1|Mom|You started a fire in my heart <EOM>', '0|Mom|You missed a call from me yesterday <EOM>', '1|Mom|You left the group chat on read! <EOM>', '0|Mom|Mom named the group chat after the dog? lol <EOM>', '1|Mom|The video chat ended early, my wifi died <EOM>'] });
  t.match(summary, { read: 14, kept: 5, dropped: { system: 9 } });
});

t.test('an attachment with a caption keeps the caption; one without text, or with the app\'s "sent an attachment.", is media', async (t) => {
  const download = {
    participants: [{ name: 'Mom M\u00c3\u00bcller' }, { name: 'Jane Doe' }],
    title: 'Mom M\u00c3\u00bcller',
    messages: [
      { sender_name: 'Jane Doe', timestamp_ms: 1709576700000, content: 'caption for the pic \u00f0\u009f\u0098\u0080', photos: [{ uri: 'x.jpg', creation_timestamp: 1 }] },
      { sender_name: 'Mom M\u00c3\u00bcller', timestamp_ms: 1709576600000, photos: [{ uri: 'y.jpg', creation_timestamp: 1 }] },
      { sender_name: 'Jane Doe', timestamp_ms: 1709576500000, content: 'You sent an attachment.', files: [{ uri: 'a.pdf' }] },
      { sender_name: 'Mom M\u00c3\u00bcller', timestamp_ms: 1709576400000, content: 'Gr\u00c3\u00bc\u00c3\u009fe' },
    ],
  };
  const dir = t.testdir({ inbox: { mom_123: { 'message_1.json': JSON.stringify(download) } } });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'inbox')], { me: ['Jane Doe'] });
  t.same(files, { 'mom-müller.train': ['0|Mom Müller|Grüße <EOM>', '1|Mom Müller|caption for the pic 😀 <EOM>'] });
  t.match(summary, { read: 4, kept: 2, dropped: { media: 2 } });
});

t.test("an attachment's notice is the whole text, its sender named in full or by first name: a caption that ends in its words is kept", async (t) => {
  const photo = { photos: [{ uri: 'p.jpg' }] };
  const messages: [string, string, string | null][] = [
    ['Ayşe Yılmaz', 'Annem bir ek gönderdi.', null],
    ['Jane Doe', 'ok I sent an attachment.', null],
    ['Ayşe Yılmaz', 'Ayşe Yılmaz bir ek gönderdi.', 'media'],
    ['Ayşe Yılmaz', 'Ayşe bir ek gönderdi.', 'media'],
    ['Jane Doe', 'Bir ek gönderdin.', 'media'],
    ['Jane Doe', 'Jane sent an attachment.', 'media'],
    ['Jane Doe', 'You sent an attachment.', 'media'],
    ['Ayşe Yılmaz', 'Mom sent an attachment.', null],
  ];
  const chat = parseMessenger('inbox/ayse_1/message_1.json', {
    participants: [{ name: 'Ayşe Yılmaz' }, { name: 'Jane Doe' }],
    title: 'Ayşe Yılmaz',
    messages: messages.map(([sender, text], i) => ({ sender_name: Buffer.from(sender).toString('latin1'), timestamp_ms: 1_700_000_000_000 + i * 1000, content: Buffer.from(text).toString('latin1'), ...photo })).reverse(),
  });
  t.same(chat.messages.map((m) => [m.text, m.dropped]), messages.map(([, text, dropped]) => [text, dropped]));
});

// Facebook writes its notices in the account's language, each a whole sentence as in English.
t.test("notices, attachments without text, unsent messages and reactions in the account's language are dropped; messages that hold the same words are kept", async (t) => {
  const share = { share: { link: 'https://www.facebook.com/photo/?fbid=1' } };
  const messages: [string, string, Record<string, unknown>, string | null][] = [
    ['Marie', 'Marie a envoyé une pièce jointe.', share, 'media'],
    ['Jane', 'Vous avez envoyé une pièce jointe.', { files: [{ uri: 'a.pdf' }] }, 'media'],
    ['Marie', 'Marie hat einen Anhang gesendet.', share, 'media'],
    ['Jane', 'Enviaste un archivo adjunto.', { photos: [{ uri: 'a.jpg' }] }, 'media'],
    ['Marie', 'Marie enviou um anexo.', share, 'media'],
    ['Marie', 'Marie bir ek gönderdi.', share, 'media'],
    ['Marie', 'Marie отправил(а) вложение.', share, 'media'],
    ['Marie', 'Reaccionó con ❤ a tu mensaje', {}, 'reaction'],
    ['Marie', 'A réagi avec 👍🏽 à votre message', {}, 'reaction'],
    ['Marie', 'Curtiu uma mensagem', {}, 'reaction'],
    ['Marie', 'Marie a retiré un message', {}, 'deleted'],
    ['Jane', 'Anulaste el envío de un mensaje', {}, 'deleted'],
    ['Marie', 'Marie nombró el grupo Familia.', {}, 'system'],
    ['Jane', 'Vous avez quitté le groupe.', {}, 'system'],
    ['Marie', 'Marie hat Tom zur Gruppe hinzugefügt.', {}, 'system'],
    ['Marie', 'Marie ha abbandonato il gruppo.', {}, 'system'],
    ['Marie', 'Je t’ai envoyé une pièce jointe hier', share, null],
    ['Marie', 'Marie a quitté le groupe de foot, tu savais ?', {}, null],
    ['Jane', 'Reaccionó con calma a tu mensaje', {}, null],
  ];
  const chat = parseMessenger('inbox/famille_1/message_1.json', {
    participants: [{ name: 'Marie' }, { name: 'Jane' }, { name: 'Tom' }],
    title: 'Famille',
    // Escaped byte by byte and newest first, as the download writes them.
    messages: messages.map(([sender, text, fields], i) => ({ sender_name: sender, timestamp_ms: 1_700_000_000_000 + i * 1000, content: Buffer.from(text).toString('latin1'), ...fields })).reverse(),
  });
  t.same(chat.messages.map((m) => [m.text, m.dropped]), messages.map(([, text, , dropped]) => [text, dropped]));
});
