// Tokens a fine-tune added to GPT-2's vocabulary (its chat markers, its pad token) and the special tokens its files
// name, which Hugging Face's tokenizers library takes out of a text before BPE: written in a text, each is its one
// token, never the pieces BPE would make of its characters. Found as the library finds them (its AddedVocabulary):
//   - the leftmost match, the longest there; the search goes on after it;
//   - tokens with normalized false are taken out first, those with normalized true from the text left between them
//     (GPT-2 has no normalizer, so that text is the same);
//   - single_word: only where no word character (\w) touches it on either side, else passed over;
//   - lstrip, rstrip: the whitespace on its left, on its right, is part of the token;
//   - special: taken out only where the encode allows special tokens (EncodeOptions.allowSpecial), as <|endoftext|>
//     is: text from a user must not be able to write a control token.
import { quoted } from '../util/quoted';
import { isJsonObject } from '../util/json_object';

export interface AddedToken {
  text: string;
  id: number;
  special: boolean;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
}

// The flags of transformers' AddedToken and of tokenizer.json's "added_tokens", by their names in those files.
const FLAGS = { single_word: 'singleWord', lstrip: 'lstrip', rstrip: 'rstrip', normalized: 'normalized', special: 'special' } as const;

// An added token as the files write one: its text, or {"content": text, "lstrip": true, ...}; `where` names it in
// errors. Flags left out are transformers' defaults: none, and normalized unless special.
export function addedTokenEntry(entry: unknown, id: number, special: boolean, where: string): AddedToken {
  if (typeof entry === 'string') return { text: entry, id, special, singleWord: false, lstrip: false, rstrip: false, normalized: !special };
  if (!isJsonObject(entry) || typeof entry.content !== 'string' || entry.content === '') {
    throw new Error(`${where} is ${quoted(entry)}: must be a token's text or {"content": text, ...}`);
  }
  const token: AddedToken = { text: entry.content, id, special, singleWord: false, lstrip: false, rstrip: false, normalized: !special };
  for (const [field, flag] of Object.entries(FLAGS)) {
    const value = entry[field];
    if (value === undefined) continue;
    if (typeof value !== 'boolean') throw new Error(`${where}.${field} is ${quoted(value)}: must be true or false`);
    token[flag] = value;
  }
  if (entry.normalized === undefined) token.normalized = !token.special;
  return token;
}

// The added tokens of one kind of encode, in the order they are taken out: those matched on the text as it is, then
// those matched on it normalized. Empty where the encode takes none out (GPT-2's, without special tokens).
export function matchersOf(tokens: readonly AddedToken[]): TokenMatcher[] {
  return [tokens.filter((t) => !t.normalized), tokens.filter((t) => t.normalized)].filter((group) => group.length > 0).map((group) => new TokenMatcher(group));
}

// Whether a text cut at whitespace that follows a non-blank (pretokenize.ts isCutPoint) still encodes as its pieces'
// tokens joined: not where a token takes in the whitespace around it or holds some, which a cut could leave apart.
export function cutsAtWhitespace(tokens: readonly AddedToken[]): boolean {
  return tokens.every((t) => !t.lstrip && !t.rstrip && !WHITESPACE_IN.test(t.text));
}

const WHITESPACE = /^\p{White_Space}$/u;
const WHITESPACE_IN = /\p{White_Space}/u;
// The regex crate's Unicode \w, which single_word tests with.
const WORD = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;

// The code point that ends at text[at] (exclusive), as a string.
function charBefore(text: string, at: number): string {
  const low = text.charCodeAt(at - 1);
  const width = (low & 0xfc00) === 0xdc00 && at >= 2 && (text.charCodeAt(at - 2) & 0xfc00) === 0xd800 ? 2 : 1;
  return text.slice(at - width, at);
}

function charAt(text: string, at: number): string {
  return String.fromCodePoint(text.codePointAt(at) as number);
}

// Where the whitespace that ends at `at` starts, not before `from`.
export function whitespaceStart(text: string, at: number, from: number): number {
  while (at > from) {
    const c = charBefore(text, at);
    if (!WHITESPACE.test(c)) break;
    at -= c.length;
  }
  return at;
}

// Where the whitespace that starts at `at` ends, not after `to`.
export function whitespaceEnd(text: string, at: number, to: number): number {
  while (at < to) {
    const c = charAt(text, at);
    if (!WHITESPACE.test(c)) break;
    at += c.length;
  }
  return at;
}

// Whether a match of `token` at text[start..stop), searched for in text[from..to), is one: single_word wants no word
// character just before or just after it in that text.
export function standsAlone(token: AddedToken, text: string, start: number, stop: number, from: number, to: number): boolean {
  if (!token.singleWord) return true;
  return (start === from || !WORD.test(charBefore(text, start))) && (stop === to || !WORD.test(charAt(text, stop)));
}

// Finds tokens in a text, leftmost and then longest first: each token's next occurrence is looked up (indexOf) only
// once the search has passed the one found before, so a text costs one scan per token.
export class TokenMatcher {
  // The match that find() found.
  start = 0;
  end = 0;
  token: AddedToken;
  // Per token: where it occurs next at or after the search, -1 where it does not before the end, -2 not looked for.
  private readonly next: Int32Array;

  constructor(readonly tokens: readonly AddedToken[]) {
    this.token = tokens[0];
    this.next = new Int32Array(tokens.length);
  }

  // Starts a search of a new stretch of text.
  reset(): void {
    this.next.fill(-2);
  }

  // The leftmost-longest occurrence at or after `at` that ends by `to`, into start, end and token; false where none.
  find(text: string, at: number, to: number): boolean {
    let best = -1;
    for (let k = 0; k < this.tokens.length; k++) {
      let found = this.next[k];
      if (found === -1) continue;
      const { text: wanted } = this.tokens[k];
      if (found < at) {
        found = text.indexOf(wanted, at);
        if (found < 0 || found + wanted.length > to) found = -1;
        this.next[k] = found;
        if (found < 0) continue;
      }
      if (best < 0 || found < this.start || (found === this.start && found + wanted.length > this.end)) {
        best = k;
        this.start = found;
        this.end = found + wanted.length;
      }
    }
    if (best < 0) return false;
    this.token = this.tokens[best];
    return true;
  }
}
