// generation_config.json: the sampling defaults a Hugging Face model folder carries, which transformers' generate()
// and vLLM take where a request sets none. dixie takes them the same way (a request, a flag or the server's config
// for the model over them, dixie's own defaults under them), where it computes what they ask for:
//   do_sample false        greedy (temperature 0), whatever temperature says, as transformers ignores it then
//   temperature, top_k, top_p, min_p      as dixie's, under the same names (top_k 0 and top_p 1: off)
//   repetition_penalty r   dixie's penalize 1/r: transformers divides a used token's positive logit by r and
//                          multiplies a negative one, which penalize p does with p = 1/r (r 1: off)
//   max_new_tokens         the reply's length at most
//   eos_token_id           the token, or list of tokens, that ends a reply (<|endoftext|> without it)
// Only the fields the file holds count: transformers' own defaults for the others (top_k 50 where do_sample is true)
// are not assumed, as vLLM does not assume them. A field that would change the text in a way dixie cannot (beam
// search, max_length, bad_words_ids) is named in `ignored`, for whoever loads the model to warn of once.
import fs from 'node:fs';
import path from 'node:path';
import { GGUF_SAMPLING_KEYS, type GgufFile, ggufFileIn, openGguf } from './gguf';
import { safetensorsWeights } from './model_folder';
import { readJsonObject } from '../util/json_file';
import { quoted } from '../util/quoted';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

export interface GenerationDefaults {
  temperature?: number;   // 0: greedy (do_sample false)
  topK?: number;
  topP?: number;
  minP?: number;
  penalize?: number;      // 1 / repetition_penalty; 0: off
  maxTokens?: number;     // max_new_tokens
  stopTokens?: number[];  // eos_token_id
}

export interface GenerationConfig {
  file: string;
  json: Record<string, unknown>;  // as read: what Model.save writes back, every field kept
  defaults: GenerationDefaults;
  ignored: string[];              // a warning for each field dixie does not honour
}

// Fields that say nothing about the text generated (what a file records, what generate() returns besides the text).
const METADATA = new Set([
  '_from_model_config', 'transformers_version', 'bos_token_id', 'pad_token_id', 'decoder_start_token_id', 'use_cache',
  'return_dict_in_generate', 'output_scores', 'output_logits', 'output_attentions', 'output_hidden_states',
]);

// transformers' values of fields that change nothing at them: a file that spells one out asks for nothing dixie lacks.
const NEUTRAL: Readonly<Record<string, unknown>> = {
  num_beams: 1, num_beam_groups: 1, num_return_sequences: 1, no_repeat_ngram_size: 0, length_penalty: 1, early_stopping: false,
  typical_p: 1, epsilon_cutoff: 0, eta_cutoff: 0, diversity_penalty: 0, encoder_repetition_penalty: 1, min_length: 0, min_new_tokens: 0,
};

const WHY_IGNORED: Readonly<Record<string, string>> = {
  max_length: 'dixie bounds the reply alone (max_new_tokens), not the prompt and reply together',
  repetition_penalty: 'below 1 it makes used tokens more likely, and dixie\'s penalty only makes them less likely',
  bad_words_ids: 'dixie bans no token sequences (a request\'s logit_bias of -100 bans single tokens)',
};

// The folder's generation_config.json, or where it has none and its model is a GGUF file, the sampling defaults of
// that file's metadata (GGUF_SAMPLING_KEYS, as bin/export-gguf writes them) in generation_config.json's names; null
// where there are none. A value of the wrong kind or range is refused, naming the file and field (a GGUF file's is
// left out, named in `ignored`); token ids are checked against the model's `vocabSize`. `opened`: that GGUF file,
// opened already by the model's load, whose header is then not read again.
export function readGenerationConfig(dir: string, vocabSize: number, opened?: GgufFile): GenerationConfig | null {
  const file = path.join(dir, GENERATION_CONFIG_FILE);
  if (fs.existsSync(file)) return generationConfigOf(file, readJsonObject(file), vocabSize);
  if (opened !== undefined) return ggufGenerationConfig(opened, vocabSize);
  const gguf = safetensorsWeights(dir) === undefined ? ggufFileIn(dir) : null;
  if (gguf === null) return null;
  const g = openGguf(gguf);
  try {
    return ggufGenerationConfig(g, vocabSize);
  } finally {
    g.close();
  }
}

function ggufGenerationConfig(g: GgufFile, vocabSize: number): GenerationConfig | null {
  const gguf = g.path;
  // As llama.cpp reads them, which loads a file whatever their values: top_k <= 0 and min_p <= 0 are off, temp <= 0
  // greedy. A value dixie has no meaning for is left out with a warning rather than making the model unloadable.
  const json: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const { key, field } of GGUF_SAMPLING_KEYS) {
    if (!g.metadata.has(key)) continue;
    const raw = g.metadata.get(key);
    const value = typeof raw !== 'number' ? raw : (field === 'top_k' || field === 'min_p' || field === 'temperature') && raw < 0 ? 0 : raw;
    try {
      generationConfigOf(gguf, { [field]: value }, vocabSize);
      json[field] = value;
    } catch {
      ignored.push(`${gguf}: metadata "${key}" is ${quoted(raw)}, which dixie does not honour`);
    }
  }
  if (Object.keys(json).length === 0) return ignored.length === 0 ? null : { file: gguf, json, defaults: {}, ignored };
  const config = generationConfigOf(gguf, json, vocabSize);
  return { ...config, ignored: [...ignored, ...config.ignored] };
}

function generationConfigOf(file: string, json: Record<string, unknown>, vocabSize: number): GenerationConfig {
  const refuse = (field: string, rule: string): never => {
    throw new Error(`${file}: field "${field}" must be ${rule}, got ${quoted(json[field])}`);
  };
  const number = (field: string, ok: (v: number) => boolean, rule: string): number | undefined => {
    const v = json[field];
    if (v === undefined || v === null) return undefined;
    return typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : refuse(field, rule);
  };
  const tokenId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) < vocabSize;
  const defaults: GenerationDefaults = {};
  const ignored: string[] = [];
  const ignore = (field: string): void => {
    const why = Object.hasOwn(WHY_IGNORED, field) ? `: ${WHY_IGNORED[field]}` : '';
    ignored.push(`${file}: field "${field}" is ${JSON.stringify(json[field])}, which dixie does not honour${why}`);
  };

  const doSample = json.do_sample;
  if (doSample !== undefined && doSample !== null && typeof doSample !== 'boolean') refuse('do_sample', 'true or false');
  const temperature = number('temperature', (v) => v >= 0, 'a number >= 0');
  if (doSample === false) defaults.temperature = 0;
  else if (temperature !== undefined) defaults.temperature = temperature;
  const topK = number('top_k', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0 (0: off)');
  if (topK !== undefined) defaults.topK = topK;
  const topP = number('top_p', (v) => v > 0 && v <= 1, 'a number above 0, at most 1 (1: off)');
  if (topP !== undefined) defaults.topP = topP;
  const minP = number('min_p', (v) => v >= 0 && v < 1, 'a number from 0 (off) to below 1');
  if (minP !== undefined) defaults.minP = minP;
  const penalty = number('repetition_penalty', (v) => v > 0, 'a number above 0 (1: off)');
  if (penalty !== undefined && penalty >= 1) defaults.penalize = penalty === 1 ? 0 : 1 / penalty;
  else if (penalty !== undefined) ignore('repetition_penalty');
  const maxNewTokens = number('max_new_tokens', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1');
  if (maxNewTokens !== undefined) defaults.maxTokens = maxNewTokens;
  const eos = json.eos_token_id;
  if (eos !== undefined && eos !== null) {
    const ids = Array.isArray(eos) ? eos : [eos];
    if (ids.length === 0 || !ids.every(tokenId)) refuse('eos_token_id', `a token id of the model (an integer in [0, ${vocabSize})) or a non-empty list of them`);
    defaults.stopTokens = [...new Set(ids as number[])];
  }

  const honoured = new Set(['do_sample', 'temperature', 'top_k', 'top_p', 'min_p', 'repetition_penalty', 'max_new_tokens', 'eos_token_id']);
  for (const [field, value] of Object.entries(json)) {
    if (honoured.has(field) || METADATA.has(field) || value === null || (Object.hasOwn(NEUTRAL, field) && NEUTRAL[field] === value)) continue;
    ignore(field);
  }
  return { file, json, defaults, ignored };
}
