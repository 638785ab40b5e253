// LINE's "Export chat history" text file:
//   [LINE] Chat history with Yuki           a group's: "Chat history in <group>"; Japanese "Yukiとのトーク履歴"
//   Saved on: 2024/01/20 21:03              (a group's "<group>のトーク履歴"), Chinese "與Yuki的聊天記錄"...
//
//   2024/01/15(Mon)                         a day, in newer English apps also "Mon, 01/15/2024" (or, on a phone
//                                           set to write the day first, "Mon, 15/01/2024")
//   10:23	Yuki	Happy new year!           time, sender, text, tab-separated; 午前/午後, 上午/下午, AM/PM clocks too
//   10:31	Yuki	"Are you free on Saturday?
//   We could go to the onsen"               a message of several lines, in double quotes
//   11:05		Yuki unsent a message.        the app's notices: no sender
// Times are the phone's wall clock, kept as if UTC, as other exports without a time zone are.
import path from 'node:path';
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, DETECT_HEAD, NO_IDS } from './chat_export';

const HEADER = /^\[LINE\]\s*(.*)$/;
const TITLES: readonly { pattern: RegExp; group: boolean | null }[] = [
  { pattern: /^Chat history with (.+)$/i, group: false },
  { pattern: /^Chat history in (.+)$/i, group: true },
  { pattern: /^(.+?)とのトーク履歴$/, group: false },
  { pattern: /^(.+?)のトーク履歴$/, group: true },
  { pattern: /^(?:与|與)(.+?)的聊天(?:记录|記錄)$/, group: false },
  { pattern: /^(.+?)的聊天(?:记录|記錄)$/, group: true },
  { pattern: /^ประวัติการสนทนากับ\s*(.+)$/, group: null },
];
const YMD_DAY = /^(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})(?:\s*[(（][^)）]*[)）]|\s+\S+)?$/;
const WEEKDAY_DAY = /^(\p{L}{2,3}),\s*(\d{1,2})\/(\d{1,2})\/(\d{4})$/u;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const TIME = /^(?:(午前|午後|上午|下午|AM|PM)\s?)?(\d{1,2}):(\d{2})(?:\s?([AaPp][Mm]))?$/;
const AFTERNOON = new Set(['午後', '下午', 'PM', 'pm', 'Pm']);
// A message that stands for an attachment, in LINE's English, Japanese, Chinese and Thai.
const MEDIA = /^\[(?:Photo|Video|Sticker|File|Voice message|Album|Contact|Location|GIF|写真|動画|スタンプ|ファイル|ボイスメッセージ|アルバム|連絡先|位置情報|照片|图片|圖片|影片|视频|貼圖|贴图|檔案|文件|语音讯息|語音訊息|รูปภาพ|วิดีโอ|สติกเกอร์|ไฟล์)\]$/;
// An unsent message's notice: the whole text, after the name of whoever unsent it where the app writes it as its own
// ("Yuki unsent a message."), alone or after the sender's own name where it writes it as the sender's; a message that
// only ends in these words ("oops, I unsent a message") is kept.
const UNSENT = /(?:unsent a message\.?|メッセージの送信を取り消しました|已收回訊息|撤回了一条消息)$/;

export function looksLikeLine(text: string): boolean {
  const lines = text.slice(0, DETECT_HEAD).replace(/^\ufeff/, '').split(/\r?\n/, 8).filter((l) => l.trim() !== '');
  // Without the header (older group exports): a day line and messages under it.
  const first = (lines[0] ?? '').trim();
  return HEADER.test(first) || (dayOf(first) !== null && lines.filter((l) => messageFields(l) !== null).length >= 2);
}

export function parseLine(file: string, text: string): ExportedChat {
  const lines = text.replace(/^\ufeff/, '').split(/\r?\n/);
  const header = HEADER.exec(lines[0]?.trim() ?? '')?.[1] ?? '';
  const titled = TITLES.map(({ pattern, group }) => ({ match: pattern.exec(header), group })).find((t) => t.match !== null);
  const messages: ExportedMessage[] = [];
  let day: number | null = null;
  let open: { message: ExportedMessage; quoted: boolean } | null = null;
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const newDay = dayOf(line.trim());
    const fields = newDay === null ? messageFields(line) : null;
    // A quoted message goes on, blank lines and all, until a line closes its quote (or, should it never be
    // closed, until the next day or message).
    if (open?.quoted && newDay === null && fields === null) {
      open.message.text += `\n${line}`;
      if (closesQuote(line)) open = { message: unquote(open.message), quoted: false };
      return;
    }
    if (newDay !== null) {
      day = newDay;
      open = null;
      return;
    }
    if (fields && day !== null) {
      const message: ExportedMessage = { time: day + fields.minutes * 60_000, sender: fields.sender, senderIds: NO_IDS, mine: null, text: fields.text, dropped: null, line: i + 1 };
      messages.push(message);
      const quoted = fields.text.startsWith('"') && !closesQuote(fields.text.slice(1));
      open = { message: quoted ? message : unquote(message), quoted };
      return;
    }
    if (line.trim() === '') {
      open = null;
      return;
    }
    // Before the first day: the header, which holds no message. After it, a line of a message written over several
    // without quotes.
    if (fields) throw new ChatImportError(file, i + 1, `a LINE message with no day line above it in a form LINE writes ("2024/01/15(Mon)", "Mon, 01/15/2024"): ${JSON.stringify(line.slice(0, 60))}`);
    if (day === null) return;
    if (!open) throw new ChatImportError(file, i + 1, `not a LINE message line (time, sender and text, tab-separated): ${JSON.stringify(line.slice(0, 60))}`);
    open.message.text += `\n${line}`;
  });
  for (const message of messages) message.dropped = dropReason(message);
  return {
    format: 'line',
    file,
    key: `line:${path.resolve(file)}`,
    title: titled?.match?.[1]?.trim() ?? '',
    group: titled?.group ?? null,
    skip: null,
    myIds: NO_IDS,
    messages,
  };
}

// Whether a line ends a quoted message: it ends with a quote that is not one of a doubled pair.
function closesQuote(line: string): boolean {
  return /(?:^|[^"])(?:"")*"$/.test(line);
}

// A quoted message's text without its quotes, doubled quotes within made single.
function unquote(message: ExportedMessage): ExportedMessage {
  const t = message.text;
  if (t.length >= 2 && t.startsWith('"') && closesQuote(t.slice(1))) message.text = t.slice(1, -1).replace(/""/g, '"');
  return message;
}

function dropReason(m: ExportedMessage): DropReason | null {
  if (isUnsentNotice(m)) return 'deleted';
  if (m.sender === '') return 'system';
  if (m.text.startsWith('☎')) return 'call';
  if (MEDIA.test(m.text.trim())) return 'media';
  return null;
}

function isUnsentNotice(m: ExportedMessage): boolean {
  const text = m.text.trimEnd();
  const words = UNSENT.exec(text);
  if (words === null) return false;
  const actor = text.slice(0, words.index).trimEnd();
  return m.sender === '' || actor === '' || actor === m.sender;
}

// A day line's midnight (ms, as if UTC), or null. The newer English day line writes the date in the phone's order,
// month or day first: the day of the week it names tells which, where the date does not.
function dayOf(line: string): number | null {
  const ymd = YMD_DAY.exec(line);
  if (ymd) return midnight(ymd[1], ymd[2], ymd[3]);
  const weekday = WEEKDAY_DAY.exec(line);
  if (!weekday) return null;
  const monthFirst = midnight(weekday[4], weekday[2], weekday[3]);
  const dayFirst = midnight(weekday[4], weekday[3], weekday[2]);
  const named = WEEKDAYS.indexOf(weekday[1]);
  if (monthFirst === null || (dayFirst !== null && named >= 0 && new Date(monthFirst).getUTCDay() !== named && new Date(dayFirst).getUTCDay() === named)) return dayFirst;
  return monthFirst;
}

function midnight(year: string, month: string, date: string): number | null {
  const m = Number(month);
  const d = Number(date);
  if (m < 1 || m > 12 || d < 1 || d > 31) return null;
  return Date.UTC(Number(year), m - 1, d);
}

// A message line's minutes since midnight, sender ('' for the app's notices) and text; null for any other line.
function messageFields(line: string): { minutes: number; sender: string; text: string } | null {
  const fields = line.split('\t');
  if (fields.length < 2) return null;
  const time = TIME.exec(fields[0].trim());
  if (!time) return null;
  let hour = Number(time[2]);
  const meridiem = time[1] ?? time[4];
  if (meridiem !== undefined) hour = (hour % 12) + (AFTERNOON.has(meridiem) ? 12 : 0);
  if (hour > 23 || Number(time[3]) > 59) return null;
  const minutes = hour * 60 + Number(time[3]);
  return fields.length === 2 ? { minutes, sender: '', text: fields[1] } : { minutes, sender: fields[1].trim(), text: fields.slice(2).join('\t') };
}
