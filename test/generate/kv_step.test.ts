// The fused decoding step (kvStep: the feed and the draw in one native call, native/core/backend.h kv_step)
// against the two calls it replaces (kvForward, then sample with each row's history given), and the claim that
// lets it keep the histories natively: the repetition penalty's history, the tokens of the request's window, is
// exactly what its slot holds once fed. Checked on the native calls (partial prefills, truncations) and end to end
// through the batcher (window shifts, prefix reuse, a failed step's retry) against decoding by re-prefilled
// windows with the window passed as the history.
import t from 'tap';
import { Model, type GPT2Config, NATIVE } from '../../lib/engine/model';
import type { NativeSampling } from '../../lib/engine/native';
import { Generator, type GenerateResult } from '../../lib/generate';
import { DEFAULT_SAMPLING, Sequence, rngStateFromSeed } from '../../lib/generate/sequence';
import { randomTokens } from '../engine/helpers';
import { injectStepFault, tokenizer } from './helpers';

const SMALL: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 64, vocabSize: 96 };
const GREEDY_PENALIZED: NativeSampling = { temperature: 0, topK: 0, topP: 1, minP: 0, penalize: 0.5 };
const NUCLEUS_PENALIZED: NativeSampling = { temperature: 0.9, topK: 40, topP: 0.9, minP: 0.02, penalize: 0.85 };
const PLAIN: NativeSampling = { temperature: 1, topK: 0, topP: 1, minP: 0, penalize: 0 };

t.test('kvStep draws what kvForward + sample draw from the same logits, the histories being the slots\' tokens', async (t) => {
  const split = Model.create(SMALL, { seed: 3, trainable: false, threads: 2 });
  const fused = Model.create(SMALL, { seed: 3, trainable: false, threads: 2 });
  t.teardown(() => {
    split.dispose();
    fused.dispose();
  });
  const V = SMALL.vocabSize;
  const settings = [GREEDY_PENALIZED, NUCLEUS_PENALIZED, PLAIN];
  const held: number[][] = [[], [], []];
  const rngSplit = new BigUint64Array(6).map((_, i) => BigInt(1000 + 7 * i));
  const rngFused = rngSplit.slice();
  await split.run((n) => n.kvReserve(3));
  await fused.run((n) => n.kvReserve(3));
  let drawn = 0;
  // Feeds slots[i] feed[i] on both models and samples the entries `rows`; returns the tokens (alike, or it fails).
  const step = async (slots: number[], feed: number[][], rows: number[], withLogits: boolean): Promise<number[]> => {
    const n = slots.length;
    const m = rows.length;
    const tokens = Int32Array.from(feed.flat());
    const nNew = Int32Array.from(feed.map((f) => f.length));
    slots.forEach((s, i) => held[s].push(...feed[i]));
    const logits = new Float32Array(n * V);
    await split.run((native) => native.kvForward(Int32Array.from(slots), nNew, tokens, logits));
    const params = rows.map((r) => settings[slots[r]]);
    const rs = new BigUint64Array(2 * m);
    const rf = new BigUint64Array(2 * m);
    rows.forEach((r, j) => {
      rs.set(rngSplit.subarray(2 * slots[r], 2 * slots[r] + 2), 2 * j);
      rf.set(rngFused.subarray(2 * slots[r], 2 * slots[r] + 2), 2 * j);
    });
    const rowLogits = new Float32Array(m * V);
    rows.forEach((r, j) => rowLogits.set(logits.subarray(r * V, (r + 1) * V), j * V));
    const outSplit = new Int32Array(m);
    split[NATIVE].sample(rowLogits, params, rs, rows.map((r) => Int32Array.from(held[slots[r]])), outSplit);
    const outFused = new Int32Array(m);
    const fusedLogits = withLogits ? new Float32Array(m * V) : null;
    await fused.run((native) => native.kvStep(Int32Array.from(slots), nNew, tokens, Int32Array.from(rows), params, rf, outFused, fusedLogits));
    t.same(Array.from(outFused), Array.from(outSplit), `step ${drawn}: the same tokens`);
    t.same(rf, rs, 'the same RNG states after');
    if (fusedLogits) t.same(fusedLogits, rowLogits, 'the sampled rows\' logits, bit for bit, before the penalty');
    rows.forEach((r, j) => {
      rngSplit.set(rs.subarray(2 * j, 2 * j + 2), 2 * slots[r]);
      rngFused.set(rf.subarray(2 * j, 2 * j + 2), 2 * slots[r]);
    });
    drawn++;
    return Array.from(outSplit);
  };
  const prompt = [0, 1, 2].map((s) => Array.from(randomTokens([20, 30, 5][s], V, 60 + s)));
  // Slot 1 feeds half its prompt: not sampled, so its logits are not even computed.
  let out = await step([0, 1, 2], [prompt[0], prompt[1].slice(0, 15), prompt[2]], [0, 2], true);
  let next = [out[0], -1, out[1]];
  out = await step([1, 0, 2], [prompt[1].slice(15), [next[0]], [next[2]]], [0, 1, 2], false);
  next = [out[1], out[0], out[2]];
  for (let k = 0; k < 10; k++) {
    if (k === 4 || k === 7) {  // cut back: a prefix kept for reuse, then an emptied slot (a window re-prefill)
      const slot = k === 4 ? 2 : 0;
      const keep = k === 4 ? 3 : 0;
      split[NATIVE].kvTruncate(slot, keep);
      fused[NATIVE].kvTruncate(slot, keep);
      held[slot].length = keep;
      if (keep === 0) {
        const window = Array.from(randomTokens(9, V, 70));
        window[8] = next[slot];
        out = await step([slot], [window], [0], true);
        next[slot] = out[0];
      }
    }
    next = await step([0, 1, 2], next.map((tok) => [tok]), [0, 1, 2], k % 3 === 0);
  }
  for (let s = 0; s < 3; s++) t.equal(fused[NATIVE].kvLength(s), held[s].length, `slot ${s} holds ${held[s].length} tokens`);
});

// The batcher's side of the claim: fed as planStep feeds it (the slot cut back to `held` when needsReset, then
// the feed appended), a Sequence's history() is exactly what its slot holds whenever it samples, through prefills
// in parts, window shifts, a reused prefix and failed steps (refill).
t.test('a sequence\'s penalty history is what its slot holds when it samples', async (t) => {
  const rnd = ((s: number) => () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32)(11);
  let checked = 0;
  let shifts = 0;
  for (let trial = 0; trial < 20; trial++) {
    const nCtx = 6 + Math.floor(rnd() * 10);
    const contextKeep = 1 + Math.floor(rnd() * (nCtx - 1));
    const prompt = Array.from({ length: 1 + Math.floor(rnd() * 2 * nCtx) }, (_, i) => 100 * trial + i);
    const seq = new Sequence(
      { promptTokens: prompt, maxTokens: 1000, sampling: DEFAULT_SAMPLING, stop: [], stopTokens: [], seed: 1n, nCtx, contextKeep },
      tokenizer,
    );
    // A slot that an earlier request left holding the prompt's start, then other tokens.
    const reused = Math.floor(rnd() * Math.min(prompt.length, nCtx));
    const slot = [...prompt.slice(0, reused), 7, 7, 7].slice(0, nCtx);
    seq.reuse(reused);
    for (let step = 0; step < 60; step++) {
      seq.nextFeed(Infinity);  // planStep looks at the whole feed first: a window shift happens here
      const reset = seq.needsReset;
      const keep = seq.held.length;
      const feed = seq.nextFeed(1 + Math.floor(rnd() * 5));
      if (reset) {
        if (keep === 0 && step > 0) shifts++;
        slot.length = keep;
      }
      slot.push(...feed);
      if (slot.length > nCtx) t.fail(`trial ${trial} step ${step}: the slot holds ${slot.length} tokens, past nCtx`);
      if (rnd() < 0.05) {  // the step failed: the slot's contents are unknown
        slot.push(-1);
        seq.refill();
        continue;
      }
      seq.fed(feed.length);
      if (!seq.caughtUp) continue;
      if (Array.from(seq.history()).join() !== slot.join()) t.fail(`trial ${trial} step ${step}: history ${seq.history().join()} but the slot holds ${slot.join()}`);
      checked++;
      seq.take(1000 + step);
    }
  }
  t.ok(checked > 500 && shifts > 20, `${checked} draws checked, across ${shifts} window shifts or refills`);
});

t.test('kvStep refuses what it cannot do before it changes anything', async (t) => {
  const model = Model.create(SMALL, { seed: 1, trainable: false });
  t.teardown(() => model.dispose());
  const n = model[NATIVE];
  await model.run(() => n.kvReserve(2));
  const step = (rows: number[], params: NativeSampling[], tokens = [1, 2], logits: Float32Array | null = null): Promise<void> =>
    model.run(() =>
      n.kvStep(Int32Array.of(0, 1), Int32Array.of(1, 1), Int32Array.from(tokens), Int32Array.from(rows), params,
        new BigUint64Array(2 * rows.length), new Int32Array(rows.length), logits));
  await t.rejects(step([1, 0], [PLAIN, PLAIN]), /ascending/, 'sampled entries out of order');
  await t.rejects(step([2], [PLAIN]), /ascending in \[0, 2\)/, 'a sampled entry that is not one');
  await t.rejects(step([0], [{ ...PLAIN, topK: SMALL.vocabSize + 1 }]), /topK must be/, 'a setting the sampler refuses');
  await t.rejects(step([0], [PLAIN], [1, SMALL.vocabSize]), /outside the vocabulary/, 'a token that is none');
  await t.rejects(step([0], [PLAIN, PLAIN]), /params has length 2, expected 1/, 'one setting per sampled row');
  await t.rejects(step([0], [PLAIN], [1]), /tokens has length 1, expected 2/);
  await t.rejects(step([0], [PLAIN], [1, 2], new Float32Array(SMALL.vocabSize - 1)), /logitsOut/);
  t.equal(n.kvLength(0) + n.kvLength(1), 0, 'nothing was fed');
  await step([], []);
  t.equal(n.kvLength(0) + n.kvLength(1), 2, 'a step that samples nothing feeds');
});

// Through the batcher: greedy and sampled requests with a strong penalty, past nCtx (window shifts), prefilled in
// parts beside each other, one of them on a prefix a finished request left, each against decoding its window from
// scratch with the window given as the penalty's history.
const CONFIG: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nCtx: 24, vocabSize: 50257 };
const KEEP = 8;

// The request's tokens by re-prefilling its policy window (all tokens until they pass nCtx, then the last KEEP,
// growing to nCtx again) into an emptied slot for every token, with kvForward and sample given the window.
async function reference(model: Model, prompt: Int32Array, sampling: NativeSampling, seed: number, maxTokens: number): Promise<number[]> {
  const V = CONFIG.vocabSize;
  const logits = new Float32Array(V);
  const rng = BigUint64Array.from(rngStateFromSeed(BigInt(seed)));
  const context = Array.from(prompt);
  const out: number[] = [];
  let start = 0;
  await model.run((n) => n.kvReserve(1));
  for (let i = 0; i < maxTokens; i++) {
    if (context.length - start > CONFIG.nCtx) start = context.length - KEEP;
    const window = Int32Array.from(context.slice(start));
    const token = new Int32Array(1);
    await model.run(async (n) => {
      n.kvTruncate(0, 0);
      await n.kvForward(Int32Array.of(0), Int32Array.of(window.length), window, logits);
      n.sample(logits, [sampling], rng, [window], token);
    });
    out.push(token[0]);
    context.push(token[0]);
  }
  return out;
}

const REQUESTS: { prompt: Int32Array; sampling: NativeSampling; seed: number; maxTokens: number }[] = [
  { prompt: randomTokens(11, 50257, 81), sampling: GREEDY_PENALIZED, seed: 1, maxTokens: 40 },
  { prompt: randomTokens(17, 50257, 82), sampling: NUCLEUS_PENALIZED, seed: 2, maxTokens: 30 },
  { prompt: randomTokens(3, 50257, 83), sampling: { ...GREEDY_PENALIZED, penalize: 0.3 }, seed: 3, maxTokens: 25 },
];

async function expected(): Promise<number[][]> {
  const model = Model.create(CONFIG, { seed: 5, trainable: false, threads: 2 });
  try {
    const out: number[][] = [];
    for (const r of REQUESTS) out.push(await reference(model, r.prompt, r.sampling, r.seed, r.maxTokens));
    return out;
  } finally {
    model.dispose();
  }
}

const generate = (gen: Generator, r: (typeof REQUESTS)[number]): Promise<GenerateResult> =>
  gen.generate(r.prompt, { ...r.sampling, seed: r.seed, maxTokens: r.maxTokens, stopTokens: [] });

t.test('through the batcher, the penalty sees the window: window shifts, partial prefills, prefix reuse', async (t) => {
  const want = await expected();
  const model = Model.create(CONFIG, { seed: 5, trainable: false, threads: 2 });
  const gen = new Generator(model, tokenizer, { slots: 3, contextKeep: KEEP, maxStepTokens: 5 });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  const together = await Promise.all(REQUESTS.map((r) => generate(gen, r)));
  together.forEach((r, i) => t.same(r.tokens, want[i], `request ${i} together: the tokens of its window re-prefilled`));
  // A request whose prompt starts with what request 2's slot holds: its prompt and its reply but the last token
  // (no window shift yet: 3 + 24 > 24 tokens would have shifted, so a short one).
  const short = { ...REQUESTS[2], maxTokens: 12 };
  const first = await generate(gen, short);
  const [ref] = await (async () => {
    const m = Model.create(CONFIG, { seed: 5, trainable: false, threads: 2 });
    try {
      const prompt = Int32Array.from([...short.prompt, ...first.tokens, 7, 8]);
      return [{ prompt, tokens: await reference(m, prompt, short.sampling, 9, 10) }];
    } finally {
      m.dispose();
    }
  })();
  const reused = await gen.generate(ref.prompt, { ...short.sampling, seed: 9, maxTokens: 10, stopTokens: [] });
  t.equal(reused.timings.cachedPromptTokens, short.prompt.length + first.tokens.length - 1, 'the prompt\'s start came from the slot');
  t.same(reused.tokens, ref.tokens, 'and the penalty saw it: the tokens of a cold prefill');
});

t.test('a failed step\'s rows are re-prefilled, their histories with them', async (t) => {
  const want = await expected();
  const model = Model.create(CONFIG, { seed: 5, trainable: false, threads: 2 });
  // The first steps that sample more than one row fail after the native step ran (caches written, RNG states advanced).
  let struck = 0;
  const faults = injectStepFault(model, (...args) => args[3].length > 1 && struck++ < 3);
  const gen = new Generator(model, tokenizer, { slots: 3, contextKeep: KEEP, maxStepTokens: 64 });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  const results = await Promise.all(REQUESTS.map((r) => generate(gen, r)));
  t.equal(faults(), 3, 'the fault struck');
  results.forEach((r, i) => t.same(r.tokens, want[i], `request ${i}: the tokens of its window re-prefilled`));
});
