// 8-bit weights (weightDtype 'q8_0', native/cpu/decode_matmul.h): decoding close to float32 on the gpt2-tiny fixture
// and at GPT-2 124M shapes with GPT-2-like weight statistics, the same bits whatever the batch, schedule or threads,
// the weights kept once at 34 bytes a block of 32, read back exactly as quantized, and no training on them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { GPT2Config, Model, NATIVE } from '../../lib/engine/model';
import { loadAddon } from '../../lib/engine/native';
import { f16ToF32, writeSafetensors } from '../../lib/formats/safetensors';
import { estimateModelBytes } from '../../lib/server/engine';
import { loadTokenizer } from '../../lib/tokenizer';
import { FIXTURE_DIR, decode, lcg, loadExpected, maxAbs, maxAbsDiff, randomTokens, softmax } from './helpers';

const ex = loadExpected();

t.test('q8_0 decoding of the gpt2-tiny fixture is within 2% of the largest logit of the reference at every position', async (t) => {
  const model = await Model.load(FIXTURE_DIR, { trainable: false, threads: 2, weightDtype: 'q8_0' });
  const V = model.config.vocabSize;
  const sequences = [ex.inputs.subarray(0, ex.T), ex.inputs.subarray(ex.T, 2 * ex.T)];
  const scale = maxAbs(ex.logits);
  for (const [name, schedule] of [['one token at a time', () => 1], ['whole prefills', () => ex.T]] as const) {
    const rows = await decode(model, sequences, schedule);
    let worst = 0;
    for (const [key, logits] of rows) {
      const [s, pos] = key.split(':').map(Number);
      worst = Math.max(worst, maxAbsDiff(logits, ex.logits.subarray((s * ex.T + pos) * V, (s * ex.T + pos + 1) * V)));
    }
    t.ok(worst <= 0.02 * scale, `${name}: max |diff| ${worst.toExponential(2)} against a largest logit of ${scale.toFixed(2)}`);
  }
  model.dispose();
});

// 536 channels: one part of 17 blocks of 32 rows (the last of 24 rows); at 2144 inputs, 67 blocks in two parts of 34
// (the second with one block of padding); 1608 columns: the last panel partly empty.
const WIDE: GPT2Config = { nLayer: 2, nHead: 8, nEmbd: 536, nCtx: 64, vocabSize: 300 };

t.test('a q8_0 token gets the same bits prefilled or fed alone, in a batch of 18 or by itself, on 1 or 2 threads', async (t) => {
  const seqs = Array.from({ length: 18 }, (_, i) => randomTokens(24, WIDE.vocabSize, 20 + i));
  const single = Model.create(WIDE, { seed: 4, threads: 2, trainable: false, weightDtype: 'q8_0' });
  const stepwise = await decode(single, [seqs[0]], () => 1);
  const batched = Model.create(WIDE, { seed: 4, threads: 1, trainable: false, weightDtype: 'q8_0' });
  const prefilled = await decode(batched, seqs, (_s, call) => (call === 0 ? 16 : 1));
  let differing = 0;
  for (let pos = 15; pos < 24; pos++) {
    if (maxAbsDiff(stepwise.get(`0:${pos}`) as Float32Array, prefilled.get(`0:${pos}`) as Float32Array) !== 0) differing++;
  }
  t.equal(differing, 0, 'bit-identical logits at positions 15..23');
  single.dispose();
  batched.dispose();
});

t.test('q8_0 weights: read back as quantized, written again unchanged, written in whole groups of 32 rows', async (t) => {
  const config = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 300 };
  const q8 = Model.create(config, { seed: 5, threads: 2, trainable: false, weightDtype: 'q8_0' });
  const name = 'h.1.mlp.c_fc.weight';
  const w = q8.getParam(name);
  // 64 inputs by 256 outputs: blocks of 32 rows of a column share a scale, so each column takes at most 2 x 255 values.
  const distinct = new Set(Array.from({ length: 32 }, (_, k) => w[k * 256 + 7]));
  t.ok(distinct.size > 8 && distinct.size <= 32, `a block of a column holds ${distinct.size} distinct values`);
  const before = await decode(q8, [randomTokens(10, 300, 1)], () => 1);
  q8.setParam(name, w);
  t.same(q8.getParam(name), w, 'the dequantized values quantize back to the same blocks');
  const after = await decode(q8, [randomTokens(10, 300, 1)], () => 1);
  t.equal(maxAbsDiff(before.get('0:9') as Float32Array, after.get('0:9') as Float32Array), 0, 'decoding unchanged');
  const info = q8.tensors.find((x) => x.name === name);
  if (!info) throw new Error(`no ${name}`);
  t.throws(() => q8[NATIVE].writeParams(info.offset + 256, new Float32Array(256 * 32), 'f32'),
    /h\.1\.mlp\.c_fc\.weight \[64, 256\]: a q8_0 model quantizes its layer matrices by blocks of 32 rows, so it is written in whole groups of 32 rows \(this write covers elements 256 to 8448\)/);
  // 127 / 256: a scale of 2^-8, exact in f16.
  q8[NATIVE].writeParams(info.offset + 256 * 32, new Float32Array(256 * 32).fill(127 / 256), 'f32');
  t.same(Array.from(q8.getParam(name).subarray(256 * 32, 256 * 33)), new Array(256).fill(127 / 256), 'a whole group of 32 rows is taken');
  q8.dispose();
});

t.test('a q8_0 model keeps its layer matrices and token embedding once, at 34 bytes a block of 32, and the rest at 2 bytes', async (t) => {
  const config = { nLayer: 2, nHead: 4, nEmbd: 256, nCtx: 64, vocabSize: 300 };
  const q8 = Model.create(config, { seed: 1, threads: 2, trainable: false, weightDtype: 'q8_0' });
  const params = q8.tensors.reduce((n, x) => n + x.numel, 0);
  const quantized = q8.tensors.filter((x) => /\.(c_attn|c_proj|c_fc)\.weight$|^wte\.weight$/.test(x.name)).reduce((n, x) => n + x.numel, 0);
  // At 256 channels the panels hold the matrices with no padding; the flat buffer's groups are padded to 16 floats.
  t.ok(Math.abs(q8.memory().params - (2 * (params - quantized) + (quantized / 32) * 34)) < 2 * 16 * 16, `${q8.memory().params} bytes of weights`);
  t.match(q8.device(), /q8_0 weights/);
  const f16 = estimateModelBytes({ ...config, nLayer: 48, nEmbd: 1600, vocabSize: 50257, nCtx: 1024 }, 'f16', 1);
  const int8 = estimateModelBytes({ ...config, nLayer: 48, nEmbd: 1600, vocabSize: 50257, nCtx: 1024 }, 'q8_0', 1);
  t.ok(int8 < 0.7 * f16, `the server's estimate for 1558M: q8_0 ${(int8 / 1e9).toFixed(2)} GB, f16 ${(f16 / 1e9).toFixed(2)} GB`);
  q8.dispose();
});

// The Q8_0 blocks of a row of C values as float32 (scale x int8), from the quantizer of the GGUF writer: a last
// block shorter than 32 is quantized as if padded with zeros, which change neither its scale nor its values.
async function q8Row(row: Float32Array): Promise<Float32Array> {
  const out = new Float32Array(row.length);
  for (let j = 0; j < row.length; j += 32) {
    const block = new Float32Array(32);
    block.set(row.subarray(j, j + 32));
    const bytes = Buffer.from(await loadAddon().quantizeGgml('q8_0', block, 1));
    const d = f16ToF32(Uint16Array.of(bytes.readUInt16LE(0)))[0];
    for (let i = 0; i < Math.min(32, row.length - j); i++) out[j + i] = d * bytes.readInt8(2 + i);
  }
  return out;
}

t.test('a q8_0 model\'s token embedding: Q8_0 rows, read back as scale x int8 block by block, written in whole blocks', async (t) => {
  // 536 channels: rows of 16 blocks of 32 values and a last one of 24.
  const q8 = Model.create(WIDE, { seed: 6, threads: 2, trainable: false, weightDtype: 'q8_0' });
  const C = WIDE.nEmbd;
  const next = lcg(7);
  const wte = Float32Array.from({ length: WIDE.vocabSize * C }, () => 0.3 * (next() - 0.5));
  q8.setParam('wte.weight', wte);
  const expected = new Float32Array(wte.length);
  for (let v = 0; v < WIDE.vocabSize; v++) expected.set(await q8Row(wte.subarray(v * C, (v + 1) * C)), v * C);
  const read = q8.getParam('wte.weight');
  t.equal(maxAbsDiff(read, expected), 0, 'every value is its block\'s scale times its int8, exactly');
  t.ok(maxAbsDiff(read, wte) > 0, 'and not the float value written');
  const before = await decode(q8, [randomTokens(10, WIDE.vocabSize, 1)], () => 1);
  q8.setParam('wte.weight', read);
  t.same(q8.getParam('wte.weight'), read, 'the dequantized values quantize back to the same blocks');
  const after = await decode(q8, [randomTokens(10, WIDE.vocabSize, 1)], () => 1);
  t.equal(maxAbsDiff(before.get('0:9') as Float32Array, after.get('0:9') as Float32Array), 0, 'decoding unchanged');
  const info = q8.tensors.find((x) => x.name === 'wte.weight');
  if (!info) throw new Error('no wte.weight');
  t.throws(() => q8[NATIVE].writeParams(info.offset + C + 16, new Float32Array(32), 'f32'),
    /wte\.weight \[300, 536\]: a q8_0 model quantizes its token embedding by blocks of 32 values of a row, so it is written in whole blocks \(this write covers elements 552 to 584\)/);
  // Whole blocks from the middle of a row: row 2's last two blocks (32 and 24 values), then the first of row 3.
  // 127 / 256: a scale of 2^-8, exact in f16.
  q8[NATIVE].writeParams(info.offset + 2 * C + 480, new Float32Array(56 + 32).fill(127 / 256), 'f32');
  t.same(Array.from(q8.getParam('wte.weight').subarray(2 * C + 480, 3 * C + 32)), new Array(88).fill(127 / 256), 'whole blocks are taken');
  t.equal(maxAbsDiff(q8.getParam('wte.weight').subarray(2 * C, 2 * C + 480), read.subarray(2 * C, 2 * C + 480)), 0, 'the blocks before are kept');
  q8.dispose();
});

t.test('training refuses q8_0 weights: they are for inference only', async (t) => {
  const model = Model.create({ nLayer: 1, nHead: 2, nEmbd: 64, nCtx: 16, vocabSize: 50 }, { seed: 1, weightDtype: 'q8_0' });
  const tokens = randomTokens(8, 50, 3);
  await t.rejects(model.forward(tokens, tokens, 1, 8), /forward is not available: the model stores 8-bit \(q8_0\) weights, which are inference-only/);
  await t.rejects(model.backward(), /8-bit \(q8_0\) weights, which are inference-only/);
  await t.rejects(model.step({ optimizer: 'adamw', lr: 1e-3 }), /8-bit \(q8_0\) weights, which are inference-only/);
  t.throws(() => model.zeroGrad(), /no gradients/);
  model.dispose();
});

// GPT-2's tensors (Hugging Face's names and shapes) with weights drawn like a trained GPT-2's, as far as quantization
// cares: the matrices heavy-tailed (normals of a log-normal scale, so that a block's largest value stands out as in
// trained weights), the token embedding at a standard deviation of 0.11, and three channels of the LayerNorms' gain at
// 10, as GPT-2 has a few outlier features (which set the scale of their block of activations). The final gain puts
// the next-token entropy near GPT-2's (a few nats).
function gpt2LikeTensors(c: GPT2Config, seed: number): { name: string; dtype: 'F32'; shape: number[]; data: () => Float32Array }[] {
  let s = seed >>> 0;
  const uniform = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  const normal = (): number => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const C = c.nEmbd;
  const shapes: [string, number[]][] = [['wte.weight', [c.vocabSize, C]], ['wpe.weight', [c.nCtx, C]]];
  for (let l = 0; l < c.nLayer; l++) {
    shapes.push([`h.${l}.ln_1.weight`, [C]], [`h.${l}.ln_1.bias`, [C]], [`h.${l}.attn.c_attn.weight`, [C, 3 * C]], [`h.${l}.attn.c_attn.bias`, [3 * C]],
      [`h.${l}.attn.c_proj.weight`, [C, C]], [`h.${l}.attn.c_proj.bias`, [C]], [`h.${l}.ln_2.weight`, [C]], [`h.${l}.ln_2.bias`, [C]],
      [`h.${l}.mlp.c_fc.weight`, [C, 4 * C]], [`h.${l}.mlp.c_fc.bias`, [4 * C]], [`h.${l}.mlp.c_proj.weight`, [4 * C, C]], [`h.${l}.mlp.c_proj.bias`, [C]]);
  }
  shapes.push(['ln_f.weight', [C]], ['ln_f.bias', [C]]);
  const draw = (name: string, x: Float32Array): void => {
    if (name === 'wte.weight') for (let i = 0; i < x.length; i++) x[i] = 0.11 * normal();
    else if (name === 'wpe.weight') for (let i = 0; i < x.length; i++) x[i] = 0.01 * normal();
    else if (/\.c_\w+\.weight$/.test(name)) {
      const std = name.endsWith('.c_proj.weight') ? 0.02 / Math.sqrt(2 * c.nLayer) : 0.02;
      for (let i = 0; i < x.length; i++) x[i] = std * normal() * Math.exp(0.5 * normal() - 0.125);
    } else if (name === 'ln_f.weight') x.fill(0.8);
    else if (/ln_[12]\.weight$/.test(name)) {
      for (let i = 0; i < x.length; i++) x[i] = 1 + 0.1 * normal();
      for (const channel of [138, 378, 447]) x[channel] = 10;
    } else for (let i = 0; i < x.length; i++) x[i] = 0.02 * normal();
  };
  return shapes.map(([name, shape]) => ({
    name,
    dtype: 'F32' as const,
    shape,
    data: () => {
      const x = new Float32Array(shape.reduce((a, b) => a * b, 1));
      draw(name, x);
      return x;
    },
  }));
}

t.test('at GPT-2 124M shapes with GPT-2-like weights, q8_0 predicts the next token of a held-out text like float32', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-q8-124m-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config: GPT2Config = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
  await writeSafetensors(path.join(dir, 'model.safetensors'), gpt2LikeTensors(config, 2024), { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ n_layer: 12, n_head: 12, n_embd: 768, n_positions: 1024, vocab_size: 50257 }));
  // Held out: text the weights never saw (they saw none), from this project's docs (bench/README.md, lib/server/README.md).
  const text = 'Decoding at batch 1 reads every weight once per token, so it is bound by memory bandwidth, which swings on this ' +
    'shared VM between about 19 and 31 GB/s with 2 threads. Requests for the same model are decoded together (continuous ' +
    'batching, up to batch_slots at a time), so throughput grows with concurrency.';
  const tokens = loadTokenizer().encode(text, { allowSpecial: false });
  const rows = new Map<string, Map<string, Float32Array>>();
  for (const dtype of ['f32', 'q8_0'] as const) {
    const model = await Model.load(dir, { trainable: false, threads: 2, weightDtype: dtype });
    rows.set(dtype, await decode(model, [tokens], () => 1));
    model.dispose();
  }
  let worst = 0;
  let kl = 0;
  let entropy = 0;
  for (const [key, logits] of rows.get('f32') as Map<string, Float32Array>) {
    const p = softmax(logits);
    const q = softmax(rows.get('q8_0')?.get(key) as Float32Array);
    for (let i = 0; i < p.length; i++) {
      worst = Math.max(worst, Math.abs(p[i] - q[i]));
      if (p[i] > 0) {
        kl += (p[i] * Math.log(p[i] / q[i])) / tokens.length;
        entropy -= (p[i] * Math.log(p[i])) / tokens.length;
      }
    }
  }
  t.comment(`${tokens.length} positions, float32 entropy ${entropy.toFixed(2)} nats: largest difference of a next-token probability ${worst.toExponential(2)}, mean KL(f32 || q8_0) ${kl.toExponential(2)} nats`);
  t.ok(entropy > 1.5 && entropy < 5, `a next-token distribution as peaked as GPT-2's (entropy ${entropy.toFixed(2)} nats)`);
  t.ok(worst < 0.05, `largest difference of a probability ${worst.toExponential(2)} < 0.05`);
  t.ok(kl < 2e-3, `mean KL divergence ${kl.toExponential(2)} < 2e-3 nats`);
});
