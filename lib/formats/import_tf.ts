// GPT-2 TensorFlow checkpoints (OpenAI's release, and TensorFlow training runs fine-tuned from it) into dixie's
// model folder: config.json + model.safetensors with Hugging Face's names, plus the vocabulary. Tensors
// stream one at a time from the checkpoint into the safetensors writer, each checked against its crc32c.
import fs from 'node:fs';
import path from 'node:path';
import { textToWrite, writeFilesAtomic } from '../util/atomic_file';
import { CONFIG_FILE, hfConfigJson, WEIGHTS_FILE } from '../engine/model';
import { chatRecordToWrite, NO_CHAT } from './chat_record';
import { findVocabulary, inspectModelFolder, readHFConfig, readHparams, type GPT2Config, type VocabFiles } from './model_folder';
import { safetensorsToWrite, type TensorToWrite } from './safetensors';
import { vocabularyBytes } from '../tokenizer/vocab';
import { openTFCheckpoint, type TFCheckpoint, type TFTensorEntry } from './tf_checkpoint';
import { sameShape } from '../util/same_shape';

export interface ImportOptions {
  hparams?: string;   // hparams.json or config.json, for a run folder that has none beside its checkpoint
  vocab?: string;     // a folder with encoder.json + vocab.bpe (or vocab.json + merges.txt, or tokenizer.json)
  onProgress?: (bytes: number, totalBytes: number) => void;  // after each tensor, float32 bytes written
}

export interface ImportResult {
  checkpoint: string;      // the checkpoint prefix read
  config: GPT2Config;
  tensors: number;         // written to model.safetensors
  skipped: string[];       // optimizer slots, global_step and other non-model variables
  vocab: VocabFiles | null;  // where the vocabulary came from (null: none found)
}

// The per-layer variables of OpenAI's GPT-2 code (model/h<i>/...), and their Hugging Face names.
const LAYER_VARIABLES: readonly [tf: string, hf: string][] = [
  ['ln_1/g', 'ln_1.weight'], ['ln_1/b', 'ln_1.bias'],
  ['attn/c_attn/w', 'attn.c_attn.weight'], ['attn/c_attn/b', 'attn.c_attn.bias'],
  ['attn/c_proj/w', 'attn.c_proj.weight'], ['attn/c_proj/b', 'attn.c_proj.bias'],
  ['ln_2/g', 'ln_2.weight'], ['ln_2/b', 'ln_2.bias'],
  ['mlp/c_fc/w', 'mlp.c_fc.weight'], ['mlp/c_fc/b', 'mlp.c_fc.bias'],
  ['mlp/c_proj/w', 'mlp.c_proj.weight'], ['mlp/c_proj/b', 'mlp.c_proj.bias'],
];

// OpenAI's four releases differ in width; their head count follows from it.
const RELEASE_HEADS: ReadonlyMap<number, number> = new Map([[768, 12], [1024, 16], [1280, 20], [1600, 25]]);

interface Mapped {
  tf: string;
  hf: string;
  tfShape: number[];  // TensorFlow's shape: the conv1d weights carry a leading 1
  hfShape: number[];
}

// Every GPT-2 variable of a config: TF name and shape -> HF name and shape.
export function gpt2VariableMap(config: GPT2Config): Mapped[] {
  const { nLayer, nEmbd: C, nCtx, vocabSize } = config;
  const layerShapes: Record<string, number[]> = {
    'ln_1/g': [C], 'ln_1/b': [C], 'attn/c_attn/w': [C, 3 * C], 'attn/c_attn/b': [3 * C],
    'attn/c_proj/w': [C, C], 'attn/c_proj/b': [C], 'ln_2/g': [C], 'ln_2/b': [C],
    'mlp/c_fc/w': [C, 4 * C], 'mlp/c_fc/b': [4 * C], 'mlp/c_proj/w': [4 * C, C], 'mlp/c_proj/b': [C],
  };
  const out: Mapped[] = [
    { tf: 'model/wte', hf: 'wte.weight', tfShape: [vocabSize, C], hfShape: [vocabSize, C] },
    { tf: 'model/wpe', hf: 'wpe.weight', tfShape: [nCtx, C], hfShape: [nCtx, C] },
  ];
  for (let l = 0; l < nLayer; l++) {
    for (const [tf, hf] of LAYER_VARIABLES) {
      const shape = layerShapes[tf];
      out.push({ tf: `model/h${l}/${tf}`, hf: `h.${l}.${hf}`, tfShape: tf.endsWith('/w') ? [1, ...shape] : shape, hfShape: shape });
    }
  }
  out.push({ tf: 'model/ln_f/g', hf: 'ln_f.weight', tfShape: [C], hfShape: [C] });
  out.push({ tf: 'model/ln_f/b', hf: 'ln_f.bias', tfShape: [C], hfShape: [C] });
  return out;
}

// Variables that are not weights of the model: Adam's slots (…/Adam, …/Adam_1), global_step, beta powers,
// gradient accumulators — anything outside model/.
function isTrainingState(name: string): boolean {
  return !name.startsWith('model/') || /\/Adam(_\d+)?$/.test(name);
}

// hparams.json (n_vocab, …) or config.json (vocab_size, …), told apart by their fields.
function readConfigFile(file: string): GPT2Config {
  let isHparams = false;
  try {
    isHparams = 'n_vocab' in (JSON.parse(fs.readFileSync(file, 'utf8')) as object);
  } catch {
    // Unreadable or not JSON: readHFConfig reports it with the file's name.
  }
  return isHparams ? readHparams(file) : readHFConfig(file);
}

// Sizes from the tensors themselves, for a run folder without hparams: the head count is the one thing
// shapes do not tell, so it must be one of OpenAI's widths.
function inferConfig(ckpt: TFCheckpoint): GPT2Config {
  if (!ckpt.has('model/wte') || !ckpt.has('model/wpe')) {
    const sample = ckpt.tensors.slice(0, 3).map((t) => `"${t.name}"`).join(', ');
    throw new Error(`${ckpt.indexFile}: not a GPT-2 checkpoint: no variables "model/wte" and "model/wpe" (it holds ${sample}, …)`);
  }
  const wte = ckpt.tensor('model/wte');
  const wpe = ckpt.tensor('model/wpe');
  let nLayer = 0;
  while (ckpt.has(`model/h${nLayer}/ln_1/g`)) nLayer++;
  const nEmbd = wte.shape[1];
  const nHead = RELEASE_HEADS.get(nEmbd);
  if (nHead === undefined) {
    throw new Error(`${ckpt.indexFile}: no hparams.json beside the checkpoint and width ${nEmbd} is not one of OpenAI's releases, so the number of heads is unknown: pass --hparams <hparams.json of the base model>`);
  }
  return { nLayer, nHead, nEmbd, nCtx: wpe.shape[0], vocabSize: wte.shape[0] };
}

function checkpointPrefix(src: string): { prefix: string; configFile: string | null; vocab: VocabFiles | null } {
  if (fs.existsSync(`${src}.index`)) {
    const dir = path.dirname(src);
    const hparams = path.join(dir, 'hparams.json');
    return { prefix: src, configFile: fs.existsSync(hparams) ? hparams : null, vocab: findVocabulary(dir) };
  }
  const folder = inspectModelFolder(src);
  if (folder.kind === 'huggingface' || folder.kind === 'gguf') throw new Error(`${src}: already a ${folder.kind === 'gguf' ? 'GGUF' : 'Hugging Face'} model folder (${path.basename(folder.weights)}); nothing to import`);
  return { prefix: folder.weights, configFile: folder.configFile, vocab: folder.vocab };
}

// src: a checkpoint folder (OpenAI's release or a run folder) or a checkpoint prefix; out: the model folder
// to write (it may be src itself).
export async function importTFCheckpoint(src: string, out: string, options: ImportOptions = {}): Promise<ImportResult> {
  const found = checkpointPrefix(src);
  const ckpt = openTFCheckpoint(found.prefix);
  try {
    const configFile = options.hparams ?? found.configFile;
    const config = configFile ? readConfigFile(configFile) : inferConfig(ckpt);
    const configSource = configFile ?? 'the checkpoint shapes';
    const mapped = gpt2VariableMap(config);
    const wanted = new Set(mapped.map((m) => m.tf));
    const skipped: string[] = [];
    for (const t of ckpt.tensors) {
      if (wanted.has(t.name)) continue;
      if (isTrainingState(t.name)) {
        skipped.push(t.name);
        continue;
      }
      throw new Error(`${ckpt.indexFile}: variable "${t.name}" is not part of a GPT-2 with ${config.nLayer} layers (config from ${configSource})`);
    }
    const entries: [Mapped, TFTensorEntry][] = mapped.map((m) => {
      if (!ckpt.has(m.tf)) throw new Error(`${ckpt.indexFile}: no variable "${m.tf}" (config from ${configSource} expects ${config.nLayer} layers)`);
      const entry = ckpt.tensor(m.tf);
      if (!sameShape(entry.shape, m.tfShape)) {
        throw new Error(`${ckpt.indexFile}: variable "${m.tf}" has shape [${entry.shape.join(', ')}], expected [${m.tfShape.join(', ')}] from ${configSource}`);
      }
      if (!['DT_FLOAT', 'DT_HALF', 'DT_BFLOAT16', 'DT_DOUBLE'].includes(entry.dtype)) {
        throw new Error(`${ckpt.indexFile}: variable "${m.tf}" is ${entry.dtype}, not a float tensor`);
      }
      return [m, entry];
    });

    const vocab = options.vocab !== undefined ? findVocabulary(options.vocab) : found.vocab;
    if (options.vocab !== undefined && vocab === null) throw new Error(`${options.vocab}: no encoder.json + vocab.bpe (or vocab.json + merges.txt, or tokenizer.json)`);

    const totalBytes = mapped.reduce((n, m) => n + 4 * m.hfShape.reduce((a, b) => a * b, 1), 0);
    let bytes = 0;
    const tensors: TensorToWrite[] = entries.map(([m, entry]) => ({
      name: m.hf,
      dtype: 'F32',
      shape: m.hfShape,
      data: () => {
        const data = ckpt.readF32(entry);
        bytes += data.byteLength;
        options.onProgress?.(bytes, totalBytes);
        return data;
      },
    }));
    // Written together, as Model.save writes a model: a failure leaves a folder imported into before as it was, and
    // the record of a chat model saved there before goes, as it does not speak for these weights.
    const record = chatRecordToWrite(out, NO_CHAT, false);
    const vocabBytes = vocab === null ? null : vocabularyBytes({ encoderPath: vocab.encoder, mergesPath: vocab.merges });
    await writeFilesAtomic([
      safetensorsToWrite(path.join(out, WEIGHTS_FILE), tensors, { format: 'pt' }),
      textToWrite(path.join(out, CONFIG_FILE), `${JSON.stringify(hfConfigJson(config), null, 2)}\n`),
      // Hugging Face's names for the same two files, so its tokenizer reads the folder too.
      ...(vocabBytes === null ? [] : [textToWrite(path.join(out, 'vocab.json'), vocabBytes.encoder), textToWrite(path.join(out, 'merges.txt'), vocabBytes.merges)]),
      ...record.write,
    ], record.remove);
    return { checkpoint: found.prefix, config, tensors: tensors.length, skipped, vocab };
  } finally {
    ckpt.close();
  }
}
