// A TensorFlow tensor-bundle WRITER for tests: the index as a LevelDB-format table (data blocks with
// prefix-compressed keys and restart points, an index block of block handles, an empty metaindex block, the
// footer and its magic; every block with its masked crc32c trailer, optionally snappy-compressed), the
// BundleHeaderProto / BundleEntryProto values as protobuf, and the data shards. Written independently of the
// reader in lib/formats/tf_checkpoint.ts from the format's description, so each checks the other.
import fs from 'node:fs';
import path from 'node:path';
import { crc32c, MASK_DELTA } from '../../lib/formats/crc32c';

// The masking of lib/formats/crc32c.ts's unmaskCrc, which only a writer needs.
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

export type TFDtypeName = 'DT_FLOAT' | 'DT_DOUBLE' | 'DT_INT32' | 'DT_INT64' | 'DT_HALF' | 'DT_BFLOAT16';
const DTYPE_CODES: Record<TFDtypeName, number> = { DT_FLOAT: 1, DT_DOUBLE: 2, DT_INT32: 3, DT_INT64: 9, DT_HALF: 19, DT_BFLOAT16: 14 };

export interface BundleTensor {
  name: string;
  dtype: TFDtypeName;
  shape: number[];
  data: ArrayBufferView;
}

export interface BundleOptions {
  numShards?: number;        // tensors go round-robin into the shards
  blockSize?: number;        // a data block is cut once it reaches this many bytes
  restartInterval?: number;  // keys between restart points
  snappy?: boolean;          // compress every block
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

function fixed32(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

// Protobuf fields: varint (wire 0), bytes/message (wire 2), fixed32 (wire 5).
function pbVarint(field: number, value: number): number[] {
  return [...varint(field * 8), ...varint(value)];
}
function pbBytes(field: number, bytes: number[]): number[] {
  return [...varint(field * 8 + 2), ...varint(bytes.length), ...bytes];
}
function pbFixed32(field: number, value: number): number[] {
  return [...varint(field * 8 + 5), ...fixed32(value)];
}

function entryProto(dtype: number, shape: number[], shard: number, offset: number, size: number, crc: number): number[] {
  const dims = shape.flatMap((d) => pbBytes(2, d === 0 ? [] : pbVarint(1, d)));
  return [
    ...pbVarint(1, dtype), ...pbBytes(2, dims),
    ...(shard ? pbVarint(3, shard) : []), ...(offset ? pbVarint(4, offset) : []),
    ...pbVarint(5, size), ...pbFixed32(6, maskCrc(crc)),
  ];
}

// A greedy snappy compressor: literals, and 2-byte-offset copies of 4..64 bytes found through a hash of
// the next four bytes.
export function snappyCompress(src: Uint8Array): Uint8Array {
  const out: number[] = [...varint(src.length)];
  const table = new Map<number, number>();
  let literalStart = 0;
  const flushLiteral = (end: number): void => {
    for (let s = literalStart; s < end; s += 65536) {
      const n = Math.min(65536, end - s);
      if (n <= 60) out.push((n - 1) << 2);
      else if (n <= 256) out.push(60 << 2, n - 1);
      else out.push(61 << 2, (n - 1) & 0xff, (n - 1) >>> 8);
      for (let k = s; k < s + n; k++) out.push(src[k]);
    }
  };
  let i = 0;
  while (i + 4 <= src.length) {
    const key = src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24);
    const candidate = table.get(key);
    table.set(key, i);
    if (candidate !== undefined && i - candidate < 65536) {
      let n = 4;
      while (n < 64 && i + n < src.length && src[candidate + n] === src[i + n]) n++;
      flushLiteral(i);
      const offset = i - candidate;
      out.push(((n - 1) << 2) | 2, offset & 0xff, offset >>> 8);
      i += n;
      literalStart = i;
    } else {
      i++;
    }
  }
  flushLiteral(src.length);
  return Uint8Array.from(out);
}

class TableWriter {
  readonly bytes: number[] = [];
  constructor(private readonly snappy: boolean) {}

  // Appends a block with its trailer; returns its handle.
  block(contents: number[]): [number, number] {
    const body = this.snappy ? [...snappyCompress(Uint8Array.from(contents))] : contents;
    const type = this.snappy ? 1 : 0;
    const offset = this.bytes.length;
    this.bytes.push(...body, type);
    this.bytes.push(...fixed32(maskCrc(crc32c(Uint8Array.from([...body, type])))));
    return [offset, body.length];
  }
}

function encodeBlock(entries: [Buffer, number[]][], restartInterval: number): number[] {
  const out: number[] = [];
  const restarts: number[] = [0];  // even an empty block has one restart point
  let previous: Uint8Array = new Uint8Array(0);
  entries.forEach(([key, value], i) => {
    let shared = 0;
    if (i % restartInterval === 0) {
      if (i > 0) restarts.push(out.length);
    } else {
      while (shared < previous.length && shared < key.length && previous[shared] === key[shared]) shared++;
    }
    out.push(...varint(shared), ...varint(key.length - shared), ...varint(value.length), ...key.subarray(shared), ...value);
    previous = key;
  });
  for (const r of restarts) out.push(...fixed32(r));
  out.push(...fixed32(restarts.length));
  return out;
}

// Writes <prefix>.index and <prefix>.data-*-of-*, and a `checkpoint` file naming the prefix beside them.
// Returns where the data blocks of the index lie ([offset, size] without the trailer).
export function writeTFBundle(prefix: string, tensors: BundleTensor[], options: BundleOptions = {}): [number, number][] {
  const numShards = options.numShards ?? 1;
  const blockSize = options.blockSize ?? 4096;
  const restartInterval = options.restartInterval ?? 16;
  const shards: Buffer[][] = Array.from({ length: numShards }, () => []);
  const shardSizes = new Array<number>(numShards).fill(0);
  const sorted = [...tensors].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const header = [...pbVarint(1, numShards), ...pbBytes(3, pbVarint(1, 1))];
  const kv: [Buffer, number[]][] = [[Buffer.alloc(0), header]];
  sorted.forEach((t, i) => {
    const shard = i % numShards;
    const data = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    kv.push([Buffer.from(t.name, 'utf8'), entryProto(DTYPE_CODES[t.dtype], t.shape, shard, shardSizes[shard], data.length, crc32c(data))]);
    shards[shard].push(data);
    shardSizes[shard] += data.length;
  });

  const table = new TableWriter(options.snappy ?? false);
  const indexEntries: [Buffer, number[]][] = [];
  const dataBlocks: [number, number][] = [];
  let pending: [Buffer, number[]][] = [];
  let pendingBytes = 0;
  const flush = (): void => {
    const [offset, size] = table.block(encodeBlock(pending, restartInterval));
    dataBlocks.push([offset, size]);
    indexEntries.push([pending[pending.length - 1][0], [...varint(offset), ...varint(size)]]);
    pending = [];
    pendingBytes = 0;
  };
  for (const entry of kv) {
    pending.push(entry);
    pendingBytes += entry[0].length + entry[1].length + 3;
    if (pendingBytes >= blockSize) flush();
  }
  if (pending.length > 0) flush();
  const [metaOffset, metaSize] = table.block(encodeBlock([], restartInterval));
  const [indexOffset, indexSize] = table.block(encodeBlock(indexEntries, 1));
  const footer = [...varint(metaOffset), ...varint(metaSize), ...varint(indexOffset), ...varint(indexSize)];
  while (footer.length < 40) footer.push(0);
  footer.push(0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb);
  table.bytes.push(...footer);

  fs.mkdirSync(path.dirname(prefix), { recursive: true });
  fs.writeFileSync(`${prefix}.index`, Uint8Array.from(table.bytes));
  shards.forEach((parts, s) => {
    const name = `${prefix}.data-${String(s).padStart(5, '0')}-of-${String(numShards).padStart(5, '0')}`;
    fs.writeFileSync(name, Buffer.concat(parts));
  });
  const base = path.basename(prefix);
  fs.writeFileSync(path.join(path.dirname(prefix), 'checkpoint'), `model_checkpoint_path: "${base}"\nall_model_checkpoint_paths: "${base}"\n`);
  return dataBlocks;
}
