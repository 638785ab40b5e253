// KakaoTalk's exported chat (대화 내보내기), a text file laid out by the phone or by the computer that saved it:
//   a phone's (Android, iPhone)                         a computer's (Windows, Mac)
//   형주 님과 카카오톡 대화                                   형주 님과 카카오톡 대화
//   저장한 날짜 : 2014년 2월 12일 오전 11:22                   저장한 날짜 : 2024-03-11 22:14:03
//
//   2013년 2월 28일 오후 11:17                               --------------- 2013년 2월 28일 목요일 ---------------
//   2013년 2월 28일 오후 11:17, 형주 : 남 병장?               [형주] [오후 11:17] 남 병장?
//   2013년 2월 28일 오후 11:19, 회원님 : 예형                 [회원님] [오후 11:19] 예형
//   둘째 줄                                                 둘째 줄                     a message goes on until
//   2024년 7월 3일 오전 12:47, 가을님이 지후님을 초대했습니다.  가을님이 들어왔습니다.          the next, a day or a notice
// A group's heading gives its number of members ("공경진! 4 카카오톡 대화"). In English: "KakaoTalk Chats with
// Ann", "Date Saved : May 28, 2018, 9:46 AM", "March 3, 2018, 8:54 PM, Ann : Hi" (newer phones: "March 3, 2018 at
// 8:54 PM"), "--------------- Saturday, March 3, 2018 ---------------", "[Ann] [8:54 PM] Hi"; newer Korean phones
// write "2024. 1. 15. 오후 3:04". Times are the phone's wall clock, kept as if UTC, as other exports without a time
// zone are.
import path from 'node:path';
import { ChatImportError, DropReason, ExportedChat, ExportedMessage, DETECT_HEAD, NO_IDS } from './chat_export';

const SAVED = /^(?:저장한 날짜|Date Saved) : /;
// The heading's lines: the chat's name and the date it was saved.
const HEADING_LINES = 2;
const TITLES: readonly { pattern: RegExp; group: boolean | null }[] = [
  { pattern: /^(.+?) 님과 카카오톡 대화$/, group: null },
  { pattern: /^(.+?) \d+ 카카오톡 대화$/, group: true },
  { pattern: /^(.+?) 카카오톡 대화$/, group: null },
  { pattern: /^KakaoTalk Chats (?:with )?(.+?) \(\d+\)$/, group: true },
  { pattern: /^KakaoTalk Chats (?:with )?(.+)$/, group: null },
];
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MONTH = '(Jan|Feb|Mar|Apr|May|June?|July?|Aug|Sept?|Oct|Nov|Dec)[a-z]*';
const WEEKDAY = '(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day';
// A date: year, month and day in groups 1-3 (the English one: month, day, year).
const KOREAN_DATE = '(\\d{4})년 (\\d{1,2})월 (\\d{1,2})일';
const DOTTED_DATE = '(\\d{4})\\. ?(\\d{1,2})\\. ?(\\d{1,2})\\.';
const ENGLISH_DATE = `${MONTH} (\\d{1,2}), (\\d{4})`;
// A time: 오전/오후 or AM/PM before or after it, or a 24-hour clock. After it, the a or p of "AM", "am" or "a.m." (as
// the phone's region writes it), behind a space, a no-break space or, on newer phones, a narrow one.
const CLOCK = '(?:(오전|오후|AM|PM) )?(\\d{1,2}):(\\d{2})(?:[ \\u00a0\\u202f]?([AaPp])\\.?[Mm]\\.?)?';
// A phone's message or notice: its date and time, then ", " and the rest; alone on a line, a day's heading.
const PHONE_STAMPS: readonly { pattern: RegExp; english: boolean }[] = [
  { pattern: new RegExp(`^${KOREAN_DATE} ${CLOCK}(?:, (.*))?$`), english: false },
  { pattern: new RegExp(`^${DOTTED_DATE} ${CLOCK}(?:, (.*))?$`), english: false },
  { pattern: new RegExp(`^${ENGLISH_DATE}(?:,| at) ${CLOCK}(?:, (.*))?$`, 'i'), english: true },
];
// A day's heading without a time: a phone's "2019년 3월 30일 토요일", a computer's between dashes.
const PHONE_DAY = new RegExp(`^(?:${KOREAN_DATE} \\S+요일|${DOTTED_DATE} \\S+요일|${WEEKDAY}, ${ENGLISH_DATE})$`, 'i');
const COMPUTER_DAY = /^-{5,} (.+) -{5,}$/;
const COMPUTER_DAY_DATE: readonly { pattern: RegExp; english: boolean }[] = [
  { pattern: new RegExp(`^${KOREAN_DATE} \\S+요일$`), english: false },
  { pattern: new RegExp(`^${WEEKDAY}, ${ENGLISH_DATE}$`, 'i'), english: true },
];
const COMPUTER_MESSAGE = new RegExp(`^\\[(.+?)\\] \\[${CLOCK}\\] ?(.*)$`);
// The app's notices on a line of their own in a computer's export: joins, leaves, invitations, removals.
const COMPUTER_NOTICE = /(?:님이 들어왔습니다|님이 나갔습니다|님을 초대했습니다|님을 내보냈습니다|joined this chatroom|left this chatroom|has been removed from this chatroom)\.$/;
// A message that stands for an attachment, and one deleted or hidden, in KakaoTalk's Korean and English.
const MEDIA = /^(?:사진|사진 \d+장|동영상|이모티콘|음성메시지|Photo|\d+ photos|Video|Emoticon|Voice message)$|^(?:파일|File): /i;
const DELETED = /^(?:삭제된 메시지입니다\.|This message was deleted\.|채팅방 관리자가 메시지를 가렸습니다\.|This message has been hidden by the chatroom managers\.)$/;

export function looksLikeKakaoTalk(text: string): boolean {
  const lines = text.slice(0, DETECT_HEAD).replace(/^\ufeff/, '').split(/\r?\n/, 8).map((l) => l.trim()).filter((l) => l !== '');
  // Without its heading (a part of a long chat): a computer's day and messages under it.
  return lines.slice(0, 3).some((l) => SAVED.test(l)) || (COMPUTER_DAY.test(lines[0] ?? '') && lines.slice(1).filter((l) => COMPUTER_MESSAGE.test(l)).length >= 2);
}

export function parseKakaoTalk(file: string, text: string): ExportedChat {
  const lines = text.replace(/^\ufeff/, '').split(/\r?\n/);
  const heading = SAVED.test(lines[1]?.trim() ?? '') ? lines[0].trim() : '';
  const titled = TITLES.map(({ pattern, group }) => ({ match: pattern.exec(heading), group })).find((t) => t.match !== null);
  const title = titled?.match?.[1] ?? '';
  const messages: ExportedMessage[] = [];
  let day: number | null = null;
  let open: ExportedMessage | null = null;
  // A notice of a computer's export has no time of its own: it takes the one of the message before it.
  let time = 0;
  let firstUnread: number | null = null;
  const add = (line: number, sender: string, content: string, dropped: DropReason | null): void => {
    open = { time, sender, senderIds: NO_IDS, mine: null, text: content, dropped, line };
    messages.push(open);
  };
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const computerDay = COMPUTER_DAY.exec(line.trim());
    const newDay = computerDay ? computerDayOf(computerDay[1]) : null;
    if (newDay !== null || PHONE_DAY.test(line.trim())) {
      if (newDay !== null) day = newDay;
      open = null;
      return;
    }
    const computer = COMPUTER_MESSAGE.exec(line);
    if (computer) {
      time = day === null ? 0 : day + minutesOf(computer[2], computer[3], computer[4], computer[5]) * 60_000;
      add(i + 1, computer[1], computer[6], day === null ? 'unreadable' : null);
      return;
    }
    const phone = phoneStamp(line);
    if (phone) {
      time = phone.time;
      if (phone.rest === null) open = null;
      else {
        // "Ann : Hi" is a message; what has no sender is the app's notice.
        const separator = phone.rest.indexOf(' : ');
        if (separator > 0) add(i + 1, phone.rest.slice(0, separator), phone.rest.slice(separator + 3), null);
        else add(i + 1, '', phone.rest, 'system');
      }
      return;
    }
    if (COMPUTER_NOTICE.test(line.trim())) add(i + 1, '', line, 'system');
    // A line of the message before it (blank lines too); before the first message, the heading.
    else if (open) open.text += `\n${line}`;
    else if (firstUnread === null && i >= HEADING_LINES && line.trim() !== '') firstUnread = i + 1;
  });
  // Lines below the heading of which no message was read are in a form not known here: rather than an empty chat,
  // the first of them is named.
  if (messages.length === 0 && firstUnread !== null) {
    throw new ChatImportError(file, firstUnread, `not a KakaoTalk message line (its date and time, then the sender: "March 4, 2024, 8:54 PM, Ann : Hi", "[Ann] [8:54 PM] Hi"): ${JSON.stringify(lines[firstUnread - 1].trim().slice(0, 60))}`);
  }
  for (const message of messages) {
    message.text = message.text.replace(/\s+$/, '');
    message.dropped ??= dropReason(message.text);
  }
  return {
    format: 'kakaotalk',
    file,
    // The parts of one long export (an iPhone's Talk_2024.1.15 15:04-1.txt, -2.txt...) share their heading.
    key: title === '' ? `kakaotalk:${path.resolve(file)}` : `kakaotalk:${path.resolve(path.dirname(file))}\0${title}`,
    title,
    group: titled?.group ?? null,
    skip: null,
    myIds: NO_IDS,
    messages,
  };
}

function dropReason(text: string): DropReason | null {
  if (DELETED.test(text)) return 'deleted';
  if (MEDIA.test(text)) return 'media';
  return null;
}

// A phone's message line: its time, and what follows the time (null for a day's heading); null for other lines.
function phoneStamp(line: string): { time: number; rest: string | null } | null {
  for (const { pattern, english } of PHONE_STAMPS) {
    const stamp = pattern.exec(line);
    if (!stamp) continue;
    const date = dateOf(stamp.slice(1, 4), english);
    if (date === null) return null;
    return { time: date + minutesOf(stamp[4], stamp[5], stamp[6], stamp[7]) * 60_000, rest: stamp[8] ?? null };
  }
  return null;
}

// A computer's day heading's midnight (ms, as if UTC), or null.
function computerDayOf(heading: string): number | null {
  for (const { pattern, english } of COMPUTER_DAY_DATE) {
    const date = pattern.exec(heading);
    if (date) return dateOf(date.slice(1, 4), english);
  }
  return null;
}

// Midnight of a date's three fields as the pattern matched them (ms, as if UTC); null for no date.
function dateOf([first, second, third]: string[], english: boolean): number | null {
  const [year, month, day] = english ? [Number(third), MONTHS.indexOf(first.slice(0, 3).toLowerCase()) + 1, Number(second)] : [Number(first), Number(second), Number(third)];
  if (month < 1 || month > 12 || day < 1 || day > 31) return null;
  return Date.UTC(year, month - 1, day);
}

// Minutes since midnight of a time, its 오전/오후 or AM/PM before it, or the a or p of its AM/PM after it.
function minutesOf(before: string | undefined, hours: string, minutes: string, after: string | undefined): number {
  const meridiem = before ?? after;
  let hour = Number(hours);
  if (meridiem !== undefined) hour = (hour % 12) + (meridiem === '오후' || /^p/i.test(meridiem) ? 12 : 0);
  return hour * 60 + Number(minutes);
}
