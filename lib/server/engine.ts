// Loads a configured GPT-2 model for serving: its folder (model_source), weights for inference only, its
// vocabulary (or GPT-2's, shared by all models that have none), and a continuous batcher over it.
import os from 'node:os';
import { Model } from '../engine/model';
import type { ModelFolder } from '../formats/model_folder';
import { Generator } from '../generate/generate';
import { loadTokenizer, modelTokenizer, type Tokenizer } from '../tokenizer';
import type { WeightDType } from '../engine/native';
import type { ModelConfig } from './config';
import { resolveModelSource } from './model_source';
import type { ModelLoader } from './model_registry';

export interface LoadedModel {
  generator: Generator;
  tokenizer: Tokenizer;
  nCtx: number;
  dir: string;
}

export interface EngineOptions {
  threads: number;      // 0: one per core
  batchSlots: number;
  reusePrefixes: boolean;
  warn: (message: string, fields: Record<string, unknown>) => void;
}

// What a model takes in memory: the weights, with the layer matrices in the decoder's panel layout (parts of at
// most 1024 rows by panels of 64 columns, native/cpu/decode_matmul.h) beside float32 weights or instead of them for
// 16-bit ones (8-bit ones: 34 bytes a block of 32 rows, the other parameters 2 bytes), the KV cache of every batch
// slot (keys and values, float32), the logits of a step, and the forward pass's scratch (a whole context's logits).
// The rest is small beside these and is covered by a 10% margin.
export function estimateModelBytes(config: { nLayer: number; nHead: number; nEmbd: number; nCtx: number; vocabSize: number }, dtype: WeightDType, slots: number): number {
  const { nLayer: L, nEmbd: C, nCtx: T, vocabSize: V } = config;
  const params = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
  const partRows = (rows: number): number => Math.ceil(rows / Math.ceil(rows / 1024) / 8) * 8;
  const panel = (rows: number, cols: number): number => dtype === 'q8_0'
    ? (Math.ceil(rows / 32) * 34) * Math.ceil(cols / 64) * 64
    : Math.ceil(rows / partRows(rows)) * partRows(rows) * Math.ceil(cols / 64) * 64;
  const panels = L * (panel(C, 3 * C) + panel(C, C) + panel(C, 4 * C) + panel(4 * C, C));
  const others = (params - 12 * L * C * C) * (dtype === 'f32' ? 4 : 2);
  const weights = dtype === 'f32' ? (params + panels) * 4 : others + panels * (dtype === 'q8_0' ? 1 : 2);
  const kv = 2 * L * slots * T * C * 4;
  const logits = slots * V * 4;
  const scratch = T * V * 4;
  return Math.ceil((weights + kv + logits + scratch) * 1.1);
}

let sharedTokenizer: Tokenizer | null = null;
function gpt2Tokenizer(): Tokenizer {
  sharedTokenizer ??= loadTokenizer();
  return sharedTokenizer;
}

export function gpt2Loader(models: ReadonlyMap<string, ModelConfig>, options: EngineOptions): ModelLoader<LoadedModel> {
  const threads = options.threads || os.availableParallelism();
  const configOf = (key: string): ModelConfig => {
    const m = models.get(key);
    if (!m) throw new Error(`unknown model "${key}"`);
    return m;
  };
  // The registry sizes a model just before it loads it: the folder inspected for the size is the one loaded.
  const sized = new Map<string, ModelFolder>();
  return {
    estimateBytes(key) {
      const m = configOf(key);
      const folder = resolveModelSource(m);
      sized.set(key, folder);
      return estimateModelBytes(folder.config as NonNullable<typeof folder.config>, m.weightDtype, options.batchSlots);
    },
    async load(key) {
      const m = configOf(key);
      const folder = sized.get(key) ?? resolveModelSource(m);
      sized.delete(key);
      const model = await Model.load(folder, {
        trainable: false,
        weightDtype: m.weightDtype,
        ...(m.adapter && { adapter: m.adapter }),
        threads,
        ...(m.device && { device: m.device }),
        ...(m.precision && { precision: m.precision }),
      });
      try {
        const tokenizer = modelTokenizer(folder, (message) => options.warn(message, { model: key }), gpt2Tokenizer);
        const generator = new Generator(model, tokenizer, { slots: options.batchSlots, reusePrefixes: options.reusePrefixes });
        return { generator, tokenizer, nCtx: model.config.nCtx, dir: folder.dir };
      } catch (err) {
        model.dispose();
        throw err;
      }
    },
    async unload(loaded) {
      await loaded.generator.close();
      loaded.generator.model.dispose();
    },
  };
}
