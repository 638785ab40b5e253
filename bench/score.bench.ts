// Scoring text at GPT-2 124M's shapes (random weights, 2 threads): the log-probabilities of every token of a prompt
// (a Generator request with promptLogprobs, as /v1/completions' echo with logprobs asks for them) beside prefilling
// the same prompt for one new token, which computes the logits of its last token alone. A scored prompt is fed as
// many tokens a step as the rows of logits the backend plans (64 on the CPU, or the slots if more), with a server's
// default 8 slots and with 32. Medians of 3 runs after a warm-up, the two requests taking turns; no prefix is reused.
import { Model } from '../lib/engine/model';
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
}
