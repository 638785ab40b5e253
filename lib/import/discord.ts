// A Discord channel or direct-message chat as DiscordChatExporter writes it in JSON (--format Json):
//   {"guild": {"name": "Direct Messages"}, "channel": {"id", "type": "DirectTextChat", "name": "mom"},
//    "messages": [{"type": "Default", "timestamp": "2020-12-31T22:15:03.12+01:00", "content": "Hi!",
//                  "author": {"id", "name", "discriminator", "nickname", "isBot"}, "attachments": [], ...}]}
// Discord's own data package holds only the user's side of each chat, so it cannot be a conversation.
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, NO_IDS, jsonObject, jsonString } from './chat_export';

const SPOKEN = new Set(['Default', 'Reply']);
const ONE_TO_ONE = 'DirectTextChat';

export function looksLikeDiscord(root: Record<string, unknown>): boolean {
  return jsonObject(root.guild) !== null && jsonObject(root.channel) !== null && Array.isArray(root.messages);
}

export function parseDiscord(file: string, root: Record<string, unknown>): ExportedChat {
  const channel = jsonObject(root.channel) ?? {};
  const guild = jsonString(jsonObject(root.guild)?.name);
  const direct = typeof channel.type === 'string' && channel.type.startsWith('Direct');
  const name = jsonString(channel.name);
  if (!Array.isArray(root.messages)) throw new ChatImportError(file, null, 'not a DiscordChatExporter export: no "messages" list');
  return {
    format: 'discord',
    file,
    key: `discord:${String(channel.id ?? file)}`,
    title: direct ? name : `${guild} #${name}`,
    group: channel.type !== ONE_TO_ONE,
    skip: null,
    myIds: NO_IDS,
    messages: root.messages.map(toMessage),
  };
}

function toMessage(value: unknown): ExportedMessage {
  const message = jsonObject(value) ?? {};
  const author = jsonObject(message.author) ?? {};
  const name = jsonString(author.name);
  const sender = jsonString(author.nickname) || name;
  const time = Date.parse(jsonString(message.timestamp));
  const text = jsonString(message.content);
  const attached = ['attachments', 'stickers', 'embeds'].some((field) => Array.isArray(message[field]) && (message[field] as unknown[]).length > 0);
  const dropped: DropReason | null =
    sender === '' || Number.isNaN(time)
      ? 'unreadable'
      : author.isBot === true
        ? 'bot'
        : message.type === 'Call'
          ? 'call'
          // A forward holds the message it forwards apart, its own text empty.
          : message.forwardedMessage !== undefined
            ? 'forwarded'
            : typeof message.type === 'string' && !SPOKEN.has(message.type)
              ? 'system'
              : text.trim() === '' && attached
                ? 'media'
                : null;
  const ids = [jsonString(author.id), name, author.discriminator && author.discriminator !== '0000' ? `${name}#${jsonString(author.discriminator)}` : ''].filter((id) => id !== '');
  return { time: Number.isNaN(time) ? 0 : time, sender, senderIds: ids, mine: null, text, dropped, line: 0 };
}
