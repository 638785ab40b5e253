// Where a configured model's weights are: "restore_from" (a model folder, or a training run folder, which
// stands for its latest checkpoint: lib/train/checkpoint) or else "model_name" (models/<name>, see
// lib/formats/resolve_model). Resolved again at every load, so a model reloaded after an idle unload picks up
// the newest checkpoint of a run that is still training.
import fs from 'node:fs';
import { inspectModelFolder, type ModelFolder } from '../formats/model_folder';
import { resolveModel } from '../formats/resolve_model';
import { checkpointFolder } from '../train/checkpoint';
import type { ModelConfig } from './config';

function huggingface(dir: string, where: string): ModelFolder {
  let folder: ModelFolder;
  try {
    folder = inspectModelFolder(dir);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  if (folder.kind !== 'huggingface') {
    throw new Error(`${where}: ${dir} holds a TensorFlow checkpoint; convert it once with \`bin/import-tf ${dir} <output folder>\` and point restore_from there`);
  }
  return folder;
}

export function resolveModelSource(model: ModelConfig): ModelFolder {
  if (model.restoreFrom === null) {
    try {
      return resolveModel(model.modelName as string);
    } catch (err) {
      throw new Error(`${model.where}.model_name: ${(err as Error).message}`);
    }
  }
  const where = `${model.where}.restore_from`;
  const dir = model.restoreFrom;
  if (!fs.existsSync(dir)) throw new Error(`${where}: ${dir} does not exist`);
  return huggingface(checkpointFolder(dir), where);
}
