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
import type { ReplyStream, Sanitizer } from './types';

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

  function clean(message: string): string {
    let s = message.replace(INNER_PREFIX, '$1');
    if (strayNames) s = s.replace(strayNames, ' ');
    s = s.replace(URL, ' ').replace(TAG, ' ').replace(ENTITY, ' ').replace(PARTIAL_EOM, ' ').replace(SYMBOLS, ' ');
    s = s.replace(/\s+/g, ' ').trim();
    // "in SEA." becomes "in S. E. A." rather than "S. E. A..".
    if (acronyms) s = s.replace(acronyms, (a: string, at: number, all: string) => (all[at + a.length] === '.' ? o.acronyms[a].replace(/\.$/, '') : o.acronyms[a]));
    return s;
  }

  // The reply as the text grows. Each message is cleaned once, when it ends; only the message still being
  // written is looked at again, so a reply costs time in proportion to its length. The first message continues
  // the prompt, whatever its prefix; a message still being written is withheld while it is only the start of a
  // prefix. Blank lines between messages are no messages.
  function stream(): ReplyStream {
    let pending = '';       // the text since the last message end
    let parts = 0;          // message ends seen
    let kept = '';          // the cleaned messages kept so far, joined
    let keptCount = 0;
    let complete = false;
    const keep = (message: string): void => {
      const cleaned = clean(message);
      if (cleaned !== '') kept = kept === '' ? cleaned : `${kept} ${cleaned}`;
      keptCount++;
    };
    // The prefix of a message after the first, or null; `complete` once the user's side speaks.
    const prefixOf = (message: string): RegExpExecArray | null => {
      const prefix = PREFIX.exec(message);
      if (parts > 0 && prefix?.[1] === SPEAKER_SIDE.user && !o.keepOtherSide) complete = true;
      return prefix;
    };
    return {
      push(piece: string): { text: string; complete: boolean } {
        if (complete) return { text: kept, complete };
        // End-of-text goes first: its pipes would otherwise read as the end of a prefix (`0|<|endoftext|>`).
        pending = (pending + piece).replace(END_OF_TEXT, ' ');
        for (let end = MESSAGE_END.exec(pending); end !== null && !complete; end = MESSAGE_END.exec(pending)) {
          const message = pending.slice(0, end.index);
          pending = pending.slice(end.index + end[0].length);
          if (keptCount === o.maxMessages) complete = true;
          else if (message.trim() !== '') {
            const prefix = prefixOf(message);
            if (!complete) keep(prefix ? message.slice(prefix[0].length) : message);
          }
          parts++;
        }
        if (complete || keptCount === o.maxMessages) return { text: kept, complete: true };
        const prefix = prefixOf(pending);
        if (complete || (parts > 0 && !prefix && PARTIAL_PREFIX.test(pending))) return { text: kept, complete };
        const current = clean(prefix ? pending.slice(prefix[0].length) : pending);
        return { text: current === '' ? kept : kept === '' ? current : `${kept} ${current}`, complete: false };
      },
    };
  }

  return {
    sanitize: (text: string): string => stream().push(text).text,
    stream,
  };
}
