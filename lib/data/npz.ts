// Pre-encoded datasets: encode.py's .npz (docs/compatibility.md), a zip (stored or deflated, ZIP64 when numpy
// forces it) of .npy arrays of token ids, one array per chunk. Only what those files use is read: 1-D (or
// C-order) integer arrays, little-endian.
import fs from 'node:fs';
import zlib from 'node:zlib';

export interface NpyArray {
  name: string;   // the array's name in the archive (arr_0, ...)
  data: Int32Array;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;

interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function readAt(fd: number, position: number, length: number, file: string): Buffer {
  const b = Buffer.alloc(length);
  const got = fs.readSync(fd, b, 0, length, position);
  if (got !== length) throw new Error(`${file}: truncated zip (wanted ${length} bytes at ${position})`);
  return b;
}

function centralDirectory(fd: number, file: string): ZipEntry[] {
  const size = fs.fstatSync(fd).size;
  const tailLength = Math.min(size, 22 + 0xffff);
  const tail = readAt(fd, size - tailLength, tailLength, file);
  let at = -1;
  for (let i = tailLength - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD) {
      at = i;
      break;
    }
  }
  if (at < 0) throw new Error(`${file}: not a zip archive (no end of central directory record), so not an .npz`);
  let count = tail.readUInt16LE(at + 10);
  let cdSize = tail.readUInt32LE(at + 12);
  let cdOffset = tail.readUInt32LE(at + 16);
  const locatorAt = size - tailLength + at - 20;
  if ((count === 0xffff || cdOffset === U32_MAX || cdSize === U32_MAX) && locatorAt >= 0) {
    const locator = readAt(fd, locatorAt, 20, file);
    if (locator.readUInt32LE(0) === ZIP64_LOCATOR) {
      const record = readAt(fd, Number(locator.readBigUInt64LE(8)), 56, file);
      if (record.readUInt32LE(0) !== ZIP64_EOCD) throw new Error(`${file}: damaged ZIP64 end of central directory`);
      count = Number(record.readBigUInt64LE(32));
      cdSize = Number(record.readBigUInt64LE(40));
      cdOffset = Number(record.readBigUInt64LE(48));
    }
  }
  const cd = readAt(fd, cdOffset, cdSize, file);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (cd.readUInt32LE(p) !== CENTRAL) throw new Error(`${file}: damaged central directory at entry ${i}`);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const entry: ZipEntry = {
      flags: cd.readUInt16LE(p + 8),
      method: cd.readUInt16LE(p + 10),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localOffset: cd.readUInt32LE(p + 42),
      name: cd.toString('utf8', p + 46, p + 46 + nameLength),
    };
    applyZip64Extra(entry, cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength));
    entries.push(entry);
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// ZIP64's extra field (id 1) holds, in this order, each of the sizes and the offset that read 0xffffffff.
function applyZip64Extra(entry: ZipEntry, extra: Buffer): void {
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(q);
    const length = extra.readUInt16LE(q + 2);
    if (id === 1) {
      let r = q + 4;
      const next = (): number => {
        const v = Number(extra.readBigUInt64LE(r));
        r += 8;
        return v;
      };
      if (entry.size === U32_MAX) entry.size = next();
      if (entry.compressedSize === U32_MAX) entry.compressedSize = next();
      if (entry.localOffset === U32_MAX) entry.localOffset = next();
    }
    q += 4 + length;
  }
}

function entryBytes(fd: number, entry: ZipEntry, file: string): Buffer {
  const where = `${file}: ${entry.name}`;
  if (entry.flags & 1) throw new Error(`${where}: encrypted zip entries are not supported`);
  const local = readAt(fd, entry.localOffset, 30, file);
  if (local.readUInt32LE(0) !== LOCAL) throw new Error(`${where}: damaged local file header`);
  const dataAt = entry.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  const raw = readAt(fd, dataAt, entry.compressedSize, file);
  let bytes: Buffer;
  if (entry.method === 0) bytes = raw;
  else if (entry.method === 8) bytes = zlib.inflateRawSync(raw);
  else throw new Error(`${where}: zip compression method ${entry.method} is not supported (only stored and deflate)`);
  if (bytes.length !== entry.size) throw new Error(`${where}: ${bytes.length} bytes after decompression, the zip says ${entry.size}`);
  return bytes;
}

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
const INTEGER_TYPES: Record<string, { bytes: number; read: (b: Buffer, at: number) => number }> = {
  '<i2': { bytes: 2, read: (b, at) => b.readInt16LE(at) },
  '<u2': { bytes: 2, read: (b, at) => b.readUInt16LE(at) },
  '<i4': { bytes: 4, read: (b, at) => b.readInt32LE(at) },
  '<u4': { bytes: 4, read: (b, at) => b.readUInt32LE(at) },
  '<i8': { bytes: 8, read: (b, at) => Number(b.readBigInt64LE(at)) },
  '<u8': { bytes: 8, read: (b, at) => Number(b.readBigUInt64LE(at)) },
};

// One .npy file (format versions 1 to 3) of integers, as int32 token ids.
export function parseNpy(bytes: Buffer, where: string): Int32Array {
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(NPY_MAGIC)) throw new Error(`${where}: not an .npy array (bad magic)`);
  const major = bytes[6];
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', headerStart, headerStart + headerLength);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`${where}: unreadable .npy header ${JSON.stringify(header)}`);
  const type = INTEGER_TYPES[descr.replace(/^\|/, '<').replace(/^=/, '<')];
  if (!type) throw new Error(`${where}: dtype ${descr}; token arrays must be little-endian integers (${Object.keys(INTEGER_TYPES).join(', ')})`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (fortran === 'True' && shape.length > 1) throw new Error(`${where}: a Fortran-order array of shape (${shape.join(', ')}) is not a token list`);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = headerStart + headerLength;
  if (bytes.length !== dataStart + count * type.bytes) {
    throw new Error(`${where}: ${bytes.length - dataStart} data bytes, shape (${shape.join(', ')}) of ${descr} needs ${count * type.bytes}`);
  }
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const v = type.read(bytes, dataStart + i * type.bytes);
    if (v < 0 || v > 0x7fffffff) throw new Error(`${where}: element ${i} is ${v}, not a token id`);
    out[i] = v;
  }
  return out;
}

// Every array of an .npz, in archive order.
export function readNpz(file: string): NpyArray[] {
  const fd = fs.openSync(file, 'r');
  try {
    return centralDirectory(fd, file)
      .filter((e) => !e.name.endsWith('/'))
      .map((e) => ({ name: e.name.replace(/\.npy$/, ''), data: parseNpy(entryBytes(fd, e, file), `${file}: ${e.name}`) }));
  } finally {
    fs.closeSync(fd);
  }
}
