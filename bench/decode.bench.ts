// Text generation at GPT-2 124M shapes with random weights on 2 threads, end to end through lib/generate
// (prefill, native sampling with top-k 40, streaming decode): tokens/s at batch 1 with f32, f16 and bf16 weights
// and the memory bandwidth that implies (every weight is read once per token: bytes of weights x tokens/s),
// time to first token for a 64-token prompt, and aggregate tokens/s for 8 and 32 requests decoded together
// (f32 and f16). The machine's own read bandwidth (native/tests/read_bandwidth.cpp, 2 threads), measured before
// and after, is printed beside them: on a shared machine it moves by the hour, and batch-1 decoding follows it.
// Beside ours: llama.cpp's figures from issue #5 (node-llama-cpp 3.21.1, CPU, 2 threads, GPT-2 124M, measured on
// a machine of this kind at another time), and, when node-llama-cpp is installed, llama.cpp measured here and now
// on the same weights (bench/llama_cpp.ts), after a check that it predicts what dixie predicts.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GPT2Config, Model } from '../lib/engine/model';
import { WeightDType } from '../lib/engine/native';
import { Generator } from '../lib/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { LLAMA_CPP_PACKAGE, LlamaCppModel, loadLlamaCpp } from './llama_cpp';
import { median } from './stats';

const GPT2_124M: GPT2Config = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const THREADS = 2;
const LLAMA_CPP_ISSUE = { f32: '50 tok/s', f16: '74 tok/s', bf16: '—', ttft: '91 ms' };

// `read bandwidth, 2 threads: median X GB/s, best Y GB/s` from the probe built beside the addon.
function readBandwidth(): string {
  const program = path.join(__dirname, '..', '..', 'build', 'Release', 'dixie_read_bandwidth');
  if (!fs.existsSync(program)) throw new Error(`${program} is not built: run \`npm run build:native\``);
  const out = execFileSync(program, [String(THREADS)], { encoding: 'utf8' });
  const m = /median ([\d.]+) GB\/s, best ([\d.]+) GB\/s/.exec(out);
  if (!m) throw new Error(`unexpected output from ${program}: ${out}`);
  return `${m[1]} GB/s (best ${m[2]})`;
}

function prompt(n: number, seed: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % 50000;
  });
}

// Bytes of weights one decode step reads: every parameter except the position embeddings (one row of them).
function bytesPerToken(model: Model, dtype: WeightDType): number {
  const C = model.config.nEmbd;
  const params = model.tensors.reduce((n, t) => n + t.numel, 0) - model.config.nCtx * C + C;
  return params * (dtype === 'f32' ? 4 : 2);
}

const SAMPLING = { temperature: 1, topK: 40, stopTokens: [] as number[] };

const PROMPT = (run: number): Int32Array => prompt(64, run + 1);
const RUNS = 3;  // after one warm-up run: first touches of the cache and scratch
const MAX_TOKENS = 64;
const BATCH_PROMPTS = (batch: number): Int32Array[] => Array.from({ length: batch }, (_, i) => prompt(16, 100 + i));

async function batchOne(dtype: WeightDType): Promise<string[]> {
  const model = Model.create(GPT2_124M, { seed: 1, threads: THREADS, trainable: false, weightDtype: dtype });
  const gen = new Generator(model, loadTokenizer(), { slots: 32 });
  const llama = await LlamaCppModel.open(model, dtype, THREADS);
  const rows: string[] = [];
  try {
    const decode: number[] = [];
    const ttft: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      const r = await gen.generate(PROMPT(run), { ...SAMPLING, maxTokens: MAX_TOKENS, seed: run });
      if (run === 0) continue;
      decode.push(r.timings.tokensPerSecond);
      ttft.push(r.timings.firstTokenMs);
    }
    const tps = median(decode);
    const gbs = (bytesPerToken(model, dtype) * tps) / 1e9;
    const here = await llama?.batchOne(PROMPT, RUNS, MAX_TOKENS);
    const hereTps = here ? `${here.tokensPerSecond.toFixed(1)} tok/s` : '';
    const hereTtft = here ? `${here.firstTokenMs.toFixed(0)} ms` : '';
    rows.push(`| decode, batch 1, ${dtype} weights | ${tps.toFixed(1)} tok/s | ${gbs.toFixed(1)} GB/s | ${hereTps} | ${LLAMA_CPP_ISSUE[dtype]} |`);
    rows.push(`| time to first token, 64-token prompt, ${dtype} weights | ${median(ttft).toFixed(0)} ms | | ${hereTtft} | ${LLAMA_CPP_ISSUE.ttft} |`);
    if (dtype === 'bf16') return rows;
    for (const batch of [8, 32]) {
      let rate = 0;
      for (let round = 0; round < 2; round++) {  // the first round touches the cache and scratch of this many slots
        const t0 = performance.now();
        const results = await Promise.all(BATCH_PROMPTS(batch).map((p, i) => gen.generate(p, { ...SAMPLING, maxTokens: MAX_TOKENS, seed: i })));
        rate = results.reduce((n, r) => n + r.tokens.length, 0) / ((performance.now() - t0) / 1000);
      }
      const hereAggregate = llama ? `${(await llama.aggregate(BATCH_PROMPTS(batch), MAX_TOKENS)).toFixed(1)} tok/s` : '';
      rows.push(`| aggregate, ${batch} requests together (16-token prompts, 64 tokens each, second round), ${dtype} weights | ${rate.toFixed(1)} tok/s | | ${hereAggregate} | |`);
    }
    return rows;
  } finally {
    await llama?.close();
    await gen.close();
    model.dispose();
  }
}

// llama.cpp's next-token probabilities against dixie's on a small model with GPT-2's vocabulary, its final norm's
// gain raised so that the next token is not a near tie (random weights otherwise give an almost flat distribution,
// which any model would match). f32 only: the 16-bit files differ only in how each number is stored, which
// test/formats/gguf.test.ts checks byte for byte.
async function agreement(): Promise<string> {
  const C = 128;
  const model = Model.create({ nLayer: 2, nHead: 4, nEmbd: C, nCtx: 128, vocabSize: 50257 }, { seed: 7, threads: THREADS });
  model.setParam('ln_f.weight', new Float32Array(C).fill(8));
  const llama = await LlamaCppModel.open(model, 'f32', THREADS);
  if (!llama) throw new Error(`${LLAMA_CPP_PACKAGE} is not installed`);
  try {
    const tokens = prompt(13, 5);
    const V = model.config.vocabSize;
    const logits = new Float32Array(tokens.length * V);
    await model.forward(tokens, null, 1, tokens.length, logits);
    const last = logits.subarray((tokens.length - 1) * V);
    const max = last.reduce((m, x) => Math.max(m, x), -Infinity);
    const sum = last.reduce((s, x) => s + Math.exp(x - max), 0);
    let worst = 0;
    for (const [token, p] of await llama.nextTokenProbabilities(tokens)) {
      worst = Math.max(worst, Math.abs(p - Math.exp(last[token] - max) / sum));
    }
    return `| llama.cpp on dixie's GGUF (f32): largest difference from dixie's next-token probabilities | | | ${worst.toExponential(1)} | |`;
  } finally {
    await llama.close();
    model.dispose();
  }
}

export async function run(): Promise<void> {
  const live = (await loadLlamaCpp()) !== null;
  const rows = [
    '| GPT-2 124M, 2 threads | dixie | bandwidth | llama.cpp, here and now, same weights | llama.cpp, issue #5 |',
    '|---|---|---|---|---|',
  ];
  if (live) rows.push(await agreement());
  rows.push(`| the machine's read bandwidth, before | | ${readBandwidth()} | | |`);
  for (const dtype of ['f32', 'f16', 'bf16'] as const) rows.push(...(await batchOne(dtype)));
  rows.push(`| the machine's read bandwidth, after | | ${readBandwidth()} | | |`);
  console.log(rows.join('\n'));
  if (!live) console.log(`\n(\`npm install --no-save ${LLAMA_CPP_PACKAGE}@3.21.1\` adds llama.cpp measured here, on the same weights.)`);
}
