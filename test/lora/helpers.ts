// Shared by the LoRA tests: a tiny base model on disk, random adapter factors, an adapter folder written here in
// PEFT's layout byte by byte (independently of lib/formats/peft.ts), the merge computed here with plain loops, and
// the logits of every position of a few sequences.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model, type GPT2Config, type ModelOptions } from '../../lib/engine/model';
import { f32ToBf16, f32ToF16 } from '../../lib/formats/safetensors';
import { decode, lcg, maxAbs, randomTokens, sampleCoordinates } from '../engine/helpers';

export const ROOT = path.join(__dirname, '..', '..', '..');
const TINY_VOCAB = path.join(ROOT, 'test', 'fixtures', 'tiny-vocab');
export const CONFIG: GPT2Config = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 };

// The inputs and outputs of each adaptable matrix, in multiples of n_embd.
export const SHAPES: Readonly<Record<string, [inputs: number, outputs: number]>> = {
  'attn.c_attn': [1, 3], 'attn.c_proj': [1, 1], 'mlp.c_fc': [1, 4], 'mlp.c_proj': [4, 1],
};

// The batch the adapter tests run on the CPU.
export const B = 2;
export const T = 16;
export const OPTIONS: ModelOptions = { maxBatch: B, maxSeq: T, threads: 2, device: 'cpu' };

// A temporary folder (removed when the test file ends) and the random base saved in it.
export function tempBase(prefix: string): { dir: string; base: Promise<string> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return { dir, base: saveBase(path.join(dir, 'base')) };
}

// A random base of `config` saved as a model folder with the tiny vocabulary.
export async function saveBase(dir: string, config: GPT2Config = CONFIG, seed = 3): Promise<string> {
  const model = Model.create(config, { seed, device: 'cpu' });
  await model.save(dir);
  model.dispose();
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(TINY_VOCAB, f), path.join(dir, f));
  return dir;
}

// Uniform in [-scale, scale).
export function randomValues(n: number, seed: number, scale = 0.1): Float32Array {
  const next = lcg(seed);
  return Float32Array.from({ length: n }, () => (2 * next() - 1) * scale);
}

export interface Factors {
  module: string;  // "h.0.attn.c_attn"
  rank: number;
  inputs: number;
  outputs: number;
  a: Float32Array;  // [rank, inputs]
  b: Float32Array;  // [outputs, rank]
}

export function randomFactors(module: string, rank: number, nEmbd: number, seed: number): Factors {
  const [i, o] = SHAPES[module.replace(/^h\.\d+\./, '')];
  const inputs = i * nEmbd;
  const outputs = o * nEmbd;
  return { module, rank, inputs, outputs, a: randomValues(rank * inputs, seed), b: randomValues(outputs * rank, seed + 1000) };
}

export interface RawTensor {
  name: string;
  shape: number[];
  dtype?: 'F32' | 'F16' | 'BF16';
  data: Float32Array;
}

// A safetensors file as its specification lays it out: an 8-byte little-endian header length, the header JSON,
// the tensors' bytes back to back.
export function writeRawSafetensors(file: string, tensors: RawTensor[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const parts: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const dtype = t.dtype ?? 'F32';
    const values = dtype === 'F32' ? t.data : dtype === 'F16' ? f32ToF16(t.data) : f32ToBf16(t.data);
    const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([length, json, ...parts]));
}

// adapter_config.json as PEFT (0.10 to 0.13) saves it for GPT-2, with `fields` over it.
export function peftConfig(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: 'gpt2', bias: 'none', fan_in_fan_out: true,
    inference_mode: true, init_lora_weights: true, layer_replication: null, layers_pattern: null, layers_to_transform: null,
    loftq_config: {}, lora_alpha: 16, lora_dropout: 0.05, megatron_config: null, megatron_core: 'megatron.core',
    modules_to_save: null, peft_type: 'LORA', r: 4, rank_pattern: {}, revision: null, target_modules: ['c_attn'],
    task_type: 'CAUSAL_LM', use_dora: false, use_rslora: false,
    ...fields,
  };
}

// The name PEFT's save_pretrained gives a factor of a module ("h.0.attn.c_attn") of GPT2LMHeadModel.
export const peftTensorName = (module: string, factor: 'A' | 'B'): string => `base_model.model.transformer.${module}.lora_${factor}.weight`;

// An adapter folder in PEFT's layout: the config, and each module's factors under PEFT's names (or `tensorName`'s).
export function writeRawAdapter(dir: string, config: Record<string, unknown>, factors: Factors[], dtype: RawTensor['dtype'] = 'F32', tensorName = peftTensorName): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  const tensors = factors.flatMap((f): RawTensor[] => [
    { name: tensorName(f.module, 'A'), shape: [f.rank, f.inputs], dtype, data: f.a },
    { name: tensorName(f.module, 'B'), shape: [f.outputs, f.rank], dtype, data: f.b },
  ]);
  writeRawSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  return dir;
}

// W + scaling * A^T B^T for a Conv1D weight W [inputs, outputs], in plain loops.
export function mergedWeight(w: Float32Array, f: Factors, scaling: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let i = 0; i < f.inputs; i++) {
    for (let o = 0; o < f.outputs; o++) {
      let sum = 0;
      for (let k = 0; k < f.rank; k++) sum += f.a[k * f.inputs + i] * f.b[o * f.rank + k];
      out[i * f.outputs + o] = w[i * f.outputs + o] + scaling * sum;
    }
  }
  return out;
}

export const SEQUENCES = [randomTokens(12, CONFIG.vocabSize, 1), randomTokens(7, CONFIG.vocabSize, 2)];

// The logits after every token of SEQUENCES, fed a token at a time (the way every weight type decodes), end to end.
export async function allLogits(model: Model): Promise<Float32Array> {
  const rows = await decode(model, SEQUENCES, () => 1);
  const V = model.config.vocabSize;
  const keys = SEQUENCES.flatMap((seq, s) => Array.from(seq, (_, pos) => `${s}:${pos}`));
  const out = new Float32Array(keys.length * V);
  keys.forEach((key, i) => out.set(rows.get(key) as Float32Array, i * V));
  return out;
}


// The worst difference, over a few coordinates of a factor, between its gradient and central differences of `loss`
// (a loss of the model as it stands), and the bound it is held to: 5e-3 of the gradient's largest value.
export async function centralDifferences(model: Model, name: string, loss: () => Promise<number>, seed: number): Promise<{ worst: number; tol: number }> {
  const eps = 3e-3;
  const g = model.getGrad(name);
  const p = model.getParam(name);
  let worst = 0;
  for (const i of sampleCoordinates(g, 3, 3, seed)) {
    const q = p.slice();
    q[i] = p[i] + eps;
    model.setParam(name, q);
    const plus = await loss();
    q[i] = p[i] - eps;
    model.setParam(name, q);
    const minus = await loss();
    model.setParam(name, p);
    worst = Math.max(worst, Math.abs((plus - minus) / (2 * eps) - g[i]));
  }
  return { worst, tol: 5e-3 * maxAbs(g) };
}
