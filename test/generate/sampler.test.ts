// The native sampler (native/cpu/sampler.cpp): greedy and top-k 1 are argmax, top-p keeps the smallest set
// reaching p, min-p the tokens near enough the most likely, the repetition penalty lowers used tokens (negative
// logits too), logit biases add after it, a grammar's mask leaves only the tokens it allows, draws follow the
// distribution, and a seed gives the same tokens whatever the thread count.
import t from 'tap';
import { Model, NATIVE } from '../../lib/engine/model';
import { NativeSampling } from '../../lib/engine/native';
import { DEFAULT_SAMPLING, rngStateFromSeed } from '../../lib/generate';
import { lcg } from '../engine/helpers';

const V = 16;

function sampler(threads: number): Model {
  return Model.create({ nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: V }, { seed: 1, threads, trainable: false });
}

// Samples every row of logits [rows, V] with the same settings; row i's RNG is seeded with seed + i.
function sampleRows(model: Model, logits: Float32Array, params: Partial<NativeSampling>, seed = 1, history: Int32Array = new Int32Array(0)): Int32Array {
  const rows = logits.length / V;
  const state = new BigUint64Array(2 * rows);
  for (let i = 0; i < rows; i++) state.set(rngStateFromSeed(BigInt(seed + i)), 2 * i);
  const out = new Int32Array(rows);
  const p = { ...DEFAULT_SAMPLING, ...params };
  model[NATIVE].sample(logits, Array.from({ length: rows }, () => p), state, Array.from({ length: rows }, () => history), out);
  return out;
}

// `rows` copies of one logits row.
function repeat(row: number[], rows: number): Float32Array {
  const out = new Float32Array(rows * V);
  for (let r = 0; r < rows; r++) out.set(row, r * V);
  return out;
}

// Logits whose softmax is `probs` (the rest of the vocabulary has probability ~0).
function logitsOf(probs: number[]): number[] {
  return Array.from({ length: V }, (_, i) => (i < probs.length ? Math.log(probs[i]) : -30));
}

function counts(tokens: Int32Array): number[] {
  const c = new Array<number>(V).fill(0);
  for (const tok of tokens) c[tok]++;
  return c;
}

const model = sampler(2);
t.teardown(() => model.dispose());

t.test('temperature 0 and top-k 1 both give the argmax', async (t) => {
  const next = lcg(3);
  const rows = 64;
  const logits = Float32Array.from({ length: rows * V }, () => next() * 10 - 5);
  const argmax = Int32Array.from({ length: rows }, (_, r) => {
    const row = logits.subarray(r * V, (r + 1) * V);
    return row.indexOf(Math.max(...row));
  });
  t.same(sampleRows(model, logits, { temperature: 0 }), argmax, 'greedy');
  t.same(sampleRows(model, logits, { temperature: 1.5, topK: 1 }), argmax, 'top-k 1');
  t.same(sampleRows(model, logits, { temperature: 0.7, topP: 1e-6 }), argmax, 'top-p tiny');
});

t.test('draws follow softmax(logits / temperature)', async (t) => {
  const probs = [0.4, 0.3, 0.2, 0.1];
  const n = 8000;
  const c = counts(sampleRows(model, repeat(logitsOf(probs), n), {}));
  probs.forEach((p, i) => t.ok(Math.abs(c[i] / n - p) < 0.02, `token ${i}: ${c[i] / n} vs ${p}`));
  // Temperature 0.5 squares the probabilities (then renormalises).
  const sq = probs.map((p) => p * p);
  const z = sq.reduce((a, b) => a + b, 0);
  const ct = counts(sampleRows(model, repeat(logitsOf(probs), n), { temperature: 0.5 }));
  sq.forEach((p, i) => t.ok(Math.abs(ct[i] / n - p / z) < 0.02, `T=0.5 token ${i}: ${ct[i] / n} vs ${(p / z).toFixed(3)}`));
});

t.test('top-k keeps the k most likely, top-p the smallest set reaching p', async (t) => {
  const probs = [0.05, 0.5, 0.15, 0.3];  // by rank: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
  const n = 4000;
  const k2 = counts(sampleRows(model, repeat(logitsOf(probs), n), { topK: 2 }));
  t.same(k2.map((c) => c > 0), [false, true, false, true, ...new Array(V - 4).fill(false)], 'top-k 2: tokens 1 and 3');
  t.ok(Math.abs(k2[1] / n - 0.5 / 0.8) < 0.03, `renormalised: ${k2[1] / n} vs 0.625`);
  const cases: [number, number[]][] = [
    [0.45, [1]],         // 0.5 alone reaches 0.45
    [0.7, [1, 3]],       // 0.5 < 0.7 <= 0.8
    [0.85, [1, 3, 2]],   // 0.8 < 0.85 <= 0.95
    [0.99, [1, 3, 2, 0]],
  ];
  for (const [p, kept] of cases) {
    const c = counts(sampleRows(model, repeat(logitsOf(probs), n), { topP: p }));
    const seen = c.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
    t.same(seen, [...kept].sort((a, b) => a - b), `top-p ${p} keeps ${kept.join(', ')}`);
  }
  // After top-k 3 (mass 0.95), top-p 0.8 of that mass needs 0.76: tokens 1 and 3 (0.8) reach it.
  const both = counts(sampleRows(model, repeat(logitsOf(probs), n), { topK: 3, topP: 0.8 }));
  t.same(both.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0), [1, 3], 'top-p applies to what top-k kept');
});

t.test('min-p keeps the tokens at least m times as likely as the most likely, after the temperature, before top-p', async (t) => {
  const probs = [0.06, 0.3, 0.04, 0.5, 0.1];  // by rank: 3 (0.5), 1 (0.3), 4 (0.1), 0 (0.06), 2 (0.04)
  const n = 6000;
  const kept = (params: Partial<NativeSampling>): number[] => counts(sampleRows(model, repeat(logitsOf(probs), n), params)).map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
  // 0.15 of 0.5 is 0.075: tokens 3, 1 and 4.
  const c = counts(sampleRows(model, repeat(logitsOf(probs), n), { minP: 0.15 }));
  t.same(c.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0), [1, 3, 4], 'min-p 0.15 keeps 3, 1 and 4');
  t.ok(Math.abs(c[3] / n - 0.5 / 0.9) < 0.03, `renormalised: ${c[3] / n} vs ${(0.5 / 0.9).toFixed(3)}`);
  // At temperature 2 the probabilities go as their square roots: relative to the first, 1, 0.77, 0.45, 0.35, 0.28.
  t.same(kept({ minP: 0.3, temperature: 2 }), [0, 1, 3, 4], 'min-p 0.3 at temperature 2 keeps all but token 2');
  t.same(kept({ minP: 0.3 }), [1, 3], 'and at temperature 1, 3 and 1 only');
  // Top-p 0.85 of what min-p 0.15 kept (0.9) needs 0.765: 3 and 1 (0.8) reach it; top-p first would have kept 4.
  t.same(kept({ minP: 0.15, topP: 0.85 }), [1, 3], 'top-p applies to what min-p kept');
  t.same(kept({ minP: 0.15, topK: 2 }), [1, 3], 'after top-k');
  t.same(kept({ minP: 0.999 }), [3], 'so high only the most likely is left');
});

// xoroshiro128++'s uniform draw (native/core/rng.h), for predicting a draw from a state.
function uniform(state: readonly bigint[]): number {
  const mask = (1n << 64n) - 1n;
  const rotl = (x: bigint, k: bigint): bigint => ((x << k) | (x >> (64n - k))) & mask;
  const [s0, s1] = [state[0], state[1]];
  const result = (rotl((s0 + s1) & mask, 17n) + s0) & mask;
  return Number(result >> 11n) / 2 ** 53;
}

t.test('a draw walks the top-k tokens most likely first, as the GPU sampler does', async (t) => {
  // Ranked: 5 (0.4), 2 (0.3), 9 (0.2), 7 (0.1); top-k 3 keeps 5, 2, 9 (mass 0.9), whatever their ids' order.
  const probs = new Array<number>(V).fill(1e-9);
  [[5, 0.4], [2, 0.3], [9, 0.2], [7, 0.1]].forEach(([i, p]) => (probs[i] = p));
  const row = probs.map(Math.log);
  const rows = 300;
  const drawn = sampleRows(model, repeat(row, rows), { topK: 3 }, 11);
  const expected = Int32Array.from({ length: rows }, (_, r) => {
    const u = uniform(rngStateFromSeed(BigInt(11 + r))) * 0.9;
    return u < 0.4 ? 5 : u < 0.7 ? 2 : 9;
  });
  t.same(drawn, expected, `${rows} draws, each the token its random number falls on`);
});

t.test('the penalty lowers used tokens, negative logits included, once per distinct token', async (t) => {
  const logits = new Array<number>(V).fill(-20);
  logits[0] = 2.0;
  logits[1] = 1.8;
  logits[2] = -1.0;
  logits[3] = -1.1;
  const greedy = (history: number[], penalize: number): number =>
    sampleRows(model, repeat(logits, 1), { temperature: 0, penalize }, 1, Int32Array.from(history))[0];
  t.equal(greedy([0], 0), 0, 'no penalty: token 0');
  t.equal(greedy([0], 0.85), 1, 'positive logit: 2.0 * 0.85 = 1.7 < 1.8');
  t.equal(greedy([0, 0, 0, 0], 0.95), 0, 'repeats count once: 2.0 * 0.95 = 1.9 > 1.8');
  t.equal(greedy([0], 1), 0, 'penalize 1 changes nothing');
  // Only the negative pair in play: multiplying -1.0 by 0.85 would give -0.85 (more likely); dividing
  // gives -1.18 < -1.1.
  const negative = logits.slice();
  negative[0] = negative[1] = -20;
  const greedyNeg = (history: number[]): number =>
    sampleRows(model, repeat(negative, 1), { temperature: 0, penalize: 0.85 }, 1, Int32Array.from(history))[0];
  t.equal(greedyNeg([]), 2, 'unpenalised: token 2');
  t.equal(greedyNeg([2]), 3, 'negative logit pushed down');
  // And as a probability: the share of a used token falls.
  const n = 4000;
  const free = counts(sampleRows(model, repeat(negative, n), {}))[2] / n;
  const used = counts(sampleRows(model, repeat(negative, n), { penalize: 0.5 }, 1, Int32Array.of(2)))[2] / n;
  t.ok(used < free - 0.1, `p(token 2): ${free.toFixed(3)} unused, ${used.toFixed(3)} used`);
});

t.test('the same seed gives the same tokens with 1 or 2 threads; the RNG state advances', async (t) => {
  const next = lcg(9);
  const logits = Float32Array.from({ length: 200 * V }, () => next() * 4);
  const one = sampler(1);
  const a = sampleRows(model, logits, { topK: 8, topP: 0.9, penalize: 0.8 }, 42, Int32Array.of(1, 2, 3));
  const b = sampleRows(one, logits, { topK: 8, topP: 0.9, penalize: 0.8 }, 42, Int32Array.of(1, 2, 3));
  t.same(a, b, '200 rows alike');
  t.notSame(sampleRows(model, logits, {}, 43), sampleRows(model, logits, {}, 42), 'another seed, other tokens');
  const state = BigUint64Array.from(rngStateFromSeed(7n));
  const before = state.slice();
  one[NATIVE].sample(logits.subarray(0, V), [DEFAULT_SAMPLING], state, [new Int32Array(0)], new Int32Array(1));
  t.notSame(Array.from(state), Array.from(before), 'state advanced in place');
  one.dispose();
});

t.test('bad settings are refused with the field named', async (t) => {
  const logits = new Float32Array(V);
  const bad: [Partial<NativeSampling>, RegExp][] = [
    [{ temperature: -1 }, /temperature/],
    [{ topK: -2 }, /top_?k/i],
    [{ topP: 0 }, /top_?p/i],
    [{ penalize: 1.5 }, /penalize/],
    [{ minP: 1 }, /min_?p/i],
    [{ minP: -0.1 }, /min_?p/i],
  ];
  for (const [params, pattern] of bad) t.throws(() => sampleRows(model, logits, params), pattern);
  t.throws(() => sampleRows(model, logits, {}, 1, Int32Array.of(V)), /histor/);
});

t.test('logit biases are added after the penalty: -100 bans a token, +100 forces one, ln 3 triples its odds', async (t) => {
  const bias = (entries: [number, number][]): NativeSampling['logitBias'] => ({ tokens: Int32Array.from(entries, ([k]) => k), values: Float32Array.from(entries, ([, v]) => v) });
  const row = logitsOf([0.5, 0.3, 0.2]);
  t.same(sampleRows(model, repeat(row, 1), { temperature: 0, logitBias: bias([[0, -100]]) }), [1], 'greedy: the argmax banned, the next one drawn');
  t.same(sampleRows(model, repeat(row, 4), { temperature: 1, topK: 2, logitBias: bias([[9, 100]]) }), [9, 9, 9, 9], 'sampled: an unlikely token forced, top-k ranking after the bias');
  // Token 2's logit 2 is halved by the penalty to 1, then +0.5: 1.5 beats token 0's 1.45. Biased first, it would be (2 + 0.5) / 2 = 1.25.
  const close = Array.from({ length: V }, (_, i) => (i === 0 ? 1.45 : i === 2 ? 2 : -30));
  t.same(sampleRows(model, repeat(close, 1), { temperature: 0, penalize: 0.5, logitBias: bias([[2, 0.5]]) }, 1, Int32Array.of(2)), [2], 'the penalty, then the bias');
  t.same(sampleRows(model, repeat(close, 1), { temperature: 0, penalize: 0.5 }, 1, Int32Array.of(2)), [0], 'without the bias, the penalty alone decides');
  const n = 4000;
  const even = logitsOf([0.5, 0.5]);
  const drawn = counts(sampleRows(model, repeat(even, n), { logitBias: bias([[1, Math.log(3)]]) }));
  t.ok(Math.abs(drawn[1] / n - 0.75) < 0.03, `p(token 1) with its logit + ln 3 against an equal one: ${(drawn[1] / n).toFixed(3)} (0.75)`);
  for (const [logitBias, pattern] of [
    [bias([[V, 1]]), /logitBias must be token ids from 0 to 15, each with a finite bias/],
    [bias([[-1, 1]]), /logitBias must be token ids from 0 to 15/],
    [bias([[3, NaN]]), /finite bias/],
    [{ tokens: Int32Array.of(1, 2), values: Float32Array.of(1) }, /logitBias\.values.*one per token/],
  ] as const) t.throws(() => sampleRows(model, repeat(row, 1), { logitBias }), pattern, `refused: ${pattern}`);
});

t.test('a grammar\'s mask: only the tokens it allows are drawn, whatever the other settings, in proportion to their odds', async (t) => {
  const mask = (tokens: number[]): Uint32Array => {
    const words = new Uint32Array(Math.ceil(V / 32));
    for (const tok of tokens) words[tok >> 5] |= 1 << (tok & 31);
    return words;
  };
  const row = logitsOf([0.4, 0.3, 0.2, 0.1]);
  t.same(sampleRows(model, repeat(row, 1), { temperature: 0, allowed: mask([2, 3, 9]) }), [2], 'greedy: the likeliest allowed token');
  t.same(sampleRows(model, repeat(row, 1), { temperature: 0, allowed: mask([9, 12]) }), [9], 'greedy among equally unlikely ones: the lowest id');
  const n = 3000;
  for (const params of [{}, { topK: 3 }, { topK: 10 }, { topP: 0.99 }, { minP: 0.01 }, { penalize: 0.5, logitBias: { tokens: Int32Array.of(0), values: Float32Array.of(50) } }] as Partial<NativeSampling>[]) {
    const drawn = counts(sampleRows(model, repeat(row, n), { ...params, allowed: mask([1, 3, 15]) }, 7, Int32Array.of(3)));
    const outside = drawn.reduce((sum, c, tok) => sum + ([1, 3, 15].includes(tok) ? 0 : c), 0);
    t.equal(outside, 0, `${JSON.stringify(params)}: no token outside the mask (tokens 1, 3 and 15 allowed)`);
    if (Object.keys(params).length === 0) {
      // Tokens 1 and 3 at 0.3 and 0.1: 3 to 1 (token 15's ~e^-30 draws nothing).
      t.ok(Math.abs(drawn[1] / n - 0.75) < 0.03, `p(1 | allowed) ${(drawn[1] / n).toFixed(3)} (0.75)`);
    }
  }
  for (const [allowed, pattern] of [
    [mask([]), /allowed must be a bitset of the vocabulary's 16 tokens in 1 words, with at least one token/],
    [new Uint32Array(2).fill(1), /allowed must be a bitset/],
    [Uint32Array.of(1 << 20), /with at least one token/],
  ] as const) t.throws(() => sampleRows(model, repeat(row, 1), { allowed }), pattern, `refused: ${pattern}`);
});

t.test('a penalty near 0 lowers used negative logits to the lowest float, not -inf: min-p then still has a most likely token to measure by', async (t) => {
  const allowed = new Uint32Array(Math.ceil(V / 32));
  allowed[0] = (1 << 1) | (1 << 3);
  const row = logitsOf([0.4, 0.3, 0.2, 0.1]);
  const drawn = counts(sampleRows(model, repeat(row, 400), { penalize: 1e-45, minP: 0.5, allowed }, 3, Int32Array.of(1, 3)));
  t.equal(drawn[1] + drawn[3], 400, 'every draw one of the tokens the grammar allows');
  t.ok(drawn[1] > 100 && drawn[3] > 100, `both, as equally unlikely (${drawn[1]} and ${drawn[3]})`);
});
