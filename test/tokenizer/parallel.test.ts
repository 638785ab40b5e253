// Parallel encoding gives exactly the tokens of one tokenizer, in order, for many texts and for one text
// cut into chunks.
import t from 'tap';
import { EncoderPool, encodeParallel, loadTokenizer } from '../../lib/tokenizer';
import { cutText } from '../../lib/tokenizer/parallel';

const tokenizer = loadTokenizer();

// A text of about `chars` characters with runs of blanks, CJK, emoji and special tokens.
function sampleText(chars: number, seed: number): string {
  const parts = ['The', ' quick', '  brown', '\n\n', 'fox', "'s", ' 42', '\t', '中文', ' 🙂', '<|endoftext|>', ' \n ', 'x=1;', '   '];
  let s = '';
  let x = seed;
  while (s.length < chars) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    s += parts[x % parts.length];
  }
  return s;
}

t.test('cut points never change the tokens', async (t) => {
  const text = sampleText(20000, 1);
  const pieces = cutText(text, 500);
  t.ok(pieces.length > 10, `${pieces.length} chunks`);
  t.equal(pieces.join(''), text);
  for (const allowSpecial of [false, true]) {
    const whole = Array.from(tokenizer.encode(text, { allowSpecial }));
    const joined = pieces.flatMap((p) => Array.from(tokenizer.encode(p, { allowSpecial })));
    t.same(joined, whole, `allowSpecial ${allowSpecial}`);
  }
  t.same(cutText('nospaceatall'.repeat(100), 10), ['nospaceatall'.repeat(100)], 'no cut point: one chunk');
});

t.test('a pool encodes many texts and one big text like a single tokenizer', async (t) => {
  const pool = new EncoderPool({ threads: 2 });
  t.teardown(() => pool.close());
  const texts = [sampleText(600000, 2), '', 'short', ...Array.from({ length: 50 }, (_, i) => sampleText(200 + i * 37, i + 3))];
  for (const allowSpecial of [false, true]) {
    const progress: number[] = [];
    const results = await pool.encode(texts, { allowSpecial, onProgress: (done, total) => progress.push(done / total) });
    t.ok(progress.length > 2 && progress.every((p, i) => p > (progress[i - 1] ?? 0)) && progress[progress.length - 1] === 1, 'progress rises to 1');
    t.equal(results.length, texts.length);
    const mismatches = texts.filter((text, i) => results[i].join() !== tokenizer.encode(text, { allowSpecial }).join());
    t.equal(mismatches.length, 0, `allowSpecial ${allowSpecial}`);
  }
});

t.test('encodeParallel: one call, then the workers are gone', async (t) => {
  const [ids] = await encodeParallel(['hello <|endoftext|> world'], { allowSpecial: true, threads: 1 });
  t.same(Array.from(ids), [31373, 220, 50256, 995]);
  t.throws(() => new EncoderPool({ vocabDir: '/nonexistent' }), { message: /\/nonexistent: no GPT-2 vocabulary here/ });
});
