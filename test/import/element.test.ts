// Element's Export chat of Matrix rooms in JSON: a one-to-one room (encrypted: an edited message, a reply quoting what
// it answers, an image, a message Element could not decrypt, a deleted one, an emote, a call) exported twice, the
// second export holding the first and more; a group room with a bot, a thread and a captioned image, also as Element
// zips it with its attachments. The user is the export's exported_by: no --me.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatImportErrors, importChats } from '../../lib/import';
import { parseElement } from '../../lib/import/element';
import { REPO, fixture, importInto, outputBytes } from './helpers';

const FIRST = fixture('element', 'matrix - Lena Fischer - Chat Export - 2024-03-04T18-20-11.512Z.json');
const SECOND = fixture('element', 'matrix - Lena Fischer - Chat Export - 2024-03-12T08-02-45.031Z.json');
const GROUP = fixture('element', 'matrix - Climbing club - Chat Export - 2024-03-08T20-15-42.118Z.json');
const GROUP_ZIP = path.join(REPO, 'test', 'fixtures', 'zips', 'matrix - Climbing club - Chat Export - 2024-03-08T20-15-42.118Z.zip');

const LENA = [
  '0|Lena Fischer|Hey Jane! Are we still on for Saturday? I checked the weather, it looks sunny <EOM>',
  "1|Lena Fischer|Yes! Let's meet at the station at 8 <EOM>",
  "1|Lena Fischer|Perfect, I'll bring the coffee <EOM>",
];
const CLIMBING_CLUB = [
  '0|Climbing club|Thursday at the bouldering gym, 19:00? <EOM>',
  "0|Climbing club|I'm in! <EOM>",
  "1|Climbing club|Count me in, I'll bring the chalk <EOM>",
  '0|Climbing club|Our route for Thursday <EOM>',
];

t.test('a one-to-one room without --me: the edit\'s text, the reply without its quote, the audience the other member\'s last display name', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [FIRST]);
  t.same(files, {
    'lena-fischer.train': [...LENA, '0|Lena Fischer|is already packing her backpack <EOM>', '1|Lena Fischer|See you Saturday! <EOM>'],
  });
  t.same(summary.formats, { element: 1 });
  t.match(summary, { read: 14, kept: 5, sent: 3 });
  t.same(summary.dropped, { system: 5, media: 1, unreadable: 1, deleted: 1, call: 1 }, 'joins, a rename and encryption turned on; the image; the undecryptable; the deleted; the call');
  t.same(summary.skipped, []);
  t.same(summary.warnings, [`${FIRST}: 1 message that Element could not decrypt left out: export the room again from a session that reads them (verified, or with the key backup restored)`]);
});

t.test('--me wins over exported_by, by display name or Matrix id', async (t) => {
  for (const me of ['Lena Fischer', '@lena:example.org']) {
    const { files } = await importInto(t.testdir(), [FIRST], { me: [me] });
    t.same(files['jane-doe.train'].slice(0, 3), [
      '1|Jane Doe|Hey Jane! Are we still on for Saturday? I checked the weather, it looks sunny <EOM>',
      "0|Jane Doe|Yes! Let's meet at the station at 8 <EOM>",
      "0|Jane Doe|Perfect, I'll bring the coffee <EOM>",
    ], me);
  }
  const { files } = await importInto(t.testdir(), [FIRST], { me: ['@jane:example.org'] });
  t.equal(files['lena-fischer.train'][1], "1|Lena Fischer|Yes! Let's meet at the station at 8 <EOM>", 'naming the user changes nothing');
});

t.test('two exports of the room, the second holding the first: one conversation by the room id, each message once', async (t) => {
  const dir = t.testdir();
  const both = await importInto(path.join(dir, 'both'), [SECOND, FIRST]);
  t.same(both.files, {
    'lena-fischer.train': [
      ...LENA,
      '0|Lena Fischer|Bring sunscreen too <EOM>',
      '0|Lena Fischer|is already packing her backpack <EOM>',
      '1|Lena Fischer|See you Saturday! <EOM>',
      '0|Lena Fischer|That was such a good hike, thanks for organising! <EOM>',
      '1|Lena Fischer|Same time next month? <EOM>',
      '0|Lena Fischer|Definitely 🙌 <EOM>',
    ],
  }, 'the message the first export could not decrypt kept from the second');
  t.match(both.summary, { read: 31, kept: 9, sent: 4 });
  t.equal(both.summary.dropped.duplicate, 13);
  t.match(both.summary.audiences, [{ audience: 'Lena Fischer', conversations: 1 }]);
  await importInto(path.join(dir, 'second'), [SECOND]);
  t.same(outputBytes(path.join(dir, 'both')), outputBytes(path.join(dir, 'second')), 'the same bytes as the second export alone');
});

t.test('a group room: more than two members; a bot\'s notice, the room\'s state and a sticker dropped, a thread\'s message and a caption kept', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [GROUP]);
  t.same(files, { 'climbing-club.train': CLIMBING_CLUB });
  t.same(summary.dropped, { system: 8, media: 1 });
  const { summary: withoutGroups } = await importInto(t.testdir(), [GROUP], { groups: false });
  t.match(withoutGroups.skipped, [{ title: 'Climbing club', reason: 'group chat', messages: 13 }]);
});

t.test('zipped with its attachments, as Element makes it: the same as its JSON, the folder of rooms too', async (t) => {
  const dir = t.testdir();
  const zipped = await importInto(path.join(dir, 'zipped'), [GROUP_ZIP]);
  t.same(zipped.files, { 'climbing-club.train': CLIMBING_CLUB });
  t.same(zipped.summary.warnings, [], 'the images and stickers are not read');
  const folder = await importInto(path.join(dir, 'folder'), [fixture('element'), GROUP_ZIP]);
  t.same(folder.files, { 'climbing-club.train': CLIMBING_CLUB, 'lena-fischer.train': (await importInto(path.join(dir, 'second'), [SECOND])).files['lena-fischer.train'] });
  t.equal(folder.summary.dropped.duplicate, 13 + 13, 'the room in the zip and in the folder, once');
});

// The events of a room for parseElement, each with a sender and a time unless given.
function room(events: Record<string, unknown>[], top: Record<string, unknown> = { exported_by: 'Jane Doe' }): Record<string, unknown> {
  const base = Date.UTC(2024, 2, 1, 9);
  return {
    room_name: 'Lena Fischer', ...top,
    messages: events.map((e, i) => ({ room_id: '!r:example.org', sender: '@lena:example.org', origin_server_ts: base + i * 1000, event_id: `$${i}`, ...e })),
  };
}
const member = (id: string, name: string): Record<string, unknown> => ({ type: 'm.room.member', sender: id, state_key: id, content: { membership: 'join', displayname: name } });
const text = (body: string, more: Record<string, unknown> = {}): Record<string, unknown> => ({ type: 'm.room.message', content: { msgtype: 'm.text', body, ...more } });

t.test('edits in the list of events: the last of the sender\'s is the text, no message of its own; reactions dropped', async (t) => {
  const replace = (id: string, body: string, sender = '@lena:example.org'): Record<string, unknown> =>
    ({ type: 'm.room.message', sender, content: { msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body }, 'm.relates_to': { rel_type: 'm.replace', event_id: id } } });
  const chat = parseElement('x.json', room([
    text('Meet at 9'), replace('$0', 'Meet at 8'), replace('$0', 'Meet at 7:30'), replace('$0', 'Meet never', '@tom:example.org'),
    { type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$0', key: '👍' } } },
  ]), []);
  t.same(chat.messages.map((m) => [m.text, m.dropped]), [['Meet at 7:30', null], ['', 'reaction']]);
});

t.test('replies lose their quote only where they are replies; emotes, captions and bare media', async (t) => {
  const quoted = '> <@jane:example.org> Saturday?\n> at 8\n\nYes';
  const chat = parseElement('x.json', room([
    text(quoted, { 'm.relates_to': { 'm.in_reply_to': { event_id: '$x' } } }),
    text(quoted),
    text('> * <@jane:example.org> waves\n\nhi!', { 'm.relates_to': { 'm.in_reply_to': { event_id: '$x' } } }),
    { type: 'm.room.message', content: { msgtype: 'm.emote', body: 'waves' } },
    { type: 'm.room.message', content: { msgtype: 'm.image', body: 'IMG_1.jpg', url: 'mxc://x/y' } },
    { type: 'm.room.message', content: { msgtype: 'm.file', body: 'the plan', filename: 'plan.pdf', url: 'mxc://x/z' } },
    { type: 'm.room.message', content: { msgtype: 'm.location', body: 'Location', geo_uri: 'geo:51.5,0.1' } },
    { type: 'm.room.message', content: { msgtype: 'm.notice', body: 'bot says' } },
    { type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' } },
    { type: 'm.room.message', content: {}, unsigned: { redacted_because: { type: 'm.room.redaction' } } },
    { type: 'm.poll.start', content: {} },
    { type: 'org.matrix.msc3401.call', state_key: '', content: {} },
    { ...text('no time'), origin_server_ts: undefined }, { ...text('no sender'), sender: undefined },
  ]), []);
  t.same(chat.messages.map((m) => m.dropped ?? m.text), [
    'Yes', quoted, 'hi!', 'waves', 'media', 'the plan', 'media', 'system', 'unreadable', 'deleted', 'media', 'call', 'unreadable', 'unreadable',
  ]);
});

t.test('who the user is, who the members are, and the chat\'s key', async (t) => {
  const named = parseElement('x.json', room([member('@jane:example.org', 'Jane Doe'), member('@lena:example.org', 'Lena'), text('hi')]), []);
  t.same({ myIds: named.myIds, group: named.group, key: named.key, sender: named.messages[2].sender, ids: named.messages[2].senderIds },
    { myIds: ['@jane:example.org'], group: false, key: 'element:!r:example.org', sender: 'Lena', ids: ['@lena:example.org'] }, 'exported_by by display name, made the member\'s Matrix id');
  const ambiguous = parseElement('x.json', room([member('@jane:example.org', 'Jane Doe'), member('@jane2:example.org', 'Jane Doe')]), []);
  t.same(ambiguous.myIds, ['Jane Doe'], 'a display name two members have stays a name');
  const byId = parseElement('x.json', room([text('hi')], { exported_by: '@jane:example.org' }), []);
  t.same({ myIds: byId.myIds, sender: byId.messages[0].sender }, { myIds: ['@jane:example.org'], sender: '@lena:example.org' }, 'members without a join in the export are their Matrix id');
  const group = parseElement('x.json', room([member('@jane:example.org', 'Jane Doe'), member('@tom:example.org', 'Tom'), text('hi')]), []);
  t.equal(group.group, true, 'two who joined and a third who wrote');
  t.same(parseElement('x.json', { exported_by: 'Jane Doe', messages: [] }, []), { format: 'element', file: 'x.json', key: 'element:x.json', title: '', group: false, skip: null, myIds: ['Jane Doe'], messages: [] });
});

t.test('told by its content, whatever its name; malformed exports are errors naming the file and the field', async (t) => {
  const dir = t.testdir({
    'room.json': fs.readFileSync(GROUP),
    'no-list.json': JSON.stringify({ exported_by: 'Jane Doe', room_name: 'x', messages: {} }),
    'not-an-event.json': JSON.stringify({ exported_by: 'Jane Doe', room_name: 'x', messages: [{ type: 'm.room.message', origin_server_ts: 1 }, 'hello'] }),
    'cut.json': fs.readFileSync(GROUP, 'utf8').slice(0, 500),
    'export.txt': 'Mon, Mar 4 2024 19:05:00 - Tom Baker: Thursday at the bouldering gym, 19:00?\nMon, Mar 4 2024 19:05:30 - Mia: I\'m in!\n',
    'index.html': '\n          <!DOCTYPE html>\n            <html lang="en">\n            <head>\n                <title>Exported Data</title>\n',
    out: {},
  });
  const renamed = await importInto(path.join(dir, 'renamed'), [path.join(dir, 'room.json')]);
  t.same(renamed.files, { 'climbing-club.train': CLIMBING_CLUB });
  const inputs = ['no-list.json', 'not-an-event.json', 'cut.json'].map((name) => path.join(dir, name));
  const error = (await importChats(inputs, { out: path.join(dir, 'out'), format: 'element' }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.same(error.message.split('\n').map((line) => line.replace(dir + path.sep, '')), [
    'cut.json:18: the JSON stops in the middle: the export is truncated (an interrupted download or copy); export it again',
    'no-list.json: not an Element export: no "messages" list',
    'not-an-event.json: messages[1] is not a Matrix event: no "type"',
  ]);
  t.same(fs.readdirSync(path.join(dir, 'out')), [], 'nothing written');
  // Element's Plain Text export writes its dates and notices in the app's language, its HTML export is web pages: no
  // format to read, but a pointer to the JSON export.
  await t.rejects(importChats([path.join(dir, 'export.txt')], { out: path.join(dir, 'out') }), { message: /export\.txt:1: a file that begins "Mon, Mar 4 2024 19:05:00 - Tom Baker: .*", not .*Element's JSON export of a Matrix room/ });
  await t.rejects(importChats([path.join(dir, 'index.html')], { out: path.join(dir, 'out') }), { message: /index\.html: an export made as web pages, .*Element: Export chat, format JSON;/ });
});
