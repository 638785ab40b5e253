// Reading zip archives: encode.py's .npz datasets, and the zips chat apps hand out (an iPhone's WhatsApp export,
// Facebook's and Instagram's downloads). Entries are found through the central directory and read one at a time
// with positional reads, so that a download of many gigabytes of photos costs only the entries asked for. Stored
// and deflated entries, ZIP64 (numpy and Facebook write it), no encryption.
import buffer from 'node:buffer';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { readAt } from './file_bytes';

const DAMAGED = 'damaged zip';

export interface ZipEntry {
  name: string;            // its path in the archive, '/'-separated; a folder's ends with '/'
  size: number;            // bytes once decompressed
  method: number;
  flags: number;
  compressedSize: number;
  localOffset: number;
}

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const U32_MAX = 0xffffffff;
const EOCD_BYTES = 22;
const MAX_COMMENT = 0xffff;

// Whether bytes begin as a zip archive does (its first local file header), whatever the file is called.
export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

export class ZipArchive {
  private constructor(
    readonly file: string,
    private fd: number | null,
    readonly entries: readonly ZipEntry[],
  ) {}

  static open(file: string): ZipArchive {
    const fd = fs.openSync(file, 'r');
    try {
      return new ZipArchive(file, fd, centralDirectory(fd, file));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  // How messages name an entry: its path in the archive under the archive's path (mom.zip/_chat.txt).
  pathOf(entry: ZipEntry): string {
    return entryPath(this.file, entry.name);
  }

  // An entry's bytes, decompressed and checked against the size the archive gives.
  read(entry: ZipEntry): Buffer {
    const where = this.pathOf(entry);
    if (entry.flags & 1) throw new Error(`${where}: encrypted zip entries are not supported`);
    if (entry.size > buffer.constants.MAX_LENGTH || entry.compressedSize > buffer.constants.MAX_LENGTH) throw new Error(`${where}: ${entry.size} bytes, too large to read at once`);
    const local = this.readAt(entry.localOffset, 30);
    if (local.readUInt32LE(0) !== LOCAL) throw new Error(`${where}: damaged local file header`);
    const raw = this.readAt(entry.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28), entry.compressedSize);
    let bytes: Buffer;
    if (entry.method === 0) bytes = raw;
    else if (entry.method === 8) {
      try {
        // No more than the size the archive gives: a damaged or hostile entry cannot inflate past it.
        bytes = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new Error(`${where}: inflates to more than the ${entry.size} bytes the zip says it holds`);
        throw new Error(`${where}: damaged compressed data (${(err as Error).message})`);
      }
    } else throw new Error(`${where}: zip compression method ${entry.method} is not supported (only stored and deflate)`);
    if (bytes.length !== entry.size) throw new Error(`${where}: ${bytes.length} bytes after decompression, the zip says ${entry.size}`);
    return bytes;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private readAt(position: number, length: number): Buffer {
    if (this.fd === null) throw new Error(`${this.file}: read after close`);
    return readAt(this.fd, position, length, this.file, DAMAGED);
  }
}

// An entry's path under its archive's, as written in the archive: not joined as paths are, which would make of a
// name with "../" a path outside the archive, where nothing is.
export function entryPath(archive: string, name: string): string {
  return `${archive}/${name}`;
}

function centralDirectory(fd: number, file: string): ZipEntry[] {
  const size = fs.fstatSync(fd).size;
  const tailLength = Math.min(size, EOCD_BYTES + MAX_COMMENT);
  const tail = readAt(fd, size - tailLength, tailLength, file, DAMAGED);
  let at = -1;
  for (let i = tailLength - EOCD_BYTES; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    // The central directory comes last, so a download or copy cut short keeps the zip's first bytes only.
    if (isZip(readAt(fd, 0, Math.min(size, 4), file, DAMAGED))) throw new Error(`${file}: a zip archive cut short (no central directory at its end): an interrupted download or copy; get it again`);
    throw new Error(`${file}: not a zip archive (no end of central directory record)`);
  }
  let count = tail.readUInt16LE(at + 10);
  let cdSize = tail.readUInt32LE(at + 12);
  let cdOffset = tail.readUInt32LE(at + 16);
  const locatorAt = size - tailLength + at - 20;
  if ((count === 0xffff || cdOffset === U32_MAX || cdSize === U32_MAX) && locatorAt >= 0) {
    const locator = readAt(fd, locatorAt, 20, file, DAMAGED);
    if (locator.readUInt32LE(0) === ZIP64_LOCATOR) {
      const record = readAt(fd, Number(locator.readBigUInt64LE(8)), 56, file, DAMAGED);
      if (record.readUInt32LE(0) !== ZIP64_EOCD) throw new Error(`${file}: damaged ZIP64 end of central directory`);
      count = Number(record.readBigUInt64LE(32));
      cdSize = Number(record.readBigUInt64LE(40));
      cdOffset = Number(record.readBigUInt64LE(48));
    }
  }
  const cd = readAt(fd, cdOffset, cdSize, file, DAMAGED);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw new Error(`${file}: damaged central directory at entry ${i}`);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const entry: ZipEntry = {
      flags: cd.readUInt16LE(p + 8),
      method: cd.readUInt16LE(p + 10),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localOffset: cd.readUInt32LE(p + 42),
      // Some Windows tools write names with backslashes.
      name: cd.toString('utf8', p + 46, p + 46 + nameLength).replace(/\\/g, '/'),
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
