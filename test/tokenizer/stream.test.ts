// The stream decoder holds back a character that tokens split; the word cache stays within its bound.
import fc from 'fast-check';
import t from 'tap';
import { loadTokenizer } from '../../lib/tokenizer';

const tokenizer = loadTokenizer();

function streamed(ids: ArrayLike<number>): { chunks: string[]; rest: string } {
  const decoder = tokenizer.streamDecoder();
  const chunks = Array.from(ids, (id) => decoder.push(id));
  return { chunks, rest: decoder.end() };
}

t.test('characters split across tokens come out whole', async (t) => {
  const text = 'naïve 🧑🏿‍💻 says 你好 and 👨‍👩‍👧‍👦!';
  const ids = tokenizer.encode(text, { allowSpecial: false });
  // The test means something only if some tokens hold part of a character.
  const partial = Array.from(ids).filter((id) => tokenizer.decode([id]).includes('\ufffd')).length;
  t.ok(partial > 0, `${partial} tokens hold part of a character`);
  const { chunks, rest } = streamed(ids);
  t.notOk(chunks.some((c) => c.includes('\ufffd')), 'no replacement character mid-stream');
  t.equal(chunks.join('') + rest, text);
  t.equal(rest, '');
});

t.test('property: streaming random text never shows U+FFFD and adds up to the text', async () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (text) => {
      const { chunks, rest } = streamed(tokenizer.encode(text, { allowSpecial: false }));
      return chunks.every((c) => !c.includes('\ufffd') || text.includes('\ufffd')) && chunks.join('') + rest === text;
    }),
    { numRuns: 1000 },
  );
});

t.test('a character that never completes becomes U+FFFD at the end, as decode() gives it', async (t) => {
  const ids = Array.from(tokenizer.encode('🙂', { allowSpecial: false }));
  t.ok(ids.length > 1, 'the emoji takes several byte tokens');
  const cut = ids.slice(0, -1);
  const { chunks, rest } = streamed(cut);
  t.equal(chunks.join(''), '');
  t.equal(rest, tokenizer.decode(cut));
  t.equal(rest, '\ufffd');
});

t.test('the word cache holds at most its bound and stays correct when it overflows', async (t) => {
  const small = loadTokenizer(undefined, { maxCachedPieces: 100 });
  t.equal(small.maxCachedPieces, 100);
  // Short words, words longer than a slot's inline key (16 units), and CJK words of many tokens.
  const letters = (i: number, length: number): string => Array.from({ length }, (_, k) => String.fromCharCode(97 + ((i * 7 + k * 13 + k * k) % 26))).join('');
  const words = Array.from({ length: 1000 }, (_, i) =>
    i % 3 === 0 ? `w${i.toString(36)}x${(i * 7919).toString(36)}` : i % 3 === 1 ? letters(i, 17 + (i % 16)) : '漢字仮名交じり文'.slice(i % 5),
  );
  const text = words.join(' ');
  const ids = small.encode(text, { allowSpecial: false });
  t.ok(small.cachedPieces > 0 && small.cachedPieces <= 100, `cache holds ${small.cachedPieces} pieces`);
  t.same(ids, tokenizer.encode(text, { allowSpecial: false }), 'same tokens as with a large cache');
  t.same(small.encode(text, { allowSpecial: false }), ids, 'and again, through the refilled cache');
  t.ok(small.cachedPieces <= 100);
  t.throws(() => loadTokenizer(undefined, { maxCachedPieces: 0 }), { message: 'maxCachedPieces must be a positive integer, got 0' });
});

t.test('encode without options takes the text as a user\'s; a text that is not a string is refused', async (t) => {
  const text = 'hello <|endoftext|>';
  t.same(tokenizer.encode(text), tokenizer.encode(text, { allowSpecial: false }), '<|endoftext|> stays characters');
  t.notOk(tokenizer.encode(text).includes(tokenizer.eotToken));
  for (const [value, shown] of [[42, '42'], [undefined, 'undefined'], [['hi'], '\\["hi"\\]']] as const) {
    t.throws(() => tokenizer.encode(value as never), { name: 'TypeError', message: new RegExp(`^encode: the text must be a string, got ${shown}$`) });
  }
});
