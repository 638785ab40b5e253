// LoRA dropout (Model's lora.dropout, bin/train --lora_dropout): only training forwards drop the adapter's inputs,
// with masks keyed by the step and micro-batch, so that gradients match finite differences of the same masked loss
// and a run resumed from its checkpoint ends where an uninterrupted one does.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { LORA_TARGETS, type NativeTraining } from '../../lib/engine/native';
import { train } from '../../lib/train/train';
import { lossFromLogits, maxAbsDiff, randomTokens } from '../engine/helpers';
import { CHAT } from '../train/helpers';
import { allLogits, B, centralDifferences, CONFIG, OPTIONS, randomValues, T, tempBase } from './helpers';

const RANK = 4;
const ALPHA = 8;
const P = 0.3;
const V = CONFIG.vocabSize;
const INPUTS = randomTokens(B * T, V, 31);
const TARGET_TOKENS = randomTokens(B * T, V, 32);
const KEY: NativeTraining = { step: 7, microBatch: 1 };

const { dir, base: basePromise } = tempBase('dixie-lora-dropout-');

// The base with an adapter of dropout p whose B is random too, so that the adapter's path moves the logits.
async function adapted(dropout: number, seed = 5): Promise<Model> {
  const model = await Model.load(await basePromise, { ...OPTIONS, lora: { rank: RANK, alpha: ALPHA, targets: [...LORA_TARGETS], dropout, seed } });
  model.tensors.filter((x) => x.name.endsWith('.lora_B.weight')).forEach((x, i) => model.setParam(x.name, randomValues(x.numel, 200 + i, 0.2)));
  return model;
}

async function logitsOf(model: Model, training?: NativeTraining): Promise<Float32Array> {
  const logits = new Float32Array(B * T * V);
  await model.forward(INPUTS, null, B, T, logits, training);
  return logits;
}

t.test('evaluation and decoding drop nothing; a training forward drops, the same elements for the same key', async (t) => {
  const plain = await adapted(0);
  const dropping = await adapted(P);
  const evaluation = await logitsOf(plain);
  t.equal(maxAbsDiff(await logitsOf(dropping), evaluation), 0, 'an evaluation forward with dropout is the p = 0 forward, bit for bit');
  t.equal(maxAbsDiff(await logitsOf(plain, KEY), evaluation), 0, 'a training forward without dropout drops nothing');
  t.equal(maxAbsDiff(await allLogits(dropping), await allLogits(plain)), 0, 'decoding drops nothing');
  const trained = await logitsOf(dropping, KEY);
  t.ok(maxAbsDiff(trained, evaluation) > 1e-3, `a training forward differs (by ${maxAbsDiff(trained, evaluation).toExponential(2)})`);
  t.equal(maxAbsDiff(await logitsOf(dropping, { ...KEY }), trained), 0, 'the same key gives the same logits, bit for bit');
  for (const other of [{ step: KEY.step + 1, microBatch: KEY.microBatch }, { step: KEY.step, microBatch: 0 }]) {
    t.ok(maxAbsDiff(await logitsOf(dropping, other), trained) > 0, `step ${other.step}, micro-batch ${other.microBatch} draws another mask`);
  }
  const reseeded = await adapted(P, 6);
  reseeded.tensors.filter((x) => x.name.includes('.lora_')).forEach((x) => reseeded.setParam(x.name, dropping.getParam(x.name)));
  t.ok(maxAbsDiff(await logitsOf(reseeded, KEY), trained) > 0, 'another seed draws another mask');
  for (const m of [plain, dropping, reseeded]) m.dispose();
});

t.test("one token's gradient of A, du^T drop(x): the dropped inputs are whole zero columns, about p of them", async (t) => {
  const columns = async (model: Model): Promise<{ dropped: number; total: number; consistent: boolean }> => {
    model.zeroGrad();
    await model.forward(INPUTS.subarray(0, 1), TARGET_TOKENS.subarray(0, 1), 1, 1, undefined, KEY);
    await model.backward();
    let dropped = 0;
    let total = 0;
    let consistent = true;
    for (const x of model.tensors.filter((x) => x.name.endsWith('.lora_A.weight'))) {
      const [rank, inputs] = x.shape;
      const g = model.getGrad(x.name);
      for (let i = 0; i < inputs; i++) {
        const zero = g[i] === 0;
        for (let k = 1; k < rank; k++) if ((g[k * inputs + i] === 0) !== zero) consistent = false;
        dropped += zero ? 1 : 0;
        total++;
      }
    }
    return { dropped, total, consistent };
  };
  const plain = await adapted(0);
  t.equal((await columns(plain)).dropped, 0, 'without dropout no column is zero');
  const dropping = await adapted(P);
  const { dropped, total, consistent } = await columns(dropping);
  t.ok(consistent, 'every rank row of dA has its zeros in the same columns: one mask per element of x');
  t.ok(Math.abs(dropped / total - P) < 0.08, `${dropped} of ${total} inputs dropped (${(dropped / total).toFixed(3)}, p = ${P})`);
  plain.dispose();
  dropping.dispose();
});

t.test("the factors' gradients match central differences of the same masked loss", async (t) => {
  const model = await adapted(P);
  model.zeroGrad();
  await model.forward(INPUTS, TARGET_TOKENS, B, T, undefined, KEY);
  await model.backward();
  const loss = async (): Promise<number> => lossFromLogits(await logitsOf(model, KEY), TARGET_TOKENS, V);
  for (const [k, name] of ['h.0.attn.c_attn.lora_A.weight', 'h.0.mlp.c_fc.lora_B.weight', 'h.1.mlp.c_proj.lora_A.weight', 'h.1.attn.c_proj.lora_A.weight'].entries()) {
    const { worst, tol } = await centralDifferences(model, name, loss, k + 1);
    t.ok(worst <= tol, `${name}: |fd - g| ${worst.toExponential(2)} <= ${tol.toExponential(2)}`);
  }
  model.dispose();
});

t.test('Model refuses a dropout outside [0, 1)', async (t) => {
  const base = await basePromise;
  for (const dropout of [1, -0.1, NaN]) {
    await t.rejects(Model.load(base, { ...OPTIONS, lora: { rank: RANK, alpha: ALPHA, targets: [...LORA_TARGETS], dropout } }), /lora\.dropout must be a number in \[0, 1\)/);
  }
});

t.test('bin/train --lora_dropout: recorded in the checkpoint, resumed bit for bit, its errors', async (t) => {
  const base = await basePromise;
  const lines: string[] = [];
  const run = (name: string, stop: number, extra: Record<string, unknown> = {}) => train({
    dataset: path.join(CHAT, 'train', 'work.train'), model_name: base, lora_rank: RANK, lora_alpha: ALPHA, lora_targets: 'attn,mlp', lora_dropout: 0.1,
    context_length: 32, batch_size: 2, accumulate_gradients: 2, learning_rate: 3e-3, seed: 21, threads: 2, run_name: name, stop_after: stop,
    checkpoint_dir: path.join(dir, 'checkpoint'), sample_dir: path.join(dir, 'samples'), save_every: 2, save_time: 0, sample_every: 0, ...extra,
  }, { log: (line) => lines.push(line) });
  await run('whole', 4);
  t.ok(lines.some((l) => /^LoRA: rank 4, alpha 8, dropout 0\.1, on /.test(l)), 'the start-up lines say the dropout');
  await run('halves', 2);
  const resumed = await run('halves', 4, { lora_rank: 0, lora_dropout: undefined });  // the checkpoint says what the adapter is
  t.equal(resumed.stepsThisRun, 2);
  await run('none', 4, { lora_dropout: 0 });
  const at = (name: string, file: string): Buffer => fs.readFileSync(path.join(dir, 'checkpoint', name, 'model-4', file));
  for (const file of ['adapter_model.safetensors', 'optimizer.safetensors']) {
    t.ok(at('whole', file).equals(at('halves', file)), `${file}: stopped and resumed equals uninterrupted, byte for byte`);
  }
  t.notOk(at('whole', 'adapter_model.safetensors').equals(at('none', 'adapter_model.safetensors')), 'and dropout changed what trained');
  t.match(JSON.parse(at('halves', 'adapter_config.json').toString()), { r: RANK, lora_alpha: ALPHA, lora_dropout: 0.1 }, "adapter_config.json's lora_dropout, kept on resume");

  await t.rejects(run('halves', 6, { lora_dropout: 0.2 }), /^--lora_dropout 0\.2 differs from the adapter .* trains \(rank 4, alpha 8, targets attn\.c_attn,attn\.c_proj,mlp\.c_fc,mlp\.c_proj, dropout 0\.1\), which the run goes on with: drop it$/);
  // Resumed without --lora_rank, the adapter's options are held to the adapter's all the same.
  await t.rejects(run('halves', 6, { lora_rank: 0, lora_dropout: 0 }), /^--lora_dropout 0 differs from the adapter .* dropout 0\.1\), which the run goes on with: drop it$/);
  await t.rejects(run('other', 2, { lora_dropout: 1 }), /--lora_dropout must be in \[0, 1\), got 1/);
  await t.rejects(run('other', 2, { lora_dropout: -0.5 }), /--lora_dropout must be in \[0, 1\), got -0\.5/);
  await t.rejects(run('other', 2, { lora_rank: 0 }), /^--lora_alpha, --lora_targets, --lora_dropout are for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop --lora_alpha, --lora_targets, --lora_dropout$/);
});
