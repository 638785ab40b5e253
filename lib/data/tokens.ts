// A tokenized dataset as training sees it: token ids cut into chunks (a chunk is one run of text, files
// joined by <|endoftext|>; a training window never crosses from one chunk into the next). Two kinds: tokens
// held in memory (text encoded at start-up, encode.py's .npz), and a token file read in place
// (lib/data/token_file.ts).
import crypto from 'node:crypto';

export interface TokenSource {
  // Where the tokens came from, for messages.
  readonly description: string;
  readonly tokenCount: number;
  // chunkCount + 1 token offsets: chunk i is [chunkStarts[i], chunkStarts[i + 1]).
  readonly chunkStarts: Float64Array;
  // Every token id is below this bound (the vocabulary the tokens were made with).
  readonly vocabSize: number;
  // Copies tokens [start, start + out.length) into out.
  read(start: number, out: Int32Array): void;
  close(): void;
}

// Tokens in memory, 16 bits each where the vocabulary allows (GPT-2's does), else 32.
export class MemoryTokens implements TokenSource {
  readonly tokenCount: number;
  readonly chunkStarts: Float64Array;
  private readonly tokens: Uint16Array | Uint32Array;

  constructor(
    readonly description: string,
    chunks: readonly ArrayLike<number>[],
    readonly vocabSize: number,
  ) {
    const kept = chunks.filter((c) => c.length > 0);
    this.chunkStarts = new Float64Array(kept.length + 1);
    for (let i = 0; i < kept.length; i++) this.chunkStarts[i + 1] = this.chunkStarts[i] + kept[i].length;
    this.tokenCount = this.chunkStarts[kept.length];
    this.tokens = vocabSize <= 0x10000 ? new Uint16Array(this.tokenCount) : new Uint32Array(this.tokenCount);
    kept.forEach((chunk, i) => {
      checkTokenIds(chunk, vocabSize, `${description}, chunk ${i}`);
      this.tokens.set(chunk, this.chunkStarts[i]);
    });
  }

  read(start: number, out: Int32Array): void {
    if (start < 0 || start + out.length > this.tokenCount) {
      throw new RangeError(`${this.description}: tokens [${start}, ${start + out.length}) are outside [0, ${this.tokenCount})`);
    }
    out.set(this.tokens.subarray(start, start + out.length));
  }

  close(): void {}
}

// A SHA-256 of a source's size, its chunks and its tokens, of all of them up to 2^20 and else of 256 blocks of 4096
// spread evenly over it: what tells two copies of a dataset apart (the ranks of a data-parallel run, each reading
// its own) without reading the whole of a large one.
export function tokenDigest(source: TokenSource): string {
  const BLOCK = 4096;
  const BLOCKS = 256;
  const n = source.tokenCount;
  const hash = crypto.createHash('sha256');
  hash.update(`${n} tokens below ${source.vocabSize}\n`);
  hash.update(new Uint8Array(source.chunkStarts.buffer, source.chunkStarts.byteOffset, source.chunkStarts.byteLength));
  const whole = n <= BLOCK * BLOCKS;
  const block = new Int32Array(Math.min(BLOCK, n));
  for (let b = 0; b < (whole ? Math.ceil(n / BLOCK) : BLOCKS); b++) {
    const start = whole ? b * BLOCK : Math.floor((b * (n - BLOCK)) / (BLOCKS - 1));
    const part = block.subarray(0, Math.min(BLOCK, n - start));
    source.read(start, part);
    hash.update(new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
  }
  return hash.digest('hex');
}

// Throws naming `where` and the token's place when an id is not in the vocabulary; `first` is the place of
// tokens[0] in what `where` names (a file read in blocks).
export function checkTokenIds(tokens: ArrayLike<number>, vocabSize: number, where: string, first = 0): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(t >= 0 && t < vocabSize)) throw new Error(`${where}: token ${first + i} is ${t}, outside the vocabulary [0, ${vocabSize})`);
  }
}

// The same part of every chunk of a source, [from, to) of each chunk's length, as a source of its own: with
// from = 0 and to = 0.9 the first 90% of each chunk, with 0.9 and 1 the last 10%. Training on the one and validating
// on the other (bin/train --val_split) holds data out with no window of either reaching into the other; for chat
// files written oldest first (bin/import-chat's), the part held out is each chunk's newest messages.
export class ChunkParts implements TokenSource {
  readonly tokenCount: number;
  readonly chunkStarts: Float64Array;
  readonly vocabSize: number;
  private readonly sourceStarts: Float64Array;  // where each part begins in the source

  constructor(
    private readonly source: TokenSource,
    from: number,
    to: number,
    readonly description: string,
  ) {
    const parts: [number, number][] = [];
    for (let c = 0; c + 1 < source.chunkStarts.length; c++) {
      const start = source.chunkStarts[c];
      const size = source.chunkStarts[c + 1] - start;
      const begin = start + Math.floor(size * from);
      const end = start + Math.floor(size * to);
      if (end > begin) parts.push([begin, end]);
    }
    this.chunkStarts = new Float64Array(parts.length + 1);
    this.sourceStarts = new Float64Array(parts.length);
    parts.forEach(([begin, end], i) => {
      this.sourceStarts[i] = begin;
      this.chunkStarts[i + 1] = this.chunkStarts[i] + (end - begin);
    });
    this.tokenCount = this.chunkStarts[parts.length];
    this.vocabSize = source.vocabSize;
  }

  // A read stays within one part: what lies between two parts is the other side's.
  read(start: number, out: Int32Array): void {
    let lo = 0;
    let hi = this.sourceStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunkStarts[mid] <= start) lo = mid;
      else hi = mid - 1;
    }
    if (start < 0 || start + out.length > this.chunkStarts[lo + 1]) {
      throw new RangeError(`${this.description}: tokens [${start}, ${start + out.length}) are not within one part`);
    }
    this.source.read(this.sourceStarts[lo] + (start - this.chunkStarts[lo]), out);
  }

  // The source is its owner's to close.
  close(): void {}
}
