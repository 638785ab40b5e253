// The batcher keeps requests apart: a setting the sampler would refuse is refused at submit, and a batch step
// that throws fails only the request that makes it throw, while its neighbours go on to the very tokens they
// give alone.
import t from 'tap';
import { Model, GPT2Config, NATIVE } from '../../lib/engine/model';
import type { NativeSampling } from '../../lib/engine/native';
import { Generator, SamplingError, checkSampling, type GenerateResult } from '../../lib/generate';
import { injectStepFault, testGenerator, tokenizer } from './helpers';

const CONFIG: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nCtx: 64, vocabSize: 50257 };
const PROMPTS = ['The cat sat', 'Once upon a time', 'Hello there', 'In the beginning'];
// Only the fault below refuses this top-k: the sampler itself accepts it.
const POISON_TOP_K = 7;

t.test("settings the native sampler refuses are refused at submit, naming the setting, for that request alone", async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 4, seed: 1 });
  const good = PROMPTS.slice(0, 3).map((p, i) => gen.generate(p, { maxTokens: 20, seed: i, temperature: 0.8 }));
  const bad: [Partial<NativeSampling>, string][] = [
    [{ topK: 1_000_000 }, 'topK'],
    [{ topK: CONFIG.vocabSize + 1 }, 'topK'],
    [{ topP: 5e-324 }, 'topP'],   // 0 as a float32
    [{ topP: 1e-46 }, 'topP'],
    [{ temperature: 1e39 }, 'temperature'],  // infinite as a float32
    [{ penalize: 1.5 }, 'penalize'],
  ];
  for (const [sampling, field] of bad) {
    const refused = await gen.generate('x', { ...sampling, maxTokens: 5 }).then(() => null, (err: Error) => err);
    t.ok(refused instanceof SamplingError && refused.field === field, `${JSON.stringify(sampling)}: refused, naming ${field} (${refused?.message})`);
  }
  for (const r of await Promise.all(good)) t.equal(r.tokens.length, 20, 'the good requests in flight are untouched');
  // The edges that are accepted: the whole vocabulary, the smallest float32, a temperature whose inverse overflows.
  for (const sampling of [{ topK: CONFIG.vocabSize }, { topP: 1.5e-45 }, { temperature: 1e-40 }]) {
    const r = await gen.generate('x', { ...sampling, maxTokens: 3, seed: 5 });
    t.equal(r.tokens.length, 3, `${JSON.stringify(sampling)} is accepted and samples`);
  }
  const greedy = await gen.generate('x', { temperature: 0, maxTokens: 3 });
  t.same((await gen.generate('x', { temperature: 1e-40, maxTokens: 3, seed: 9 })).tokens, greedy.tokens, 'a temperature whose inverse overflows float32 is greedy');
});

t.test('checkSampling accepts exactly what the native sampler accepts: one table in native code', async (t) => {
  const model = Model.create(CONFIG, { seed: 1, trainable: false });
  t.teardown(() => model.dispose());
  const logits = new Float32Array(CONFIG.vocabSize).map((_, i) => Math.sin(i));
  const candidates = [-1, 0, 1e-46, 1e-45, 5e-324, 0.5, 1, 1 + 1e-7, 2, 40, CONFIG.vocabSize, CONFIG.vocabSize + 1, 1e39, Infinity, NaN];
  let compared = 0;
  for (const field of ['temperature', 'topK', 'topP', 'minP', 'penalize'] as const) {
    for (const v of candidates) {
      const params: NativeSampling = { temperature: 1, topK: 0, topP: 1, minP: 0, penalize: 0, [field]: v };
      let jsOk = true;
      try {
        checkSampling(params, CONFIG.vocabSize);
      } catch {
        jsOk = false;
      }
      let nativeOk = true;
      try {
        model[NATIVE].sample(logits, [params], new BigUint64Array([1n, 2n]), [new Int32Array([1, 2])], new Int32Array(1));
      } catch {
        nativeOk = false;
      }
      t.equal(jsOk, nativeOk, `${field} = ${v}: ${jsOk ? 'accepted' : 'refused'} by both`);
      compared++;
    }
  }
  t.ok(compared > 50);
});

t.test('a batch step that throws fails only the request that makes it throw', async (t) => {
  const run = async (poisoned: boolean): Promise<(GenerateResult | Error)[]> => {
    const model = Model.create(CONFIG, { seed: 2, trainable: false });
    // The fault: the batcher's steps throw for any batch holding the poisoned row, after they ran.
    const faults = injectStepFault(model, (...args) => args[4].some((p) => p.topK === POISON_TOP_K));
    const gen = new Generator(model, tokenizer, { slots: 4 });
    try {
      const requests = PROMPTS.map((p, i) =>
        gen.generate(p, { maxTokens: 12, seed: 10 + i, temperature: 0.9, topK: poisoned && i === 2 ? POISON_TOP_K : 40 }).catch((err: Error) => err),
      );
      const results = await Promise.all(requests);
      if (poisoned) t.ok(faults() >= 2, `the fault struck the shared step and the poisoned row alone (${faults()} times)`);
      return results;
    } finally {
      await gen.close();
      model.dispose();
    }
  };
  const alone = await run(false);
  const together = await run(true);
  t.match((together[2] as Error).message, /the native step failed/, 'the request that makes the step throw fails');
  for (const i of [0, 1, 3]) {
    const r = together[i] as GenerateResult;
    t.notOk(r instanceof Error, `request ${i} succeeds`);
    t.same(r.tokens, (alone[i] as GenerateResult).tokens, `request ${i} gives the tokens it gives without the bad neighbour`);
  }
});

t.test("a request whose own callback throws fails alone: the loop decodes its neighbours on, and later requests", async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 4, seed: 3 });
  const options = (i: number) => ({ maxTokens: 12, seed: 20 + i, temperature: 0.9 });
  const alone = await Promise.all(PROMPTS.map((p, i) => gen.generate(p, options(i))));
  let pieces = 0;
  const together = await Promise.all(PROMPTS.map((p, i) => gen.generate(p, {
    ...options(i),
    ...(i === 1 && { onText: () => {
      if (++pieces === 2) throw new Error('the client\'s handler broke');
    } }),
    ...(i === 2 && { logprobs: 2, onLogprob: () => {
      throw new Error('so did this one');
    } }),
  }).catch((err: Error) => err)));
  t.match((together[1] as Error).message, /^the client's handler broke$/);
  t.match((together[2] as Error).message, /^so did this one$/);
  for (const i of [0, 3]) t.same((together[i] as GenerateResult).tokens, alone[i].tokens, `request ${i} gives the tokens it gives alone`);
  const after = await gen.generate(PROMPTS[0], options(0));
  t.same(after.tokens, alone[0].tokens, 'and the batcher goes on serving');
});

t.test("a request whose reply stream (its sanitizer) throws fails alone, while its text is streamed and as it ends", async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 4, seed: 4 });
  const options = (i: number) => ({ maxTokens: 10, seed: 40 + i, temperature: 0.9 });
  const alone = await Promise.all(PROMPTS.map((p, i) => gen.generate(p, options(i))));
  // Throws at its nth piece; a reply never complete, so that the request would run to maxTokens.
  const breaksAt = (n: number, why: string) => {
    let pieces = 0;
    return { push: (piece: string) => {
      if (++pieces === n) throw new Error(why);
      return { text: piece, settled: '', complete: false };
    } };
  };
  // The last piece comes as the request ends at maxTokens: counted from the text it streams alone.
  let lastPiece = 0;
  await gen.generate(PROMPTS[2], { ...options(2), reply: { push: (piece) => ({ text: piece, settled: '', complete: (lastPiece++, false) }) } });
  const together = await Promise.all(PROMPTS.map((p, i) => gen.generate(p, {
    ...options(i),
    ...(i === 1 && { reply: breaksAt(2, 'the sanitizer broke') }),
    ...(i === 2 && { reply: breaksAt(lastPiece, 'the sanitizer broke at the end') }),
  }).catch((err: Error) => err)));
  t.match((together[1] as Error).message, /^the sanitizer broke$/);
  t.match((together[2] as Error).message, /^the sanitizer broke at the end$/);
  for (const i of [0, 3]) t.same((together[i] as GenerateResult).tokens, alone[i].tokens, `request ${i} gives the tokens it gives alone`);
  const after = await gen.generate(PROMPTS[3], options(3));
  t.same(after.tokens, alone[3].tokens, 'and the batcher goes on serving');
});

t.test('a request that ends before its first step, aborted or past its deadline, leaves the generator answering the next', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 2, seed: 1 });
  t.equal((await gen.generate('a', { maxTokens: 2 })).tokens.length, 2, 'a first request, which reserves the cache');
  t.equal((await gen.generate('a', { maxTokens: 2, signal: AbortSignal.abort() })).finishReason, 'aborted');
  t.equal((await gen.generate('a', { maxTokens: 2, deadline: Date.now() - 1000 })).finishReason, 'deadline');
  t.same(gen.load, { running: 0, waiting: 0 });
  t.equal((await gen.generate('a', { maxTokens: 2 })).tokens.length, 2, 'the next request is answered');
});

t.test('a prompt that is neither text nor token ids is refused at submit, and its neighbours go on', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 2, seed: 1 });
  const good = gen.generate('The cat sat', { maxTokens: 20, seed: 3 });
  for (const prompt of [5, null, { length: 'x' }] as unknown as ArrayLike<number>[]) {
    await t.rejects(gen.generate(prompt, { maxTokens: 2 }), /^the prompt must be text or token ids \(an array of integers\), got (number|null|object)$/, `${JSON.stringify(prompt)}: refused`);
  }
  t.equal((await good).tokens.length, 20, 'the request in flight is untouched');
});

t.test('leaving a stream early aborts its generation, freeing its slot', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1, seed: 1 });
  let generated = 0;
  const stream = gen.stream('Once upon a time', { maxTokens: 50, seed: 2, onText: () => generated++ });
  let pieces = 0;
  for await (const piece of stream) {
    t.type(piece, 'string');
    if (++pieces === 3) break;
  }
  // The next request waits for the one slot: had the stream gone on, it would have taken its 50 tokens first.
  const next = await gen.generate('x', { maxTokens: 3 });
  t.equal(next.tokens.length, 3, 'the next request is answered');
  t.ok(generated < 20, `the stream stopped soon after it was left (${generated} pieces of up to 50)`);
  t.same(gen.load, { running: 0, waiting: 0 });
});
