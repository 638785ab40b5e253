// Training checkpoints, one folder per save under checkpoint/<run_name>/:
//
//   checkpoint/run1/
//     latest                 "model-2000": the newest complete checkpoint
//     best                   "model-1000": the one of the lowest validation loss on held-out data (--val_dataset,
//                            --val_split), which pruning (max_to_keep) spares
//     model-1000/  model-2000/
//       config.json + model.safetensors   the weights (Hugging Face layout: the folder is a servable model), or
//       adapter_config.json + adapter_model.safetensors   a LoRA adapter over its base (PEFT's layout)
//       vocab.json + merges.txt + tokenizer_config.json   the tokenizer, as Hugging Face names it (a chat run's
//                                         with its chat template: lib/formats/chat_record.ts)
//       optimizer.safetensors             Adam's moments and step count (absent for SGD)
//       state.json                        step, RNG and sampler state, running loss, the run's options and data
//     metrics.jsonl, loss.svg             the run's log and loss curve (lib/train/metrics.ts)
//
// A checkpoint is written whole into a hidden temporary folder (every file fsynced), renamed into place, and
// only then named by `latest` (written atomically, which also makes the rename durable; `best` likewise). A kill
// -9 at any moment therefore leaves every checkpoint under a checkpoint's name complete, and a resume takes the
// newest of them (latestCheckpoint); a stray temporary folder is swept by the next save. A save that fails (a full
// disk) removes its own, and says which file it could not write. The vocabulary is written from memory, as the
// tokenizer read it.
import fs from 'node:fs';
import path from 'node:path';
import { Model } from '../engine/model';
import { AudienceCount } from '../data/chat_check';
import { isAudience } from '../data/chat_format';
import { chatRecordOf, STATE_FILE } from '../formats/chat_record';
import { RngState } from '../util/rng';
import { Tokenizer } from '../tokenizer';
import { writeVocabulary } from '../tokenizer/vocab';
import { sweepTemporaryFiles, writeTextAtomic } from '../util/atomic_file';
import { readJsonObject } from '../util/json_file';

export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const LATEST_FILE = 'latest';
export const BEST_FILE = 'best';
const CHECKPOINT_NAME = /^model-(\d+)$/;

// What, besides weights and optimizer moments, a run needs to go on exactly where it stopped.
export interface TrainState {
  step: number;              // optimizer steps taken
  seed: number;              // the run's seed (initialisation of a fresh model)
  dataRng: RngState;         // the training batch sampler
  sampleRng: RngState;       // the seeds of generated samples
  lossAverage: [number, number];  // the running average: decayed sum of losses, decayed count
  tokens: number;            // training tokens seen
  trainSeconds: number;      // time spent in training steps
  audiences: AudienceCount[];  // who the chat data talks to (for bin/chat), most messages first; [] when not chat
  best?: BestValidation | null;  // with --val_dataset: the lowest validation loss so far (absent in older checkpoints)
  ranks?: number;            // the ranks the run trained on (data-parallel; absent in older checkpoints)
  dataset?: DatasetRecord;   // the --dataset the run trained on up to the checkpoint (absent in older checkpoints)
  validation?: string;       // the digest of the validation windows that `best` was measured on (absent in older checkpoints)
  options: Record<string, unknown>;  // the options the run last ran with, for the record
}

// Enough of a dataset to tell a resumed run whether its data changed since the checkpoint, and to say how.
export interface DatasetRecord {
  files: number;
  bytes: number;   // of the files on disk
  tokens: number;
  digest: string;  // tokenDigest
}

// The lowest validation loss of a run, which `best` names the checkpoint of (none for step 0: the model the run
// started from), and how many validations since have not gone below it (for --early_stopping).
export interface BestValidation {
  step: number;
  loss: number;
  validationsSince: number;
}

// Where the save has got to, for a test that kills a run mid-save: the checkpoint is complete in its
// temporary folder, or renamed into place (not yet `latest`).
export type SavePhase = 'written' | 'renamed';

export interface SaveOptions {
  maxToKeep: number;          // 0: keep all
  withOptimizer: boolean;
  keepBest: boolean;          // `best` names the checkpoint of the state's lowest validation loss (TrainState.best)
  onPhase?: (phase: SavePhase, dir: string) => Promise<void> | void;
}

function checkpointName(step: number): string {
  return `model-${step}`;
}

// The complete checkpoints of a run folder, oldest first.
export function listCheckpoints(runDir: string): { step: number; dir: string }[] {
  if (!fs.existsSync(runDir)) return [];
  return fs
    .readdirSync(runDir)
    .map((name) => ({ name, match: CHECKPOINT_NAME.exec(name) }))
    .filter(({ name, match }) => match !== null && fs.existsSync(path.join(runDir, name, STATE_FILE)))
    .map(({ name, match }) => ({ step: Number((match as RegExpExecArray)[1]), dir: path.join(runDir, name) }))
    .sort((a, b) => a.step - b.step);
}

// The newest complete checkpoint of the run; null for a run with none. It is the one `latest` names, but for a
// kill between a checkpoint's rename and the update of `latest`: the renamed one is complete, and the steps past
// the one `latest` still names would otherwise be trained again.
export function latestCheckpoint(runDir: string): string | null {
  const all = listCheckpoints(runDir);
  return all.length > 0 ? all[all.length - 1].dir : null;
}

// The checkpoint of the run's lowest validation loss, as `best` names it; null when the run has none (no held-out
// data, or no step went below the model it started from), or when `best` names no complete checkpoint.
export function bestCheckpoint(runDir: string): string | null {
  const file = path.join(runDir, BEST_FILE);
  if (!fs.existsSync(file)) return null;
  const name = fs.readFileSync(file, 'utf8').trim();
  return CHECKPOINT_NAME.test(name) && fs.existsSync(path.join(runDir, name, STATE_FILE)) ? path.join(runDir, name) : null;
}

// The model folder a path names: a run folder (checkpoint/run1) and its `latest` stand for its latest checkpoint
// (latestCheckpoint), its `best` for the checkpoint that names; any other path for itself.
// Every command that loads a model resolves it so, through resolveModel (lib/formats/resolve_model).
export function checkpointFolder(dir: string): string {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isFile()) return latestCheckpoint(dir) ?? dir;
  const pointer = path.basename(dir);
  const runDir = path.dirname(dir);
  const named = pointer === BEST_FILE ? bestCheckpoint(runDir) : pointer === LATEST_FILE ? latestCheckpoint(runDir) : dir;
  if (named === null) throw new Error(`${dir} names ${JSON.stringify(fs.readFileSync(dir, 'utf8').trim())}, which is no complete checkpoint of ${runDir}`);
  return named;
}

// What is amiss in answering as `audience` for a model whose chat data talked to `trained` (trainedAudiences); null
// where it talked to it, or where no record says. A case apart is named: an import writes names as the app shows them.
export function untrainedAudience(audience: string, trained: readonly string[]): string | null {
  if (trained.length === 0 || trained.includes(audience)) return null;
  const cased = trained.find((a) => a.toLowerCase() === audience.toLowerCase());
  const named = trained.slice(0, 5).map((a) => JSON.stringify(a)).join(', ') + (trained.length > 5 ? ', ...' : '');
  return `its chat data never talks to ${JSON.stringify(audience)}${cased ? `, but to ${JSON.stringify(cased)} (audiences are told apart by case)` : ` (it talks to ${named})`}`;
}

export function readTrainState(dir: string): TrainState {
  const file = path.join(dir, STATE_FILE);
  const state = readJsonObject(file) as Partial<TrainState>;
  const isWords = (w: unknown): boolean => Array.isArray(w) && w.length === 4 && w.every((x) => Number.isInteger(x));
  for (const field of ['step', 'seed', 'tokens', 'trainSeconds'] as const) {
    if (typeof state[field] !== 'number') throw new Error(`${file}: field "${field}" must be a number`);
  }
  if (!isWords(state.dataRng) || !isWords(state.sampleRng)) throw new Error(`${file}: fields "dataRng" and "sampleRng" must be four 32-bit words`);
  if (!Array.isArray(state.lossAverage) || state.lossAverage.length !== 2) throw new Error(`${file}: field "lossAverage" must be [sum, count]`);
  if (!Array.isArray(state.audiences)) throw new Error(`${file}: field "audiences" must be a list`);
  if (state.ranks !== undefined && !(Number.isInteger(state.ranks) && state.ranks >= 1)) throw new Error(`${file}: field "ranks" must be a whole number >= 1`);
  const dataset = state.dataset;
  if (dataset !== undefined && !(typeof dataset.files === 'number' && typeof dataset.bytes === 'number' && typeof dataset.tokens === 'number' && typeof dataset.digest === 'string')) {
    throw new Error(`${file}: field "dataset" must be {"files", "bytes", "tokens", "digest"}`);
  }
  if (state.validation !== undefined && typeof state.validation !== 'string') throw new Error(`${file}: field "validation" must be a digest (a string)`);
  const best = state.best;
  if (best !== undefined && best !== null && !(typeof best.step === 'number' && typeof best.loss === 'number' && typeof best.validationsSince === 'number')) {
    throw new Error(`${file}: field "best" must be null or {"step", "loss", "validationsSince"}`);
  }
  return state as TrainState;
}

// Moves a folder out of sight before deleting it, so a kill midway never leaves a half-deleted checkpoint
// under a checkpoint's name.
function removeFolder(dir: string): void {
  const doomed = path.join(path.dirname(dir), `.${path.basename(dir)}.deleting-${process.pid}`);
  fs.renameSync(dir, doomed);
  fs.rmSync(doomed, { recursive: true, force: true });
}

// Saves the model, its optimizer state, tokenizer and training state as checkpoint model-<step> of the run,
// points `latest` at it and prunes the oldest beyond maxToKeep, sparing the one `best` names. With keepBest,
// `best` is pointed first at the checkpoint of the state's lowest validation loss: this one when it is new, or
// one that a kill kept `best` from naming (then the run resumed from it, the newest, and would otherwise prune it).
// Returns the checkpoint's folder.
export async function saveCheckpoint(runDir: string, model: Model, tokenizer: Tokenizer, state: TrainState, options: SaveOptions): Promise<string> {
  fs.mkdirSync(runDir, { recursive: true });
  // Temporary folders of saves that a kill interrupted, and files (`latest`, the plot) of writes it did.
  sweepTemporaryFiles(runDir);
  for (const name of fs.readdirSync(runDir)) {
    if (/^\.model-\d+\.(tmp|old|deleting)-\d+$/.test(name)) fs.rmSync(path.join(runDir, name), { recursive: true, force: true });
  }
  const name = checkpointName(state.step);
  const temp = path.join(runDir, `.${name}.tmp-${process.pid}`);
  const final = path.join(runDir, name);
  // A checkpoint of the same step already there (a run resumed from it and stopped at once) is replaced.
  let replaced: string | null = null;
  fs.mkdirSync(temp);
  try {
    // The vocabulary as the tokenizer read it (the folder it came from may be a checkpoint pruned since), with the
    // chat template of the run's chat data, which the weights now speak whatever the model started from. The
    // audiences are state.json's, which chat_record.ts reads first: an audiences.json beside it would say it twice.
    const { template } = chatRecordOf(state.audiences.filter((a) => isAudience(a.audience)));
    if (model.lora) {
      await model.saveAdapter(temp);
      await writeVocabulary(tokenizer.vocab, temp, { nCtx: model.config.nCtx, ...(template !== null && { chatTemplate: template }) });
    } else {
      await model.save(temp, { tokenizer, chat: { audiences: [], template } });
    }
    if (options.withOptimizer) await model.saveOptimizer(path.join(temp, OPTIMIZER_FILE));
    await writeTextAtomic(path.join(temp, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
    await options.onPhase?.('written', temp);
    if (fs.existsSync(final)) {
      replaced = path.join(runDir, `.${name}.old-${process.pid}`);
      fs.renameSync(final, replaced);
    }
    fs.renameSync(temp, final);
  } catch (err) {
    fs.rmSync(temp, { recursive: true, force: true });
    if (replaced !== null && !fs.existsSync(final)) fs.renameSync(replaced, final);
    // The file named is one of a temporary folder, now gone: said so, with what the run still holds.
    const kept = (() => {
      try {
        return latestCheckpoint(runDir);
      } catch {
        return null;  // the save's own error is the one to tell
      }
    })();
    const message = `${name} was not saved: ${(err as Error).message}${kept === null ? '' : `; ${path.basename(kept)}, saved before, is kept`}`;
    throw Object.assign(new Error(message, { cause: err }), { code: (err as NodeJS.ErrnoException).code });
  }
  await options.onPhase?.('renamed', final);
  const best = options.keepBest && state.best && state.best.step > 0 ? path.join(runDir, checkpointName(state.best.step)) : null;
  try {
    if (best !== null && fs.existsSync(path.join(best, STATE_FILE)) && bestCheckpoint(runDir) !== best) {
      await writeTextAtomic(path.join(runDir, BEST_FILE), `${path.basename(best)}\n`);
    }
    await writeTextAtomic(path.join(runDir, LATEST_FILE), `${name}\n`);
  } catch (err) {
    // The checkpoint is whole and in place, and a resume takes the newest whole one whatever `latest` names.
    const message = `${name} is saved, but ${(err as Error).message}; --restore_from latest resumes from ${name} all the same`;
    throw Object.assign(new Error(message, { cause: err }), { code: (err as NodeJS.ErrnoException).code });
  }
  if (replaced) fs.rmSync(replaced, { recursive: true, force: true });

  if (options.maxToKeep > 0) {
    const best = bestCheckpoint(runDir);
    const all = listCheckpoints(runDir).filter((c) => c.dir !== final && c.dir !== best);
    for (const old of all.slice(0, Math.max(0, all.length - (options.maxToKeep - 1)))) removeFolder(old.dir);
  }
  return final;
}
