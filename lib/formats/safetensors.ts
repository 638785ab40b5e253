// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
// ({"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ...}, offsets
// relative to the end of the header), then the tensor bytes. Reading validates the whole header up front and
// then reads one tensor at a time with positional reads; writing streams one tensor at a time, so neither
// ever holds a whole model in memory.
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { type FileToWrite, writeFilesAtomic } from '../util/atomic_file';
import { isJsonObject } from '../util/json_object';
import { quoted } from '../util/quoted';
import { readJsonObject } from '../util/json_file';

export type Dtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

// In Hugging Face's order of increasing alignment: the writer sorts by it (largest first) as they do.
const DTYPE_ORDER: readonly Dtype[] = [
  'BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64',
];

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

// Hugging Face refuses larger headers; so do we, before allocating anything for one.
const MAX_HEADER_BYTES = 100_000_000;
// One read or write call moves at most this much (the OS caps single calls near 2 GiB).
const IO_CHUNK = 1 << 30;

export interface TensorEntry {
  file: string;   // the file that holds it (a shard, in a sharded checkpoint)
  name: string;
  dtype: Dtype;
  shape: number[];
  numel: number;
  begin: number;  // absolute byte offsets in the file: [begin, end)
  end: number;
}

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  // Called once, when the writer reaches this tensor, so a caller can produce one tensor at a time.
  // Must return exactly numel x DTYPE_BYTES[dtype] bytes (little-endian).
  data: () => ArrayBufferView;
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

// Opens `file` for reading when it is a regular file, else refuses it, saying what it should be (`expected`). The open
// does not block: a FIFO opened for reading otherwise waits for a writer, for ever, before anything could be checked.
export function openRegularFile(file: string, expected: string): { fd: number; size: number } {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) {
    fs.closeSync(fd);
    throw new Error(`${file}: ${stat.isDirectory() ? 'a folder' : 'not a regular file'}, where ${expected}`);
  }
  return { fd, size: stat.size };
}

export function readFully(fd: number, dst: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < dst.byteLength) {
    const n = fs.readSync(fd, dst, done, Math.min(IO_CHUNK, dst.byteLength - done), position + done);
    if (n === 0) throw new Error(`${file}: ${what}: the file ends at byte ${position + done}, expected ${dst.byteLength - done} more bytes (truncated?)`);
    done += n;
  }
}

const writeAt = promisify(fs.write);

// Written on the thread pool, so that the event loop runs meanwhile: a model's weights take seconds to write.
export async function writeFully(fd: number, src: Uint8Array): Promise<void> {
  let done = 0;
  while (done < src.byteLength) {
    done += (await writeAt(fd, src, done, Math.min(IO_CHUNK, src.byteLength - done), null)).bytesWritten;
  }
}

function parseEntry(file: string, name: string, value: unknown, dataStart: number, fileSize: number): TensorEntry {
  const where = `${file}: tensor "${name}"`;
  if (!isJsonObject(value)) throw new Error(`${where}: must be an object with dtype, shape and data_offsets`);
  for (const key of Object.keys(value)) {
    if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') throw new Error(`${where}: unknown field "${key}"`);
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (!isDtype(dtype)) throw new Error(`${where}: unknown dtype ${quoted(dtype)} (known: ${DTYPE_ORDER.join(', ')})`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${where}: shape must be a list of non-negative integers, got ${quoted(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new Error(`${where}: data_offsets must be [begin, end] of non-negative integers, got ${quoted(offsets)}`);
  }
  const [relBegin, relEnd] = offsets as [number, number];
  if (relEnd < relBegin) throw new Error(`${where}: data_offsets [${relBegin}, ${relEnd}] end before they begin`);
  const dims = shape as number[];
  const numel = numelOf(dims);
  const expected = numel * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(expected)) throw new Error(`${where}: shape [${dims.join(', ')}] is too large`);
  if (relEnd - relBegin !== expected) {
    throw new Error(`${where}: shape [${dims.join(', ')}] of ${dtype} needs ${expected} bytes but data_offsets [${relBegin}, ${relEnd}] span ${relEnd - relBegin}`);
  }
  const begin = dataStart + relBegin;
  const end = dataStart + relEnd;
  if (end > fileSize) {
    throw new Error(`${where}: data_offsets [${relBegin}, ${relEnd}] reach byte ${end} but the file has ${fileSize} bytes (truncated?)`);
  }
  return { file, name, dtype, shape: dims, numel, begin, end };
}

// An open safetensors file with a validated header. Tensors are listed in file order.
export class SafetensorsFile {
  readonly path: string;
  readonly tensors: readonly TensorEntry[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly dataStart: number;  // absolute offset of the first data byte
  private fd: number | null;
  private readonly byName: Map<string, TensorEntry>;

  private constructor(file: string, fd: number, tensors: TensorEntry[], metadata: Record<string, string>, dataStart: number) {
    this.path = file;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  static open(file: string): SafetensorsFile {
    const { fd, size } = openRegularFile(file, 'the weights should be one safetensors file');
    try {
      const { tensors, metadata, dataStart } = SafetensorsFile.readHeader(file, fd, size);
      return new SafetensorsFile(file, fd, tensors, metadata, dataStart);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private static readHeader(file: string, fd: number, fileSize: number): { tensors: TensorEntry[]; metadata: Record<string, string>; dataStart: number } {
    if (fileSize < 8) throw new Error(`${file}: not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
    const lengthBytes = new Uint8Array(8);
    readFully(fd, lengthBytes, 0, file, 'header length');
    const headerLength = Buffer.from(lengthBytes).readBigUInt64LE(0);
    if (headerLength > BigInt(fileSize - 8)) {
      throw new Error(`${file}: header length ${headerLength} reaches beyond the end of the file (${fileSize} bytes): truncated or not a safetensors file`);
    }
    if (headerLength > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const n = Number(headerLength);
    const headerBytes = new Uint8Array(n);
    readFully(fd, headerBytes, 8, file, 'header');
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (err) {
      throw new Error(`${file}: the header is not valid UTF-8 JSON: ${(err as Error).message}`);
    }
    if (!isJsonObject(header)) throw new Error(`${file}: the header must be a JSON object`);
    const dataStart = 8 + n;
    const metadata: Record<string, string> = {};
    const tensors: TensorEntry[] = [];
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isJsonObject(value)) throw new Error(`${file}: __metadata__ must be an object of strings`);
        for (const [key, v] of Object.entries(value)) {
          if (typeof v !== 'string') throw new Error(`${file}: __metadata__.${key} must be a string, got ${quoted(v)}`);
          metadata[key] = v;
        }
        continue;
      }
      tensors.push(parseEntry(file, name, value, dataStart, fileSize));
    }
    tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
    for (let i = 1; i < tensors.length; i++) {
      const prev = tensors[i - 1];
      const cur = tensors[i];
      if (cur.begin < prev.end) {
        throw new Error(`${file}: tensor "${cur.name}" (bytes ${cur.begin - dataStart}..${cur.end - dataStart}) overlaps tensor "${prev.name}" (bytes ${prev.begin - dataStart}..${prev.end - dataStart})`);
      }
    }
    return { tensors, metadata, dataStart };
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  tensor(name: string): TensorEntry {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.path}: no tensor "${name}"`);
    return entry;
  }

  // Reads one tensor's raw little-endian bytes into dst, which must be exactly that many bytes.
  readInto(tensor: string | TensorEntry, dst: ArrayBufferView): void {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    const size = entry.end - entry.begin;
    if (dst.byteLength !== size) {
      throw new Error(`${this.path}: tensor "${entry.name}" has ${size} bytes (${entry.dtype} [${entry.shape.join(', ')}]) but the buffer has ${dst.byteLength}`);
    }
    readFully(this.openFd(), bytesOf(dst), entry.begin, this.path, `tensor "${entry.name}"`);
  }

  // Part of one tensor's bytes, from byte `at` of it, into dst (a loader that streams a large tensor in slabs).
  readRange(entry: TensorEntry, at: number, dst: ArrayBufferView): void {
    if (at < 0 || at + dst.byteLength > entry.end - entry.begin) {
      throw new Error(`${this.path}: tensor "${entry.name}": bytes ${at}..${at + dst.byteLength} are outside its ${entry.end - entry.begin}`);
    }
    readFully(this.openFd(), bytesOf(dst), entry.begin + at, this.path, `tensor "${entry.name}"`);
  }

  // One tensor as float32, converting from F16, BF16 or F64.
  readF32(tensor: string | TensorEntry): Float32Array {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    const kind = floatKindOf(entry.dtype);
    if (kind === undefined) throw new Error(`${this.path}: tensor "${entry.name}" is ${entry.dtype}, not a float tensor`);
    return readAsFloat32(kind, entry.numel, (dst) => this.readInto(entry, dst));
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`${this.path}: the file is closed`);
    return this.fd;
  }
}

export function openSafetensors(file: string): SafetensorsFile {
  return SafetensorsFile.open(file);
}

// What reads a model's weights: one safetensors file, or the shards of one (SafetensorsShards).
export type SafetensorsReader = Pick<SafetensorsFile, 'path' | 'tensors' | 'has' | 'tensor' | 'readInto' | 'readRange' | 'readF32' | 'close'>;

// The index transformers' save_pretrained writes beside the shards of a model over its max_shard_size
// (model-00001-of-00003.safetensors, ...): {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}.
export const SHARDS_INDEX_SUFFIX = '.safetensors.index.json';

// A sharded checkpoint read as one file: its index's weight_map alone says which shard holds each tensor (a tensor
// it does not name is not read, as transformers does not); `path` is the index.
export class SafetensorsShards implements SafetensorsReader {
  readonly tensors: readonly TensorEntry[];
  private readonly byName: Map<string, TensorEntry>;

  private constructor(readonly path: string, private readonly shards: ReadonlyMap<string, SafetensorsFile>, tensors: TensorEntry[]) {
    this.tensors = tensors;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  static open(index: string): SafetensorsShards {
    const weightMap = readJsonObject(index).weight_map;
    if (!isJsonObject(weightMap)) throw new Error(`${index}: field "weight_map" must be an object of tensor name -> shard file`);
    const shards = new Map<string, SafetensorsFile>();
    try {
      const tensors: TensorEntry[] = [];
      for (const [name, shard] of Object.entries(weightMap)) {
        if (typeof shard !== 'string' || shard !== path.basename(shard)) {
          throw new Error(`${index}: weight_map "${name}" must name a shard file beside the index, got ${quoted(shard)}`);
        }
        const file = path.join(path.dirname(index), shard);
        let st = shards.get(file);
        if (!st) {
          if (!fs.existsSync(file)) throw new Error(`${file}: missing: ${index} names it the shard of tensor "${name}" (an interrupted download?)`);
          st = SafetensorsFile.open(file);
          shards.set(file, st);
        }
        if (!st.has(name)) throw new Error(`${file}: no tensor "${name}", which ${index}'s weight_map puts there`);
        tensors.push(st.tensor(name));
      }
      return new SafetensorsShards(index, shards, tensors);
    } catch (err) {
      for (const st of shards.values()) st.close();
      throw err;
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  tensor(name: string): TensorEntry {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.path}: no tensor "${name}" in its weight_map`);
    return entry;
  }

  readInto(tensor: string | TensorEntry, dst: ArrayBufferView): void {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    this.shardOf(entry).readInto(entry, dst);
  }

  readRange(entry: TensorEntry, at: number, dst: ArrayBufferView): void {
    this.shardOf(entry).readRange(entry, at, dst);
  }

  readF32(tensor: string | TensorEntry): Float32Array {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    return this.shardOf(entry).readF32(entry);
  }

  close(): void {
    for (const st of this.shards.values()) st.close();
  }

  private shardOf(entry: TensorEntry): SafetensorsFile {
    const st = this.shards.get(entry.file);
    if (!st) throw new Error(`${this.path}: tensor "${entry.name}" is not one of its shards' (${entry.file})`);
    return st;
  }
}

// A model's weights: a safetensors file, or the index of a sharded one (SHARDS_INDEX_SUFFIX).
export function openSafetensorsWeights(file: string): SafetensorsReader {
  return file.endsWith(SHARDS_INDEX_SUFFIX) ? SafetensorsShards.open(file) : SafetensorsFile.open(file);
}

function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// Writes tensors (and string metadata) atomically (safetensorsToWrite).
export async function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  await writeFilesAtomic([safetensorsToWrite(file, tensors, metadata)]);
}

// A safetensors file of tensors (and string metadata), checked now, its data read as it is written. Data lands in
// Hugging Face's order (largest dtype alignment first, then by name), back to back, after a header padded with
// spaces to a multiple of 8 bytes, so the file loads in Hugging Face's safetensors and every tensor is aligned for
// its dtype.
export function safetensorsToWrite(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): FileToWrite {
  const seen = new Set<string>();
  for (const t of tensors) {
    const where = `${file}: tensor "${t.name}"`;
    if (t.name === '' || t.name === '__metadata__') throw new Error(`${where}: not a valid tensor name`);
    if (seen.has(t.name)) throw new Error(`${where}: given twice`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) throw new Error(`${where}: unknown dtype ${quoted(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${where}: bad shape [${t.shape.join(', ')}]`);
  }
  if (metadata) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`${file}: metadata "${key}" must be a string`);
    }
  }
  const ordered = [...tensors].sort((a, b) => DTYPE_ORDER.indexOf(b.dtype) - DTYPE_ORDER.indexOf(a.dtype) || compareNames(a.name, b.name));
  // Built by hand rather than through an object, whose key order JavaScript rearranges for integer-like names.
  const fields: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    const sorted = Object.entries(metadata).sort(([a], [b]) => compareNames(a, b));
    fields.push(`"__metadata__":{${sorted.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  let offset = 0;
  for (const t of ordered) {
    const size = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
    fields.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] })}`);
    offset += size;
  }
  const json = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));

  return {
    target: file,
    fill: async (fd) => {
      await writeFully(fd, length);
      await writeFully(fd, padded);
      for (const t of ordered) {
        const bytes = bytesOf(t.data());
        const expected = numelOf(t.shape) * DTYPE_BYTES[t.dtype];
        if (bytes.byteLength !== expected) {
          throw new Error(`${file}: tensor "${t.name}": ${t.dtype} [${t.shape.join(', ')}] needs ${expected} bytes, data() gave ${bytes.byteLength}`);
        }
        await writeFully(fd, bytes);
      }
    },
  };
}

// --- 16-bit floats, as native/core/dtype.h converts them (round to nearest even; NaN stays NaN) ---

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

// How a file stores a float tensor; readers of every format convert through readAsFloat32.
export type FloatKind = 'f32' | 'f16' | 'bf16' | 'f64';

const FLOAT_KINDS: Partial<Record<Dtype, FloatKind>> = { F32: 'f32', F16: 'f16', BF16: 'bf16', F64: 'f64' };

export function floatKindOf(dtype: Dtype | null): FloatKind | undefined {
  return dtype === null ? undefined : FLOAT_KINDS[dtype];
}

// `numel` values stored as `kind`, read by `readInto` into a buffer of that type, as float32.
export function readAsFloat32(kind: FloatKind, numel: number, readInto: (dst: ArrayBufferView) => void): Float32Array {
  if (kind === 'f32') {
    const out = new Float32Array(numel);
    readInto(out);
    return out;
  }
  if (kind === 'f64') {
    const wide = new Float64Array(numel);
    readInto(wide);
    return Float32Array.from(wide);
  }
  const half = new Uint16Array(numel);
  readInto(half);
  return kind === 'f16' ? f16ToF32(half) : bf16ToF32(half);
}

export function bf16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return dst;
}

export function f32ToBf16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) {
      dst[i] = (b >>> 16) | 0x40;
    } else {
      dst[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return dst;
}

export function f16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    let exp = (h >>> 10) & 0x1f;
    let mant = h & 0x3ff;
    if (exp === 0x1f) {
      bits[i] = sign | 0x7f800000 | (mant << 13);
    } else if (exp === 0) {
      if (mant === 0) {
        bits[i] = sign;
      } else {  // subnormal: normalize
        exp = 127 - 15 + 1;
        while ((mant & 0x400) === 0) { mant <<= 1; exp--; }
        bits[i] = sign | (exp << 23) | ((mant & 0x3ff) << 13);
      }
    } else {
      bits[i] = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
  }
  return dst;
}

export function f32ToF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) {
    scratchF32[0] = src[i];
    const b = scratchU32[0];
    const sign = (b >>> 16) & 0x8000;
    const abs = b & 0x7fffffff;
    if (abs > 0x7f800000) {
      dst[i] = sign | 0x7e00;  // NaN
    } else if (abs >= 0x477ff000) {
      dst[i] = sign | 0x7c00;  // rounds to >= 65536: infinity
    } else if (abs < 0x38800000) {  // below the smallest normal half
      if (abs < 0x33000000) {
        dst[i] = sign;
      } else {
        const mant = (abs & 0x7fffff) | 0x800000;
        const shift = 126 - (abs >>> 23);  // 14..24
        const half = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const halfway = 1 << (shift - 1);
        dst[i] = sign | (half + (rem > halfway || (rem === halfway && (half & 1)) ? 1 : 0));
      }
    } else {
      const rebased = abs - (112 << 23);
      const half = rebased >>> 13;
      const rem = rebased & 0x1fff;
      dst[i] = sign | (half + (rem > 0x1000 || (rem === 0x1000 && (half & 1)) ? 1 : 0));
    }
  }
  return dst;
}
