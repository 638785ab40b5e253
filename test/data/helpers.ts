// What the dataset tests share: the fixtures, the tiny tokenizer, and a token source read back chunk by chunk.
import path from 'node:path';
import { TokenSource } from '../../lib/data/tokens';
import { loadTokenizer } from '../../lib/tokenizer';

export const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures');
export const tokenizer = loadTokenizer(path.join(FIXTURES, 'tiny-vocab'));

// Every chunk of `source`, as its tokens.
export function allTokens(source: TokenSource): number[][] {
  const chunks: number[][] = [];
  for (let c = 0; c + 1 < source.chunkStarts.length; c++) {
    const out = new Int32Array(source.chunkStarts[c + 1] - source.chunkStarts[c]);
    source.read(source.chunkStarts[c], out);
    chunks.push([...out]);
  }
  return chunks;
}
