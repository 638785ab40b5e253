// LoRA adapters served unmerged over one base (Model.addAdapter, native/cpu/served_adapters.h), at 124M's shapes
// with random weights on 2 threads: the aggregate tokens/s of 16 concurrent requests spread over 8 adapters (rank 8,
// the four matrices of every block) against 16 requests to the plain base, in the same run, alternated; and the time
// to add an adapter to a model, idle and while it decodes 16 requests. (A LoRA training step against full
// fine-tuning is `npm run bench -- train --lora`.)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GPT2Config, Model, type ServedAdapter } from '../lib/engine/model';
import { writePeftAdapter } from '../lib/formats/peft';
import { Generator } from '../lib/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { prompt } from './decode.bench';
import { median } from './stats';

const CONFIG: GPT2Config = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const THREADS = 2;
const RANK = 8;
const ADAPTERS = 8;
const REQUESTS = 16;
const PROMPT_TOKENS = 32;
const MAX_TOKENS = 48;
const ROUNDS = 3;
const MODULES: readonly [string, number, number][] = [['attn.c_attn', 1, 3], ['attn.c_proj', 1, 1], ['mlp.c_fc', 1, 4], ['mlp.c_proj', 4, 1]];

// An adapter with random factors (B too, so that it changes what the model computes), as PEFT lays it out.
async function writeAdapter(dir: string, seed: number): Promise<void> {
  let s = seed;
  const random = (n: number): Float32Array => Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.02;
  });
  const tensors: Record<string, { a: Float32Array; b: Float32Array }> = {};
  for (let layer = 0; layer < CONFIG.nLayer; layer++) {
    for (const [name, inputs, outputs] of MODULES) tensors[`h.${layer}.${name}`] = { a: random(RANK * inputs * CONFIG.nEmbd), b: random(outputs * CONFIG.nEmbd * RANK) };
  }
  await writePeftAdapter(dir, { baseModel: null, r: RANK, alpha: 2 * RANK, targets: MODULES.map(([name]) => name), tensors });
}

// Tokens/s of REQUESTS requests submitted at once, request i with adapters[i % n] (none when the list is empty).
async function aggregate(generator: Generator, adapters: readonly ServedAdapter[]): Promise<number> {
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => generator.generate(prompt(PROMPT_TOKENS, i + 1), {
    maxTokens: MAX_TOKENS, temperature: 1, topK: 40, stopTokens: [], seed: i, adapter: adapters.length > 0 ? adapters[i % adapters.length] : undefined,
  })));
  return results.reduce((n, r) => n + r.tokens.length, 0) / ((performance.now() - started) / 1000);
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-lora-bench-'));
  const model = Model.create(CONFIG, { seed: 1, threads: THREADS, trainable: false });
  const generator = new Generator(model, loadTokenizer(), { slots: REQUESTS });
  try {
    const folders = await Promise.all(Array.from({ length: ADAPTERS }, async (_, a) => {
      const folder = path.join(dir, `adapter-${a}`);
      await writeAdapter(folder, 1000 + a);
      return folder;
    }));
    const addIdle: number[] = [];
    const adapters: ServedAdapter[] = [];
    for (const folder of folders) {
      const started = performance.now();
      adapters.push(await model.addAdapter(folder));
      addIdle.push(performance.now() - started);
    }
    await aggregate(generator, []);  // warm-up: the first touches of the cache and scratch
    const plain: number[] = [];
    const mixed: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      plain.push(await aggregate(generator, []));
      mixed.push(await aggregate(generator, adapters));
    }
    // Adding while 16 requests decode waits for the step in progress (the model's calls never overlap).
    const busy = aggregate(generator, []);
    const addBusy: number[] = [];
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const started = performance.now();
      const extra = await model.addAdapter(folders[i]);
      addBusy.push(performance.now() - started);
      await model.removeAdapter(extra);
    }
    await busy;
    const p = median(plain);
    const m = median(mixed);
    console.log(`124M shapes, random weights, ${THREADS} threads; ${REQUESTS} requests of ${PROMPT_TOKENS} prompt tokens and ${MAX_TOKENS} generated, decoded together; median of ${ROUNDS} rounds, alternated\n`);
    console.log('| requests | tokens/s | vs plain |');
    console.log('|---|---:|---:|');
    console.log(`| ${REQUESTS} to the plain base | ${p.toFixed(1)} | 100% |`);
    console.log(`| ${REQUESTS} over ${ADAPTERS} adapters of it (rank ${RANK}, 4 matrices a block) | ${m.toFixed(1)} | ${((100 * m) / p).toFixed(0)}% (goal >= 80%) |`);
    console.log(`\nadding an adapter (${(adapters[0].bytes / 2 ** 20).toFixed(1)} MiB of factors, read from its folder and checked): idle ${median(addIdle).toFixed(1)} ms, while ${REQUESTS} requests decode ${median(addBusy).toFixed(1)} ms (medians)`);
  } finally {
    await generator.close();
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
