// Reading tar archives as zip.ts reads zips: Skype's "Export your Skype data" hands out a .tar holding messages.json.
// A tar is a 512-byte header per entry, its data after it padded to 512 bytes; the headers are walked once for the
// entries, and an entry is read with a positional read when asked for. Plain (uncompressed) POSIX ustar, with GNU's
// and pax's long names; a compressed .tar.gz is not read.
import buffer from 'node:buffer';
import fs from 'node:fs';
import { entryPath } from './zip';
import { readAt } from './file_bytes';

export interface TarEntry {
  name: string;            // its path in the archive, '/'-separated
  size: number;
  offset: number;          // where its data begins
}

const BLOCK = 512;
const CUT_SHORT = 'a tar archive cut short (an entry ends past the end of the file): an interrupted download or copy; get it again';
const DAMAGED = 'damaged tar';
const REGULAR = new Set(['0', '\0', '7']);
const GNU_LONG_NAME = 'L';
const POSIX_MAGIC = 'ustar\0';
const PAX_HEADER = 'x';

// Whether bytes begin as a ustar archive does ("ustar" at 257, as POSIX, GNU and pax tars write it), whatever the
// file is called.
export function isTar(bytes: Uint8Array): boolean {
  return bytes.length >= BLOCK && Buffer.from(bytes.subarray(257, 262)).toString('latin1') === 'ustar';
}

export class TarArchive {
  private constructor(
    readonly file: string,
    private fd: number | null,
    readonly entries: readonly TarEntry[],
  ) {}

  static open(file: string): TarArchive {
    const fd = fs.openSync(file, 'r');
    try {
      return new TarArchive(file, fd, tarEntries(fd, file));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  // How messages name an entry: its path in the archive under the archive's path (export.tar/messages.json).
  pathOf(entry: TarEntry): string {
    return entryPath(this.file, entry.name);
  }

  read(entry: TarEntry): Buffer {
    if (this.fd === null) throw new Error(`${this.file}: read after close`);
    if (entry.size > buffer.constants.MAX_LENGTH) throw new Error(`${this.pathOf(entry)}: ${entry.size} bytes, too large to read at once`);
    return readAt(this.fd, entry.offset, entry.size, this.file, DAMAGED);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function tarEntries(fd: number, file: string): TarEntry[] {
  const size = fs.fstatSync(fd).size;
  const entries: TarEntry[] = [];
  // A GNU long name or a pax "path" names the entry whose header comes next.
  let longName: string | null = null;
  for (let at = 0; at + BLOCK <= size; ) {
    const header = readAt(fd, at, BLOCK, file, DAMAGED);
    // The archive ends with blocks of zeros.
    if (header.every((b) => b === 0)) break;
    if (!isTar(header)) throw new Error(`${file}: not a tar archive, or a damaged one (no ustar header at byte ${at})`);
    if (checksum(header) !== octal(header, 148, 8)) throw new Error(`${file}: a damaged tar archive (the header at byte ${at} fails its checksum)`);
    const type = String.fromCharCode(header[156]);
    const dataSize = octal(header, 124, 12);
    const data = at + BLOCK;
    if (data + dataSize > size) throw new Error(`${file}: ${CUT_SHORT}`);
    if (type === GNU_LONG_NAME) longName = cString(readAt(fd, data, dataSize, file, DAMAGED));
    else if (type === PAX_HEADER) longName = paxPath(readAt(fd, data, dataSize, file, DAMAGED)) ?? longName;
    else {
      // POSIX's ustar keeps a long path's folders in a prefix field, where GNU's keeps other fields.
      const prefix = header.toString('latin1', 257, 263) === POSIX_MAGIC ? cString(header.subarray(345, 500)) : '';
      const name = longName ?? (prefix === '' ? '' : `${prefix}/`) + cString(header.subarray(0, 100));
      if (REGULAR.has(type)) entries.push({ name, size: dataSize, offset: data });
      longName = null;
    }
    at = data + Math.ceil(dataSize / BLOCK) * BLOCK;
  }
  return entries;
}

// A header's sum of bytes, its checksum field counted as spaces.
function checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
  return sum;
}

// A number field: octal digits, or, past their reach (files of 8 GiB and more), GNU's big-endian base 256.
function octal(header: Buffer, offset: number, length: number): number {
  if (header[offset] & 0x80) {
    let value = 0;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + header[i];
    return value;
  }
  const digits = header.toString('latin1', offset, offset + length).replace(/\0.*$/s, '').trim();
  return digits === '' ? 0 : parseInt(digits, 8);
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end);
}

// A pax extended header's "path" record ("<length> path=<name>\n" among others), or null without one.
function paxPath(records: Buffer): string | null {
  for (let at = 0; at < records.length; ) {
    const space = records.indexOf(0x20, at);
    const length = parseInt(records.toString('latin1', at, space), 10);
    if (space < 0 || !(length > 0)) break;
    const record = records.toString('utf8', space + 1, at + length - 1);
    if (record.startsWith('path=')) return record.slice('path='.length);
    at += length;
  }
  return null;
}
