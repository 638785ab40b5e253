// llama.cpp on this machine, now, on the same weights: the decode bench exports its model with writeGguf and runs
// it through node-llama-cpp (CPU, 2 threads) with the same protocol as dixie, because on a shared VM a figure
// measured at another hour says little. node-llama-cpp is not a dependency (it brings 700 MB of prebuilt
// binaries): `npm install --no-save node-llama-cpp@3.21.1` enables this part of the bench.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { writeGguf, type GgufWeightType } from '../lib/formats/gguf';
import { bundledVocabularyDir, locateVocabulary } from '../lib/tokenizer/vocab';
import { median } from './stats';

// The part of node-llama-cpp's API used here.
interface LlamaSequence {
  evaluate(tokens: number[], options: { temperature: number; topK: number }): AsyncGenerator<number>;
  evaluateWithMetadata(tokens: number[], metadata: { probabilities: true }, options: { temperature: number; topK: number; topP: number }):
    AsyncGenerator<{ probabilities: Map<number, number> }>;
  clearHistory(): Promise<void>;
  dispose(): void;
}
interface LlamaContext { getSequence(): LlamaSequence; dispose(): Promise<void> }
interface LlamaModel { createContext(o: { contextSize: number; threads: number }): Promise<LlamaContext>; dispose(): Promise<void> }
interface Llama { loadModel(o: { modelPath: string; gpuLayers: number }): Promise<LlamaModel> }
interface LlamaCppModule { getLlama(o: { gpu: false; build: 'never'; logLevel: 'error' }): Promise<Llama> }

export const LLAMA_CPP_PACKAGE = 'node-llama-cpp';

let llama: Promise<Llama | null> | undefined;

// null when node-llama-cpp is not installed.
export function loadLlamaCpp(): Promise<Llama | null> {
  llama ??= (async () => {
    const specifier = LLAMA_CPP_PACKAGE;  // a variable: TypeScript must not look for its types
    try {
      const mod = (await import(specifier)) as LlamaCppModule;
      return await mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') return null;
      throw err;
    }
  })();
  return llama;
}

export interface LlamaCppRun {
  tokensPerSecond: number;
  firstTokenMs: number;
}

// Medians over `runs` generations after one warm-up, each a `prompt(run)` of 64 tokens then 64 tokens sampled
// with top-k 40: what the decode bench does with dixie.
export async function llamaCppDecode(model: Model, dtype: GgufWeightType, prompt: (run: number) => Int32Array, runs: number,
  threads: number): Promise<LlamaCppRun | null> {
  const runtime = await loadLlamaCpp();
  if (runtime === null) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-llama-cpp-'));
  try {
    const file = path.join(dir, `model-${dtype}.gguf`);
    await writeGguf(file, model, locateVocabulary(bundledVocabularyDir()), { weightType: dtype, name: 'bench' });
    const lm = await runtime.loadModel({ modelPath: file, gpuLayers: 0 });
    const context = await lm.createContext({ contextSize: model.config.nCtx, threads });
    const tps: number[] = [];
    const ttft: number[] = [];
    for (let run = 0; run <= runs; run++) {
      const seq = context.getSequence();
      const t0 = performance.now();
      let tFirst = 0;
      let n = 0;
      for await (const token of seq.evaluate(Array.from(prompt(run)), { temperature: 1, topK: 40 })) {
        void token;
        if (n === 0) tFirst = performance.now();
        if (++n === 64) break;
      }
      const t1 = performance.now();
      await seq.clearHistory();
      seq.dispose();
      if (run === 0) continue;
      ttft.push(tFirst - t0);
      tps.push((n - 1) / ((t1 - tFirst) / 1000));
    }
    await context.dispose();
    await lm.dispose();
    return { tokensPerSecond: median(tps), firstTokenMs: median(ttft) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The largest difference between llama.cpp's next-token probabilities on the f32 GGUF that writeGguf made and
// dixie's own, after a prompt: the evidence that both run the same model (the 16-bit files differ only in how
// each number is stored, which test/formats/gguf.test.ts checks byte for byte). `model` must be trainable (it
// runs a plain forward).
export async function llamaCppAgreement(model: Model, prompt: Int32Array): Promise<number | null> {
  const runtime = await loadLlamaCpp();
  if (runtime === null) return null;
  const V = model.config.vocabSize;
  const T = prompt.length;
  const logits = new Float32Array(T * V);
  await model.forward(prompt, null, 1, T, logits);
  const last = logits.subarray((T - 1) * V);
  const max = last.reduce((m, x) => Math.max(m, x), -Infinity);
  const sum = last.reduce((s, x) => s + Math.exp(x - max), 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-llama-cpp-'));
  try {
    const file = path.join(dir, 'model-f32.gguf');
    await writeGguf(file, model, locateVocabulary(bundledVocabularyDir()), { weightType: 'f32', name: 'check' });
    const lm = await runtime.loadModel({ modelPath: file, gpuLayers: 0 });
    const context = await lm.createContext({ contextSize: model.config.nCtx, threads: 2 });
    const seq = context.getSequence();
    const steps = seq.evaluateWithMetadata(Array.from(prompt), { probabilities: true }, { temperature: 1, topK: 0, topP: 1 });
    const first = await steps.next();
    await steps.return(undefined);
    if (first.done) throw new Error('llama.cpp produced no token');
    let worst = 0;
    for (const [token, p] of first.value.probabilities) worst = Math.max(worst, Math.abs(p - Math.exp(last[token] - max) / sum));
    seq.dispose();
    await context.dispose();
    await lm.dispose();
    return worst;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
