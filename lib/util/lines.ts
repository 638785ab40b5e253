// Lines of text (a string, or its bytes), for messages that place a problem at file:line, and an append-only log's
// lines newest first. A line feed ends a line, as editors count them; a \r before it changes nothing.
import fs from 'node:fs';

// The 1-based line of an offset (characters of a string, bytes of a Buffer).
export function lineAt(text: string | Buffer, offset: number): number {
  return lineCounter(text)(offset);
}

// The lines of offsets asked for in increasing order, each counted on from the one before: a file's lines in one
// pass, however many of them are asked for.
export function lineCounter(text: string | Buffer): (offset: number) => number {
  let line = 1;
  let nextLineBreak = text.indexOf('\n');
  return (offset) => {
    for (; nextLineBreak >= 0 && nextLineBreak < offset; nextLineBreak = text.indexOf('\n', nextLineBreak + 1)) line++;
    return line;
  };
}

// The non-blank lines of a file from its last to its first, read `chunkBytes` at a time from the end, so that the
// newest entries of an append-only log cost what they hold, not the whole log. A line feed byte is never part of a
// multi-byte UTF-8 character, so each line is decoded whole. The file closes when the reader stops.
export function* linesFromEnd(file: string, chunkBytes = 64 * 1024): Generator<string> {
  const fd = fs.openSync(file, 'r');
  try {
    let position = fs.fstatSync(fd).size;
    let rest: Buffer = Buffer.alloc(0);  // the end of a line whose start is in a chunk not yet read
    while (position > 0) {
      const size = Math.min(chunkBytes, position);
      position -= size;
      const chunk = Buffer.alloc(size);
      fs.readSync(fd, chunk, 0, size, position);
      const bytes = Buffer.concat([chunk, rest]);
      let end = bytes.length;
      // end > 0: lastIndexOf from offset -1 would search from the buffer's end again.
      while (end > 0) {
        const at = bytes.lastIndexOf(0x0a, end - 1);
        if (at < 0) break;
        const line = bytes.subarray(at + 1, end).toString('utf8').replace(/\r$/, '');
        if (line.trim() !== '') yield line;
        end = at;
      }
      rest = bytes.subarray(0, end);
    }
    const first = rest.toString('utf8').replace(/\r$/, '');
    if (first.trim() !== '') yield first;
  } finally {
    fs.closeSync(fd);
  }
}
