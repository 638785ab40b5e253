// Where a configured model's weights are: "restore_from" (a model folder, or a training run folder whose
// `latest` file names its newest checkpoint folder) or else "model_name" (models/<name>, see
// lib/formats/resolve_model). Resolved again at every load, so a model reloaded after an idle unload picks up
// the newest checkpoint of a run that is still training.
import fs from 'node:fs';
import path from 'node:path';
import { inspectModelFolder, type ModelFolder } from '../formats/model_folder';
import { resolveModel } from '../formats/resolve_model';
import type { ModelConfig } from './config';

export const LATEST_FILE = 'latest';

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
  const latest = path.join(dir, LATEST_FILE);
  if (fs.existsSync(latest)) {
    const name = fs.readFileSync(latest, 'utf8').trim();
    if (name === '') throw new Error(`${where}: ${latest} is empty (it should name the newest checkpoint folder)`);
    const target = path.resolve(dir, name);
    if (!fs.existsSync(target)) throw new Error(`${where}: ${latest} names ${name}, but ${target} does not exist`);
    return huggingface(target, where);
  }
  return huggingface(dir, where);
}
