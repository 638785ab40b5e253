// DiscordChatExporter's JSON: a direct message chat; calls, pins and bare attachments dropped; the user named by
// username or account id.
import path from 'node:path';
import t from 'tap';
import { parseDiscord } from '../../lib/import/discord';
import { fixture, importInto } from './helpers';

const DM = fixture('discord', 'Direct Messages - sam_lee [887766554433221100].json');

t.test('a direct message chat, by username or by id', async (t) => {
  for (const me of ['jane_d', '111000000000000000']) {
    const { files, summary } = await importInto(t.testdir(), [DM], { me: [me] });
    t.same(files, { 'sam-lee.train': ['0|sam_lee|gg last night <EOM>', '1|sam_lee|haha thanks we should play again <EOM>', '1|sam_lee|Sure, Friday? @sam_lee <EOM>'] }, me);
    t.same(summary.dropped, { call: 1, media: 1, system: 1 });
  }
});

t.test("a server channel: a group named after its server and channel, members by nickname", async (t) => {
  const author = (id: string, name: string, nickname: string | null) => ({ id, name, discriminator: '0000', nickname, isBot: false });
  const chat = parseDiscord('general.json', {
    guild: { id: '5', name: 'Book Lovers' },
    channel: { id: '6', type: 'GuildTextChat', name: 'general' },
    messages: [
      { id: '1', type: 'GuildMemberJoin', timestamp: '2021-01-01T10:00:00+00:00', content: 'Joined the server.', author: author('1', 'ana', null), attachments: [] },
      { id: '2', type: 'Default', timestamp: '2021-01-01T10:01:00+01:00', content: 'hello all', author: author('1', 'ana', 'Ana B.'), attachments: [] },
    ],
  });
  t.same({ title: chat.title, group: chat.group }, { title: 'Book Lovers #general', group: true });
  t.same(chat.messages.map((m) => [m.time, m.sender, m.senderIds, m.dropped]), [
    [Date.UTC(2021, 0, 1, 10), 'ana', ['1', 'ana'], 'system'],
    [Date.UTC(2021, 0, 1, 9, 1), 'Ana B.', ['1', 'ana'], null],
  ]);
});

t.test("bots' posts are dropped and counted as bots', whatever their type", async (t) => {
  const author = (id: string, name: string, isBot: boolean) => ({ id, name, discriminator: isBot ? '4876' : '0000', nickname: null, isBot });
  const post = (id: string, type: string, content: string, by: ReturnType<typeof author>) => ({ id, type, timestamp: `2024-03-04T18:2${id}:00+00:00`, content, author: by, attachments: [] });
  const bob = author('10', 'bob', false);
  const jane = author('11', 'jane', false);
  const mee6 = author('12', 'MEE6', true);
  const channel = {
    guild: { id: '1', name: 'Gamers' },
    channel: { id: '123', type: 'GuildTextChat', name: 'general' },
    messages: [post('1', 'Default', 'hey all', bob), post('2', 'Reply', 'yo', jane), post('3', 'Default', 'GG @jane, you just advanced to level 5!', mee6), post('4', 'ChatInputCommand', 'Now playing', author('14', 'Rythm', true))],
  };
  const dir = t.testdir({ 'Gamers - general [123].json': JSON.stringify(channel) });
  const { files, summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['jane'] });
  t.same(files, { 'gamers-general.train': ['0|Gamers #general|hey all <EOM>', '1|Gamers #general|yo <EOM>'] });
  t.match(summary, { read: 4, kept: 2, dropped: { bot: 2 } });
});

t.test('a forwarded message, its text apart from its own empty one, is dropped as forwarded', async (t) => {
  const author = (id: string, name: string) => ({ id, name, discriminator: '0000', nickname: null, isBot: false });
  const forwarded = { timestamp: '2024-03-01T09:00:00+00:00', timestampEdited: null, content: 'the ferry leaves at 6', attachments: [], embeds: [], stickers: [] };
  const chat = {
    guild: { id: '0', name: 'Direct Messages' },
    channel: { id: '8', type: 'DirectTextChat', name: 'mom' },
    messages: [
      { id: '1', type: 'Default', timestamp: '2024-03-04T18:20:00+00:00', content: 'hi', author: author('1', 'mom'), attachments: [] },
      { id: '2', type: 'Default', timestamp: '2024-03-04T18:21:00+00:00', content: '', author: author('2', 'jane'), attachments: [], reference: { type: 'Forward', messageId: '9', channelId: '7', guildId: null }, forwardedMessage: forwarded },
      { id: '3', type: 'Default', timestamp: '2024-03-04T18:22:00+00:00', content: 'see above', author: author('2', 'jane'), attachments: [] },
    ],
  };
  const dir = t.testdir({ 'Direct Messages - mom [8].json': JSON.stringify(chat) });
  const { files, summary } = await importInto(path.join(dir, 'out'), [dir], { me: ['jane'] });
  t.same(files, { 'mom.train': ['0|mom|hi <EOM>', '1|mom|see above <EOM>'] });
  t.match(summary, { read: 3, kept: 2, dropped: { forwarded: 1 } });
});
