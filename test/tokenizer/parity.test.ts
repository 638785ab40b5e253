// Token ids identical to tiktoken's r50k_base (GPT-2's encoding in tiktoken's Rust build, an independent
// implementation whose pattern runs as encoder.py's Python `regex` runs it) on a varied corpus and on random
// Unicode; decode(encode(s)) === s.
import fc from 'fast-check';
import { get_encoding } from 'tiktoken';
import t from 'tap';
import { loadTokenizer } from '../../lib/tokenizer';

const tokenizer = loadTokenizer();
const reference = get_encoding('r50k_base');
t.teardown(() => reference.free());

function ours(text: string, allowSpecial = false): number[] {
  return Array.from(tokenizer.encode(text, { allowSpecial }));
}
// The reference with every special token treated as text, as a user's message must be.
function theirs(text: string): number[] {
  return Array.from(reference.encode(text, [], []));
}

const CORPUS: Record<string, string> = {
  prose:
    "It was the best of times, it was the worst of times. She said: \"Don't go!\" -- and he didn't.\n" +
    'The quick brown fox jumps over the lazy dog; 3 times, at 4:30pm (approx.) on 2019-02-14.',
  code:
    '#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; ++i) {\n' +
    '\t\tprintf("%s\\n", argv[i]);\n\t}\n\treturn 0;\n}\n\ndef f(x):\n    return {"a": x ** 2, \'b\': [1, 2]}\n',
  whitespace: 'a  b   c    d\t\te\n\nf\r\n\r\ng \n h\t \t i   \n\n\n   j' + ' '.repeat(17) + 'k\n' + '\t'.repeat(5) + '\n ',
  blanksAtEnds: '   leading and trailing   ',
  onlyBlanks: ' \t\n \n\t  ',
  digits: '0 1 12 123 1234 12345 123456789012345 3.14159 1,000,000 0x1F 1e-9 ٣٤٥ ①②③ Ⅻ',
  contractions: "I'm you're we've they'll she'd it's don't 's 't 're 've 'm 'll 'd o'clock rock'n'roll",
  upperContractions: "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T 'S 'T 'RE 'VE 'M 'LL 'D We'Re It'S",
  apostrophes: "'''s ''t x''re ' 's ` '' 'sss 'llama 'dd",
  accented: 'Café naïve façade Ærøskøbing Łódź Dvořák crème brûlée São Paulo ÉCOLE Straße',
  cjk: '中文字符测试，日本語のテキスト。한국어 텍스트입니다. 漢字かなカナ混じり文',
  emoji: '👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇩🇪 ❤️ 🧑🏿‍💻 😀😃😄 x🙂y',
  combining: 'e\u0301 a\u0308\u0323 n\u0303 Z\u0351\u0362\u0315a\u0315\u0352l\u0358g\u0361o \u0301 q\u20dd',
  otherScripts: 'Ελληνικά Русский текст עברית العربية हिन्दी ไทย ქართული Հայերեն',
  unusualSpaces: 'a\u00a0b\u2003c\u3000d\u2028e\u2029f\ufeffg\u200bh\u180ei\u0085j\u000bk\u000cl\u001cm',
  controls: '\u0000\u0001\u0007\u001b[31mred\u001b[0m\u007f\u0080\u009f',
  astral: '𝐀𝐁𝐂 𝟘𝟙𝟚 𐍈 𓀀 𠜎𠜱 \u{10FFFF} \u{E0001}',
  punctuation: '!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> |||',
  specialAsText: 'before <|endoftext|> after<|endoftext|><|endoftext|> <|endoftext|',
};

t.test('parity with tiktoken r50k_base on a varied corpus', async (t) => {
  for (const [name, text] of Object.entries(CORPUS)) {
    t.same(ours(text), theirs(text), name);
  }
  const all = Object.values(CORPUS).join('\n');
  t.same(ours(all), theirs(all), 'the whole corpus as one text');
});

t.test("upper-case contractions are not contractions in GPT-2", async (t) => {
  // "'s" is one token (82) only in lower case; "'S" splits into "'" (6) and "S" (50).
  t.same(ours("it's"), [270, 338]);
  t.same(ours("IT'S"), [2043, 6, 50]);
  t.same(ours("IT'S"), theirs("IT'S"));
});

t.test('long pieces (the heap path) match the reference', async (t) => {
  // Above 64 bytes a piece merges through a heap. The reference is quadratic: keep these modest.
  for (const text of ['='.repeat(700), ' '.repeat(500) + 'x', 'ab'.repeat(300), '🙂'.repeat(120), '\u0301'.repeat(300), 'xY'.repeat(40)]) {
    t.same(ours(text), theirs(text), `${JSON.stringify(text.slice(0, 4))} x ${text.length}`);
  }
  const huge = '-'.repeat(200000);
  t.equal(tokenizer.decode(tokenizer.encode(huge, { allowSpecial: false })), huge, 'a 200k-char piece round-trips');
});

t.test('<|endoftext|> is a token only when the caller allows it', async (t) => {
  const text = 'a<|endoftext|>b <|endoftext|>';
  t.equal(tokenizer.eotToken, 50256);
  t.same(ours(text, true), Array.from(reference.encode(text, 'all')), 'allowed: the reference with all specials');
  t.same(ours(text, true), [64, 50256, 65, 220, 50256]);
  const asText = ours(text, false);
  t.notOk(asText.includes(50256), 'not allowed: never the special token');
  t.same(asText, theirs(text));
  t.equal(tokenizer.decode(asText), text, 'and it reads back as the same characters');
});

// Fragments that sit on the pre-tokenizer's boundaries, joined at random.
const fragments = fc.constantFrom(
  ' ', '  ', '\t', '\n', '\r\n', "'", "'s", "'S", "'ll", "'re", 'a', 'Z', 'é', '中', '7', '٣', '.', '!?', '$',
  '🙂', '👍🏽', '\u200d', '\u0301', '\u00a0', '\u3000', 'hello', ' world', '<|endoftext|>', 'ü', '_', '-',
  // Where JavaScript's \s and Unicode White_Space (encoder.py's, tiktoken's) part ways.
  '\ufeff', '\u0085', ' \ufeff', ' \u0085', '\u180e', '\u200b', '\u001c',
);
const mixed = fc.array(fragments, { maxLength: 40 }).map((parts) => parts.join(''));

t.test('property: parity and round trip on random Unicode', async () => {
  const check = (text: string): boolean => {
    const ids = tokenizer.encode(text, { allowSpecial: false });
    const same = Array.from(ids).join() === theirs(text).join();
    return same && tokenizer.decode(ids) === text;
  };
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 60 }), check), { numRuns: 1500 });
  fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), check), { numRuns: 800 });
  fc.assert(fc.property(mixed, check), { numRuns: 2000 });
});

t.test('property: with specials allowed, parity with the reference', async () => {
  fc.assert(
    fc.property(mixed, (text) => Array.from(tokenizer.encode(text, { allowSpecial: true })).join() === Array.from(reference.encode(text, 'all')).join()),
    { numRuns: 1000 },
  );
});

t.test("U+FEFF is not whitespace and U+0085 is, as in encoder.py's regex (GPT-2's training) and tiktoken", async (t) => {
  // Ids computed by OpenAI's encoder.py (Python `regex` 2026.5.9) with the bundled vocabulary.
  const ENCODER_PY: [string, number[]][] = [
    ['a \ufeffb', [64, 27332, 119, 123, 65]],
    [' \u0085b', [220, 126, 227, 65]],
    ['x\u0085\u0085 y', [87, 126, 227, 126, 227, 331]],
    ['\ufeff\ufeff a', [171, 119, 123, 171, 119, 123, 257]],
    ['a\u0085\nb', [64, 126, 227, 198, 65]],
  ];
  for (const [text, ids] of ENCODER_PY) {
    t.same(ours(text), ids, `encoder.py: ${JSON.stringify(text)}`);
    t.same(theirs(text), ids, `tiktoken: ${JSON.stringify(text)}`);
  }
});

t.test('lone surrogates encode as U+FFFD, as TextEncoder does', async (t) => {
  for (const text of ['a\ud800b', '\udc00', 'x\ud83d', '\ud83d\ud83d\ude42']) t.same(ours(text), theirs(text), JSON.stringify(text));
});
