// The chatbot sanitizer: turns what a model fine-tuned on chat logs generates into a reply that can be shown or
// spoken. In a chat the model answers as the audience (side 0 of the chat format, lib/data/chat_format.ts): its
// reply continues `0|<audience>|`, and the person it talks to writes on side 1. The original server's sanitizer
// did the same steps with string replacements and DIXIE_NAMES from the environment. Rebuilt here as ordered,
// anchored steps:
//   1. drop <|endoftext|>, split into messages, each ending at <EOM> or at a line break, and keep up to
//      maxMessages of them, stopping at the first one in the user's voice, side 1 (unless keepOtherSide: the
//      original kept both);
//   2. strip the `0|name|` / `1|name|` prefixes of any audience (and stray `|name|` of the configured names);
//   3. remove markup (tags, entities, a half-written <EOM> at the end), URLs, and symbols that a speech engine
//      reads out badly (pipes, brackets, equals, plus, emoji...);
//   4. collapse whitespace, then expand the configured acronyms ("COE" -> "C. O. E.").
import { END_OF_MESSAGE, SPEAKER_SIDE } from '../data/chat_format';
import type { Sanitizer } from './types';

export interface ChatbotSanitizerOptions {
  maxMessages: number;              // messages kept (the original: 4)
  keepOtherSide: boolean;           // keep messages in the user's voice too (the original did)
  names: readonly string[];         // audience names whose stray `|name|` fragments are removed too
  acronyms: Readonly<Record<string, string>>;  // whole-word replacements for speech
}

export const CHATBOT_DEFAULTS: ChatbotSanitizerOptions = { maxMessages: 4, keepOtherSide: false, names: [], acronyms: {} };

// Where a message ends: its <EOM> (with the line break after it, if any), or a line break.
const MESSAGE_END = new RegExp(`${END_OF_MESSAGE}[^\\S\\n]*\\n?|\\n`);
// A chat prefix at the start of a message: side, optional "+", audience (no pipe, no line break).
const PREFIX = /^\s*([01])\|\+?[^|\r\n]{0,64}\|/;
const PARTIAL_PREFIX = /^\s*(?:[01](?:\|[^|\r\n]{0,64})?)?$/;
// Prefixes that survived elsewhere (the model sometimes runs two messages together without <EOM>).
const INNER_PREFIX = /(^|[\s>])[01]\|\+?[^|\r\n\s]{1,64}\|/g;
const END_OF_TEXT = /<\|endoftext\|>/g;
const URL = /(?:https?:\/\/|www\.)[^\s<>"]*/gi;
const TAG = /<\/?[A-Za-z][^<>]{0,200}>/g;
const ENTITY = /&(?:[A-Za-z]{2,8}|#\d{1,6}|#x[0-9A-Fa-f]{1,6});/g;
// The start of a chat marker cut off by the length limit: "<", "<E", "<EO", "<EOM" at the very end.
const PARTIAL_EOM = /<(?:E(?:O(?:M)?)?)?$/;
// Symbols a speech engine reads out ("pipe", "less than", "equals") or that carry no words, and emoji with
// their joiners and variation selectors. Apostrophes, quotes and sentence punctuation stay.
const SYMBOLS = /[|<>()[\]{}=+*#_~^`\\@$%&]|-{2,}|\p{Extended_Pictographic}|[\u200D\uFE0E\uFE0F]|\p{Emoji_Modifier}/gu;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function createChatbotSanitizer(options: Partial<ChatbotSanitizerOptions> = {}): Sanitizer {
  const o: ChatbotSanitizerOptions = { ...CHATBOT_DEFAULTS, ...options };
  if (!(Number.isInteger(o.maxMessages) && o.maxMessages >= 1)) throw new RangeError(`maxMessages must be an integer >= 1, got ${o.maxMessages}`);
  const strayNames = o.names.length > 0 ? new RegExp(`\\|\\+?(?:${o.names.map(escapeRegExp).join('|')})\\|`, 'g') : null;
  const acronymKeys = Object.keys(o.acronyms).sort((a, b) => b.length - a.length);
  const acronyms = acronymKeys.length > 0 ? new RegExp(`(?<![\\p{L}\\p{N}])(?:${acronymKeys.map(escapeRegExp).join('|')})(?![\\p{L}\\p{N}])`, 'gu') : null;

  // The messages of `text` to keep, prefixes removed; `complete` when no later text can change them. The first
  // message continues the prompt, whatever its prefix; the part after the last message end is a message still
  // being written, withheld while it is only the start of a prefix. Blank lines between messages are no messages.
  function messages(text: string): { kept: string[]; complete: boolean } {
    // End-of-text goes first: its pipes would otherwise read as the end of a prefix (`0|<|endoftext|>`).
    const parts = text.replace(END_OF_TEXT, ' ').split(MESSAGE_END);
    const kept: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (kept.length === o.maxMessages) return { kept, complete: true };
      const last = i === parts.length - 1;
      if (!last && parts[i].trim() === '') continue;
      const prefix = PREFIX.exec(parts[i]);
      if (i > 0 && last && !prefix && PARTIAL_PREFIX.test(parts[i])) return { kept, complete: false };
      if (i > 0 && prefix?.[1] === SPEAKER_SIDE.user && !o.keepOtherSide) return { kept, complete: true };
      kept.push(prefix ? parts[i].slice(prefix[0].length) : parts[i]);
    }
    return { kept, complete: false };
  }

  function clean(message: string): string {
    let s = message.replace(INNER_PREFIX, '$1');
    if (strayNames) s = s.replace(strayNames, ' ');
    s = s.replace(URL, ' ').replace(TAG, ' ').replace(ENTITY, ' ').replace(PARTIAL_EOM, ' ').replace(SYMBOLS, ' ');
    return s.replace(/\s+/g, ' ').trim();
  }

  return {
    sanitize(text: string): string {
      let out = messages(text).kept.map(clean).filter((m) => m !== '').join(' ');
      // "in SEA." becomes "in S. E. A." rather than "S. E. A..".
      if (acronyms) out = out.replace(acronyms, (a: string, at: number, all: string) => (all[at + a.length] === '.' ? o.acronyms[a].replace(/\.$/, '') : o.acronyms[a]));
      return out;
    },
    isComplete(text: string): boolean {
      return messages(text).complete;
    },
  };
}
