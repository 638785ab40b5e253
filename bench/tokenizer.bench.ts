// GPT-2 BPE encoding throughput, one thread: dixie against js-tiktoken, gpt-tokenizer and tiktoken (WASM),
// all checked to give the same ids; then dixie's worker pool on 1 and on all cores.
// The corpus: 8 MB of text found on this machine, a quarter each of licence texts, changelogs, C headers
// and Python sources, in sorted path order so that every run reads the same bytes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { encode as gptTokenizerEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';
import { get_encoding } from 'tiktoken';
import { EncoderPool, loadTokenizer } from '../lib/tokenizer';

const SHARE = 2 * 1024 * 1024; // characters per kind of text
const FILE_LIMIT = 64 * 1024; // characters per file, for variety
const WARMUP = 512 * 1024;

function filesUnder(dir: string, wanted: (file: string) => boolean): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && wanted(p)) found.push(p);
    }
  };
  walk(dir);
  return found;
}

// Up to SHARE characters from the files, skipping any that is not UTF-8. U+FEFF and U+0085 are dropped:
// JavaScript's \s (js-tiktoken, gpt-tokenizer, dixie) counts U+FEFF as whitespace and U+0085 not, Rust's
// (tiktoken) the other way round, so around them the two families cannot agree.
function gather(files: string[], read: (file: string) => Buffer): string {
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let text = '';
  for (const file of files) {
    if (text.length >= SHARE) break;
    try {
      text += utf8.decode(read(file)).slice(0, FILE_LIMIT).replace(/[\ufeff\u0085]/g, '') + '\n';
    } catch {
      continue;
    }
  }
  return text.slice(0, SHARE);
}

function buildCorpus(): string {
  const licences = [
    ...filesUnder('/usr/share/common-licenses', () => true),
    ...filesUnder('/usr/share/doc', (f) => path.basename(f) === 'copyright'),
  ];
  const changelogs = filesUnder('/usr/share/doc', (f) => /changelog.*\.gz$/.test(f));
  const headers = filesUnder('/usr/include', (f) => f.endsWith('.h'));
  const pythonDir = fs.readdirSync('/usr/lib').filter((d) => /^python3\.\d+$/.test(d)).sort()[0];
  const python = pythonDir ? filesUnder(path.join('/usr/lib', pythonDir), (f) => f.endsWith('.py')) : [];
  return [
    gather(licences, (f) => fs.readFileSync(f)),
    gather(changelogs, (f) => zlib.gunzipSync(fs.readFileSync(f))),
    gather(headers, (f) => fs.readFileSync(f)),
    gather(python, (f) => fs.readFileSync(f)),
  ].join('');
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function seconds(work: () => void): number {
  const start = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function secondsAsync(work: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function run(): Promise<void> {
  const corpus = buildCorpus();
  const megabytes = Buffer.byteLength(corpus, 'utf8') / 1e6;
  console.log(`corpus: ${megabytes.toFixed(2)} MB (licences, changelogs, C headers, Python), ${os.cpus().length} cores: ${os.cpus()[0].model}\n`);

  const jsTiktoken = new Tiktoken(r50kBase);
  const wasm = get_encoding('r50k_base');
  // Every encoder treats "<|endoftext|>" as plain text here, as for text from a user. dixie starts each
  // timed run with a fresh tokenizer: its word cache does not carry over from the warm-up.
  const encoders: { name: string; encode: (text: string) => ArrayLike<number> }[] = [
    { name: 'dixie', encode: (text) => loadTokenizer().encode(text, { allowSpecial: false }) },
    { name: 'tiktoken (WASM)', encode: (text) => wasm.encode_ordinary(text) },
    { name: 'gpt-tokenizer', encode: (text) => gptTokenizerEncode(text, { disallowedSpecial: new Set() }) },
    { name: 'js-tiktoken', encode: (text) => jsTiktoken.encode(text, [], []) },
  ];

  const rows: { name: string; rate: number }[] = [];
  let expected: ArrayLike<number> | undefined;
  for (const encoder of encoders) {
    encoder.encode(corpus.slice(0, WARMUP));
    let ids: ArrayLike<number> = [];
    const time = seconds(() => {
      ids = encoder.encode(corpus);
    });
    if (expected === undefined) expected = ids;
    const at = firstDifference(ids, expected);
    if (at >= 0) throw new Error(`${encoder.name} differs from dixie at token ${at} of ${expected.length}`);
    rows.push({ name: encoder.name, rate: megabytes / time });
  }
  wasm.free();
  const tokens = (expected as ArrayLike<number>).length;
  const fastestOther = Math.max(...rows.slice(1).map((r) => r.rate));
  console.log(`All four give the same ${tokens} tokens.\n`);
  console.log('| encoder, one thread | MB/s | vs fastest other |');
  console.log('|---|---:|---:|');
  for (const row of rows) console.log(`| ${row.name} | ${row.rate.toFixed(2)} | ${(row.rate / fastestOther).toFixed(2)}x |`);

  console.log('\n| dixie EncoderPool | MB/s | speed-up |');
  console.log('|---|---:|---:|');
  let single = 0;
  for (const threads of [...new Set([1, os.availableParallelism()])]) {
    const pool = new EncoderPool({ threads });
    try {
      // Warm the workers up on text that is not in the corpus, so that their word caches start cold.
      await pool.encode([Array.from(corpus.slice(0, WARMUP)).reverse().join('')], { allowSpecial: false });
      let ids: Int32Array[] = [];
      const time = await secondsAsync(async () => {
        ids = await pool.encode([corpus], { allowSpecial: false });
      });
      if (firstDifference(ids[0], expected as ArrayLike<number>) >= 0) throw new Error(`EncoderPool(${threads}) differs from one tokenizer`);
      const rate = megabytes / time;
      if (threads === 1) single = rate;
      console.log(`| ${threads} thread${threads > 1 ? 's' : ''} | ${rate.toFixed(2)} | ${(rate / single).toFixed(2)}x |`);
    } finally {
      await pool.close();
    }
  }
}
