// KV-cached decoding (native/cpu/decoder.cpp) against full forward passes: the gpt2-tiny reference logits at
// every position, prefills in chunks and past the decoder's 256-row pass, slots of different lengths in one
// call, batch members against the same sequence alone, thread counts, and 16-bit weights with their f16 cache.
import t, { type Test } from 'tap';
import { Model, GPT2Config, NATIVE } from '../../lib/engine/model';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../lib/formats/safetensors';
import { FIXTURE_DIR, decode, loadExpected, maxAbs, maxAbsDiff, randomTokens, softmax } from '../engine/helpers';

const ex = loadExpected();

t.test('cached decoding matches the gpt2-tiny reference logits at every position', async (t) => {
  const model = await Model.load(FIXTURE_DIR, { trainable: false, threads: 2 });
  const V = model.config.vocabSize;
  const sequences = [ex.inputs.subarray(0, ex.T), ex.inputs.subarray(ex.T, 2 * ex.T)];
  const schedules: [string, (slot: number, call: number) => number][] = [
    ['one token at a time', () => 1],
    ['slot 0 in chunks of 1..4, slot 1 prefilled by 7 then one at a time', (s, call) => (s === 0 ? 1 + (call % 4) : call === 0 ? 7 : 1)],
    ['whole prefills', () => ex.T],
  ];
  for (const [name, schedule] of schedules) {
    const rows = await decode(model, sequences, schedule);
    let worst = 0;
    for (const [key, logits] of rows) {
      const [s, pos] = key.split(':').map(Number);
      const at = (s * ex.T + pos) * V;
      worst = Math.max(worst, maxAbsDiff(logits, ex.logits.subarray(at, at + V)));
    }
    t.ok(worst <= 1e-5, `${name}: ${rows.size} positions within 1e-5 (max diff ${worst.toExponential(2)})`);
  }
  model.dispose();
});

const WIDE: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 320, vocabSize: 96 };

// Decodes `copies` slots of `tokens` on `schedule` and checks every logits row against one full forward over
// `tokens` (float32 tolerance).
async function checkAgainstFull(t: Test, what: string, model: Model, tokens: Int32Array, copies: number,
  schedule: (slot: number, call: number) => number): Promise<void> {
  const V = model.config.vocabSize;
  const full = new Float32Array(tokens.length * V);
  await model.forward(tokens, null, 1, tokens.length, full);
  const rows = await decode(model, Array.from({ length: copies }, () => tokens), schedule);
  let worst = 0;
  for (const [key, logits] of rows) {
    const pos = Number(key.split(':')[1]);
    worst = Math.max(worst, maxAbsDiff(logits, full.subarray(pos * V, (pos + 1) * V)));
  }
  t.ok(worst <= 1e-5, `${what}: ${rows.size} rows within 1e-5 of the full forward (max diff ${worst.toExponential(2)})`);
}

t.test('prefills past one pass of rows, and steps after them, match the full forward', async (t) => {
  const T = 300;
  const model = Model.create(WIDE, { seed: 7, threads: 2, maxBatch: 1, maxSeq: T });
  // Slot 0: 270 tokens at once (two passes through the layers), then one at a time. Slot 1: 150 + 150.
  await checkAgainstFull(t, '270 then 1 at a time, and 150 + 150', model, randomTokens(T, WIDE.vocabSize, 11), 2,
    (s, call) => (s === 0 ? (call === 0 ? 270 : 1) : 150));
  model.dispose();
});

// 266 channels: one part of 272 rows (6 of them padding), and 1064 = 536 + 528; 798 columns: the last panel partly
// empty. (For 8-bit weights, 266 = 8 blocks of 32 and one of 10.)
const UNEVEN: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 266, nCtx: 48, vocabSize: 120 };

t.test('channel counts that fill no whole part or panel decode like the full forward', async (t) => {
  const T = 40;
  const model = Model.create(UNEVEN, { seed: 12, threads: 2, maxBatch: 1, maxSeq: T });
  await checkAgainstFull(t, '20 then 1 at a time, and 3 at a time', model, randomTokens(T, UNEVEN.vocabSize, 13), 2,
    (s, call) => (s === 0 ? (call === 0 ? 20 : 1) : 3));
  model.dispose();
});

t.test('decoding follows the weights when they change after it began: an optimizer step, setParam', async (t) => {
  const T = 40;
  const model = Model.create(WIDE, { seed: 3, threads: 2, maxBatch: 1, maxSeq: T });
  const tokens = randomTokens(T, WIDE.vocabSize, 8);
  const schedule = (_s: number, call: number): number => (call === 0 ? 9 : 1);
  await checkAgainstFull(t, 'as created', model, tokens, 1, schedule);
  model.zeroGrad();
  await model.forward(tokens.subarray(0, T - 1), tokens.subarray(1), 1, T - 1);
  await model.backward();
  await model.step({ optimizer: 'adamw', lr: 0.05 });
  await checkAgainstFull(t, 'after an AdamW step', model, tokens, 1, schedule);
  const fc = model.getParam('h.1.mlp.c_fc.weight');
  model.setParam('h.1.mlp.c_fc.weight', fc.map((x) => -2 * x));
  await checkAgainstFull(t, 'after setParam', model, tokens, 1, schedule);
  model.dispose();
});

t.test('a slot decoded beside others gives exactly what it gives alone, whatever the thread count', async (t) => {
  const config: GPT2Config = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 300 };
  const seqs = [randomTokens(40, 300, 1), randomTokens(25, 300, 2), randomTokens(33, 300, 3)];
  const alone = Model.create(config, { seed: 3, threads: 2, trainable: false });
  const soloRows = await decode(alone, [seqs[1]], (_s, call) => (call === 0 ? 5 : 1));
  const batched = Model.create(config, { seed: 3, threads: 1, trainable: false });
  const batchRows = await decode(batched, seqs, (s, call) => (call === 0 ? 3 + s : 1));
  let compared = 0;
  let differing = 0;
  for (const [key, logits] of soloRows) {
    const pos = Number(key.split(':')[1]);
    const other = batchRows.get(`1:${pos}`);
    if (!other) continue;  // the slot's prefill ended elsewhere in the batched run
    compared++;
    if (maxAbsDiff(logits, other) !== 0) differing++;
  }
  t.ok(compared >= 20, `${compared} positions compared`);
  t.equal(differing, 0, 'bit-identical logits');
  alone.dispose();
  batched.dispose();
});

t.test('a token gets the same bits prefilled with its prompt or fed alone, in a batch of 18 or by itself', async (t) => {
  // nEmbd 384: the MLP's projection (1536 inputs) sums two parts of the weights, and the streaming schedule cuts
  // each part's panels into ranges. A prefill or a step of 18 rows takes the decoder's packed schedule, a single row
  // the streaming one, so this compares the two (and 720 prefill rows pass the layers in three chunks).
  const config: GPT2Config = { nLayer: 2, nHead: 6, nEmbd: 384, nCtx: 96, vocabSize: 500 };
  const seqs = Array.from({ length: 18 }, (_, i) => randomTokens(48, 500, 10 + i));
  const single = Model.create(config, { seed: 4, threads: 2, trainable: false });
  const stepwise = await decode(single, [seqs[0]], () => 1);
  const batched = Model.create(config, { seed: 4, threads: 1, trainable: false });
  const prefilled = await decode(batched, seqs, (_s, call) => (call === 0 ? 40 : 1));
  let differing = 0;
  for (let pos = 39; pos < 48; pos++) {
    if (maxAbsDiff(stepwise.get(`0:${pos}`) as Float32Array, prefilled.get(`0:${pos}`) as Float32Array) !== 0) differing++;
  }
  t.equal(differing, 0, 'bit-identical logits at positions 39..47');
  single.dispose();
  batched.dispose();
});

for (const dtype of ['f16', 'bf16'] as const) {
  t.test(`${dtype} weights decode like float32 weights holding the same rounded values, but for their f16 KV cache`, async (t) => {
    for (const config of [{ nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 300 }, UNEVEN]) {
      const V = config.vocabSize;
      const half = Model.create(config, { seed: 5, threads: 2, trainable: false, weightDtype: dtype });
      const exact = Model.create(config, { seed: 99, threads: 2, trainable: false });
      const copy = (): void => {
        for (const tensor of half.tensors) exact.setParam(tensor.name, half.getParam(tensor.name));
      };
      const compare = async (what: string): Promise<void> => {
        const seqs = [randomTokens(30, V, 4), randomTokens(12, V, 5)];
        const schedule = (_s: number, call: number): number => (call === 0 ? 6 : 1);
        const halfRows = await decode(half, seqs, schedule);
        const exactRows = await decode(exact, seqs, schedule);
        let worst = 0;
        let scale = 0;
        for (const [key, logits] of exactRows) {
          worst = Math.max(worst, maxAbsDiff(logits, halfRows.get(key) as Float32Array));
          scale = Math.max(scale, maxAbs(logits));
        }
        // The products are the same arithmetic as float32's; the keys and values are cached in f16, each rounded by at
        // most f16's unit roundoff (2^-11), and the logits stay within that of the largest (measured: 3e-5 to 1.2e-4).
        t.ok(worst <= 2 ** -11 * scale, `${config.nEmbd} channels, ${what}: ${halfRows.size} rows within 2^-11 of the largest logit ${scale.toFixed(2)} (max diff ${worst.toExponential(2)})`);
      };
      copy();
      await compare('as created');
      // The layer matrices of a 16-bit model live only in the decoder's panels: setParam writes there, getParam
      // reads there, and decoding follows.
      const fc = half.getParam('h.1.mlp.c_fc.weight').map((x, i) => (i % 3 === 0 ? -3 * x : x));
      half.setParam('h.1.mlp.c_fc.weight', fc);
      const rounded = dtype === 'f16' ? f16ToF32(f32ToF16(fc)) : bf16ToF32(f32ToBf16(fc));
      t.same(half.getParam('h.1.mlp.c_fc.weight'), rounded, `${config.nEmbd} channels: getParam gives back what setParam wrote, rounded`);
      copy();
      await compare('after setParam on a layer matrix');
      half.dispose();
      exact.dispose();
    }
  });
}

t.test('the f16 KV cache of a 16-bit model: a 100-token prompt decodes as with the float32 cache of float32 weights of the same values', async (t) => {
  const config: GPT2Config = { nLayer: 4, nHead: 4, nEmbd: 128, nCtx: 128, vocabSize: 400 };
  const half = Model.create(config, { seed: 21, threads: 2, trainable: false, weightDtype: 'f16' });
  const exact = Model.create(config, { seed: 99, threads: 2, trainable: false });
  // Sharper than an initialisation: queries and keys that pick out a few positions, and a peaked next-token
  // distribution. The float32 model holds the very values of the f16 one, so the two differ in their cache alone.
  for (const { name } of half.tensors) {
    const gain = name.endsWith('.attn.c_attn.weight') ? 6 : name === 'wte.weight' ? 5 : 1;
    half.setParam(name, half.getParam(name).map((x) => gain * x));
    exact.setParam(name, half.getParam(name));
  }
  const tokens = randomTokens(120, config.vocabSize, 22);
  const schedule = (_s: number, call: number): number => (call === 0 ? 100 : 1);
  const halfRows = await decode(half, [tokens], schedule);
  const exactRows = await decode(exact, [tokens], schedule);
  let worst = 0;
  let scale = 0;
  let worstP = 0;
  let kl = 0;
  for (const [key, logits] of exactRows) {
    const other = halfRows.get(key) as Float32Array;
    worst = Math.max(worst, maxAbsDiff(logits, other));
    scale = Math.max(scale, maxAbs(logits));
    const [p, q] = [softmax(logits), softmax(other)];
    for (let i = 0; i < p.length; i++) {
      worstP = Math.max(worstP, Math.abs(p[i] - q[i]));
      kl += (p[i] * Math.log(p[i] / q[i])) / exactRows.size;
    }
  }
  // Each cached key and value is rounded by at most f16's unit roundoff (2^-11), and the logits move by less than that,
  // relative to the largest (measured: 1.3e-4, and 5.9e-5 on a probability, a mean KL of 5e-9 nats).
  t.comment(`${exactRows.size} rows: largest logit ${scale.toFixed(2)}, mean KL(f32 cache || f16 cache) ${kl.toExponential(2)} nats`);
  t.ok(worst <= 2 ** -11 * scale, `logits within 2^-11 of the largest (max |diff| ${worst.toExponential(2)})`);
  t.ok(worstP <= 5e-4, `next-token probabilities within 5e-4 (max |diff| ${worstP.toExponential(2)})`);
  half.dispose();
  exact.dispose();
});

t.test('a 16-bit model keeps its layer matrices once, in the decoder\'s panels', async (t) => {
  const config = { nLayer: 2, nHead: 4, nEmbd: 256, nCtx: 64, vocabSize: 300 };
  const f32 = Model.create(config, { seed: 1, threads: 2, trainable: false });
  const f16 = Model.create(config, { seed: 1, threads: 2, trainable: false, weightDtype: 'f16' });
  const params = f32.tensors.reduce((n, x) => n + x.numel, 0);
  const matrices = f32.tensors.filter((x) => /\.(c_attn|c_proj|c_fc)\.weight$/.test(x.name)).reduce((n, x) => n + x.numel, 0);
  // At 256 channels the panels hold the matrices with no padding.
  t.equal(f16.memory().params, 2 * params, 'f16: every parameter once, at 2 bytes');
  t.equal(f32.memory().params, 4 * params, 'f32: every parameter at 4 bytes');
  await f16.run((n) => n.kvReserve(1));
  await f32.run((n) => n.kvReserve(1));
  // Beside the same scratch, the f32 decoder holds a panel copy of the matrices; the 16-bit one holds none, only
  // float32 copies of the vectors (layer norms and biases: 13 C per layer, 2 C at the end), and its cache's keys and
  // values are f16, 2 bytes each less.
  const vectors = (13 * config.nLayer + 2) * config.nEmbd;
  const cached = 2 * config.nLayer * config.nCtx * config.nEmbd;
  t.equal(f32.memory().kvCache - f16.memory().kvCache, 4 * matrices - 4 * vectors + 2 * cached);
  f32.dispose();
  f16.dispose();
});

t.test('kvForward refuses what would corrupt a slot', async (t) => {
  const model = Model.create({ nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 }, { seed: 1, trainable: false });
  const n = model[NATIVE];
  const forward = (slots: number[], nNew: number[], tokens: number[]): Promise<void> =>
    model.run(() => n.kvForward(Int32Array.from(slots), Int32Array.from(nNew), Int32Array.from(tokens), new Float32Array(slots.length * 16)));
  await model.run(() => n.kvReserve(2));
  await t.rejects(forward([0], [9], new Array(9).fill(0)), /n_ctx/);
  await t.rejects(forward([2], [1], [0]), /slot 2 \(entry 0\) is outside/);
  await t.rejects(forward([0, 0], [1, 1], [0, 0]), /twice/);
  await t.rejects(forward([1], [1], [16]), /token 16 at 0 is outside the vocabulary/);
  t.equal(n.kvLength(0), 0, 'nothing was appended');
  t.equal(n.kvLength(1), 0);
  model.dispose();
});
