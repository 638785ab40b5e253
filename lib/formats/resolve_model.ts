// Model names as every command takes them (bin/generate, bin/chat, bin/export-gguf, bin/train, the server):
// OpenAI's release names (124M, 355M, 774M, 1558M), Hugging Face's (gpt2, gpt2-medium, gpt2-large, gpt2-xl), any
// other folder name under the models folder, or a path; a training run folder stands for its latest checkpoint.
import fs from 'node:fs';
import path from 'node:path';
import { BEST_FILE, LATEST_FILE, checkpointFolder, latestCheckpoint } from '../train/checkpoint';
import { inspectModelFolder, type ModelFolder } from './model_folder';

export const RELEASE_NAMES = ['124M', '355M', '774M', '1558M'] as const;
export type ReleaseName = (typeof RELEASE_NAMES)[number];

// The Hugging Face hub repository (under openai-community/) of each release.
export const HUB_REPOS: Readonly<Record<ReleaseName, string>> = {
  '124M': 'gpt2',
  '355M': 'gpt2-medium',
  '774M': 'gpt2-large',
  '1558M': 'gpt2-xl',
};

// The names OpenAI first gave the two smaller releases, which the original tools' README and scripts still use:
// renamed when their parameters were counted again.
const RENAMED_RELEASES: ReadonlyMap<string, ReleaseName> = new Map([['117M', '124M'], ['345M', '355M']]);

// 124M for "gpt2" (and for its old name, 117M), the release name itself for a release name, null for any other name.
export function releaseName(name: string): ReleaseName | null {
  const renamed = RENAMED_RELEASES.get(name);
  if (renamed !== undefined) return renamed;
  for (const release of RELEASE_NAMES) {
    if (name === release || name === HUB_REPOS[release]) return release;
  }
  return null;
}

// The line a command prints when an old release name (117M, 345M) stands for its new one, `doing` it ("taking",
// "downloading"); null for any other name.
export function renamedReleaseNotice(name: string, doing: string): string | null {
  const release = RENAMED_RELEASES.get(name);
  return release === undefined ? null : `${name} is OpenAI's old name of the release now called ${release}: ${doing} ${release}`;
}

// models/ under the current folder, or DIXIE_MODELS_DIR.
export function modelsDir(): string {
  return path.resolve(process.env.DIXIE_MODELS_DIR || 'models');
}

// Whether a name is a path (absolute, or with a folder in it), not a name under the models folder.
export function isPath(name: string): boolean {
  return path.isAbsolute(name) || name.includes('/') || name.includes(path.sep) || name === '.' || name === '..';
}

// The folder a name refers to, whether or not it exists: a path as given, a release alias under its release
// name (so "gpt2" and "124M" are one model) unless a folder of the alias's own name exists.
export function modelDir(name: string): string {
  if (isPath(name)) return path.resolve(name);
  const own = path.join(modelsDir(), name);
  const release = releaseName(name);
  if (release === null || fs.existsSync(own)) return own;
  return path.join(modelsDir(), release);
}

// What to say of a run's `best` that is not there (null for any other name): it is written at the run's first
// validation that does better than the model the run started from.
export function noBestYet(name: string): string | null {
  const dir = modelDir(name);
  const latest = path.basename(dir) === BEST_FILE ? latestCheckpoint(path.dirname(dir)) : null;
  if (latest === null) return null;
  const run = path.dirname(name);
  return `${run} has no best checkpoint yet: \`best\` names the checkpoint of the lowest validation loss of held-out data (--val_split or --val_dataset, with --val_every), once a validation does better than the starting model; give \`${run}\` for its latest checkpoint, ${path.join(run, path.basename(latest))}`;
}

function howToGet(name: string, dir: string): string {
  const noBest = noBestYet(name);
  if (noBest !== null) return noBest;
  // A bare name is a folder of models/; one of the same name here is most likely what was meant.
  if (!isPath(name) && fs.existsSync(name)) return `./${name} is here: give it as \`./${name}\` to load that`;
  // models/124M, given as a folder, is as much the release as 124M.
  const release = releaseName(isPath(name) && path.dirname(dir) === modelsDir() ? path.basename(dir) : name);
  const get = release !== null
    ? `download it with \`bin/download-model ${release}\``
    : `download a GPT-2 release with \`bin/download-model 124M\` (or 355M, 774M, 1558M), or convert a TensorFlow checkpoint with \`bin/import-tf <checkpoint folder> ${isPath(name) ? dir : path.join(path.relative(process.cwd(), modelsDir()) || '.', name)}\``;
  // Someone who has just trained a model here, and leaves the model out, most likely means it.
  const runs = isPath(name) ? [] : runsHere();
  if (runs.length === 0) return get;
  const more = runs.length > 3 ? ` (and ${runs.length - 3} more in checkpoint/)` : '';
  return `${get}; or name a run trained here: ${runs.slice(0, 3).map((run) => `\`--model ${run}\``).join(', ')}${more}`;
}

// The training runs under ./checkpoint (folders with a latest checkpoint).
function runsHere(): string[] {
  const root = 'checkpoint';
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).sort().filter((run) => fs.existsSync(path.join(root, run, LATEST_FILE))).map((run) => `${root}/${run}`);
}

// The model folder of a name, ready to load (Hugging Face layout, or a GGUF file), or an error that says how to get it. A training
// run folder (checkpoint/run1) gives its latest checkpoint, looked up at each call, so that a model loaded again
// later picks up the newest checkpoint of a run that is still training.
export function resolveModel(name: string): ModelFolder {
  if (name.trim() === '') throw new Error('no model name given');
  const dir = modelDir(name);
  if (!fs.existsSync(dir)) {
    const where = isPath(name) ? dir : `${dir} (models are looked up in ${modelsDir()}; set DIXIE_MODELS_DIR to look elsewhere)`;
    throw new Error(`model "${name}" not found: no folder ${where}; ${howToGet(name, dir)}`);
  }
  const folder = inspectModelFolder(checkpointFolder(dir));
  if (folder.kind === 'openai-release' || folder.kind === 'tf-run') {
    const what = folder.kind === 'openai-release' ? "OpenAI's TensorFlow release" : 'a TensorFlow training run';
    throw new Error(`${folder.dir} holds ${what} (${path.basename(folder.weights)}); convert it once with \`bin/import-tf ${folder.dir} ${folder.dir}\``);
  }
  return folder;
}

// What is amiss with an adapter (its folder, and the base it names: base_model_name_or_path) applied over `baseDir`:
// the base it names is another folder here. It loads over any base of its shapes without complaint, and answers with
// weights it was never trained with. null where it names this base, or none that is a folder here (a hub name).
export function adapterOverOtherBase(adapterDir: string, namedBase: string | null, baseDir: string): string | null {
  if (namedBase === null) return null;
  let named: string;
  try {
    named = fs.realpathSync(checkpointFolder(namedBase));
  } catch {
    return null;  // no such folder here (or a run's pointer naming nothing): nothing to compare with
  }
  return named === fs.realpathSync(baseDir) ? null : `the adapter ${adapterDir} was trained over ${namedBase}, not ${baseDir}`;
}
