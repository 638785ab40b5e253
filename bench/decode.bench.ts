// Text generation at GPT-2's four sizes (124M, 355M, 774M and 1558M shapes, random weights) on 2 threads, end to end
// through lib/generate (prefill, native sampling with top-k 40, streaming decode), with f32, f16, bf16 and q8_0
// weights: tokens/s at batch 1 and the memory bandwidth that implies (every weight is read once per token), the time
// to the first token of a 64-token prompt, at 124M the aggregate tokens/s of 8 and 32 requests decoded together, and
// the resident memory of a process that loaded a 16-bit or 8-bit model and decoded with it (bf16 at 124M only: it
// streams as many bytes as f16, and a run at 1558M takes long enough already). Beside each, when
// node-llama-cpp is installed, llama.cpp on the same weights (bench/llama_cpp.ts), after a check that it predicts
// what dixie predicts. The machine's own read bandwidth (native/tests/read_bandwidth.cpp, 2 threads), measured before
// and after, is printed too: on a shared machine it moves by the hour, and batch-1 decoding follows it.
// `npm run bench -- decode --quick` measures 124M only, `--shape 1558M` (repeatable) the shapes named, `--type q8_0`
// (repeatable) the weight types named.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GPT2Config, Model } from '../lib/engine/model';
import { WeightDType } from '../lib/engine/native';
import { Generator } from '../lib/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { GgufExport, LLAMA_CPP_PACKAGE, LlamaCppModel, dixieNextTokenProbabilities, largestDifference, loadLlamaCpp } from './llama_cpp';
import { median } from './stats';

const SHAPES: readonly (readonly [string, GPT2Config])[] = [
  ['124M', { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 }],
  ['355M', { nLayer: 24, nHead: 16, nEmbd: 1024, nCtx: 1024, vocabSize: 50257 }],
  ['774M', { nLayer: 36, nHead: 20, nEmbd: 1280, nCtx: 1024, vocabSize: 50257 }],
  ['1558M', { nLayer: 48, nHead: 25, nEmbd: 1600, nCtx: 1024, vocabSize: 50257 }],
];
const DTYPES: readonly WeightDType[] = ['f32', 'f16', 'bf16', 'q8_0'];
const LARGE_DTYPES: readonly WeightDType[] = ['f32', 'f16', 'q8_0'];
const THREADS = 2;

// `read bandwidth, 2 threads: median X GB/s, best Y GB/s` from the probe built beside the addon.
function readBandwidth(): string {
  const program = path.join(__dirname, '..', '..', 'build', 'Release', 'dixie_read_bandwidth');
  if (!fs.existsSync(program)) throw new Error(`${program} is not built: run \`npm run build:native\``);
  const out = execFileSync(program, [String(THREADS)], { encoding: 'utf8' });
  const m = /median ([\d.]+) GB\/s, best ([\d.]+) GB\/s/.exec(out);
  if (!m) throw new Error(`unexpected output from ${program}: ${out}`);
  return `${m[1]} GB/s (best ${m[2]})`;
}

// n token ids of a fixed pseudo-random sequence.
export function prompt(n: number, seed: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % 50000;
  });
}

// Bytes of weights one decode step reads: every parameter but the position embeddings (one row of them); q8_0's
// layer matrices take 34 bytes a block of 32 values, its other parameters 2 bytes.
function bytesPerToken(model: Model, dtype: WeightDType): number {
  const C = model.config.nEmbd;
  let bytes = 0;
  for (const t of model.tensors) {
    const numel = t.name === 'wpe.weight' ? C : t.numel;
    if (dtype === 'q8_0') bytes += /^h\.\d+\.(attn|mlp)\.c_\w+\.weight$/.test(t.name) ? (numel / 32) * 34 : 2 * numel;
    else bytes += numel * (dtype === 'f32' ? 4 : 2);
  }
  return bytes;
}

const SAMPLING = { temperature: 1, topK: 40, stopTokens: [] as number[] };
const PROMPT = (run: number): Int32Array => prompt(64, run + 1);
const MAX_TOKENS = 64;
const BATCH_PROMPTS = (batch: number): Int32Array[] => Array.from({ length: batch }, (_, i) => prompt(16, 100 + i));

interface Figures {
  tokensPerSecond: number;
  firstTokenMs: number;
  aggregate: Map<number, number>;  // requests decoded together -> tokens/s
}

// Medians of `runs` generations after one warm-up (first touches of the cache and scratch); at 124M the aggregates.
async function measureDixie(model: Model, runs: number, batches: readonly number[]): Promise<Figures> {
  const gen = new Generator(model, loadTokenizer(), { slots: Math.max(1, ...batches) });
  try {
    const decode: number[] = [];
    const ttft: number[] = [];
    for (let run = 0; run <= runs; run++) {
      const r = await gen.generate(PROMPT(run), { ...SAMPLING, maxTokens: MAX_TOKENS, seed: run });
      if (run === 0) continue;
      decode.push(r.timings.tokensPerSecond);
      ttft.push(r.timings.firstTokenMs);
    }
    const aggregate = new Map<number, number>();
    for (const batch of batches) {
      for (let round = 0; round < 2; round++) {  // the first round touches the cache and scratch of this many slots
        const t0 = performance.now();
        const results = await Promise.all(BATCH_PROMPTS(batch).map((p, i) => gen.generate(p, { ...SAMPLING, maxTokens: MAX_TOKENS, seed: i })));
        aggregate.set(batch, results.reduce((n, r) => n + r.tokens.length, 0) / ((performance.now() - t0) / 1000));
      }
    }
    return { tokensPerSecond: median(decode), firstTokenMs: median(ttft), aggregate };
  } finally {
    await gen.close();
  }
}

async function measureLlamaCpp(gguf: GgufExport, runs: number, batches: readonly number[]): Promise<Figures | null> {
  const llama = await LlamaCppModel.open(gguf.file, gguf.nCtx, THREADS);
  if (!llama) return null;
  try {
    const one = await llama.batchOne(PROMPT, runs, MAX_TOKENS);
    const aggregate = new Map<number, number>();
    for (const batch of batches) aggregate.set(batch, await llama.aggregate(BATCH_PROMPTS(batch), MAX_TOKENS));
    return { ...one, aggregate };
  } finally {
    await llama.close();
  }
}

// The resident memory of a fresh process that loads the model of `dir` in `dtype` for decoding and decodes 64 tokens
// after a 64-token prompt: what a server pays for keeping it.
function residentBytes(dir: string, dtype: WeightDType): number {
  const lib = path.join(__dirname, '..', 'lib');
  const script = `
    const { Model } = require(${JSON.stringify(path.join(lib, 'engine', 'model.js'))});
    const { Generator } = require(${JSON.stringify(path.join(lib, 'generate', 'index.js'))});
    const { loadTokenizer } = require(${JSON.stringify(path.join(lib, 'tokenizer', 'index.js'))});
    (async () => {
      const model = await Model.load(${JSON.stringify(dir)}, { weightDtype: ${JSON.stringify(dtype)}, trainable: false, threads: ${THREADS} });
      const gen = new Generator(model, loadTokenizer(), { slots: 1 });
      await gen.generate(Int32Array.from({ length: 64 }, (_, i) => (i * 7919) % 50000), { temperature: 1, topK: 40, maxTokens: 64, seed: 1 });
      process.stdout.write(String(process.memoryUsage().rss));
      await gen.close();
      model.dispose();
    })();`;
  return Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
}

// llama.cpp's next-token probabilities against dixie's on a small model with GPT-2's vocabulary, its final norm's
// gain raised so that the next token is not a near tie (random weights otherwise give an almost flat distribution,
// which any model would match): f32, where the two differ only in rounding, and q8_0 on the same blocks, where they
// also quantize the activations each its own way. The 16-bit files differ from f32 only in how each number is stored,
// which test/formats/gguf.test.ts checks byte for byte.
async function agreement(dtype: 'f32' | 'q8_0'): Promise<string> {
  const C = 128;
  const config = { nLayer: 2, nHead: 4, nEmbd: C, nCtx: 128, vocabSize: 50257 };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-agreement-'));
  const source = Model.create(config, { seed: 7, threads: THREADS, trainable: false });
  source.setParam('ln_f.weight', new Float32Array(C).fill(8));
  await source.save(dir);
  source.dispose();
  const model = await Model.load(dir, { weightDtype: dtype, trainable: false, threads: THREADS });
  const gguf = await GgufExport.write(model, dtype);
  const llama = await LlamaCppModel.open(gguf.file, gguf.nCtx, THREADS);
  if (!llama) throw new Error(`${LLAMA_CPP_PACKAGE} is not installed`);
  try {
    const tokens = prompt(13, 5);
    const worst = largestDifference(await llama.nextTokenProbabilities(tokens), await dixieNextTokenProbabilities(model, tokens));
    return `| llama.cpp on dixie's GGUF (${dtype}): largest difference from dixie's next-token probabilities | ${worst.toExponential(1)} | | | | | | |`;
  } finally {
    await llama.close();
    gguf.remove();
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const tps = (x: number): string => `${x.toFixed(1)} tok/s`;
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;

// The rows of one shape, printed as they are measured (a full run takes most of an hour): every weight type on the
// same random weights (a float32 model saved once, loaded in each).
async function measureShape(name: string, config: GPT2Config, live: boolean, types: readonly string[]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dixie-decode-${name}-`));
  try {
    const source = Model.create(config, { seed: 1, threads: THREADS, trainable: false });
    await source.save(dir);
    source.dispose();
    const small = name === '124M';
    const runs = small ? 3 : 2;
    for (const dtype of (small ? DTYPES : LARGE_DTYPES).filter((d) => types.length === 0 || types.includes(d))) {
      const model = await Model.load(dir, { weightDtype: dtype, trainable: false, threads: THREADS });
      let gguf: GgufExport | null = null;
      let ours: Figures;
      const batches = small && dtype !== 'bf16' ? [8, 32] : [];
      try {
        if (live) gguf = await GgufExport.write(model, dtype);
        ours = await measureDixie(model, runs, batches);
      } finally {
        model.dispose();  // before llama.cpp loads its copy: at 1558M in f32 the two would not fit side by side
      }
      const theirs = gguf ? await measureLlamaCpp(gguf, runs, batches) : null;
      gguf?.remove();
      const gbs = (bytesPerToken(model, dtype) * ours.tokensPerSecond) / 1e9;
      console.log(`| ${name} ${dtype} | ${tps(ours.tokensPerSecond)} | ${gbs.toFixed(1)} GB/s | ${theirs ? tps(theirs.tokensPerSecond) : ''} | ` +
        `${theirs ? ratio(ours.tokensPerSecond, theirs.tokensPerSecond) : ''} | ${ours.firstTokenMs.toFixed(0)} ms | ` +
        `${theirs ? `${theirs.firstTokenMs.toFixed(0)} ms` : ''} | ${theirs ? ratio(theirs.firstTokenMs, ours.firstTokenMs) : ''} |`);
      for (const batch of batches) {
        const a = ours.aggregate.get(batch) as number;
        const b = theirs?.aggregate.get(batch);
        console.log(`| ${name} ${dtype}, ${batch} requests together (16-token prompts, 64 tokens each, second round) | ${tps(a)} | | ${b ? tps(b) : ''} | ${b ? ratio(a, b) : ''} | | | |`);
      }
    }
    for (const dtype of ['f16', 'q8_0'] as const) {
      console.log(`| ${name} ${dtype}: resident memory of a process that loaded it and decoded 64 tokens | ${(residentBytes(dir, dtype) / 1e9).toFixed(2)} GB | | | | | | |`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The values given after each `flag` on the command line.
export function optionValues(flag: string): string[] {
  return process.argv.flatMap((a, i) => (a === flag ? [process.argv[i + 1]] : []));
}

// The shapes named after --shape, or 124M alone with --quick, or all.
function shapesToRun(): (readonly [string, GPT2Config])[] {
  const argv = process.argv;
  const named = optionValues('--shape');
  for (const name of named) {
    if (!SHAPES.some(([n]) => n === name)) throw new Error(`--shape ${name}: the shapes are ${SHAPES.map(([n]) => n).join(', ')}`);
  }
  if (named.length > 0) return SHAPES.filter(([n]) => named.includes(n));
  return argv.includes('--quick') ? SHAPES.slice(0, 1) : [...SHAPES];
}

export async function run(): Promise<void> {
  const shapes = shapesToRun();
  for (const type of optionValues('--type')) {
    if (!(DTYPES as readonly string[]).includes(type)) throw new Error(`--type ${type}: the weight types are ${DTYPES.join(', ')}`);
  }
  const live = (await loadLlamaCpp()) !== null;
  console.log([
    '| GPT-2 shape, weights (2 threads) | dixie decode, batch 1 | bandwidth | llama.cpp decode | dixie / llama.cpp | dixie first token (64-token prompt) | llama.cpp first token | llama.cpp / dixie |',
    '|---|---|---|---|---|---|---|---|',
  ].join('\n'));
  if (live) for (const dtype of ['f32', 'q8_0'] as const) console.log(await agreement(dtype));
  console.log(`| the machine's read bandwidth, before | | ${readBandwidth()} | | | | | |`);
  for (const [name, config] of shapes) {
    await measureShape(name, config, live, optionValues('--type'));
  }
  console.log(`| the machine's read bandwidth, after | | ${readBandwidth()} | | | | | |`);
  if (!live) console.log(`\n(\`npm install --no-save ${LLAMA_CPP_PACKAGE}@3.21.1\` adds llama.cpp measured here, on the same weights.)`);
}
