// What a folder of GPT-2 weights holds. Four layouts exist in the wild:
//   huggingface     config.json + model.safetensors (+ vocab.json/merges.txt): what dixie reads and writes; or, for a
//                   model over save_pretrained's max_shard_size, its shards and model.safetensors.index.json;
//   gguf            model.gguf (or the folder's one .gguf file of another name): llama.cpp's file, its config and
//                   vocabulary in its metadata (vocabulary files beside it win), read where there is no model.safetensors;
//   openai-release  OpenAI's release: hparams.json + encoder.json + vocab.bpe + a TF checkpoint (model.ckpt.*);
//   tf-run          a TensorFlow training run: a `checkpoint` file naming model-1234, with
//                   model-1234.index + .data-* (hparams and vocabulary usually live with the base model).
import fs from 'node:fs';
import path from 'node:path';
import type { NativeConfig } from '../engine/native';
import { finishInterruptedSave } from '../util/atomic_file';
import { readJsonObject } from '../util/json_file';
import { quoted } from '../util/quoted';
import { GGUF_FILE, ggufConfig, ggufFileIn, ggufVocabulary, openGguf } from './gguf';
import { SHARDS_INDEX_SUFFIX } from './safetensors';
import { TOKENIZER_JSON } from '../tokenizer/vocab';

export type GPT2Config = NativeConfig;
export type ModelFolderKind = 'huggingface' | 'gguf' | 'openai-release' | 'tf-run';

// The BPE vocabulary as two files: the token -> id map (encoder.json / vocab.json, same format) and the
// merge list (vocab.bpe / merges.txt, same format); without them, both are tokenizer.json, which holds the two, or
// for a GGUF folder the GGUF file, whose metadata holds the vocabulary.
export interface VocabFiles {
  encoder: string;
  merges: string;
}

export interface ModelFolder {
  dir: string;
  kind: ModelFolderKind;
  config: GPT2Config | null;  // null only for a tf-run folder without hparams.json
  configFile: string | null;  // config.json, hparams.json, or model.gguf (its metadata)
  weights: string;            // model.safetensors (or its shards' index), model.gguf, or the TF checkpoint prefix (…/model.ckpt, …/model-1234)
  vocab: VocabFiles | null;
}

const PICKLE_FILES = ['pytorch_model.bin', 'pytorch_model.bin.index.json'];

const VOCAB_PAIRS: readonly [string, string][] = [['vocab.json', 'merges.txt'], ['encoder.json', 'vocab.bpe']];

// Whether `file` is there. What else stops a stat (a symlink loop, no permission) is said, naming the file: taken for
// absence, it would be reported as a file missing (an interrupted download?) that is there.
function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch (err) {
    const { code } = err as NodeJS.ErrnoException;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new Error(`${file}: cannot be read: ${(err as Error).message}`);
  }
}

export function findVocabulary(dir: string): VocabFiles | null {
  for (const [encoder, merges] of VOCAB_PAIRS) {
    const e = path.join(dir, encoder);
    const m = path.join(dir, merges);
    if (exists(e) && exists(m)) return { encoder: e, merges: m };
  }
  const tokenizerJson = path.join(dir, TOKENIZER_JSON);
  return exists(tokenizerJson) ? { encoder: tokenizerJson, merges: tokenizerJson } : null;
}

function positiveInt(file: string, json: Record<string, unknown>, field: string): number {
  const value = json[field];
  if (value === undefined) throw new Error(`${file}: missing field "${field}"`);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`${file}: field "${field}" must be a positive integer, got ${quoted(value)}`);
  }
  return value;
}

function checkHeads(file: string, config: GPT2Config, headField: string, embdField: string): GPT2Config {
  if (config.nEmbd % config.nHead !== 0) {
    throw new Error(`${file}: field "${embdField}" (${config.nEmbd}) must be a multiple of "${headField}" (${config.nHead})`);
  }
  return config;
}

// The config.json field of each size, in Hugging Face's GPT-2 naming: the context is n_positions, or n_ctx in
// older files.
export function hfConfigFields(json: Record<string, unknown>): Readonly<Record<keyof GPT2Config, string>> {
  return { nLayer: 'n_layer', nHead: 'n_head', nEmbd: 'n_embd', nCtx: json.n_positions !== undefined ? 'n_positions' : 'n_ctx', vocabSize: 'vocab_size' };
}

// config.json in Hugging Face's GPT-2 naming (hfConfigFields).
export function readHFConfig(file: string): GPT2Config {
  const json = readJsonObject(file);
  if (json.model_type !== undefined && json.model_type !== 'gpt2') {
    throw new Error(`${file}: field "model_type" is ${JSON.stringify(json.model_type)}; dixie runs GPT-2 models ("gpt2")`);
  }
  const fields = hfConfigFields(json);
  return checkHeads(file, {
    nLayer: positiveInt(file, json, fields.nLayer),
    nHead: positiveInt(file, json, fields.nHead),
    nEmbd: positiveInt(file, json, fields.nEmbd),
    nCtx: positiveInt(file, json, fields.nCtx),
    vocabSize: positiveInt(file, json, fields.vocabSize),
  }, fields.nHead, fields.nEmbd);
}

// A config given in code (Model.create's) checked as a file's is, before its sizes plan any memory; `where` names it.
export function checkConfig(where: string, config: unknown): GPT2Config {
  if (typeof config !== 'object' || config === null) {
    throw new TypeError(`${where} must be an object of nLayer, nHead, nEmbd, nCtx and vocabSize, got ${quoted(config)}`);
  }
  const fields = config as Record<string, unknown>;
  const sizes = { nLayer: 0, nHead: 0, nEmbd: 0, nCtx: 0, vocabSize: 0 };
  for (const key of Object.keys(sizes) as (keyof GPT2Config)[]) sizes[key] = positiveInt(where, fields, key);
  return checkHeads(where, sizes, 'nHead', 'nEmbd');
}

// The number of parameters GPT-2 of these sizes has: the token and position embeddings; each layer's two layer
// norms, attention (qkv and its projection) and MLP (4x wide); and the final layer norm.
export function parameterCount(c: GPT2Config): number {
  const C = c.nEmbd;
  return c.vocabSize * C + c.nCtx * C + c.nLayer * (12 * C * C + 13 * C) + 2 * C;
}

// hparams.json of OpenAI's release and of TensorFlow training runs: n_vocab, n_ctx, n_embd, n_head, n_layer.
export function readHparams(file: string): GPT2Config {
  const json = readJsonObject(file);
  return checkHeads(file, {
    nLayer: positiveInt(file, json, 'n_layer'),
    nHead: positiveInt(file, json, 'n_head'),
    nEmbd: positiveInt(file, json, 'n_embd'),
    nCtx: positiveInt(file, json, 'n_ctx'),
    vocabSize: positiveInt(file, json, 'n_vocab'),
  }, 'n_head', 'n_embd');
}

// The checkpoint prefix named by a TensorFlow `checkpoint` file (model_checkpoint_path: "model-1234"). A path
// written absolute on another machine is looked up by its base name beside the `checkpoint` file.
export function tfCheckpointPrefix(dir: string): string {
  const file = path.join(dir, 'checkpoint');
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const match = /^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$/.exec(lines[i]);
    if (!match) continue;
    const named = match[1].replace(/\\(.)/g, '$1');
    const candidates = [path.resolve(dir, named), path.join(dir, path.basename(named))];
    const found = candidates.find((prefix) => fs.existsSync(`${prefix}.index`));
    if (!found) throw new Error(`${file}:${i + 1}: names checkpoint "${named}" but ${candidates[candidates.length - 1]}.index does not exist`);
    return found;
  }
  throw new Error(`${file}: no model_checkpoint_path line`);
}

// Without a `checkpoint` file: the one *.index in the folder (OpenAI's release has model.ckpt.index).
function soleIndexPrefix(dir: string): string | null {
  const indexes = fs.readdirSync(dir).filter((f) => f.endsWith('.index')).sort();
  if (indexes.length === 0) return null;
  if (indexes.length > 1) throw new Error(`${dir}: several checkpoints (${indexes.join(', ')}) and no \`checkpoint\` file saying which is current`);
  return path.join(dir, indexes[0].slice(0, -'.index'.length));
}

// A folder's safetensors weights (one file, or its shards' index), which it is read from before any GGUF file beside.
export function safetensorsWeights(dir: string): string | undefined {
  return [path.join(dir, 'model.safetensors'), path.join(dir, `model${SHARDS_INDEX_SUFFIX}`)].find(exists);
}

export function inspectModelFolder(dir: string): ModelFolder {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such folder`);
  if (!fs.statSync(dir).isDirectory()) {
    const gguf = dir.toLowerCase().endsWith('.gguf') ? `: give the folder that holds it (its ${GGUF_FILE}, or its one .gguf file, is read)` : '';
    throw new Error(`${dir}: not a folder${gguf}`);
  }
  finishInterruptedSave(dir);
  const vocab = findVocabulary(dir);
  const configJson = path.join(dir, 'config.json');
  const safetensors = safetensorsWeights(dir);
  if (safetensors !== undefined) {
    if (!exists(configJson)) throw new Error(`${dir}: has ${path.basename(safetensors)} but no config.json, which gives its shapes (layers, heads, context): copy it from where the weights came from (an interrupted download or copy? bin/download-model fetches a release's again)`);
    return { dir, kind: 'huggingface', config: readHFConfig(configJson), configFile: configJson, weights: safetensors, vocab };
  }
  const gguf = ggufFileIn(dir);
  if (gguf !== null) {
    const g = openGguf(gguf);
    try {
      const vocabulary = vocab ?? (ggufVocabulary(g) ? { encoder: gguf, merges: gguf } : null);
      return { dir, kind: 'gguf', config: ggufConfig(g), configFile: gguf, weights: gguf, vocab: vocabulary };
    } finally {
      g.close();
    }
  }
  const prefix = exists(path.join(dir, 'checkpoint')) ? tfCheckpointPrefix(dir) : soleIndexPrefix(dir);
  if (prefix === null) {
    // transformers' older default: a pickle, which can run any code as it loads.
    const pickle = PICKLE_FILES.find((f) => exists(path.join(dir, f)));
    if (pickle !== undefined) {
      throw new Error(`${dir}: has ${pickle}, PyTorch's pickle format, whose weights dixie does not read (loading a pickle can run code): convert it with transformers' save_pretrained(out, safe_serialization=True), which writes model.safetensors`);
    }
    if (exists(configJson)) throw new Error(`${dir}: has config.json but no model.safetensors (an interrupted download? weights are read from model.safetensors, its shards with model${SHARDS_INDEX_SUFFIX}, or ${GGUF_FILE})`);
    const seen = fs.readdirSync(dir).sort().slice(0, 12).join(', ') || 'nothing';
    throw new Error(`${dir}: not a model folder: expected config.json + model.safetensors (or its shards with model${SHARDS_INDEX_SUFFIX}), ${GGUF_FILE} (or one .gguf file), or a TensorFlow checkpoint (hparams.json + model.ckpt.*, or a \`checkpoint\` file + model-N.index); found ${seen}`);
  }
  const hparams = path.join(dir, 'hparams.json');
  const hasHparams = fs.existsSync(hparams);
  const kind: ModelFolderKind = hasHparams && path.basename(prefix) === 'model.ckpt' ? 'openai-release' : 'tf-run';
  return { dir, kind, config: hasHparams ? readHparams(hparams) : null, configFile: hasHparams ? hparams : null, weights: prefix, vocab };
}

