// GGUF, the model file of llama.cpp (and of everything built on it), for its "gpt2" architecture: written so that a
// model trained here runs there, read so that a model converted or quantized there runs here. Layout (all
// little-endian): "GGUF", the version (3; 2 is read too), the tensor count and the metadata count (u64); the
// metadata, each a key string, a value type (u32) and a value; one info per tensor (name, the number of dims (u32),
// the dims innermost first (u64 each), the ggml type (u32), the data offset (u64) from the start of the data); zero
// padding to the alignment (general.alignment, else 32); the tensor data, each tensor aligned. A string is a u64 byte
// length and its UTF-8 bytes; an array a value type (u32), a count (u64) and the values.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChatRecord } from './chat_record';
import type { Model } from '../engine/model';
import { loadAddon, type NativeConfig } from '../engine/native';
import type { Vocabulary } from '../tokenizer/vocab';
import { writeFileAtomic } from '../util/atomic_file';
import { GGML_QUANTS } from './ggml_quants';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, checkFactorsOnly, type PeftAdapter } from './peft';
import { f32ToBf16, f32ToF16, openRegularFile, readFully, writeFully } from './safetensors';

// What a file's matrices are written in, as llama.cpp's tools name the file types: float types, or ggml's blocks as
// llama-quantize writes them (its q4_K_M: q4_K with some matrices in q6_K, and so on; see tensorTypeOf).
export type GgufWeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q4_K_S' | 'q4_K_M' | 'q5_K_S' | 'q5_K_M' | 'q6_K';

// A file type's llama.cpp general.file_type (llama_ftype) and the ggml type of most of its matrices.
const FILE_TYPES: Readonly<Record<GgufWeightType, { fileType: number; base: GgmlWriteType }>> = {
  f32: { fileType: 0, base: 'f32' }, f16: { fileType: 1, base: 'f16' }, bf16: { fileType: 32, base: 'bf16' },
  q8_0: { fileType: 7, base: 'q8_0' }, q4_0: { fileType: 2, base: 'q4_0' }, q4_1: { fileType: 3, base: 'q4_1' },
  q5_0: { fileType: 8, base: 'q5_0' }, q5_1: { fileType: 9, base: 'q5_1' }, q4_K_S: { fileType: 14, base: 'q4_K' },
  q4_K_M: { fileType: 15, base: 'q4_K' }, q5_K_S: { fileType: 16, base: 'q5_K' }, q5_K_M: { fileType: 17, base: 'q5_K' },
  q6_K: { fileType: 18, base: 'q6_K' },
};
export const GGUF_WEIGHT_TYPES = Object.keys(FILE_TYPES) as readonly GgufWeightType[];

// A model folder's GGUF file, read where there is no model.safetensors.
export const GGUF_FILE = 'model.gguf';

// The GGUF file of a model folder: model.gguf, or else the folder's only .gguf file, as llama.cpp's converter and the
// hub's GGUF repositories name theirs after the model and its type (gpt2-124M-F16.gguf, gpt2.Q4_K_M.gguf); null
// where it has none. Of several, which to load is for its owner to say.
export function ggufFileIn(dir: string): string | null {
  const named = path.join(dir, GGUF_FILE);
  if (fs.existsSync(named)) return named;
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    const { code } = err as NodeJS.ErrnoException;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new Error(`${dir}: cannot be read: ${(err as Error).message}`);
  }
  const found = entries.filter((f) => f.toLowerCase().endsWith('.gguf')).sort();
  if (found.length > 1) throw new Error(`${dir}: several GGUF files (${found.join(', ')}) and no ${GGUF_FILE}: name the one to load ${GGUF_FILE}, or move the others out`);
  return found.length === 1 ? path.join(dir, found[0]) : null;
}

// The audiences of a model trained on chat logs, as its training record lists them (JSON of AudienceCount[]): a key
// of dixie's own, which llama.cpp passes over, so that a GGUF file serves and chats as the checkpoint it came from.
export const GGUF_AUDIENCES_KEY = 'dixie.chat.audiences';
// The chat template, where llama.cpp's tools read it.
export const GGUF_CHAT_TEMPLATE_KEY = 'tokenizer.chat_template';

const ALIGNMENT = 32;

// ggml's tensor types that dixie writes (it reads GGML_QUANTS' too; the others by name, for errors).
export const GGML_TYPE = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q5_0: 6, q5_1: 7, q8_0: 8, q4_K: 12, q5_K: 13, q6_K: 14, bf16: 30 } as const;
type GgmlWriteType = keyof typeof GGML_TYPE;
const GGML_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'f32', 1: 'f16', 2: 'q4_0', 3: 'q4_1', 6: 'q5_0', 7: 'q5_1', 8: 'q8_0', 9: 'q8_1', 10: 'q2_K', 11: 'q3_K', 12: 'q4_K',
  13: 'q5_K', 14: 'q6_K', 15: 'q8_K', 16: 'iq2_xxs', 17: 'iq2_xs', 18: 'iq3_xxs', 19: 'iq1_s', 20: 'iq4_nl', 21: 'iq3_s',
  22: 'iq2_s', 23: 'iq4_xs', 24: 'i8', 25: 'i16', 26: 'i32', 27: 'i64', 28: 'f64', 29: 'iq1_m', 30: 'bf16', 34: 'tq1_0',
  35: 'tq2_0', 39: 'mxfp4',
};
const VALUE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
// llama.cpp's token types: control tokens are parsed out of a text only where special tokens are (parse_special),
// user-defined ones always: a vocabulary's special and other added tokens (tokenizer/added_tokens.ts).
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;

// The sampling defaults of generation_config.json (formats/generation_config.ts) under llama.cpp's keys for a model's
// recommended sampling, which its tools (llama-cli, llama-server) take where the command line sets none; their names in
// generation_config.json, and their GGUF value types. transformers' repetition_penalty is llama.cpp's penalty_repeat:
// both divide a used token's positive logit by it and multiply a negative one.
export const GGUF_SAMPLING_KEYS = [
  { key: 'general.sampling.temp', field: 'temperature', type: 'f32' },
  { key: 'general.sampling.top_k', field: 'top_k', type: 'i32' },
  { key: 'general.sampling.top_p', field: 'top_p', type: 'f32' },
  { key: 'general.sampling.min_p', field: 'min_p', type: 'f32' },
  { key: 'general.sampling.penalty_repeat', field: 'repetition_penalty', type: 'f32' },
] as const;

export function ggmlTypeName(type: number): string {
  return GGML_TYPE_NAMES[type] ?? `type ${type}`;
}

// Bytes of a tensor of `type` with these dims (innermost first); null for a type dixie does not read.
function dataBytes(type: number, dims: readonly number[]): number | null {
  const n = dims.reduce((a, d) => a * d, 1);
  const quant = GGML_QUANTS.get(type);
  if (quant) return (n / quant.block) * quant.bytes;
  switch (type) {
    case GGML_TYPE.f32: return 4 * n;
    case GGML_TYPE.f16:
    case GGML_TYPE.bf16: return 2 * n;
    default: return null;
  }
}

// What dixie reads, for errors.
const READ_TYPES = ['f32', 'f16', 'bf16', ...[...GGML_QUANTS.values()].map((q) => q.name)].join(', ');

// ---- GPT-2's tensors under llama.cpp's names ----

// Per layer: llama.cpp's name after "blk.N.", Hugging Face's after "h.N.", and whether it is one of the Conv1D
// matrices, which Hugging Face keeps as [in, out] (y = x @ W) and ggml as [out][in].
const LAYER_TENSORS: readonly (readonly [string, string, boolean])[] = [
  ['attn_norm.weight', 'ln_1.weight', false], ['attn_norm.bias', 'ln_1.bias', false],
  ['attn_qkv.weight', 'attn.c_attn.weight', true], ['attn_qkv.bias', 'attn.c_attn.bias', false],
  ['attn_output.weight', 'attn.c_proj.weight', true], ['attn_output.bias', 'attn.c_proj.bias', false],
  ['ffn_norm.weight', 'ln_2.weight', false], ['ffn_norm.bias', 'ln_2.bias', false],
  ['ffn_up.weight', 'mlp.c_fc.weight', true], ['ffn_up.bias', 'mlp.c_fc.bias', false],
  ['ffn_down.weight', 'mlp.c_proj.weight', true], ['ffn_down.bias', 'mlp.c_proj.bias', false],
];
const MODEL_TENSORS: readonly (readonly [string, string])[] = [
  ['token_embd.weight', 'wte.weight'], ['position_embd.weight', 'wpe.weight'],
  ['output_norm.weight', 'ln_f.weight'], ['output_norm.bias', 'ln_f.bias'],
];
// llama.cpp's converters may write the output head, which GPT-2 ties to the token embeddings.
export const GGUF_OUTPUT = 'output.weight';

// The Hugging Face tensor a GGUF tensor holds, and whether it is transposed there; null for any other name.
export function hfTensorOf(name: string): { name: string; transposed: boolean } | null {
  const model = MODEL_TENSORS.find(([g]) => g === name);
  if (model) return { name: model[1], transposed: false };
  // llama.cpp writes layer numbers as "blk.%d"; "blk.00" beside "blk.0" would name one parameter twice.
  const m = /^blk\.(0|[1-9]\d*)\.(.+)$/.exec(name);
  const layer = m ? LAYER_TENSORS.find(([g]) => g === m[2]) : undefined;
  return m && layer ? { name: `h.${Number(m[1])}.${layer[1]}`, transposed: layer[2] } : null;
}

// ---- reading ----

type GgufNumbers = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array
  | BigUint64Array | BigInt64Array | Float64Array;
// An array of numbers (or bools, as bytes) is held as a typed array; of strings, as strings. Arrays of arrays are not read.
export type GgufValue = number | bigint | string | boolean | string[] | GgufNumbers;

export interface GgufTensorInfo {
  name: string;
  dims: number[];  // innermost first
  type: number;
  begin: number;   // absolute byte offsets in the file: [begin, end)
  end: number;
}

// A GGUF file whose header was read and checked (every tensor of a known type, inside the file).
export class GgufFile {
  private constructor(
    readonly path: string,
    private fd: number | null,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly tensors: readonly GgufTensorInfo[],
  ) {}

  static open(file: string): GgufFile {
    const { fd, size } = openRegularFile(file, 'a GGUF file should be');
    try {
      const h = readHeader(file, fd, size);
      return new GgufFile(file, fd, h.version, h.metadata, h.tensors);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  // A metadata value, checked: a non-negative integer, a number, a string, or an array of strings.
  u32(key: string): number {
    const v = this.metadata.get(key);
    if (v === undefined) throw new Error(`${this.path}: no metadata "${key}"`);
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new Error(`${this.path}: metadata "${key}" must be a non-negative integer, got ${describe(v)}`);
    return n;
  }
  number(key: string): number {
    const v = this.metadata.get(key);
    if (typeof v !== 'number') throw new Error(`${this.path}: metadata "${key}" must be a number, got ${describe(v)}`);
    return v;
  }
  string(key: string): string {
    const v = this.metadata.get(key);
    if (typeof v !== 'string') throw new Error(`${this.path}: metadata "${key}" must be a string, got ${describe(v)}`);
    return v;
  }
  strings(key: string): string[] {
    const v = this.metadata.get(key);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`${this.path}: metadata "${key}" must be an array of strings, got ${describe(v)}`);
    return v as string[];
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.tensors.find((t) => t.name === name);
  }

  // A tensor's raw bytes.
  read(tensor: GgufTensorInfo): Uint8Array {
    return this.readBytes(tensor, 0, tensor.end - tensor.begin);
  }

  // The type readRows gives a tensor's values in: its own, or float32 for a quantized one (as ggml expands it:
  // exact for q8_0, d * q, which a q8_0 model quantizes again into the very same blocks).
  valueType(tensor: GgufTensorInfo): 'F32' | 'F16' | 'BF16' {
    return tensor.type === GGML_TYPE.f16 ? 'F16' : tensor.type === GGML_TYPE.bf16 ? 'BF16' : 'F32';
  }

  // Rows [r0, r1) of a tensor laid out as Hugging Face has it, [rows, cols], into dst (of valueType): the stored
  // rows, or, for a Conv1D matrix (`transposed`: ggml keeps it [cols][rows]), columns of the stored matrix, whose bytes
  // are read once, at its first slab.
  readRows(tensor: GgufTensorInfo, transposed: boolean, rows: number, cols: number, r0: number, r1: number, dst: Float32Array | Uint16Array): void {
    const quant = GGML_QUANTS.get(tensor.type);
    if (!transposed) {
      const first = r0 * cols;
      if (quant) quant.dequantize(this.readBytes(tensor, (first / quant.block) * quant.bytes, (dst.length / quant.block) * quant.bytes), dst as Float32Array);
      else this.readInto(tensor, first * dst.BYTES_PER_ELEMENT, dst);
      return;
    }
    if (this.cached?.tensor !== tensor) this.cached = { tensor, stored: storedValues(this.read(tensor), tensor.type, rows * cols) };
    const { stored } = this.cached;
    for (let r = r0; r < r1; r++) {
      for (let c = 0; c < cols; c++) dst[(r - r0) * cols + c] = stored[c * rows + r];  // in the stored [cols][rows]
    }
  }

  private cached: { tensor: GgufTensorInfo; stored: Float32Array | Uint16Array } | null = null;

  private readBytes(tensor: GgufTensorInfo, at: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.readInto(tensor, at, out);
    return out;
  }

  private readInto(tensor: GgufTensorInfo, at: number, dst: ArrayBufferView): void {
    if (this.fd === null) throw new Error(`${this.path}: the file is closed`);
    readFully(this.fd, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), tensor.begin + at, this.path, `tensor "${tensor.name}"`);
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
}

export function openGguf(file: string): GgufFile {
  return GgufFile.open(file);
}

function describe(v: GgufValue | undefined): string {
  if (v === undefined) return 'nothing (the key is missing)';
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return `an array of ${v.length}`;
  return typeof v === 'bigint' ? String(v) : JSON.stringify(v);
}

// Reads a file's header through a window of its bytes that moves forward, so that a large vocabulary is read
// once and the tensor data not at all. Every read is checked against the file's size first.
class HeaderReader {
  private window = Buffer.alloc(1 << 20);
  private start = 0;   // file offset of window[0]
  private filled = 0;  // valid bytes in the window
  at = 0;              // file offset of the next read
  what = 'the header';  // what is being read, for errors

  constructor(private readonly file: string, private readonly fd: number, readonly size: number) {}

  bytes(n: number): Buffer {
    if (this.at + n > this.size) {
      throw new Error(`${this.file}: truncated: ${this.what} needs bytes ${this.at} to ${this.at + n} but the file has ${this.size} bytes`);
    }
    if (this.at + n > this.start + this.filled) {
      if (n > this.window.length) this.window = Buffer.alloc(n);
      this.start = this.at;
      this.filled = Math.min(this.window.length, this.size - this.at);
      readFully(this.fd, this.window.subarray(0, this.filled), this.at, this.file, this.what);
    }
    const out = this.window.subarray(this.at - this.start, this.at - this.start + n);
    this.at += n;
    return out;
  }
  u32(): number { return this.bytes(4).readUInt32LE(0); }
  u64(): bigint { return this.bytes(8).readBigUInt64LE(0); }
  // A u64 count or size, which must fit in the rest of the file at `each` bytes apiece.
  count(each: number): number {
    const n = this.u64();
    if (n > BigInt(Math.floor((this.size - this.at) / Math.max(each, 1)))) {
      throw new Error(`${this.file}: ${this.what}: a count of ${n} at byte ${this.at - 8} reaches past the end of the file (${this.size} bytes): truncated or corrupt`);
    }
    return Number(n);
  }
  string(): string {
    const n = this.count(1);
    return this.bytes(n).toString('utf8');
  }
  value(type: number): GgufValue {
    const b = (n: number): Buffer => this.bytes(n);
    switch (type) {
      case VALUE.u8: return b(1).readUInt8(0);
      case VALUE.i8: return b(1).readInt8(0);
      case VALUE.u16: return b(2).readUInt16LE(0);
      case VALUE.i16: return b(2).readInt16LE(0);
      case VALUE.u32: return b(4).readUInt32LE(0);
      case VALUE.i32: return b(4).readInt32LE(0);
      case VALUE.f32: return b(4).readFloatLE(0);
      case VALUE.bool: return b(1).readUInt8(0) !== 0;
      case VALUE.string: return this.string();
      case VALUE.u64: return b(8).readBigUInt64LE(0);
      case VALUE.i64: return b(8).readBigInt64LE(0);
      case VALUE.f64: return b(8).readDoubleLE(0);
      case VALUE.array: {
        const element = this.u32();
        if (element === VALUE.array) throw new Error(`${this.file}: ${this.what}: arrays of arrays are not read`);
        if (element === VALUE.string) {
          const n = this.count(8);
          if (n > MAX_STRINGS) throw new Error(`${this.file}: ${this.what}: an array of ${n} strings, more than the ${MAX_STRINGS} dixie reads`);
          return Array.from({ length: n }, () => this.string());
        }
        const numbers = NUMBER_ARRAYS[element];
        if (numbers === undefined) throw new Error(`${this.file}: ${this.what}: unknown array element type ${element} at byte ${this.at - 4}`);
        const out = new numbers(this.count(numbers.BYTES_PER_ELEMENT));
        new Uint8Array(out.buffer).set(this.bytes(out.byteLength));
        return out;
      }
      default: throw new Error(`${this.file}: ${this.what}: unknown value type ${type} at byte ${this.at - 4}`);
    }
  }
}

const GGML_MAX_DIMS = 4;
// Numeric arrays are read in one piece into typed arrays, as compact as the file (a file's array of millions of u8
// would otherwise take gigabytes of boxed numbers); string arrays up to this many entries, far above any vocabulary.
const NUMBER_ARRAYS: Readonly<Partial<Record<number, { new (n: number): GgufNumbers; readonly BYTES_PER_ELEMENT: number }>>> = {
  [VALUE.u8]: Uint8Array, [VALUE.i8]: Int8Array, [VALUE.u16]: Uint16Array, [VALUE.i16]: Int16Array, [VALUE.u32]: Uint32Array,
  [VALUE.i32]: Int32Array, [VALUE.f32]: Float32Array, [VALUE.bool]: Uint8Array, [VALUE.u64]: BigUint64Array,
  [VALUE.i64]: BigInt64Array, [VALUE.f64]: Float64Array,
};
const MAX_STRINGS = 1 << 22;
// The largest power of two general.alignment (a u32) can hold.
const MAX_ALIGNMENT = 2 ** 31;

// Whether a value of general.alignment is one: a power of two, an integer that fits its u32.
function isAlignment(v: GgufValue): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_ALIGNMENT && Number.isInteger(Math.log2(v));
}

function readHeader(file: string, fd: number, size: number): { version: number; metadata: Map<string, GgufValue>; tensors: GgufTensorInfo[] } {
  const r = new HeaderReader(file, fd, size);
  r.what = 'the magic';
  if (size < 4 || r.bytes(4).toString('latin1') !== 'GGUF') {
    throw new Error(`${file}: not a GGUF file (it does not begin with "GGUF")`);
  }
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new Error(`${file}: GGUF version ${version}; dixie reads versions 2 and 3`);
  r.what = 'the tensor count';
  const nTensors = r.count(8 + 4 + 4 + 8);
  r.what = 'the metadata count';
  const nMeta = r.count(8 + 4);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nMeta; i++) {
    r.what = `metadata entry ${i}`;
    const key = r.string();
    r.what = `metadata "${key}"`;
    metadata.set(key, r.value(r.u32()));
  }
  const alignment = metadata.get('general.alignment') ?? ALIGNMENT;
  if (!isAlignment(alignment)) {
    throw new Error(`${file}: metadata "general.alignment" must be a power of two from 1 to 2^31, got ${describe(alignment)}`);
  }
  const infos: { name: string; dims: number[]; type: number; offset: bigint }[] = [];
  for (let i = 0; i < nTensors; i++) {
    r.what = `tensor info ${i}`;
    const name = r.string();
    r.what = `tensor "${name}"`;
    const nDims = r.u32();
    if (nDims < 1 || nDims > GGML_MAX_DIMS) throw new Error(`${file}: tensor "${name}" has ${nDims} dimensions (1 to ${GGML_MAX_DIMS})`);
    const dims = Array.from({ length: nDims }, () => r.u64());
    if (dims.some((d) => d > BigInt(size))) throw new Error(`${file}: tensor "${name}" has dims [${dims.join(', ')}], more values than the file has bytes`);
    infos.push({ name, dims: dims.map(Number), type: r.u32(), offset: r.u64() });
  }
  const dataStart = Math.ceil(r.at / alignment) * alignment;
  const tensors: GgufTensorInfo[] = [];
  const seen = new Set<string>();
  for (const info of infos) {
    const where = `${file}: tensor "${info.name}"`;
    if (seen.has(info.name)) throw new Error(`${where} appears twice`);
    seen.add(info.name);
    const bytes = dataBytes(info.type, info.dims);
    if (bytes === null) {
      throw new Error(`${where} is of ggml type ${ggmlTypeName(info.type)}, which dixie does not read (it reads ${READ_TYPES}; requantize with llama.cpp's llama-quantize to one of them, such as q4_K_M or q8_0)`);
    }
    const quant = GGML_QUANTS.get(info.type);
    if (quant && info.dims[0] % quant.block !== 0) {
      throw new Error(`${where} is ${quant.name} with ${info.dims[0]} values a row, not a whole number of ${quant.block}-value blocks`);
    }
    if (info.offset % BigInt(alignment) !== 0n) throw new Error(`${where}: its data offset ${info.offset} is not a multiple of the alignment ${alignment}`);
    const begin = dataStart + Number(info.offset);
    if (info.offset > BigInt(size) || begin + bytes > size) {
      throw new Error(`${where} (${ggmlTypeName(info.type)} [${info.dims.join(', ')}], ${bytes} bytes at data offset ${info.offset}) lies past the end of the file (${size} bytes): truncated or corrupt`);
    }
    tensors.push({ name: info.name, dims: info.dims, type: info.type, begin, end: begin + bytes });
  }
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) throw new Error(`${file}: tensor "${sorted[i].name}" overlaps tensor "${sorted[i - 1].name}"`);
  }
  return { version, metadata, tensors };
}

// A tensor's n values in valueType's array: its own bytes, or a quantized tensor expanded.
function storedValues(raw: Uint8Array, type: number, n: number): Float32Array | Uint16Array {
  const quant = GGML_QUANTS.get(type);
  if (quant) {
    const values = new Float32Array(n);
    quant.dequantize(raw, values);
    return values;
  }
  return type === GGML_TYPE.f32 ? new Float32Array(raw.buffer, raw.byteOffset, n) : new Uint16Array(raw.buffer, raw.byteOffset, n);
}

// The model's sizes from a "gpt2" GGUF's metadata, checked against what dixie computes (the vocabulary size is the
// token embedding's).
export function ggufConfig(g: GgufFile): NativeConfig {
  const arch = g.string('general.architecture');
  if (arch !== 'gpt2') throw new Error(`${g.path}: metadata "general.architecture" is ${JSON.stringify(arch)}; dixie runs GPT-2 models ("gpt2")`);
  // llama.cpp's LoRA adapters are GGUF files too (bin/export-gguf writes them), which hold no model's sizes.
  if (g.metadata.has('general.type') && g.string('general.type') === 'adapter') {
    throw new Error(`${g.path}: metadata "general.type" is "adapter": a LoRA adapter for llama.cpp's --lora, not a model; dixie reads adapters as PEFT folders (${ADAPTER_CONFIG_FILE} + ${ADAPTER_WEIGHTS_FILE})`);
  }
  const config: NativeConfig = {
    nLayer: g.u32('gpt2.block_count'),
    nHead: g.u32('gpt2.attention.head_count'),
    nEmbd: g.u32('gpt2.embedding_length'),
    nCtx: g.u32('gpt2.context_length'),
    vocabSize: 0,
  };
  for (const [key, field] of [['gpt2.block_count', 'nLayer'], ['gpt2.attention.head_count', 'nHead'], ['gpt2.embedding_length', 'nEmbd'], ['gpt2.context_length', 'nCtx']] as const) {
    if (config[field] === 0) throw new Error(`${g.path}: metadata "${key}" must be a positive integer, got 0`);
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new Error(`${g.path}: metadata "gpt2.embedding_length" (${config.nEmbd}) must be a multiple of "gpt2.attention.head_count" (${config.nHead})`);
  }
  if (g.metadata.has('gpt2.feed_forward_length') && g.u32('gpt2.feed_forward_length') !== 4 * config.nEmbd) {
    throw new Error(`${g.path}: metadata "gpt2.feed_forward_length" is ${g.u32('gpt2.feed_forward_length')}; GPT-2's is 4 x embedding_length (${4 * config.nEmbd})`);
  }
  if (g.metadata.has('gpt2.attention.layer_norm_epsilon') && g.number('gpt2.attention.layer_norm_epsilon') !== Math.fround(1e-5)) {
    throw new Error(`${g.path}: metadata "gpt2.attention.layer_norm_epsilon" is ${g.number('gpt2.attention.layer_norm_epsilon')}; only 1e-5 is supported`);
  }
  const wte = g.tensor('token_embd.weight');
  if (!wte || wte.dims.length !== 2 || wte.dims[0] !== config.nEmbd) {
    throw new Error(`${g.path}: tensor "token_embd.weight" must be [${config.nEmbd}, vocabulary], got ${wte ? `[${wte.dims.join(', ')}]` : 'none'}`);
  }
  config.vocabSize = wte.dims[1];
  return config;
}

// A GGUF's vocabulary as GPT-2's two files would hold it (encoder.json, vocab.bpe), with its end of text
// (tokenizer.ggml.eos_token_id) and its added tokens (control and user-defined tokens, by tokenizer.ggml.token_type);
// null when it has none.
export function ggufVocabulary(g: GgufFile): { encoder: Buffer; merges: Buffer; eosToken?: number; added: { id: number; special: boolean }[] } | null {
  if (!g.metadata.has('tokenizer.ggml.tokens')) return null;
  const model = g.string('tokenizer.ggml.model');
  if (model !== 'gpt2') throw new Error(`${g.path}: metadata "tokenizer.ggml.model" is ${JSON.stringify(model)}; dixie reads GPT-2's byte-level BPE ("gpt2")`);
  const tokens = g.strings('tokenizer.ggml.tokens');
  const merges = g.metadata.has('tokenizer.ggml.merges') ? g.strings('tokenizer.ggml.merges') : [];
  // A Map, since a token may be any string: "__proto__" set on a plain object would change its prototype, not add it.
  const encoder = new Map<string, number>();
  tokens.forEach((token, id) => {
    const earlier = encoder.get(token);
    if (earlier !== undefined) {
      throw new Error(`${g.path}: metadata "tokenizer.ggml.tokens": tokens ${earlier} and ${id} are both ${JSON.stringify(token)}`);
    }
    encoder.set(token, id);
  });
  const json = `{${[...encoder].map(([token, id]) => `${JSON.stringify(token)}:${id}`).join(',')}}`;
  const types = g.metadata.get('tokenizer.ggml.token_type');
  const added: { id: number; special: boolean }[] = [];
  if (types instanceof Int32Array) types.forEach((type, id) => type === TOKEN_CONTROL || type === TOKEN_USER_DEFINED ? added.push({ id, special: type === TOKEN_CONTROL }) : undefined);
  // One past the tokens is passed over, as llama.cpp passes it over ("bad special token"), loading the file.
  const declaredEos = g.metadata.has('tokenizer.ggml.eos_token_id') ? g.u32('tokenizer.ggml.eos_token_id') : undefined;
  const eos = declaredEos !== undefined && declaredEos < tokens.length ? declaredEos : undefined;
  return { encoder: Buffer.from(json), merges: Buffer.from(['#version: 0.2', ...merges, ''].join('\n')), ...(eos !== undefined && { eosToken: eos }), added };
}

// ---- writing ----

export interface GgufExportOptions {
  weightType: GgufWeightType;
  name: string;
  // The chat template as tokenizer.chat_template (how tools that speak in messages prompt the model) and the
  // audiences as GGUF_AUDIENCES_KEY: by default the model's own (Model.chat).
  chat?: ChatRecord;
  onProgress?: (bytes: number, totalBytes: number) => void;
}

// One tensor of the file: its llama.cpp name, dims innermost first, and its data from the model.
interface GgufTensor {
  name: string;
  dims: number[];
  type: number;
  data: () => Promise<Uint8Array>;
}

// [rows, cols] row-major -> [cols, rows]: Hugging Face's Conv1D weights are [in, out] (y = x @ W), ggml's [out][in].
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

function bytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

// llama-quantize's choice of type for a GPT-2 matrix (llama.cpp's llama_tensor_get_type for the "gpt2" architecture,
// whose output head is the token embedding and whose attention is one fused qkv matrix; the bench gguf_quants holds
// dixie's files against llama-quantize's). The token embedding, being the head too, takes q6_K in every quantized
// file but q8_0; the _M mixes give q6_K to the qkv and ffn_down matrices of the first and last eighth of the layers
// and of every third layer between; q4_K_S gives q5_K to the first four qkv matrices and the first eighth's ffn_down.
// A type whose blocks do not divide the rows (1558M's 1600 channels are no whole number of 256-value k-quant blocks)
// falls back as llama.cpp's does; f16 where no block fits.
// `tensor` is the matrix's GGUF name less its layer: token_embd.weight, attn_qkv.weight...
export function tensorTypeOf(weightType: GgufWeightType, tensor: string, layer: number, nLayer: number, rowLength: number): GgmlWriteType {
  const base = FILE_TYPES[weightType].base;
  if (!GGML_QUANTS.has(GGML_TYPE[base])) return base;
  const eighth = Math.floor(nLayer / 8);
  const moreBits = layer < eighth || layer >= Math.floor((7 * nLayer) / 8) || (layer - eighth) % 3 === 2;
  let type = base;
  if (tensor === 'token_embd.weight') {
    if (base !== 'q8_0') type = rowLength % blockOf(base) === 0 ? 'q6_K' : 'q8_0';
  } else if (tensor === 'attn_qkv.weight' || tensor === 'ffn_down.weight') {
    if ((weightType === 'q4_K_M' || weightType === 'q5_K_M') && moreBits) type = 'q6_K';
    else if (weightType === 'q4_K_S' && layer < (tensor === 'attn_qkv.weight' ? 4 : eighth)) type = 'q5_K';
  }
  if (rowLength % blockOf(type) === 0) return type;
  const fallback = ({ q4_K: 'q5_0', q5_K: 'q5_1', q6_K: 'q8_0' } as const)[type as 'q4_K' | 'q5_K' | 'q6_K'];
  return fallback !== undefined && rowLength % blockOf(fallback) === 0 ? fallback : 'f16';
}

function blockOf(type: GgmlWriteType): number {
  return GGML_QUANTS.get(GGML_TYPE[type])?.block ?? 1;
}

async function encode(values: Float32Array, type: GgmlWriteType): Promise<Uint8Array> {
  switch (type) {
    case 'f32': return bytes(values);
    case 'f16': return bytes(f32ToF16(values));
    case 'bf16': return bytes(f32ToBf16(values));
    default: return loadAddon().quantizeGgml(type, values, os.availableParallelism());
  }
}

function tensorsOf(model: Model, weightType: GgufWeightType): GgufTensor[] {
  const { nLayer, nEmbd: C, nCtx, vocabSize: V } = model.config;
  const vector = (hfName: string): GgufTensor['data'] => async () => bytes(model.getParam(hfName));
  const f32 = GGML_TYPE.f32;
  const embeddingType = tensorTypeOf(weightType, 'token_embd.weight', 0, nLayer, C);
  // The output head is tied to the token embeddings: llama.cpp reuses token_embd when output.weight is absent.
  const out: GgufTensor[] = [
    { name: 'token_embd.weight', dims: [C, V], type: GGML_TYPE[embeddingType], data: () => encode(model.getParam('wte.weight'), embeddingType) },
    { name: 'position_embd.weight', dims: [C, nCtx], type: f32, data: vector('wpe.weight') },
  ];
  for (let l = 0; l < nLayer; l++) {
    for (const [gguf, hf, conv1d] of LAYER_TENSORS) {
      const hfName = `h.${l}.${hf}`;
      const shape = model.tensors.find((t) => t.name === hfName)?.shape ?? [];
      if (!conv1d) {
        out.push({ name: `blk.${l}.${gguf}`, dims: [shape[0]], type: f32, data: vector(hfName) });
        continue;
      }
      const [inputs, outputs] = shape;
      const type = tensorTypeOf(weightType, gguf, l, nLayer, inputs);
      out.push({ name: `blk.${l}.${gguf}`, dims: [inputs, outputs], type: GGML_TYPE[type], data: () => encode(transpose(model.getParam(hfName), inputs, outputs), type) });
    }
  }
  out.push(
    { name: 'output_norm.weight', dims: [C], type: f32, data: vector('ln_f.weight') },
    { name: 'output_norm.bias', dims: [C], type: f32, data: vector('ln_f.bias') },
  );
  return out;
}

// The vocabulary as llama.cpp's "gpt2" tokenizer wants it: token strings in id order (GPT-2's printable stand-ins
// for bytes, as encoder.json has them) and the merge lines.
function readVocabulary(vocabulary: Vocabulary, vocabSize: number): { tokens: string[]; merges: string[] } {
  const where = vocabulary.files.encoderPath;
  const encoder = JSON.parse(vocabulary.encoderBytes.toString('utf8')) as Record<string, number>;
  const entries = Object.entries(encoder);
  if (entries.length !== vocabSize) {
    throw new Error(`${where}: has ${entries.length} tokens, the model's vocab_size is ${vocabSize}; GGUF needs exactly one token per id`);
  }
  const tokens = new Array<string>(vocabSize);
  for (const [token, id] of entries) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize || tokens[id] !== undefined) {
      throw new Error(`${where}: token ${JSON.stringify(token)} has id ${id}; GGUF needs ids 0..${vocabSize - 1}, each once`);
    }
    tokens[id] = token;
  }
  const merges = vocabulary.mergesBytes.toString('utf8').split('\n').filter((line) => line !== '' && !line.startsWith('#version'));
  return { tokens, merges };
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
  // A 4-byte number of `type`, written by `write`.
  private keyWord(key: string, type: number, write: (b: Buffer) => void): void {
    this.key(key, type);
    const b = Buffer.alloc(4);
    write(b);
    this.push(b);
  }
  keyI32(key: string, v: number): void {
    this.keyWord(key, VALUE.i32, (b) => b.writeInt32LE(v));
  }
  keyF32(key: string, v: number): void {
    this.keyWord(key, VALUE.f32, (b) => b.writeFloatLE(v));
  }
  keyBool(key: string, v: boolean): void {
    this.key(key, VALUE.bool);
    this.push(Buffer.from([v ? 1 : 0]));
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

// Writes `model` with `vocabulary` to `file` (atomically), one tensor in memory at a time.
export async function writeGguf(file: string, model: Model, vocabulary: Vocabulary, options: GgufExportOptions): Promise<void> {
  const c = model.config;
  const { tokens, merges } = readVocabulary(vocabulary, c.vocabSize);
  const eot = vocabulary.eotToken;
  const tensors = tensorsOf(model, options.weightType);

  const h = new HeaderWriter();
  h.keyString('general.architecture', 'gpt2');
  h.keyString('general.name', options.name);
  h.keyU32('general.file_type', FILE_TYPES[options.weightType].fileType);
  h.keyU32('general.quantization_version', 2);  // ggml's block layouts of today, as llama.cpp's own writers record
  h.keyU32('gpt2.context_length', c.nCtx);
  h.keyU32('gpt2.embedding_length', c.nEmbd);
  h.keyU32('gpt2.feed_forward_length', 4 * c.nEmbd);
  h.keyU32('gpt2.block_count', c.nLayer);
  h.keyU32('gpt2.attention.head_count', c.nHead);
  h.keyF32('gpt2.attention.layer_norm_epsilon', 1e-5);
  h.keyString('tokenizer.ggml.model', 'gpt2');
  h.keyString('tokenizer.ggml.pre', 'gpt-2');
  h.keyStrings('tokenizer.ggml.tokens', tokens);
  const added = new Map(vocabulary.addedTokens.map((t) => [t.id, t.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED]));
  h.keyI32s('tokenizer.ggml.token_type', Int32Array.from(tokens, (_, id) => added.get(id) ?? TOKEN_NORMAL));
  h.keyStrings('tokenizer.ggml.merges', merges);
  h.keyU32('tokenizer.ggml.bos_token_id', eot);
  // The end of text the tokenizer's files declare (a ChatML fine-tune's <|im_end|>), where llama.cpp stops a reply.
  h.keyU32('tokenizer.ggml.eos_token_id', vocabulary.eosToken);
  // GPT-2 begins a text with no token of its own: llama.cpp would otherwise decide by the vocabulary's type.
  h.keyBool('tokenizer.ggml.add_bos_token', false);
  const sampling = model.generationConfig?.json ?? {};
  for (const { key, field, type } of GGUF_SAMPLING_KEYS) {
    const value = field === 'temperature' && sampling.do_sample === false ? 0 : sampling[field];
    if (typeof value !== 'number') continue;
    if (type === 'i32') h.keyI32(key, value);
    else h.keyF32(key, value);
  }
  const { template, audiences } = options.chat ?? model.chat;
  if (template !== null) h.keyString(GGUF_CHAT_TEMPLATE_KEY, template);
  if (audiences.length > 0) h.keyString(GGUF_AUDIENCES_KEY, JSON.stringify(audiences));
  await writeGgufFile(file, h, tensors, options.onProgress);
}

// A GGUF file of the metadata `h` holds and `tensors` (their infos, then their data, each aligned), written
// atomically, one tensor in memory at a time.
async function writeGgufFile(file: string, h: HeaderWriter, tensors: readonly GgufTensor[], onProgress?: (bytes: number, totalBytes: number) => void): Promise<void> {
  h.keyU32('general.alignment', ALIGNMENT);
  const metadata = h.entries;
  let offset = 0;
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    const size = dataBytes(t.type, t.dims) as number;
    offset += size + padding(size);
  }

  const start = new HeaderWriter();
  start.u32(0x46554747);  // "GGUF"
  start.u32(3);
  start.u64(tensors.length);
  start.u64(metadata);
  const headerBytes = start.length + h.length + padding(start.length + h.length);
  await writeFileAtomic(file, async (fd) => {
    await writeFully(fd, start.bytes());
    await writeFully(fd, h.bytes());
    await writeFully(fd, new Uint8Array(headerBytes - start.length - h.length));
    let written = headerBytes;
    for (const t of tensors) {
      const data = await t.data();
      await writeFully(fd, data);
      await writeFully(fd, new Uint8Array(padding(data.byteLength)));
      written += data.byteLength + padding(data.byteLength);
      onProgress?.(written, headerBytes + offset);
    }
  });
}

// The float types a LoRA adapter's factors are written in.
export const GGUF_ADAPTER_TYPES: readonly GgufWeightType[] = ['f32', 'f16', 'bf16'];

// A PEFT adapter as llama.cpp's LoRA adapter file (what its convert_lora_to_gguf.py writes, and llama-cli --lora,
// llama-server --lora, node-llama-cpp's `lora` and ollama's ADAPTER load over the base's GGUF): general.type
// "adapter", adapter.type "lora", and for each adapted matrix X, X.lora_a (A [r, in], ggml dims [in, r]) and
// X.lora_b (B [out, r], dims [r, out]), the product being W x + scale B (A x). llama.cpp's scale is
// adapter.lora.alpha / r for the whole file; an alpha of 0 makes it 1, so each module's own scaling (its alpha and
// rank patterns, rsLoRA) is multiplied into its B instead.
export async function writeGgufAdapter(file: string, adapter: PeftAdapter, options: GgufExportOptions): Promise<void> {
  const type = options.weightType;
  if (!GGUF_ADAPTER_TYPES.includes(type)) throw new Error(`an adapter's factors are written in ${GGUF_ADAPTER_TYPES.join(', ')}, not ${type}: llama.cpp's adapters are small and unquantized`);
  checkFactorsOnly(adapter, 'llama.cpp\'s LoRA file', 'export the merged folder (bin/export-gguf)');
  const ggmlType = FILE_TYPES[type].base;
  const h = new HeaderWriter();
  h.keyString('general.architecture', 'gpt2');
  h.keyString('general.type', 'adapter');
  h.keyString('general.name', options.name);
  h.keyU32('general.file_type', FILE_TYPES[type].fileType);
  h.keyString('adapter.type', 'lora');
  h.keyF32('adapter.lora.alpha', 0);
  const tensors: GgufTensor[] = [];
  for (const m of adapter.modules) {
    const name = `blk.${m.layer}.${LAYER_TENSORS.find(([, hf]) => hf === `${m.kind}.weight`)?.[0]}`;
    tensors.push(
      { name: `${name}.lora_a`, dims: [m.inputs, m.rank], type: GGML_TYPE[ggmlType], data: () => encode(m.a, ggmlType) },
      { name: `${name}.lora_b`, dims: [m.rank, m.outputs], type: GGML_TYPE[ggmlType], data: () => encode(m.b.map((v) => v * m.scaling), ggmlType) },
    );
  }
  await writeGgufFile(file, h, tensors, options.onProgress);
}
