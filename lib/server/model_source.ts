// Where a configured model's weights are: "restore_from" (a model folder, or a training run folder, which
// stands for its latest checkpoint) or else "model_name" (models/<name>), both as every command resolves them
// (lib/formats/resolve_model). Resolved again at every load, so a model reloaded after an idle unload picks up
// the newest checkpoint of a run that is still training.
import fs from 'node:fs';
import type { ModelFolder } from '../formats/model_folder';
import { modelDir, noBestYet, resolveModel } from '../formats/resolve_model';
import type { ModelConfig } from './config';

export function resolveModelSource(model: ModelConfig): ModelFolder {
  const [field, name] = model.restoreFrom === null ? ['model_name', model.modelName as string] : ['restore_from', model.restoreFrom];
  const where = `${model.where}.${field}`;
  // restore_from is a path (made absolute by the config's reader): the advice of resolveModel on downloading a
  // model by name does not apply to it.
  if (model.restoreFrom !== null && !fs.existsSync(model.restoreFrom)) {
    const noBest = noBestYet(model.restoreFrom);
    throw new Error(`${where}: ${model.restoreFrom} does not exist${noBest === null ? '' : `: ${noBest}`}`);
  }
  try {
    return resolveModel(name);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

// The weights an entry loads, as a key: the folder it names (a model name's under models/; a run folder as it is,
// not its latest checkpoint, which changes as it trains), its weight type, and its device and precision where it sets
// them. Entries of one key share one loaded model (lib/server/engine.ts), which the registry serves under this key
// when no entry's key names it.
export function weightsKey(model: ModelConfig): string {
  return ['base', model.restoreFrom ?? modelDir(model.modelName as string), model.weightDtype, model.device, model.precision].filter((part) => part !== null).join(':');
}
