// The sampling and model-loading flags of generate and chat, under the TensorFlow tools' names (docs/compatibility.md), each command with
// its own defaults, which a model folder's generation_config.json sets over; and their translation into lib/generate's settings.
import { definedFields, modelSampling } from '../../lib/generate/generate';
import { SAMPLING_FIELDS, SamplingError, type SamplingOptions } from '../../lib/generate/sequence';
import type { Model } from '../../lib/engine/model';
import { WEIGHT_DTYPES, type WeightDType } from '../../lib/engine/native';

export interface SamplingDefaults {
  temperature: number;
  top_k: number;
  penalize: number;
  seed: string;  // what the seed means for this command's outputs
}

// The model the command loads: --restore_from names one as --model_name does, and the two given together are
// refused rather than one passed over.
export const DEFAULT_MODEL = '124M';
export function modelToLoad(argv: { model_name?: string; restore_from?: string }): string {
  if (argv.model_name !== undefined && argv.restore_from !== undefined) {
    throw new Error(`--model_name ${argv.model_name} and --restore_from ${argv.restore_from} both name the model to load: give one of them`);
  }
  return argv.restore_from ?? argv.model_name ?? DEFAULT_MODEL;
}

// A flag's default, as its help says it: the model folder's, else the command's.
export function modelDefault(value: number | string): string {
  return `[default: the model's generation_config.json, else ${value}]`;
}

export function samplingFlags(d: SamplingDefaults) {
  return {
    temperature: { type: 'number', describe: `randomness: 0 is greedy ${modelDefault(d.temperature)}` },
    top_k: { type: 'number', describe: `sample from the k most likely tokens (0: all) ${modelDefault(d.top_k)}` },
    top_p: { type: 'number', describe: `nucleus sampling: the smallest set of tokens holding this probability (0 or 1: off) ${modelDefault(1)}` },
    min_p: { type: 'number', describe: `keep only tokens at least this fraction as likely as the most likely, e.g. 0.05 (0: off) ${modelDefault(0)}` },
    penalize: { type: 'number', describe: `repetition penalty in (0, 1] for tokens already in the text, e.g. 0.85 (0: off; the model's repetition_penalty r is 1/r) ${modelDefault(d.penalize)}` },
    presence_penalty: { type: 'number', default: 0, describe: 'OpenAI\'s presence penalty, from -2 to 2: taken from the logit of every token generated so far' },
    frequency_penalty: { type: 'number', default: 0, describe: 'OpenAI\'s frequency penalty, from -2 to 2: taken from a generated token\'s logit once for each time it was generated' },
    seed: { type: 'number', describe: d.seed },
    dtype: { choices: WEIGHT_DTYPES, default: 'f32' as WeightDType, describe: 'weights in memory: f16/bf16 half of f32, q8_0 (8-bit matrices) about a quarter' },
    threads: { type: 'number', default: 0, describe: 'CPU threads (0: one per core)' },
  } as const;
}

export function checkSeed(seed: number | undefined): void {
  if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) throw new Error(`--seed must be an integer >= 0, got ${seed}`);
}

// The flags given, over the model's defaults (its generation_config.json: modelSampling), over the command's `d`.
export function samplingOptions(argv: { temperature?: number; top_k?: number; top_p?: number; min_p?: number; penalize?: number; presence_penalty: number; frequency_penalty: number }, d: SamplingDefaults, model: Model): SamplingOptions {
  const given = {
    temperature: argv.temperature,
    topK: argv.top_k,
    topP: argv.top_p === 0 ? 1 : argv.top_p,  // --top_p 0 means off
    minP: argv.min_p,
    penalize: argv.penalize,
  };
  return {
    temperature: d.temperature,
    topK: d.top_k,
    topP: 1,
    minP: 0,
    penalize: d.penalize,
    ...modelSampling(model),
    ...definedFields(given),
    presencePenalty: argv.presence_penalty,
    frequencyPenalty: argv.frequency_penalty,
  };
}

// An error as a command says it: a sampling setting the sampler refuses, under its flag's name.
export function commandError(err: unknown): string {
  if (err instanceof SamplingError) return err.describe(`--${SAMPLING_FIELDS[err.field]}`);
  return err instanceof Error ? err.message : String(err);
}
