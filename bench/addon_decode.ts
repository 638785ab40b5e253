// One addon's decoding figures, measured in a process of its own so that bench/prebuilt.bench.ts can set each
// addon side by side (DIXIE_ADDON names the one this process loads): the model of the folder given, batch 1 on 2
// threads, for each weight type the median tokens/s of 32 tokens sampled after a 64-token prompt, and the median
// time to the first token (the prompt's prefill, bound by arithmetic rather than memory).
// Usage: DIXIE_ADDON=<addon> node dist/bench/addon_decode.js <model folder> <runs> <weight type>...
import { Model } from '../lib/engine/model';
import { loadAddon, type WeightDType } from '../lib/engine/native';
import { Generator } from '../lib/generate';
import { loadTokenizer } from '../lib/tokenizer';
import { median } from './stats';

export const THREADS = 2;

export interface DecodeFigures {
  tokensPerSecond: number;
  firstTokenMs: number;
}

export interface AddonFigures {
  features: string[];  // the vector units the addon was compiled for
  byDtype: Partial<Record<WeightDType, DecodeFigures>>;
}

const PROMPT = Int32Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % 50000);

async function measure(dir: string, dtype: WeightDType, runs: number): Promise<DecodeFigures> {
  const model = await Model.load(dir, { weightDtype: dtype, trainable: false, threads: THREADS });
  const generator = new Generator(model, loadTokenizer(), { slots: 1 });
  try {
    const decode: number[] = [];
    const firstToken: number[] = [];
    // Run 0 warms up: the first touches of the KV cache and scratch.
    for (let run = 0; run <= runs; run++) {
      const { timings } = await generator.generate(PROMPT, { temperature: 1, topK: 40, stopTokens: [], maxTokens: 32, seed: run });
      if (run === 0) continue;
      decode.push(timings.tokensPerSecond);
      firstToken.push(timings.firstTokenMs);
    }
    return { tokensPerSecond: median(decode), firstTokenMs: median(firstToken) };
  } finally {
    await generator.close();
    model.dispose();
  }
}

async function main(): Promise<void> {
  const [dir, runs, ...dtypes] = process.argv.slice(2);
  if (!dir || !(Number(runs) >= 1) || dtypes.length === 0) throw new Error('usage: addon_decode <model folder> <runs> <weight type>...');
  const figures: AddonFigures = { features: loadAddon().cpuFeatures(), byDtype: {} };
  for (const dtype of dtypes as WeightDType[]) figures.byDtype[dtype] = await measure(dir, dtype, Number(runs));
  process.stdout.write(JSON.stringify(figures));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`addon_decode: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
