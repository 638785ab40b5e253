// What the dataset tests share: the fixtures, the tiny tokenizer, a token source read back chunk by chunk, and folders of files.
import fs from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
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

// A folder of `files` (paths under it to their text), made for the test.
export function tree(t: Test, files: Record<string, string>): string {
  const dir = t.testdir();
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}
