// Loads a configured GPT-2 model for serving: its folder (model_source), weights for inference only, its
// vocabulary (or GPT-2's, shared by all models that have none), and a continuous batcher over it.
import os from 'node:os';
import { Model, type GPT2Config } from '../engine/model';
import type { ModelFolder } from '../formats/model_folder';
import { Generator } from '../generate/generate';
import { loadTokenizer, modelTokenizer, type Tokenizer } from '../tokenizer';
import { loadAddon, type WeightDType } from '../engine/native';
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

// What a model takes in memory to decode `slots` requests at once, each up to its full context: the native code's
// own plan of what it allocates (weights as the decoder keeps them, the KV cache, the decoder's scratch), and a
// 10% margin for the rest (the tokenizer, the process's own).
export function estimateModelBytes(config: GPT2Config, dtype: WeightDType, slots: number, threads = os.availableParallelism()): number {
  const plan = loadAddon().planDecodeMemory(config, dtype, slots, threads);
  return Math.ceil((plan.params + plan.kvCache + plan.activations) * 1.1);
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
      return estimateModelBytes(folder.config as GPT2Config, m.weightDtype, options.batchSlots, threads);
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
