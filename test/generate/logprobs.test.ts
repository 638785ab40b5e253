// Log-probabilities as the native side computes them (native/core/backend.h token_logprobs), in the step that makes
// the logits (kvForward's of every token, kvStep's of the drawn tokens) and for a row held in JavaScript
// (tokenLogprob), checked against a float64 log-softmax computed here over the same logits.
import t, { type Test } from 'tap';
import { Model, NATIVE } from '../../lib/engine/model';
import type { NativeLogprobs } from '../../lib/engine/native';
import { logprobRows, rowLogprob, tokenLogprob, type TokenLogprob } from '../../lib/generate/logprobs';

// 100 logits, as a tokenizer of fewer tokens pads a vocabulary: not a whole number of 32-bit mask words.
const CONFIG = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 32, vocabSize: 100 };
const V = CONFIG.vocabSize;

// The ids 0 to 89 but 7 and 40: a tokenizer that spells 88 of the model's 100 logits.
const SPELLED = new Uint32Array(Math.ceil(V / 32));
for (let id = 0; id < 90; id++) if (id !== 7 && id !== 40) SPELLED[id >>> 5] |= 1 << (id & 31);
const spells = (id: number): boolean => ((SPELLED[id >>> 5] >>> (id & 31)) & 1) === 1;

// A float64 log-softmax over the allowed ids of one row, its `top` best by value, ties by lower id.
function reference(row: Float32Array, token: number, top: number, allowed: (id: number) => boolean): TokenLogprob {
  const ids = Array.from(row.keys()).filter(allowed);
  const max = Math.max(...ids.map((i) => row[i]));
  const logZ = max + Math.log(ids.reduce((sum, i) => sum + Math.exp(row[i] - max), 0));
  const best = ids.sort((a, b) => row[b] - row[a] || a - b).slice(0, top);
  return { token, logprob: row[token] - logZ, top: best.map((i) => ({ token: i, logprob: row[i] - logZ })) };
}

// The largest difference between two rows' log-probabilities, and whether they name the same tokens in order.
function compare(t: Test, got: TokenLogprob, want: TokenLogprob, what: string): void {
  t.equal(got.token, want.token, `${what}: token`);
  t.same(got.top.map((a) => a.token), want.top.map((a) => a.token), `${what}: the likeliest tokens, in order`);
  const worst = Math.max(Math.abs(got.logprob - want.logprob), ...got.top.map((a, k) => Math.abs(a.logprob - want.top[k].logprob)));
  t.ok(worst < 1e-5, `${what}: largest difference ${worst.toExponential(2)}`);
}

t.test('a row held in JavaScript: ties by lower id, only the ids allowed, fewer alternatives than asked where fewer are', async (t) => {
  const row = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 1.7) * 4);
  row[7] = 50;  // not spelled: no share of the distribution, never offered
  row[40] = 50;
  row[95] = 60;  // padding past the tokenizer
  for (const id of [3, 30, 64, 65]) row[id] = 9;  // a tie among the best, across mask words
  compare(t, tokenLogprob(row, 30, 6, SPELLED), reference(row, 30, 6, spells), 'masked');
  compare(t, tokenLogprob(row, 95, 3), reference(row, 95, 3, () => true), 'every id');
  const few = new Uint32Array(SPELLED.length);
  few[2] = 0b101;  // ids 64 and 66
  const got = tokenLogprob(row, 64, 5, few);
  t.same(got.top.map((a) => a.token), [64, 66], 'the two allowed ids only');
  compare(t, got, reference(row, 64, 2, (id) => id === 64 || id === 66), 'two allowed');
  t.throws(() => tokenLogprob(row, V, 1), /tokenLogprobs: logprobs\.targets\[0\] is 100, outside the vocabulary of 100/);
  t.throws(() => tokenLogprob(row, 1, 1, new Uint32Array(3)), /tokenLogprobs: logprobs\.allowed has length 3, expected 4/);
});

t.test("a prompt's rows in kvForward and the drawn tokens' in kvStep, computed beside the logits they return", async (t) => {
  const model = Model.create(CONFIG, { seed: 3, threads: 1, trainable: false });
  t.teardown(() => model.dispose());
  const native = model[NATIVE];
  native.kvReserve(2);
  const prompts = [Int32Array.of(5, 17, 3, 88, 41, 2, 60), Int32Array.of(9, 9, 1, 33)];
  const tokens = Int32Array.from([...prompts[0], ...prompts[1]]);
  const targets = Int32Array.from([...prompts[0].subarray(1), 12, ...prompts[1].subarray(1), 70]);
  const logits = new Float32Array(tokens.length * V);
  const rows = logprobRows(tokens.length, 4, SPELLED, targets);
  await native.kvForward(Int32Array.of(0, 1), Int32Array.of(7, 4), tokens, logits, 'tokenLogits', rows);
  for (let r = 0; r < tokens.length; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    compare(t, rowLogprob(rows, r, targets[r], 4), reference(row, targets[r], 4, spells), `prompt row ${r}`);
    compare(t, rowLogprob(rows, r, targets[r], 2), reference(row, targets[r], 2, spells), `prompt row ${r}, 2 of the 4`);
  }

  const drawn = new Int32Array(2);
  const stepLogits = new Float32Array(2 * V);
  const stepRows: NativeLogprobs = logprobRows(2, 3, SPELLED);
  const params = [{ temperature: 1, topK: 0, topP: 1, minP: 0, penalize: 0, allowed: SPELLED }, { temperature: 0, topK: 0, topP: 1, minP: 0, penalize: 0, allowed: SPELLED }];
  await native.kvStep(Int32Array.of(0, 1), Int32Array.of(1, 1), Int32Array.of(12, 70), Int32Array.of(0, 1), params, new BigUint64Array([1n, 2n, 3n, 4n]), drawn, stepLogits, stepRows);
  for (let r = 0; r < 2; r++) {
    t.ok(spells(drawn[r]), `drawn token ${drawn[r]} is spelled`);
    compare(t, rowLogprob(stepRows, r, drawn[r], 3), reference(stepLogits.subarray(r * V, (r + 1) * V), drawn[r], 3, spells), `drawn row ${r}`);
  }

  await t.rejects(native.kvForward(Int32Array.of(0), Int32Array.of(1), Int32Array.of(4), new Float32Array(V), 'lastLogits', logprobRows(1, 1, null, Int32Array.of(0))),
    /kvForward: logprobs needs output 'tokenLogits'/);
  await t.rejects(native.kvForward(Int32Array.of(0), Int32Array.of(2), Int32Array.of(4, 4), new Float32Array(2 * V), 'tokenLogits', logprobRows(1, 1, null, Int32Array.of(0))),
    /kvForward: logprobs\.targets has length 1, expected 2/);
  await t.rejects(native.kvForward(Int32Array.of(0), Int32Array.of(1), Int32Array.of(4), new Float32Array(V), 'tokenLogits', logprobRows(1, 1, null, Int32Array.of(-1))),
    /kvForward: logprobs\.targets\[0\] is -1, outside the vocabulary of 100/);
  await t.rejects(native.kvStep(Int32Array.of(0), Int32Array.of(1), Int32Array.of(4), Int32Array.of(0), [params[0]], new BigUint64Array(2), new Int32Array(1), null, logprobRows(1, 1, null)),
    /kvStep: logprobs needs logitsOut/);
});
