// Loading datasets safely: bin/encode never replaces what it reads, token ids are checked where they are read (token
// files, .npz) and named by file, a token file is known by its content whatever its name, a text file too big
// for a string is named, short remainders join the chunk before them, and folder walks and globs follow links.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { encodeDataset, loadDataset } from '../../lib/data/dataset';
import { datasetFiles } from '../../lib/data/files';
import { WindowSampler } from '../../lib/data/sampler';
import { TokenFile, writeTokenFile } from '../../lib/data/token_file';
import { MemoryTokens } from '../../lib/data/tokens';
import { FIXTURES, allTokens, tokenizer, tree } from './helpers';

const enc = (s: string): number[] => [...tokenizer.encode(s, { allowSpecial: true })];

t.test('bin/encode never writes over one of its inputs, nor over a file that is not a token file', async (t) => {
  const dir = tree(t, { 'victim.txt': 'precious text', 'vd/a.txt': 'a file', 'vd/b.txt': 'b file', 'notes.md': 'keep me' });
  fs.symlinkSync(path.join(dir, 'vd'), path.join(dir, 'link'));
  const victim = path.join(dir, 'victim.txt');
  await t.rejects(encodeDataset(victim, victim, { tokenizer }), /victim\.txt: the output would replace the dataset's file .*victim\.txt: write the token file elsewhere/);
  await t.rejects(encodeDataset(path.join(dir, 'vd'), path.join(dir, 'vd', 'a.txt'), { tokenizer }), /the output would replace the dataset's file .*a\.txt/);
  await t.rejects(encodeDataset(path.join(dir, 'vd'), path.join(dir, 'link', 'b.txt'), { tokenizer }), /the output would replace the dataset's file .*b\.txt/, 'through a link');
  const notes = path.join(dir, 'notes.md');
  await t.rejects(encodeDataset(victim, notes, { tokenizer }), /notes\.md: exists and is not a token file, which encoding would replace/);
  t.equal(fs.readFileSync(victim, 'utf8'), 'precious text');
  t.equal(fs.readFileSync(path.join(dir, 'vd', 'a.txt'), 'utf8'), 'a file');
  t.equal(fs.readFileSync(path.join(dir, 'vd', 'b.txt'), 'utf8'), 'b file');
  t.equal(fs.readFileSync(notes, 'utf8'), 'keep me');
  // An earlier token file is replaced, as encoding again is meant to.
  const out = path.join(dir, 'out.tokens');
  await encodeDataset(victim, out, { tokenizer });
  await encodeDataset(path.join(dir, 'vd'), out, { tokenizer, combine: 1 });
  const tf = new TokenFile(out);
  t.same(allTokens(tf), [enc('a file'), enc('b file')]);
  tf.close();
});

t.test("a token file's ids are checked against its vocabulary when it is opened, naming the file and the token", async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'bad.tokens');
  await writeTokenFile(file, tokenizer, async (sink) => {
    sink.append([1, 2, 3, 4]);
    sink.endChunk();
    sink.append([5, 6, 7]);
  });
  // Damage the sixth token (chunk 1's second) to 65535, past the 457 of the vocabulary.
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0xff, 0xff]), 0, 2, 64 + 5 * 2);
  fs.closeSync(fd);
  await t.rejects(loadDataset(file, { tokenizer }), { message: `${file}: token 5 is 65535, outside the vocabulary [0, 457)` });
  const progress: number[] = [];
  const good = path.join(dir, 'good.tokens');
  await writeTokenFile(good, tokenizer, async (sink) => sink.append([1, 2, 456]));
  const loaded = await loadDataset(good, { tokenizer, onProgress: (done) => progress.push(done) });
  t.same(allTokens(loaded.source), [[1, 2, 456]]);
  t.same(progress, [6], 'progress in bytes of tokens checked');
  loaded.source.close();
});

t.test('a token file is read as one whatever its name, .npz included', async (t) => {
  const dir = tree(t, { 'small.txt': 'hello there, a small text' });
  const out = path.join(dir, 'small.npz');
  await encodeDataset(path.join(dir, 'small.txt'), out, { tokenizer });
  const loaded = await loadDataset(out, { tokenizer });
  t.same(allTokens(loaded.source), [enc('hello there, a small text<|endoftext|>')]);
  loaded.source.close();
});

t.test('a text file too big for one string is named, with the limit and what to do', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'huge.txt');
  // One character a byte, 16 past the most characters a string holds.
  fs.writeFileSync(file, Buffer.alloc(0x1fffffe8 + 16, 'a'));
  await t.rejects(loadDataset(file, { tokenizer, onProgress: null }), {
    message: new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 537 MB, more text than one file can hold \\(a text file is read whole, into at most 536870888 characters, about 511 MB\\): split it into files under that size in a folder`),
  });
  fs.rmSync(file);
});

t.test('bad ids in an .npz are named by its file, array and element', async (t) => {
  const dir = t.testdir();
  fs.copyFileSync(path.join(FIXTURES, 'npz', 'stored.npz'), path.join(dir, 'a.npz'));
  fs.copyFileSync(path.join(FIXTURES, 'npz', 'bad-ids.npz'), path.join(dir, 'b.npz'));
  const where = `${path.join(dir, 'b.npz')}, array arr_1: token 2 is 60000, outside the vocabulary [0, 457)`;
  await t.rejects(loadDataset(dir, { tokenizer }), { message: where });
  await t.rejects(encodeDataset(dir, path.join(dir, 'mixout.tokens'), { tokenizer }), { message: where });
});

t.test('what is left at the end, shorter than --combine, joins the chunk before it; short chunks are warned of', async (t) => {
  const long = 'a long file of text here that passes combine';
  const root = tree(t, { 'few/1.txt': long, 'few/2.txt': 'bye', 'few/3.txt': 'see you', 'many/1.txt': 'x y z '.repeat(400000), 'many/2.txt': 'tail end' });
  const dir = path.join(root, 'few');
  const data = await loadDataset(dir, { tokenizer, combine: 30 });
  t.same(allTokens(data.source), [enc(`${long}<|endoftext|>bye<|endoftext|>see you<|endoftext|>`)], 'one chunk, as if encoded whole');
  const out = path.join(root, 'x.tokens');
  await encodeDataset(dir, out, { tokenizer, combine: 30 });
  const tf = new TokenFile(out);
  t.same(allTokens(tf), allTokens(data.source), 'bin/encode folds it the same way');
  tf.close();
  // Encoded in batches (serial and on the worker pool alike) the fold is the same.
  const folded = await loadDataset(path.join(root, 'many'), { tokenizer, combine: 1000, threads: 2 });
  t.equal(folded.source.chunkStarts.length - 1, 1);
  const tail = new Int32Array(enc('<|endoftext|>tail end<|endoftext|>').length);
  folded.source.read(folded.source.tokenCount - tail.length, tail);
  t.same([...tail], enc('<|endoftext|>tail end<|endoftext|>'));

  // Under --combine 0 every file is a chunk: the short ones are never drawn, and the sampler says how many.
  const apart = await loadDataset(dir, { tokenizer, combine: 0 });
  t.equal(apart.source.chunkStarts.length - 1, 3);
  const sampler = new WindowSampler(apart.source, 10);
  t.equal(sampler.shortChunks, 2);
  t.equal(sampler.shortTokens, enc('bye').length + enc('see you').length);
  t.match(sampler.shortWarning(), /^2 of the 3 chunks of .* \(\d+ of \d+ tokens\) are shorter than a window of 10 tokens and are never read: combine files into bigger chunks \(--combine\)/);
  t.equal(new WindowSampler(new MemoryTokens('m', [[1, 2, 3]], 457), 3).shortWarning(), null);
});

t.test('a trailing ** globs every file below', async (t) => {
  const dir = tree(t, { 'f/a.txt': 'a', 'f/sub/b.txt': 'b', 'f/sub/deep/c.md': 'c', 'f/.hidden': 'h', 'g.txt': 'g' });
  const below = ['f/a.txt', 'f/sub/b.txt', 'f/sub/deep/c.md'].map((f) => path.join(dir, f));
  t.same(datasetFiles(path.join(dir, 'f', '**')), below);
  t.same(datasetFiles(path.join(dir, '**')), [...below, path.join(dir, 'g.txt')]);
  const cwd = process.cwd();
  process.chdir(path.join(dir, 'f'));
  t.teardown(() => process.chdir(cwd));
  t.same(datasetFiles('**'), ['a.txt', 'sub/b.txt', 'sub/deep/c.md'], 'bare **');
});

t.test('folder walks and globs follow links to folders, stop at loops, and name a link that leads nowhere', async (t) => {
  const dir = tree(t, { 'data/a.txt': 'a', 'elsewhere/b.txt': 'b', 'elsewhere/deep/c.txt': 'c' });
  fs.symlinkSync(path.join(dir, 'elsewhere'), path.join(dir, 'data', 'linked'));
  fs.symlinkSync(path.join(dir, 'data'), path.join(dir, 'data', 'loop'));
  fs.symlinkSync(path.join(dir, 'gone.txt'), path.join(dir, 'data', 'dangling.txt'));
  const expected = ['data/a.txt', 'data/linked/b.txt', 'data/linked/deep/c.txt'].map((f) => path.join(dir, f));
  for (const spec of [path.join(dir, 'data'), path.join(dir, 'data', '**'), path.join(dir, 'data', '**', '*.txt')]) {
    const warnings: string[] = [];
    t.same(datasetFiles(spec, warnings), expected, spec);
    t.ok(warnings.includes(`${path.join(dir, 'data', 'dangling.txt')}: a symbolic link to ${JSON.stringify(path.join(dir, 'gone.txt'))}, which does not exist; skipped`), `${spec}: the dangling link named`);
    t.ok(warnings.some((w) => w.startsWith(`${path.join(dir, 'data', 'loop')}: a link to a folder it lies in`)), `${spec}: the loop named`);
  }
  const data = await loadDataset(path.join(dir, 'data'), { tokenizer, combine: 1 });
  t.same(allTokens(data.source), [enc('a'), enc('b'), enc('c')]);
  t.match(data.warnings, [/dangling\.txt: a symbolic link to .*gone\.txt", which does not exist; skipped/, /loop: a link to a folder it lies in/]);
});

t.test('bin/encode --chat_check off takes text that only looks like chat; the refusal says so', async (t) => {
  const dir = tree(t, { 'scores.txt': 'scores\n1|2|3\n0|4|5\n' });
  const encode = (args: string[]) =>
    spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'commands', 'encode.js'), path.join(dir, 'scores.txt'), path.join(dir, 'scores.tokens'), '--tokenizer', path.join(FIXTURES, 'tiny-vocab'), '--threads', '1', ...args], { encoding: 'utf8' });
  const refused = encode([]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, /scores\.txt:2: no <EOM> at the end: "1\|2\|3"/);
  t.match(refused.stderr, /if the files are not chat but text that looks like it, give --chat_check off/);
  t.notOk(fs.existsSync(path.join(dir, 'scores.tokens')));
  const taken = encode(['--chat_check', 'off']);
  t.equal(taken.status, 0, taken.stderr);
  const tf = new TokenFile(path.join(dir, 'scores.tokens'));
  t.same(allTokens(tf), [enc('scores\n1|2|3\n0|4|5\n<|endoftext|>')]);
  tf.close();
  t.match(encode(['--help']).stdout, /--chat_check +text files checked as chat logs/);
});
