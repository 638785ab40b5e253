// A tokenized dataset as training sees it: token ids cut into chunks (a chunk is one run of text, files
// joined by <|endoftext|>; a training window never crosses from one chunk into the next). Two kinds: tokens
// held in memory (text encoded at start-up, encode.py's .npz), and a token file read in place
// (lib/data/token_file.ts).
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

export function checkTokenIds(tokens: ArrayLike<number>, vocabSize: number, where: string): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(t >= 0 && t < vocabSize)) throw new Error(`${where}: token ${i} is ${t}, outside the vocabulary [0, ${vocabSize})`);
  }
}
