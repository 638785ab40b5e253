// The token file `bin/encode` writes: a dataset encoded once, read by training in place with positional
// reads (fs.readSync at an offset per training row), so a dataset of many gigabytes costs its chunk table
// in memory and no more; the operating system's page cache keeps the hot parts. (Node has no memory map of
// its own, and the mmap addons on npm are not well kept; a positional read of one row per batch row costs
// microseconds next to a training step.)
//
// Layout, all integers little-endian:
//   offset  size
//   0       8    magic "DXTOKENS"
//   8       4    format version (1)
//   12      4    bytes per token: 2 (uint16, when vocab_size <= 65536) or 4 (uint32)
//   16      4    vocab_size: every token id is below it
//   20      4    the <|endoftext|> token id of the vocabulary
//   24      8    token count N
//   32      8    chunk count C
//   40      24   zero
//   64      N * bytes per token: the tokens of every chunk, one after another
//   then    (C + 1) * 8: uint64 token offsets of the chunk starts, 0 first and N last
// The chunk table comes last so that the writer can stream tokens without knowing their number.
import fs from 'node:fs';
import os from 'node:os';
import { writeAllSync, writeFileAtomic } from '../util/atomic_file';
import { TokenSource, checkTokenIds } from './tokens';
import { readHead } from '../util/file_bytes';

// Tokens go to and from the file through typed arrays, which are little-endian on every platform Node runs
// dixie on (x86-64, arm64); refuse a big-endian one rather than write files no one else can read.
if (os.endianness() !== 'LE') throw new Error('token files: a big-endian machine is not supported');

const MAGIC = Buffer.from('DXTOKENS', 'latin1');
const VERSION = 1;
const HEADER_BYTES = 64;
const WRITE_BUFFER_TOKENS = 1 << 20;
const CHECK_BLOCK_TOKENS = 1 << 22;

export interface TokenFileHeader {
  bytesPerToken: 2 | 4;
  vocabSize: number;
  eotToken: number;
  tokenCount: number;
  chunkCount: number;
}

// True when the file starts with the token file's magic.
export function isTokenFile(file: string): boolean {
  return readHead(file, MAGIC.length).equals(MAGIC);
}

export interface TokenSink {
  // Appends tokens to the current chunk.
  append(tokens: ArrayLike<number>): void;
  // Ends the current chunk (an empty chunk is dropped).
  endChunk(): void;
}

// Writes a token file atomically: `produce` appends tokens and ends chunks through the sink.
export async function writeTokenFile(
  target: string,
  vocab: { vocabSize: number; eotToken: number },
  produce: (sink: TokenSink) => Promise<void>,
): Promise<TokenFileHeader> {
  const bytesPerToken = vocab.vocabSize <= 0x10000 ? 2 : 4;
  const header: TokenFileHeader = { bytesPerToken, vocabSize: vocab.vocabSize, eotToken: vocab.eotToken, tokenCount: 0, chunkCount: 0 };
  await writeFileAtomic(target, async (fd) => {
    const buffer = bytesPerToken === 2 ? new Uint16Array(WRITE_BUFFER_TOKENS) : new Uint32Array(WRITE_BUFFER_TOKENS);
    let buffered = 0;
    let position = HEADER_BYTES;
    const chunkStarts: number[] = [0];
    const flush = (): void => {
      writeAllSync(fd, new Uint8Array(buffer.buffer, 0, buffered * bytesPerToken), position);
      position += buffered * bytesPerToken;
      buffered = 0;
    };
    const sink: TokenSink = {
      append(tokens) {
        checkTokenIds(tokens, vocab.vocabSize, `${target}, chunk ${chunkStarts.length - 1}`);
        for (let from = 0; from < tokens.length; ) {
          if (buffered === WRITE_BUFFER_TOKENS) flush();
          const n = Math.min(tokens.length - from, WRITE_BUFFER_TOKENS - buffered);
          for (let i = 0; i < n; i++) buffer[buffered + i] = tokens[from + i];
          buffered += n;
          from += n;
        }
        header.tokenCount += tokens.length;
      },
      endChunk() {
        if (header.tokenCount > chunkStarts[chunkStarts.length - 1]) chunkStarts.push(header.tokenCount);
      },
    };
    await produce(sink);
    sink.endChunk();
    flush();
    header.chunkCount = chunkStarts.length - 1;
    const table = Buffer.alloc(chunkStarts.length * 8);
    chunkStarts.forEach((s, i) => table.writeBigUInt64LE(BigInt(s), i * 8));
    writeAllSync(fd, table, position);
    writeAllSync(fd, encodeHeader(header), 0);
  });
  return header;
}

function encodeHeader(h: TokenFileHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(VERSION, 8);
  b.writeUInt32LE(h.bytesPerToken, 12);
  b.writeUInt32LE(h.vocabSize, 16);
  b.writeUInt32LE(h.eotToken, 20);
  b.writeBigUInt64LE(BigInt(h.tokenCount), 24);
  b.writeBigUInt64LE(BigInt(h.chunkCount), 32);
  return b;
}

// A token file opened for reading; holds a file descriptor until close().
export class TokenFile implements TokenSource {
  readonly description: string;
  readonly header: TokenFileHeader;
  readonly chunkStarts: Float64Array;
  private fd: number;
  private scratch = new Uint8Array(0);

  constructor(readonly file: string) {
    this.description = file;
    this.fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(this.fd).size;
      const head = Buffer.alloc(HEADER_BYTES);
      if (fs.readSync(this.fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES || !head.subarray(0, 8).equals(MAGIC)) {
        throw new Error(`${file}: not a token file (no "DXTOKENS" magic; make one with bin/encode)`);
      }
      const version = head.readUInt32LE(8);
      if (version !== VERSION) throw new Error(`${file}: token file version ${version}; this dixie reads version ${VERSION}`);
      const bytesPerToken = head.readUInt32LE(12);
      if (bytesPerToken !== 2 && bytesPerToken !== 4) throw new Error(`${file}: bytes per token is ${bytesPerToken}, must be 2 or 4`);
      this.header = {
        bytesPerToken,
        vocabSize: head.readUInt32LE(16),
        eotToken: head.readUInt32LE(20),
        tokenCount: Number(head.readBigUInt64LE(24)),
        chunkCount: Number(head.readBigUInt64LE(32)),
      };
      const { tokenCount, chunkCount } = this.header;
      const expected = HEADER_BYTES + tokenCount * bytesPerToken + (chunkCount + 1) * 8;
      if (size !== expected) {
        throw new Error(`${file}: ${size} bytes, but its header (${tokenCount} tokens, ${chunkCount} chunks) implies ${expected}: truncated or damaged`);
      }
      const table = Buffer.alloc((chunkCount + 1) * 8);
      fs.readSync(this.fd, table, 0, table.length, HEADER_BYTES + tokenCount * bytesPerToken);
      this.chunkStarts = new Float64Array(chunkCount + 1);
      for (let i = 0; i <= chunkCount; i++) {
        this.chunkStarts[i] = Number(table.readBigUInt64LE(i * 8));
        if (i > 0 && !(this.chunkStarts[i] > this.chunkStarts[i - 1])) throw new Error(`${file}: chunk table entry ${i} does not increase`);
      }
      if (this.chunkStarts[0] !== 0 || this.chunkStarts[chunkCount] !== tokenCount) {
        throw new Error(`${file}: the chunk table must run from 0 to the token count ${tokenCount}`);
      }
    } catch (err) {
      fs.closeSync(this.fd);
      throw err;
    }
  }

  get tokenCount(): number {
    return this.header.tokenCount;
  }

  get vocabSize(): number {
    return this.header.vocabSize;
  }

  // Reads every token once, refusing the file at the first id outside its vocabulary. A file whose header
  // claims the model's vocabulary can still hold any 16- or 32-bit value (damage, another tool's writer), and a
  // bad id would reach the model only when a window over it is drawn, hours in and naming no file. One pass
  // at disk speed, like the reading and encoding of a text dataset at start-up, and far cheaper; progress in
  // bytes goes to `onProgress`.
  checkTokenIds(onProgress: ((bytes: number, totalBytes: number) => void) | null = null): void {
    const { bytesPerToken, tokenCount, vocabSize } = this.header;
    const block = new Int32Array(Math.min(CHECK_BLOCK_TOKENS, tokenCount));
    for (let start = 0; start < tokenCount; start += block.length) {
      const out = block.subarray(0, Math.min(block.length, tokenCount - start));
      this.read(start, out);
      checkTokenIds(out, vocabSize, this.file, start);
      onProgress?.((start + out.length) * bytesPerToken, tokenCount * bytesPerToken);
    }
  }

  read(start: number, out: Int32Array): void {
    const { bytesPerToken, tokenCount } = this.header;
    if (start < 0 || start + out.length > tokenCount) {
      throw new RangeError(`${this.file}: tokens [${start}, ${start + out.length}) are outside [0, ${tokenCount})`);
    }
    const bytes = out.length * bytesPerToken;
    if (this.scratch.length < bytes) this.scratch = new Uint8Array(bytes);
    const got = fs.readSync(this.fd, this.scratch, 0, bytes, HEADER_BYTES + start * bytesPerToken);
    if (got !== bytes) throw new Error(`${this.file}: short read at token ${start} (${got} of ${bytes} bytes)`);
    out.set(bytesPerToken === 2 ? new Uint16Array(this.scratch.buffer, 0, out.length) : new Uint32Array(this.scratch.buffer, 0, out.length));
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
