// A random GPT-2 with a Generator over it for one test, both closed when the test ends.
import type { Test } from 'tap';
import { Model, type GPT2Config } from '../../lib/engine/model';
import { Generator, type BatcherOptions } from '../../lib/generate';
import { loadTokenizer } from '../../lib/tokenizer';

export const tokenizer = loadTokenizer();

export function testGenerator(t: Test, config: GPT2Config, options: BatcherOptions & { seed?: number } = {}): { model: Model; gen: Generator } {
  const { seed = 1, ...batcher } = options;
  const model = Model.create(config, { seed, trainable: false });
  const gen = new Generator(model, tokenizer, batcher);
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  return { model, gen };
}
