// Training a LoRA adapter (Model's lora option, bin/train --lora_rank): the model with an adapter against the model
// of its merged weights (logits, and the factors' gradients against the merged weight's), central differences, the
// frozen base, a zero B, runs resumed from adapter-only checkpoints, and an rsLoRA adapter trained on.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { Generator } from '../../lib/generate';
import { LORA_TARGETS } from '../../lib/engine/native';
import { train } from '../../lib/train/train';
import { lossFromLogits, maxAbs, maxAbsDiff, randomTokens } from '../engine/helpers';
import { CHAT } from '../train/helpers';
import { allLogits, B, centralDifferences, CONFIG, type Factors, mergedWeight, OPTIONS, peftConfig, randomFactors, randomValues, T, tempBase, writeRawAdapter } from './helpers';

const RANK = 4;
const ALPHA = 12;
const SCALING = ALPHA / RANK;
const V = CONFIG.vocabSize;
const INPUTS = randomTokens(B * T, V, 11);
const TARGET_TOKENS = randomTokens(B * T, V, 12);

const { dir, base: basePromise } = tempBase('dixie-lora-train-');

// The base with an adapter whose B is random too (so that every term of the gradients is exercised), the factors
// it holds, and the base with those factors merged into its weights.
async function adaptedAndMerged(): Promise<{ adapted: Model; merged: Model; factors: Factors[] }> {
  const base = await basePromise;
  const adapted = await Model.load(base, { ...OPTIONS, lora: { rank: RANK, alpha: ALPHA, targets: [...LORA_TARGETS], seed: 5 } });
  const merged = await Model.load(base, OPTIONS);
  const factors: Factors[] = [];
  for (let layer = 0; layer < CONFIG.nLayer; layer++) {
    for (const target of LORA_TARGETS) {
      const module = `h.${layer}.${target}`;
      const b = `${module}.lora_B.weight`;
      adapted.setParam(b, randomValues(adapted.getParam(b).length, 100 + factors.length, 0.2));
      const a = adapted.getParam(`${module}.lora_A.weight`);
      const [rows, cols] = merged.tensors.find((x) => x.name === `${module}.weight`)?.shape as number[];
      const f: Factors = { module, rank: RANK, inputs: rows, outputs: cols, a, b: adapted.getParam(b) };
      merged.setParam(`${module}.weight`, mergedWeight(merged.getParam(`${module}.weight`), f, SCALING));
      factors.push(f);
    }
  }
  return { adapted, merged, factors };
}

t.test('an adapter computes what its merged weights compute: logits in training and in decoding', async (t) => {
  const { adapted, merged } = await adaptedAndMerged();
  const a = new Float32Array(B * T * V);
  const m = new Float32Array(B * T * V);
  const lossA = await adapted.forward(INPUTS, TARGET_TOKENS, B, T, a);
  const lossM = await merged.forward(INPUTS, TARGET_TOKENS, B, T, m);
  t.ok(maxAbsDiff(a, m) <= 1e-5, `forward logits differ by ${maxAbsDiff(a, m).toExponential(2)} <= 1e-5`);
  t.ok(Math.abs(lossA - lossM) <= 1e-5, `losses ${lossA} and ${lossM}`);
  const decodedA = await allLogits(adapted);
  const decodedM = await allLogits(merged);
  t.ok(maxAbsDiff(decodedA, decodedM) <= 1e-5, `decoded logits differ by ${maxAbsDiff(decodedA, decodedM).toExponential(2)} <= 1e-5`);
  adapted.dispose();
  merged.dispose();
});

t.test("the factors' gradients are those the merged weight's gradient implies: dA = s B^T dW^T, dB = s dW^T A^T", async (t) => {
  const { adapted, merged, factors } = await adaptedAndMerged();
  for (const model of [adapted, merged]) {
    model.zeroGrad();
    await model.forward(INPUTS, TARGET_TOKENS, B, T);
    await model.backward();
  }
  for (const f of factors) {
    const dW = merged.getGrad(`${f.module}.weight`);
    const expectA = new Float32Array(f.a.length);
    const expectB = new Float32Array(f.b.length);
    for (let i = 0; i < f.inputs; i++) {
      for (let o = 0; o < f.outputs; o++) {
        const g = SCALING * dW[i * f.outputs + o];
        for (let k = 0; k < f.rank; k++) {
          expectA[k * f.inputs + i] += g * f.b[o * f.rank + k];
          expectB[o * f.rank + k] += g * f.a[k * f.inputs + i];
        }
      }
    }
    for (const [factor, expected] of [['A', expectA], ['B', expectB]] as const) {
      const got = adapted.getGrad(`${f.module}.lora_${factor}.weight`);
      const tol = 1e-4 * maxAbs(expected);
      t.ok(maxAbsDiff(got, expected) <= tol, `${f.module} d${factor}: |diff| ${maxAbsDiff(got, expected).toExponential(2)} <= ${tol.toExponential(2)}`);
    }
  }
  adapted.dispose();
  merged.dispose();
});

t.test("the factors' gradients match central differences of the loss", async (t) => {
  const { adapted, merged } = await adaptedAndMerged();
  merged.dispose();
  adapted.zeroGrad();
  await adapted.forward(INPUTS, TARGET_TOKENS, B, T);
  await adapted.backward();
  const logits = new Float32Array(B * T * V);
  const loss = async (): Promise<number> => {
    await adapted.forward(INPUTS, null, B, T, logits);
    return lossFromLogits(logits, TARGET_TOKENS, V);
  };
  for (const [k, name] of ['h.0.attn.c_attn.lora_A.weight', 'h.0.attn.c_attn.lora_B.weight', 'h.1.mlp.c_proj.lora_A.weight', 'h.1.mlp.c_proj.lora_B.weight', 'h.1.attn.c_proj.lora_B.weight'].entries()) {
    const { worst, tol } = await centralDifferences(adapted, name, loss, k + 1);
    t.ok(worst <= tol, `${name}: |fd - g| ${worst.toExponential(2)} <= ${tol.toExponential(2)}`);
  }
  adapted.dispose();
});

t.test('a new adapter (B zero) leaves the base as it was; training moves its factors alone, with no state for the base', async (t) => {
  const base = await basePromise;
  const plain = await Model.load(base, OPTIONS);
  const adapted = await Model.load(base, { ...OPTIONS, lora: { rank: RANK, alpha: ALPHA, targets: ['attn.c_attn', 'mlp.c_fc'], seed: 9 } });
  t.equal(maxAbsDiff(await allLogits(adapted), await allLogits(plain)), 0, 'decoded logits are the base\'s, bit for bit');
  const factors = adapted.tensors.filter((x) => x.name.includes('.lora_'));
  t.same(factors.map((x) => x.name), ['h.0.attn.c_attn.lora_A.weight', 'h.0.mlp.c_fc.lora_A.weight', 'h.1.attn.c_attn.lora_A.weight', 'h.1.mlp.c_fc.lora_A.weight',
    'h.0.attn.c_attn.lora_B.weight', 'h.0.mlp.c_fc.lora_B.weight', 'h.1.attn.c_attn.lora_B.weight', 'h.1.mlp.c_fc.lora_B.weight']);
  const numel = factors.reduce((n, x) => n + x.numel, 0);
  t.equal(numel, CONFIG.nLayer * RANK * (4 * 64 + 5 * 64), 'r x (in + out) per targeted matrix and layer');
  const memory = adapted.memory();
  t.equal(memory.grads, 4 * numel, 'gradients for the factors only');
  t.ok(memory.optimizer < 2 * 4 * numel + 4096, `Adam's moments for the factors only (${memory.optimizer} bytes)`);
  t.throws(() => adapted.getGrad('h.0.attn.c_attn.weight'), /frozen base/);
  const before = adapted.tensors.filter((x) => !x.name.includes('.lora_')).map((x) => adapted.getParam(x.name));
  const factorsBefore = factors.map((x) => adapted.getParam(x.name));
  for (let step = 0; step < 3; step++) {
    adapted.zeroGrad();
    await adapted.forward(INPUTS, TARGET_TOKENS, B, T);
    await adapted.backward();
    await adapted.step({ optimizer: 'adamw', lr: 1e-2, weightDecay: 0.1 });
  }
  const after = adapted.tensors.filter((x) => !x.name.includes('.lora_')).map((x) => adapted.getParam(x.name));
  t.ok(before.every((p, i) => maxAbsDiff(p, after[i]) === 0), 'every base parameter is unchanged');
  t.ok(factors.every((x, i) => maxAbsDiff(adapted.getParam(x.name), factorsBefore[i]) > 0), 'every factor moved');
  t.ok(maxAbsDiff(await allLogits(adapted), await allLogits(plain)) > 0, 'and the model with it');
  await t.rejects(adapted.save(path.join(dir, 'nowhere')), /saveAdapter/);
  plain.dispose();
  adapted.dispose();
});

t.test('bin/train --lora_rank: checkpoints hold the adapter alone, resume bit for bit, and load as an adapter of the base', async (t) => {
  const base = await basePromise;
  const run = (name: string, stop: number, extra: Record<string, unknown> = {}) => train({
    dataset: path.join(CHAT, 'train', 'work.train'), model_name: base, lora_rank: RANK, lora_alpha: ALPHA, lora_targets: 'attn,c_fc',
    context_length: 32, batch_size: 2, learning_rate: 3e-3, seed: 21, threads: 2, run_name: name, stop_after: stop,
    checkpoint_dir: path.join(dir, 'checkpoint'), sample_dir: path.join(dir, 'samples'), save_every: 2, save_time: 0, sample_every: 0, ...extra,
  }, { log: () => undefined });
  await run('whole', 4);
  await run('halves', 2);
  const resumed = await run('halves', 4, { lora_rank: 0 });  // the checkpoint says what the adapter is
  t.equal(resumed.stepsThisRun, 2);
  const whole = path.join(dir, 'checkpoint', 'whole', 'model-4');
  const halves = path.join(dir, 'checkpoint', 'halves', 'model-4');
  t.same(fs.readdirSync(whole).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'merges.txt', 'optimizer.safetensors', 'state.json', 'tokenizer_config.json', 'vocab.json']);
  for (const file of ['adapter_model.safetensors', 'optimizer.safetensors']) {
    t.ok(fs.readFileSync(path.join(whole, file)).equals(fs.readFileSync(path.join(halves, file))), `${file}: stopped and resumed equals uninterrupted, byte for byte`);
  }
  const config = JSON.parse(fs.readFileSync(path.join(whole, 'adapter_config.json'), 'utf8'));
  t.match(config, { base_model_name_or_path: path.resolve(base), r: RANK, lora_alpha: ALPHA, target_modules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc'], fan_in_fan_out: true, peft_type: 'LORA' });

  // Another run's adapter checkpoint starts a new run: its factors, rank, alpha and targets, at step 0.
  const lines: string[] = [];
  const started = await train({ dataset: path.join(CHAT, 'train', 'work.train'), restore_from: whole, context_length: 32, batch_size: 2, seed: 5, threads: 2, run_name: 'from-whole', stop_after: 1,
    checkpoint_dir: path.join(dir, 'checkpoint'), sample_dir: path.join(dir, 'samples'), save_time: 0, sample_every: 0 }, { log: (line) => lines.push(line) });
  t.equal(started.step, 1, 'at step 0, not the other run\'s 4');
  t.ok(lines.includes(`starting from the weights of ${whole}, a checkpoint of another run, at step 0`), lines.join('\n'));
  t.match(JSON.parse(fs.readFileSync(path.join(started.checkpoint as string, 'adapter_config.json'), 'utf8')), { r: RANK, lora_alpha: ALPHA, target_modules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc'] });

  // What training decodes with (its adapter beside the base) is what loading the checkpoint as an adapter gives.
  const training = await Model.load(base, { ...OPTIONS, lora: { rank: RANK, alpha: ALPHA, targets: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc'] }, adapter: whole });
  const served = await Model.load(base, { ...OPTIONS, trainable: false, adapter: whole });
  t.ok(maxAbsDiff(await allLogits(training), await allLogits(served)) <= 1e-5, 'the adapter trained is the adapter served');
  training.dispose();
  served.dispose();
  // An adapter is named as a model is: a run folder, or its `latest`, stands for its latest checkpoint.
  const greedy = async (adapter: string): Promise<string> => {
    const generator = await Generator.load(base, { adapter, threads: 2 });
    try {
      return (await generator.generate('1|mom|', { maxTokens: 12, temperature: 0 })).text;
    } finally {
      await generator.close();
    }
  };
  const fromCheckpoint = await greedy(whole);
  t.equal(await greedy(path.dirname(whole)), fromCheckpoint, 'the run folder');
  t.equal(await greedy(path.join(path.dirname(whole), 'latest')), fromCheckpoint, 'its latest');

  await t.rejects(run('halves', 6, { lora_rank: 8 }), /^--lora_rank 8 differs from the adapter .* trains \(rank 4, alpha 12, targets attn\.c_attn,attn\.c_proj,mlp\.c_fc, dropout 0\), which the run goes on with: drop it$/);
  // Its targets named otherwise are the same matrices; other ones are refused, as the run goes on with the adapter's.
  t.equal((await run('halves', 5, { lora_targets: 'c_attn,attn.c_proj,c_fc' })).step, 5);
  await t.rejects(run('halves', 6, { lora_rank: 0, lora_targets: 'attn', lora_alpha: 6 }), /^--lora_alpha 6, --lora_targets attn differ from the adapter .* which the run goes on with: drop them$/);
  await t.rejects(run('other', 2, { lora_targets: 'attn,ffn' }), /--lora_targets "attn,ffn": "ffn" is not a matrix an adapter changes/);
  await t.rejects(run('fresh', 2, { fresh_model: true }), /--fresh_model has none to adapt/);
  // A run that trains every weight goes on as one, not as an adapter (whose Adam state it does not hold).
  await run('full', 2, { lora_rank: 0, lora_alpha: undefined, lora_targets: undefined });
  // An adapter's options given to a run that trains every weight are refused, whatever their value.
  await t.rejects(run('full', 3, { lora_rank: 0, lora_alpha: 0, lora_targets: 'attn,mlp' }), /^--lora_alpha, --lora_targets are for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop --lora_alpha, --lora_targets$/);
  await t.rejects(run('full', 4), /checkpoint\/full\/model-2 is a checkpoint of a run that trains every weight, and --lora_rank trains an adapter: to train one over it, give it as --model_name with a new --run_name/);
});

// PEFT's use_rslora scales by lora_alpha / sqrt(r): an adapter that says so trains on from what it computes, and is
// saved saying so.
t.test('an rsLoRA adapter from PEFT trains on as the adapter it is, and is saved as one', async (t) => {
  const base = await basePromise;
  const factors = [0, 1].map((layer) => randomFactors(`h.${layer}.attn.c_attn`, RANK, CONFIG.nEmbd, 40 + layer));
  const peft = writeRawAdapter(path.join(dir, 'rslora'), peftConfig({ base_model_name_or_path: base, r: RANK, lora_alpha: ALPHA, use_rslora: true, target_modules: ['c_attn'] }), factors);
  const lora = { rank: RANK, alpha: ALPHA, rslora: true, targets: ['attn.c_attn' as const] };
  const training = await Model.load(base, { ...OPTIONS, lora, adapter: peft });
  const merged = await Model.load(base, OPTIONS);
  for (const f of factors) merged.setParam(`${f.module}.weight`, mergedWeight(merged.getParam(`${f.module}.weight`), f, ALPHA / Math.sqrt(RANK)));
  const diff = maxAbsDiff(await allLogits(training), await allLogits(merged));
  t.ok(diff <= 1e-5, `its logits are those of the base with lora_alpha / sqrt(r) of it merged, within ${diff.toExponential(2)} <= 1e-5`);
  const saved = path.join(dir, 'rslora-saved');
  await training.saveAdapter(saved);
  t.match(JSON.parse(fs.readFileSync(path.join(saved, 'adapter_config.json'), 'utf8')), { r: RANK, lora_alpha: ALPHA, use_rslora: true });
  training.dispose();
  merged.dispose();
  await t.rejects(Model.load(base, { ...OPTIONS, lora: { ...lora, rslora: false }, adapter: peft }),
    { message: `${peft}: the adapter to train on has use_rslora true (scaled by lora_alpha / sqrt(r)), but this training asks for rslora false` });

  // bin/train --restore_from takes the adapter as it is.
  const lines: string[] = [];
  const run = await train({ dataset: path.join(CHAT, 'train', 'work.train'), restore_from: peft, context_length: 32, batch_size: 2, seed: 5, threads: 2, run_name: 'from-rslora', stop_after: 1,
    checkpoint_dir: path.join(dir, 'checkpoint'), sample_dir: path.join(dir, 'samples'), save_time: 0, sample_every: 0 }, { log: (line) => lines.push(line) });
  t.ok(lines.some((line) => line.startsWith(`LoRA: rank ${RANK}, alpha ${ALPHA} (rsLoRA: scaled by alpha / sqrt(rank))`)), lines.join('\n'));
  t.match(JSON.parse(fs.readFileSync(path.join(run.checkpoint as string, 'adapter_config.json'), 'utf8')), { r: RANK, lora_alpha: ALPHA, use_rslora: true, target_modules: ['attn.c_attn'] });
});

t.test('bin/train --restore_from a PEFT adapter trains the matrices it has factors for, however target_modules names them', async (t) => {
  const base = await basePromise;
  const cases: [targetModules: string[] | string, kinds: string[]][] = [
    [['c_attn', 'c_proj'], ['attn.c_attn', 'attn.c_proj', 'mlp.c_proj']],  // "c_proj" is both attn.c_proj and mlp.c_proj
    ['all-linear', [...LORA_TARGETS]],
    ['.*\\.attn\\.c_attn', ['attn.c_attn']],
  ];
  for (const [i, [targetModules, kinds]] of cases.entries()) {
    const factors = [0, 1].flatMap((layer) => kinds.map((kind, k) => randomFactors(`h.${layer}.${kind}`, RANK, CONFIG.nEmbd, 60 + 10 * i + 4 * layer + k)));
    const peft = writeRawAdapter(path.join(dir, `targets-${i}`), peftConfig({ base_model_name_or_path: base, r: RANK, lora_alpha: ALPHA, target_modules: targetModules }), factors);
    const run = await train({ dataset: path.join(CHAT, 'train', 'work.train'), restore_from: peft, context_length: 32, batch_size: 2, seed: 5, threads: 2, run_name: `targets-${i}`, stop_after: 1,
      checkpoint_dir: path.join(dir, 'checkpoint'), sample_dir: path.join(dir, 'samples'), save_time: 0, sample_every: 0 }, { log: () => undefined });
    t.match(JSON.parse(fs.readFileSync(path.join(run.checkpoint as string, 'adapter_config.json'), 'utf8')), { target_modules: kinds }, `target_modules ${JSON.stringify(targetModules)}: trains ${kinds.join(', ')}`);
  }
});
