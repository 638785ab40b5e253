// Which config `bin/serve` runs: --config FILE; --model DIR or NAME (one model, no file); otherwise server_config.json
// in the current folder if there is one, else every model found in checkpoint/ and models/.
import fs from 'node:fs';
import path from 'node:path';
import { readGenerationConfig } from '../formats/generation_config';
import { type ModelFolder, inspectModelFolder } from '../formats/model_folder';
import { ADAPTER_CONFIG_FILE, readPeftAdapter } from '../formats/peft';
import { servedRank } from '../engine/model';
import { isPath, modelsDir, resolveModel } from '../formats/resolve_model';
import { FINE_TUNING_DEFAULTS, loadServerConfig, validateServerConfig, type ServeFlags, type ServerConfig } from './config';
import { BEST_FILE, LATEST_FILE, bestCheckpoint, checkpointFolder } from '../train/checkpoint';

export const CONFIG_FILE = 'server_config.json';

const NO_MODELS_HELP = [
  'There is no model to serve: no server_config.json here, and no model in models/ or checkpoint/.',
  'Get one:',
  '  bin/download-model 124M              GPT-2 small from OpenAI (500 MB), then `bin/serve`',
  '  or fine-tune the quick-start chat model (README: "Quick start"); its runs land in checkpoint/',
  'Or point at a model folder: `bin/serve --model DIR`, or write server_config.json (lib/server/README.md).',
].join('\n');

export class NoModelsError extends Error {
  constructor() {
    super(NO_MODELS_HELP);
    this.name = 'NoModelsError';
  }
}

export interface ServeSource {
  config?: string;                 // --config
  model?: string;                  // --model
  key?: string;                    // --key, for --model
  sanitizer?: string;              // --sanitizer, for --model
  audience?: string;               // --audience, for --model or every model found
  systemMessages?: string;         // --system_messages, likewise
  fineTuning?: string;             // --fine_tuning: the fine-tuning folder, over a config file's
  flags?: ServeFlags;               // --threads, --batch_slots, --memory_budget_mb: over whatever config is served
  cwd: string;
}

function isModel(dir: string): boolean {
  try {
    const kind = inspectModelFolder(dir).kind;
    return kind === 'huggingface' || kind === 'gguf';
  } catch {
    return false;
  }
}

function keyFor(name: string, taken: Set<string>): string {
  let key = name.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 60) || 'model';
  for (let i = 2; taken.has(key); i++) key = `${key.replace(/-\d+$/, '')}-${i}`;
  taken.add(key);
  return key;
}

// The models under checkpoint/ (training runs with a `latest` pointer, or model folders) and models/ (Hugging
// Face folders), as config entries: the runs first, since a model trained here is the likelier one to talk to
// (and the first is the default of a request that names none). A run that held data out is served at its `best`
// checkpoint, the one of its lowest validation loss, as bin/import-chat's suggested run and the README name it:
// its latest may have overfit. A LoRA run is served as its adapter over its base (adapterOverBase).
// An entry that cannot be looked at (a symlink loop, a dangling link, no permission) is skipped with a warning naming
// it: one broken entry does not keep the server from serving the others.
export function discoverModels(cwd: string, warn: (message: string) => void = (message) => console.warn(`warning: ${message}`)): Record<string, unknown>[] {
  const found: Record<string, unknown>[] = [];
  const taken = new Set<string>();
  const scan = (root: string, isRun: (dir: string) => boolean) => {
    if (!fs.existsSync(root)) return;
    for (const name of fs.readdirSync(root).sort()) {
      const dir = path.join(root, name);
      let isDirectory: boolean;
      try {
        isDirectory = fs.statSync(dir).isDirectory();
      } catch (err) {
        warn(`${dir}: skipped: ${(err as Error).message}`);
        continue;
      }
      if (!isDirectory || !isRun(dir)) continue;
      const served = bestCheckpoint(dir) === null ? dir : path.join(dir, BEST_FILE);
      const weights = fs.existsSync(path.join(checkpointFolder(served), ADAPTER_CONFIG_FILE)) ? adapterOverBase(served, warn) : { restore_from: served };
      if (weights !== null && readsGenerationConfig(weights.restore_from, warn)) found.push({ key: keyFor(name, taken), ...weights });
    }
  };
  scan(path.resolve(cwd, 'checkpoint'), (dir) => fs.existsSync(path.join(dir, LATEST_FILE)) || isModel(dir));
  scan(path.resolve(cwd, modelsDir()), isModel);
  return found;
}

// A LoRA run (bin/train --lora_rank) as an entry of its adapter over the base model its adapter_config.json names
// (base_model_name_or_path: the folder it was trained over), resolved as every command resolves a model. An adapter
// that cannot be read, or whose base is not here (moved, deleted, a hub name never downloaded), is skipped with a
// warning naming it and why (null): the config's reading of it would stop the start.
function adapterOverBase(served: string, warn: (message: string) => void): { adapter: string; restore_from: string } | null {
  let base: string | null;
  try {
    const adapter = readPeftAdapter(checkpointFolder(served));
    servedRank(adapter);
    base = adapter.config.baseModel;
  } catch (err) {
    warn(`${served}: skipped: ${(err as Error).message}`);
    return null;
  }
  if (base === null) {
    warn(`${served}: skipped: a LoRA adapter whose ${ADAPTER_CONFIG_FILE} names no base model (base_model_name_or_path); serve it with a server_config.json entry naming its "base" (docs/lora.md)`);
    return null;
  }
  try {
    return { adapter: served, restore_from: resolveModel(base).dir };
  } catch (err) {
    warn(`${served}: skipped: a LoRA adapter over ${base}, which cannot be loaded: ${(err as Error).message}`);
    return null;
  }
}

// Whether the generation_config.json of the model at `dir` reads, which the config does for the entry's sampling
// defaults; where it does not (a field of the wrong kind or range) the model is skipped with a warning naming the file
// and field, rather than keeping the others from being served. A folder that cannot be resolved now (a run without a
// checkpoint yet) is left to the config's check of the entry, which says why.
function readsGenerationConfig(dir: string, warn: (message: string) => void): boolean {
  let folder: ModelFolder;
  try {
    folder = resolveModel(dir);
  } catch {
    return true;
  }
  try {
    if (folder.config !== null) readGenerationConfig(folder.dir, folder.config.vocabSize);
    return true;
  } catch (err) {
    warn(`${dir}: skipped: ${(err as Error).message}`);
    return false;
  }
}

// The source to read again at a reload: the start's, with ./server_config.json pinned by its path once it has been
// read, so that a reload while it is missing (an editor's save, a deploy rewriting it) is refused, and never serves
// the models found in the folders without the file's api_keys.
export function pinnedSource(source: ServeSource, read: ServerConfig): ServeSource {
  const file = path.join(source.cwd, CONFIG_FILE);
  return source.config === undefined && source.model === undefined && read.source === file ? { ...source, config: file } : source;
}

export function serveConfig(source: ServeSource): ServerConfig {
  if (source.config !== undefined) return withFineTuningDir(loadServerConfig(path.resolve(source.cwd, source.config), source.flags), source);
  // Settings left out are the config's defaults: a model trained on chat logs is served as a chatbot.
  const shared = {
    ...(source.audience !== undefined && { audience: source.audience }),
    ...(source.systemMessages !== undefined && { system_messages: source.systemMessages }),
  };
  const fineTuning = source.fineTuning === undefined ? {} : { fine_tuning: { dir: path.resolve(source.cwd, source.fineTuning) } };
  if (source.model !== undefined) {
    const sanitizer = source.sanitizer === undefined ? {} : { sanitizer: source.sanitizer };
    // A folder here, or else a name under models/ (124M, as bin/download-model puts it there), as every command takes it.
    const folder = path.resolve(source.cwd, source.model);
    // One that is not there is told in the flag's terms, with how to get it, as the other commands tell it: not as
    // an entry of a config the user never wrote.
    if (!fs.existsSync(folder)) {
      try {
        resolveModel(isPath(source.model) ? folder : source.model);
      } catch (err) {
        throw new Error(`--model ${source.model}: ${(err as Error).message}`);
      }
    }
    const weights = isPath(source.model) || fs.existsSync(folder) ? { restore_from: folder } : { model_name: source.model };
    const raw = { models: [{ key: source.key ?? 'chatbot', ...weights, ...sanitizer, ...shared }], ...fineTuning };
    return validateServerConfig(raw, 'bin/serve --model', source.cwd, source.flags);
  }
  const file = path.join(source.cwd, CONFIG_FILE);
  if (fs.existsSync(file)) return withFineTuningDir(loadServerConfig(file, source.flags), source);
  const models = discoverModels(source.cwd);
  if (models.length === 0) throw new NoModelsError();
  return validateServerConfig({ models: models.map((m) => ({ ...m, ...shared })), ...fineTuning }, 'models found in checkpoint/ and models/', source.cwd, source.flags);
}

// --fine_tuning over a config file: its folder in place of the file's, the file's other fine-tuning settings kept
// (the defaults where the file has none).
function withFineTuningDir(config: ServerConfig, source: ServeSource): ServerConfig {
  if (source.fineTuning === undefined) return config;
  return { ...config, fineTuning: { ...(config.fineTuning ?? FINE_TUNING_DEFAULTS), dir: path.resolve(source.cwd, source.fineTuning) } };
}
