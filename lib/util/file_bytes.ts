// Reading parts of a file by position: its head, which says what kind of file it is, and an archive's records.
import fs from 'node:fs';

// The first `bytes` bytes, or the whole file when it is shorter.
export function readHead(file: string, bytes: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(bytes);
    return head.subarray(0, fs.readSync(fd, head, 0, bytes, 0));
  } finally {
    fs.closeSync(fd);
  }
}

// `length` bytes at `position`. An archive's sizes and offsets are read from the archive itself, and a damaged one's
// may lie past its end, or past what a buffer may hold: they are refused before a buffer is made, saying that the
// file is `damaged` ("damaged zip").
export function readAt(fd: number, position: number, length: number, file: string, damaged: string): Buffer {
  const size = fs.fstatSync(fd).size;
  if (position < 0 || position + length > size) throw new Error(`${file}: ${damaged}: ${length} bytes at ${position} lie past its end (${size} bytes)`);
  const b = Buffer.alloc(length);
  const got = fs.readSync(fd, b, 0, length, position);
  if (got !== length) throw new Error(`${file}: ${damaged}: ${got} of the ${length} bytes at ${position} were read (the file shrank?)`);
  return b;
}
