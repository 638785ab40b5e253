// Datasets: which files --dataset names (file, folder, glob), how text files combine into chunks, numpy's
// .npz, the token file (bin/encode) against training on the same text, ranks sharing the encoding, and the window
// sampler.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EncodingShare, encodeDataset, loadDataset } from '../../lib/data/dataset';
import { datasetFiles } from '../../lib/data/files';
import { readNpz } from '../../lib/data/npz';
import { Rng } from '../../lib/util/rng';
import { WindowSampler } from '../../lib/data/sampler';
import { TokenFile, writeTokenFile } from '../../lib/data/token_file';
import { ChunkParts, MemoryTokens } from '../../lib/data/tokens';
import { Tokenizer, loadTokenizer } from '../../lib/tokenizer';
import { FIXTURES, allTokens, tokenizer, tree } from './helpers';

t.test('--dataset names a file, a folder recursively, or a glob; files come sorted', async (t) => {
  const dir = tree(t, { 'b.txt': 'b', 'a.txt': 'a', 'sub/c.txt': 'c', 'sub/deep/d.md': 'd', '.hidden': 'x', 'sub/.git/e.txt': 'e' });
  t.same(datasetFiles(path.join(dir, 'a.txt')), [path.join(dir, 'a.txt')]);
  t.same(datasetFiles(dir), ['a.txt', 'b.txt', 'sub/c.txt', 'sub/deep/d.md'].map((f) => path.join(dir, f)));
  t.same(datasetFiles(path.join(dir, '*.txt')), ['a.txt', 'b.txt'].map((f) => path.join(dir, f)));
  t.same(datasetFiles(path.join(dir, '**/*.txt')), ['a.txt', 'b.txt', 'sub/c.txt'].map((f) => path.join(dir, f)));
  t.same(datasetFiles(path.join(dir, 'sub/*/[cd].*')), [path.join(dir, 'sub/deep/d.md')]);
  t.same(datasetFiles(path.join(dir, '?.txt')), ['a.txt', 'b.txt'].map((f) => path.join(dir, f)));
  t.throws(() => datasetFiles(path.join(dir, 'nothing.txt')), /nothing\.txt: no such file or folder/);
  t.throws(() => datasetFiles(path.join(dir, '*.csv')), /\*\.csv: the pattern matches no files/);
});

t.test('text files join with <|endoftext|> into chunks of at least --combine characters', async (t) => {
  const dir = tree(t, { '1.txt': 'hello there', '2.txt': 'good morning', '3.txt': 'a long file of text here', '4.txt': 'bye' });
  const enc = (s: string): number[] => [...tokenizer.encode(s, { allowSpecial: true })];
  // 11 + 12 chars pass 20: one chunk; the third passes alone; the last, what is left, joins it.
  const data = await loadDataset(dir, { tokenizer, combine: 20 });
  t.same(allTokens(data.source), [enc('hello there<|endoftext|>good morning'), enc('a long file of text here<|endoftext|>bye<|endoftext|>')]);
  t.equal(data.chat, null, 'plain text is not checked as chat');
  const one = await loadDataset(dir, { tokenizer, combine: 1 });
  t.equal(one.source.chunkStarts.length - 1, 4, 'combine 1: a chunk per file');
  const all = await loadDataset(dir, { tokenizer, combine: 1000 });
  t.same(allTokens(all.source), [enc('hello there<|endoftext|>good morning<|endoftext|>a long file of text here<|endoftext|>bye<|endoftext|>')]);
});

t.test("encode.py's .npz loads, stored or deflated", async (t) => {
  const a = Array.from({ length: 300 }, (_, i) => (i * 7) % 457);
  const b = [5, 6, 7, 456];
  const c = Array.from({ length: 1000 }, (_, i) => i % 400);
  for (const name of ['stored.npz', 'deflated.npz']) {
    const arrays = readNpz(path.join(FIXTURES, 'npz', name));
    t.same(arrays.map((x) => x.name), ['arr_0', 'arr_1', 'arr_2'], name);
    t.same(arrays.map((x) => [...x.data]), [a, b, c], name);
    const data = await loadDataset(path.join(FIXTURES, 'npz', name), { tokenizer });
    t.same(allTokens(data.source), [a, b, c], `${name} as a dataset: one chunk per array`);
  }
  const dir = t.testdir({ 'bad.npz': 'not a zip at all' });
  t.throws(() => readNpz(path.join(dir, 'bad.npz')), /bad\.npz: not a zip archive/);
});

t.test('a token file: round trip, positional reads, and damage detected', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'x.tokens');
  const chunks = [[1, 2, 3], [], [4, 5], [456, 0, 7, 8]];
  const header = await writeTokenFile(file, tokenizer, async (sink) => {
    for (const c of chunks) {
      sink.append(c.slice(0, 1));
      sink.append(c.slice(1));
      sink.endChunk();
    }
  });
  t.same(header, { bytesPerToken: 2, vocabSize: 457, eotToken: 456, tokenCount: 9, chunkCount: 3 });
  t.equal(fs.statSync(file).size, 64 + 9 * 2 + 4 * 8, 'header + uint16 tokens + chunk table');
  const tf = new TokenFile(file);
  t.teardown(() => tf.close());
  t.same(allTokens(tf), [[1, 2, 3], [4, 5], [456, 0, 7, 8]], 'the empty chunk is dropped');
  const mid = new Int32Array(4);
  tf.read(2, mid);
  t.same([...mid], [3, 4, 5, 456]);
  t.throws(() => tf.read(7, new Int32Array(3)), /outside \[0, 9\)/);

  const big = path.join(dir, 'big.tokens');
  await writeTokenFile(big, { vocabSize: 70000, eotToken: 69999 }, async (sink) => sink.append([69999, 65536, 1]));
  const bf = new TokenFile(big);
  t.equal(bf.header.bytesPerToken, 4, 'a vocabulary over 65536 stores uint32');
  t.same(allTokens(bf), [[69999, 65536, 1]]);
  bf.close();

  await t.rejects(writeTokenFile(path.join(dir, 'bad.tokens'), tokenizer, async (sink) => sink.append([457])), /token 0 is 457, outside the vocabulary \[0, 457\)/);
  t.notOk(fs.existsSync(path.join(dir, 'bad.tokens')), 'a failed write leaves no file');
  fs.truncateSync(file, fs.statSync(file).size - 1);
  t.throws(() => new TokenFile(file), /truncated or damaged/);
  fs.writeFileSync(file, 'DXTOKENZ'.padEnd(100, '\0'));
  t.throws(() => new TokenFile(file), /not a token file/);
});

t.test('encode -> token file trains on the same tokens as the text itself', async (t) => {
  const dir = tree(t, {
    'chat/a.train': '1|mom|Hi! <EOM>\r\n0|mom|Hi Son. | how are you? <EOM>\r\n',
    'chat/b.train': '1|sam|yo <EOM>\n0|sam|lets get tacos <EOM>\n'.repeat(50),
    'chat/c.train': '0|team|Morning all. <EOM>\n',
  });
  const text = await loadDataset(path.join(dir, 'chat'), { tokenizer, combine: 100 });
  const out = path.join(dir, 'chat.tokens');
  const result = await encodeDataset(path.join(dir, 'chat'), out, { tokenizer, combine: 100 });
  t.equal(result.tokens, text.source.tokenCount);
  t.equal(result.chat?.messages, 103);
  const encoded = await loadDataset(out, { tokenizer });
  t.same(allTokens(encoded.source), allTokens(text.source));
  t.same([...encoded.source.chunkStarts], [...text.source.chunkStarts]);
  t.equal(encoded.chat, null);
  const other = loadTokenizer();
  await t.rejects(loadDataset(out, { tokenizer: other }), /encoded with a vocabulary of 457 tokens, but the model's tokenizer has 50257/);

  fs.writeFileSync(path.join(dir, 'chat/d.train'), '2|mom|oops <EOM>\n');
  const refused = path.join(dir, 'refused.tokens');
  await t.rejects(encodeDataset(path.join(dir, 'chat'), refused, { tokenizer }), { name: 'MalformedChatError', message: /d\.train:1: flag must be 0 or 1, got "2"/ });
  t.notOk(fs.existsSync(refused), 'malformed chat: no token file');
  await t.rejects(loadDataset(path.join(dir, '**/*'), { tokenizer }), /chat\.tokens is a token file; a token file must be the whole dataset/);
});

t.test('the parallel encoder gives the same tokens as the serial one', async (t) => {
  // Over PARALLEL_MIN_CHARS of text in one batch, so the worker pool runs.
  const line = '1|mom|How are you doing, Mom? I made pancakes | and tea. <EOM>\n';
  const dir = tree(t, { 'big.train': line.repeat(20000) });
  const parallel = await loadDataset(dir, { tokenizer, threads: 2 });
  const serial = await loadDataset(dir, { tokenizer, threads: 1 });
  t.ok(parallel.source.tokenCount > 100000);
  t.same(allTokens(parallel.source), allTokens(serial.source));
});

t.test('ranks sharing a dataset each encode a part of its text, and end with the tokens one process encodes', async (t) => {
  // One file of 1.9M characters, cut into pieces, and two small ones: each rank gets some of the large one.
  const chat = path.join(FIXTURES, '..', '..', 'examples', 'chat', 'train');
  const read = (name: string): string => fs.readFileSync(path.join(chat, name), 'utf8');
  const dir = tree(t, { 'a.train': read('family.train').repeat(12), 'b.train': read('friends.train').repeat(2), 'c.train': read('work.train') });
  const chars = ['a', 'b', 'c'].reduce((sum, f) => sum + fs.readFileSync(path.join(dir, `${f}.train`), 'utf8').length, 0);
  // A tokenizer of its own whose encode counts the characters it is given; one thread: every text goes through it.
  const counting = (): { tokenizer: Tokenizer; encoded: () => number } => {
    const tk = loadTokenizer(path.join(FIXTURES, 'tiny-vocab'));
    const encode = tk.encode.bind(tk);
    let encoded = 0;
    tk.encode = (text, options) => {
      encoded += text.length;
      return encode(text, options);
    };
    return { tokenizer: tk, encoded: () => encoded };
  };
  const whole = counting();
  const alone = await loadDataset(dir, { tokenizer: whole.tokenizer, threads: 1 });
  // ~2.2M characters, and the <|endoftext|> that join them.
  t.ok(whole.encoded() >= chars, 'one process encodes all of the text');

  // Two ranks in turn: rank 1 first, keeping what it sends (its broadcasts as root); then rank 0, given those.
  const sent: Uint8Array[] = [];
  const digests: string[] = [];
  const share = (rank: number): EncodingShare => ({
    rank,
    size: 2,
    agree: (entries) => void digests.push(entries.map((e) => e.key).join(' ')),
    barrier: async () => undefined,
    broadcast: (data, root) => {
      if (rank === 1 && root === 1) sent.push(data.slice());
      if (rank === 0 && root === 1) data.set(sent.shift() as Uint8Array);
    },
  });
  const ranks = [counting(), counting()];
  await loadDataset(dir, { tokenizer: ranks[1].tokenizer, threads: 1, share: share(1) });
  const rank0 = await loadDataset(dir, { tokenizer: ranks[0].tokenizer, threads: 1, share: share(0) });
  t.same(allTokens(rank0.source), allTokens(alone.source), "rank 0's tokens, half of them rank 1's, are those one process encodes");
  t.equal(sent.length, 0, "rank 0 took each of rank 1's broadcasts");
  t.equal(ranks[0].encoded() + ranks[1].encoded(), whole.encoded(), 'the ranks encode the text once between them');
  for (const rank of [0, 1]) t.ok(ranks[rank].encoded() < 0.6 * whole.encoded(), `rank ${rank} encodes a part: ${ranks[rank].encoded()} of ${whole.encoded()} characters`);
  t.equal(digests.length, 2);
  t.equal(digests[0], digests[1], 'both ranks compare the same digest of the text they read');
});

t.test('ranks sharing the encoding of a text compare their vocabularies before they encode it', async (t) => {
  // The same text, one rank with the tiny vocabulary and one with GPT-2's: shared, the tokens would be half of each.
  const dir = tree(t, { 'a.txt': 'Some text to encode. '.repeat(100) });
  const agreed: { name: string; key: string }[][] = [];
  const share = (rank: number): EncodingShare => ({
    rank,
    size: 2,
    agree: (entries) => {
      agreed.push(entries);
      throw new Error('stop here');
    },
    barrier: async () => undefined,
    broadcast: () => undefined,
  });
  await t.rejects(loadDataset(dir, { tokenizer, threads: 1, share: share(0) }), /stop here/);
  await t.rejects(loadDataset(dir, { tokenizer: loadTokenizer(), threads: 1, share: share(1) }), /stop here/);
  t.same(agreed.map((entries) => entries.map((e) => e.name)), [['the vocabulary that encodes', 'the text of'], ['the vocabulary that encodes', 'the text of']]);
  t.not(agreed[0][0].key, agreed[1][0].key, 'the vocabularies differ');
  t.equal(agreed[0][1].key, agreed[1][1].key, 'the text is the same');
});

t.test('windows are uniform over token positions and never cross a chunk boundary', async (t) => {
  // Chunks of 3, 10 and 5 tokens; windows of 4: valid starts 0 + 7 + 2 = 9, each token a distinct value.
  const chunks = [[0, 1, 2], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [30, 31, 32, 33, 34]];
  const source = new MemoryTokens('test', chunks, 100);
  const sampler = new WindowSampler(source, 4);
  const rng = new Rng(7);
  const counts = new Map<number, number>();
  const draws = 90000;
  for (let i = 0; i < draws; i++) {
    const start = sampler.drawStart(rng);
    counts.set(start, (counts.get(start) ?? 0) + 1);
  }
  t.same([...counts.keys()].sort((a, b) => a - b), [3, 4, 5, 6, 7, 8, 9, 13, 14], 'every valid start, and only those');
  for (const [start, n] of counts) t.ok(Math.abs(n - draws / 9) < 600, `start ${start}: ${n} draws of ${draws}, expected ${draws / 9}`);

  const inputs = new Int32Array(2 * 3);
  const targets = new Int32Array(2 * 3);
  sampler.batch(new Rng(1), 2, inputs, targets);
  for (let b = 0; b < 2; b++) {
    t.same([...targets.subarray(b * 3 + 0, b * 3 + 2)], [...inputs.subarray(b * 3 + 1, b * 3 + 3)], 'targets are inputs shifted by one');
  }
  const again = new Int32Array(6);
  sampler.batch(new Rng(1), 2, again, new Int32Array(6));
  t.same([...again], [...inputs], 'the same seed draws the same batch');
  const resumed = new Rng(1);
  sampler.drawStart(resumed);
  const copy = Rng.fromState(resumed.state);
  t.equal(copy.below(1000000), resumed.below(1000000), 'an RNG restored from its state goes on identically');

  t.throws(() => new WindowSampler(source, 11), /no chunk holds 11 tokens \(the longest has 10\)/);
});

t.test('a part of every chunk is a source of its own, and windows drawn from it stay within it', async (t) => {
  // Chunks of 10, 20 and 3 tokens, chunk c's token i written 100 c + i: the last 20% (from each size x 0.8, rounded
  // down) is 2, 4 and 1 tokens.
  const chunks = [10, 20, 3].map((n, c) => Array.from({ length: n }, (_, i) => 100 * c + i));
  const source = new MemoryTokens('test', chunks, 1000);
  const held = new ChunkParts(source, 0.8, 1, 'held out');
  const rest = new ChunkParts(source, 0, 0.8, 'rest');
  const tokens = (part: ChunkParts): number[] => {
    const out = new Int32Array(part.tokenCount);
    const all: number[] = [];
    for (let c = 0; c + 1 < part.chunkStarts.length; c++) {
      const piece = out.subarray(0, part.chunkStarts[c + 1] - part.chunkStarts[c]);
      part.read(part.chunkStarts[c], piece);
      all.push(...piece);
    }
    return all;
  };
  t.same(tokens(held), [8, 9, 116, 117, 118, 119, 202]);
  t.same([...held.chunkStarts], [0, 2, 6, 7]);
  t.same(tokens(rest), [...chunks[0].slice(0, 8), ...chunks[1].slice(0, 16), ...chunks[2].slice(0, 2)]);
  t.same([...rest.chunkStarts], [0, 8, 24, 26]);
  t.throws(() => held.read(1, new Int32Array(2)), /held out: tokens \[1, 3\) are not within one part/, 'a read across two parts');
  const sampler = new WindowSampler(rest, 3);
  const window = new Int32Array(3);
  const heldTokens = new Set(tokens(held));
  const rng = new Rng(5);
  const reaching: string[] = [];
  for (let i = 0; i < 2000; i++) {
    rest.read(sampler.drawStart(rng), window);
    if (window.some((token) => heldTokens.has(token))) reaching.push(window.join(','));
  }
  t.same(reaching, [], 'no window of the rest reaches into the part held out');
  t.throws(() => new WindowSampler(held, 5), /held out: no chunk holds 5 tokens \(the longest has 4\)/);
});

t.test('text files are checked to be text: a binary file is refused, invalid UTF-8 and empty files are named', async (t) => {
  const out = t.testdir();
  const dir = path.join(out, 'data');
  fs.mkdirSync(dir);
  const write = (name: string, data: string | Buffer): string => {
    fs.writeFileSync(path.join(dir, name), data);
    return path.join(dir, name);
  };
  const chat = write('a.train', '1|mom|Hi <EOM>\n');
  const badUtf8 = write('b.train', Buffer.concat([Buffer.from('1|mom|fine <EOM>\n1|mom|caf'), Buffer.from([0xe9]), Buffer.from(' <EOM>\n'), ...Array.from({ length: 7 }, () => Buffer.from([0x31, 0x7c, 0x6d, 0x7c, 0xff, 0x0a]))]));
  const empty = write('c.train', '');
  const data = await loadDataset(dir, { tokenizer });
  t.same(data.warnings, [
    `${badUtf8}:2: invalid UTF-8 (read as U+FFFD)`,
    ...[3, 4, 5, 6].map((line) => `${badUtf8}:${line}: invalid UTF-8 (read as U+FFFD)`),
    `${badUtf8}: 3 more lines of invalid UTF-8`,
    `${empty}: empty, nothing to train on`,
  ]);
  t.ok(data.source.tokenCount > 0, 'and the dataset still loads');
  t.same((await encodeDataset(chat, path.join(out, 'a.tokens'), { tokenizer })).warnings, [], 'a clean file: no warnings');

  const binary = write('d.bin', Buffer.concat([Buffer.from('line one\nPK'), Buffer.from([3, 4, 0, 0, 9])]));
  await t.rejects(loadDataset(dir, { tokenizer }), { message: `${binary}:2: a NUL byte (at byte 13): a binary file (or UTF-16 text), not UTF-8 text; take it out of the dataset` });
  const refused = path.join(out, 'refused.tokens');
  await t.rejects(encodeDataset(dir, refused, { tokenizer }), /d\.bin:2: a NUL byte/);
  t.notOk(fs.existsSync(refused), 'no token file from a binary file');
  fs.rmSync(binary);
  const utf16 = write('e.txt', Buffer.from('\uFEFFhello', 'utf16le'));
  await t.rejects(loadDataset(utf16, { tokenizer }), { message: `${utf16}: UTF-16 text (it starts with a UTF-16 byte order mark); save it as UTF-8` });
});
