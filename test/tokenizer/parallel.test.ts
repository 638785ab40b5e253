// Parallel encoding gives exactly the tokens of one tokenizer, in order, for many texts and for one text
// cut into chunks anywhere cutting is allowed: inside runs of blanks and newlines, next to multi-byte and
// astral characters, around special tokens.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { EncoderPool, encodeParallel, loadTokenizer } from '../../lib/tokenizer';
import { cutText, dealLanes, takeJob } from '../../lib/tokenizer/parallel';
import { Rng } from '../../lib/util/rng';

const tokenizer = loadTokenizer();

const PARTS = [
  'The', ' quick', '  brown', 'fox', "'s", "'ll", ' 42', '3.14', 'x=1;', '<|endoftext|>', '<|endoftext',
  ' ', '   ', '\n', '\n\n', '\n\n\n', ' \n ', '\t', '\t\t', '\r\n', ' \u00a0', '\u00a0', '\u3000', '\u2003 ', '\u2028',
  'é', 'naïve', ' Straße', '中文', ' 漢字かな', '한국어', ' 🙂', '👨‍👩‍👧', '𝐀𝐁', ' 𠜎', '\u0301', '\ufeff', '\u0085',
];

// About `chars` characters of PARTS in a seeded random order.
function sampleText(chars: number, seed: number): string {
  const rng = new Rng(seed);
  let s = '';
  while (s.length < chars) s += PARTS[rng.nextU32() % PARTS.length];
  return s;
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

t.test('cut points never change the tokens', async (t) => {
  const text = sampleText(20000, 1);
  for (const size of [1, 2, 3, 7, 64, 500]) {
    const pieces = cutText(text, size);
    t.ok(pieces.length > 20, `size ${size}: ${pieces.length} chunks`);
    t.equal(pieces.join(''), text, `size ${size}: the chunks make up the text`);
    for (const allowSpecial of [false, true]) {
      const whole = tokenizer.encode(text, { allowSpecial });
      const joined = pieces.flatMap((p) => Array.from(tokenizer.encode(p, { allowSpecial })));
      t.ok(same(joined, whole), `size ${size}, allowSpecial ${allowSpecial}`);
    }
  }
  t.same(cutText('nospaceatall'.repeat(100), 10), ['nospaceatall'.repeat(100)], 'no cut point: one chunk');
  // Inside a run of blanks is no cut point: the last blank of the run belongs to the next word.
  t.same(cutText('ab     cd   ef', 1), ['ab', '     cd', '   ef']);
});

t.test('lanes: every job is taken once, each worker in contiguous runs, the dry ones stealing', async (t) => {
  const rng = new Rng(7);
  for (const [jobCount, workers] of [[1, 3], [2, 2], [10, 1], [37, 4], [200, 7]]) {
    const jobs = Array.from({ length: jobCount }, () => ({ chars: 1 + (rng.nextU32() % 100) }));
    const lanes = dealLanes(jobs, workers);
    t.equal(lanes.length, workers);
    t.same(lanes.flatMap((l) => Array.from({ length: l.end - l.next }, (_, i) => l.next + i)), jobs.map((_, i) => i), `${jobCount} jobs on ${workers}: dealt in order`);
    const taken: number[][] = Array.from({ length: workers }, () => []);
    const active = new Set(taken.keys());
    while (active.size > 0) {
      const w = [...active][rng.nextU32() % active.size];
      const j = takeJob(lanes, w);
      if (j < 0) active.delete(w);
      else taken[w].push(j);
    }
    t.same(taken.flat().sort((a, b) => a - b), jobs.map((_, i) => i), `${jobCount} jobs on ${workers}: each taken once`);
  }
  const lanes = dealLanes(Array.from({ length: 12 }, () => ({ chars: 10 })), 3);
  t.same(lanes, [{ next: 0, end: 4 }, { next: 4, end: 8 }, { next: 8, end: 12 }], 'equal shares of the characters');
  const alone: number[] = [];
  for (let j = takeJob(lanes, 0); j >= 0; j = takeJob(lanes, 0)) alone.push(j);
  // Its own lane, then each time the back half of the longest lane (the first of equals).
  t.same(alone, [0, 1, 2, 3, 6, 7, 10, 11, 5, 9, 4, 8], 'a lone worker steals back halves');
  t.same(dealLanes([{ chars: 5 }, { chars: 1000 }, { chars: 5 }], 2), [{ next: 0, end: 1 }, { next: 1, end: 3 }], 'a job goes to the lane its middle falls in');
});

t.test('a pool encodes many texts and one big text like a single tokenizer', async (t) => {
  const pool = new EncoderPool({ threads: 2, chunkChars: 300 });
  t.teardown(() => pool.close());
  const texts = [sampleText(200000, 2), '', 'short', ...Array.from({ length: 50 }, (_, i) => sampleText(20 + i * 37, i + 3)), ' \n\n  '];
  for (const allowSpecial of [false, true]) {
    const progress: number[] = [];
    const results = await pool.encode(texts, { allowSpecial, onProgress: (done, total) => progress.push(done / total) });
    t.ok(progress.length > 2 && progress.every((p, i) => p > (progress[i - 1] ?? 0)) && progress[progress.length - 1] === 1, 'progress rises to 1');
    t.equal(results.length, texts.length);
    const mismatches = texts.filter((text, i) => !same(results[i], tokenizer.encode(text, { allowSpecial })));
    t.equal(mismatches.length, 0, `allowSpecial ${allowSpecial}`);
  }
});

t.test("one pool encodes with each call's vocabulary, and with its own by default, and refuses a folder whose vocabulary is another now", async (t) => {
  const pool = new EncoderPool({ threads: 2, chunkChars: 300 });
  t.teardown(() => pool.close());
  const toyDir = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tokenizer', 'toy');
  const toy = loadTokenizer(toyDir);
  const text = sampleText(3000, 11);
  const [toyIds, gpt2Ids] = await Promise.all([pool.encode([text], { allowSpecial: true, vocabulary: { dir: toyDir, fingerprint: toy.vocab.fingerprint } }), pool.encode([text], { allowSpecial: true })]);
  t.ok(same(toyIds[0], toy.encode(text, { allowSpecial: true })), 'the toy vocabulary');
  t.ok(same(gpt2Ids[0], tokenizer.encode(text, { allowSpecial: true })), "the pool's own");
  t.notOk(same(toyIds[0], gpt2Ids[0]), 'which differ');
  await t.rejects(pool.encode([text], { allowSpecial: false, vocabulary: { dir: '/nonexistent', fingerprint: 'a vocabulary not met yet' } }), { message: /\/nonexistent: no GPT-2 vocabulary here/ });
  // A folder whose files are no longer those of the vocabulary asked for (overwritten since the model loaded).
  await t.rejects(pool.encode([text], { allowSpecial: false, vocabulary: { dir: toyDir, fingerprint: tokenizer.vocab.fingerprint } }), { message: `${toyDir}: its vocabulary changed since the model was loaded` });
});

t.test('more workers than jobs, and the default chunk size', async (t) => {
  const text = sampleText(100000, 9);
  for (const [threads, chunkChars] of [[3, 1000000], [3, undefined]]) {
    const [ids] = await encodeParallel([text], { allowSpecial: true, threads, chunkChars });
    t.ok(same(ids, tokenizer.encode(text, { allowSpecial: true })), `${threads} workers, chunks of ${chunkChars ?? 'default'}`);
  }
});

t.test('encodeParallel: one call, then the workers are gone; bad options are refused', async (t) => {
  const [ids] = await encodeParallel(['hello <|endoftext|> world'], { allowSpecial: true, threads: 1 });
  t.same(Array.from(ids), [31373, 220, 50256, 995]);
  t.throws(() => new EncoderPool({ vocabDir: '/nonexistent' }), { message: /\/nonexistent: no GPT-2 vocabulary here/ });
  t.throws(() => new EncoderPool({ threads: 0 }), { message: /threads must be a positive integer, got 0/ });
  t.throws(() => new EncoderPool({ chunkChars: 1.5 }), { message: /chunkChars must be a positive integer, got 1.5/ });
});

t.test('a script that uses a pool and never closes it ends once its work is done', async (t) => {
  // Two encodes, the second after the first has left the workers idle: the process waits for each, then exits.
  const script = `
    const { EncoderPool } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib', 'tokenizer'))});
    const pool = new EncoderPool({ threads: 2 });
    pool.encode(['hello world'], { allowSpecial: false }).then(([a]) => {
      console.log(a.length);
      setTimeout(() => pool.encode(['hello there world'], { allowSpecial: false }).then(([b]) => console.log(b.length)), 10);
    });`;
  // The limit only keeps a hanging child from hanging the test.
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.equal(run.signal, null, 'exited by itself');
  t.equal(run.status, 0, run.stderr);
  t.equal(run.stdout, '2\n3\n', 'both results came before it exited');
});
