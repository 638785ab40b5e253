// GGUF, the model file of llama.cpp (and of everything built on it), written for its "gpt2" architecture so a
// model trained here runs there. Layout (all little-endian): "GGUF", version 3, the tensor count and the metadata
// count (u64); the metadata, each a key string, a value type (u32) and a value; one info per tensor (name, dims
// innermost first, ggml type, data offset); zero padding to ALIGNMENT; the tensor data, each tensor aligned.
// A string is a u64 byte length and its UTF-8 bytes.
import fs from 'node:fs';
import type { Model } from '../engine/model';
import type { VocabularyFiles } from '../tokenizer/vocab';
import { END_OF_TEXT } from '../tokenizer/vocab';
import { writeFileAtomic } from '../util/atomic_file';
import { f32ToBf16, f32ToF16, writeFully } from './safetensors';

export type GgufWeightType = 'f32' | 'f16' | 'bf16';
export const GGUF_WEIGHT_TYPES: readonly GgufWeightType[] = ['f32', 'f16', 'bf16'];

export const ALIGNMENT = 32;

// ggml's tensor type numbers, and llama.cpp's file_type for "all tensors f32 / mostly f16 / mostly bf16".
const GGML_TYPE: Readonly<Record<GgufWeightType, number>> = { f32: 0, f16: 1, bf16: 30 };
const FILE_TYPE: Readonly<Record<GgufWeightType, number>> = { f32: 0, f16: 1, bf16: 32 };
const VALUE = { u32: 4, i32: 5, f32: 6, string: 8, array: 9 } as const;
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;

export interface GgufExportOptions {
  weightType: GgufWeightType;
  name: string;
  onProgress?: (bytes: number, totalBytes: number) => void;
}

// One tensor of the file: its llama.cpp name, dims innermost first, and its data from the model.
interface GgufTensor {
  name: string;
  dims: number[];
  type: number;
  data: () => Uint8Array;
}

// Hugging Face's Conv1D weights are [in, out] (y = x @ W); ggml's are [out][in], so those four are transposed.
function transposed(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function bytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function tensorsOf(model: Model, weightType: GgufWeightType): GgufTensor[] {
  const { nLayer, nEmbd: C, nCtx, vocabSize: V } = model.config;
  const weight = (values: () => Float32Array): (() => Uint8Array) => () => {
    const f32 = values();
    if (weightType === 'f32') return bytes(f32);
    return bytes(weightType === 'f16' ? f32ToF16(f32) : f32ToBf16(f32));
  };
  const vector = (hfName: string): (() => Uint8Array) => () => bytes(model.getParam(hfName));
  const matrixType = GGML_TYPE[weightType];
  const f32 = GGML_TYPE.f32;
  // The output head is tied to the token embeddings: llama.cpp reuses token_embd when output.weight is absent.
  const out: GgufTensor[] = [
    { name: 'token_embd.weight', dims: [C, V], type: matrixType, data: weight(() => model.getParam('wte.weight')) },
    { name: 'position_embd.weight', dims: [C, nCtx], type: f32, data: vector('wpe.weight') },
  ];
  for (let l = 0; l < nLayer; l++) {
    const hf = `h.${l}.`;
    const blk = `blk.${l}.`;
    const conv1d = (name: string, inputs: number, outputs: number): (() => Uint8Array) =>
      weight(() => transposed(model.getParam(hf + name), inputs, outputs));
    out.push(
      { name: `${blk}attn_norm.weight`, dims: [C], type: f32, data: vector(`${hf}ln_1.weight`) },
      { name: `${blk}attn_norm.bias`, dims: [C], type: f32, data: vector(`${hf}ln_1.bias`) },
      { name: `${blk}attn_qkv.weight`, dims: [C, 3 * C], type: matrixType, data: conv1d('attn.c_attn.weight', C, 3 * C) },
      { name: `${blk}attn_qkv.bias`, dims: [3 * C], type: f32, data: vector(`${hf}attn.c_attn.bias`) },
      { name: `${blk}attn_output.weight`, dims: [C, C], type: matrixType, data: conv1d('attn.c_proj.weight', C, C) },
      { name: `${blk}attn_output.bias`, dims: [C], type: f32, data: vector(`${hf}attn.c_proj.bias`) },
      { name: `${blk}ffn_norm.weight`, dims: [C], type: f32, data: vector(`${hf}ln_2.weight`) },
      { name: `${blk}ffn_norm.bias`, dims: [C], type: f32, data: vector(`${hf}ln_2.bias`) },
      { name: `${blk}ffn_up.weight`, dims: [C, 4 * C], type: matrixType, data: conv1d('mlp.c_fc.weight', C, 4 * C) },
      { name: `${blk}ffn_up.bias`, dims: [4 * C], type: f32, data: vector(`${hf}mlp.c_fc.bias`) },
      { name: `${blk}ffn_down.weight`, dims: [4 * C, C], type: matrixType, data: conv1d('mlp.c_proj.weight', 4 * C, C) },
      { name: `${blk}ffn_down.bias`, dims: [C], type: f32, data: vector(`${hf}mlp.c_proj.bias`) },
    );
  }
  out.push(
    { name: 'output_norm.weight', dims: [C], type: f32, data: vector('ln_f.weight') },
    { name: 'output_norm.bias', dims: [C], type: f32, data: vector('ln_f.bias') },
  );
  return out;
}

// The vocabulary as llama.cpp's "gpt2" tokenizer wants it: token strings in id order (GPT-2's printable stand-ins
// for bytes, as encoder.json has them) and the merge lines.
function readVocabulary(files: VocabularyFiles, vocabSize: number): { tokens: string[]; merges: string[]; eot: number } {
  const encoder = JSON.parse(fs.readFileSync(files.encoderPath, 'utf8')) as Record<string, number>;
  const entries = Object.entries(encoder);
  if (entries.length !== vocabSize) {
    throw new Error(`${files.encoderPath}: has ${entries.length} tokens, the model's vocab_size is ${vocabSize}; GGUF needs exactly one token per id`);
  }
  const tokens = new Array<string>(vocabSize);
  for (const [token, id] of entries) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize || tokens[id] !== undefined) {
      throw new Error(`${files.encoderPath}: token ${JSON.stringify(token)} has id ${id}; GGUF needs ids 0..${vocabSize - 1}, each once`);
    }
    tokens[id] = token;
  }
  const eot = encoder[END_OF_TEXT];
  if (eot === undefined) throw new Error(`${files.encoderPath}: no ${END_OF_TEXT} token`);
  const merges = fs.readFileSync(files.mergesPath, 'utf8').split('\n').filter((line) => line !== '' && !line.startsWith('#version'));
  return { tokens, merges, eot };
}

// Bytes of the header, and how many metadata entries went in.
class HeaderWriter {
  private readonly chunks: Buffer[] = [];
  length = 0;
  entries = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  // The start of a metadata entry: its key and its value's type.
  private key(key: string, type: number): void {
    this.entries++;
    this.string(key);
    this.u32(type);
  }
  keyU32(key: string, v: number): void {
    this.key(key, VALUE.u32);
    this.u32(v);
  }
  keyF32(key: string, v: number): void {
    this.key(key, VALUE.f32);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  keyString(key: string, v: string): void {
    this.key(key, VALUE.string);
    this.string(v);
  }
  keyStrings(key: string, values: readonly string[]): void {
    this.key(key, VALUE.array);
    this.u32(VALUE.string);
    this.u64(values.length);
    for (const v of values) this.string(v);
  }
  keyI32s(key: string, values: Int32Array): void {
    this.key(key, VALUE.array);
    this.u32(VALUE.i32);
    this.u64(values.length);
    this.push(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function padding(n: number): number {
  return (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT;
}

// Writes `model` with the vocabulary in `vocabulary` to `file` (atomically), one tensor in memory at a time.
export async function writeGguf(file: string, model: Model, vocabulary: VocabularyFiles, options: GgufExportOptions): Promise<void> {
  const c = model.config;
  const { tokens, merges, eot } = readVocabulary(vocabulary, c.vocabSize);
  const tensors = tensorsOf(model, options.weightType);
  const elementBytes = (t: GgufTensor): number => (t.type === GGML_TYPE.f32 ? 4 : 2);

  const h = new HeaderWriter();
  h.keyString('general.architecture', 'gpt2');
  h.keyString('general.name', options.name);
  h.keyU32('general.file_type', FILE_TYPE[options.weightType]);
  h.keyU32('general.alignment', ALIGNMENT);
  h.keyU32('gpt2.context_length', c.nCtx);
  h.keyU32('gpt2.embedding_length', c.nEmbd);
  h.keyU32('gpt2.feed_forward_length', 4 * c.nEmbd);
  h.keyU32('gpt2.block_count', c.nLayer);
  h.keyU32('gpt2.attention.head_count', c.nHead);
  h.keyF32('gpt2.attention.layer_norm_epsilon', 1e-5);
  h.keyString('tokenizer.ggml.model', 'gpt2');
  h.keyString('tokenizer.ggml.pre', 'gpt-2');
  h.keyStrings('tokenizer.ggml.tokens', tokens);
  h.keyI32s('tokenizer.ggml.token_type', Int32Array.from(tokens, (_, id) => (id === eot ? TOKEN_CONTROL : TOKEN_NORMAL)));
  h.keyStrings('tokenizer.ggml.merges', merges);
  h.keyU32('tokenizer.ggml.bos_token_id', eot);
  h.keyU32('tokenizer.ggml.eos_token_id', eot);
  const metadata = h.entries;
  let offset = 0;
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    const size = t.dims.reduce((n, d) => n * d, elementBytes(t));
    offset += size + padding(size);
  }

  const start = new HeaderWriter();
  start.u32(0x46554747);  // "GGUF"
  start.u32(3);
  start.u64(tensors.length);
  start.u64(metadata);
  const headerBytes = start.length + h.length + padding(start.length + h.length);
  await writeFileAtomic(file, (fd) => {
    writeFully(fd, start.bytes());
    writeFully(fd, h.bytes());
    writeFully(fd, new Uint8Array(headerBytes - start.length - h.length));
    let written = headerBytes;
    for (const t of tensors) {
      const data = t.data();
      writeFully(fd, data);
      writeFully(fd, new Uint8Array(padding(data.byteLength)));
      written += data.byteLength + padding(data.byteLength);
      options.onProgress?.(written, headerBytes + offset);
    }
  });
}
