// TensorFlow's checkpoint format (the "tensor bundle", TF >= 1.0): <prefix>.index is a LevelDB-format sorted
// table mapping each variable name to a BundleEntryProto (dtype, shape, shard, offset, size, masked crc32c),
// with the empty key holding a BundleHeaderProto (number of shards, endianness); <prefix>.data-NNNNN-of-MMMMM
// hold the raw little-endian tensor bytes. The index is small and read whole; tensors are read one at a time
// with positional reads, and each is checked against its crc32c.
import fs from 'node:fs';
import { crc32c, unmaskCrc } from './crc32c';
import { type Dtype, floatKindOf, readAsFloat32, readFully } from './safetensors';
import { snappyUncompress } from './snappy';

// TensorFlow's DataType enum (types.proto) for the types a bundle can hold as raw bytes.
const TF_DTYPES: ReadonlyMap<number, { name: string; bytes: number; safetensors: Dtype | null }> = new Map([
  [1, { name: 'DT_FLOAT', bytes: 4, safetensors: 'F32' }],
  [2, { name: 'DT_DOUBLE', bytes: 8, safetensors: 'F64' }],
  [3, { name: 'DT_INT32', bytes: 4, safetensors: 'I32' }],
  [4, { name: 'DT_UINT8', bytes: 1, safetensors: 'U8' }],
  [5, { name: 'DT_INT16', bytes: 2, safetensors: 'I16' }],
  [6, { name: 'DT_INT8', bytes: 1, safetensors: 'I8' }],
  [8, { name: 'DT_COMPLEX64', bytes: 8, safetensors: null }],
  [9, { name: 'DT_INT64', bytes: 8, safetensors: 'I64' }],
  [10, { name: 'DT_BOOL', bytes: 1, safetensors: 'BOOL' }],
  [11, { name: 'DT_QINT8', bytes: 1, safetensors: null }],
  [12, { name: 'DT_QUINT8', bytes: 1, safetensors: null }],
  [13, { name: 'DT_QINT32', bytes: 4, safetensors: null }],
  [14, { name: 'DT_BFLOAT16', bytes: 2, safetensors: 'BF16' }],
  [15, { name: 'DT_QINT16', bytes: 2, safetensors: null }],
  [16, { name: 'DT_QUINT16', bytes: 2, safetensors: null }],
  [17, { name: 'DT_UINT16', bytes: 2, safetensors: 'U16' }],
  [18, { name: 'DT_COMPLEX128', bytes: 16, safetensors: null }],
  [19, { name: 'DT_HALF', bytes: 2, safetensors: 'F16' }],
  [22, { name: 'DT_UINT32', bytes: 4, safetensors: 'U32' }],
  [23, { name: 'DT_UINT64', bytes: 8, safetensors: 'U64' }],
]);
const DT_STRING = 7;

// LevelDB table layout.
const TABLE_MAGIC = 0xdb4775248b80fb57n;
const FOOTER_BYTES = 48;     // two block handles padded to 40 bytes, then the 8-byte magic
const TRAILER_BYTES = 5;     // after each block: compression type, masked crc32c of block + type
const NO_COMPRESSION = 0;
const SNAPPY_COMPRESSION = 1;

export interface TFTensorEntry {
  name: string;
  dtype: string;              // TensorFlow's name: DT_FLOAT, DT_INT64, ...
  safetensorsDtype: Dtype | null;
  shape: number[];
  numel: number;
  shard: number;
  offset: number;             // in the shard file
  size: number;               // bytes
  crc32c: number;             // unmasked crc32c of the tensor bytes
}

// Reads protobuf wire format and varints from a slice of a file, with errors that say where.
class Cursor {
  pos: number;
  constructor(readonly bytes: Uint8Array, readonly where: string, start = 0, readonly end = bytes.length) {
    this.pos = start;
  }

  fail(what: string): never {
    throw new Error(`${this.where}: ${what} (at byte ${this.pos})`);
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  // A varint of up to 64 bits that must fit a double exactly (all sizes, offsets and dims do).
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.bytes[this.pos++];
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) {
        if (!Number.isSafeInteger(value)) this.fail(`varint ${value} too large`);
        return value;
      }
    }
    return this.fail('varint longer than 10 bytes');
  }

  fixed32(): number {
    if (this.pos + 4 > this.end) this.fail('truncated fixed32');
    const b = this.bytes;
    const value = (b[this.pos] | (b[this.pos + 1] << 8) | (b[this.pos + 2] << 16) | (b[this.pos + 3] << 24)) >>> 0;
    this.pos += 4;
    return value;
  }

  take(n: number): Uint8Array {
    if (n > this.end - this.pos) this.fail(`${n} bytes run past the end`);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  // Protobuf fields: calls visit(field, wireType) which must consume the value, or returns false to skip it.
  fields(visit: (field: number, wire: number) => boolean): void {
    while (!this.done()) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wire = key % 8;
      if (visit(field, wire)) continue;
      if (wire === 0) this.varint();
      else if (wire === 1) this.take(8);
      else if (wire === 2) this.take(this.varint());
      else if (wire === 5) this.take(4);
      else this.fail(`protobuf field ${field} has unsupported wire type ${wire}`);
    }
  }

  // A length-delimited field as its own cursor.
  message(where: string): Cursor {
    const n = this.varint();
    if (n > this.end - this.pos) this.fail(`embedded message of ${n} bytes runs past the end`);
    const sub = new Cursor(this.bytes, where, this.pos, this.pos + n);
    this.pos += n;
    return sub;
  }
}

interface BlockHandle {
  offset: number;
  size: number;
}

function readHandle(c: Cursor): BlockHandle {
  return { offset: c.varint(), size: c.varint() };
}

// One table block, its checksum verified and (if snappy-compressed) uncompressed.
function readBlock(file: Uint8Array, name: string, handle: BlockHandle, what: string): Uint8Array {
  const end = handle.offset + handle.size + TRAILER_BYTES;
  if (end > file.length) throw new Error(`${name}: ${what} (bytes ${handle.offset}..${end}) reaches beyond the end of the file (${file.length} bytes): truncated or corrupt`);
  const contents = file.subarray(handle.offset, handle.offset + handle.size);
  const type = file[handle.offset + handle.size];
  const stored = new Cursor(file, name, handle.offset + handle.size + 1).fixed32();
  const actual = crc32c(file.subarray(handle.offset, handle.offset + handle.size + 1));
  if (unmaskCrc(stored) !== actual) throw new Error(`${name}: ${what} fails its crc32c check: the index file is corrupt`);
  if (type === NO_COMPRESSION) return contents;
  if (type === SNAPPY_COMPRESSION) {
    try {
      return snappyUncompress(contents);
    } catch (err) {
      throw new Error(`${name}: ${what}: ${(err as Error).message}`);
    }
  }
  throw new Error(`${name}: ${what} uses compression type ${type}; only none (0) and snappy (1) exist`);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

// The key/value pairs of one block: entries of (shared, unshared, value length, key suffix, value), keys
// prefix-compressed against the previous key except at restart points, whose offsets end the block.
function blockEntries(block: Uint8Array, where: string): [Uint8Array, Uint8Array][] {
  if (block.length < 4) throw new Error(`${where}: block of ${block.length} bytes is too short`);
  const tail = new Cursor(block, where, block.length - 4);
  const numRestarts = tail.fixed32();
  const restartsAt = block.length - 4 - 4 * numRestarts;
  if (numRestarts === 0 || restartsAt < 0) throw new Error(`${where}: bad restart count ${numRestarts} for a block of ${block.length} bytes`);
  const restarts = new Set<number>();
  const restartCursor = new Cursor(block, where, restartsAt);
  for (let i = 0; i < numRestarts; i++) restarts.add(restartCursor.fixed32());
  const c = new Cursor(block, where, 0, restartsAt);
  const entries: [Uint8Array, Uint8Array][] = [];
  let key: Uint8Array = new Uint8Array(0);
  while (!c.done()) {
    const at = c.pos;
    const shared = c.varint();
    const unshared = c.varint();
    const valueLength = c.varint();
    if (shared > key.length) c.fail(`key shares ${shared} bytes with a previous key of ${key.length}`);
    if (restarts.has(at)) {
      if (shared !== 0) c.fail('a restart point holds a prefix-compressed key');
      restarts.delete(at);
    }
    const next = new Uint8Array(shared + unshared);
    next.set(key.subarray(0, shared));
    next.set(c.take(unshared), shared);
    key = next;
    entries.push([key, c.take(valueLength)]);
  }
  if (restarts.size > 0) throw new Error(`${where}: restart point ${[...restarts][0]} is not at an entry`);
  return entries;
}

// All key/value pairs of a LevelDB-format table held in memory, in key order.
function readTable(file: Uint8Array, name: string): [Uint8Array, Uint8Array][] {
  if (file.length < FOOTER_BYTES) throw new Error(`${name}: ${file.length} bytes is too short for a checkpoint index (truncated?)`);
  const footerAt = file.length - FOOTER_BYTES;
  const magic = Buffer.from(file.buffer, file.byteOffset + file.length - 8, 8).readBigUInt64LE(0);
  if (magic !== TABLE_MAGIC) throw new Error(`${name}: not a TensorFlow checkpoint index (no table magic at the end: truncated or corrupt)`);
  const footer = new Cursor(file, `${name}: footer`, footerAt, file.length - 8);
  readHandle(footer);  // the metaindex block: TensorFlow writes it empty and nothing in it is needed
  const indexHandle = readHandle(footer);
  const indexBlock = readBlock(file, name, indexHandle, `index block at byte ${indexHandle.offset}`);
  const entries: [Uint8Array, Uint8Array][] = [];
  // The data blocks lie one after another before the index block, as a table is written: so checked before each is
  // read, the blocks read are at most the file's bytes. An index whose entries all named one block that snappy
  // expands a thousandfold would have it uncompressed again for each, gigabytes from a small file.
  let blocksEnd = 0;
  for (const [, handleBytes] of blockEntries(indexBlock, `${name}: index block`)) {
    const handle = readHandle(new Cursor(handleBytes, `${name}: index block`));
    const where = `data block at byte ${handle.offset}`;
    if (handle.offset < blocksEnd) {
      throw new Error(`${name}: index block: ${where} begins before the end of the data block before it (byte ${blocksEnd}): the index is corrupt`);
    }
    blocksEnd = handle.offset + handle.size + TRAILER_BYTES;
    if (blocksEnd > indexHandle.offset) {
      throw new Error(`${name}: index block: ${where} (${handle.size} bytes) runs into the index block at byte ${indexHandle.offset}: the index is corrupt`);
    }
    entries.push(...blockEntries(readBlock(file, name, handle, where), `${name}: ${where}`));
  }
  for (let i = 1; i < entries.length; i++) {
    if (compareBytes(entries[i - 1][0], entries[i][0]) >= 0) {
      throw new Error(`${name}: keys out of order at "${Buffer.from(entries[i][0]).toString('utf8')}": the index is corrupt`);
    }
  }
  return entries;
}

function parseHeader(value: Uint8Array, where: string): number {
  const c = new Cursor(value, where);
  let numShards = 1;
  let bigEndian = false;
  c.fields((field, wire) => {
    if (field === 1 && wire === 0) numShards = c.varint();
    else if (field === 2 && wire === 0) bigEndian = c.varint() === 1;
    else return false;
    return true;
  });
  if (bigEndian) throw new Error(`${where}: the checkpoint was written big-endian; only little-endian checkpoints are read`);
  if (numShards < 1) throw new Error(`${where}: num_shards is ${numShards}`);
  return numShards;
}

function parseShape(c: Cursor, where: string): number[] {
  const shape: number[] = [];
  c.fields((field, wire) => {
    if (field === 2 && wire === 2) {
      const dim = c.message(where);
      let size = 0;
      dim.fields((f, w) => {
        if (f === 1 && w === 0) size = dim.varint();
        else return false;
        return true;
      });
      shape.push(size);
    } else if (field === 3 && wire === 0) {
      if (c.varint() !== 0) c.fail('the shape has unknown rank');
    } else {
      return false;
    }
    return true;
  });
  return shape;
}

function parseEntry(name: string, value: Uint8Array, where: string): TFTensorEntry {
  const c = new Cursor(value, where);
  let dtypeCode = 0;
  let shape: number[] = [];
  let shard = 0;
  let offset = 0;
  let size = 0;
  let crc: number | null = null;
  c.fields((field, wire) => {
    if (field === 1 && wire === 0) dtypeCode = c.varint();
    else if (field === 2 && wire === 2) shape = parseShape(c.message(where), where);
    else if (field === 3 && wire === 0) shard = c.varint();
    else if (field === 4 && wire === 0) offset = c.varint();
    else if (field === 5 && wire === 0) size = c.varint();
    else if (field === 6 && wire === 5) crc = c.fixed32();
    else if (field === 7) throw new Error(`${where}: a partitioned variable (saved in slices); only whole variables are read`);
    else return false;
    return true;
  });
  const numel = shape.reduce((n, d) => n * d, 1);
  if (dtypeCode === DT_STRING) {
    return { name, dtype: 'DT_STRING', safetensorsDtype: null, shape, numel, shard, offset, size, crc32c: crc ?? 0 };
  }
  const dtype = TF_DTYPES.get(dtypeCode);
  if (!dtype) throw new Error(`${where}: unsupported dtype code ${dtypeCode}`);
  if (crc === null) throw new Error(`${where}: no crc32c`);
  if (numel * dtype.bytes !== size) {
    throw new Error(`${where}: ${dtype.name} [${shape.join(', ')}] needs ${numel * dtype.bytes} bytes but the entry says ${size}`);
  }
  return { name, dtype: dtype.name, safetensorsDtype: dtype.safetensors, shape, numel, shard, offset, size, crc32c: unmaskCrc(crc) };
}

function shardFileName(prefix: string, shard: number, numShards: number): string {
  return `${prefix}.data-${String(shard).padStart(5, '0')}-of-${String(numShards).padStart(5, '0')}`;
}

export class TFCheckpoint {
  readonly prefix: string;
  readonly indexFile: string;
  readonly numShards: number;
  readonly tensors: readonly TFTensorEntry[];  // by name, as the index sorts them
  private readonly byName: Map<string, TFTensorEntry>;
  private readonly fds = new Map<number, number>();
  private closed = false;

  private constructor(prefix: string, numShards: number, tensors: TFTensorEntry[]) {
    this.prefix = prefix;
    this.indexFile = `${prefix}.index`;
    this.numShards = numShards;
    this.tensors = tensors;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  // prefix: the path without .index (…/model.ckpt, …/model-1234).
  static open(prefix: string): TFCheckpoint {
    const indexFile = `${prefix}.index`;
    const bytes = new Uint8Array(fs.readFileSync(indexFile));
    const entries = readTable(bytes, indexFile);
    if (entries.length === 0 || entries[0][0].length !== 0) throw new Error(`${indexFile}: no bundle header (the entry with the empty key)`);
    const numShards = parseHeader(entries[0][1], `${indexFile}: bundle header`);
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const tensors = entries.slice(1).map(([key, value]) => {
      let name: string;
      try {
        name = decoder.decode(key);
      } catch {
        throw new Error(`${indexFile}: a variable name is not valid UTF-8: the index is corrupt`);
      }
      const entry = parseEntry(name, value, `${indexFile}: variable "${name}"`);
      if (entry.shard >= numShards) throw new Error(`${indexFile}: variable "${name}" is in shard ${entry.shard} of ${numShards}`);
      return entry;
    });
    // Every tensor must lie inside its shard file: a truncated shard is reported now, not mid-import.
    const shardSizes = new Map<number, number>();
    for (const t of tensors) {
      if (t.size === 0) continue;
      const file = shardFileName(prefix, t.shard, numShards);
      if (!shardSizes.has(t.shard)) {
        if (!fs.existsSync(file)) throw new Error(`${file}: missing (variable "${t.name}" is stored there)`);
        shardSizes.set(t.shard, fs.statSync(file).size);
      }
      const have = shardSizes.get(t.shard) as number;
      if (t.offset + t.size > have) {
        throw new Error(`${file}: variable "${t.name}" needs bytes ${t.offset}..${t.offset + t.size} but the file has ${have} bytes (truncated?)`);
      }
    }
    return new TFCheckpoint(prefix, numShards, tensors);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  tensor(name: string): TFTensorEntry {
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`${this.indexFile}: no variable "${name}"`);
    return entry;
  }

  // Reads one tensor's raw bytes into dst (exactly its size) and checks them against the crc32c of the index.
  readInto(tensor: string | TFTensorEntry, dst: ArrayBufferView): void {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    if (entry.dtype === 'DT_STRING') throw new Error(`${this.indexFile}: variable "${entry.name}" is a string tensor; only numeric tensors are read`);
    if (dst.byteLength !== entry.size) {
      throw new Error(`${this.indexFile}: variable "${entry.name}" has ${entry.size} bytes (${entry.dtype} [${entry.shape.join(', ')}]) but the buffer has ${dst.byteLength}`);
    }
    const bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
    const file = shardFileName(this.prefix, entry.shard, this.numShards);
    readFully(this.shardFd(entry.shard), bytes, entry.offset, file, `variable "${entry.name}"`);
    if (crc32c(bytes) !== entry.crc32c) {
      throw new Error(`${file}: variable "${entry.name}" (bytes ${entry.offset}..${entry.offset + entry.size}) fails its crc32c check: the data is corrupt`);
    }
  }

  // One tensor as float32, from DT_FLOAT, DT_HALF, DT_BFLOAT16 or DT_DOUBLE.
  readF32(tensor: string | TFTensorEntry): Float32Array {
    const entry = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    const kind = floatKindOf(entry.safetensorsDtype);
    if (kind === undefined) throw new Error(`${this.indexFile}: variable "${entry.name}" is ${entry.dtype}, not a float tensor`);
    return readAsFloat32(kind, entry.numel, (dst) => this.readInto(entry, dst));
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.closed = true;
  }

  private shardFd(shard: number): number {
    if (this.closed) throw new Error(`${this.indexFile}: the checkpoint is closed`);
    let fd = this.fds.get(shard);
    if (fd === undefined) {
      fd = fs.openSync(shardFileName(this.prefix, shard, this.numShards), 'r');
      this.fds.set(shard, fd);
    }
    return fd;
  }
}

export function openTFCheckpoint(prefix: string): TFCheckpoint {
  return TFCheckpoint.open(prefix);
}
