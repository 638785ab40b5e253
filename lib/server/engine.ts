// Loads a configured GPT-2 model for serving: its folder (model_source), weights for inference only, its
// vocabulary (or GPT-2's, shared by all models that have none), and a continuous batcher over it. Entries that load
// the same weights (weightsKey: folder, weight type, device, precision) share one loaded model, so that it takes its
// memory once and their requests decode in one batch: an entry with a LoRA adapter is its adapter added over a base
// that every adapter of that base shares (an entry its "base" names, or one hidden entry per weights key), on the CPU
// as on a GPU; plain entries of one folder that differ only in how they serve it (audience, sanitizer, sampling) are
// each the hidden entry's model as it is, which their adapters share too. An entry alone over its weights loads them
// itself.
import os from 'node:os';
import path from 'node:path';
import { Model, safetensorsToLoad, type GPT2Config, type ServedAdapter } from '../engine/model';
import { openSafetensors, openSafetensorsWeights, type TensorEntry } from '../formats/safetensors';
import { openGguf } from '../formats/gguf';
import { gpt2VariableMap } from '../formats/import_tf';
import { ADAPTER_WEIGHTS_FILE } from '../formats/peft';
import type { ModelFolder } from '../formats/model_folder';
import { Generator } from '../generate/generate';
import { checkVocabulary, loadTokenizer, modelTokenizer, type Tokenizer } from '../tokenizer';
import { loadAddon, type WeightDType } from '../engine/native';
import type { ModelConfig } from './config';
import { resolveModelSource, weightsKey } from './model_source';
import type { ModelLoader } from './model_registry';

export interface LoadedModel {
  generator: Generator;
  tokenizer: Tokenizer;
  nCtx: number;
  dir: string;
  adapter: ServedAdapter | null;  // decoded over the generator's model
  shared: boolean;                // the generator is the model's it is loaded over, whose unload closes it
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
    const file = openSafetensorsWeights(folder.weights);
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

// An adapter's factors in float32, as the model keeps them (Model.addAdapter: each module's at the adapter's largest
// rank, lora_A's rows and lora_B's columns), with the same margin as a model's.
function adapterBytes(dir: string): number {
  const file = openSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE));
  try {
    const rankOf = (t: TensorEntry): number => (/\.lora_A\b/.test(t.name) ? t.shape[0] : t.shape[1]);
    const rank = Math.max(...file.tensors.map(rankOf));
    return Math.ceil(file.tensors.reduce((n, t) => n + 4 * (t.shape.reduce((a, b) => a * b, 1) / rankOf(t)) * rank, 0) * 1.1);
  } finally {
    file.close();
  }
}

export interface Gpt2Loader extends ModelLoader<LoadedModel> {
  readonly keys: string[];            // the registry keys at start
  add(m: ModelConfig): string[];      // a model served from now on, or under its key with another config: the registry keys it adds
  remove(key: string): void;          // a model served no more
  forgetUnshared(): string[];         // the hidden models that no entry is loaded over any more, forgotten
  sizeOf(m: ModelConfig): number;     // what an entry's model takes (an adapter's: its factors alone), known before it is served
  folderOf(key: string): string;      // the folder a model would load now (a run's newest checkpoint)
}

// The loader of the configured models, and the registry keys it loads: theirs, and a hidden one (weightsKey) for each
// model that entries share without one of them owning it: under adapters that name no entry, and under plain entries
// that share their weights.
export function gpt2Loader(configured: readonly ModelConfig[], options: EngineOptions): Gpt2Loader {
  const threads = options.threads || os.availableParallelism();
  const models = new Map(configured.map((m) => [m.key, m]));
  const dependencies = new Map<string, string>();  // entry -> the key of the model it is loaded over
  const hidden = new Set<string>();                 // the shared models that no entry's key names
  // Records the model an entry is loaded over, if any: the base entry it names, when that entry loads its weights
  // itself; else the hidden model of its weights, for an adapter and for a plain entry that shares them. Returns the
  // hidden entry to add, when no entry has made it yet.
  const dependencyOf = (m: ModelConfig): string[] => {
    if (m.adapter !== null && m.base !== null && !configOf(m.base).sharesWeights) {
      dependencies.set(m.key, m.base);
      return [];
    }
    if (m.adapter === null && !m.sharesWeights) return [];
    const key = weightsKey(m);
    dependencies.set(m.key, key);
    if (hidden.has(key)) return [];
    hidden.add(key);
    models.set(key, { ...m, key, adapter: null, base: null, sharesWeights: false, where: `${m.where} (its shared model)` });
    return [key];
  };
  const configOf = (key: string): ModelConfig => {
    const m = models.get(key);
    if (!m) throw new Error(`unknown model "${key}"`);
    return m;
  };
  const keys = [...models.keys(), ...configured.flatMap(dependencyOf)];
  const folderBytes = (m: ModelConfig, folder: ModelFolder) => estimateModelBytes(folder.config as GPT2Config, m.weightDtype, options.batchSlots, threads);
  // The registry sizes a model just before it loads it: the folder inspected for the size is the one loaded.
  const sized = new Map<string, ModelFolder>();
  return {
    keys,
    add(m) {
      models.set(m.key, m);
      dependencies.delete(m.key);
      return [m.key, ...dependencyOf(m)];
    },
    remove(key) {
      models.delete(key);
      dependencies.delete(key);
    },
    forgetUnshared() {
      const used = new Set(dependencies.values());
      const unused = [...hidden].filter((key) => !used.has(key));
      for (const key of unused) {
        hidden.delete(key);
        models.delete(key);
      }
      return unused;
    },
    sizeOf: (m) => (m.adapter === null ? folderBytes(m, resolveModelSource(m)) : adapterBytes(m.adapter)),
    folderOf: (key) => resolveModelSource(configOf(key)).dir,
    dependsOn: (key) => dependencies.get(key) ?? null,
    estimateBytes(key) {
      const m = configOf(key);
      // A plain entry loaded over a shared model takes nothing of its own.
      if (dependencies.has(key)) return m.adapter === null ? 0 : adapterBytes(m.adapter);
      const folder = resolveModelSource(m);
      sized.set(key, folder);
      return folderBytes(m, folder);
    },
    async load(key, base) {
      const m = configOf(key);
      if (base) return { ...base, adapter: m.adapter === null ? null : await base.generator.model.addAdapter(m.adapter), shared: true };
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
        return { generator, tokenizer, nCtx: model.config.nCtx, dir: folder.dir, adapter: null, shared: false };
      } catch (err) {
        model.dispose();
        throw err;
      }
    },
    async unload(loaded) {
      if (loaded.adapter) return loaded.generator.model.removeAdapter(loaded.adapter);
      if (loaded.shared) return;
      await loaded.generator.close();
      loaded.generator.model.dispose();
    },
  };
}
