// A random GPT-2 with a Generator over it for one test, both closed when the test ends; a fault injected into its
// decoding steps.
import type { Test } from 'tap';
import { Model, NATIVE, type GPT2Config } from '../../lib/engine/model';
import type { NativeModel } from '../../lib/engine/native';
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

// Makes the model's decoding steps (kvStep, all made through model.run) throw after they ran (caches written, RNG
// states advanced) whenever failsOn(its arguments) says so; returns how many times it struck so far.
export function injectStepFault(model: Model, failsOn: (...args: Parameters<NativeModel['kvStep']>) => boolean): () => number {
  let faults = 0;
  const faulty = new Proxy(model[NATIVE], {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (prop !== 'kvStep') return typeof value === 'function' ? value.bind(target) : value;
      return async (...args: Parameters<NativeModel['kvStep']>) => {
        await target.kvStep(...args);
        if (failsOn(...args)) {
          faults++;
          throw new Error('the native step failed');
        }
      };
    },
  });
  const run = model.run.bind(model);
  model.run = <T>(fn: (native: NativeModel) => Promise<T> | T): Promise<T> => run(() => fn(faulty));
  return () => faults;
}
