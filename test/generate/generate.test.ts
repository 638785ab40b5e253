// lib/generate: stop sequences and streaming (Sequence), the context-window policy against full forward passes,
// and the batcher: members alike alone and together, seeds, thread counts, limits, abort and deadline.
import t, { type Test } from 'tap';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { Model, GPT2Config } from '../../lib/engine/model';
import type { NativeModel } from '../../lib/engine/native';
import { Generator, Sequence, DEFAULT_SAMPLING, GenerateResult, type GenerateOptions, type SamplingOptions } from '../../lib/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { lcg, randomTokens } from '../engine/helpers';

const tokenizer = loadTokenizer();
const CONFIG: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nCtx: 24, vocabSize: 50257 };

function sequence(text: string, options: { stop?: string[]; maxTokens?: number; onText?: (p: string) => void; sampling?: SamplingOptions }): Sequence {
  return new Sequence(
    {
      promptTokens: tokenizer.encode(text, { allowSpecial: false }),
      maxTokens: options.maxTokens ?? 100,
      sampling: options.sampling ?? DEFAULT_SAMPLING,
      stop: options.stop ?? [],
      stopTokens: [tokenizer.eotToken],
      seed: 1n,
      nCtx: 1024,
      contextKeep: 512,
      onText: options.onText,
    },
    tokenizer,
  );
}

// Gives the sequence a token as if sampled, and decodes its text as the batcher does; true once it has finished.
function accept(seq: Sequence, token: number): boolean {
  return seq.take(token) || seq.decodeTaken();
}

// Feeds the tokens of `text` one by one as if sampled, until the sequence finishes.
function feedText(seq: Sequence, text: string): void {
  for (const token of tokenizer.encode(text, { allowSpecial: true })) if (accept(seq, token)) break;
}

t.test('stop sequences cut the text where they begin, and streaming never shows their start', async (t) => {
  const cases: [string, string[], string][] = [
    ['Hello there <EOM> and more', ['<EOM>'], 'Hello there '],
    ['one\ntwo\n\nthree', ['\n\n', 'three'], 'one\ntwo'],
    ['abc<|endoftext|>def', ['zzz'], 'abc'],                   // the end-of-text token ends it
    ['no stop here at all', ['<EOM>'], 'no stop here at all'],  // ends by maxTokens below
    ['a <E b <EO c <EOM', ['<EOM>'], 'a <E b <EO c <EOM'],      // near misses come out in the end
    ['x said: ok. END', [' END', 'said'], 'x '],                // the earliest stop wins
  ];
  for (const [text, stop, expected] of cases) {
    const pieces: string[] = [];
    const n = tokenizer.encode(text, { allowSpecial: true }).length;
    const seq = sequence('prompt', { stop, maxTokens: n, onText: (p) => pieces.push(p) });
    feedText(seq, text);
    seq.finish('length');
    t.equal(seq.textSoFar, expected, JSON.stringify(text));
    t.equal(pieces.join(''), expected, 'the streamed pieces add up to the text');
    t.equal(seq.finishReason, expected === text ? 'length' : 'stop');
    for (const s of stop) t.notOk(pieces.slice(0, -1).join('').includes(s), 'no stop sequence streamed');
  }
});

t.test('a stop sequence split across tokens is withheld while it may complete', async (t) => {
  const pieces: string[] = [];
  const seq = sequence('p', { stop: ['<EOM>'], onText: (p) => pieces.push(p) });
  for (const part of ['Hi', ' <', 'E']) for (const tok of tokenizer.encode(part, { allowSpecial: false })) accept(seq, tok);
  t.equal(pieces.join(''), 'Hi ', 'the "<E" waits');
  for (const tok of tokenizer.encode('x', { allowSpecial: false })) accept(seq, tok);
  t.equal(pieces.join(''), 'Hi <Ex', 'released once it cannot be a stop');
});

t.test('stops of a small alphabet, overlapping and repeating themselves, are found and withheld as by searching the whole text after every token', async (t) => {
  const next = lcg(7);
  const random = (n: number): number => Math.floor(next() * n);
  const word = (length: number): string => Array.from({ length }, () => 'ab'[random(2)]).join('');
  let cut = 0;
  for (let trial = 0; trial < 300; trial++) {
    const stop = Array.from({ length: 1 + random(3) }, () => word(2 + random(8)));
    const pieces: string[] = [];
    const seq = sequence('p', { stop, maxTokens: 1000, onText: (p) => pieces.push(p) });
    let text = '';
    let ended = false;
    for (let i = 0; i < 6 && !ended; i++) {
      for (const token of tokenizer.encode(word(1 + random(4)), { allowSpecial: false })) {
        text += tokenizer.decode([token]);
        const starts = stop.map((s) => text.indexOf(s)).filter((at) => at >= 0);
        ended = accept(seq, token);
        if (starts.length > 0) {
          t.ok(ended, 'a stop ends the text');
          text = text.slice(0, Math.min(...starts));
          cut++;
          break;
        }
        t.notOk(ended, 'no stop, no end');
        const held = Math.max(0, ...stop.flatMap((s) => [...s.slice(0, -1)].map((_, k) => (text.endsWith(s.slice(0, k + 1)) ? k + 1 : 0))));
        t.equal(pieces.join(''), text.slice(0, text.length - held), 'all but what may begin a stop is streamed');
      }
    }
    seq.finish('length');
    t.equal(seq.textSoFar, text, `${JSON.stringify(stop)}: the text cut where the earliest stop begins`);
    t.equal(pieces.join(''), text, 'all of it streamed in the end');
  }
  t.ok(cut > 100 && cut < 300, `some texts cut at a stop, some not (${cut} of 300)`);
});

// A search of the text's end after each token would compare hundreds of millions of characters a token here, once the
// text is longer than the stops' first 20,000 x's, and not end for hours.
t.test('long stops that the text nearly matches are followed as it grows, their start withheld until they cannot complete', async (t) => {
  const half = 20_000;
  const stop = ['A', 'B', 'C', 'D'].map((letter) => `${'x'.repeat(half)}${letter}${'x'.repeat(half)}`);
  const eight = tokenizer.encode('xxxxxxxx', { allowSpecial: false });
  t.equal(eight.length, 1, 'eight x\'s are one token');
  const pieces: string[] = [];
  const seq = sequence('p', { stop, maxTokens: 10_000, onText: (p) => pieces.push(p) });
  const feedEights = (n: number): boolean => {
    for (let i = 0; i < n; i++) if (accept(seq, eight[0])) return true;
    return false;
  };
  t.notOk(feedEights(5000), '40,000 x\'s end nothing');
  t.equal(pieces.join(''), 'x'.repeat(40_000 - half), 'the last 20,000 x\'s withheld: they may begin a stop');
  for (const token of tokenizer.encode('B', { allowSpecial: false })) accept(seq, token);
  t.equal(pieces.join(''), 'x'.repeat(40_000 - half), 'still withheld after a B, which a stop goes on with');
  t.ok(feedEights(half / 8), 'the B stop completes');
  t.equal(seq.textSoFar, 'x'.repeat(40_000 - half), 'cut where it began');
  t.equal(pieces.join(''), seq.textSoFar);
  t.equal(seq.finishReason, 'stop');
});

// Biases built afresh for every draw took minutes here (a millisecond or more a draw).
t.test("a logit bias of every token beside additive penalties: each draw's biases fold in the draws so far, over thousands of draws", async (t) => {
  const vocab = tokenizer.vocabSize;
  const given = Object.fromEntries(Array.from({ length: vocab }, (_, token) => [token, (token % 7) - 3]));
  const [presencePenalty, frequencyPenalty] = [0.5, 0.25];
  const seq = sequence('p', { maxTokens: 30_000, sampling: { ...DEFAULT_SAMPLING, logitBias: given, presencePenalty, frequencyPenalty } });
  const times = new Map<number, number>();
  const next = lcg(3);
  let biases = seq.sampling.logitBias;
  for (let i = 0; i < 20_000; i++) {
    // Few distinct tokens, each drawn many times, and now and then one never drawn before.
    const token = i % 1000 === 999 ? Math.floor(next() * vocab) : Math.floor(next() * 50);
    if (token === tokenizer.eotToken) continue;
    seq.take(token);
    times.set(token, (times.get(token) ?? 0) + 1);
    biases = seq.sampling.logitBias;  // as the batcher asks for every draw
  }
  const expected = new Map(Object.entries(given).map(([token, bias]) => [Number(token), Math.fround(bias - (times.has(Number(token)) ? presencePenalty + frequencyPenalty * (times.get(Number(token)) as number) : 0))]));
  t.equal(biases?.tokens.length, vocab, 'one bias a token');
  const wrong = [...(biases?.tokens ?? [])].filter((token, i) => biases?.values[i] !== expected.get(token));
  t.same(wrong, [], 'every token\'s bias: the given one less its penalties');
});

t.test('the window policy: past nCtx the most recent contextKeep tokens are prefilled again', async (t) => {
  const prompt = new Sequence(
    { promptTokens: [1, 2, 3, 4, 5, 6], maxTokens: 50, sampling: DEFAULT_SAMPLING, stop: [], stopTokens: [], seed: 1n, nCtx: 8, contextKeep: 3 },
    tokenizer,
  );
  t.same(Array.from(prompt.nextFeed(4)), [1, 2, 3, 4], 'a prefill in parts');
  t.ok(prompt.needsReset);
  prompt.fed(4);
  t.notOk(prompt.caughtUp);
  t.same(Array.from(prompt.nextFeed(100)), [5, 6]);
  prompt.fed(2);
  t.ok(prompt.caughtUp);
  prompt.take(7);
  t.same(Array.from(prompt.nextFeed(100)), [7]);
  prompt.fed(1);
  prompt.take(8);
  t.same(Array.from(prompt.nextFeed(100)), [8], 'the slot holds 8 = nCtx');
  prompt.fed(1);
  prompt.take(9);
  t.same(Array.from(prompt.nextFeed(100)), [7, 8, 9], 'the ninth token moves the window to the last 3');
  t.ok(prompt.needsReset);
  t.same(Array.from(prompt.history()), [7, 8, 9], 'the penalty sees the window');
});

async function tinyModel(threads: number, options: { trainable?: boolean } = {}): Promise<Model> {
  return Model.create(CONFIG, { seed: 21, threads, trainable: options.trainable ?? false, maxBatch: 1, maxSeq: CONFIG.nCtx });
}

// The tiny model (trainable, for its forward pass) and a generator over it with `slots` rows, both closed when the
// test ends.
async function tinyGenerator(t: Test, slots: number): Promise<{ model: Model; gen: Generator }> {
  const model = await tinyModel(2, { trainable: true });
  const gen = new Generator(model, tokenizer, { slots });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  return { model, gen };
}

t.test('generating past nCtx equals greedy decoding by full forward passes over the policy window', async (t) => {
  const model = await tinyModel(2, { trainable: true });
  const gen = new Generator(model, tokenizer, { slots: 2, contextKeep: 10 });
  const prompt = randomTokens(7, 50257, 5);
  const length = 60;
  const result = await gen.generate(prompt, { maxTokens: length, temperature: 0, stopTokens: [] });
  t.equal(result.tokens.length, length);
  t.equal(result.finishReason, 'length');
  // The reference: the window is all tokens until they pass nCtx, then the last 10, growing to nCtx again.
  const V = CONFIG.vocabSize;
  const context = Array.from(prompt);
  let start = 0;
  const expected: number[] = [];
  for (let i = 0; i < length; i++) {
    if (context.length - start > CONFIG.nCtx) start = context.length - 10;
    const window = Int32Array.from(context.slice(start));
    const logits = new Float32Array(window.length * V);
    await model.forward(window, null, 1, window.length, logits);
    const last = logits.subarray((window.length - 1) * V);
    let best = 0;
    for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
    expected.push(best);
    context.push(best);
  }
  t.same(result.tokens, expected, `${length} tokens through ${Math.floor((length + 7 - CONFIG.nCtx) / 14) + 1} window shifts`);
  await gen.close();
  model.dispose();
});

t.test("a step's tokens are decoded and streamed while the next step computes", async (t) => {
  const model = await tinyModel(2);
  const gen = new Generator(model, tokenizer, { slots: 2 });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  // The batcher's native calls all go through model.run: count those not yet done.
  let inFlight = 0;
  const run = model.run.bind(model);
  model.run = <T>(fn: (native: NativeModel) => Promise<T> | T): Promise<T> => {
    inFlight++;
    return run(fn).finally(() => inFlight--);
  };
  const pieces: { text: string; inFlight: number }[] = [];
  const result = await gen.generate(randomTokens(5, 50257, 9), { maxTokens: 16, temperature: 0, stopTokens: [], onText: (text) => pieces.push({ text, inFlight }) });
  t.equal(pieces.map((p) => p.text).join(''), result.text, 'the pieces add up to the text');
  t.ok(pieces.length >= 8, `${pieces.length} pieces`);
  // The last piece may come with the last token, which no step follows.
  t.same(pieces.slice(0, -1).map((p) => p.inFlight), pieces.slice(0, -1).map(() => 1), 'each piece streamed while a step ran');
});

t.test('requests decoded together give what each gives alone; they join and leave between steps', async (t) => {
  const model = await tinyModel(2);
  const gen = new Generator(model, tokenizer, { slots: 3, maxStepTokens: 4 });
  const prompts = ['The cat', 'A much longer prompt that needs several steps to prefill', 'x', 'Last one joins late'];
  const options = [
    { maxTokens: 12, temperature: 0 },
    { maxTokens: 20, temperature: 0.9, topK: 50, seed: 3 },
    { maxTokens: 30, temperature: 1, topP: 0.9, penalize: 0.8, seed: 4 },
    { maxTokens: 9, temperature: 0.7, seed: 5 },
  ];
  const alone: GenerateResult[] = [];
  for (let i = 0; i < prompts.length; i++) alone.push(await gen.generate(prompts[i], { ...options[i], stopTokens: [] }));
  let late: Promise<GenerateResult> | null = null;
  const together = await Promise.all(
    prompts.slice(0, 3).map((p, i) =>
      gen.generate(p, {
        ...options[i],
        stopTokens: [],
        onText: () => {
          if (i === 0 && late === null) late = gen.generate(prompts[3], { ...options[3], stopTokens: [] });
        },
      }),
    ),
  );
  together.push(await (late as unknown as Promise<GenerateResult>));
  for (let i = 0; i < prompts.length; i++) {
    t.same(together[i].tokens, alone[i].tokens, `request ${i}: same tokens`);
    t.equal(together[i].text, alone[i].text);
  }
  t.same(gen.load, { running: 0, waiting: 0 });
  await gen.close();
  model.dispose();
});

t.test('a seed gives the same text with 1 or 2 threads; stream() yields the text', async (t) => {
  const options = { maxTokens: 25, temperature: 1, topK: 40, penalize: 0.85, seed: 1234, stopTokens: [] };
  const results: string[] = [];
  for (const threads of [1, 2]) {
    const model = await tinyModel(threads);
    const gen = new Generator(model, tokenizer);
    results.push((await gen.generate('Once upon a time', options)).text);
    const pieces: string[] = [];
    const stream = gen.stream('Once upon a time', options);
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        t.equal(next.value.text, pieces.join(''), 'the stream returns the result');
        break;
      }
      pieces.push(next.value);
    }
    t.equal(pieces.join(''), results[results.length - 1], `threads ${threads}: stream and generate agree`);
    await gen.close();
    model.dispose();
  }
  t.equal(results[0], results[1], 'threads 1 and 2 alike');
});

t.test("a prompt's log-probabilities: a full forward pass's, with 1 slot or 3, alone or beside others", async (t) => {
  const model = await tinyModel(2, { trainable: true });
  const prompt = tokenizer.encode('The quick brown fox jumps over the lazy dog again and again', { allowSpecial: false });
  const V = CONFIG.vocabSize;
  const logits = new Float32Array(prompt.length * V);
  await model.forward(prompt, null, 1, prompt.length, logits);
  const expected = Array.from({ length: prompt.length - 1 }, (_, p) => {
    const row = logits.subarray(p * V, (p + 1) * V);
    const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
    return row[prompt[p + 1]] - (max + Math.log(row.reduce((sum, x) => sum + Math.exp(x - max), 0)));
  });
  const scored = { maxTokens: 2, temperature: 0, logprobs: 1, promptLogprobs: true } as const;
  const worst = (r: GenerateResult): number => Math.max(...expected.map((e, p) => Math.abs((r.promptLogprobs?.[p].logprob ?? NaN) - e)));
  const one = new Generator(model, tokenizer, { slots: 1 });
  const a = await one.generate(prompt, scored);
  t.same(a.promptLogprobs?.map((l) => l.token), [...prompt.subarray(1)], 'one per prompt token but the first');
  t.ok(worst(a) < 1e-4, `1 slot: largest difference ${worst(a).toExponential(2)}`);
  t.same(a.promptLogprobs?.map((l) => l.top.length), expected.map(() => 1));
  const again = await one.generate(prompt, scored);
  t.same(again.promptLogprobs, a.promptLogprobs, 'again, though the slot holds the prompt: none of it taken from the cache');
  t.equal(again.timings.cachedPromptTokens, 0);
  await t.rejects(one.generate(prompt, { ...scored, logprobs: undefined }), /promptLogprobs needs logprobs/);
  await t.rejects(one.generate(new Int32Array(CONFIG.nCtx + 1).fill(prompt[0]), scored), /a prompt of 25 tokens need it within the model's context of 24/);
  await one.close();
  const three = new Generator(model, tokenizer, { slots: 3 });
  const [b, plain, c] = await Promise.all([three.generate(prompt, scored), three.generate('Hello there', { maxTokens: 6, temperature: 0 }), three.generate(prompt, scored)]);
  t.same([b.promptLogprobs, c.promptLogprobs], [a.promptLogprobs, a.promptLogprobs], '3 slots, two scored together: the same');
  t.same([b.tokens, c.tokens], [a.tokens, a.tokens]);
  const alone = await three.generate('Hello there', { maxTokens: 6, temperature: 0 });
  t.same(plain.tokens, alone.tokens, 'the request beside them, as alone');
  await three.close();
  model.dispose();
});

t.test('logit biases in the decode step: the argmax banned, a token forced, beside a request without them', async (t) => {
  const { model, gen } = await tinyGenerator(t, 3);
  const prompt = randomTokens(6, 50257, 31);
  const V = CONFIG.vocabSize;
  const logits = new Float32Array(prompt.length * V);
  await model.forward(prompt, null, 1, prompt.length, logits);
  const last = Array.from(logits.subarray((prompt.length - 1) * V));
  const ranked = last.map((l, v) => [l, v]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, v]) => v);
  const greedy = { temperature: 0, stopTokens: [] };
  const plain = await gen.generate(prompt, { ...greedy, maxTokens: 4 });
  t.equal(plain.tokens[0], ranked[0], "unbiased, the forward pass's argmax");
  const [banned, forced, beside] = await Promise.all([
    gen.generate(prompt, { ...greedy, maxTokens: 1, logitBias: { [ranked[0]]: -100 } }),
    gen.generate(prompt, { temperature: 0.8, topK: 40, seed: 2, stopTokens: [], maxTokens: 4, logitBias: { 4242: 100 } }),
    gen.generate(prompt, { ...greedy, maxTokens: 4 }),
  ]);
  t.same(banned.tokens, [ranked[1]], 'the argmax banned: the second most likely');
  t.same(forced.tokens, [4242, 4242, 4242, 4242], 'a token forced at every step, through top-k');
  t.same(beside.tokens, plain.tokens, 'the request without biases in the same steps: what it gives alone');
  await t.rejects(gen.generate(prompt, { maxTokens: 1, logitBias: { [V]: -100 } }), /logitBias must be token ids from 0 to 50256, each with a finite bias, got \{"50257":-100\}/);
  await t.rejects(gen.generate(prompt, { maxTokens: 1, logitBias: { x: 1 } as unknown as Record<number, number> }), /logitBias must be an object of token ids \(integers from 0\) to numbers/);
});

t.test("OpenAI's presence and frequency penalties: greedy decoding as by full forward passes with the drawn tokens' logits lowered", async (t) => {
  const { model, gen } = await tinyGenerator(t, 2);
  const prompt = randomTokens(6, 50257, 41);
  const V = CONFIG.vocabSize;
  const greedy = { temperature: 0, stopTokens: [], maxTokens: 10 };
  const presence = 0.7, frequency = 1.3;
  // Each step: the last position's logits over the whole text so far, each drawn token's lowered by presence +
  // frequency * (times drawn), then the largest (the lowest id on a tie).
  const expected: number[] = [];
  const drawn = new Map<number, number>();
  for (let step = 0; step < greedy.maxTokens; step++) {
    const text = Int32Array.from([...prompt, ...expected]);
    const logits = new Float32Array(text.length * V);
    await model.forward(text, null, 1, text.length, logits);
    const last = logits.subarray((text.length - 1) * V);
    for (const [token, times] of drawn) last[token] -= presence + frequency * times;
    let best = 0;
    for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
    expected.push(best);
    drawn.set(best, (drawn.get(best) ?? 0) + 1);
  }
  const [plain, penalized, beside] = await Promise.all([
    gen.generate(prompt, greedy),
    gen.generate(prompt, { ...greedy, presencePenalty: presence, frequencyPenalty: frequency }),
    gen.generate(prompt, greedy),
  ]);
  t.same(penalized.tokens, expected, 'the penalized tokens, step by step');
  t.ok(new Set(plain.tokens).size < plain.tokens.length && new Set(expected).size > new Set(plain.tokens).size, `unpenalized greedy decoding repeats itself (${plain.tokens.join(' ')}), penalized less`);
  t.same(beside.tokens, plain.tokens, 'a request without them in the same steps: what it gives alone');
  const withBias = await gen.generate(prompt, { ...greedy, maxTokens: 3, frequencyPenalty: 2, logitBias: { [expected[0]]: 100 } });
  t.same(withBias.tokens, [expected[0], expected[0], expected[0]], 'a logit bias of +100 outweighs the penalty of a token drawn twice');
  await t.rejects(gen.generate(prompt, { ...greedy, presencePenalty: 2.5 }), /presencePenalty must be a number from -2 to 2, got 2\.5/);
  await t.rejects(gen.generate(prompt, { ...greedy, frequencyPenalty: Number.NaN }), /frequencyPenalty must be a number from -2 to 2, got NaN/);
});

t.test('abort, deadline and bad requests', async (t) => {
  const model = await tinyModel(2);
  const gen = new Generator(model, tokenizer, { slots: 1 });
  const controller = new AbortController();
  let pieces = 0;
  const aborted = await gen.generate('Hello', {
    maxTokens: 200,
    stopTokens: [],
    signal: controller.signal,
    onText: () => {
      if (++pieces === 3) controller.abort();
    },
  });
  t.equal(aborted.finishReason, 'aborted');
  t.ok(aborted.tokens.length < 200);
  const late = await gen.generate('Hello', { maxTokens: 50, deadline: Date.now() - 1 });
  t.equal(late.finishReason, 'deadline');
  t.equal(late.tokens.length, 0);
  await t.rejects(gen.generate([50257], {}), /promptTokens\[0\]/);
  await t.rejects(gen.generate('Hi', { topP: 2 }), /topP/);
  await t.rejects(gen.generate('Hi', { maxTokens: 0 }), /maxTokens/);
  t.throws(() => new Generator(model, tokenizer), /already has a Batcher/);
  await gen.close();
  model.dispose();
});

t.test("a model whose vocabulary is padded past its tokenizer's never draws, offers as likely or counts in log-probabilities the ids no token spells", async (t) => {
  const padded = Model.create({ ...CONFIG, vocabSize: 50304 }, { seed: 5, trainable: false });
  // The tokenizer's tokens all score 0, the 47 padded ids tens either way: the model's mass is on the padding.
  const wte = padded.getParam('wte.weight');
  const C = CONFIG.nEmbd;
  for (let i = 0; i < wte.length; i++) wte[i] = i < tokenizer.vocabSize * C ? 0 : wte[i] * 1000;
  padded.setParam('wte.weight', wte);
  const generator = new Generator(padded, tokenizer);
  t.teardown(() => generator.close().then(() => padded.dispose()));
  const result = await generator.generate('Hello', { maxTokens: 12, temperature: 1, topK: 0, topP: 1, seed: 3, logprobs: 5 });
  t.equal(result.tokens.length, 12, 'the reply runs to its length, not into an id without text');
  t.ok(result.tokens.every((token) => token < tokenizer.vocabSize), `drawn: ${result.tokens.join(' ')}`);
  t.equal(result.text, tokenizer.decode(result.tokens));
  const logprobs = result.logprobs ?? [];
  const uniform = -Math.log(tokenizer.vocabSize);
  t.ok(logprobs.every((l) => Math.abs(l.logprob - uniform) < 1e-4), `log-probabilities among the tokens drawn from, where all score alike: ${logprobs.map((l) => l.logprob).join(' ')}`);
  t.ok(logprobs.every((l) => l.top.length === 5 && l.top.every((a) => a.token < tokenizer.vocabSize)), 'the likeliest offered are tokens');
});

t.test('Model.save with a tokenizer writes its vocabulary beside the weights, and Generator.load reads it without a warning', async (t) => {
  const dir = t.testdir();
  const small = Model.create({ ...CONFIG, vocabSize: 300 }, { trainable: false });
  await t.rejects(small.save(dir, { tokenizer }), /save: options\.tokenizer has 50257 tokens, more than the model's vocabSize 300/);
  small.dispose();
  const model = Model.create(CONFIG, { seed: 1, trainable: false });
  await model.save(dir, { tokenizer });
  model.dispose();
  t.ok(inspectModelFolder(dir).vocab, 'the folder has a vocabulary');
  const warnings: unknown[][] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args);
  try {
    const gen = await Generator.load(dir);
    t.equal(gen.tokenizer.vocabSize, tokenizer.vocabSize);
    await gen.close();
  } finally {
    console.warn = warn;
  }
  t.same(warnings, [], 'nothing written to stderr');
});

t.test('bad generate options from JavaScript are refused, each naming the option and what it must be', async (t) => {
  const model = Model.create(CONFIG, { seed: 1, trainable: false });
  const gen = new Generator(model, tokenizer, { slots: 1 });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ maxTokens: NaN }, /^maxTokens must be an integer >= 1, got NaN$/],
    [{ maxTokens: '5' }, /^maxTokens must be an integer >= 1, got "5"$/],
    [{ maxTokens: Infinity }, /^maxTokens must be an integer >= 1, got Infinity$/],
    [{ stop: 'x' }, /^stop must be a list of strings, such as \["\\n"\], got "x"$/],
    [{ stop: [1] }, /^stop must be a list of strings, .*got \[1\]$/],
    [{ stopTokens: [-1] }, /^stopTokens must be a list of token ids of this model \(integers in \[0, 50257\)\), got \[-1\]$/],
    [{ stopTokens: [50257] }, /^stopTokens must be .*, got \[50257\]$/],
    [{ stopTokens: 'x' }, /^stopTokens must be .*, got "x"$/],
    [{ seed: 'x' }, /^seed must be a non-negative integer, got "x"$/],
  ];
  for (const [options, message] of refused) await t.rejects(gen.generate('a', options as GenerateOptions), { message }, JSON.stringify(options));
  const ok = await gen.generate('a', { maxTokens: 2, stopTokens: [0], stop: ['zz'] });
  t.equal(ok.tokens.length <= 2, true, 'valid options still generate');
  const encoded = await gen.generate('a', { maxTokens: 2, stopTokens: tokenizer.encode('\n') });
  t.equal(encoded.tokens.length <= 2, true, 'stopTokens may be an encoding (an Int32Array)');
});
