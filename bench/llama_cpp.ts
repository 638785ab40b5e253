// llama.cpp on this machine, now, on the same weights: the decode bench exports its model with writeGguf and runs
// it through node-llama-cpp (CPU, 2 threads) with the same protocol as dixie, because on a shared VM a figure
// measured at another hour says little. node-llama-cpp is not a dependency (it brings 700 MB of prebuilt
// binaries): `npm install --no-save node-llama-cpp@3.21.1` enables this part of the bench.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { writeGguf, type GgufWeightType } from '../lib/formats/gguf';
import { loadTokenizer } from '../lib/tokenizer';
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
interface LlamaModel {
  createContext(o: { contextSize: number; threads: number; sequences?: number; lora?: string }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
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

const SAMPLING = { temperature: 1, topK: 40 };

// Up to `maxTokens` tokens sampled after `prompt`; the times of the first and the last.
async function generate(seq: LlamaSequence, prompt: Int32Array, maxTokens: number): Promise<{ n: number; first: number; last: number }> {
  let n = 0;
  let first = 0;
  for await (const token of seq.evaluate(Array.from(prompt), SAMPLING)) {
    void token;
    if (n === 0) first = performance.now();
    if (++n === maxTokens) break;
  }
  return { n, first, last: performance.now() };
}

// A dixie model written with writeGguf into a temporary folder, for llama.cpp; remove() deletes it.
export class GgufExport {
  private constructor(readonly file: string, readonly nCtx: number) {}

  static async write(model: Model, dtype: GgufWeightType): Promise<GgufExport> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-llama-cpp-'));
    const file = path.join(dir, `model-${dtype}.gguf`);
    try {
      await writeGguf(file, model, loadTokenizer().vocab, { weightType: dtype, name: 'bench' });
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return new GgufExport(file, model.config.nCtx);
  }

  remove(): void {
    fs.rmSync(path.dirname(this.file), { recursive: true, force: true });
  }
}

// A GGUF file loaded in llama.cpp (CPU only), measured the way the decode bench measures dixie: prompts given as
// token ids, tokens sampled with top-k 40.
export class LlamaCppModel {
  private constructor(private readonly model: LlamaModel, private readonly nCtx: number, private readonly threads: number) {}

  // A GGUF file of a model with context nCtx; null when node-llama-cpp is not installed.
  static async open(file: string, nCtx: number, threads: number): Promise<LlamaCppModel | null> {
    const runtime = await loadLlamaCpp();
    if (runtime === null) return null;
    return new LlamaCppModel(await runtime.loadModel({ modelPath: file, gpuLayers: 0 }), nCtx, threads);
  }

  // llama.cpp's probability of each token following `prompt`, with no sampling filter; `lora`: a LoRA adapter's
  // GGUF file applied over the model.
  async nextTokenProbabilities(prompt: Int32Array, lora?: string): Promise<Map<number, number>> {
    const context = await this.model.createContext({ contextSize: this.nCtx, threads: this.threads, ...(lora !== undefined && { lora }) });
    try {
      const steps = context.getSequence().evaluateWithMetadata(Array.from(prompt), { probabilities: true }, { temperature: 1, topK: 0, topP: 1 });
      const first = await steps.next();
      await steps.return(undefined);
      if (first.done) throw new Error('llama.cpp produced no token');
      return first.value.probabilities;
    } finally {
      await context.dispose();
    }
  }

  // Medians over `runs` generations of `maxTokens` after one warm-up, the prompts from `prompt(run)`.
  async batchOne(prompt: (run: number) => Int32Array, runs: number, maxTokens: number): Promise<LlamaCppRun> {
    const context = await this.model.createContext({ contextSize: this.nCtx, threads: this.threads });
    const tps: number[] = [];
    const ttft: number[] = [];
    try {
      for (let run = 0; run <= runs; run++) {
        const seq = context.getSequence();
        const t0 = performance.now();
        const r = await generate(seq, prompt(run), maxTokens);
        seq.dispose();
        if (run === 0) continue;
        ttft.push(r.first - t0);
        tps.push((r.n - 1) / ((r.last - r.first) / 1000));
      }
    } finally {
      await context.dispose();
    }
    return { tokensPerSecond: median(tps), firstTokenMs: median(ttft) };
  }

  // Tokens per second over all of `prompts` generated together, one sequence each (llama.cpp batches them), in a
  // second round: the first one allocates and touches what a batch of this size needs.
  async aggregate(prompts: Int32Array[], maxTokens: number): Promise<number> {
    const context = await this.model.createContext({ contextSize: this.nCtx, threads: this.threads, sequences: prompts.length });
    try {
      const sequences = prompts.map(() => context.getSequence());
      let rate = 0;
      for (let round = 0; round < 2; round++) {
        const t0 = performance.now();
        const results = await Promise.all(prompts.map((p, i) => generate(sequences[i], p, maxTokens)));
        rate = results.reduce((n, r) => n + r.n, 0) / ((performance.now() - t0) / 1000);
        for (const seq of sequences) await seq.clearHistory();
      }
      for (const seq of sequences) seq.dispose();
      return rate;
    } finally {
      await context.dispose();
    }
  }

  async close(): Promise<void> {
    await this.model.dispose();
  }
}

// dixie's probability of each token following `prompt` (the softmax of the last logits of one KV-cached forward).
export async function dixieNextTokenProbabilities(model: Model, prompt: Int32Array): Promise<Float32Array> {
  const logits = new Float32Array(model.config.vocabSize);
  await model.run(async (n) => {
    n.kvReserve(1);
    await n.kvForward(Int32Array.of(0), Int32Array.of(prompt.length), prompt, logits);
  });
  const max = logits.reduce((m, x) => Math.max(m, x), -Infinity);
  const sum = logits.reduce((s, x) => s + Math.exp(x - max), 0);
  return logits.map((x) => Math.exp(x - max) / sum);
}

// The largest difference between llama.cpp's next-token probabilities and dixie's.
export function largestDifference(llama: Map<number, number>, dixie: Float32Array): number {
  let worst = 0;
  for (const [token, p] of llama) worst = Math.max(worst, Math.abs(p - dixie[token]));
  return worst;
}
