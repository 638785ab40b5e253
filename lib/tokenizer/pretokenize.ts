// GPT-2's pre-tokenizer, hand-written over char codes. It returns exactly the pieces that the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// matches under the Python `regex` module that OpenAI's encoder.py (which GPT-2 was trained with) runs it on,
// as tiktoken's Rust build does too, several times faster than a regex: no match objects, no substrings. Code
// points are classified by JavaScript's regex classes, lazily. Their \s is not the \s of those two: JavaScript's
// includes U+FEFF and leaves out U+0085, where theirs is exactly Unicode White_Space. So whitespace is
// \p{White_Space} here (js-tiktoken and gpt-tokenizer, which use JavaScript's \s, differ on those two).

const LETTER = 1;
const NUMBER = 2;
const SPACE = 3;
const OTHER = 4;

const APOSTROPHE = 0x27;
const BLANK = 0x20;

const letterRe = /\p{L}/u;
const numberRe = /\p{N}/u;
const spaceRe = /\p{White_Space}/u;

// Class of every code point, 0 while not yet asked for. A lone surrogate is a code point of its own
// under /u (class OTHER), as the regex sees it.
const classes = new Uint8Array(0x110000);

function classify(cp: number): number {
  const s = String.fromCodePoint(cp);
  const k = letterRe.test(s) ? LETTER : numberRe.test(s) ? NUMBER : spaceRe.test(s) ? SPACE : OTHER;
  if (k === SPACE && cp > 0xffff) throw new Error(`pretokenize: astral whitespace U+${cp.toString(16)} breaks the scanner`);
  classes[cp] = k;
  return k;
}
for (let c = 0; c < 128; c++) classify(c);

// Class of the code point at text[j] (j < end); a surrogate pair counts as its astral code point.
function classAt(text: string, j: number, end: number): number {
  let c = text.charCodeAt(j);
  if ((c & 0xfc00) === 0xd800 && j + 1 < end) {
    const d = text.charCodeAt(j + 1);
    if ((d & 0xfc00) === 0xdc00) c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
  }
  const k = classes[c];
  return k !== 0 ? k : classify(c);
}

// End of the run of code points of class `k` that starts at j.
function runEnd(text: string, j: number, end: number, k: number): number {
  while (j < end) {
    let c = text.charCodeAt(j);
    let width = 1;
    if ((c & 0xfc00) === 0xd800 && j + 1 < end) {
      const d = text.charCodeAt(j + 1);
      if ((d & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        width = 2;
      }
    }
    let kc = classes[c];
    if (kc === 0) kc = classify(c);
    if (kc !== k) break;
    j += width;
  }
  return j;
}

// The end of the piece that starts at `start` (start < end) in text[..end). `end` is the end of the
// text or of a segment between special tokens; the pattern sees it as the end of input.
export function pieceEnd(text: string, start: number, end: number): number {
  const c = text.charCodeAt(start);
  if (c === APOSTROPHE && start + 1 < end) {
    // 's 't 're 've 'm 'll 'd, lower case only: GPT-2's pattern is case-sensitive.
    const c1 = text.charCodeAt(start + 1);
    if (c1 === 0x73 || c1 === 0x74 || c1 === 0x6d || c1 === 0x64) return start + 2;
    if (start + 2 < end) {
      const c2 = text.charCodeAt(start + 2);
      if ((c1 === 0x72 && c2 === 0x65) || (c1 === 0x76 && c2 === 0x65) || (c1 === 0x6c && c2 === 0x6c)) return start + 3;
    }
  }
  if (c === BLANK && start + 1 < end) {
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` with the optional leading space.
    const k = classAt(text, start + 1, end);
    if (k !== SPACE) return runEnd(text, start + 1, end, k);
  }
  const k = classAt(text, start, end);
  if (k !== SPACE) return runEnd(text, start, end, k);
  // `\s+(?!\S)` gives back the last blank of a run that a non-blank follows, so that the blank joins
  // the next word; a single blank before a non-blank is `\s+`. Whitespace is all in the BMP.
  let j = runEnd(text, start + 1, end, SPACE);
  if (j < end && j - start > 1) j--;
  return j;
}

// True when `q` (0 < q < text.length) is a piece boundary that cannot move whatever surrounds it:
// whitespace after a non-whitespace character. No piece spans it, the pieces before it end the same
// way if the text were cut there, and no special token contains whitespace. Used to cut big texts
// into chunks that encode independently.
export function isCutPoint(text: string, q: number): boolean {
  return classAt(text, q, q + 1) === SPACE && classAt(text, q - 1, q) !== SPACE;
}
