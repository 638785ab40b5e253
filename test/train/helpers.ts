// What the training tests share: a tiny fresh model on the tiny test vocabulary, and a quiet log.
import path from 'node:path';
import { TrainOptions } from '../../lib/train/train';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const TINY_VOCAB = path.join(REPO, 'test', 'fixtures', 'tiny-vocab');
export const CHAT = path.join(REPO, 'examples', 'chat');

// 2 layers, 64 channels, a 457-token vocabulary: a step takes milliseconds. A run from other weights (fresh_model
// false, or restore_from a checkpoint) has their shape and vocabulary, which train() refuses to be given.
export function tinyRun(dir: string, overrides: Partial<TrainOptions> = {}): Partial<TrainOptions> & { dataset: string } {
  const fromWeights = overrides.fresh_model === false || (overrides.restore_from !== undefined && overrides.restore_from !== 'latest' && overrides.restore_from !== 'fresh');
  return {
    dataset: path.join(CHAT, 'train', 'work.train'),
    ...(fromWeights ? {} : { fresh_model: true, tokenizer: TINY_VOCAB, n_layer: 2, n_head: 4, n_embd: 64, n_ctx: 64 }),
    context_length: 32,
    batch_size: 4,
    learning_rate: 0.003,
    seed: 1234,
    threads: 2,
    checkpoint_dir: path.join(dir, 'checkpoint'),
    sample_dir: path.join(dir, 'samples'),
    save_every: 0,
    save_time: 0,
    sample_every: 0,
    ...overrides,
  };
}

export function collect(lines: string[]): (line: string) => void {
  return (line) => lines.push(line);
}
