// Fine-tuning GPT-2, nanoGPT-style: the whole training run in this one file, top to bottom.
//
//   const result = await train({ dataset: 'data/combined.train', model_name: '124M', stop_after: 1000 });
//
// The options are train.py's flags under the same names (docs/compatibility.md; bin/train is a thin front end):
// one set (not undefined) is given, and refused, as bin/train refuses its flag, where the others leave it no effect.
// A run: load the tokenizer and the model (a checkpoint of the run to resume, a base model, or a fresh one),
// load and check the dataset, then loop: draw a batch, forward, backward (accumulating micro-batches), an
// optimizer step; report the step; now and then save a checkpoint, generate samples, measure validation loss.
// Batches, sample seeds and the validation set all come from seeded generators whose state the checkpoint
// keeps, so a run stopped and resumed ends with the same weights, bit for bit, as one that never stopped.
//
// Data-parallel (io.ranks: bin/train under mpirun), every rank runs this loop on its own copy of the model: each
// draws the whole global batch from the same generator and reads its own slice, the backend averages the
// gradients in step(), and rank 0 alone writes checkpoints, metrics, samples and progress lines.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ChatSummary, MalformedChatError, formatChatReport } from '../data/chat_check';
import { CHAT_CHECK_MODES, ChatCheckMode, Dataset, DEFAULT_COMBINE, EncodingShare, describeTokens, loadDataset } from '../data/dataset';
import { datasetFiles } from '../data/files';
import { Rng } from '../util/rng';
import { WindowSampler } from '../data/sampler';
import { ChunkParts, tokenDigest } from '../data/tokens';
import { GPT2Config, LoraOptions, Model, ModelOptions, plannedModelBytes, runsOnGpu } from '../engine/model';
import { LORA_TARGETS, WEIGHT_DTYPES, type LoraTarget, type WeightDType } from '../engine/native';
import { ADAPTER_CONFIG_FILE, readLoraConfig, readPeftAdapter } from '../formats/peft';
import { inspectModelFolder, type ModelFolder } from '../formats/model_folder';
import { modelDir, renamedReleaseNotice, resolveModel } from '../formats/resolve_model';
import { Generator, type GenerateResult } from '../generate';
import { definedFields } from '../generate/generate';
import { Tokenizer, loadTokenizer, modelTokenizer } from '../tokenizer';
import { STATE_FILE } from '../formats/chat_record';
import { writeTextAtomic } from '../util/atomic_file';
import { lockFolder } from '../util/folder_lock';
import { BEST_FILE, BestValidation, DatasetRecord, OPTIMIZER_FILE, SavePhase, TrainState, bestCheckpoint, checkpointFolder, latestCheckpoint, listCheckpoints, readTrainState, saveCheckpoint } from './checkpoint';
import { Ranks, checkRanksAgree, checkRanksAgreeOn, ctrlCAdvice, fromRank0, numberFromRank0, onRank0, rankList, sumOverRanks, threadsPerRank } from './distributed';
import { MetricsLog, type MetricRecord } from './metrics';
import { plotMetrics } from './plot';
import { formatBytes, plural } from '../util/format';
import { quoted } from '../util/quoted';

export interface TrainOptions {
  dataset: string;                 // file, folder or glob: text, CSV or JSONL, .npz, or a token file from bin/encode
  model_name: string;              // 124M, 355M, 774M, 1558M, a name under models/, or a model folder
  fresh_model: boolean;            // random weights of the shape below instead of model_name's
  n_layer: number;
  n_head: number;
  n_embd: number;
  n_ctx: number;
  tokenizer: string;               // vocabulary folder of a fresh model; '': GPT-2's
  combine: number;                 // text files are joined into chunks of at least this many characters
  chat_check: ChatCheckMode;       // text files checked as chat: those that look like chat (auto), all, or none (off)
  batch_size: number;
  context_length: number;          // tokens per training sequence; 0: the model's n_ctx
  learning_rate: number;
  learning_rate_cos: boolean;      // warmup, then cosine annealing with warm restarts
  learning_rate_warmup: number;    // steps of linear warmup
  learning_rate_min: number;
  learning_rate_period: number;    // steps of each cosine cycle
  accumulate_gradients: number;    // micro-batches per optimizer step
  optimizer: 'adam' | 'sgd';
  grad_clip: number;               // the gradients scaled down to this global norm where they exceed it; 0: never (as train.py)
  memory_saving_gradients: boolean;  // recompute activations in backward
  only_train_transformer_layers: boolean;
  restore_from: string;            // latest | fresh | a checkpoint or model folder
  run_name: string;
  checkpoint_dir: string;          // runs live in <checkpoint_dir>/<run_name>
  sample_dir: string;              // samples go to <sample_dir>/<run_name>
  save_every: number;              // steps; 0: never by count
  save_time: number;               // minutes; 0: never by time
  max_to_keep: number;             // 0: keep every checkpoint
  save_on_ctrlc: boolean;
  sample_every: number;            // steps; 0: never
  sample_length: number;
  sample_num: number;
  top_k: number;                   // 0: off
  top_p: number;                   // 0: off (as train.py takes it)
  min_p: number;                   // samples: only tokens at least this fraction as likely as the most likely; 0: off
  val_dataset: string;             // '': a fixed sample of the training data (or of its held-out part: val_split)
  val_split: number;               // without val_dataset: the last fraction of each chunk of the dataset, held out for validation; 0: none
  val_every: number;               // steps; 0: no validation
  keep_best: boolean;              // with held-out data (val_dataset, val_split): save the checkpoint of each new lowest validation loss, named by `best`, spared by max_to_keep
  early_stopping: number;          // with held-out data: stop after this many validations in a row above the lowest; 0: never
  val_batch_size: number;
  val_batch_count: number;
  seed: number;                    // -1: a random seed (printed, and kept in the checkpoint)
  stop_after: number;              // stop (and save) when the step count reaches it; 0: never
  threads: number;                 // 0: one per core (data-parallel: per core of this rank's share)
  background: boolean;             // the threads at the lowest CPU priority: a job in a server, whose decoding goes first
  zero: number;                    // data-parallel: 1 shards Adam's moments across the ranks (ZeRO-1)
  collective_timeout: number;      // data-parallel: seconds a rank waits for the others before ending the job; 0: forever
  lora_rank: number;               // > 0: train a LoRA adapter of this rank over the frozen model; 0: every weight
  lora_alpha: number;              // the adapter's scale is lora_alpha / lora_rank; 0: twice the rank
  lora_targets: string;            // the matrices adapted: attn, mlp, or c_attn, attn.c_proj, c_fc, mlp.c_proj
  // An adapter's frozen base held in f32, or in f16, bf16 or q8_0 for less memory; '': f32, or the run's own when it
  // resumes.
  dtype: '' | WeightDType;
  lora_dropout: number;            // PEFT's lora_dropout: of the adapter's inputs in training steps (never in validation or samples)
}

export const DEFAULT_TRAIN_OPTIONS: Readonly<Omit<TrainOptions, 'dataset'>> = {
  model_name: '124M',
  fresh_model: false,
  n_layer: 12,
  n_head: 12,
  n_embd: 768,
  n_ctx: 1024,
  tokenizer: '',
  combine: DEFAULT_COMBINE,
  chat_check: 'auto',
  batch_size: 1,
  context_length: 0,
  learning_rate: 0.00002,
  learning_rate_cos: false,
  learning_rate_warmup: 100,
  learning_rate_min: 0.00001,
  learning_rate_period: 1000,
  accumulate_gradients: 1,
  optimizer: 'adam',
  grad_clip: 0,
  memory_saving_gradients: false,
  only_train_transformer_layers: false,
  restore_from: 'latest',
  run_name: 'run1',
  checkpoint_dir: 'checkpoint',
  sample_dir: 'samples',
  save_every: 1000,
  save_time: 15,
  max_to_keep: 5,
  save_on_ctrlc: true,
  sample_every: 100,
  sample_length: 1023,
  sample_num: 1,
  top_k: 40,
  top_p: 0,
  min_p: 0,
  val_dataset: '',
  val_split: 0,
  val_every: 0,
  keep_best: true,
  early_stopping: 0,
  val_batch_size: 2,
  val_batch_count: 40,
  seed: -1,
  stop_after: 0,
  threads: 0,
  background: false,
  zero: 0,
  collective_timeout: 300,
  lora_rank: 0,
  lora_alpha: 0,
  lora_targets: 'attn,mlp',
  dtype: '',
  lora_dropout: 0,
};

export interface TrainIO {
  log?: (line: string) => void;    // progress lines (default: console.log); rank 0's alone when data-parallel
  ranks?: Ranks | null;            // the MPI job to train data-parallel with (lib/train/distributed.ts)
  signal?: AbortSignal;            // stop after the current step (saving first, unless save_on_ctrlc is false)
  onSavePhase?: (phase: SavePhase, dir: string) => Promise<void> | void;  // for tests that kill mid-save
  onMetrics?: (record: MetricRecord) => void;  // each step's and validation's record, as metrics.jsonl gets it
}

export interface TrainResult {
  runDir: string;
  step: number;                    // steps taken in all, resumed ones included
  stepsThisRun: number;
  checkpoint: string | null;       // the last checkpoint written or resumed from
  firstLoss: number;               // loss of this run's first step (NaN when it took none)
  lastAverage: number;             // running average at the end
  valLoss: number | null;          // the last validation loss
  tokensPerSecond: number;         // training tokens (of every rank) / wall time of this run's steps (sampling, validation, saves excluded)
  stoppedBy: 'stop_after' | 'early_stopping' | 'signal';
  best: (BestValidation & { checkpoint: string | null }) | null;  // with held-out data: the lowest validation loss, and the checkpoint `best` names
}

// --optimizer adam: tf.train.AdamOptimizer's defaults, as train.py has them (no weight decay; clipping only with --grad_clip).
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
// The running average of the loss, as train.py's avg_loss: sum and count decayed by this each step.
const AVERAGE_DECAY = 0.99;
// The validation set is drawn by a sampler of its own seeded 1, the same whatever --seed (as train.py does).
const VALIDATION_SEED = 1;
// The loss curve is redrawn at most this often (and at every validation and save).
const PLOT_INTERVAL_MS = 10_000;
// Rank 0's entry in the ranks' stops asked when its metrics log failed (a signal asks 1), which every rank then saves for.
const METRICS_FAILED = 2;

// The learning rate of the step about to be taken: constant, or a linear warmup to learning_rate, then
// cosine cycles of learning_rate_period steps from learning_rate down to learning_rate_min, each restarting.
export function learningRate(o: TrainOptions, step: number): number {
  if (!o.learning_rate_cos) return o.learning_rate;
  if (step < o.learning_rate_warmup) return (o.learning_rate * (step + 1)) / o.learning_rate_warmup;
  const t = ((step - o.learning_rate_warmup) % o.learning_rate_period) / o.learning_rate_period;
  return o.learning_rate_min + 0.5 * (o.learning_rate - o.learning_rate_min) * (1 + Math.cos(Math.PI * t));
}

// Whether validation reads data that training does not: only its loss tells when the model begins to overfit.
function heldOut(o: TrainOptions): boolean {
  return o.val_dataset !== '' || o.val_split > 0;
}

// Options given that the others leave without effect are refused rather than passed over, whatever their value (an
// option is given when the caller's object sets it, not undefined): a model loaded has its own shape and vocabulary,
// and one restored from a checkpoint its own weights.
const FRESH_MODEL_OPTIONS = ['tokenizer', 'n_layer', 'n_head', 'n_embd', 'n_ctx'] as const;
// An adapter's own options: without lora_rank they apply only to the adapter a run resumes, whose own they must be.
const LORA_OPTIONS = ['lora_alpha', 'lora_targets', 'lora_dropout'] as const;

function givenOf(given: Partial<TrainOptions>, keys: readonly (keyof TrainOptions)[]): string[] {
  return keys.filter((k) => given[k] !== undefined).map((k) => `--${k}`);
}

function refuseFreshModelOptions(o: Pick<TrainOptions, 'fresh_model' | 'model_name' | 'restore_from'>, given: Partial<TrainOptions>): void {
  const shape = givenOf(given, FRESH_MODEL_OPTIONS);
  if (shape.length > 0 && !o.fresh_model) {
    throw new Error(`${shape.join(', ')} ${shape.length === 1 ? 'is' : 'are'} for a --fresh_model, and --model_name ${o.model_name} (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop ${shape.join(', ')}`);
  }
  if (o.fresh_model && o.restore_from !== 'latest' && o.restore_from !== 'fresh') {
    throw new Error(`--fresh_model starts from random weights, and --restore_from ${o.restore_from} from that checkpoint's: drop one of them`);
  }
}

function checkOptions(o: TrainOptions, given: Partial<TrainOptions>): void {
  refuseFreshModelOptions(o, given);
  const positive = ['batch_size', 'accumulate_gradients', 'n_layer', 'n_head', 'n_embd', 'n_ctx', 'val_batch_size', 'val_batch_count', 'sample_num', 'learning_rate_period'] as const;
  for (const k of positive) if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new Error(`--${k} must be a whole number >= 1, got ${o[k]}`);
  const counts = ['context_length', 'save_every', 'max_to_keep', 'sample_every', 'sample_length', 'top_k', 'val_every', 'early_stopping', 'stop_after', 'threads', 'learning_rate_warmup', 'combine'] as const;
  for (const k of counts) if (!(Number.isInteger(o[k]) && o[k] >= 0)) throw new Error(`--${k} must be a whole number >= 0, got ${o[k]}`);
  if (!(o.learning_rate > 0)) throw new Error(`--learning_rate must be > 0, got ${o.learning_rate}`);
  if (!(o.grad_clip >= 0 && Number.isFinite(o.grad_clip))) throw new Error(`--grad_clip must be a norm >= 0 (0: no clipping), got ${o.grad_clip}`);
  if (!(o.learning_rate_min >= 0)) throw new Error(`--learning_rate_min must be >= 0, got ${o.learning_rate_min}`);
  if (!(o.save_time >= 0)) throw new Error(`--save_time must be >= 0 minutes, got ${o.save_time}`);
  if (!(o.top_p >= 0 && o.top_p <= 1)) throw new Error(`--top_p must be in [0, 1], got ${o.top_p}`);
  if (!(o.min_p >= 0 && o.min_p < 1)) throw new Error(`--min_p must be in [0, 1), got ${o.min_p}`);
  if (!CHAT_CHECK_MODES.includes(o.chat_check)) throw new Error(`--chat_check must be one of ${CHAT_CHECK_MODES.join(', ')}, got ${quoted(o.chat_check)}`);
  if (o.optimizer !== 'adam' && o.optimizer !== 'sgd') throw new Error(`--optimizer must be adam or sgd, got ${quoted(o.optimizer)}`);
  if (!Number.isInteger(o.seed) || o.seed < -1 || o.seed > 0xffffffff) throw new Error(`--seed must be -1 (random) or a whole number in [0, 2^32), got ${o.seed}`);
  if (o.fresh_model && o.n_embd % o.n_head !== 0) throw new Error(`--n_embd (${o.n_embd}) must be a multiple of --n_head (${o.n_head})`);
  if (!/^[\w.-]+$/.test(o.run_name)) throw new Error(`--run_name must be letters, digits, '.', '-' or '_', got ${quoted(o.run_name)}`);
  if (!(o.val_split >= 0 && o.val_split <= 0.5)) throw new Error(`--val_split must be in [0, 0.5], got ${o.val_split}`);
  if (o.val_split > 0 && o.val_dataset) throw new Error('--val_split holds part of --dataset out for validation, and --val_dataset is held-out data already: drop one of them');
  if (o.val_split > 0 && o.val_every === 0) throw new Error('--val_split holds data out for validation: give --val_every too');
  // The loss on training data goes on falling as the model overfits: only held-out data tells when to stop.
  if (o.early_stopping > 0 && !(heldOut(o) && o.val_every > 0)) throw new Error('--early_stopping watches the validation loss of held-out data: give --val_dataset (or --val_split) and --val_every too');
  if (o.zero !== 0 && o.zero !== 1) throw new Error(`--zero must be 0 or 1, got ${o.zero}`);
  if (!(o.collective_timeout >= 0)) throw new Error(`--collective_timeout must be >= 0 seconds, got ${o.collective_timeout}`);
  if (!(Number.isInteger(o.lora_rank) && o.lora_rank >= 0)) throw new Error(`--lora_rank must be a whole number >= 0, got ${o.lora_rank}`);
  if (!(o.lora_alpha >= 0)) throw new Error(`--lora_alpha must be >= 0 (0: twice the rank), got ${o.lora_alpha}`);
  if (!['', ...WEIGHT_DTYPES].includes(o.dtype)) throw new Error(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${quoted(o.dtype)}`);
  if (!(o.lora_dropout >= 0 && o.lora_dropout < 1)) throw new Error(`--lora_dropout must be in [0, 1), got ${o.lora_dropout}`);
  if (o.lora_rank > 0) {
    loraTargets(o.lora_targets);
    if (o.fresh_model) throw new Error('--lora_rank trains an adapter over a pre-trained model, and --fresh_model has none to adapt: drop one of them');
    if (o.only_train_transformer_layers) throw new Error('--only_train_transformer_layers and --lora_rank both choose what trains: with an adapter only its factors do');
  }
}

// --lora_targets: a comma list of the matrices an adapter changes; attn and mlp stand for a block's two of each.
const TARGET_GROUPS: Readonly<Record<string, readonly LoraTarget[]>> = {
  attn: ['attn.c_attn', 'attn.c_proj'],
  mlp: ['mlp.c_fc', 'mlp.c_proj'],
  c_attn: ['attn.c_attn'],
  c_fc: ['mlp.c_fc'],
  ...Object.fromEntries(LORA_TARGETS.map((t) => [t, [t]])),
};

function loraTargets(list: string): LoraTarget[] {
  const names = list.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const unknown = names.find((n) => !(n in TARGET_GROUPS));
  if (unknown !== undefined || names.length === 0) {
    throw new Error(`--lora_targets ${JSON.stringify(list)}: ${unknown === undefined ? 'names no matrix' : `"${unknown}" is not a matrix an adapter changes`}; give some of ${Object.keys(TARGET_GROUPS).join(', ')}`);
  }
  return LORA_TARGETS.filter((t) => names.some((n) => TARGET_GROUPS[n].includes(t)));
}

function isAdapterCheckpoint(dir: string): boolean {
  return fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE));
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

// The dataset with its checks reported; a file that is not text, or malformed chat, stops the run. Encoding
// progress is shown by the rank that logs (`root`).
async function loadChecked(spec: string, flag: string, o: TrainOptions, tokenizer: Tokenizer, log: (line: string) => void, warnSmall: boolean, ranks: Ranks | null): Promise<Dataset> {
  const dataset = await loadDataset(spec, {
    tokenizer,
    combine: o.combine,
    chatCheck: o.chat_check,
    threads: o.threads || (ranks ? threadsPerRank(ranks) : undefined),
    onProgress: !ranks || ranks.rank === 0 ? undefined : null,
    share: ranks ? encodingShare(ranks, flag) : undefined,
  });
  for (const warning of dataset.warnings) log(`warning: ${warning}`);
  if (dataset.chat) {
    if (dataset.chat.issues.length > 0) {
      dataset.source.close();
      throw new MalformedChatError(dataset.chat, dataset.source.tokenCount);
    }
    log(formatChatReport(dataset.chat, dataset.source.tokenCount, Infinity, warnSmall));
  }
  return dataset;
}

export interface DatasetCheck {
  report: string;
  summary: ChatSummary | null;
  passed: boolean;  // no malformed line and no problem with the files
}

// bin/train --check: the chat report of a dataset, every text file read as chat, its tokens counted by the vocabulary
// the run would train with: that of the checkpoint it would resume or start from (found as train() finds it, the
// weights not loaded), else a fresh model's tokenizer or model_name's; the options train() refuses, refused. Besides
// malformed lines, the check fails on what training only warns about: invalid UTF-8, and files with no text (an empty
// README, say). Every non-blank line is a message or a malformed line, so a dataset that passes holds messages.
export async function checkDataset(spec: string, options: Partial<Pick<TrainOptions, 'combine' | 'model_name' | 'fresh_model' | (typeof FRESH_MODEL_OPTIONS)[number] | 'restore_from' | 'run_name' | 'checkpoint_dir' | 'threads'>> = {}): Promise<DatasetCheck> {
  const given = definedFields(options);
  const o = { ...DEFAULT_TRAIN_OPTIONS, ...given };
  refuseFreshModelOptions(o, given);
  const { resumeDir } = findStart(o, path.join(o.checkpoint_dir, o.run_name), null);
  const source = modelSource(o, resumeDir);
  const tokenizer = source === null ? loadTokenizer(o.tokenizer || undefined) : tokenizerOf(source);
  const dataset = await loadDataset(spec, { tokenizer, combine: o.combine, chatCheck: 'all', threads: o.threads || undefined });
  dataset.source.close();
  if (!dataset.chat) return { report: `${spec}: no text files to check (only .npz or token files)`, summary: null, passed: true };
  const { warnings } = dataset;
  const base = resumeDir !== null && isAdapterCheckpoint(resumeDir) ? `'s base, ${source}` : '';
  const counted = resumeDir === null ? [] : [`tokens counted by the vocabulary of ${resumeDir}${base}, where the run starts (--restore_from ${o.restore_from})`];
  const lines = [...warnings, formatChatReport(dataset.chat, dataset.source.tokenCount, Infinity, !o.fresh_model), ...counted];
  if (warnings.length > 0) lines.push('check failed: the files have problems besides malformed lines (listed first)');
  return { report: lines.join('\n'), summary: dataset.chat, passed: warnings.length === 0 && dataset.chat.issues.length === 0 };
}

// A model's tokenizer (modelTokenizer), or GPT-2's when no folder of that name is found: the check only counts
// tokens, and may come before the model is downloaded.
function tokenizerOf(modelName: string): Tokenizer {
  if (!fs.existsSync(modelDir(modelName))) return loadTokenizer();
  return modelTokenizer(resolveModel(modelName));
}

// ---- resume: where a run starts, a checkpoint of this run, another checkpoint or model folder, or a base model;
// the training state it continues (null for a new run), and the seed of its data and samples.
interface Start {
  resumeDir: string | null;
  state: TrainState | null;
  seed: number;
}

function findStart(o: Pick<TrainOptions, 'restore_from' | 'seed'>, runDir: string, ranks: Ranks | null): Start {
  refuseForeignRunFolder(runDir);
  let resumeDir: string | null = null;
  if (o.restore_from === 'latest') resumeDir = latestCheckpoint(runDir);
  else if (o.restore_from !== 'fresh') {
    if (!fs.existsSync(o.restore_from)) throw new Error(`--restore_from ${o.restore_from}: no such checkpoint or model folder`);
    const named = checkpointFolder(path.resolve(o.restore_from));
    resumeDir = isAdapterCheckpoint(named) ? named : resolveModel(named).dir;
  }
  // Every rank reads the checkpoint it resumes from: rank 0's choice, which the others must see too.
  if (ranks && fromRank0(ranks, resumeDir) !== resumeDir) {
    throw new Error(`rank ${ranks.rank} does not see the checkpoint rank 0 resumes from: put --checkpoint_dir on a file system every machine shares`);
  }
  // Only a checkpoint of this run goes on with its step, data order and best validation loss: another run's
  // counted other steps over other data, and gives its weights alone, as train.py restored them.
  const own = resumeDir !== null && isCheckpointOf(runDir, resumeDir);
  const state: TrainState | null = own ? readTrainState(resumeDir as string) : null;
  const existing = listCheckpoints(runDir);
  if (!state && existing.length > 0) {
    throw new Error(
      `${runDir} already holds checkpoints (${path.basename(existing[existing.length - 1].dir)}); a run that does not resume them ` +
        `(--restore_from ${o.restore_from}) would mix into them: pick another --run_name or move them away`,
    );
  }
  if (state && o.restore_from !== 'latest') refuseAbandonedCheckpoints(runDir, o.restore_from, resumeDir as string, state.step, existing);
  const seed = state ? state.seed : o.seed >= 0 ? o.seed : ranks ? fromRank0(ranks, crypto.randomInt(0x7fffffff)) : crypto.randomInt(0x7fffffff);
  return { resumeDir, state, seed };
}

// Whether `dir` is a complete checkpoint directly in the run folder, through links and `..`.
function isCheckpointOf(runDir: string, dir: string): boolean {
  if (!fs.existsSync(runDir) || !fs.existsSync(path.join(dir, STATE_FILE))) return false;
  return path.dirname(fs.realpathSync(dir)) === fs.realpathSync(runDir);
}

// A run folder of the original tools (a TensorFlow checkpoint), or a model folder (one bin/import-tf wrote over
// it), holds no checkpoint of dixie's: a run there would start from --model_name and save beside the weights the
// user meant to go on from.
function refuseForeignRunFolder(runDir: string): void {
  if (!fs.existsSync(runDir) || !fs.statSync(runDir).isDirectory() || listCheckpoints(runDir).length > 0) return;
  let folder: ModelFolder;
  try {
    folder = inspectModelFolder(runDir);
  } catch {
    return;  // no weights there: a run folder whose first save is still to come
  }
  const held = path.basename(folder.weights);
  if (folder.kind === 'tf-run' || folder.kind === 'openai-release') {
    throw new Error(
      `${runDir} holds a TensorFlow checkpoint (${held}) of the original tools, which bin/train does not resume or write beside: ` +
        `convert it with \`bin/import-tf ${runDir} <out>\`, then train from it in a new run: \`--model_name <out> --run_name <new name>\``,
    );
  }
  throw new Error(
    `${runDir} holds a model (${held}), not dixie's checkpoints, and a run there would write beside it: ` +
      `to train from it, give \`--model_name ${runDir} --run_name <new name>\``,
  );
}

// Going back to an earlier checkpoint of a run would overwrite the later ones of the same steps, and leave the rest
// of the abandoned history among the new one's: pruning and `latest` tell them apart by step alone. The ones moved
// aside take a copy of the metrics log, whose records past the step the resumed run drops.
function refuseAbandonedCheckpoints(runDir: string, restoreFrom: string, resumeDir: string, step: number, existing: { step: number; dir: string }[]): void {
  const later = existing.filter((c) => c.step > step).map((c) => c.dir);
  if (later.length === 0) return;
  const aside = path.join(runDir, `after-${path.basename(resumeDir)}`);
  const them = later.length === 1 ? 'it' : 'them';
  throw new Error(
    `--restore_from ${restoreFrom}: ${path.basename(resumeDir)} is not the newest checkpoint of ${runDir}: ${later.map((d) => path.basename(d)).join(', ')} came after it, and resuming from it ` +
      `would overwrite ${them}: move ${them} out of the run first, with a copy of the metrics log, whose later records the resumed run drops ` +
      `(\`mkdir -p ${aside} && mv ${later.join(' ')} ${aside}/ && cp ${path.join(runDir, 'metrics.jsonl')} ${aside}/\`), ` +
      `or start a new run from its weights (\`--restore_from ${restoreFrom} --run_name <new name>\`)`,
  );
}

// The folder whose weights and vocabulary a run starting at resumeDir (findStart's) loads: the base an adapter
// checkpoint names, the checkpoint or model folder, or model_name; null for a fresh model, of o.tokenizer's vocabulary.
function modelSource(o: Pick<TrainOptions, 'fresh_model' | 'model_name'>, resumeDir: string | null): string | null {
  if (resumeDir === null) return o.fresh_model ? null : o.model_name;
  if (!isAdapterCheckpoint(resumeDir)) return path.resolve(resumeDir);
  const base = readLoraConfig(path.join(resumeDir, ADAPTER_CONFIG_FILE)).baseModel;
  if (base === null) throw new Error(`${resumeDir}: ${ADAPTER_CONFIG_FILE} names no base model (base_model_name_or_path)`);
  return base;
}

// ---- build: the model to train, fresh or loaded from where the run starts, with its tokenizer.
async function buildModel(o: TrainOptions, given: Partial<TrainOptions>, start: Start, runDir: string, ranks: Ranks | null, log: (line: string) => void): Promise<{ model: Model; tokenizer: Tokenizer }> {
  const { resumeDir, state, seed } = start;
  const threads = o.threads || (ranks ? threadsPerRank(ranks) : 0);
  const modelOptions: ModelOptions = {
    threads: threads || undefined,
    background: o.background,
    maxBatch: o.batch_size,
    recompute: o.memory_saving_gradients,
    ...(ranks ? { dataParallel: { zero: o.zero as 0 | 1, microBatches: o.accumulate_gradients } } : {}),
  };
  // Every rank builds on the same kind of device: a GPU model's set-up is collective (NCCL's), a CPU model's is not,
  // and ranks that disagreed would wait on calls the others never make.
  if (ranks) {
    const onGpu = runsOnGpu(modelOptions);
    const gpus = sumOverRanks(ranks, [onGpu ? 1 : 0])[0];
    if (gpus !== 0 && gpus !== ranks.size) {
      throw new Error(`the ranks disagree on the device: ${gpus} of ${ranks.size} train on a GPU, the others on the CPU (this one on ${onGpu ? 'a GPU' : 'the CPU'}): give every rank the same --device, or make the GPU usable where it is not`);
    }
  }
  // A LoRA checkpoint resumed says what its adapter is; otherwise the adapter's options mean nothing without its rank.
  const adapterDir = resumeDir && isAdapterCheckpoint(resumeDir) ? resumeDir : null;
  const loraGiven = givenOf(given, LORA_OPTIONS);
  if (o.lora_rank === 0 && !adapterDir && loraGiven.length > 0) {
    throw new Error(`${loraGiven.join(', ')} ${loraGiven.length === 1 ? 'is' : 'are'} for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop ${loraGiven.join(', ')}`);
  }
  const source = modelSource(o, resumeDir);
  if (source === null) {
    const tokenizer = loadTokenizer(o.tokenizer || undefined);
    const config = { nLayer: o.n_layer, nHead: o.n_head, nEmbd: o.n_embd, nCtx: o.n_ctx, vocabSize: tokenizer.vocabSize };
    const model = Model.create(config, { ...modelOptions, maxSeq: contextLength(o, o.n_ctx, '--n_ctx'), seed });
    log(`fresh model: ${plural(o.n_layer, 'layer')}, ${plural(o.n_head, 'head')}, ${plural(o.n_embd, 'channel')}, context ${o.n_ctx}, seed ${seed}`);
    return { model, tokenizer };
  }
  // A LoRA checkpoint holds the adapter alone: its base is the folder its adapter_config.json names, and its
  // rank, alpha and targets are the ones training goes on with: the matrices it has factors for, however its
  // target_modules names them (PEFT's ["c_attn", "c_proj"], a regex, "all-linear", or dixie's own names).
  const adapter = adapterDir ? readPeftAdapter(adapterDir) : null;
  let lora: LoraOptions | undefined;
  if (adapter) {
    const { config } = adapter;
    const targets = LORA_TARGETS.filter((target) => adapter.modules.some((m) => m.kind === target));
    lora = { rank: config.r, alpha: config.alpha, rslora: config.useRslora, targets, dropout: config.dropout, seed };
    refuseOtherAdapter(o, given, lora, resumeDir as string);
  } else if (o.lora_rank > 0) {
    // Its Adam state is every weight's, and its steps a full fine-tune's.
    if (state) throw new Error(`${resumeDir} is a checkpoint of a run that trains every weight, and --lora_rank trains an adapter: to train one over it, give it as --model_name with a new --run_name`);
    lora = newLora(o, seed);
  }
  const weightDtype = baseWeightDtype(o, lora, state, log);
  const folder = resolveModel(source);
  // A folder of the old name (the original tools' download) is what it names; otherwise the name stands for the new one.
  const renamed = adapter || resumeDir || path.basename(folder.dir) === o.model_name ? null : renamedReleaseNotice(o.model_name, 'taking');
  if (renamed) log(renamed);
  const tokenizer = modelTokenizer(folder, (message) => log(`warning: ${message}`));
  const model = await Model.load(folder, {
    ...modelOptions,
    maxSeq: contextLength(o, (folder.config as GPT2Config).nCtx, folder.dir),
    lora,
    weightDtype,
    adapter: adapterDir ?? undefined,
  });
  log(
    state ? `resuming from ${resumeDir} at step ${state.step}`
    : resumeDir ? `starting from the weights of ${resumeDir}${fs.existsSync(path.join(resumeDir, STATE_FILE)) ? ', a checkpoint of another run,' : ''} at step 0`
    : `loaded ${o.model_name} from ${folder.dir}`,
  );
  if (lora) log(`LoRA: rank ${lora.rank}, alpha ${lora.alpha}${lora.rslora ? ' (rsLoRA: scaled by alpha / sqrt(rank))' : ''}, dropout ${lora.dropout}, on ${lora.targets.join(', ')} of ${folder.dir}; the base stays frozen${weightDtype === 'f32' ? '' : `, held in ${weightDtype}`}`);
  if (o.fresh_model && state && o.restore_from === 'latest') {
    const shape = givenOf(given, FRESH_MODEL_OPTIONS);
    const withShape = shape.length > 0 ? ` (${shape.join(', ')} with it)` : '';
    log(`--fresh_model${withShape} starts a new run; ${runDir} has one, resumed instead with its own vocabulary and shape (for a new model: another --run_name, or move ${runDir} away)`);
  }
  // Only a --model_name other than the default is known to be asked for: a run resumed without one goes on as it
  // began, whatever model it began from.
  const began = state?.options.model_name;
  const beganFresh = state?.options.fresh_model === true;
  if (state && o.restore_from === 'latest' && !o.fresh_model && o.model_name !== DEFAULT_TRAIN_OPTIONS.model_name && typeof began === 'string' && (beganFresh || modelDir(began) !== modelDir(o.model_name))) {
    log(`--model_name ${o.model_name} starts a new run; ${runDir} has one, ${beganFresh ? 'of a fresh model' : `from ${began}`}, resumed instead (to fine-tune ${o.model_name}: another --run_name, or move ${runDir} away)`);
  }
  return { model, tokenizer };
}

// A run that resumes an adapter goes on with the adapter's own rank, alpha, targets and dropout: each of its options
// given (a lora_rank of 0 stands for none) must say the same, or the run would train another adapter than the one asked.
function refuseOtherAdapter(o: TrainOptions, given: Partial<TrainOptions>, lora: LoraOptions, resumeDir: string): void {
  const rank = o.lora_rank || lora.rank;
  const differing = [
    o.lora_rank > 0 && o.lora_rank !== lora.rank ? `--lora_rank ${o.lora_rank}` : null,
    given.lora_alpha !== undefined && (o.lora_alpha || 2 * rank) !== lora.alpha ? `--lora_alpha ${o.lora_alpha || 2 * rank}` : null,
    given.lora_targets !== undefined && loraTargets(o.lora_targets).join(',') !== lora.targets.join(',') ? `--lora_targets ${o.lora_targets}` : null,
    given.lora_dropout !== undefined && o.lora_dropout !== lora.dropout ? `--lora_dropout ${o.lora_dropout}` : null,
  ].filter((d) => d !== null);
  if (differing.length === 0) return;
  throw new Error(
    `${differing.join(', ')} ${differing.length === 1 ? 'differs' : 'differ'} from the adapter ${resumeDir} trains (rank ${lora.rank}, alpha ${lora.alpha}, ` +
      `targets ${lora.targets.join(',')}, dropout ${lora.dropout}), which the run goes on with: drop ${differing.length === 1 ? 'it' : 'them'}`,
  );
}

// Tokens per training sequence (--context_length, 0: all of the context) for a model of context `nCtx`, which
// `whose` names (a flag, a folder), checked before the model is built: the flags name what to change.
function contextLength(o: TrainOptions, nCtx: number, whose: string): number {
  const T = o.context_length || nCtx;
  if (T > nCtx) throw new Error(`--context_length ${T} is longer than the model's context (${nCtx}, of ${whose}): give at most ${nCtx}`);
  return T;
}

// The adapter a run trains from scratch, by its options.
function newLora(o: Pick<TrainOptions, 'lora_rank' | 'lora_alpha' | 'lora_targets' | 'lora_dropout'>, seed: number): LoraOptions {
  return { rank: o.lora_rank, alpha: o.lora_alpha || 2 * o.lora_rank, targets: loraTargets(o.lora_targets), dropout: o.lora_dropout, seed };
}

// The memory a run of these options takes for a model of this config (its weights, gradients, optimizer state and
// activations, as buildModel loads it), known before it starts: for a caller that must fit it in a budget (the
// server's fine-tuning jobs).
export function trainingMemoryBytes(options: Partial<TrainOptions>, config: GPT2Config): number {
  const o = { ...DEFAULT_TRAIN_OPTIONS, ...options };
  return plannedModelBytes(config, {
    maxBatch: o.batch_size,
    recompute: o.memory_saving_gradients,
    maxSeq: o.context_length || config.nCtx,
    weightDtype: o.dtype || 'f32',
    ...(o.lora_rank > 0 && { lora: newLora(o, 0) }),
  });
}

// --dtype: how the frozen base of an adapter is held. A resumed run keeps its own unless told otherwise.
function baseWeightDtype(o: TrainOptions, lora: LoraOptions | undefined, state: TrainState | null, log: (line: string) => void): WeightDType {
  const recorded = state?.options.dtype;
  const before = typeof recorded === 'string' && (WEIGHT_DTYPES as readonly string[]).includes(recorded) ? (recorded as WeightDType) : 'f32';
  const dtype = o.dtype || before;
  if (dtype !== 'f32' && !lora) {
    throw new Error(`--dtype ${dtype} holds the frozen base of a LoRA adapter in less memory, and full fine-tuning updates every weight in float32: add --lora_rank, or drop --dtype`);
  }
  if (state && dtype !== before) log(`the run held its base in ${before} until now and goes on over ${dtype}, whose weights differ from those by rounding`);
  return dtype;
}

// What a resumed run changes of the global batch its checkpoint trained with (--batch_size x --accumulate_gradients
// x ranks), and how to keep it; null when it keeps it, or when the checkpoint does not say how many ranks it had.
// Another global batch draws other sequences from the step on: the run goes on, but will not end where it would have.
function globalBatchChange(state: TrainState, o: TrainOptions, world: number): string | null {
  const { batch_size: batchSize, accumulate_gradients: accumulate } = state.options;
  if (state.ranks === undefined || typeof batchSize !== 'number' || typeof accumulate !== 'number') return null;
  const before = batchSize * accumulate * state.ranks;
  const now = o.batch_size * o.accumulate_gradients * world;
  if (before === now) return null;
  const per = o.accumulate_gradients * world;
  const keep = before % per === 0 ? `; --batch_size ${before / per} keeps it` : '';
  return (
    `the run trained with a global batch of ${before} sequences a step (${batchSize} x ${accumulate} x ${state.ranks} rank${state.ranks > 1 ? 's' : ''}) ` +
    `and goes on with ${now} (${o.batch_size} x ${o.accumulate_gradients} x ${world}): it draws other sequences from step ${state.step} on than an uninterrupted run${keep}`
  );
}

function datasetRecord(data: Dataset): DatasetRecord {
  const bytes = data.files.reduce((sum, file) => sum + fs.statSync(file).size, 0);
  return { files: data.files.length, bytes, tokens: data.source.tokenCount, digest: tokenDigest(data.source) };
}

// What a resumed run says of a dataset that is not the one its checkpoint trained on (files added, removed or
// edited under the same --dataset, or another --dataset), or of a checkpoint that does not say; null when it is the
// same. The run goes on over the data as it is now: the sampler draws the batches from it with the state it had.
function datasetChange(state: TrainState, resumeDir: string, now: DatasetRecord): string | null {
  const before = state.dataset;
  if (before === undefined) {
    return `${resumeDir} does not record the dataset it trained on (a checkpoint from before ${STATE_FILE} kept it): whether the dataset changed since cannot be told; training goes on over it as it is now, from step ${state.step}`;
  }
  if (before.digest === now.digest && before.files === now.files && before.bytes === now.bytes) return null;
  const described = (d: DatasetRecord): string => `${plural(d.files, 'file')}, ${formatBytes(d.bytes)}, ${plural(d.tokens, 'token')}`;
  const was = described(before);
  const is = described(now);
  return `the dataset changed since ${resumeDir}: it was ${was}, and is now ${is === was ? 'as big, with other contents' : is}; training goes on over it as it is now, from step ${state.step}`;
}

// The validation windows, in a digest: validation losses compare only over the same windows, which other held-out
// data, another context length or another count of them changes.
function validationDigest(v: { inputs: Int32Array; targets: Int32Array }): string {
  const bytes = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return crypto.createHash('sha256').update(bytes(v.inputs)).update(bytes(v.targets)).digest('hex');
}

// Why the lowest validation loss of the checkpoint a run resumes from compares with none of the validations to come
// (their windows differ), which then start the lowest over; null when they compare. A checkpoint that does not record
// its windows is judged by its dataset's record where --val_split holds them out of it, and otherwise kept.
function bestIncomparable(state: TrainState, resumeDir: string, windows: string, datasetChanged: boolean, o: TrainOptions): string | null {
  const best = state.best;
  if (best === undefined || best === null) return null;
  const changed = state.validation !== undefined ? state.validation !== windows : datasetChanged && o.val_split > 0;
  if (!changed) return null;
  return (
    `the validation data differs from that of ${resumeDir} (other held-out data, or another --context_length, --val_batch_count or --val_batch_size): ` +
    `its lowest validation loss, ${best.loss.toFixed(4)} at step ${best.step}, compares with none to come, so the lowest starts over at the next validation, at step ${nextValidation(state.step, o)}, ` +
    `and ${path.join(path.dirname(resumeDir), BEST_FILE)} names the best checkpoint among those from then on`
  );
}

function nextValidation(step: number, o: TrainOptions): number {
  return (Math.floor(step / o.val_every) + 1) * o.val_every;
}

// The options that are each rank's own, for the cores of its machine; every other one the ranks must share.
const PER_RANK_OPTIONS: ReadonlySet<string> = new Set<keyof TrainOptions>(['threads', 'background']);

// Ranks given other flags than rank 0's would each train differently (another learning rate, another batch), or
// stop at other steps (--stop_after, --save_every) and wait for each other in collectives the others never make.
function checkRanksShareOptions(ranks: Ranks, o: TrainOptions): void {
  const keys = ['dataset', ...Object.keys(DEFAULT_TRAIN_OPTIONS)].filter((k) => !PER_RANK_OPTIONS.has(k)) as (keyof TrainOptions)[];
  const entries = keys.map((k) => {
    const value = String(JSON.stringify(o[k]));
    return { name: `--${k}`, key: value, shown: value };
  });
  checkRanksAgreeOn(ranks, entries, 'give every rank the same flags');
}

// Ranks that read other data under the same flag (another copy of a file, on a machine of its own) would train
// another model than the one asked for without a word: the averaged gradients keep their weights alike. `key` is the
// data's tokenDigest, where it is known already.
function checkRanksShareData(ranks: Ranks, flag: string, data: Dataset, key = tokenDigest(data.source)): void {
  const shown = `${plural(data.source.tokenCount, 'token')} in ${plural(data.source.chunkStarts.length - 1, 'chunk')}, digest ${key.slice(0, 12)}`;
  checkRanksAgreeOn(ranks, [{ name: `the data of ${flag}`, key, shown }], SAME_FILES);
}

// The ranks share the encoding of the text of `flag`'s files, and end at once where they read other text or hold
// another vocabulary.
function encodingShare(ranks: Ranks, flag: string): EncodingShare {
  return {
    rank: ranks.rank,
    size: ranks.size,
    agree: (entries) => checkRanksAgreeOn(ranks, entries.map((e) => ({ ...e, name: `${e.name} ${flag}` })), SAME_FILES),
    barrier: () => ranks.barrier(true),
    broadcast: (data, root) => ranks.broadcast(data, root),
  };
}

const SAME_FILES = 'give every rank the same files (on a file system every machine shares, or identical copies)';

// A training run: resume, build, data, then the loop, which saves checkpoints as it goes (rank 0 alone).
export async function train(options: Partial<TrainOptions> & { dataset: string }, io: TrainIO = {}): Promise<TrainResult> {
  const given = definedFields(options);
  const o: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...given, dataset: options.dataset };
  checkOptions(o, given);
  // Datasets that are not there are said before a model is looked for or loaded, which may take minutes.
  datasetFiles(o.dataset);
  if (o.val_dataset) datasetFiles(o.val_dataset);
  const ranks = io.ranks ?? null;
  if (o.zero === 1 && !ranks) throw new Error('--zero 1 shards the optimizer state across the ranks of an MPI job: start bin/train with mpirun (see docs/training.md: "Several GPUs and machines")');
  const root = !ranks || ranks.rank === 0;
  const log = root ? (io.log ?? ((line: string) => console.log(line))) : () => undefined;
  const world = ranks?.size ?? 1;
  const runDir = path.join(o.checkpoint_dir, o.run_name);
  ranks?.setTimeout(o.collective_timeout);
  if (ranks) checkRanksShareOptions(ranks, o);

  // One run at a time in a run folder (rank 0 writes it): two would each resume from, replace and prune the other's
  // checkpoints, and sweep away the one the other is saving.
  const lock = (): (() => void) => lockFolder(runDir, 'a training run');
  const release = ranks ? onRank0(ranks, lock) : lock();
  let started: { start: Start; model: Model; tokenizer: Tokenizer };
  try {
    const start = findStart(o, runDir, ranks);
    started = { start, ...(await buildModel(o, given, start, runDir, ranks, log)) };
  } catch (err) {
    release?.();
    throw err;
  }
  const { start: { resumeDir, state, seed }, model, tokenizer } = started;
  let generator: Generator | null = null;
  let metrics: MetricsLog | null = null;
  const sources: Dataset[] = [];
  try {
    const T = contextLength(o, model.config.nCtx, 'the model');
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new Error(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary only ${model.config.vocabSize} (tokenizer ${tokenizer.vocab.files.encoderPath})`);
    }
    if (o.only_train_transformer_layers) model.setTrainable((name) => name.startsWith('h.'));
    if (state && o.optimizer === 'adam') {
      const file = path.join(resumeDir as string, OPTIMIZER_FILE);
      if (fs.existsSync(file)) await model.loadOptimizer(file);
      else log(`${resumeDir} has no Adam state (${OPTIMIZER_FILE}); Adam starts afresh`);
    }
    const n = model.tensors.reduce((s, t) => s + t.numel, 0);
    const trained = model.lora ? `, ${(model.memory().grads / 4).toLocaleString('en-US')} of them trained (the adapter's)` : '';
    log(`model: ${n >= 1e5 ? `${(n / 1e6).toFixed(1)}M` : n.toLocaleString('en-US')} parameters${trained}; batches of ${o.batch_size} x ${T} tokens${o.accumulate_gradients > 1 ? `, ${o.accumulate_gradients} accumulated per step` : ''}`);
    if (ranks) {
      log(
        `data-parallel: ${world} ranks (${ranks.localSize} on this machine, ${model.device()} each) over ${ranks.library}; ` +
          `global batch ${o.batch_size} x ${o.accumulate_gradients} x ${world} = ${o.batch_size * o.accumulate_gradients * world} sequences of ${T} tokens per step`,
      );
      const advice = ctrlCAdvice(ranks);
      if (advice) log(advice);
      if (o.zero === 1) log(`ZeRO-1: each rank keeps Adam's moments of 1/${world} of the parameters (${(model.memory().optimizer / 2 ** 20).toFixed(1)} MiB on rank 0)`);
      const loaded = resumeDir ? `--restore_from ${o.restore_from} (${resumeDir})` : o.fresh_model ? `--fresh_model of --seed ${seed}` : `--model_name ${o.model_name}`;
      checkRanksAgree(ranks, model, 'at start', `, loaded from ${loaded}: give every rank the same model files (on a file system every machine shares, or identical copies)`);
    }

    const changedBatch = state ? globalBatchChange(state, o, world) : null;
    if (changedBatch) log(`warning: ${changedBatch}`);

    // ---- data
    // Little chat overfits a pre-trained model; a fresh one is as small as its data wants.
    const data = await loadChecked(o.dataset, '--dataset', o, tokenizer, log, !o.fresh_model, ranks);
    sources.push(data);
    const dataset = datasetRecord(data);
    if (ranks) checkRanksShareData(ranks, '--dataset', data, dataset.digest);
    log(`dataset: ${describeTokens(data.source.tokenCount, data.source.chunkStarts.length - 1, data.files.length)}`);
    const changedData = state ? datasetChange(state, resumeDir as string, dataset) : null;
    if (changedData) log(changedData);
    const percent = `${+(100 * o.val_split).toFixed(2)}%`;
    const held = o.val_split > 0 ? new ChunkParts(data.source, 1 - o.val_split, 1, `the last ${percent} of each chunk of ${data.source.description} (--val_split)`) : null;
    const sampler = new WindowSampler(held ? new ChunkParts(data.source, 0, 1 - o.val_split, data.source.description) : data.source, T + 1);
    const short = sampler.shortWarning();
    if (short) log(`warning: ${short}`);
    if (held) log(`held out for validation: the last ${percent} of each chunk, ${held.tokenCount.toLocaleString('en-US')} tokens`);
    // A token file keeps no chat summary: a resumed run keeps the audiences it had.
    const audiences = data.chat?.audiences ?? state?.audiences ?? [];
    const dataRng = state ? Rng.fromState(state.dataRng) : new Rng(seed);
    const sampleRng = state ? Rng.fromState(state.sampleRng) : new Rng(seed ^ 0x5bd1e995);
    const inputs = new Int32Array(o.batch_size * T);
    const targets = new Int32Array(o.batch_size * T);
    const slice = { first: (ranks?.rank ?? 0) * o.batch_size, count: o.batch_size };

    // A fixed validation set, drawn once; evaluated in pieces of at most batch_size rows (the memory planned).
    let validation: { inputs: Int32Array; targets: Int32Array } | null = null;
    if (o.val_every > 0) {
      const valData = o.val_dataset ? await loadChecked(o.val_dataset, '--val_dataset', o, tokenizer, log, false, ranks) : data;
      if (valData !== data) {
        sources.push(valData);
        if (ranks) checkRanksShareData(ranks, '--val_dataset', valData);
      }
      const rows = o.val_batch_count * o.val_batch_size;
      validation = { inputs: new Int32Array(rows * T), targets: new Int32Array(rows * T) };
      const valSampler = new WindowSampler(held ?? valData.source, T + 1);
      const valShort = valSampler.shortWarning();
      if (valShort) log(`warning: validation: ${valShort}`);
      valSampler.batch(new Rng(VALIDATION_SEED), rows, validation.inputs, validation.targets);
    }
    const windows = validation === null ? undefined : validationDigest(validation);
    const incomparable = state && windows !== undefined ? bestIncomparable(state, resumeDir as string, windows, changedData !== null && state.dataset !== undefined, o) : null;
    if (incomparable) log(incomparable);
    // Data-parallel, batch i is rank i % world's; the others' entries stay 0 in the sum, which leaves each
    // batch's loss exact, so that the total is the one a single rank computes.
    const validate = async (): Promise<number> => {
      const v = validation as { inputs: Int32Array; targets: Int32Array };
      let losses = new Array<number>(o.val_batch_count).fill(0);
      for (let batch = ranks?.rank ?? 0; batch < o.val_batch_count; batch += world) {
        let batchSum = 0;
        for (let row = 0; row < o.val_batch_size; row += o.batch_size) {
          const rows = Math.min(o.batch_size, o.val_batch_size - row);
          const at = (batch * o.val_batch_size + row) * T;
          batchSum += rows * (await model.forward(v.inputs.subarray(at, at + rows * T), v.targets.subarray(at, at + rows * T), rows, T));
        }
        losses[batch] = batchSum / o.val_batch_size;
      }
      if (ranks) losses = sumOverRanks(ranks, losses);
      const loss = losses.reduce((a, b) => a + b, 0) / o.val_batch_count;
      // Every rank decides by it (the best checkpoint, early stopping), and sums over ranks may differ in their last
      // bits from rank to rank: rank 0's is the one.
      return ranks ? numberFromRank0(ranks, loss) : loss;
    };

    // ---- bookkeeping
    let step = state?.step ?? 0;
    const startStep = step;
    let lossAverage: [number, number] = state ? [...state.lossAverage] : [0, 0];
    let tokens = state?.tokens ?? 0;
    let trainSeconds = state?.trainSeconds ?? 0;
    let runSeconds = 0;
    let firstLoss = NaN;
    let valLoss: number | null = null;
    let best: BestValidation | null = incomparable ? null : state?.best ?? null;
    let checkpoint: string | null = resumeDir;
    let savedStep = state ? step : -1;
    let lastSaveTime = Date.now();
    let lastPlot = 0;
    const sampleDir = path.join(o.sample_dir, o.run_name);
    if (root) {
      fs.mkdirSync(runDir, { recursive: true });
      metrics = await MetricsLog.open(path.join(runDir, 'metrics.jsonl'), state ? step : null);
      // Now, not at the first sample, a hundred steps into the run.
      if (o.sample_every > 0) {
        try {
          fs.mkdirSync(sampleDir, { recursive: true });
        } catch (err) {
          throw new Error(`--sample_dir: cannot make ${sampleDir}: ${(err as Error).message}`);
        }
      }
    }
    // A log that cannot be appended to (a full disk or quota, a file size limit, a failing disk) stops the run after
    // this step with a checkpoint, as Ctrl-C does: going on would train for hours towards a save that the same disk
    // most likely refuses too, and a run whose log has a hole in it would go on unnoticed.
    let metricsFailure: Error | null = null;
    const record = (r: MetricRecord): void => {
      if (metrics !== null && metricsFailure === null) {
        try {
          metrics.append(r);
        } catch (err) {
          metricsFailure = err as Error;
          log(`${metricsFailure.message}: stopping after this step, then saving`);
        }
      }
      if (root) io.onMetrics?.(r);
    };
    const plot = async (force: boolean): Promise<void> => {
      if (!metrics || (!force && Date.now() - lastPlot < PLOT_INTERVAL_MS)) return;
      lastPlot = Date.now();
      // A picture of the metrics log, which holds the same: losing it is no reason to lose the steps since the last
      // checkpoint, or to call a run whose checkpoint was saved a failure.
      await plotMetrics((metrics as MetricsLog).file).catch((err: Error) => log(`warning: the loss plot was not written (${err.message}); training goes on`));
    };

    // Rank 0 writes; under ZeRO-1 the other ranks read their shards of Adam's moments along. Then the ranks check
    // that they still hold the same weights. A checkpoint of a new lowest validation loss is named `best` before the
    // plot is redrawn, which rings it.
    const save = async (): Promise<void> => {
      if (!root) {
        // Under ZeRO-1 rank 0 writes and syncs the weights before it reads the first of Adam's moments from the others,
        // and syncs the moments before the last read: a slow disk, not a stalled rank, so no time limit.
        ranks?.setTimeout(0);
        try {
          if (o.optimizer === 'adam') await model.followOptimizerSave();
        } finally {
          ranks?.setTimeout(o.collective_timeout);
        }
        savedStep = step;
        lastSaveTime = Date.now();
        await afterRank0Alone(`at step ${step}`);
        return;
      }
      const saved: TrainState = {
        step,
        seed,
        dataRng: dataRng.state,
        sampleRng: sampleRng.state,
        lossAverage,
        tokens,
        trainSeconds,
        audiences,
        best,
        options: { ...o, dtype: model.weightDtype },
        ranks: world,
        dataset,
        validation: windows ?? state?.validation,
      };
      const started = Date.now();
      checkpoint = await saveCheckpoint(runDir, model, tokenizer, saved, { maxToKeep: o.max_to_keep, withOptimizer: o.optimizer === 'adam', keepBest: o.keep_best, onPhase: io.onSavePhase });
      savedStep = step;
      lastSaveTime = Date.now();
      log(`saved ${checkpoint} (${duration((Date.now() - started) / 1000)})`);
      await plot(true);
      await afterRank0Alone(`at step ${step}`);
    };

    // Where the other ranks wait, without a timeout, for what rank 0 does alone (saves, samples); rank 0, the last to
    // come, waits there for a rank that has stopped meanwhile within the timeout, as in any collective.
    const afterRank0Alone = async (when: string | null): Promise<void> => {
      if (!ranks) return;
      await ranks.barrier(root);
      if (when) checkRanksAgree(ranks, model, when);
    };

    // Whether the validation loss of held-out data went below the lowest so far, at a step past the start (the
    // model the run started from is already on disk).
    const runValidation = async (): Promise<boolean> => {
      const loss = await validate();
      valLoss = loss;
      record({ type: 'val', step, loss, time: trainSeconds });
      const lower = heldOut(o) && (best === null || loss < best.loss);
      if (lower) best = { step, loss, validationsSince: 0 };
      else if (heldOut(o) && best !== null) best = { ...best, validationsSince: best.validationsSince + 1 };
      log(`[${step} | ${duration(trainSeconds)}] validation loss ${loss.toFixed(4)}${lower && step > 0 ? ' (the lowest yet)' : ''}`);
      await plot(true);
      return lower && step > 0;
    };
    const earlyStop = (): boolean => o.early_stopping > 0 && best !== null && best.validationsSince >= o.early_stopping;

    const generateSamples = async (): Promise<void> => {
      // Said first: 124M's default sample of 1023 tokens takes as long as several of its steps on a CPU, and the run
      // would seem stuck meanwhile.
      log(`drawing ${plural(o.sample_num, 'sample')} of up to ${plural(o.sample_length, 'token')} (--sample_every ${o.sample_every}, --sample_num ${o.sample_num}, --sample_length ${o.sample_length})`);
      generator ??= new Generator(model, tokenizer, { slots: o.sample_num });
      const g = generator;
      const texts = await Promise.all(
        Array.from({ length: o.sample_num }, () =>
          g.generate([tokenizer.eotToken], {
            maxTokens: o.sample_length,
            topK: o.top_k,
            topP: o.top_p > 0 ? o.top_p : 1,
            minP: o.min_p,
            temperature: 1,
            stopTokens: [],
            seed: sampleRng.nextU32(),
            signal: io.signal,
          }),
        ),
      );
      // A sample the run's stop cut short says so: the run resumed draws the next step's samples, not these again.
      const cut = (r: GenerateResult): string => (r.finishReason === 'aborted' ? '\n(cut short: the run was stopped while drawing it)' : '');
      const out = texts.map((r, i) => `${'='.repeat(20)} SAMPLE ${i + 1} ${'='.repeat(20)}\n${r.text}${cut(r)}\n`).join('');
      log(out.trimEnd());
      const file = path.join(sampleDir, `samples-${step}`);
      // Samples are there to be read: losing one file is no reason to lose the steps since the last checkpoint.
      await writeTextAtomic(file, out).catch((err: Error) => log(`warning: the samples were not written to ${file} (${err.message}); training goes on`));
    };

    // Where training starts; a resumed run keeps to the schedule of the run it continues.
    if (validation && !state) await runValidation();
    if (o.stop_after > 0 && step >= o.stop_after) log(`nothing to train: the run is at step ${step} already, and --stop_after is ${o.stop_after} (raise it to train on)`);
    else if (!earlyStop()) log(`training from step ${step}${o.stop_after ? ` to ${o.stop_after}` : ''}${o.save_on_ctrlc ? '; Ctrl-C saves and stops' : ''}`);
    let stoppedBy: TrainResult['stoppedBy'] = 'signal';
    let logFailed = false;
    const loopStart = performance.now();

    // ---- the loop
    for (;;) {
      if (o.stop_after > 0 && step >= o.stop_after) {
        stoppedBy = 'stop_after';
        break;
      }
      if (earlyStop()) {
        const b = best as BestValidation;
        log(`stopping early: ${b.validationsSince} validations in a row above step ${b.step}'s loss of ${b.loss.toFixed(4)} (--early_stopping ${o.early_stopping})`);
        stoppedBy = 'early_stopping';
        break;
      }
      // A stop that any rank was asked for stops every rank, after the same step. Rank 0 says which ranks were asked
      // when it was not: a signal to one rank (kill <pid>) is otherwise said by none, rank 0 alone writing.
      const stopAsked = metricsFailure !== null ? METRICS_FAILED : io.signal?.aborted ? 1 : 0;
      if (!ranks) {
        logFailed = stopAsked === METRICS_FAILED;
        if (stopAsked) break;
      } else {
        const asked = new Array<number>(world).fill(0);
        asked[ranks.rank] = stopAsked;
        const sums = sumOverRanks(ranks, asked);
        logFailed = sums[0] === METRICS_FAILED;
        const askedRanks = sums.flatMap((a, r) => (a > 0 ? [r] : []));
        if (askedRanks.length > 0) {
          if (!stopAsked) log(`stopping at step ${step}: ${rankList(askedRanks)} ${askedRanks.length > 1 ? 'were' : 'was'} asked to stop (a signal)${o.save_on_ctrlc ? ', then saving' : ', without saving (--no-save_on_ctrlc)'}`);
          break;
        }
      }

      const started = performance.now();
      const reduceBefore = ranks?.reduceSeconds() ?? 0;
      const lr = learningRate(o, step);
      model.zeroGrad();
      let loss = 0;
      for (let micro = 0; micro < o.accumulate_gradients; micro++) {
        sampler.batch(dataRng, o.batch_size * world, inputs, targets, slice);
        loss += await model.forward(inputs, targets, o.batch_size, T, undefined, { step, microBatch: micro });
        await model.backward();
      }
      loss /= o.accumulate_gradients;
      const scale = { gradScale: 1 / o.accumulate_gradients, gradClip: o.grad_clip };
      const gradNorm = await model.step(o.optimizer === 'adam' ? { optimizer: 'adamw', lr, ...scale, ...ADAM } : { optimizer: 'sgd', lr, ...scale });
      if (ranks) loss = sumOverRanks(ranks, [loss])[0] / world;
      const seconds = (performance.now() - started) / 1000;
      const reduceSeconds = (ranks?.reduceSeconds() ?? 0) - reduceBefore;
      step++;

      const stepTokens = o.batch_size * T * o.accumulate_gradients * world;
      tokens += stepTokens;
      trainSeconds += seconds;
      runSeconds += seconds;
      if (step === startStep + 1) firstLoss = loss;
      lossAverage = [lossAverage[0] * AVERAGE_DECAY + loss, lossAverage[1] * AVERAGE_DECAY + 1];
      const avg = lossAverage[0] / lossAverage[1];
      record({ type: 'train', step, loss, avg, lr, grad_norm: gradNorm, tokens_per_s: stepTokens / seconds, time: trainSeconds, ...(ranks ? { reduce_s: reduceSeconds } : {}) });
      // The ETA counts everything the loop does (samples, validation, saves), not just the steps.
      const eta = o.stop_after > 0 ? ` | ETA ${duration(((o.stop_after - step) * (performance.now() - loopStart)) / 1000 / (step - startStep))}` : '';
      log(
        `[${step} | ${duration(trainSeconds)}] loss ${loss.toFixed(4)} avg ${avg.toFixed(4)} | lr ${lr.toExponential(2)}` +
          ` | ${Math.round(stepTokens / seconds).toLocaleString('en-US')} tok/s${ranks ? ` (${world} ranks, ${Math.round((100 * reduceSeconds) / seconds)}% reducing)` : ''}${eta}`,
      );

      // Validation and samples first, so that a checkpoint of this step holds the validation's result and the
      // sampler's state after the samples: a run resumed from it draws the samples this one goes on to draw.
      const saveBest = validation !== null && step % o.val_every === 0 && (await runValidation()) && o.keep_best;
      if (o.sample_every > 0 && step % o.sample_every === 0) {
        if (root) await generateSamples();
        await afterRank0Alone(null);
      }
      // Rank 0's clock decides a save by time, so that no rank saves alone.
      const dueByTime = o.save_time > 0 && Date.now() - lastSaveTime >= o.save_time * 60_000;
      if (saveBest || (o.save_every > 0 && step % o.save_every === 0) || (o.save_time > 0 && (ranks ? fromRank0(ranks, dueByTime) : dueByTime))) await save();
      await plot(false);
    }

    // A stop for the log's failure saves whatever --save_on_ctrlc says, which is for stops the user asks for.
    const saving = step !== savedStep && (stoppedBy !== 'signal' || o.save_on_ctrlc || logFailed);
    // Rank 0's, also where the log failed at the run's last step (--stop_after, --early_stopping).
    const failure = metricsFailure as Error | null;
    if (failure !== null) {
      const saveFailure = saving ? await save().then(() => null, (err: Error) => err) : null;
      throw new Error(`${failure.message}: training stopped at step ${step}; ${saveFailure?.message ?? `${checkpoint} is saved`}`, { cause: failure });
    }
    if (logFailed) {
      if (saving) await save();
      throw new Error(`rank 0 could not write its metrics log: stopped at step ${step}`);
    }
    if (saving) await save();
    else await plot(true);
    const bestDir = bestCheckpoint(runDir);
    if (best !== null) {
      // A run stopped before its first validation has nothing to say of the validation loss, and no `best` yet.
      const unvalidated = best.step === 0 && best.validationsSince === 0;
      log(unvalidated
        ? `no validation since the starting model's (${best.loss.toFixed(4)})${o.val_every > 0 ? `, the next being at step ${nextValidation(step, o)} (--val_every ${o.val_every})` : ''}: ${path.join(runDir, BEST_FILE)} names a checkpoint once a validation does better`
        : best.step === 0
        ? `the validation loss never went below the starting model's (${best.loss.toFixed(4)}): more data, a lower --learning_rate or a smaller model may help`
        : `lowest validation loss ${best.loss.toFixed(4)}, at step ${best.step}${bestDir ? `: ${bestDir} (also ${path.join(runDir, BEST_FILE)})` : ''}`);
    }
    return {
      runDir,
      step,
      stepsThisRun: step - startStep,
      checkpoint,
      firstLoss,
      lastAverage: lossAverage[1] > 0 ? lossAverage[0] / lossAverage[1] : NaN,
      valLoss,
      tokensPerSecond: runSeconds > 0 ? ((step - startStep) * o.batch_size * T * o.accumulate_gradients * world) / runSeconds : 0,
      stoppedBy,
      best: best === null ? null : { ...best, checkpoint: bestDir },
    };
  } finally {
    await (generator as Generator | null)?.close();
    (metrics as MetricsLog | null)?.close();
    for (const d of sources) d.source.close();
    model.dispose();
    release?.();
  }
}
