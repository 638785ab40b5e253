// Encoding progress: encodeDataset and loadDataset report bytes of text encoded as the workers finish their pieces,
// ending at the total; bin/encode and bin/train draw it on stderr.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { encodeDataset, loadDataset } from '../../lib/data/dataset';
import { loadTokenizer } from '../../lib/tokenizer';
import { TINY_VOCAB } from '../train/helpers';

const tokenizer = loadTokenizer();

// Three files of about 800 KB: enough text for the worker pool, which encodes it in pieces of 64K characters.
function dataset(t: Test): { dir: string; bytes: number } {
  const dir = t.testdir();
  let bytes = 0;
  for (let f = 0; f < 3; f++) {
    const lines = Array.from({ length: 12000 }, (_, i) => `line ${i} of file ${f}: the quick brown fox jumps over the lazy dog.`);
    const file = path.join(dir, `part${f}.txt`);
    fs.writeFileSync(file, lines.join('\n'));
    bytes += fs.statSync(file).size;
  }
  return { dir, bytes };
}

function checkCalls(t: Test, calls: [number, number][], bytes: number): void {
  t.ok(calls.length > 2, `progress reported ${calls.length} times`);
  t.ok(calls.every(([, total]) => total === bytes), 'the total is the text files\' size');
  t.ok(calls.every(([done], i) => i === 0 || done > calls[i - 1][0]), 'each report is further on');
  t.same(calls.at(-1), [bytes, bytes], 'it ends at the total');
}

t.test('encodeDataset reports its progress, to the end', async (t) => {
  const { dir, bytes } = dataset(t);
  const calls: [number, number][] = [];
  await encodeDataset(dir, path.join(dir, 'out.tokens'), { tokenizer, combine: 1000, threads: 2, onProgress: (done, total) => calls.push([done, total]) });
  checkCalls(t, calls, bytes);
});

t.test('loadDataset (bin/train) reports it the same way', async (t) => {
  const { dir, bytes } = dataset(t);
  const calls: [number, number][] = [];
  const loaded = await loadDataset(dir, { tokenizer, combine: 1000, threads: 2, onProgress: (done, total) => calls.push([done, total]) });
  loaded.source.close();
  checkCalls(t, calls, bytes);
});

t.test('bin/encode shows it on stderr', async (t) => {
  const { dir } = dataset(t);
  const encode = path.join(__dirname, '..', '..', 'bin', 'commands', 'encode.js');
  const run = spawnSync(process.execPath, [encode, dir, path.join(dir, 'out.tokens'), '--threads', '2'], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  t.match(run.stderr, /^encoding 100% \[#+\] [\d.]+ MB \/ [\d.]+ MB .*ETA 0:00$/m);
  t.match(run.stdout, /out\.tokens: [\d,]+ tokens in \d+ chunks from 3 files/);
});

// Over 32 MB of text, bin/train shows encoding progress wherever its stderr goes: a log, not only a terminal.
t.test('bin/train shows it in a log', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'big.txt');
  const paragraph = Array.from({ length: 400 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog.`).join('\n');
  fs.writeFileSync(file, Array.from({ length: Math.ceil((33 << 20) / paragraph.length) }, () => paragraph).join('\n'));
  const train = path.join(__dirname, '..', '..', 'bin', 'commands', 'train.js');
  const run = spawnSync(process.execPath, [train, '--dataset', file, '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1',
    '--n_embd', '16', '--n_ctx', '16', '--batch_size', '1', '--stop_after', '1', '--sample_every', '0', '--threads', '2'], { encoding: 'utf8', cwd: dir });
  t.equal(run.status, 0, run.stderr);
  t.match(run.stderr, /^encoding 100% \[#+\] 3\d\.\d MB \/ 3\d\.\d MB .*ETA 0:00$/m, 'the last line of encoding progress');
});
