// The chatbot sanitizer: turns what a model fine-tuned on chat logs generates into a reply that can be shown or
// spoken. In a chat the model answers as the audience (side 0 of the chat format, lib/data/chat_format.ts): its
// reply continues `0|<audience>|`, and the person it talks to writes on side 1. The same steps as the chatbot
// sanitizer of the TensorFlow tools (docs/compatibility.md), done here as ordered, anchored steps:
//   1. drop <|endoftext|>, split into messages and keep up to maxMessages of them, stopping at the first one in
//      the user's voice, side 1 (unless keepOtherSide). A message ends at <EOM> (or a broken one: "<EOM", "EOM>",
//      or "EOM" bare, which an undertrained model writes inside words, "I.EOMale"), at a line break, or at any
//      other sign of a new message: a pipe, which the chat format uses only in prefixes, with the side digit or
//      audience name written against it (`Fine! 1|mom|`, `Love you. mom|`). A new message must start with a
//      whole prefix, `0|name|` or `1|name|`; one that starts with a broken one (`mom|`, `1|mom.`) means the model
//      has lost the format, and the reply ends before it;
//   2. strip the prefix of each message kept;
//   3. remove markup (tags, entities, a half-written <EOM> at the end), URLs, and symbols that a speech engine
//      reads out badly (brackets, equals, plus, emoji...);
//   4. collapse whitespace, then expand the configured acronyms ("COE" -> "C. O. E.").
import { END_OF_MESSAGE, SPEAKER_SIDE } from '../data/chat_format';
import type { ReplyProgress, ReplyStream, Sanitizer } from './types';

export interface ChatbotSanitizerOptions {
  maxMessages: number;              // messages kept (default 4)
  keepOtherSide: boolean;           // keep messages in the user's voice too (default false)
  names: readonly string[];         // audience names: written against a pipe (`mom|`) they start a new message
  acronyms: Readonly<Record<string, string>>;  // whole-word replacements for speech
}

export const CHATBOT_DEFAULTS: ChatbotSanitizerOptions = { maxMessages: 4, keepOtherSide: false, names: [], acronyms: {} };

// Where a message ends for sure: its <EOM> (with the line break after it, if any), a broken one ("<EOM" or "EOM"
// and something else than ">", or "EOM>"), or a line break. "EOM" at the very end waits: a ">" may follow.
const MESSAGE_END = new RegExp(`${END_OF_MESSAGE}[^\\S\\n]*\\n?|<EOM(?=[^>])|(?<!<)EOM(?:>|(?=[^>]))|\\n`);
// No <EOM>, whole or broken, starts here: a prefix or a word does not run across the end of a message.
const NO_END = '(?!<?EOM)';
// An audience in a prefix: no pipe, no line break, no <EOM>.
const AUDIENCE = `(?:${NO_END}[^|\\r\\n])`;
// A whole chat prefix at the start of a message's line: side, optional "+", audience.
const PREFIX = new RegExp(`^[^\\S\\n]*([01])\\|\\+?${AUDIENCE}{1,64}\\|`);
// The start of a prefix still being written: "", "0", "0|", "0|mo".
const PREFIX_START = new RegExp(`^[^\\S\\n]*(?:[01](?:\\|\\+?${AUDIENCE}{0,64})?)?$`);
// A message whose first word runs into a pipe ("mom|Love you"): a prefix that lost its side.
const BROKEN_PREFIX = new RegExp(`^[^\\S\\n]*(?:${NO_END}[^\\s|])*\\|`);
// A side digit before a pipe ("Sure!1|", "hello 1 |"), not the last digit of a number.
const SIDE_BEFORE_PIPE = /(?<!\p{N})[01]\s*$/u;
const NOT_IN_WORD = /[^\p{L}\p{N}]/u;
const END_OF_TEXT = /<\|endoftext\|>/g;
const END_OF_TEXT_MARKER = '<|endoftext|>';
const URL = /(?:https?:\/\/|www\.)[^\s<>"]*/gi;
const TAG = /<\/?[A-Za-z][^<>]{0,200}>/g;
const ENTITY = /&(?:[A-Za-z]{2,8}|#\d{1,6}|#x[0-9A-Fa-f]{1,6});/g;
// The start of a chat marker cut off by the length limit: "<", "<E", "<EO", "<EOM" or "EOM" at the very end.
const PARTIAL_EOM = /<(?:E(?:O(?:M)?)?)?$|EOM$/;
// Symbols a speech engine reads out ("pipe", "less than", "equals") or that carry no words, and emoji with
// their joiners and variation selectors. Apostrophes, quotes and sentence punctuation stay.
const SYMBOLS = /[|<>()[\]{}=+*#_~^`\\@$%&]|-{2,}|\p{Extended_Pictographic}|[\u200D\uFE0E\uFE0F]|\p{Emoji_Modifier}/gu;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function join(kept: string, more: string): string {
  return more === '' ? kept : kept === '' ? more : `${kept} ${more}`;
}

// How many characters at the end of `text` may be the start of an <|endoftext|> still being written ("<|end").
function partialEndOfText(text: string): number {
  for (let n = Math.min(END_OF_TEXT_MARKER.length - 1, text.length); n >= 1; n--) {
    if (END_OF_TEXT_MARKER.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}

// What the text of a message being written (`body`, after its prefix) shows next.
type Next =
  | { kind: 'end'; at: number; next: number }   // the message ends at `at`; the next one starts at `next`
  | { kind: 'message'; at: number }              // a new message, whole prefix and all, starts at `at`
  | { kind: 'broken'; at: number }               // a broken prefix starts at `at`: the reply ends there
  | { kind: 'waiting'; at: number }              // what starts at `at` may yet be a whole prefix
  | { kind: 'open' };                            // the message goes on

export function createChatbotSanitizer(options: Partial<ChatbotSanitizerOptions> = {}): Sanitizer {
  const o: ChatbotSanitizerOptions = { ...CHATBOT_DEFAULTS, ...options };
  if (!(Number.isInteger(o.maxMessages) && o.maxMessages >= 1)) throw new RangeError(`maxMessages must be an integer >= 1, got ${o.maxMessages}`);
  const names = [...o.names].sort((a, b) => b.length - a.length);
  const acronymKeys = Object.keys(o.acronyms).sort((a, b) => b.length - a.length);
  const acronyms = acronymKeys.length > 0 ? new RegExp(`(?<![\\p{L}\\p{N}])(?:${acronymKeys.map(escapeRegExp).join('|')})(?![\\p{L}\\p{N}])`, 'gu') : null;
  // The end of a message being written that a pipe could still make part of a sign of a new message: its last
  // word (or as many as the longest name has), and a side digit before it.
  const wordsHeld = 1 + Math.max(0, ...names.map((n) => n.split(/\s+/).length - 1));

  // Where those last words begin (with a side digit standing alone before them), found by walking back from the
  // end: a regular expression searching for them from every start backtracks in the square of a long word's length.
  function lastWordsFrom(body: string): number {
    const space = (at: number): boolean => at >= 0 && /\s/.test(body[at]);
    const word = (at: number): boolean => at >= 0 && !space(at);
    let at = body.length;
    while (space(at - 1)) at--;
    while (word(at - 1)) at--;
    for (let words = 1; words < wordsHeld; words++) {
      let before = at;
      while (space(before - 1)) before--;
      if (before === at || !word(before - 1)) break;
      while (word(before - 1)) before--;
      at = before;
    }
    let side = at;
    while (space(side - 1)) side--;
    const digit = side - 1;
    if (side < at && (body[digit] === '0' || body[digit] === '1') && !word(digit - 1)) at = digit;
    return at;
  }

  function clean(message: string): string {
    let s = message.replace(URL, ' ').replace(TAG, ' ').replace(ENTITY, ' ').replace(PARTIAL_EOM, ' ').replace(SYMBOLS, ' ');
    s = s.replace(/\s+/g, ' ').trim();
    // "in SEA." becomes "in S. E. A." rather than "S. E. A..".
    if (acronyms) s = s.replace(acronyms, (a: string, at: number, all: string) => (all[at + a.length] === '.' ? o.acronyms[a].replace(/\.$/, '') : o.acronyms[a]));
    return s;
  }

  // Where the sign of a new message whose pipe is at `pipe` starts: at a side digit or a name written against it.
  function markerStart(body: string, pipe: number): number {
    const before = body.slice(0, pipe).trimEnd();
    const side = SIDE_BEFORE_PIPE.exec(before);
    if (side) return side.index;
    for (const name of names) {
      const at = before.length - name.length;
      if (before.endsWith(name) && (at === 0 || NOT_IN_WORD.test(before[at - 1]))) return at;
    }
    return pipe;
  }

  function next(body: string): Next {
    const end = MESSAGE_END.exec(body);
    const pipe = body.indexOf('|');
    if (pipe >= 0 && (end === null || pipe < end.index)) {
      const at = markerStart(body, pipe);
      const rest = body.slice(at);
      if (PREFIX.test(rest)) return { kind: 'message', at };
      return { kind: PREFIX_START.test(rest) ? 'waiting' : 'broken', at };
    }
    return end === null ? { kind: 'open' } : { kind: 'end', at: end.index, next: end.index + end[0].length };
  }

  // Where the part of a message being written that later text may still change begins: its last words (a pipe
  // may come), or a '<' that a '>' may yet close into a tag; never inside a tag, which goes whole.
  function heldFrom(body: string): number {
    const lt = body.lastIndexOf('<');
    let held = lastWordsFrom(body);
    if (lt > body.lastIndexOf('>')) held = Math.min(lt, held);
    for (const tag of body.matchAll(TAG)) if (tag.index < held && held < tag.index + tag[0].length) held = tag.index;
    return held;
  }

  // The reply as the text grows. Each message is cleaned once, when it ends; only the message still being
  // written is looked at again, so a reply costs time in proportion to its length. The first message continues
  // the prompt, whatever its prefix; a later one is withheld while it is only the start of a prefix. Blank lines
  // between messages are no messages.
  function stream(): ReplyStream {
    let pending = '';       // the text of the message being written, from its start
    let later = false;      // a message ended before it
    let kept = '';          // the cleaned messages kept so far, joined
    let keptCount = 0;
    let done: ReplyProgress | null = null;
    const keep = (message: string): void => {
      if (message.trim() === '') return;
      kept = join(kept, clean(message));
      keptCount++;
    };
    const finish = (): ReplyProgress => (done = { text: kept, settled: kept, complete: true });
    const endMessage = (rest: number): ReplyProgress | null => {
      pending = pending.slice(rest);
      later = true;
      return keptCount === o.maxMessages ? finish() : null;
    };
    return {
      push(piece: string): ReplyProgress {
        if (done) return done;
        // End-of-text goes first: its pipes would otherwise read as signs of a new message (`0|<|endoftext|>`).
        pending = (pending + piece).replace(END_OF_TEXT, ' ');
        for (;;) {
          const view = pending.slice(0, pending.length - partialEndOfText(pending));
          const prefix = PREFIX.exec(view);
          if (prefix && later && prefix[1] === SPEAKER_SIDE.user && !o.keepOtherSide) return finish();
          if (!prefix && later) {
            if (PREFIX_START.test(view)) return { text: kept, settled: kept, complete: false };
            if (BROKEN_PREFIX.test(view)) return finish();
          }
          const start = prefix ? prefix[0].length : 0;
          const body = view.slice(start);
          const n = next(body);
          if (n.kind === 'end' || n.kind === 'message') {
            keep(body.slice(0, n.at));
            const ended = endMessage(start + (n.kind === 'end' ? n.next : n.at));
            if (ended) return ended;
            continue;
          }
          if (n.kind === 'broken') {
            keep(body.slice(0, n.at));
            return finish();
          }
          if (n.kind === 'waiting') {
            const text = join(kept, clean(body.slice(0, n.at)));
            return { text, settled: text, complete: false };
          }
          // A side digit at the very end is the start of a sign rather than a word: a reply cut there ends before it.
          const text = join(kept, clean(body.replace(SIDE_BEFORE_PIPE, '')));
          return { text, settled: join(kept, clean(body.slice(0, heldFrom(body)))), complete: false };
        }
      },
    };
  }

  return {
    sanitize: (text: string): string => stream().push(text).text,
    stream,
  };
}
