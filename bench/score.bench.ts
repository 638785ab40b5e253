// Scoring text at GPT-2 124M's shapes (random weights, 2 threads): the log-probabilities of every token of a prompt
// (a Generator request with promptLogprobs, as /v1/completions' echo with logprobs asks for them) beside prefilling
// the same prompt for one new token, which computes the logits of its last token alone. A scored prompt is fed as
// many tokens a step as the rows of logits the backend plans (64 on the CPU, or the slots if more), with a server's
// default 8 slots and with 32. Medians of 3 runs after a warm-up, the two requests taking turns; no prefix is reused.
// Then the log-probabilities alone (native/core/backend.h token_logprobs, which the scoring step runs beside its
// forward): the time a row of GPT-2's 50,257 logits takes, with 0, 5 and 20 alternatives, over every id and under a
// tokenizer's mask of a padded vocabulary, medians of 5 calls of 256 rows each.
import { Model } from '../lib/engine/model';
import { loadAddon } from '../lib/engine/native';
import { logprobRows } from '../lib/generate/logprobs';
import { Generator, type GenerateOptions } from '../lib/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { prompt } from './decode.bench';
import { median } from './stats';

const CONFIG = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const THREADS = 2;
const RUNS = 3;

async function ms(gen: Generator, tokens: Int32Array, options: GenerateOptions): Promise<number> {
  const t0 = performance.now();
  await gen.generate(tokens, options);
  return performance.now() - t0;
}

export async function run(): Promise<void> {
  const model = Model.create(CONFIG, { seed: 1, threads: THREADS, trainable: false });
  const prefill: GenerateOptions = { maxTokens: 1, temperature: 0 };
  const scored: GenerateOptions = { ...prefill, logprobs: 1, promptLogprobs: true };
  console.log('| slots | prompt tokens | prefill | scored | scored / prefill | tokens scored a second |');
  console.log('|---|---|---|---|---|---|');
  try {
    for (const slots of [8, 32]) {
      const gen = new Generator(model, loadTokenizer(), { slots, reusePrefixes: false });
      try {
        for (const length of [128, 512]) {
          const tokens = prompt(length, length);
          await ms(gen, tokens, scored);
          const a: number[] = [];
          const b: number[] = [];
          for (let i = 0; i < RUNS; i++) {
            a.push(await ms(gen, tokens, prefill));
            b.push(await ms(gen, tokens, scored));
          }
          const [p, s] = [median(a), median(b)];
          console.log(`| ${slots} | ${length} | ${p.toFixed(0)} ms | ${s.toFixed(0)} ms | ${(s / p).toFixed(2)}x | ${((length * 1000) / s).toFixed(0)} |`);
        }
      } finally {
        await gen.close();
      }
    }
  } finally {
    model.dispose();
  }
  logprobRowTimes();
}

function logprobRowTimes(): void {
  const V = 50257, rows = 256, padded = 50304;
  let seed = 1;
  const logits = Float32Array.from({ length: rows * padded }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 20 - 10);
  const targets = Int32Array.from({ length: rows }, (_, r) => (r * 197) % V);
  const spelled = new Uint32Array(padded / 32);
  for (let id = 0; id < V; id++) spelled[id >>> 5] |= 1 << (id & 31);
  console.log('');
  console.log('| logits a row | alternatives | mask | log-probabilities of a row |');
  console.log('|---|---|---|---|');
  for (const [width, mask] of [[V, null], [padded, spelled]] as const) {
    const row = logits.subarray(0, rows * width);
    for (const top of [0, 5, 20]) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const out = logprobRows(rows, top, mask, targets);
        const t0 = performance.now();
        loadAddon().tokenLogprobs(row, out);
        times.push((performance.now() - t0) / rows);
      }
      console.log(`| ${width} | ${top} | ${mask ? `the ${V} spelled` : 'none'} | ${(median(times) * 1000).toFixed(1)} µs |`);
    }
  }
}
