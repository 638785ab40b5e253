// Google Chat in Google Takeout (which holds the Hangouts chats Google moved there too): a folder a conversation,
// Takeout/Google Chat/Groups/DM <id>/ or Space <id>/, each with
//   messages.json    {"messages": [{"creator": {"name", "email", "user_type": "Human"}, "created_date":
//                     "Monday, March 6, 2023 at 9:15:02 AM UTC", "text", "attached_files": [...], "deleted_date"...}]}
//   group_info.json  {"name": "Hiking crew" (a space's), "members": [{"name", "email", "user_type"}]}
// and Takeout/Google Chat/Users/User <id>/user_info.json, {"user": {"name", "email", "user_type"}, "membership_info":
// [...]}, says who exported it: its e-mail address is the user's, so that no --me is needed where it is in the
// folder or zip with the conversations. --me (a name or an e-mail address) names the user where it is not, and wins
// where given. Dates are written in English, as Takeout writes them for an English account.
import { DropReason, ExportedChat, ExportedMessage, ChatImportError, NO_IDS, jsonObject, jsonString } from './chat_export';

// The folder of a conversation of more than two people: a space, or a group conversation that has no name.
const GROUP_FOLDER = /^Space /;

export function looksLikeGoogleChat(root: Record<string, unknown>): boolean {
  if (!Array.isArray(root.messages)) return false;
  const first = jsonObject(root.messages[0]);
  return first === null ? Object.keys(root).length === 1 : 'creator' in first && 'created_date' in first;
}

// group_info.json and user_info.json: read beside messages.json (groupInfo below), no conversation of their own.
export function isGoogleChatCompanion(root: Record<string, unknown>): boolean {
  const keys = Object.keys(root);
  return (Array.isArray(root.members) && keys.every((k) => k === 'members' || k === 'name')) || (jsonObject(root.user) !== null && keys.every((k) => k === 'user' || k === 'membership_info'));
}

// Where user_info.json lies from a conversation's folder, as a companion (detect.ts) finds it.
export const GOOGLE_CHAT_USER_INFO = '../../Users/User */user_info.json';

// `folder`: the conversation's folder's name (DM 4kpd0UAAAAE), which tells a space and keys the conversation;
// `groupInfo` and `userInfo`: its group_info.json and the export's user_info.json, when there are.
export function parseGoogleChat(file: string, folder: string, root: Record<string, unknown>, groupInfo: Record<string, unknown> | null, userInfo: Record<string, unknown> | null): ExportedChat {
  if (!Array.isArray(root.messages)) throw new ChatImportError(file, null, 'not a Google Chat export: no "messages" list');
  const members = Array.isArray(groupInfo?.members) ? groupInfo.members : [];
  return {
    format: 'googlechat',
    file,
    key: `googlechat:${folder}`,
    title: jsonString(groupInfo?.name),
    group: GROUP_FOLDER.test(folder) || members.length > 2 ? true : members.length === 2 ? false : null,
    skip: null,
    myIds: userIds(userInfo),
    messages: root.messages.map((value, index) => toMessage(file, value, index)),
  };
}

// The user as messages name their senders: by e-mail address, which is theirs alone (a name may be another
// member's too), or by name where the address is missing.
function userIds(userInfo: Record<string, unknown> | null): readonly string[] {
  const user = jsonObject(userInfo?.user) ?? {};
  const id = jsonString(user.email) || jsonString(user.name);
  return id === '' ? NO_IDS : [id];
}

function toMessage(file: string, value: unknown, index: number): ExportedMessage {
  const message = jsonObject(value) ?? {};
  const creator = jsonObject(message.creator) ?? {};
  const email = jsonString(creator.email);
  const sender = jsonString(creator.name) || email;
  const created = jsonString(message.created_date);
  const time = takeoutDate(created);
  if (created !== '' && Number.isNaN(time)) {
    throw new ChatImportError(file, null, `messages[${index}].created_date ${JSON.stringify(created)} is not a date as Takeout writes them in English ("Monday, March 6, 2023 at 9:15:02 AM UTC"); export it again with the Google account's language set to English`);
  }
  const text = jsonString(message.text);
  const attached = Array.isArray(message.attached_files) && message.attached_files.length > 0;
  const dropped: DropReason | null =
    sender === '' || Number.isNaN(time)
      ? 'unreadable'
      : message.deleted_date !== undefined
        ? 'deleted'
        : creator.user_type !== undefined && creator.user_type !== 'Human'
          ? 'system'
          : text.trim() === '' && (attached || message.drive_file !== undefined)
            ? 'media'
            : null;
  return { time: Number.isNaN(time) ? 0 : time, sender, senderIds: email === '' ? NO_IDS : [email], mine: null, text, dropped, line: 0 };
}

const MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];
// "Monday, March 6, 2023 at 9:15:02 AM UTC" (US English, the space before AM a narrow one in newer exports) or
// "Monday, 6 March 2023 at 09:15:02 UTC" (British English). A zone other than UTC or GMT keeps its wall clock.
const US_DATE = /^\w+, (\p{L}+) (\d{1,2}), (\d{4}) at (\d{1,2}):(\d{2}):(\d{2})[\s\u202f](AM|PM)(?: \S+)?$/iu;
const UK_DATE = /^\w+, (\d{1,2}) (\p{L}+) (\d{4}) at (\d{1,2}):(\d{2}):(\d{2})(?: \S+)?$/iu;

export function takeoutDate(text: string): number {
  const us = US_DATE.exec(text.trim());
  const uk = UK_DATE.exec(text.trim());
  const [month, day, year, hour, minute, second] = us ? [us[1], us[2], us[3], us[4], us[5], us[6]] : uk ? [uk[2], uk[1], uk[3], uk[4], uk[5], uk[6]] : ['', '', '', '', '', ''];
  const m = MONTHS.indexOf(month.toLowerCase());
  if (m < 0) return NaN;
  let h = Number(hour);
  if (us) {
    if (h < 1 || h > 12) return NaN;
    h = (h % 12) + (us[7].toUpperCase() === 'PM' ? 12 : 0);
  }
  return Date.UTC(Number(year), m, Number(day), h, Number(minute), Number(second));
}
