// Embeddings: kvForward's final hidden state of every token (native/cpu/decoder.cpp) against the gpt2-tiny reference
// logits (the states times the tied head give them), the Batcher's embeddings fed over several steps beside running
// generations, and Generator.embed's pooling.
import t from 'tap';
import { Model, NATIVE, type GPT2Config } from '../../lib/engine/model';
import { Batcher, Generator, poolStates, unitLength } from '../../lib/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURE_DIR, loadExpected, maxAbs, maxAbsDiff, randomTokens } from '../engine/helpers';

// logits[t, v] = states[t] . wte[v] for the first `columns` tokens of the vocabulary, in float64.
function headLogits(states: Float32Array, wte: Float32Array, C: number, V: number, columns = V): Float64Array {
  const T = states.length / C;
  const out = new Float64Array(T * columns);
  for (let i = 0; i < T; i++) {
    for (let v = 0; v < columns; v++) {
      let dot = 0;
      for (let c = 0; c < C; c++) dot += states[i * C + c] * wte[v * C + c];
      out[i * columns + v] = dot;
    }
  }
  return out;
}

// The first `columns` of each row of logits [rows, V].
function firstColumns(logits: Float32Array, V: number, columns: number): Float32Array {
  const rows = logits.length / V;
  const out = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) out.set(logits.subarray(r * V, r * V + columns), r * columns);
  return out;
}

t.test('the states of every token, times the tied head, are the gpt2-tiny reference logits', async (t) => {
  const ex = loadExpected();
  const model = await Model.load(FIXTURE_DIR, { trainable: false, threads: 2 });
  const { nEmbd: C, vocabSize: V } = model.config;
  const native = model[NATIVE];
  await model.run((n) => n.kvReserve(2));
  // Slot 0 whole in one call; slot 1 as 7 tokens beside it, then its other 25.
  const a = ex.inputs.subarray(0, ex.T), b = ex.inputs.subarray(ex.T, 2 * ex.T);
  const first = new Float32Array((ex.T + 7) * C), second = new Float32Array((ex.T - 7) * C);
  await model.run((n) => n.kvForward(Int32Array.of(0, 1), Int32Array.of(ex.T, 7), Int32Array.from([...a, ...b.subarray(0, 7)]), first, 'tokenStates'));
  await model.run((n) => n.kvForward(Int32Array.of(1), Int32Array.of(ex.T - 7), b.slice(7), second, 'tokenStates'));
  const states = new Float32Array(2 * ex.T * C);
  states.set(first.subarray(0, ex.T * C));
  states.set(first.subarray(ex.T * C), ex.T * C);
  states.set(second, (ex.T + 7) * C);
  const diff = maxAbsDiff(headLogits(states, model.getParam('wte.weight'), C, V), ex.logits);
  t.ok(diff <= 1e-5, `${2 * ex.T} positions' states give the reference logits within 1e-5 (max diff ${diff.toExponential(2)})`);
  t.equal(native.kvLength(1), ex.T, 'the states fed the slot as logits would');
  await t.rejects(model.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(1), Int32Array.of(5), new Float32Array(V), 'tokenStates')),
    /kvForward: out .*tokens\.length \* nEmbd/, 'an output sized for logits is refused, naming the size states take');
  await t.rejects(model.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(1), Int32Array.of(5), new Float32Array(C), 'hidden' as 'tokenStates')),
    /output must be 'lastLogits', 'tokenLogits' or 'tokenStates'/);
  model.dispose();
});

const CONFIG: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 320, vocabSize: 50257 };
const tokenizer = loadTokenizer();

t.test('an embedding fed over several steps beside generations: the full forward\'s states, and the same bits as alone', async (t) => {
  const model = Model.create(CONFIG, { seed: 3, threads: 2, maxBatch: 1, maxSeq: 300 });
  const batcher = new Batcher(model, tokenizer, { slots: 3, maxStepTokens: 96 });
  t.teardown(async () => {
    await batcher.close();
    model.dispose();
  });
  const { nEmbd: C, vocabSize: V } = CONFIG;
  const prompt = randomTokens(300, V, 17);
  const alone = await batcher.embed({ promptTokens: prompt });
  t.equal(alone.finishReason, 'stop');
  t.equal(alone.states.length, 300 * C);
  const beside = Promise.all([
    batcher.submit({ promptTokens: randomTokens(40, V, 5), maxTokens: 30, sampling: { temperature: 0 } }),
    batcher.submit({ promptTokens: randomTokens(3, V, 6), maxTokens: 30, seed: 1 }),
  ]);
  const batched = await batcher.embed({ promptTokens: prompt });
  const [one, two] = await beside;
  t.equal(one.tokens.length + two.tokens.length > 0, true, 'the generations ran');
  t.same(Buffer.from(batched.states.buffer), Buffer.from(alone.states.buffer), 'the same bits beside two generations as alone');
  // The same weights, the 300 tokens in one call: past the decoder's 256-row pass and its 64 rows of logits.
  const twin = Model.create(CONFIG, { seed: 3, threads: 1, trainable: false });
  const once = new Float32Array(300 * C);
  await twin.run(async (n) => {
    n.kvReserve(1);
    await n.kvForward(Int32Array.of(0), Int32Array.of(300), prompt, once, 'tokenStates');
  });
  twin.dispose();
  t.same(Buffer.from(once.buffer), Buffer.from(alone.states.buffer), 'the same bits in one call, on one thread, as fed in steps of 96');
  const columns = 512;
  const full = new Float32Array(300 * V);
  await model.forward(prompt, null, 1, 300, full);
  const expected = firstColumns(full, V, columns);
  const diff = maxAbsDiff(headLogits(alone.states, model.getParam('wte.weight'), C, V, columns), expected);
  t.ok(diff <= 1e-4 * Math.max(1, maxAbs(expected)), `300 tokens' states give the full forward's logits (max diff ${diff.toExponential(2)})`);
});

t.test('Generator.embed pools the states, to length 1 unless asked not to', async (t) => {
  const model = Model.create(CONFIG, { seed: 3, threads: 2, trainable: false });
  const gen = new Generator(model, tokenizer, { slots: 2 });
  t.teardown(async () => {
    await gen.close();
    model.dispose();
  });
  const text = 'The quick brown fox jumps over the lazy dog.';
  const tokens = gen.encode(text);
  const raw = await gen.embed(text, { normalize: false });
  const last = await gen.embed(tokens, { pooling: 'last', normalize: false });
  const unit = await gen.embed(text);
  t.equal(raw.promptTokens, tokens.length);
  t.equal(raw.embedding.length, CONFIG.nEmbd);
  const norm = Math.hypot(...unit.embedding);
  t.ok(Math.abs(norm - 1) < 1e-6, `normalized to length 1 (${norm})`);
  t.ok(maxAbsDiff(unit.embedding, unitLength(raw.embedding)) < 1e-7, 'the normalized vector is the mean scaled');
  t.notOk(maxAbsDiff(raw.embedding, last.embedding) < 1e-3, 'mean and last pooling differ');
  // Pooling by hand: the mean of three rows, and the last one.
  const states = Float32Array.of(1, 2, 3, 4, 5, 9);
  t.same([...poolStates(states, 2, 'mean')], [3, 5]);
  t.same([...poolStates(states, 2, 'last')], [5, 9]);
  t.throws(() => poolStates(Float32Array.of(1, 2, 3), 2, 'mean'), /not whole tokens of 2/);
  t.same([...unitLength(Float32Array.of(3, 4))].map((x) => Math.round(x * 1e6) / 1e6), [0.6, 0.8]);
  t.same([...unitLength(Float32Array.of(0, 0))], [0, 0], 'a zero vector stays zero');
  await t.rejects(gen.embed(new Int32Array(CONFIG.nCtx + 1)), /an embedding of 321 tokens needs them within the model's context of 320/);
  await t.rejects(gen.embed(Int32Array.of(50257)), /promptTokens\[0\] = 50257 is not a token of this model/);
  await t.rejects(gen.embed(new Int32Array(0)), /the prompt is empty/);
  const gone = new AbortController();
  gone.abort();
  await t.rejects(gen.embed(text, { signal: gone.signal }), /the embedding was aborted/);
});

t.test("the embeddings of one group count as one request decoding in their queue, each generation as one", async (t) => {
  const model = Model.create(CONFIG, { seed: 3, threads: 2, trainable: false });
  // Steps of 8 tokens: the embeddings' 200 tokens each take many steps, so they are still decoding at the
  // generation's first text.
  const batcher = new Batcher(model, tokenizer, { slots: 4, maxStepTokens: 8 });
  t.teardown(async () => {
    await batcher.close();
    model.dispose();
  });
  const { vocabSize: V } = CONFIG;
  const request = {};
  let running: { bot: number; other: number } | null = null;
  const generation = batcher.submit({
    promptTokens: randomTokens(2, V, 7), maxTokens: 4, stopTokens: [], seed: 1, queue: 'bot',
    onText: () => (running ??= { bot: batcher.runningOf('bot'), other: batcher.runningOf('other') }),
  });
  const embeddings = [11, 12].map((seed) => batcher.embed({ promptTokens: randomTokens(200, V, seed), queue: 'bot', group: request }));
  const alone = batcher.embed({ promptTokens: randomTokens(200, V, 13), queue: 'other' });
  await Promise.all([generation, ...embeddings, alone]);
  t.same(running, { bot: 2, other: 1 }, "the generation and the group's two embeddings as two requests; an embedding of no group as one");
  t.equal(batcher.runningOf('bot'), 0, 'none once they finish');
});
