// Training windows drawn uniformly over token positions: every start position whose window of `length`
// tokens stays inside one chunk is equally likely (no window crosses a chunk boundary, and no draw is
// rejected: the valid starts of all chunks are counted up front and one is picked by binary search).
import { Rng } from '../util/rng';
import { TokenSource } from './tokens';

const SHORT_ADVICE = 'combine files into bigger chunks (--combine) or use a shorter context (--context_length)';

export class WindowSampler {
  // validBefore[c]: valid start positions in the chunks before chunk c; the last entry is the total.
  private readonly validBefore: Float64Array;
  private readonly row: Int32Array;
  // Chunks shorter than a window, from which no window is ever drawn, and the tokens in them.
  readonly shortChunks: number = 0;
  readonly shortTokens: number = 0;

  constructor(
    readonly source: TokenSource,
    readonly length: number,
  ) {
    const chunks = source.chunkStarts.length - 1;
    this.validBefore = new Float64Array(chunks + 1);
    let longest = 0;
    for (let c = 0; c < chunks; c++) {
      const size = source.chunkStarts[c + 1] - source.chunkStarts[c];
      longest = Math.max(longest, size);
      if (size < length) {
        this.shortChunks++;
        this.shortTokens += size;
      }
      this.validBefore[c + 1] = this.validBefore[c] + Math.max(0, size - length + 1);
    }
    if (this.validBefore[chunks] === 0) {
      throw new Error(`${source.description}: no chunk holds ${length} tokens (the longest has ${longest}); train on more text, ${SHORT_ADVICE}`);
    }
    this.row = new Int32Array(length);
  }

  // What is never drawn, said as a warning; null when every chunk holds a window. A window never crosses from one
  // chunk into the next, so a chunk shorter than a window (a short document under --combine 0, the tail of a short
  // chunk under --val_split) is never read.
  shortWarning(): string | null {
    if (this.shortChunks === 0) return null;
    const chunks = this.source.chunkStarts.length - 1;
    return (
      `${this.shortChunks.toLocaleString('en-US')} of the ${chunks.toLocaleString('en-US')} chunks of ${this.source.description} ` +
      `(${this.shortTokens.toLocaleString('en-US')} of ${this.source.tokenCount.toLocaleString('en-US')} tokens) are shorter than a window of ` +
      `${this.length} tokens and are never read: ${SHORT_ADVICE}`
    );
  }

  // The token position where a uniformly drawn window starts.
  drawStart(rng: Rng): number {
    const v = this.validBefore;
    const r = rng.below(v[v.length - 1]);
    let lo = 0;
    let hi = v.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (v[mid] <= r) lo = mid;
      else hi = mid - 1;
    }
    return this.source.chunkStarts[lo] + (r - v[lo]);
  }

  // B windows of length T + 1 = this.length, split into inputs (first T tokens) and targets (last T) of B x T.
  // With `rows`, only the windows [rows.first, rows.first + rows.count) of the B drawn are read, into rows.count x T:
  // a data-parallel rank's slice of the global batch, drawn as one rank would draw it all.
  batch(rng: Rng, B: number, inputs: Int32Array, targets: Int32Array, rows = { first: 0, count: B }): void {
    const T = this.length - 1;
    for (let b = 0; b < B; b++) {
      const start = this.drawStart(rng);
      const row = b - rows.first;
      if (row < 0 || row >= rows.count) continue;
      this.source.read(start, this.row);
      inputs.set(this.row.subarray(0, T), row * T);
      targets.set(this.row.subarray(1), row * T);
    }
  }
}
