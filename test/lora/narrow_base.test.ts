// An adapter trained over a base held in f16, bf16 or q8_0 (Model's lora with weightDtype, bin/train --dtype): the
// same loss and factor gradients as over a float32 base holding the very values the narrow one stores, decoding that
// applies the adapter, the memory the narrow base saves, and bin/train runs that resume bit for bit.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { LORA_TARGETS, type WeightDType } from '../../lib/engine/native';
import { readTrainState } from '../../lib/train/checkpoint';
import { train } from '../../lib/train/train';
import { maxAbs, maxAbsDiff, randomTokens } from '../engine/helpers';
import { CHAT } from '../train/helpers';
import { allLogits, B, CONFIG, OPTIONS, randomValues, T, tempBase } from './helpers';

const LORA = { rank: 4, alpha: 8, targets: [...LORA_TARGETS], seed: 5 };
const V = CONFIG.vocabSize;
const INPUTS = randomTokens(B * T, V, 31);
const TARGET_TOKENS = randomTokens(B * T, V, 32);

const { dir, base: basePromise } = tempBase('dixie-lora-narrow-');

// A narrow base with an adapter whose B is random, and a float32 base holding exactly what the narrow one stores
// (its readParams), with the same factors.
async function narrowAndWide(dtype: WeightDType): Promise<{ narrow: Model; wide: Model }> {
  const base = await basePromise;
  const narrow = await Model.load(base, { ...OPTIONS, weightDtype: dtype, lora: LORA });
  const wide = await Model.load(base, { ...OPTIONS, lora: LORA });
  for (const [i, tensor] of narrow.tensors.entries()) {
    if (tensor.name.endsWith('.lora_B.weight')) narrow.setParam(tensor.name, randomValues(tensor.numel, 200 + i, 0.2));
    wide.setParam(tensor.name, narrow.getParam(tensor.name));
  }
  return { narrow, wide };
}

for (const dtype of ['f16', 'bf16', 'q8_0'] as const) {
  t.test(`${dtype} base: the loss, logits and factor gradients of a float32 base of the same values`, async (t) => {
    const { narrow, wide } = await narrowAndWide(dtype);
    const logits = [new Float32Array(B * T * V), new Float32Array(B * T * V)];
    const losses: number[] = [];
    for (const [k, model] of [narrow, wide].entries()) {
      model.zeroGrad();
      losses.push(await model.forward(INPUTS, TARGET_TOKENS, B, T, logits[k]));
      await model.backward();
    }
    t.ok(maxAbsDiff(logits[0], logits[1]) <= 1e-5, `logits differ by ${maxAbsDiff(logits[0], logits[1]).toExponential(2)} <= 1e-5`);
    t.ok(Math.abs(losses[0] - losses[1]) <= 1e-6, `losses ${losses[0]} and ${losses[1]}`);
    let worst = 0;
    for (const tensor of narrow.tensors.filter((x) => x.name.includes('.lora_'))) {
      const g = narrow.getGrad(tensor.name);
      worst = Math.max(worst, maxAbsDiff(g, wide.getGrad(tensor.name)) / maxAbs(g));
    }
    t.ok(worst <= 1e-5, `factor gradients agree within ${worst.toExponential(2)} <= 1e-5 of their largest`);
    t.throws(() => narrow.getGrad('h.0.attn.c_attn.weight'), /trains|gradient/, 'the base has no gradients');

    // Decoding applies the adapter beside the narrow matrices: close to the float32 base's (a narrow model's keys and
    // values are cached in f16, and q8_0 decoding also quantizes its inputs by blocks, as llama.cpp does).
    const decoded = await allLogits(narrow);
    const reference = await allLogits(wide);
    const bound = dtype === 'q8_0' ? 0.05 : 1e-3;
    t.ok(maxAbsDiff(decoded, reference) <= bound * maxAbs(reference), `decoded logits within ${maxAbsDiff(decoded, reference).toExponential(2)} of the float32 base's`);

    const m = narrow.memory();
    const f32 = wide.memory();
    t.equal(m.grads, f32.grads, 'gradients for the factors alone, as over a float32 base');
    t.ok(m.params < (dtype === 'q8_0' ? 0.45 : 0.6) * f32.params, `weights ${m.params} bytes against ${f32.params} over float32`);

    const step = { optimizer: 'adamw' as const, lr: 1e-2 };
    const before = narrow.getParam('h.1.mlp.c_proj.weight');
    await narrow.step(step);
    await wide.step(step);
    t.same(narrow.getParam('h.1.mlp.c_proj.weight'), before, 'a step leaves the base as it was');
    const a = narrow.getParam('h.1.attn.c_attn.lora_A.weight');
    t.ok(maxAbsDiff(a, wide.getParam('h.1.attn.c_attn.lora_A.weight')) <= 5e-5, 'and moves the factors as over the float32 base');
    narrow.dispose();
    wide.dispose();
  });
}

t.test('bin/train --dtype q8_0: the base held in 8 bits, checkpoints that resume bit for bit, and clear refusals', async (t) => {
  const base = await basePromise;
  const lines: string[] = [];
  const run = (name: string, stop: number, extra: Record<string, unknown> = {}) => train({
    dataset: path.join(CHAT, 'train', 'work.train'), model_name: base, lora_rank: 4, context_length: 32, batch_size: 2,
    learning_rate: 3e-3, seed: 21, threads: 2, run_name: name, stop_after: stop, checkpoint_dir: path.join(dir, 'checkpoint'),
    sample_dir: path.join(dir, 'samples'), save_every: 2, save_time: 0, sample_every: 2, sample_length: 8, dtype: 'q8_0', ...extra,
  }, { log: (line) => lines.push(line) });
  await run('whole', 4);
  t.match(lines.join('\n'), /LoRA: rank 4, alpha 8, .* the base stays frozen, held in q8_0/);
  t.ok(fs.readdirSync(path.join(dir, 'samples', 'whole')).length > 0, 'samples decoded during training');
  await run('halves', 2);
  lines.length = 0;
  await run('halves', 4, { dtype: '' });  // the run says how it holds its base
  t.notMatch(lines.join('\n'), /until now/);
  const whole = path.join(dir, 'checkpoint', 'whole', 'model-4');
  const halves = path.join(dir, 'checkpoint', 'halves', 'model-4');
  for (const file of ['adapter_model.safetensors', 'optimizer.safetensors']) {
    t.ok(fs.readFileSync(path.join(whole, file)).equals(fs.readFileSync(path.join(halves, file))), `${file}: stopped and resumed equals uninterrupted, byte for byte`);
  }
  t.equal(readTrainState(halves).options.dtype, 'q8_0', 'state.json records the base held in q8_0');

  lines.length = 0;
  await run('halves', 5, { dtype: 'f16' });
  t.match(lines.join('\n'), /held its base in q8_0 until now and goes on over f16/);
  await t.rejects(run('full', 2, { lora_rank: 0 }), /--dtype q8_0 holds the frozen base of a LoRA adapter in less memory, and full fine-tuning updates every weight in float32: add --lora_rank, or drop --dtype/);
  await t.rejects(run('odd', 2, { dtype: 'int4' }), /--dtype must be one of f32, f16, bf16, q8_0, got "int4"/);
});
