// Pre-encoded datasets: encode.py's .npz (docs/compatibility.md), a zip (stored or deflated, ZIP64 when numpy
// forces it) of .npy arrays of token ids, one array per chunk. Only what those files use is read: 1-D (or
// C-order) integer arrays, little-endian.
import { ZipArchive } from '../util/zip';

export interface NpyArray {
  name: string;   // the array's name in the archive (arr_0, ...)
  data: Int32Array;
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
function parseNpy(bytes: Buffer, where: string): Int32Array {
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
  const zip = ZipArchive.open(file);
  try {
    return zip.entries
      .filter((e) => !e.name.endsWith('/'))
      .map((e) => ({ name: e.name.replace(/\.npy$/, ''), data: parseNpy(zip.read(e), zip.pathOf(e)) }));
  } finally {
    zip.close();
  }
}
