// Telegram Desktop's HTML export, the format its "Export chat history" starts with: a chat's messages.html,
// messages2.html... (a thousand messages a page) in a folder beside css/, js/, images/ and photos/.
//   <div class="page_header">...<div class="text bold">Alex</div>           the chat's name
//   <div class="history">
//    <div class="message service" id="message-1">                          a day's heading: no message
//     <div class="body details">1 March 2021</div>
//    <div class="message default clearfix" id="message102">
//     <div class="body">
//      <div class="pull_right date details" title="01.03.2021 09:05:00 UTC+03:00">09:05</div>
//      <div class="from_name">Alex</div>                                   not in a "joined" message, which goes
//      <div class="forwarded body">...</div>                               on the run of the sender before it
//      <div class="reply_to details">In reply to <a ...>this message</a></div>
//      <div class="media_wrap clearfix">...</div>                          a photo, sticker, file, call...
//      <div class="text">Did you see <a href="...">t.me/durov</a>?<br>It's <strong>huge</strong></div>
// Each page stands on its own (the app starts every page with a day heading and a message that names its sender),
// so a page is read alone; the pages of one folder under one chat's name make one chat, joined in train_output.ts
// (by the name too, for pages of several chats gathered in one folder are not one chat). The page does not say who
// the user is, nor give ids, so --me names the user as for the JSON export of one chat. A message's time is its
// wall clock less the offset the app writes; that offset is the time zone's standard one even in summer time (before
// mid-2022, no offset at all), so times order messages and are not exact.
import path from 'node:path';
import { parseDocument, DomUtils } from 'htmlparser2';
import { type AnyNode, type Element, isTag, isText } from 'domhandler';
import { ExportedChat, ExportedMessage, ChatImportError, NO_IDS, nameKey } from './chat_export';
import { lineCounter } from '../util/lines';
import { telegramDropReason } from './telegram';

// A page's file name, numbered from the second page on.
export const TELEGRAM_PAGE = /^messages\d*\.html$/i;

// "01.03.2021 09:05:00 UTC+03:00"; "UTC" alone for a zone without an offset, nothing after the time before mid-2022.
const DATE_TITLE = /^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2}):(\d{2})(?: UTC(?:([+-])(\d{2}):(\d{2}))?)?$/;
// A day's heading among the messages has a negative id; the app's other notices, a message's id.
const DAY_HEADING_ID = /^message-\d+$/;
// Who started a group's voice chat, in the notice the app writes for it.
const VOICE_CHAT = /^(.+) started voice chat(?: \(\d+ seconds\))?$/;
// Added to a sender's name when the message was sent through an inline bot.
const VIA_BOT = / via @\w+$/;

// The chat of one page of the export; null when the page is no chat page of Telegram's export.
export function parseTelegramHtml(file: string, text: string): ExportedChat | null {
  const document = parseDocument(text, { withStartIndices: true });
  const page = DomUtils.findOne((e) => hasClass(e, 'page_body') && hasClass(e, 'chat_page'), document);
  const history = page && DomUtils.findOne((e) => hasClass(e, 'history'), page);
  if (!history) return null;
  const heading = DomUtils.findOne((e) => hasClass(e, 'page_header'), document);
  const titleDiv = heading && DomUtils.findOne((e) => hasClass(e, 'text') && hasClass(e, 'bold'), heading);
  const title = titleDiv ? DomUtils.textContent(titleDiv).trim() : '';
  const lineOf = lineCounter(text);
  const messages: ExportedMessage[] = [];
  // A joined message's sender is the one of the message before it; a notice's time, that message's.
  let sender = '';
  let time = 0;
  for (const div of history.children) {
    if (!isTag(div) || !hasClass(div, 'message')) continue;
    const line = lineOf(div.startIndex ?? 0);
    if (hasClass(div, 'service')) {
      if (DAY_HEADING_ID.test(div.attribs.id ?? '')) continue;
      const notice = DomUtils.textContent(div).trim();
      const voiceChat = VOICE_CHAT.exec(notice);
      const dropped = telegramDropReason({ readable: true, service: true, call: voiceChat !== null, forwarded: false, media: false, text: '' });
      messages.push({ time, sender: voiceChat?.[1] ?? '', senderIds: NO_IDS, mine: null, text: '', dropped, line });
      continue;
    }
    const body = childWithClass(div, 'body');
    const date = body && childWithClass(body, 'date');
    time = timeOf(file, line, date ? (date.attribs.title ?? '') : '');
    const fromName = body && childWithClass(body, 'from_name');
    if (fromName) sender = DomUtils.textContent(fromName).trim().replace(VIA_BOT, '');
    else if (!hasClass(div, 'joined')) sender = '';
    const media = DomUtils.findOne((e) => hasClass(e, 'media_wrap'), div);
    // A call is a message with a call for its media here, and one of the app's notices in the JSON export.
    const call = media !== null && DomUtils.findOne((e) => hasClass(e, 'media_call'), media) !== null;
    const textDiv = DomUtils.findOne((e) => hasClass(e, 'text'), div);
    const content = textDiv ? textOf(textDiv) : '';
    const dropped = telegramDropReason({
      readable: call || sender !== '',
      service: call,
      call,
      forwarded: body !== null && childWithClass(body, 'forwarded') !== null,
      media: media !== null,
      text: content,
    });
    messages.push({ time, sender, senderIds: NO_IDS, mine: null, text: content, dropped, line });
  }
  return { format: 'telegram', file, key: `telegram-html:${path.resolve(path.dirname(file))}\0${title}`, title, group: isGroup(title, messages), skip: null, myIds: NO_IDS, messages };
}

// The export names a one-to-one chat after the other person, who writes in it under that name, and does not say
// which chats are groups: a chat named after none of its senders is one when two or more people wrote in it; with
// fewer, who is the user (--me) decides, as for other exports that do not say.
function isGroup(title: string, messages: readonly ExportedMessage[]): boolean | null {
  const senders = new Set(messages.filter((m) => m.sender !== '').map((m) => nameKey(m.sender)));
  if (senders.has(nameKey(title))) return false;
  return senders.size >= 2 ? true : null;
}

// A message's time from its date's title (ms since 1970); a title that is no date stops the import.
function timeOf(file: string, line: number, title: string): number {
  const date = DATE_TITLE.exec(title);
  const [day, month, year, hour, minute, second] = (date ?? []).slice(1, 7).map(Number);
  if (!date || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
    throw new ChatImportError(file, line, `a message whose time cannot be read: its date's title is ${JSON.stringify(title)}, not "dd.mm.yyyy hh:mm:ss UTC+hh:mm" as Telegram Desktop writes it`);
  }
  const offsetMinutes = date[7] === undefined ? 0 : (date[7] === '-' ? -1 : 1) * (Number(date[8]) * 60 + Number(date[9]));
  return Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
}

// The text as it was written: the app puts it on a line of its own in the page (the only line breaks in the page's
// source), and writes the message's own line breaks as <br>.
function textOf(div: Element): string {
  let text = '';
  const add = (nodes: readonly AnyNode[]): void => {
    for (const node of nodes) {
      if (isText(node)) text += node.data;
      else if (isTag(node)) {
        if (node.name === 'br') text += '\n';
        else add(node.children);
      }
    }
  };
  add(div.children);
  return text.replace(/^\n/, '').replace(/\n[ \t]*$/, '');
}

function hasClass(element: Element, name: string): boolean {
  const classes = element.attribs.class;
  return classes !== undefined && classes.split(/\s+/).includes(name);
}

function childWithClass(element: Element, name: string): Element | null {
  for (const child of element.children) if (isTag(child) && hasClass(child, name)) return child;
  return null;
}
