// A dataset's text file, read as UTF-8 with what is wrong with it said by file and line. A file that is not text
// at all (an image, an archive, UTF-16) is refused: trained on as text it would teach the model noise. Bytes that
// are not UTF-8 are read as U+FFFD, as they always were, but said; so is a file with no text.
import { constants, isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import { lineAt } from '../util/lines';

export interface TextFile {
  text: string;       // without a leading byte order mark, which Windows editors and exports write
  bytes: number;
  warnings: string[];  // "file:line: what", or "file: what" for the whole file
}

// Lines of invalid UTF-8 named one by one in a file's warnings; the rest are counted.
const NAMED_BAD_LINES = 5;

// A text file is read whole, into one string, which holds at most this many characters (about 512 MB of text).
const MAX_CHARS = constants.MAX_STRING_LENGTH;

function tooBig(file: string): Error {
  const megabytes = Math.round(fs.statSync(file).size / 1e6);
  return new Error(
    `${file}: ${megabytes} MB, more text than one file can hold (a text file is read whole, into at most ${MAX_CHARS} characters, about ` +
      `${Math.floor(MAX_CHARS / 2 ** 20)} MB): split it into files under that size in a folder, and give the folder as the dataset ` +
      `(split -C 256m ${file} part-, say, which splits between lines)`,
  );
}

// Node's codes for a file too big for a buffer, and a text too long for a string.
const TOO_BIG = new Set(['ERR_FS_FILE_TOO_LARGE', 'ERR_STRING_TOO_LONG']);

export function readTextFile(file: string): TextFile {
  try {
    return readWhole(file);
  } catch (err) {
    if (TOO_BIG.has((err as NodeJS.ErrnoException).code ?? '')) throw tooBig(file);
    throw err;
  }
}

function readWhole(file: string): TextFile {
  const data = fs.readFileSync(file);
  if ((data[0] === 0xff && data[1] === 0xfe) || (data[0] === 0xfe && data[1] === 0xff)) {
    throw new Error(`${file}: UTF-16 text (it starts with a UTF-16 byte order mark); save it as UTF-8`);
  }
  const nul = data.indexOf(0);
  if (nul >= 0) {
    throw new Error(`${file}:${lineAt(data, nul)}: a NUL byte (at byte ${nul}): a binary file (or UTF-16 text), not UTF-8 text; take it out of the dataset`);
  }
  const text = data.toString('utf8').replace(/^\uFEFF/, '');
  const warnings: string[] = [];
  if (text.trim() === '') warnings.push(`${file}: ${data.length === 0 ? 'empty' : 'only white space'}, nothing to train on`);
  if (!isUtf8(data)) {
    const bad: number[] = [];
    for (let start = 0, line = 1; start < data.length; line++) {
      let end = data.indexOf(0x0a, start);
      if (end < 0) end = data.length;
      if (!isUtf8(data.subarray(start, end))) bad.push(line);
      start = end + 1;
    }
    for (const line of bad.slice(0, NAMED_BAD_LINES)) warnings.push(`${file}:${line}: invalid UTF-8 (read as U+FFFD)`);
    if (bad.length > NAMED_BAD_LINES) warnings.push(`${file}: ${bad.length - NAMED_BAD_LINES} more lines of invalid UTF-8`);
  }
  return { text, bytes: data.length, warnings };
}
