// Loads a configured GPT-2 model for serving: its folder (model_source), weights for inference only, its
// vocabulary (or GPT-2's, shared by all models that have none), and a continuous batcher over it. An entry with a
// LoRA adapter is its adapter added over a base that every adapter of that base shares (an entry its "base" names,
// or one hidden entry per model folder, weight type, device and precision), on the CPU as on a GPU, so that
// requests for them decode in one batch.
import os from 'node:os';
import path from 'node:path';
import { Model, safetensorsToLoad, type GPT2Config, type ServedAdapter } from '../engine/model';
import { openSafetensors } from '../formats/safetensors';
import { openGguf } from '../formats/gguf';
import { gpt2VariableMap } from '../formats/import_tf';
import { ADAPTER_WEIGHTS_FILE } from '../formats/peft';
import type { ModelFolder } from '../formats/model_folder';
import { Generator } from '../generate/generate';
import { checkVocabulary, loadTokenizer, modelTokenizer, type Tokenizer } from '../tokenizer';
import { loadAddon, type WeightDType } from '../engine/native';
import type { ModelConfig } from './config';
import { resolveModelSource } from './model_source';
import type { ModelLoader } from './model_registry';

export interface LoadedModel {
  generator: Generator;
  tokenizer: Tokenizer;
  nCtx: number;
  dir: string;
  adapter: ServedAdapter | null;  // decoded over the generator's model, which its base's entry owns
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

// What loading the model would refuse, found without reading its weights or vocabulary, so that a broken checkpoint
// (a copy cut short, a run's `latest` naming an unfinished one) fails the start, or the reload that would swap it for
// a working model, rather than every request: a weights file whose header does not open (a tensor reaching past the
// end of a truncated file), a tensor its config needs missing or of another shape, no vocabulary it can use.
export function checkModelFiles(folder: ModelFolder): void {
  if (folder.kind === 'huggingface') {
    const file = openSafetensors(folder.weights);
    try {
      const params = new Map(gpt2VariableMap(folder.config as GPT2Config).map((v) => [v.hf, v.hfShape]));
      safetensorsToLoad(file, folder.configFile ?? folder.weights, params);
    } finally {
      file.close();
    }
  } else if (folder.kind === 'gguf') {
    openGguf(folder.weights).close();
  }
  checkVocabulary(folder);
}

let sharedTokenizer: Tokenizer | null = null;
function gpt2Tokenizer(): Tokenizer {
  sharedTokenizer ??= loadTokenizer();
  return sharedTokenizer;
}

// An adapter's factors in float32, as the model keeps them, with the same margin as a model's.
function adapterBytes(dir: string): number {
  const file = openSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE));
  try {
    return Math.ceil(file.tensors.reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0) * 1.1);
  } finally {
    file.close();
  }
}

// The loader of the configured models, and the registry keys it loads: theirs, and a hidden one for each base that
// adapters share without naming an entry ("base:<folder>:<weight type>", then its device and precision where the
// entry sets them).
export function gpt2Loader(configured: readonly ModelConfig[], options: EngineOptions): ModelLoader<LoadedModel> & { readonly keys: string[]; add(m: ModelConfig): string[]; sizeOf(m: ModelConfig): number } {
  const threads = options.threads || os.availableParallelism();
  const models = new Map(configured.map((m) => [m.key, m]));
  const bases = new Map<string, string>();  // adapter entry -> the key of its base
  // The hidden base an adapter entry needs, when no entry and no other adapter has made it yet.
  const baseOf = (m: ModelConfig): string[] => {
    if (m.adapter === null) return [];
    const key = m.base ?? ['base', m.restoreFrom ?? m.modelName, m.weightDtype, m.device, m.precision].filter((part) => part !== null).join(':');
    bases.set(m.key, key);
    if (models.has(key)) return [];
    models.set(key, { ...m, key, adapter: null, base: null, where: `${m.where} (its base)` });
    return [key];
  };
  const keys = [...models.keys(), ...configured.flatMap(baseOf)];
  // A model served from now on: the registry keys it adds.
  const add = (m: ModelConfig): string[] => {
    models.set(m.key, m);
    return [m.key, ...baseOf(m)];
  };
  const configOf = (key: string): ModelConfig => {
    const m = models.get(key);
    if (!m) throw new Error(`unknown model "${key}"`);
    return m;
  };
  const folderBytes = (m: ModelConfig, folder: ModelFolder) => estimateModelBytes(folder.config as GPT2Config, m.weightDtype, options.batchSlots, threads);
  // The registry sizes a model just before it loads it: the folder inspected for the size is the one loaded.
  const sized = new Map<string, ModelFolder>();
  return {
    keys,
    add,
    // What an entry's model takes (an adapter's: its factors alone), known before it is served.
    sizeOf: (m) => (m.adapter === null ? folderBytes(m, resolveModelSource(m)) : adapterBytes(m.adapter)),
    dependsOn: (key) => bases.get(key) ?? null,
    estimateBytes(key) {
      const m = configOf(key);
      if (bases.has(key)) return adapterBytes(m.adapter as string);
      const folder = resolveModelSource(m);
      sized.set(key, folder);
      return folderBytes(m, folder);
    },
    async load(key, base) {
      const m = configOf(key);
      if (base) return { ...base, adapter: await base.generator.model.addAdapter(m.adapter as string) };
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
        return { generator, tokenizer, nCtx: model.config.nCtx, dir: folder.dir, adapter: null };
      } catch (err) {
        model.dispose();
        throw err;
      }
    },
    async unload(loaded) {
      if (loaded.adapter) return loaded.generator.model.removeAdapter(loaded.adapter);
      await loaded.generator.close();
      loaded.generator.model.dispose();
    },
  };
}
