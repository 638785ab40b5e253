// GPT-2 BPE encoding throughput, one thread: dixie against js-tiktoken, gpt-tokenizer and tiktoken (WASM),
// all checked to give the same ids; then dixie's worker pool on 1 worker and on one per core.
// The corpus: 8 MB of text found on this machine, a quarter each of licence texts, changelogs, C headers
// and Python sources, in sorted path order so that every run reads the same bytes.
// Warm-ups read the decoy, the corpus with each word spelled backwards: the same kinds of text run the
// same code (the JIT is warm, in every worker too), but the words are not the corpus's (word caches hold
// nothing of it). Each figure is the best of several runs, each with a fresh tokenizer, emptied cache or
// new pool; "others" is how many cores the machine's other processes kept busy during that run, so that
// a figure taken on a busy machine shows as such.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { clearMergeCache, encode as gptTokenizerEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';
import { get_encoding } from 'tiktoken';
import { EncoderPool, Tokenizer, loadTokenizer } from '../lib/tokenizer';

const SHARE = 2 * 1024 * 1024; // characters per kind of text
const FILE_LIMIT = 64 * 1024; // characters per file, for variety
const REPEATS = 3;
const POOL_REPEATS = 5; // pool runs are short, and the speed-up is the noisiest figure
const QUIET = 0.1; // cores that other processes may keep busy during a run that counts

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

function spelledBackwards(text: string): string {
  return text.replace(/\p{L}+/gu, (word) => Array.from(word).reverse().join(''));
}

// Milliseconds of CPU that all processes have used, summed over the cores.
function machineBusyMs(): number {
  return os.cpus().reduce((sum, cpu) => sum + cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq, 0);
}

interface Run {
  rate: number; // MB/s
  others: number; // cores kept busy by other processes meanwhile
}

// Times `work` on the corpus and checks its ids against `expected` (when given).
async function timedRun(megabytes: number, name: string, expected: ArrayLike<number> | undefined, work: () => Promise<ArrayLike<number>>): Promise<Run> {
  const busy = machineBusyMs();
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const ids = await work();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const ours = process.cpuUsage(cpu);
  const others = Math.max(0, (machineBusyMs() - busy) / 1e3 - (ours.user + ours.system) / 1e6) / seconds;
  const at = expected === undefined ? -1 : firstDifference(ids, expected);
  if (at >= 0) throw new Error(`${name} differs from dixie at token ${at} of ${(expected as ArrayLike<number>).length}`);
  return { rate: megabytes / seconds, others };
}

// The fastest of `repeats` runs. A run during which other processes kept more than QUIET of a core busy
// measured them as much as the code: it is done over, up to 3 x repeats runs in all.
async function bestOf(repeats: number, once: () => Promise<Run>): Promise<Run> {
  const quiet: Run[] = [];
  const all: Run[] = [];
  while (quiet.length < repeats && all.length < 3 * repeats) {
    const run = await once();
    all.push(run);
    if (run.others <= QUIET) quiet.push(run);
  }
  return (quiet.length > 0 ? quiet : all).reduce((a, b) => (b.rate > a.rate ? b : a));
}

const loadAverage = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');

export async function run(): Promise<void> {
  const corpus = buildCorpus();
  const decoy = spelledBackwards(corpus);
  const megabytes = Buffer.byteLength(corpus, 'utf8') / 1e6;
  const cores = os.availableParallelism();
  console.log(`corpus: ${megabytes.toFixed(2)} MB (licences, changelogs, C headers, Python), ${os.cpus().length} cores: ${os.cpus()[0].model}, load average ${loadAverage()}\n`);

  // The reference ids: one tokenizer's, checked against every other encoder's in every timed run.
  const vocab = loadTokenizer().vocab;
  const expected = new Tokenizer(vocab).encode(corpus, { allowSpecial: false });
  let dixie = new Tokenizer(vocab);
  const jsTiktoken = new Tiktoken(r50kBase);
  const wasm = get_encoding('r50k_base');
  // Every encoder treats "<|endoftext|>" as plain text here, as for text from a user. `fresh` runs before
  // every timed run and forgets what the encoder remembers between calls. dixie's new tokenizer reads the
  // decoy first, as a new pool's workers do below, so that one thread and one worker start alike.
  const encoders: { name: string; encode: (text: string) => ArrayLike<number>; fresh?: () => void }[] = [
    {
      name: 'dixie',
      encode: (text) => dixie.encode(text, { allowSpecial: false }),
      fresh: () => {
        dixie = new Tokenizer(vocab);
        dixie.encode(decoy, { allowSpecial: false });
      },
    },
    { name: 'tiktoken (WASM)', encode: (text) => wasm.encode_ordinary(text) },
    { name: 'gpt-tokenizer', encode: (text) => gptTokenizerEncode(text, { disallowedSpecial: new Set() }), fresh: clearMergeCache },
    { name: 'js-tiktoken', encode: (text) => jsTiktoken.encode(text, [], []) },
  ];

  const rows: { name: string; run: Run }[] = [];
  for (const encoder of encoders) {
    encoder.encode(decoy);
    const run = await bestOf(REPEATS, () => {
      encoder.fresh?.();
      return timedRun(megabytes, encoder.name, expected, async () => encoder.encode(corpus));
    });
    rows.push({ name: encoder.name, run });
  }
  wasm.free();
  const single = rows[0].run.rate;
  const fastestOther = Math.max(...rows.slice(1).map((r) => r.run.rate));
  console.log(`All four give the same ${expected.length} tokens. Best of ${REPEATS} runs each.\n`);
  console.log('| encoder, one thread | MB/s | vs fastest other | others (cores) |');
  console.log('|---|---:|---:|---:|');
  for (const { name, run } of rows) console.log(`| ${name} | ${run.rate.toFixed(2)} | ${(run.rate / fastestOther).toFixed(2)}x | ${run.others.toFixed(2)} |`);

  console.log(`\nBest of ${POOL_REPEATS} runs each, every run with a new pool:\n`);
  console.log('| dixie EncoderPool | MB/s | speed-up over 1 worker | vs dixie, one thread | others (cores) |');
  console.log('|---|---:|---:|---:|---:|');
  let oneWorker = 0;
  for (const threads of [...new Set([1, cores])]) {
    const run = await bestOf(POOL_REPEATS, async () => {
      const pool = new EncoderPool({ threads });
      try {
        await pool.encode([decoy], { allowSpecial: false });
        return await timedRun(megabytes, `EncoderPool(${threads})`, expected, async () => (await pool.encode([corpus], { allowSpecial: false }))[0]);
      } finally {
        await pool.close();
      }
    });
    if (threads === 1) oneWorker = run.rate;
    console.log(`| ${threads} worker${threads > 1 ? 's' : ''} | ${run.rate.toFixed(2)} | ${(run.rate / oneWorker).toFixed(2)}x | ${(run.rate / single).toFixed(2)}x | ${run.others.toFixed(2)} |`);
  }
  console.log(`\nload average after: ${loadAverage()}`);
}
